-- The catalog list price of each call split into its lines' sums, before service-tier factors,
-- discounts and rounding: every line (tokens and fees), the input-token lines, the output-token
-- lines. /api/v1/routes divides a call's cost between input and output in these proportions
-- (effective price per million tokens); with them stored that is a sum in SQL instead of
-- re-pricing every event of the range. Events stored before this migration keep NULLs and are
-- re-priced at query time, as before.
ALTER TABLE events ADD COLUMN list_lines_cost DECIMAL(18, 12);
ALTER TABLE events ADD COLUMN list_input_cost DECIMAL(18, 12);
ALTER TABLE events ADD COLUMN list_output_cost DECIMAL(18, 12);
