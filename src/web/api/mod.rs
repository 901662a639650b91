//! JSON API handlers (`/v1/*` ingest, `/api/v1/*` queries).

pub mod costs;
pub mod ingest;
pub mod keys;
pub mod outcomes;
pub mod rejects;
