-- Task outcomes: how a unit of work ended, reported by the application (POST /v1/outcomes) or
-- by one of its calls (the native event field task_outcome). A task may have several rows; the
-- one with the latest ts wins, ties broken by arrival order (seq, assigned by the one writer).
-- Tasks are joined to their calls by (project, task_id), where a call's task is its task_id,
-- else run_id, else trace_id.
CREATE TABLE outcomes (
    project      VARCHAR NOT NULL,
    task_id      VARCHAR NOT NULL,
    outcome      VARCHAR NOT NULL,  -- success | failure | abandoned
    ts           TIMESTAMPTZ NOT NULL,
    received_at  TIMESTAMPTZ NOT NULL,
    seq          BIGINT NOT NULL,
    idem_key     VARCHAR,
    value        DECIMAL(18, 12),
    rework_cost  DECIMAL(18, 12),
    feature      VARCHAR,
    user_id      VARCHAR,
    customer_id  VARCHAR,
    source       VARCHAR NOT NULL,  -- api | event
    metadata     VARCHAR
);
