-- Tasks pre-summed per UTC hour of their first call over the dimensions the dashboards group
-- tasks by (project, feature, agent, model, provider), so cost per successful task over a
-- month sums a few hundred thousand rows instead of one row per task. Kept by the unit fold
-- (store::task_rollup) as signed partial rows: a recomputed task subtracts its old row's
-- contribution and adds its new one; readers sum, and compaction merges the partials.
--
-- `calls` is part of the key so the p95 of calls per task stays exact (a histogram). A task
-- without an outcome keeps the hour of its last call (`last_hour_us`): whether it is open or
-- unknown depends on "now", and only the tasks whose last call falls in the hour of the
-- open/unknown cut-off have to be read from task_units to decide.
CREATE TABLE task_rollup_hourly (
    hour_us        BIGINT NOT NULL,  -- the first call's hour, microseconds since the epoch (UTC)
    project        VARCHAR,
    feature        VARCHAR,
    agent          VARCHAR,
    model          VARCHAR,
    provider       VARCHAR,
    outcome        VARCHAR,
    last_hour_us   BIGINT,           -- the last call's hour, only for tasks without an outcome
    calls          BIGINT NOT NULL,
    tasks          BIGINT NOT NULL,
    calls_cost     DECIMAL(38, 12) NOT NULL,
    rework_cost    DECIMAL(38, 12) NOT NULL,
    retry_cost     DECIMAL(38, 12) NOT NULL,
    value          DECIMAL(38, 12) NOT NULL,
    valued_tasks   BIGINT NOT NULL,
    wasted_calls   BIGINT NOT NULL,
    unpriced_calls BIGINT NOT NULL
);
-- Rows right after the last compaction; no row until the table was first filled from
-- task_units (on the first start after this migration).
CREATE TABLE task_rollup_state (compacted_rows BIGINT NOT NULL);
