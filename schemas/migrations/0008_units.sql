-- Units of work, materialised: one row per task (task_units) and per run (run_units) within a
-- project, holding what store::queries::tasks computes from the events (the first call's
-- dimensions, the calls' sums, the retry/fallback "wasted" linking) and the winning outcome,
-- so /api/v1/tasks and /api/v1/runs scan one table instead of every call. The time-dependent
-- state (open vs unknown) is not stored: queries derive it from last_ts. The writer keeps these
-- rows in the same transaction as the events and outcomes that change them (store::units).
--
-- A unit's key is in task_id (task_units) or run_id (run_units). The dimension columns carry
-- the events' names, so the costs API's filters apply unchanged; feature, user_id and
-- customer_id are the first call's, else the winning outcome's, and call_* keep the first
-- call's own values so a new outcome can be applied without reading the calls again.
CREATE TABLE task_units (
    ts               TIMESTAMPTZ NOT NULL,  -- the first call's
    last_ts          TIMESTAMPTZ NOT NULL,
    ended_us         BIGINT NOT NULL,       -- latest call end, microseconds since the epoch
    project          VARCHAR,
    user_id          VARCHAR,
    team_id          VARCHAR,
    api_key_id       VARCHAR,
    customer_id      VARCHAR,
    feature          VARCHAR,
    tags             VARCHAR[] NOT NULL,
    model            VARCHAR,
    provider         VARCHAR,
    route            VARCHAR,
    agent            VARCHAR,
    status           VARCHAR,
    cost_source      VARCHAR,
    task_id          VARCHAR NOT NULL,      -- the unit key
    run_id           VARCHAR,
    trace_id         VARCHAR,
    operation        VARCHAR,
    service_tier     VARCHAR,
    error_type       VARCHAR,
    session_id       VARCHAR,
    id_kind          VARCHAR NOT NULL,
    calls            BIGINT NOT NULL,
    errors           BIGINT NOT NULL,
    retries          BIGINT NOT NULL,
    fallbacks        BIGINT NOT NULL,
    calls_cost       DECIMAL(38, 12),
    retry_cost       DECIMAL(38, 12),
    wasted_calls     BIGINT NOT NULL,
    unpriced_calls   BIGINT NOT NULL,
    input_tokens     HUGEINT,
    output_tokens    HUGEINT,
    call_feature     VARCHAR,
    call_user_id     VARCHAR,
    call_customer_id VARCHAR,
    outcome          VARCHAR,
    value            DECIMAL(18, 12),
    rework_cost      DECIMAL(18, 12)
);

CREATE TABLE run_units (
    ts               TIMESTAMPTZ NOT NULL,
    last_ts          TIMESTAMPTZ NOT NULL,
    ended_us         BIGINT NOT NULL,
    project          VARCHAR,
    user_id          VARCHAR,
    team_id          VARCHAR,
    api_key_id       VARCHAR,
    customer_id      VARCHAR,
    feature          VARCHAR,
    tags             VARCHAR[] NOT NULL,
    model            VARCHAR,
    provider         VARCHAR,
    route            VARCHAR,
    agent            VARCHAR,
    status           VARCHAR,
    cost_source      VARCHAR,
    task_id          VARCHAR,
    run_id           VARCHAR NOT NULL,      -- the unit key
    trace_id         VARCHAR,
    operation        VARCHAR,
    service_tier     VARCHAR,
    error_type       VARCHAR,
    session_id       VARCHAR,
    id_kind          VARCHAR NOT NULL,
    calls            BIGINT NOT NULL,
    errors           BIGINT NOT NULL,
    retries          BIGINT NOT NULL,
    fallbacks        BIGINT NOT NULL,
    calls_cost       DECIMAL(38, 12),
    retry_cost       DECIMAL(38, 12),
    wasted_calls     BIGINT NOT NULL,
    unpriced_calls   BIGINT NOT NULL,
    input_tokens     HUGEINT,
    output_tokens    HUGEINT,
    call_feature     VARCHAR,
    call_user_id     VARCHAR,
    call_customer_id VARCHAR,
    -- The task whose outcome is the run's: the first call's task_id, else the run key.
    outcome_task_id  VARCHAR NOT NULL,
    outcome          VARCHAR,
    value            DECIMAL(18, 12),
    rework_cost      DECIMAL(18, 12)
);

-- Whether the unit tables hold every stored event: false until the first start of this version
-- has built them from the events already there.
CREATE TABLE units_state (built BOOLEAN NOT NULL);
INSERT INTO units_state VALUES (false);

-- Calls and outcomes committed since the units were last brought up to date. The writer adds
-- to them in the transaction of each write that changes a unit, and folds them into the unit
-- tables in batches (store::units): before any read of tasks or runs, and whenever enough
-- have gathered. Being tables, not memory, they survive a crash with the events they stand for.
CREATE TABLE units_pending (
    t_project VARCHAR, t_task VARCHAR, t_run VARCHAR, t_lo TIMESTAMPTZ, t_hi TIMESTAMPTZ);
CREATE TABLE units_outcomes_pending (o_project VARCHAR, o_task VARCHAR);
