-- Provider billing: imported billing and usage exports, kept apart from events and compared
-- against them (reconciliation). Nothing here is ever added to event totals.
--
-- Money is DECIMAL(38, 18): a 128-bit decimal with 20 digits before the point (any invoice,
-- in any currency, with room for sums) and 18 after it. FOCUS exports carry amounts with many
-- decimals (cloud providers price per token or per second and write 10–16 decimals, some with
-- float artefacts further out); 18 keeps every digit they mean, and rounding beyond it is
-- half-even at 10^-18, far below any currency's smallest unit. Amounts are in the line's own
-- currency; nothing is converted.

-- One row per import (a file or request body), whatever happened to its lines.
CREATE TABLE billing_imports (
    id             VARCHAR PRIMARY KEY,
    project        VARCHAR NOT NULL,
    source_format  VARCHAR NOT NULL,
    kind           VARCHAR NOT NULL,      -- 'cost' (money lines) or 'usage' (volume lines)
    content_sha256 VARCHAR NOT NULL,      -- of format, options and the decoded body
    file_name      VARCHAR,
    imported_at    TIMESTAMPTZ NOT NULL,
    key_id         VARCHAR,
    http_request   VARCHAR,
    period_start   TIMESTAMPTZ,           -- what the import covers (restates), start inclusive
    period_end     TIMESTAMPTZ,           -- end exclusive
    records        BIGINT NOT NULL,
    accepted       BIGINT NOT NULL,
    replaced       BIGINT NOT NULL,
    unchanged      BIGINT NOT NULL,
    rejected       BIGINT NOT NULL,
    skipped        BIGINT NOT NULL
);

-- Money lines: OpenAI costs, Anthropic cost_report, FOCUS rows, mapped CSV rows.
CREATE TABLE billing_lines (
    import_id        VARCHAR NOT NULL,
    line_no          BIGINT NOT NULL,     -- CSV: file line; JSON: result ordinal; Parquet: row
    project          VARCHAR NOT NULL,    -- Tally project (from the writing key)
    source_format    VARCHAR NOT NULL,
    provider         VARCHAR NOT NULL,    -- canonical, as events' provider
    sub_account      VARCHAR,             -- the provider's project / workspace / sub-account
    service          VARCHAR,
    model            VARCHAR,
    line_item        VARCHAR,
    sku              VARCHAR,
    period_start     TIMESTAMPTZ NOT NULL,
    period_end       TIMESTAMPTZ NOT NULL,
    amount           DECIMAL(38, 18) NOT NULL,
    list_amount      DECIMAL(38, 18),
    effective_amount DECIMAL(38, 18),
    currency         VARCHAR NOT NULL,    -- ISO 4217, upper case
    quantity         DECIMAL(38, 18),
    unit             VARCHAR,
    tokens           BIGINT,              -- quantity in tokens, when the unit is a token unit
    charge_category  VARCHAR,             -- FOCUS: Usage, Purchase, Tax, Credit, Adjustment
    charge_class     VARCHAR,             -- FOCUS: Correction or NULL
    tags             VARCHAR,             -- JSON object
    attributes       VARCHAR,             -- JSON object of format-specific fields
    raw              VARCHAR NOT NULL,
    fingerprint      VARCHAR NOT NULL     -- identical content ⇔ identical fingerprint
);

-- Volume lines: OpenAI and Anthropic usage reports (tokens per bucket, request counts). They
-- carry no money; reconciliation compares their volumes with the events' volumes.
CREATE TABLE billing_usage (
    import_id           VARCHAR NOT NULL,
    line_no             BIGINT NOT NULL,
    project             VARCHAR NOT NULL,
    source_format       VARCHAR NOT NULL,
    provider            VARCHAR NOT NULL,
    sub_account         VARCHAR,
    model               VARCHAR,
    api_key_id          VARCHAR,
    service_tier        VARCHAR,
    batch               BOOLEAN,
    period_start        TIMESTAMPTZ NOT NULL,
    period_end          TIMESTAMPTZ NOT NULL,
    input_uncached      BIGINT NOT NULL,
    cache_read          BIGINT NOT NULL,
    cache_write_5m      BIGINT NOT NULL,
    cache_write_1h      BIGINT NOT NULL,
    output              BIGINT NOT NULL,
    audio_in            BIGINT NOT NULL,
    audio_out           BIGINT NOT NULL,
    image_in            BIGINT NOT NULL,
    image_out           BIGINT NOT NULL,
    web_search_requests BIGINT NOT NULL,
    requests            BIGINT,           -- NULL: the source reports no request count
    tags                VARCHAR,
    attributes          VARCHAR,
    raw                 VARCHAR NOT NULL,
    fingerprint         VARCHAR NOT NULL
);
