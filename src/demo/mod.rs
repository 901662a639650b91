//! `tally demo`: realistic synthetic LLM traffic for a first look at the product and for
//! benchmarks. The generator lives in [`mod@generate`]; [`load`] feeds it through the real
//! ingest pipeline; [`budgets`] installs the budgets whose alerts the traffic's stories set off.

pub mod budgets;
pub mod generate;
pub mod load;

pub use generate::{generate, generate_events_into, DemoConfig, DemoData};
