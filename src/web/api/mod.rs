//! JSON API handlers (`/v1/*` ingest, `/api/v1/*` queries).

pub mod alerts;
pub mod anomalies;
pub mod billing;
pub mod budgets;
pub mod channels;
pub mod costs;
pub mod ingest;
pub mod keys;
pub mod outcomes;
pub mod rejects;
pub mod reprice;
pub mod routes;
pub mod runs;
pub mod tasks;
pub mod traces;
pub mod unpriced;
pub mod whatif;
