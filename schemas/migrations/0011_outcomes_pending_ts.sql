-- The time of each pending outcome, so a fold reads only the outcomes stamped at or after the
-- earliest pending one of its pass instead of the whole table: a task's winning outcome is
-- its latest by (ts, seq), so it is never older than any outcome of the task, pending or
-- not. Rows written before this column have no time, and are folded against every outcome.
ALTER TABLE units_outcomes_pending ADD COLUMN o_ts TIMESTAMPTZ;
