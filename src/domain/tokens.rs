//! Token buckets: the one place where Tally says what a token count means.
//!
//! Every source reports usage its own way (inclusive or exclusive cache counts, reasoning inside
//! or outside output, modality lists). Mappers turn those into [`TokenBuckets`], whose buckets are
//! mutually exclusive: every billed token is in exactly one of them, except `reasoning`, which is
//! a display-only subset of `output`. Totals are always derived from the buckets, never stored.
//! This module does no I/O and knows nothing about prices.

use serde::{Deserialize, Serialize};

/// Mutually exclusive token counts of one call (see `docs/formats.md`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenBuckets {
    /// Input read fresh: text and modalities without a bucket of their own (video, documents).
    pub input_uncached: u64,
    /// Input served from the provider's prompt cache, any modality.
    pub cache_read: u64,
    /// Input written to the cache at the standard (5-minute) rate, or with an unreported TTL.
    pub cache_write_5m: u64,
    /// Input written to the cache with a one-hour TTL.
    pub cache_write_1h: u64,
    /// Generated text, reasoning included; audio and image output excluded.
    pub output: u64,
    /// Reasoning tokens: a subset of `output`, never added to a total.
    pub reasoning: u64,
    /// Uncached audio input.
    pub audio_in: u64,
    /// Audio output.
    pub audio_out: u64,
    /// Uncached image input.
    pub image_in: u64,
    /// Image output.
    pub image_out: u64,
}

impl TokenBuckets {
    /// All input tokens, the inclusive count (OpenTelemetry convention). It selects price tiers.
    pub fn input_total(&self) -> u64 {
        self.input_uncached
            + self.cache_read
            + self.cache_write_5m
            + self.cache_write_1h
            + self.audio_in
            + self.image_in
    }

    /// All output tokens, reasoning, audio and image included.
    pub fn output_total(&self) -> u64 {
        self.output + self.audio_out + self.image_out
    }

    /// Cache writes at any TTL.
    pub fn cache_write_total(&self) -> u64 {
        self.cache_write_5m + self.cache_write_1h
    }

    /// True when no bucket holds a token.
    pub fn is_empty(&self) -> bool {
        self.input_total() == 0 && self.output_total() == 0
    }
}
