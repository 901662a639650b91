//! Domain types shared by every part of Tally: events, token buckets, money, dimensions.
//!
//! Nothing here does I/O; these are the nouns the rest of the crate talks in.

pub mod dimension;
pub mod event;
pub mod money;
pub mod outcome;
pub mod tokens;
