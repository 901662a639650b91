//! Analytics: typed questions in, typed answers out.
//!
//! Each submodule parses its endpoint's parameters into a query type, asks the store, and shapes
//! the answer. The dashboard and the JSON API call the same functions, so their numbers agree by
//! construction. No SQL lives here; it is in `store::queries`.

pub mod costs;
pub mod focus_export;
pub mod params;
pub mod reconciliation;
pub mod time;
