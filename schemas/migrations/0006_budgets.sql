-- Budgets, alert channels, the alert outbox and its delivery log.
--
-- No table here holds a running spend total: a budget's spend is always a query over `events`
-- inside the period, so nothing needs resetting and a restart loses nothing.

-- A budget's definition is validated JSON (scope, split, period, amount, thresholds, forecast,
-- channels or run cap). `revision` grows when a change alters what is evaluated (scope,
-- period, amount, thresholds…); alerts are keyed by it, so an edited budget's thresholds re-arm.
CREATE TABLE budgets (
    id          VARCHAR PRIMARY KEY,
    project     VARCHAR NOT NULL,
    name        VARCHAR NOT NULL,
    definition  VARCHAR NOT NULL,
    revision    INTEGER NOT NULL,
    source      VARCHAR NOT NULL,      -- api | config | demo
    created_at  TIMESTAMPTZ NOT NULL,
    updated_at  TIMESTAMPTZ NOT NULL,
    UNIQUE (project, name)
);

-- Where alerts go. The secret (whsec_…) must be kept in clear to sign; it is shown once at
-- creation and never again. A 410 from the receiver disables the channel.
CREATE TABLE channels (
    id              VARCHAR PRIMARY KEY,
    project         VARCHAR NOT NULL,
    name            VARCHAR NOT NULL,
    kind            VARCHAR NOT NULL,  -- webhook | slack
    url             VARCHAR NOT NULL,
    secret          VARCHAR NOT NULL,
    enabled         BOOLEAN NOT NULL,
    disabled_reason VARCHAR,
    source          VARCHAR NOT NULL,  -- api | config | demo
    created_at      TIMESTAMPTZ NOT NULL,
    updated_at      TIMESTAMPTZ NOT NULL,
    UNIQUE (project, name)
);

-- Creation order of alerts: deliveries go out per channel in this order.
CREATE SEQUENCE alert_seq START 1;

-- The outbox: one row per crossing, written in the same transaction as the events that caused
-- it. The UNIQUE key is the "exactly once" promise; the writer checks before inserting and the
-- constraint is the backstop. `split_key` is '' for budgets without split_by (NULLs would be
-- distinct and defeat the key); for run caps it is the run or task id and `period_start` the
-- epoch. Money is DECIMAL(38, 12): a budget's amount and spend are sums that can pass the
-- $1M a per-event DECIMAL(18, 12) holds.
CREATE TABLE alerts (
    id              VARCHAR PRIMARY KEY,
    seq             BIGINT NOT NULL,
    project         VARCHAR NOT NULL,
    budget_id       VARCHAR NOT NULL,
    budget_revision INTEGER NOT NULL,
    budget_name     VARCHAR NOT NULL,
    kind            VARCHAR NOT NULL,  -- threshold | forecast | run_cap_cost | run_cap_calls
    event_type      VARCHAR NOT NULL,
    split_key       VARCHAR NOT NULL,
    period_start    TIMESTAMPTZ NOT NULL,
    period_end      TIMESTAMPTZ,
    threshold       DECIMAL(10, 4) NOT NULL,
    amount          DECIMAL(38, 12),
    spent           DECIMAL(38, 12),
    forecast        DECIMAL(38, 12),
    state           VARCHAR NOT NULL,  -- open | superseded (a higher threshold crossed in the same evaluation)
    superseded_by   VARCHAR,
    payload         VARCHAR NOT NULL,  -- the exact JSON body webhooks receive
    created_at      TIMESTAMPTZ NOT NULL,
    UNIQUE (budget_id, budget_revision, split_key, period_start, kind, threshold)
);

-- One row per (alert, channel): where its delivery stands.
CREATE TABLE alert_deliveries (
    alert_id        VARCHAR NOT NULL,
    channel_id      VARCHAR NOT NULL,
    project         VARCHAR NOT NULL,
    alert_seq       BIGINT NOT NULL,
    state           VARCHAR NOT NULL,  -- pending | delivered | failed | cancelled
    attempts        INTEGER NOT NULL,  -- every attempt ever made
    round_attempts  INTEGER NOT NULL,  -- attempts since the last (re)delivery: position in the retry schedule
    next_attempt_at TIMESTAMPTZ,
    delivered_at    TIMESTAMPTZ,
    PRIMARY KEY (alert_id, channel_id)
);

-- Every delivery attempt, successful or not.
CREATE TABLE delivery_attempts (
    alert_id    VARCHAR NOT NULL,
    channel_id  VARCHAR NOT NULL,
    project     VARCHAR NOT NULL,
    attempt     INTEGER NOT NULL,
    attempted_at TIMESTAMPTZ NOT NULL,
    status_code SMALLINT,
    error       VARCHAR,
    duration_ms BIGINT NOT NULL,
    response    VARCHAR              -- the first bytes of the receiver's answer
);
