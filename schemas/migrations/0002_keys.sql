-- API keys: random secrets shown once, stored as SHA-256 digests. A key has a role
-- (ingest, read, admin) and a project; NULL project means every project (admin keys only).
CREATE TABLE api_keys (
    id           VARCHAR PRIMARY KEY,
    name         VARCHAR NOT NULL,
    role         VARCHAR NOT NULL,
    project      VARCHAR,
    prefix       VARCHAR NOT NULL,
    digest       VARCHAR NOT NULL UNIQUE,
    created_at   TIMESTAMPTZ NOT NULL,
    revoked_at   TIMESTAMPTZ,
    last_used_at TIMESTAMPTZ
);

-- Server-side settings that must survive restarts (e.g. the session-signing secret).
CREATE TABLE settings (
    name  VARCHAR PRIMARY KEY,
    value VARCHAR NOT NULL
);

-- Every event belongs to a project; rows stored before projects existed join `default`.
UPDATE events SET project = 'default' WHERE project IS NULL;

-- Rejected records are kept per project too, so a project's key sees only its own.
ALTER TABLE rejects ADD COLUMN project VARCHAR;
