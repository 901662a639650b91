-- Hourly rollups: pre-aggregated sums of the costs measures over the common dimensions, so
-- dashboards answer from thousands of rows instead of millions. `ts` is the start of the UTC
-- hour. A rollup may hold several partial rows for one key (one per commit until compaction
-- merges them); every reader sums. The dimension columns carry the events' column names, so
-- the same filters apply. Two tables keep each one small: people (user, customer) multiply
-- with everything else.
CREATE TABLE rollup_hourly (
    ts                 TIMESTAMPTZ NOT NULL,
    project            VARCHAR,
    provider           VARCHAR,
    model              VARCHAR,
    route              VARCHAR,
    feature            VARCHAR,
    agent              VARCHAR,
    team_id            VARCHAR,
    api_key_id         VARCHAR,
    operation          VARCHAR,
    service_tier       VARCHAR,
    status             VARCHAR,
    cost_source        VARCHAR,
    error_type         VARCHAR,
    cost               DECIMAL(38, 12),
    reported_cost      DECIMAL(38, 12),  -- USD only, like the costs API
    computed_cost      DECIMAL(38, 12),
    requests           BIGINT NOT NULL,
    errors             BIGINT NOT NULL,
    input_tokens       BIGINT NOT NULL,
    output_tokens      BIGINT NOT NULL,
    cache_read_tokens  BIGINT NOT NULL,
    cache_write_tokens BIGINT NOT NULL,
    reasoning_tokens   BIGINT NOT NULL,
    unpriced_requests  BIGINT NOT NULL
);

CREATE TABLE rollup_hourly_people (
    ts                 TIMESTAMPTZ NOT NULL,
    project            VARCHAR,
    user_id            VARCHAR,
    customer_id        VARCHAR,
    cost               DECIMAL(38, 12),
    reported_cost      DECIMAL(38, 12),
    computed_cost      DECIMAL(38, 12),
    requests           BIGINT NOT NULL,
    errors             BIGINT NOT NULL,
    input_tokens       BIGINT NOT NULL,
    output_tokens      BIGINT NOT NULL,
    cache_read_tokens  BIGINT NOT NULL,
    cache_write_tokens BIGINT NOT NULL,
    reasoning_tokens   BIGINT NOT NULL,
    unpriced_requests  BIGINT NOT NULL
);

-- Whether the rollups hold every stored event: false until the first start of this version
-- has built them from the events already there.
CREATE TABLE rollup_state (built BOOLEAN NOT NULL);
INSERT INTO rollup_state VALUES (false);
