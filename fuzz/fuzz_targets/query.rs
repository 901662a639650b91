//! Fuzzes `tally::ingest::fuzz::query`: any input must be answered without a panic, and the
//! invariants that entry point checks must hold.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    tally::ingest::fuzz::query(data);
});
