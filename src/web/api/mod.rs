//! JSON API handlers (`/v1/*` ingest, `/api/v1/*` queries).

pub mod alerts;
pub mod budgets;
pub mod channels;
pub mod costs;
pub mod ingest;
pub mod keys;
pub mod rejects;
pub mod traces;
