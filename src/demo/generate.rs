//! Synthetic LLM traffic for `tally demo` and for benchmarks.
//!
//! A new user judges Tally by the first dashboard they see, so this module makes traffic shaped
//! like a real B2B SaaS company's: eight features owned by four teams, sixty users and
//! twenty-five customers with a heavy head (one customer clearly costs the most), weekday and
//! daytime peaks, mild growth, prompt caching and reasoning where the providers report them,
//! agent runs with tool loops, retries and fallbacks, gateway routes that report their own cost,
//! a few models the price catalog does not know, and three stories for the analytics to find: a
//! runaway agent loop on one day, a provider incident that forces fallbacks, and a prompt change
//! in the last week that makes one feature's spend jump. It emits Tally's native usage events
//! (`schemas/usage-event.schema.json`) in timestamp order and the task outcome records that
//! arrive after the calls.
//!
//! It does no I/O and reads no clock (only [`DemoConfig::default`] looks at the time). The model
//! names and the list prices used for gateway-reported costs are hard-coded, because the demo
//! must not depend on which catalog is loaded; the tests check both against the catalog copy in
//! `third_party/genai-prices/data.json`. One seeded `StdRng` drives every choice in a fixed
//! order and identifiers are hashes of (config, sequence number), so the same config gives
//! byte-identical output whether the caller collects outcomes or streams events.

use std::str::FromStr;

use chrono::{DateTime, SecondsFormat, Utc};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rust_decimal::Decimal;
use serde_json::{Map, Value};

const SEC_MS: i64 = 1_000;
const MIN_MS: i64 = 60_000;
const HOUR_MS: i64 = 3_600_000;
const DAY_MS: i64 = 86_400_000;

/// Calls per day at `scale` 1.0, the figure the per-feature rates below are tuned to.
const CALLS_PER_DAY_AT_SCALE_1: f64 = 4_000.0;

/// What to generate.
#[derive(Debug, Clone, PartialEq)]
pub struct DemoConfig {
    /// Seed of every random choice; the same config always gives the same output.
    pub seed: u64,
    /// Length of the period, ending at `end`.
    pub days: u32,
    /// End of the period (inclusive); no event or outcome is later.
    pub end: DateTime<Utc>,
    /// Volume multiplier: 1.0 is about 4,000 calls a day; benchmarks use larger values.
    pub scale: f64,
}

impl Default for DemoConfig {
    fn default() -> Self {
        let now = Utc::now().timestamp();
        let end = DateTime::from_timestamp(now - now.rem_euclid(60), 0)
            .expect("the current time is a representable timestamp");
        DemoConfig {
            seed: 42,
            days: 30,
            end,
            scale: 1.0,
        }
    }
}

/// Everything `tally demo` ingests.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DemoData {
    /// Native usage events (`schemas/usage-event.schema.json`), timestamp ascending.
    pub events: Vec<Value>,
    /// Task outcomes, timestamp ascending: `{task_id, outcome: success|failure|abandoned,
    /// timestamp, feature, user_id, customer_id?, value?}` (`customer_id` is absent for staging
    /// tasks, `value` is a decimal string on some successes). Some tasks never report one.
    pub outcomes: Vec<Value>,
}

/// One record of the generated traffic.
#[derive(Debug, Clone, PartialEq)]
pub enum Record {
    /// A native usage event.
    Event(Value),
    /// A task outcome, with the project of its task's calls (outcomes name only their task,
    /// and a sender says which project they belong to).
    Outcome {
        project: &'static str,
        outcome: Value,
    },
}

/// Generates events and outcomes in memory.
pub fn generate(cfg: &DemoConfig) -> DemoData {
    // A hint only: capped so an absurd config fails by running, not by one huge allocation.
    let expected = (cfg.scale * CALLS_PER_DAY_AT_SCALE_1 * f64::from(cfg.days)).clamp(0.0, 4e6);
    let mut data = DemoData {
        events: Vec::with_capacity(expected as usize),
        outcomes: Vec::new(),
    };
    generate_into(cfg, &mut |r| match r {
        Record::Event(e) => data.events.push(e),
        Record::Outcome { outcome, .. } => data.outcomes.push(outcome),
    });
    data
}

/// Streaming form for large N: calls `sink` with each event in timestamp order without holding
/// them all. Only the calls of tasks still in flight are buffered (about an hour of traffic).
/// The events are exactly those of [`generate`] for the same config; outcomes are not produced.
pub fn generate_events_into(cfg: &DemoConfig, sink: &mut dyn FnMut(Value)) {
    Generator::new(cfg, false).run(&mut |r| {
        if let Record::Event(e) = r {
            sink(e)
        }
    });
}

/// Streams the events and the outcomes of [`generate`], each kind in timestamp order, holding
/// only the tasks still in flight: a record is passed on once nothing generated later can come
/// before it (an outcome follows its task's calls, and later tasks start later). At 100M events
/// holding every outcome until the end took tens of GB.
pub fn generate_into(cfg: &DemoConfig, sink: &mut dyn FnMut(Record)) {
    Generator::new(cfg, true).run(sink);
}

// ---------------------------------------------------------------------------------------------
// Models
// ---------------------------------------------------------------------------------------------

/// Every model the demo uses. The order matches [`MODELS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum M {
    Gpt4o,
    Gpt4oMini,
    Gpt41,
    Gpt41Mini,
    O3,
    O4Mini,
    Gpt5Mini,
    GptAudioMini,
    Emb3Small,
    Sonnet45,
    Haiku45,
    Opus41,
    GemFlash,
    GemPro,
    MistralLarge,
    MistralSmall,
    DeepSeekChat,
    OrSonnet,
    OrGemFlash,
    OrGemPro,
    OrGpt4oMini,
    OrLlama70,
    AcmeLlama,
    Gpt57Codex,
}

/// How a provider reports prompt caching, which decides the cache buckets of a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cache {
    None,
    /// Anthropic `cache_control`: reads, and writes of everything not read (5 m or 1 h TTL).
    Anthropic,
    /// OpenAI automatic caching: reads only, prefixes of 1024+ tokens in steps of 128.
    OpenAi,
    /// Gemini implicit caching: reads only, not guaranteed.
    Gemini,
    /// DeepSeek context caching on disk: reads in 64-token units.
    DeepSeek,
}

/// Shape of the provider's response id, so `request_id` looks like the real thing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum IdStyle {
    OpenAi,
    Anthropic,
    Google,
    Mistral,
    DeepSeek,
    OpenRouter,
    Vllm,
}

/// List prices in USD per million tokens (web searches per thousand), as text so they are
/// exact. Used only where a gateway reports a cost; the tests compare them with data.json.
#[derive(Debug, Clone, Copy)]
struct PriceText {
    input: &'static str,
    output: &'static str,
    cache_read: Option<&'static str>,
    cache_write: Option<&'static str>,
    cache_write_1h: Option<&'static str>,
    audio_in: Option<&'static str>,
    audio_out: Option<&'static str>,
    web_search_k: Option<&'static str>,
}

const fn price(input: &'static str, output: &'static str) -> PriceText {
    PriceText {
        input,
        output,
        cache_read: None,
        cache_write: None,
        cache_write_1h: None,
        audio_in: None,
        audio_out: None,
        web_search_k: None,
    }
}

#[derive(Debug, Clone, Copy)]
struct ModelSpec {
    provider: &'static str,
    /// The model that served the call (the response's `model`).
    served: &'static str,
    /// What a direct client asks for; OpenAI answers an alias with a dated snapshot.
    requested: &'static str,
    /// The LiteLLM `model_group` the platform team calls it by.
    alias: &'static str,
    cache: Cache,
    /// Smallest prompt the provider caches.
    cache_min: u32,
    /// Whether the route reports 1-hour cache writes apart (OpenRouter does not).
    cache_1h: bool,
    /// Probability that a call reasons, and how much relative to the caller's hint.
    think_p: f64,
    think: f64,
    /// Latency model: base time to first token, output tokens per second, and prefill time per
    /// thousand uncached input tokens.
    ttft_ms: f64,
    tps: f64,
    prefill_ms_per_k: f64,
    ids: IdStyle,
    /// List price for gateway-reported costs; None where no gateway reports a cost.
    price: Option<PriceText>,
    /// The catalog model id this name must match (first match in data.json for `provider`), or
    /// None for the models that are unpriced on purpose.
    #[cfg_attr(not(test), allow(dead_code))]
    catalog: Option<&'static str>,
}

const BASE: ModelSpec = ModelSpec {
    provider: "openai",
    served: "",
    requested: "",
    alias: "",
    cache: Cache::None,
    cache_min: 1024,
    cache_1h: false,
    think_p: 0.0,
    think: 0.0,
    ttft_ms: 500.0,
    tps: 90.0,
    prefill_ms_per_k: 40.0,
    ids: IdStyle::OpenAi,
    price: None,
    catalog: None,
};

const OPENAI: ModelSpec = ModelSpec {
    provider: "openai",
    cache: Cache::OpenAi,
    ids: IdStyle::OpenAi,
    ..BASE
};

const ANTHROPIC: ModelSpec = ModelSpec {
    provider: "anthropic",
    cache: Cache::Anthropic,
    cache_1h: true,
    ids: IdStyle::Anthropic,
    ..BASE
};

const GOOGLE: ModelSpec = ModelSpec {
    provider: "google",
    cache: Cache::Gemini,
    ids: IdStyle::Google,
    ..BASE
};

const OPENROUTER: ModelSpec = ModelSpec {
    provider: "openrouter",
    ids: IdStyle::OpenRouter,
    ..BASE
};

// Prices below are copied from data.json (genai-prices v2, commit 47df840a, 2026-08-21), the
// base tier where a model is tiered (the demo keeps every prompt under the 200k threshold):
//   openai/gpt-4o 2.5/10 cr 1.25; gpt-4o-mini 0.15/0.6 cr 0.075; gpt-4.1 2/8 cr 0.5;
//   gpt-4.1-mini 0.4/1.6 cr 0.1; o4-mini 1.1/4.4 cr 0.275; text-embedding-3-small 0.02;
//   anthropic/claude-sonnet-4-5 3/15 cr 0.3 cw 3.75 cw1h 6 web 10/k;
//   anthropic/claude-opus-4-1 15/75 cr 1.5 cw 18.75 cw1h 30 web 10/k;
//   google/gemini-2.5-flash 0.3/2.5 cr 0.03 audio-in 1;
//   openrouter/anthropic/claude-sonnet-4.5 3/15 cr 0.3 cw 3.75;
//   openrouter/google/gemini-2.5-flash 0.3/2.5 cr 0.075 cw 0.3833;
//   openrouter/google/gemini-2.5-pro 1.25/10 cr 0.31 cw 1.625;
//   openrouter/openai/gpt-4o-mini 0.15/0.6 cr 0.075;
//   openrouter/meta-llama/llama-3.3-70b-instruct 0.05/0.24.
// The test `hard_coded_prices_match_the_catalog` fails when the catalog moves.
const MODELS: [ModelSpec; 24] = [
    ModelSpec {
        served: "gpt-4o-2024-08-06",
        requested: "gpt-4o",
        alias: "gpt-4o",
        ttft_ms: 450.0,
        tps: 90.0,
        prefill_ms_per_k: 45.0,
        price: Some(PriceText {
            cache_read: Some("1.25"),
            ..price("2.5", "10")
        }),
        catalog: Some("gpt-4o"),
        ..OPENAI
    },
    ModelSpec {
        served: "gpt-4o-mini-2024-07-18",
        requested: "gpt-4o-mini",
        alias: "gpt-4o-mini",
        ttft_ms: 350.0,
        tps: 110.0,
        prefill_ms_per_k: 25.0,
        catalog: Some("gpt-4o-mini"),
        ..OPENAI
    },
    ModelSpec {
        served: "gpt-4.1-2025-04-14",
        requested: "gpt-4.1",
        alias: "gpt-4.1",
        ttft_ms: 500.0,
        tps: 85.0,
        prefill_ms_per_k: 45.0,
        price: Some(PriceText {
            cache_read: Some("0.5"),
            ..price("2", "8")
        }),
        catalog: Some("gpt-4.1"),
        ..OPENAI
    },
    ModelSpec {
        served: "gpt-4.1-mini-2025-04-14",
        requested: "gpt-4.1-mini",
        alias: "gpt-4.1-mini",
        ttft_ms: 380.0,
        tps: 120.0,
        prefill_ms_per_k: 25.0,
        price: Some(PriceText {
            cache_read: Some("0.1"),
            ..price("0.4", "1.6")
        }),
        catalog: Some("gpt-4.1-mini"),
        ..OPENAI
    },
    ModelSpec {
        served: "o3-2025-04-16",
        requested: "o3",
        alias: "o3",
        think_p: 1.0,
        think: 1.6,
        ttft_ms: 1500.0,
        tps: 110.0,
        prefill_ms_per_k: 50.0,
        catalog: Some("o3"),
        ..OPENAI
    },
    ModelSpec {
        served: "o4-mini-2025-04-16",
        requested: "o4-mini",
        alias: "o4-mini",
        think_p: 1.0,
        think: 1.0,
        ttft_ms: 900.0,
        tps: 140.0,
        prefill_ms_per_k: 30.0,
        price: Some(PriceText {
            cache_read: Some("0.275"),
            ..price("1.1", "4.4")
        }),
        catalog: Some("o4-mini"),
        ..OPENAI
    },
    ModelSpec {
        served: "gpt-5-mini-2025-08-07",
        requested: "gpt-5-mini",
        alias: "gpt-5-mini",
        think_p: 1.0,
        think: 0.8,
        ttft_ms: 700.0,
        tps: 120.0,
        prefill_ms_per_k: 25.0,
        catalog: Some("gpt-5-mini"),
        ..OPENAI
    },
    // gpt-audio-mini rather than gpt-4o-mini-audio-preview: the catalog has audio prices only
    // for the former, and audio tokens priced as text would understate the voice feature.
    ModelSpec {
        served: "gpt-audio-mini-2025-10-06",
        requested: "gpt-audio-mini",
        alias: "gpt-audio-mini",
        cache: Cache::None,
        ttft_ms: 600.0,
        tps: 60.0,
        prefill_ms_per_k: 30.0,
        catalog: Some("gpt-audio-mini"),
        ..OPENAI
    },
    ModelSpec {
        served: "text-embedding-3-small",
        requested: "text-embedding-3-small",
        alias: "text-embedding-3-small",
        cache: Cache::None,
        price: Some(price("0.02", "0")),
        catalog: Some("text-embedding-3-small"),
        ..OPENAI
    },
    ModelSpec {
        served: "claude-sonnet-4-5-20250929",
        requested: "claude-sonnet-4-5-20250929",
        alias: "claude-sonnet",
        ttft_ms: 1100.0,
        tps: 65.0,
        prefill_ms_per_k: 90.0,
        price: Some(PriceText {
            cache_read: Some("0.3"),
            cache_write: Some("3.75"),
            cache_write_1h: Some("6"),
            web_search_k: Some("10"),
            ..price("3", "15")
        }),
        catalog: Some("claude-sonnet-4-5"),
        ..ANTHROPIC
    },
    ModelSpec {
        served: "claude-haiku-4-5-20251001",
        requested: "claude-haiku-4-5-20251001",
        alias: "claude-haiku",
        cache_min: 2048,
        ttft_ms: 550.0,
        tps: 140.0,
        prefill_ms_per_k: 40.0,
        catalog: Some("claude-haiku-4-5"),
        ..ANTHROPIC
    },
    ModelSpec {
        served: "claude-opus-4-1-20250805",
        requested: "claude-opus-4-1-20250805",
        alias: "claude-opus",
        ttft_ms: 1800.0,
        tps: 35.0,
        prefill_ms_per_k: 140.0,
        price: Some(PriceText {
            cache_read: Some("1.5"),
            cache_write: Some("18.75"),
            cache_write_1h: Some("30"),
            web_search_k: Some("10"),
            ..price("15", "75")
        }),
        catalog: Some("claude-opus-4-1"),
        ..ANTHROPIC
    },
    ModelSpec {
        served: "gemini-2.5-flash",
        requested: "gemini-2.5-flash",
        alias: "gemini-flash",
        think_p: 0.55,
        think: 0.6,
        ttft_ms: 450.0,
        tps: 200.0,
        prefill_ms_per_k: 15.0,
        price: Some(PriceText {
            cache_read: Some("0.03"),
            audio_in: Some("1"),
            ..price("0.3", "2.5")
        }),
        catalog: Some("gemini-2.5-flash"),
        ..GOOGLE
    },
    ModelSpec {
        served: "gemini-2.5-pro",
        requested: "gemini-2.5-pro",
        alias: "gemini-pro",
        cache_min: 2048,
        think_p: 1.0,
        think: 1.0,
        ttft_ms: 1600.0,
        tps: 100.0,
        prefill_ms_per_k: 40.0,
        catalog: Some("gemini-2.5-pro"),
        ..GOOGLE
    },
    ModelSpec {
        provider: "mistral",
        served: "mistral-large-latest",
        requested: "mistral-large-latest",
        alias: "mistral-large",
        ttft_ms: 550.0,
        tps: 70.0,
        prefill_ms_per_k: 50.0,
        ids: IdStyle::Mistral,
        catalog: Some("mistral-large"),
        ..BASE
    },
    ModelSpec {
        provider: "mistral",
        served: "mistral-small-latest",
        requested: "mistral-small-latest",
        alias: "mistral-small",
        ttft_ms: 300.0,
        tps: 150.0,
        prefill_ms_per_k: 20.0,
        ids: IdStyle::Mistral,
        catalog: Some("mistral-small-latest"),
        ..BASE
    },
    ModelSpec {
        provider: "deepseek",
        served: "deepseek-chat",
        requested: "deepseek-chat",
        alias: "deepseek-chat",
        cache: Cache::DeepSeek,
        ttft_ms: 900.0,
        tps: 45.0,
        prefill_ms_per_k: 60.0,
        ids: IdStyle::DeepSeek,
        catalog: Some("deepseek-chat"),
        ..BASE
    },
    ModelSpec {
        served: "anthropic/claude-sonnet-4.5",
        requested: "anthropic/claude-sonnet-4.5",
        alias: "anthropic/claude-sonnet-4.5",
        cache: Cache::Anthropic,
        ttft_ms: 1150.0,
        tps: 65.0,
        prefill_ms_per_k: 90.0,
        price: Some(PriceText {
            cache_read: Some("0.3"),
            cache_write: Some("3.75"),
            ..price("3", "15")
        }),
        catalog: Some("anthropic/claude-sonnet-4.5"),
        ..OPENROUTER
    },
    ModelSpec {
        served: "google/gemini-2.5-flash",
        requested: "google/gemini-2.5-flash",
        alias: "google/gemini-2.5-flash",
        cache: Cache::Gemini,
        think_p: 0.55,
        think: 0.6,
        ttft_ms: 450.0,
        tps: 200.0,
        prefill_ms_per_k: 15.0,
        price: Some(PriceText {
            cache_read: Some("0.075"),
            cache_write: Some("0.3833"),
            ..price("0.3", "2.5")
        }),
        catalog: Some("google/gemini-2.5-flash"),
        ..OPENROUTER
    },
    ModelSpec {
        served: "google/gemini-2.5-pro",
        requested: "google/gemini-2.5-pro",
        alias: "google/gemini-2.5-pro",
        cache: Cache::Gemini,
        cache_min: 2048,
        think_p: 1.0,
        think: 1.0,
        ttft_ms: 1600.0,
        tps: 100.0,
        prefill_ms_per_k: 40.0,
        price: Some(PriceText {
            cache_read: Some("0.31"),
            cache_write: Some("1.625"),
            ..price("1.25", "10")
        }),
        catalog: Some("google/gemini-2.5-pro"),
        ..OPENROUTER
    },
    ModelSpec {
        served: "openai/gpt-4o-mini",
        requested: "openai/gpt-4o-mini",
        alias: "openai/gpt-4o-mini",
        cache: Cache::OpenAi,
        ttft_ms: 380.0,
        tps: 110.0,
        prefill_ms_per_k: 25.0,
        price: Some(PriceText {
            cache_read: Some("0.075"),
            ..price("0.15", "0.6")
        }),
        catalog: Some("openai/gpt-4o-mini"),
        ..OPENROUTER
    },
    ModelSpec {
        served: "meta-llama/llama-3.3-70b-instruct",
        requested: "meta-llama/llama-3.3-70b-instruct",
        alias: "meta-llama/llama-3.3-70b-instruct",
        ttft_ms: 350.0,
        tps: 120.0,
        prefill_ms_per_k: 20.0,
        price: Some(price("0.05", "0.24")),
        catalog: Some("meta-llama/llama-3.3-70b-instruct"),
        ..OPENROUTER
    },
    // Unpriced on purpose: a self-hosted fine-tune no catalog can know, served by vLLM.
    ModelSpec {
        provider: "vllm",
        served: "acme-llama-3.1-70b-ft",
        requested: "acme-llama-3.1-70b-ft",
        alias: "acme-extractor",
        ttft_ms: 250.0,
        tps: 55.0,
        prefill_ms_per_k: 30.0,
        ids: IdStyle::Vllm,
        ..BASE
    },
    // Unpriced on purpose: a model newer than the catalog, tried by the platform team lately.
    ModelSpec {
        served: "gpt-5.7-codex",
        requested: "gpt-5.7-codex",
        alias: "codex-next",
        think_p: 1.0,
        think: 1.2,
        ttft_ms: 1200.0,
        tps: 90.0,
        prefill_ms_per_k: 40.0,
        ..OPENAI
    },
];

fn spec(m: M) -> &'static ModelSpec {
    &MODELS[m as usize]
}

/// Parsed [`PriceText`].
#[derive(Debug, Clone, Copy)]
struct Price {
    input: Decimal,
    output: Decimal,
    cache_read: Decimal,
    cache_write: Decimal,
    cache_write_1h: Decimal,
    audio_in: Decimal,
    audio_out: Decimal,
    web_search_k: Decimal,
}

impl Price {
    fn parse(p: &PriceText) -> Price {
        let d = |s: &str| Decimal::from_str(s).expect("hard-coded price is a decimal");
        let input = d(p.input);
        let output = d(p.output);
        // A missing sub-price falls back to its parent, as in the catalog's own rules.
        let cache_write = p.cache_write.map_or(input, d);
        Price {
            input,
            output,
            cache_read: p.cache_read.map_or(input, d),
            cache_write,
            cache_write_1h: p.cache_write_1h.map_or(cache_write, d),
            audio_in: p.audio_in.map_or(input, d),
            audio_out: p.audio_out.map_or(output, d),
            web_search_k: p.web_search_k.map_or(Decimal::ZERO, d),
        }
    }

    /// List cost of one call from its inclusive counts, split into exclusive buckets.
    fn cost(&self, u: &Usage) -> Decimal {
        let uncached = u.input - u.cache_read - u.cache_write - u.audio_in - u.image_in;
        let cw5m = u.cache_write - u.cache_write_1h;
        let text_out = u.output - u.audio_out;
        let per_mtok = Decimal::from(uncached + u.image_in) * self.input
            + Decimal::from(u.cache_read) * self.cache_read
            + Decimal::from(cw5m) * self.cache_write
            + Decimal::from(u.cache_write_1h) * self.cache_write_1h
            + Decimal::from(u.audio_in) * self.audio_in
            + Decimal::from(text_out) * self.output
            + Decimal::from(u.audio_out) * self.audio_out;
        per_mtok / Decimal::from(1_000_000u32)
            + Decimal::from(u.web_searches) * self.web_search_k / Decimal::from(1_000u32)
    }
}

// ---------------------------------------------------------------------------------------------
// Organisation: features, teams, customers, users
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Feature {
    SupportChat,
    TicketTriage,
    CodeReview,
    Research,
    DocQa,
    EmailDraft,
    DataExtraction,
    EmbeddingsIndex,
}

const FEATURES: [Feature; 8] = [
    Feature::SupportChat,
    Feature::TicketTriage,
    Feature::CodeReview,
    Feature::Research,
    Feature::DocQa,
    Feature::EmailDraft,
    Feature::DataExtraction,
    Feature::EmbeddingsIndex,
];

/// When a feature is busy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Profile {
    /// People in Europe and America at work: two humps in UTC, quiet weekends.
    Interactive,
    /// Developers: like Interactive with emptier weekends.
    DevHours,
    /// Pipelines: a steady trickle plus a nightly batch around 02:00 UTC, every day.
    Nightly,
}

struct FeatureInfo {
    name: &'static str,
    team: &'static str,
    project: &'static str,
    api_key: &'static str,
    agent: Option<&'static str>,
    task_prefix: &'static str,
    streaming: bool,
    profile: Profile,
    /// Tasks (sessions for chat features, runs for agents) per day at scale 1; tuned so the
    /// total is about [`CALLS_PER_DAY_AT_SCALE_1`].
    units_per_day: f64,
    /// Index into [`SERVICE_USERS`] for pipeline features; they have no human user or staging.
    service_user: Option<usize>,
    /// The gateway logs its own cost for this feature (LiteLLM spend logs).
    gateway_cost: bool,
    timeout_ms: i64,
}

const FEATURE_INFO: [FeatureInfo; 8] = [
    FeatureInfo {
        name: "support-chat",
        team: "support",
        project: "support-bot",
        api_key: "key_support_prod",
        agent: None,
        task_prefix: "chat",
        streaming: true,
        profile: Profile::Interactive,
        units_per_day: 460.0,
        service_user: None,
        gateway_cost: false,
        timeout_ms: 60_000,
    },
    FeatureInfo {
        name: "ticket-triage",
        team: "support",
        project: "support-bot",
        api_key: "key_support_prod",
        agent: Some("triage-agent"),
        task_prefix: "tkt",
        streaming: false,
        profile: Profile::Interactive,
        units_per_day: 125.0,
        service_user: None,
        gateway_cost: false,
        timeout_ms: 60_000,
    },
    FeatureInfo {
        name: "code-review",
        team: "platform",
        project: "dev-tools",
        api_key: "key_platform_prod",
        agent: Some("code-review-agent"),
        task_prefix: "pr",
        streaming: true,
        profile: Profile::DevHours,
        units_per_day: 62.0,
        service_user: None,
        gateway_cost: true,
        timeout_ms: 120_000,
    },
    FeatureInfo {
        name: "research",
        team: "growth",
        project: "knowledge-hub",
        api_key: "key_growth_prod",
        agent: Some("research-agent"),
        task_prefix: "rsch",
        streaming: true,
        profile: Profile::Interactive,
        units_per_day: 26.0,
        service_user: None,
        gateway_cost: false,
        timeout_ms: 120_000,
    },
    FeatureInfo {
        name: "doc-qa",
        team: "knowledge",
        project: "knowledge-hub",
        api_key: "key_knowledge_prod",
        agent: None,
        task_prefix: "qa",
        streaming: true,
        profile: Profile::Interactive,
        units_per_day: 330.0,
        service_user: None,
        gateway_cost: false,
        timeout_ms: 60_000,
    },
    FeatureInfo {
        name: "email-draft",
        team: "growth",
        project: "knowledge-hub",
        api_key: "key_growth_prod",
        agent: None,
        task_prefix: "mail",
        streaming: true,
        profile: Profile::Interactive,
        units_per_day: 300.0,
        service_user: None,
        gateway_cost: false,
        timeout_ms: 60_000,
    },
    FeatureInfo {
        name: "data-extraction",
        team: "platform",
        project: "dev-tools",
        api_key: "key_platform_prod",
        agent: None,
        task_prefix: "doc",
        streaming: false,
        profile: Profile::Nightly,
        units_per_day: 370.0,
        service_user: Some(0),
        gateway_cost: true,
        timeout_ms: 90_000,
    },
    FeatureInfo {
        name: "embeddings-index",
        team: "platform",
        project: "dev-tools",
        api_key: "key_platform_prod",
        agent: None,
        task_prefix: "idx",
        streaming: false,
        profile: Profile::Nightly,
        units_per_day: 340.0,
        service_user: Some(1),
        gateway_cost: false,
        timeout_ms: 30_000,
    },
];

impl Feature {
    fn info(self) -> &'static FeatureInfo {
        &FEATURE_INFO[self as usize]
    }
}

const TEAMS: [&str; 4] = ["support", "platform", "growth", "knowledge"];

/// Staging traffic uses one shared key; with the four teams' production keys that makes five.
const STAGING_KEY: &str = "key_staging";
const STAGING_SHARE: f64 = 0.06;

struct Customer {
    name: &'static str,
    region: &'static str,
    /// Relative activity; acme-corp leads by a wide margin so it is the obvious top customer.
    weight: f64,
    users: usize,
}

const fn customer(name: &'static str, region: &'static str, weight: f64, users: usize) -> Customer {
    Customer {
        name,
        region,
        weight,
        users,
    }
}

const CUSTOMERS: [Customer; 25] = [
    customer("acme-corp", "us", 16.0, 7),
    customer("contoso", "eu", 7.0, 4),
    customer("globex", "us", 6.0, 3),
    customer("northwind", "eu", 5.5, 3),
    customer("fabrikam", "us", 5.0, 3),
    customer("initech", "us", 4.5, 2),
    customer("tailspin-toys", "eu", 4.0, 2),
    customer("woodgrove-bank", "eu", 3.6, 2),
    customer("adventure-works", "us", 3.3, 2),
    customer("wide-world-importers", "eu", 3.0, 2),
    customer("litware", "us", 2.8, 2),
    customer("proseware", "us", 2.6, 2),
    customer("fourth-coffee", "eu", 2.4, 2),
    customer("alpine-ski-house", "eu", 2.2, 2),
    customer("blue-yonder-airlines", "us", 2.0, 2),
    customer("coho-winery", "us", 1.8, 1),
    customer("margies-travel", "eu", 1.7, 1),
    customer("lucerne-publishing", "eu", 1.6, 1),
    customer("humongous-insurance", "us", 1.5, 1),
    customer("wingtip-toys", "us", 1.3, 1),
    customer("trey-research", "us", 1.2, 1),
    customer("vanarsdel", "eu", 1.1, 1),
    customer("datum-corp", "us", 1.0, 1),
    customer("relecloud", "us", 0.9, 1),
    customer("munson-pickles", "eu", 0.8, 1),
];

const ACME: usize = 0;
/// The customer whose code-review runs loop away on the anomaly day.
const RUNAWAY_CUSTOMER: usize = 2;

/// Internal developers who use staging, two per team, in [`TEAMS`] order.
const DEVS: [(&str, &str); 8] = [
    ("dev-ana", "eu"),
    ("dev-omar", "us"),
    ("dev-kenji", "us"),
    ("dev-lea", "eu"),
    ("dev-sam", "us"),
    ("dev-priya", "eu"),
    ("dev-tomas", "eu"),
    ("dev-yuki", "us"),
];

const SERVICE_USERS: [&str; 2] = ["svc-etl", "svc-indexer"];

/// Who can appear as a user, resolved once per generator.
struct World {
    /// Customer users first (grouped by customer), then devs, then service accounts.
    user_ids: Vec<String>,
    user_region: Vec<&'static str>,
    /// Per customer: its users' indexes and their cumulative weights (a few heavy users).
    cust_users: Vec<(Vec<usize>, Vec<f64>)>,
    /// Per feature: cumulative customer weights.
    feat_cust: Vec<Vec<f64>>,
    dev_base: usize,
    svc_base: usize,
}

impl World {
    fn new() -> World {
        let mut user_ids = Vec::new();
        let mut user_region = Vec::new();
        let mut cust_users = Vec::new();
        for c in &CUSTOMERS {
            let mut idx = Vec::new();
            let mut cum = Vec::new();
            let mut acc = 0.0;
            for k in 0..c.users {
                let i = user_ids.len();
                // A scrambled but stable number, so ids do not read as a ranking.
                user_ids.push(format!("u_{}", 1000 + (i * 7919) % 9000));
                user_region.push(c.region);
                idx.push(i);
                acc += 1.0 / ((k + 1) as f64).powf(1.3);
                cum.push(acc);
            }
            cust_users.push((idx, cum));
        }
        let dev_base = user_ids.len();
        for (name, region) in DEVS {
            user_ids.push(name.to_string());
            user_region.push(region);
        }
        let svc_base = user_ids.len();
        for name in SERVICE_USERS {
            user_ids.push(name.to_string());
            user_region.push("us");
        }
        let feat_cust = FEATURES
            .iter()
            .map(|f| {
                let mut acc = 0.0;
                CUSTOMERS
                    .iter()
                    .enumerate()
                    .map(|(i, c)| {
                        // acme-corp leans on the expensive agents, which is what makes it the
                        // top customer by cost and not only by volume.
                        let boost = match (i, f) {
                            (ACME, Feature::CodeReview) => 2.5,
                            (ACME, Feature::Research) => 2.0,
                            (ACME, Feature::SupportChat) => 1.3,
                            _ => 1.0,
                        };
                        acc += c.weight * boost;
                        acc
                    })
                    .collect()
            })
            .collect();
        World {
            user_ids,
            user_region,
            cust_users,
            feat_cust,
            dev_base,
            svc_base,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Calls
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    Direct,
    LiteLlm,
    OpenRouter,
}

impl Route {
    fn as_str(self) -> &'static str {
        match self {
            Route::Direct => "direct",
            Route::LiteLlm => "litellm",
            Route::OpenRouter => "openrouter",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tier {
    Standard,
    Batch,
    Priority,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ErrKind {
    RateLimit,
    Timeout,
    Server,
    Overloaded,
    /// The provider answered (and billed) but the app could not parse the JSON it asked for.
    InvalidJson,
}

impl ErrKind {
    fn as_str(self) -> &'static str {
        match self {
            ErrKind::RateLimit => "rate_limit",
            ErrKind::Timeout => "timeout",
            ErrKind::Server => "server_error",
            ErrKind::Overloaded => "overloaded",
            ErrKind::InvalidJson => "invalid_json",
        }
    }

    fn http_status(self) -> u16 {
        match self {
            ErrKind::RateLimit => 429,
            ErrKind::Timeout => 408,
            ErrKind::Server => 500,
            ErrKind::Overloaded => 529,
            ErrKind::InvalidJson => 200,
        }
    }

    /// Whether the provider produced a response (and a response id).
    fn answered(self) -> bool {
        self == ErrKind::InvalidJson
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Meta {
    None,
    PromptVersion(&'static str),
    Template(&'static str),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Link {
    None,
    Retry(u64),
    Fallback(u64),
}

/// Token counts as the native format takes them: inclusive totals and their parts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Usage {
    input: u32,
    cache_read: u32,
    cache_write: u32,
    cache_write_1h: u32,
    output: u32,
    reasoning: u32,
    audio_in: u32,
    audio_out: u32,
    image_in: u32,
    web_searches: u32,
}

/// What the application sends, before a provider decides caching and reasoning.
#[derive(Debug, Clone, Copy, Default)]
struct Shape {
    /// All input tokens, media included.
    input: u32,
    /// Leading tokens identical to a recent request of the same app (cacheable).
    prefix: u32,
    /// Whether that recent request was within the cache's lifetime.
    warm: bool,
    /// Part of a cold prompt the app caches with a 1-hour TTL (system prompt, repo context).
    ttl_1h: u32,
    /// Visible output tokens.
    output: u32,
    /// Reasoning budget hint for models that reason.
    think: u32,
    audio_in: u32,
    audio_out: u32,
    image_in: u32,
    web_searches: u32,
    json_mode: bool,
}

/// Who and what a task is; copied into every call of the task.
#[derive(Debug, Clone, Copy)]
struct TaskCtx {
    feature: Feature,
    customer: Option<usize>,
    user: usize,
    staging: bool,
    task_no: u64,
    /// 0 when the task is not an agent run.
    run_no: u64,
    /// 0 when the task is not part of a chat session.
    session_no: u64,
}

/// One event, compact until it is emitted.
#[derive(Debug, Clone, Copy)]
struct Call {
    ts: i64,
    seq: u64,
    ctx: TaskCtx,
    model: M,
    requested: Option<&'static str>,
    route: Route,
    operation: &'static str,
    tier: Tier,
    usage: Option<Usage>,
    err: Option<ErrKind>,
    latency_ms: Option<u32>,
    ttft_ms: Option<u32>,
    attempt: u8,
    parent: u64,
    link: Link,
    cost: Option<Decimal>,
    meta: Meta,
    voice: bool,
}

/// One logical call of a task: the engine turns it into one or more attempts.
#[derive(Debug, Clone, Copy)]
struct Step {
    primary: M,
    fallback: Option<M>,
    shape: Shape,
    /// Sequence number of the parent call in the run's span tree; 0 for a root.
    parent: u64,
    operation: &'static str,
    tier: Tier,
    meta: Meta,
    /// A voice call: tagged so it can be filtered.
    voice: bool,
}

impl Step {
    fn new(primary: M, fallback: Option<M>, shape: Shape) -> Step {
        Step {
            primary,
            fallback,
            shape,
            parent: 0,
            operation: "chat",
            tier: Tier::Standard,
            meta: Meta::None,
            voice: false,
        }
    }

    fn under(mut self, parent: u64) -> Step {
        self.parent = parent;
        self
    }
}

/// How a logical call ended.
#[derive(Debug, Clone, Copy)]
struct Done {
    ok: bool,
    /// When the last attempt finished.
    end: i64,
    /// Sequence number of the last attempt (the successful one when `ok`).
    seq: u64,
    /// Visible output tokens, which the next call carries as context.
    out: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Success,
    Failure,
    Abandoned,
}

impl Outcome {
    fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Failure => "failure",
            Outcome::Abandoned => "abandoned",
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct OutcomeRec {
    ts: i64,
    ctx: TaskCtx,
    outcome: Outcome,
    value: Option<&'static str>,
}

/// When an outcome arrives, if at all.
#[derive(Debug, Clone, Copy)]
struct Reporting {
    /// Share of finished tasks that never report an outcome.
    open: f64,
    /// Share that reports hours later (a survey, a merged PR, a batch result).
    late: f64,
}

// ---------------------------------------------------------------------------------------------
// The generator
// ---------------------------------------------------------------------------------------------

struct Generator<'c> {
    cfg: &'c DemoConfig,
    rng: StdRng,
    /// Hash of the whole config: prefixes ids so two demos with different configs never
    /// collide on an idempotency key, while the same config re-imports as duplicates.
    tag: u64,
    tag_str: String,
    start: i64,
    end: i64,
    seq: u64,
    tasks: u64,
    runs: u64,
    sessions: u64,
    pending: Vec<Call>,
    keep_outcomes: bool,
    outcomes: Vec<OutcomeRec>,
    world: World,
    prices: Vec<Option<Price>>,
    /// Mean of each profile's raw shape over a week, so rates average to `units_per_day`.
    norm: [f64; 3],
    runaway_at: Option<i64>,
    prompt_change_at: i64,
    incident: (i64, i64),
    new_model_from: i64,
}

fn day_start(t: i64) -> i64 {
    t - t.rem_euclid(DAY_MS)
}

impl<'c> Generator<'c> {
    fn new(cfg: &'c DemoConfig, keep_outcomes: bool) -> Generator<'c> {
        let end = cfg.end.timestamp_millis();
        let start = end - i64::from(cfg.days) * DAY_MS;
        let tag = mix(cfg.seed
            ^ mix(end as u64)
            ^ mix(u64::from(cfg.days) ^ 0xd1)
            ^ mix(cfg.scale.to_bits()).rotate_left(17));
        let days = f64::from(cfg.days);
        // The stories sit at fixed distances from the end (scaled down for short periods) so
        // the last week always shows the prompt change and the month shows the incident and
        // the runaway loop.
        let back =
            |frac: f64, cap: f64| day_start(end - (days * frac).min(cap).floor() as i64 * DAY_MS);
        let runaway = back(0.4, 12.0) + 14 * HOUR_MS + 20 * MIN_MS;
        let incident_start = back(0.3, 9.0) + 15 * HOUR_MS + 10 * MIN_MS;
        let mut norm = [0.0; 3];
        for (i, p) in [Profile::Interactive, Profile::DevHours, Profile::Nightly]
            .into_iter()
            .enumerate()
        {
            let samples = 7 * 24 * 6;
            let sum: f64 = (0..samples)
                .map(|k| raw_shape(p, k as i64 * 10 * MIN_MS))
                .sum();
            norm[i] = sum / samples as f64;
        }
        Generator {
            cfg,
            rng: StdRng::seed_from_u64(cfg.seed),
            tag,
            tag_str: format!("{:06x}", tag & 0xff_ffff),
            start,
            end,
            seq: 0,
            tasks: 0,
            runs: 0,
            sessions: 0,
            pending: Vec::new(),
            keep_outcomes,
            outcomes: Vec::new(),
            world: World::new(),
            prices: MODELS
                .iter()
                .map(|m| m.price.as_ref().map(Price::parse))
                .collect(),
            norm,
            runaway_at: (runaway >= start && runaway < end - HOUR_MS).then_some(runaway),
            prompt_change_at: back(0.2, 6.0) + 10 * HOUR_MS,
            incident: (incident_start, incident_start + 90 * MIN_MS),
            new_model_from: back(1.0 / 3.0, 10.0),
        }
    }

    fn run(&mut self, sink: &mut dyn FnMut(Record)) {
        if self.end <= self.start || !self.cfg.scale.is_finite() || self.cfg.scale <= 0.0 {
            return;
        }
        let mut w = self.start;
        while w < self.end {
            let w_end = (w + HOUR_MS).min(self.end);
            self.spawn_window(w, w_end);
            // Every task spawned later starts at or after w_end, so earlier calls are final.
            self.flush(w_end, sink);
            w = w_end;
        }
        self.flush(i64::MAX, sink);
    }

    /// Passes on the calls and outcomes before `upto`, which are final: every task spawned
    /// later starts at or after it.
    fn flush(&mut self, upto: i64, sink: &mut dyn FnMut(Record)) {
        let mut pending = std::mem::take(&mut self.pending);
        // (ts, seq) is unique, so the order does not depend on the sort's stability.
        pending.sort_unstable_by_key(|c| (c.ts, c.seq));
        let n = pending.partition_point(|c| c.ts < upto);
        for c in &pending[..n] {
            // Calls of tasks still running at `end` have not happened yet.
            if c.ts <= self.end {
                sink(Record::Event(self.event_json(c)));
            }
        }
        pending.drain(..n);
        self.pending = pending;

        let mut outcomes = std::mem::take(&mut self.outcomes);
        outcomes.sort_by_key(|o| (o.ts, o.ctx.task_no));
        let n = outcomes.partition_point(|o| o.ts < upto);
        for o in &outcomes[..n] {
            sink(Record::Outcome {
                project: o.ctx.feature.info().project,
                outcome: self.outcome_json(o),
            });
        }
        outcomes.drain(..n);
        self.outcomes = outcomes;
    }

    // --- arrivals ------------------------------------------------------------------------

    fn spawn_window(&mut self, w: i64, w_end: i64) {
        let mid = w + (w_end - w) / 2;
        let hours = (w_end - w) as f64 / HOUR_MS as f64;
        for f in FEATURES {
            let info = f.info();
            let lambda = info.units_per_day * self.cfg.scale * hours / 24.0
                * self.intensity(info.profile, mid);
            let n = self.poisson(lambda);
            for _ in 0..n {
                let t = w + self.rng.random_range(0..(w_end - w));
                match f {
                    Feature::SupportChat => self.support_chat(t),
                    Feature::TicketTriage => self.ticket_triage(t),
                    Feature::CodeReview => self.code_review(t, false),
                    Feature::Research => self.research(t),
                    Feature::DocQa => self.doc_qa(t),
                    Feature::EmailDraft => self.email_draft(t),
                    Feature::DataExtraction => self.data_extraction(t),
                    Feature::EmbeddingsIndex => self.embeddings_index(t),
                }
            }
        }
        if let Some(at) = self.runaway_at.filter(|at| (w..w_end).contains(at)) {
            // A tool that keeps failing the same test makes the agent loop until the step
            // limit; a handful of runs in one afternoon, all from one customer's repo.
            let n = (5.0 * self.cfg.scale).round().max(1.0) as usize;
            let mut t = at;
            for _ in 0..n {
                self.code_review(t, true);
                t += self.rng.random_range(4 * MIN_MS..15 * MIN_MS);
            }
        }
    }

    /// Relative traffic at `t`: seasonality times growth, averaging 1 over the period.
    fn intensity(&self, p: Profile, t: i64) -> f64 {
        let frac = (t - self.start) as f64 / (self.end - self.start) as f64;
        raw_shape(p, t) / self.norm[p as usize] * (0.9 + 0.2 * frac)
    }

    fn new_ctx(&mut self, f: Feature) -> TaskCtx {
        let info = f.info();
        let staging = info.service_user.is_none() && self.chance(STAGING_SHARE);
        let (customer, user) = if staging {
            let team = TEAMS.iter().position(|t| *t == info.team).unwrap_or(0);
            let dev = self.world.dev_base + 2 * team + usize::from(self.chance(0.4));
            (None, dev)
        } else {
            let c = self.pick_cum(f as usize, None);
            let user = match info.service_user {
                Some(s) => self.world.svc_base + s,
                None => self.pick_cum(f as usize, Some(c)),
            };
            (Some(c), user)
        };
        TaskCtx {
            feature: f,
            customer,
            user,
            staging,
            task_no: self.next_task(),
            run_no: 0,
            session_no: 0,
        }
    }

    /// A customer for feature `f` (when `customer` is None) or a user of `customer`.
    fn pick_cum(&mut self, f: usize, customer: Option<usize>) -> usize {
        let cum = match customer {
            None => &self.world.feat_cust[f],
            Some(c) => &self.world.cust_users[c].1,
        };
        let x = self.rng.random::<f64>() * cum[cum.len() - 1];
        let i = cum.partition_point(|&c| c <= x).min(cum.len() - 1);
        match customer {
            None => i,
            Some(c) => self.world.cust_users[c].0[i],
        }
    }

    // --- features --------------------------------------------------------------------------

    /// A chat session; every user turn is a task. Sonnet/Haiku sessions cache the system prompt
    /// and the growing history; a few sessions are voice calls.
    fn support_chat(&mut self, t0: i64) {
        let mut ctx = self.new_ctx(Feature::SupportChat);
        ctx.session_no = self.next_session();
        let turns = 1 + self.geometric(0.4, 8);
        let voice = self.chance(0.03);
        let primary = if voice {
            M::GptAudioMini
        } else {
            self.pick(&[
                (M::Sonnet45, 0.55),
                (M::Haiku45, 0.30),
                (M::Gpt4oMini, 0.15),
            ])
        };
        let fallback = match primary {
            M::Sonnet45 => Some(M::Gpt41),
            M::Haiku45 => Some(M::Gpt4oMini),
            M::Gpt4oMini => Some(M::Haiku45),
            _ => None,
        };
        let tier = if primary == M::Gpt4oMini && self.chance(0.05) {
            Tier::Priority
        } else {
            Tier::Standard
        };
        let system = if voice { 900 } else { 2600 };
        let mut history = 0u32;
        let mut t = t0;
        let mut last_end = t0;
        for turn in 0..turns {
            if turn > 0 {
                ctx.task_no = self.next_task();
            }
            let question = self.tokens(60.0, 0.8, 5, 2_000);
            let kb = if voice {
                0
            } else {
                self.tokens(1_400.0, 0.6, 0, 10_000)
            };
            let image_in = if !voice && self.chance(0.04) {
                self.tokens(1_200.0, 0.3, 400, 3_000)
            } else {
                0
            };
            let (audio_in, audio_out) = if voice {
                (
                    self.tokens(180.0, 0.5, 20, 1_500),
                    self.tokens(240.0, 0.5, 20, 2_000),
                )
            } else {
                (0, 0)
            };
            // Turn 0 can still hit a system prompt cached by another session moments ago.
            let warm = if turn == 0 {
                self.chance(0.65)
            } else {
                t - last_end < 5 * MIN_MS
            };
            let shape = Shape {
                input: system + history + kb + question + image_in + audio_in,
                prefix: system + history,
                warm,
                output: if voice {
                    60
                } else {
                    self.tokens(260.0, 0.6, 10, 2_000)
                },
                audio_in,
                audio_out,
                image_in,
                ..Shape::default()
            };
            let step = Step {
                tier,
                voice,
                ..Step::new(primary, fallback, shape)
            };
            let done = self.call(ctx, &step, t);
            let outcome = if done.ok {
                self.pick(&[
                    (Outcome::Success, 0.84),
                    (Outcome::Failure, 0.07),
                    (Outcome::Abandoned, 0.09),
                ])
            } else {
                Outcome::Failure
            };
            let value = (outcome == Outcome::Success).then_some("0.40");
            self.report(
                ctx,
                done.end,
                outcome,
                value,
                Reporting {
                    open: 0.12,
                    late: 0.06,
                },
            );
            if outcome != Outcome::Success {
                break;
            }
            history += question + done.out;
            last_end = done.end;
            t = done.end + self.ms(45.0 * SEC_MS as f64, 0.7);
        }
    }

    /// triage-agent: classify a ticket, look up context with tools, write a routing note.
    fn ticket_triage(&mut self, t0: i64) {
        let mut ctx = self.new_ctx(Feature::TicketTriage);
        ctx.run_no = self.next_run();
        let classifier = self.pick(&[
            (M::Haiku45, 0.78),
            (M::AcmeLlama, 0.12),
            (M::Gpt5Mini, 0.10),
        ]);
        let fallback = match classifier {
            M::Haiku45 => M::Gpt41Mini,
            _ => M::Haiku45,
        };
        let system = 1_400;
        let ticket = self.tokens(700.0, 0.7, 50, 12_000);
        // The classification comes back as JSON; a malformed answer is retried.
        let shape = Shape {
            input: system + ticket,
            prefix: system,
            warm: self.chance(0.8),
            output: self.tokens(90.0, 0.4, 10, 400),
            think: self.tokens(350.0, 0.5, 50, 3_000),
            json_mode: true,
            ..Shape::default()
        };
        let root = self.call(ctx, &Step::new(classifier, Some(fallback), shape), t0);
        let mut last = root;
        let mut outcome = Outcome::Failure;
        if root.ok {
            let mut context = system + ticket + root.out;
            let tools = 1 + u32::from(self.chance(0.5)) + u32::from(self.chance(0.2));
            let abandon = self.chance(0.05);
            let mut ok = true;
            for _ in 0..tools {
                let t = last.end + self.ms(600.0, 0.6);
                let add = self.tokens(600.0, 0.6, 30, 8_000);
                let shape = Shape {
                    input: context + add,
                    prefix: context,
                    warm: true,
                    output: self.tokens(120.0, 0.5, 10, 800),
                    ..Shape::default()
                };
                let step = Step::new(M::Haiku45, Some(M::Gpt41Mini), shape).under(root.seq);
                last = self.call(ctx, &step, t);
                if !last.ok {
                    ok = false;
                    break;
                }
                context += add + last.out;
            }
            if ok && abandon {
                outcome = Outcome::Abandoned;
            } else if ok {
                let t = last.end + self.ms(400.0, 0.5);
                let shape = Shape {
                    input: context + 300,
                    prefix: system,
                    warm: self.chance(0.8),
                    output: self.tokens(180.0, 0.5, 20, 1_200),
                    ..Shape::default()
                };
                let step = Step::new(M::Gpt41Mini, Some(M::Haiku45), shape).under(root.seq);
                last = self.call(ctx, &step, t);
                outcome = if last.ok {
                    self.pick(&[(Outcome::Success, 0.94), (Outcome::Failure, 0.06)])
                } else {
                    Outcome::Failure
                };
            }
        }
        let value = (outcome == Outcome::Success).then_some("0.80");
        self.report(
            ctx,
            last.end,
            outcome,
            value,
            Reporting {
                open: 0.08,
                late: 0.05,
            },
        );
    }

    /// code-review-agent: plan over the diff, a tool loop with growing cached context, an
    /// optional o4-mini verifier, then the review. Failed runs are sometimes re-run on the
    /// same task. `runaway` makes the loop run to the step limit (the anomaly).
    fn code_review(&mut self, t0: i64, runaway: bool) {
        let mut ctx = if runaway {
            let c = RUNAWAY_CUSTOMER;
            let user = self.world.cust_users[c].0[0];
            TaskCtx {
                feature: Feature::CodeReview,
                customer: Some(c),
                user,
                staging: false,
                task_no: self.next_task(),
                run_no: 0,
                session_no: 0,
            }
        } else {
            self.new_ctx(Feature::CodeReview)
        };
        let system = 3_500;
        let repo = self.tokens(9_000.0, 0.6, 2_000, 60_000);
        let diff = self.tokens(4_000.0, 0.9, 200, 40_000);
        let ctx_1h = system + repo;
        let is_acme = ctx.customer == Some(ACME);
        let mut t = t0;
        let mut outcome;
        let mut last_end;
        let mut attempt_run = 0;
        loop {
            ctx.run_no = self.next_run();
            let primary = if t >= self.new_model_from && self.chance(0.08) {
                M::Gpt57Codex
            } else if self.chance(if is_acme { 0.3 } else { 0.04 }) {
                M::Opus41
            } else {
                M::Sonnet45
            };
            let fallback = match primary {
                M::Sonnet45 => M::Gpt41,
                _ => M::Sonnet45,
            };
            let shape = Shape {
                input: ctx_1h + diff,
                prefix: ctx_1h,
                // Another run on the same repository within the hour left the 1 h entry warm.
                warm: self.chance(0.35),
                ttl_1h: ctx_1h,
                output: self.tokens(450.0, 0.5, 50, 3_000),
                think: self.tokens(1_500.0, 0.6, 100, 12_000),
                ..Shape::default()
            };
            let root = self.call(ctx, &Step::new(primary, Some(fallback), shape), t);
            let mut last = root;
            outcome = Outcome::Failure;
            if root.ok {
                let steps = if runaway {
                    self.rng.random_range(220..460)
                } else {
                    2 + self.geometric(0.22, 12)
                };
                let abandon_at = if !runaway && self.chance(0.10) {
                    Some(self.rng.random_range(0..steps))
                } else {
                    None
                };
                let mut context = shape.input + root.out;
                let mut broken = false;
                for s in 0..steps {
                    if abandon_at == Some(s) {
                        outcome = Outcome::Abandoned;
                        broken = true;
                        break;
                    }
                    let t = last.end + self.ms(2_500.0, 0.7);
                    let add = if runaway {
                        self.tokens(1_200.0, 0.5, 200, 6_000)
                    } else {
                        self.tokens(1_800.0, 0.8, 50, 30_000)
                    };
                    // Past 170k the agent drops old tool output back to 100k. That rewrites
                    // the cache from the 1 h part on, once per trim rather than every step.
                    let prefix = if context + add > 170_000 {
                        context = 100_000;
                        ctx_1h
                    } else {
                        context
                    };
                    let input = context + add;
                    let shape = Shape {
                        input,
                        prefix,
                        warm: true,
                        output: self.tokens(250.0, 0.6, 20, 2_500),
                        think: self.tokens(800.0, 0.6, 50, 8_000),
                        ..Shape::default()
                    };
                    let step = Step::new(primary, Some(fallback), shape).under(root.seq);
                    last = self.call(ctx, &step, t);
                    if !last.ok {
                        broken = true;
                        break;
                    }
                    context = input + last.out;
                }
                if runaway && !broken {
                    outcome = self.pick(&[(Outcome::Failure, 0.5), (Outcome::Abandoned, 0.5)]);
                } else if !broken {
                    let mut ok = true;
                    if self.chance(0.3) {
                        let shape = Shape {
                            input: diff + self.tokens(3_000.0, 0.6, 200, 20_000),
                            output: self.tokens(300.0, 0.5, 30, 2_000),
                            think: self.tokens(1_800.0, 0.6, 200, 20_000),
                            ..Shape::default()
                        };
                        let step = Step {
                            operation: "responses",
                            ..Step::new(M::O4Mini, None, shape).under(root.seq)
                        };
                        let t = last.end + self.ms(300.0, 0.5);
                        last = self.call(ctx, &step, t);
                        ok = last.ok;
                    }
                    if ok {
                        let shape = Shape {
                            input: context + 300,
                            prefix: context,
                            warm: true,
                            output: self.tokens(1_400.0, 0.5, 100, 6_000),
                            think: self.tokens(1_000.0, 0.6, 100, 8_000),
                            ..Shape::default()
                        };
                        let step = Step::new(primary, Some(fallback), shape).under(root.seq);
                        let t = last.end + self.ms(800.0, 0.5);
                        last = self.call(ctx, &step, t);
                        outcome = if last.ok {
                            self.pick(&[(Outcome::Success, 0.85), (Outcome::Failure, 0.15)])
                        } else {
                            Outcome::Failure
                        };
                    }
                }
            }
            last_end = last.end;
            attempt_run += 1;
            if outcome == Outcome::Failure && !runaway && attempt_run < 2 && self.chance(0.3) {
                t = last_end + self.rng.random_range(2 * MIN_MS..20 * MIN_MS);
                continue;
            }
            break;
        }
        let value = (outcome == Outcome::Success).then_some("12.00");
        self.report(
            ctx,
            last_end,
            outcome,
            value,
            Reporting {
                open: 0.08,
                late: 0.25,
            },
        );
    }

    /// research-agent: plan, then search steps that each fan out to parallel page summaries
    /// (a three-level span tree), an optional o3 synthesis, then the report. Most runs go
    /// through OpenRouter; direct runs use Anthropic's server-side web search.
    fn research(&mut self, t0: i64) {
        let mut ctx = self.new_ctx(Feature::Research);
        ctx.run_no = self.next_run();
        let via_openrouter = self.chance(0.7);
        let (planner, planner_fb, summarizer, summarizer_fb) = if via_openrouter {
            (M::OrSonnet, M::OrGemPro, M::OrGemFlash, M::OrGpt4oMini)
        } else {
            (M::Sonnet45, M::GemPro, M::GemFlash, M::Gpt41Mini)
        };
        let system = 2_500;
        let question = self.tokens(150.0, 0.6, 10, 2_000);
        let shape = Shape {
            input: system + question,
            prefix: system,
            warm: self.chance(0.6),
            output: self.tokens(350.0, 0.5, 40, 2_000),
            ..Shape::default()
        };
        let root = self.call(ctx, &Step::new(planner, Some(planner_fb), shape), t0);
        let mut last = root;
        let mut outcome = Outcome::Failure;
        if root.ok {
            let mut context = shape.input + root.out;
            let steps = 2 + self.geometric(0.3, 6);
            let abandon_at = if self.chance(0.12) {
                Some(self.rng.random_range(0..steps))
            } else {
                None
            };
            let mut ok = true;
            for s in 0..steps {
                if abandon_at == Some(s) {
                    outcome = Outcome::Abandoned;
                    ok = false;
                    break;
                }
                let shape = Shape {
                    input: context + 100,
                    prefix: context,
                    warm: true,
                    output: self.tokens(200.0, 0.5, 20, 1_500),
                    web_searches: if via_openrouter {
                        0
                    } else {
                        1 + self.rng.random_range(0..3)
                    },
                    ..Shape::default()
                };
                let step = Step::new(planner, Some(planner_fb), shape).under(root.seq);
                let t = last.end + self.ms(500.0, 0.5);
                let step_done = self.call(ctx, &step, t);
                last = step_done;
                if !step_done.ok {
                    ok = false;
                    break;
                }
                context += 100 + step_done.out;
                // Page summaries run in parallel under the step's span.
                let pages = 1 + self.rng.random_range(0..3);
                let mut latest = step_done.end;
                for _ in 0..pages {
                    let shape = Shape {
                        input: 400 + self.tokens(7_000.0, 0.6, 500, 60_000),
                        output: self.tokens(350.0, 0.5, 50, 2_000),
                        think: self.tokens(300.0, 0.6, 20, 4_000),
                        ..Shape::default()
                    };
                    let step =
                        Step::new(summarizer, Some(summarizer_fb), shape).under(step_done.seq);
                    let t = step_done.end + self.ms(1_200.0, 0.6);
                    let d = self.call(ctx, &step, t);
                    if d.ok {
                        context += d.out;
                    }
                    if d.end > latest {
                        latest = d.end;
                        last = d;
                    }
                }
                last.end = latest;
            }
            if ok && !via_openrouter && self.chance(0.2) {
                let shape = Shape {
                    input: context,
                    output: self.tokens(900.0, 0.5, 100, 4_000),
                    think: self.tokens(2_500.0, 0.6, 300, 20_000),
                    ..Shape::default()
                };
                let step = Step::new(M::O3, Some(M::GemPro), shape).under(root.seq);
                let t = last.end + self.ms(300.0, 0.5);
                last = self.call(ctx, &step, t);
                ok = last.ok;
                if !ok {
                    outcome = Outcome::Failure;
                }
            }
            if ok {
                let shape = Shape {
                    input: context + 200,
                    prefix: context,
                    warm: true,
                    output: self.tokens(1_800.0, 0.5, 200, 8_000),
                    ..Shape::default()
                };
                let step = Step::new(planner, Some(planner_fb), shape).under(root.seq);
                let t = last.end + self.ms(400.0, 0.5);
                last = self.call(ctx, &step, t);
                outcome = if last.ok {
                    self.pick(&[(Outcome::Success, 0.82), (Outcome::Failure, 0.18)])
                } else {
                    Outcome::Failure
                };
            }
        }
        let value = (outcome == Outcome::Success).then_some("25.00");
        self.report(
            ctx,
            last.end,
            outcome,
            value,
            Reporting {
                open: 0.10,
                late: 0.15,
            },
        );
    }

    /// Retrieval-augmented Q&A in short sessions. The prompt change (v12 → v13) in the last
    /// week retrieves 2.5x the context and moves traffic to gpt-4.1: spend jumps, quality
    /// improves a little, which is what cost per successful task should reveal.
    fn doc_qa(&mut self, t0: i64) {
        let mut ctx = self.new_ctx(Feature::DocQa);
        ctx.session_no = self.next_session();
        let v13 = t0 >= self.prompt_change_at;
        let primary = if v13 {
            self.pick(&[(M::GemFlash, 0.30), (M::Gpt41Mini, 0.20), (M::Gpt41, 0.50)])
        } else {
            self.pick(&[(M::GemFlash, 0.55), (M::Gpt41Mini, 0.35), (M::Gpt41, 0.10)])
        };
        let fallback = match primary {
            M::GemFlash => M::Gpt41Mini,
            M::Gpt41Mini => M::GemFlash,
            _ => M::GemPro,
        };
        let (system, chunk_scale, version, success) = if v13 {
            (2_100, 2.5, "v13", 0.86)
        } else {
            (1_300, 1.0, "v12", 0.78)
        };
        let turns = 1 + self.geometric(0.55, 5);
        let mut history = 0;
        let mut t = t0;
        for turn in 0..turns {
            if turn > 0 {
                ctx.task_no = self.next_task();
            }
            let question = self.tokens(40.0, 0.6, 5, 800);
            let chunks = self.tokens(5_200.0 * chunk_scale, 0.5, 300, 60_000);
            let shape = Shape {
                input: system + history + chunks + question,
                // Retrieved chunks sit right after the system prompt, so only it repeats.
                prefix: system,
                warm: self.chance(0.75),
                output: self.tokens(320.0, 0.6, 20, 2_500),
                think: self.tokens(300.0, 0.7, 20, 4_000),
                ..Shape::default()
            };
            let step = Step {
                meta: Meta::PromptVersion(version),
                ..Step::new(primary, Some(fallback), shape)
            };
            let done = self.call(ctx, &step, t);
            let outcome = if done.ok {
                self.pick(&[
                    (Outcome::Success, success),
                    (Outcome::Failure, 0.92 - success),
                    (Outcome::Abandoned, 0.08),
                ])
            } else {
                Outcome::Failure
            };
            self.report(
                ctx,
                done.end,
                outcome,
                None,
                Reporting {
                    open: 0.15,
                    late: 0.0,
                },
            );
            if outcome == Outcome::Abandoned || !done.ok {
                break;
            }
            history += question + done.out;
            t = done.end + self.ms(40.0 * SEC_MS as f64, 0.8);
        }
    }

    /// One email draft, sometimes regenerated. EU customers mostly get Mistral; US traffic
    /// tries cheaper models, some through OpenRouter.
    fn email_draft(&mut self, t0: i64) {
        let ctx = self.new_ctx(Feature::EmailDraft);
        let eu = self.world.user_region[ctx.user] == "eu";
        let model = if eu {
            self.pick(&[
                (M::MistralLarge, 0.6),
                (M::Gpt4o, 0.3),
                (M::MistralSmall, 0.1),
            ])
        } else {
            self.pick(&[
                (M::Gpt4o, 0.45),
                (M::OrLlama70, 0.2),
                (M::DeepSeekChat, 0.15),
                (M::OrGpt4oMini, 0.2),
            ])
        };
        let fallback = match model {
            M::Gpt4o => M::Haiku45,
            M::MistralLarge => M::Gpt4o,
            M::OrLlama70 => M::OrGpt4oMini,
            M::OrGpt4oMini => M::OrLlama70,
            _ => M::Gpt4oMini,
        };
        let meta = if self.chance(0.35) {
            Meta::Template(self.pick(&[("follow-up", 0.5), ("intro", 0.3), ("renewal", 0.2)]))
        } else {
            Meta::None
        };
        let drafts = 1 + u32::from(self.chance(0.15)) + u32::from(self.chance(0.05));
        let mut t = t0;
        let mut last = None;
        for _ in 0..drafts {
            let shape = Shape {
                input: 900 + self.tokens(900.0, 0.7, 50, 10_000),
                prefix: 900,
                warm: self.chance(0.5),
                output: self.tokens(420.0, 0.45, 50, 2_000),
                ..Shape::default()
            };
            let step = Step {
                meta,
                ..Step::new(model, Some(fallback), shape)
            };
            let done = self.call(ctx, &step, t);
            last = Some(done);
            if !done.ok {
                break;
            }
            t = done.end + self.ms(20.0 * SEC_MS as f64, 0.8);
        }
        let last = last.expect("at least one draft");
        let outcome = if last.ok {
            self.pick(&[
                (Outcome::Success, 0.68),
                (Outcome::Failure, 0.22),
                (Outcome::Abandoned, 0.10),
            ])
        } else {
            Outcome::Failure
        };
        self.report(
            ctx,
            last.end,
            outcome,
            None,
            Reporting {
                open: 0.12,
                late: 0.10,
            },
        );
    }

    /// Document → JSON in a pipeline (LiteLLM, service account). Parse failures are retried and
    /// then fall back; OpenAI calls in the nightly window often go through the Batch API.
    fn data_extraction(&mut self, t0: i64) {
        let ctx = self.new_ctx(Feature::DataExtraction);
        let model = self.pick(&[
            (M::Gpt41Mini, 0.57),
            (M::GemFlash, 0.25),
            (M::AcmeLlama, 0.08),
            (M::Gpt4o, 0.10),
        ]);
        let fallback = match model {
            M::Gpt41Mini => M::GemFlash,
            M::Gpt4o => M::Gpt41,
            _ => M::Gpt41Mini,
        };
        let openai = spec(model).provider == "openai";
        let batch_p = if is_nightly(t0) { 0.6 } else { 0.04 };
        let tier = if openai && self.chance(batch_p) {
            Tier::Batch
        } else {
            Tier::Standard
        };
        let image_in = if model != M::AcmeLlama && self.chance(0.1) {
            self.tokens(1_500.0, 0.4, 300, 6_000)
        } else {
            0
        };
        let shape = Shape {
            input: 1_100 + self.tokens(2_800.0, 0.8, 100, 100_000) + image_in,
            prefix: 1_100,
            warm: self.chance(0.85),
            output: self.tokens(550.0, 0.5, 30, 8_000),
            image_in,
            json_mode: true,
            ..Shape::default()
        };
        let step = Step {
            tier,
            ..Step::new(model, Some(fallback), shape)
        };
        let done = self.call(ctx, &step, t0);
        let outcome = if done.ok {
            self.pick(&[(Outcome::Success, 0.96), (Outcome::Failure, 0.04)])
        } else {
            Outcome::Failure
        };
        let value = (outcome == Outcome::Success).then_some("0.05");
        let late = if tier == Tier::Batch { 0.9 } else { 0.02 };
        self.report(
            ctx,
            done.end,
            outcome,
            value,
            Reporting { open: 0.05, late },
        );
    }

    /// Embedding a batch of document chunks for the search index.
    fn embeddings_index(&mut self, t0: i64) {
        let ctx = self.new_ctx(Feature::EmbeddingsIndex);
        let batch_p = if is_nightly(t0) { 0.5 } else { 0.03 };
        let tier = if self.chance(batch_p) {
            Tier::Batch
        } else {
            Tier::Standard
        };
        let shape = Shape {
            input: self.tokens(5_000.0, 0.9, 50, 200_000),
            ..Shape::default()
        };
        let step = Step {
            operation: "embeddings",
            tier,
            ..Step::new(M::Emb3Small, None, shape)
        };
        let done = self.call(ctx, &step, t0);
        let outcome = if done.ok {
            Outcome::Success
        } else {
            Outcome::Failure
        };
        self.report(
            ctx,
            done.end,
            outcome,
            None,
            Reporting {
                open: 0.3,
                late: 0.0,
            },
        );
    }

    // --- the call engine -------------------------------------------------------------------

    /// Runs one logical call: attempts, retries with backoff (`retry_of`), and one fallback to
    /// another model after repeated failures (`fallback_from`, `model_requested` = original).
    fn call(&mut self, ctx: TaskCtx, step: &Step, t0: i64) -> Done {
        let original = requested_for(route_for(ctx.feature, step.primary), step.primary);
        let mut model = step.primary;
        let mut t = t0;
        let mut attempt: u8 = 1;
        let mut on_model = 0;
        let mut fell_back = false;
        let mut link = Link::None;
        let mut prev_err = None;
        loop {
            let seq = self.next_seq();
            let route = route_for(ctx.feature, model);
            let sp = spec(model);
            let mut shape = step.shape;
            if fell_back {
                // A different provider has none of our prompt cached.
                shape.warm = false;
            }
            let full = self.realize(model, &shape);
            let mut err = self.roll_error(ctx.feature, model, t, &shape, &full, prev_err);
            let info = ctx.feature.info();
            let batch = step.tier == Tier::Batch;
            let mut timing = (None, None);
            if err.is_none_or(ErrKind::answered) {
                timing = self.timing(model, &full, route, step, info.streaming);
                // A long generation runs into the client's timeout like any other slow call.
                if !batch && timing.0.is_some_and(|l| l > info.timeout_ms) {
                    err = Some(ErrKind::Timeout);
                }
            }
            let (usage, latency, ttft) = match err {
                None | Some(ErrKind::InvalidJson) => (Some(full), timing.0, timing.1),
                Some(ErrKind::RateLimit) => (None, Some(self.ms(180.0, 0.5)), None),
                Some(ErrKind::Server) => (Some(Usage::default()), Some(self.ms(900.0, 0.8)), None),
                Some(ErrKind::Overloaded) => {
                    (Some(Usage::default()), Some(self.ms(400.0, 0.6)), None)
                }
                Some(ErrKind::Timeout) => {
                    // The stream was cut at the client's timeout: the prompt was processed and
                    // a little output had arrived.
                    let out = self.rng.random_range(0..=full.output.min(60));
                    let partial = Usage {
                        output: out,
                        reasoning: full.reasoning.min(out),
                        audio_out: 0,
                        ..full
                    };
                    let wait = info.timeout_ms + self.rng.random_range(0..250);
                    let ttft = (info.streaming && out > 0).then(|| self.ms(sp.ttft_ms * 4.0, 0.5));
                    (Some(partial), Some(wait), ttft)
                }
            };
            let (latency, ttft) = if batch { (None, None) } else { (latency, ttft) };
            let answered = err.is_none_or(ErrKind::answered);
            let cost = match (&self.prices[model as usize], answered, step.tier, usage) {
                (Some(p), true, Tier::Standard, Some(u)) => match route {
                    // OpenRouter charges list price plus its ~5.5 % platform fee (as specified
                    // for the demo) and reports it per generation.
                    Route::OpenRouter => Some(round_cost(p.cost(&u) * Decimal::new(1055, 3))),
                    Route::LiteLlm if info.gateway_cost => Some(round_cost(p.cost(&u))),
                    _ => None,
                },
                _ => None,
            };
            let requested = if fell_back {
                Some(original)
            } else {
                Some(requested_for(route, model))
            }
            .filter(|r| *r != sp.served);
            self.pending.push(Call {
                ts: t,
                seq,
                ctx,
                model,
                requested,
                route,
                operation: step.operation,
                tier: step.tier,
                usage,
                err,
                latency_ms: latency.map(|l| l.clamp(0, i64::from(u32::MAX)) as u32),
                ttft_ms: ttft.map(|f| f.clamp(0, i64::from(u32::MAX)) as u32),
                attempt,
                parent: step.parent,
                link,
                cost,
                meta: step.meta,
                voice: step.voice,
            });
            // Batch results have no latency; give the sequence a nominal duration.
            let end = t + latency.unwrap_or(2 * SEC_MS);
            let Some(e) = err else {
                return Done {
                    ok: true,
                    end,
                    seq,
                    out: shape.output,
                };
            };
            on_model += 1;
            // Two tries per model when there is somewhere to fall back to, else three.
            let max_on_model = if fell_back || step.fallback.is_some() {
                2
            } else {
                3
            };
            if on_model < max_on_model {
                link = Link::Retry(seq);
                t = end + self.backoff(e, on_model);
            } else if let (false, Some(fb)) = (fell_back, step.fallback) {
                model = fb;
                fell_back = true;
                on_model = 0;
                link = Link::Fallback(seq);
                prev_err = None;
                t = end + self.rng.random_range(50..400);
                attempt += 1;
                continue;
            } else {
                return Done {
                    ok: false,
                    end,
                    seq,
                    out: 0,
                };
            }
            prev_err = Some(e);
            attempt += 1;
        }
    }

    /// Applies a provider's caching and reasoning to what the app sent.
    fn realize(&mut self, m: M, s: &Shape) -> Usage {
        let sp = spec(m);
        let media = s.image_in + s.audio_in;
        let text_in = s.input - media;
        let prefix = s.prefix.min(text_in);
        let mut u = Usage {
            input: s.input,
            audio_in: s.audio_in,
            image_in: s.image_in,
            web_searches: if sp.provider == "anthropic" {
                s.web_searches
            } else {
                0
            },
            ..Usage::default()
        };
        match sp.cache {
            Cache::Anthropic if s.input >= sp.cache_min => {
                // The breakpoint sits on the last message: everything before it is read or
                // written, only the last few tokens are plain input.
                let rest = text_in - if s.warm { prefix } else { 0 };
                let tail = self.rng.random_range(3..40).min(rest);
                if s.warm && prefix > 0 {
                    u.cache_read = prefix;
                    u.cache_write = rest - tail;
                } else {
                    u.cache_write = rest - tail;
                    if sp.cache_1h {
                        u.cache_write_1h = s.ttl_1h.min(u.cache_write);
                    }
                }
            }
            Cache::OpenAi if s.warm && prefix >= sp.cache_min => {
                u.cache_read = prefix / 128 * 128;
            }
            // Implicit caching is best effort: a warm prefix is not always found.
            Cache::Gemini if s.warm && prefix >= sp.cache_min && self.chance(0.75) => {
                u.cache_read = prefix;
            }
            Cache::DeepSeek if s.warm => u.cache_read = prefix / 64 * 64,
            _ => {}
        }
        if sp.think_p > 0.0 && self.chance(sp.think_p) {
            let hint = if s.think > 0 { s.think } else { 150 + s.output };
            u.reasoning = self.tokens(f64::from(hint) * sp.think, 0.45, 10, 60_000);
        }
        u.output = s.output + u.reasoning + s.audio_out;
        u.audio_out = s.audio_out;
        u
    }

    fn roll_error(
        &mut self,
        f: Feature,
        m: M,
        t: i64,
        s: &Shape,
        u: &Usage,
        prev: Option<ErrKind>,
    ) -> Option<ErrKind> {
        let sp = spec(m);
        // Rate limits follow load; once hit, the next try soon after is likely to hit again.
        let p_rate = match prev {
            Some(ErrKind::RateLimit) => 0.33,
            _ if f == Feature::EmbeddingsIndex => {
                0.004 + 0.01 * self.intensity(Profile::Nightly, t)
            }
            _ => 0.004 + 0.007 * self.intensity(Profile::Interactive, t),
        };
        let p_server = match sp.provider {
            "anthropic" => 0.006,
            "vllm" => 0.012,
            _ => 0.003,
        };
        let p_overloaded =
            if sp.provider == "anthropic" && (self.incident.0..self.incident.1).contains(&t) {
                0.45
            } else {
                0.0
            };
        let p_timeout = 0.002
            + if u.reasoning > 0 { 0.004 } else { 0.0 }
            + if u.output > 2_000 { 0.004 } else { 0.0 }
            + if sp.provider == "vllm" { 0.006 } else { 0.0 };
        let x: f64 = self.rng.random();
        let mut acc = p_rate;
        if x < acc {
            return Some(ErrKind::RateLimit);
        }
        acc += p_server;
        if x < acc {
            return Some(ErrKind::Server);
        }
        acc += p_overloaded;
        if x < acc {
            return Some(ErrKind::Overloaded);
        }
        acc += p_timeout;
        if x < acc {
            return Some(ErrKind::Timeout);
        }
        if s.json_mode {
            let p_json = match m {
                M::AcmeLlama => 0.12,
                M::GemFlash => 0.06,
                M::Gpt41Mini => 0.05,
                _ => 0.02,
            };
            if self.chance(p_json) {
                return Some(ErrKind::InvalidJson);
            }
        }
        None
    }

    /// Total latency and time to first token, both in ms; None where the source would not
    /// have them (batch results, non-streaming ttft).
    fn timing(
        &mut self,
        m: M,
        u: &Usage,
        route: Route,
        step: &Step,
        streaming: bool,
    ) -> (Option<i64>, Option<i64>) {
        let sp = spec(m);
        let overhead = match route {
            Route::Direct => 0.0,
            Route::LiteLlm => self.rng.random_range(8.0..35.0),
            Route::OpenRouter => self.rng.random_range(40.0..160.0),
        };
        if step.operation == "embeddings" {
            let l = (40.0 + f64::from(u.input) * 0.012) * self.lognormal(1.0, 0.3) + overhead;
            return (Some(l.round() as i64), None);
        }
        let uncached = f64::from(u.input) - 0.85 * f64::from(u.cache_read);
        let mut ttft = sp.ttft_ms * self.lognormal(1.0, 0.35)
            + uncached / 1000.0 * sp.prefill_ms_per_k
            + f64::from(u.reasoning) / (sp.tps * 1.3) * 1000.0;
        let visible = f64::from(u.output - u.reasoning);
        let mut total = ttft + visible / sp.tps * 1000.0 * self.lognormal(1.0, 0.25) + 20.0;
        if self.chance(0.015) {
            total *= self.rng.random_range(2.0..4.0);
        }
        if step.tier == Tier::Priority {
            ttft *= 0.8;
            total *= 0.8;
        }
        let ttft = streaming.then_some((ttft + overhead).round() as i64);
        (Some((total + overhead).round() as i64), ttft)
    }

    fn backoff(&mut self, e: ErrKind, tries: u32) -> i64 {
        let jitter = self.rng.random_range(0.5..1.5);
        let base = match e {
            ErrKind::RateLimit => 1_000.0 * f64::from(1u32 << tries.min(5)),
            ErrKind::Server | ErrKind::Overloaded => 500.0 * f64::from(1u32 << tries.min(5)),
            ErrKind::Timeout => 200.0,
            ErrKind::InvalidJson => 50.0,
        };
        (base * jitter).round() as i64
    }

    /// Records a task's outcome unless it stays open or arrives after `end`. The random draws
    /// happen even when outcomes are not kept, so events are the same in both modes.
    fn report(
        &mut self,
        ctx: TaskCtx,
        last_end: i64,
        outcome: Outcome,
        value: Option<&'static str>,
        r: Reporting,
    ) {
        let open = self.chance(r.open);
        let delay = if self.chance(r.late) {
            self.rng.random_range(HOUR_MS..12 * HOUR_MS)
        } else {
            self.rng.random_range(2 * SEC_MS..90 * SEC_MS)
        };
        let ts = last_end + delay;
        if open || !self.keep_outcomes || ts > self.end {
            return;
        }
        self.outcomes.push(OutcomeRec {
            ts,
            ctx,
            outcome,
            value,
        });
    }

    // --- output ----------------------------------------------------------------------------

    fn event_json(&self, c: &Call) -> Value {
        let sp = spec(c.model);
        let info = c.ctx.feature.info();
        let mut m = Map::new();
        m.insert("id".into(), Value::String(self.event_id(c.seq)));
        m.insert("timestamp".into(), Value::String(fmt_ts(c.ts)));
        m.insert("provider".into(), sp.provider.into());
        m.insert("model".into(), sp.served.into());
        if let Some(r) = c.requested {
            m.insert("model_requested".into(), r.into());
        }
        m.insert("operation".into(), c.operation.into());
        m.insert("route".into(), c.route.as_str().into());
        match c.tier {
            Tier::Standard => {}
            Tier::Batch => {
                m.insert("service_tier".into(), "batch".into());
            }
            Tier::Priority => {
                m.insert("service_tier".into(), "priority".into());
            }
        }
        if c.err.is_none_or(ErrKind::answered) {
            m.insert("request_id".into(), Value::String(self.request_id(c)));
        }
        if let Some(u) = &c.usage {
            let mut um = Map::new();
            um.insert("input_tokens".into(), u.input.into());
            um.insert("output_tokens".into(), u.output.into());
            let parts = [
                ("cache_read_tokens", u.cache_read),
                ("cache_write_tokens", u.cache_write),
                ("cache_write_1h_tokens", u.cache_write_1h),
                ("reasoning_tokens", u.reasoning),
                ("audio_input_tokens", u.audio_in),
                ("audio_output_tokens", u.audio_out),
                ("image_input_tokens", u.image_in),
                ("web_search_requests", u.web_searches),
            ];
            for (k, v) in parts {
                if v > 0 {
                    um.insert(k.into(), v.into());
                }
            }
            m.insert("usage".into(), Value::Object(um));
        }
        if let Some(cost) = c.cost {
            m.insert("cost".into(), Value::String(cost.to_string()));
            m.insert("currency".into(), "USD".into());
        }
        match c.err {
            None => {
                m.insert("status".into(), "success".into());
                m.insert("http_status".into(), 200.into());
            }
            Some(e) => {
                m.insert("status".into(), "error".into());
                m.insert("error_type".into(), e.as_str().into());
                m.insert("http_status".into(), e.http_status().into());
            }
        }
        if let Some(l) = c.latency_ms {
            m.insert("latency_ms".into(), l.into());
        }
        if let Some(f) = c.ttft_ms {
            m.insert("ttft_ms".into(), f.into());
        }
        m.insert(
            "user_id".into(),
            self.world.user_ids[c.ctx.user].as_str().into(),
        );
        m.insert("team_id".into(), info.team.into());
        m.insert("project".into(), info.project.into());
        let key = if c.ctx.staging {
            STAGING_KEY
        } else {
            info.api_key
        };
        m.insert("api_key_id".into(), key.into());
        if let Some(cu) = c.ctx.customer {
            m.insert("customer_id".into(), CUSTOMERS[cu].name.into());
        }
        m.insert("feature".into(), info.name.into());
        let mut tags = vec![
            Value::from(if c.ctx.staging { "staging" } else { "prod" }),
            Value::from(self.world.user_region[c.ctx.user]),
        ];
        if c.voice {
            tags.push(Value::from("voice"));
        }
        m.insert("tags".into(), Value::Array(tags));
        m.insert("task_id".into(), Value::String(self.task_id(&c.ctx)));
        if c.ctx.run_no > 0 {
            m.insert(
                "run_id".into(),
                Value::String(format!("run-{}-{}", self.tag_str, c.ctx.run_no)),
            );
            if let Some(agent) = info.agent {
                m.insert("agent".into(), agent.into());
            }
            m.insert(
                "trace_id".into(),
                Value::String(self.trace_id(c.ctx.run_no)),
            );
            m.insert("span_id".into(), Value::String(self.span_id(c.seq)));
            if c.parent > 0 {
                m.insert(
                    "parent_span_id".into(),
                    Value::String(self.span_id(c.parent)),
                );
            }
        }
        if c.ctx.session_no > 0 {
            m.insert(
                "session_id".into(),
                Value::String(format!("sess-{}-{}", self.tag_str, c.ctx.session_no)),
            );
        }
        m.insert("attempt".into(), c.attempt.into());
        match c.link {
            Link::None => {}
            Link::Retry(s) => {
                m.insert("retry_of".into(), Value::String(self.event_id(s)));
            }
            Link::Fallback(s) => {
                m.insert("fallback_from".into(), Value::String(self.event_id(s)));
            }
        }
        match c.meta {
            Meta::None => {}
            Meta::PromptVersion(v) => {
                m.insert("metadata".into(), meta_obj("prompt_version", v));
            }
            Meta::Template(v) => {
                m.insert("metadata".into(), meta_obj("template", v));
            }
        }
        Value::Object(m)
    }

    fn outcome_json(&self, o: &OutcomeRec) -> Value {
        let mut m = Map::new();
        m.insert("task_id".into(), Value::String(self.task_id(&o.ctx)));
        m.insert("outcome".into(), o.outcome.as_str().into());
        m.insert("timestamp".into(), Value::String(fmt_ts(o.ts)));
        m.insert("feature".into(), o.ctx.feature.info().name.into());
        m.insert(
            "user_id".into(),
            self.world.user_ids[o.ctx.user].as_str().into(),
        );
        if let Some(c) = o.ctx.customer {
            m.insert("customer_id".into(), CUSTOMERS[c].name.into());
        }
        if let Some(v) = o.value {
            m.insert("value".into(), v.into());
        }
        Value::Object(m)
    }

    fn event_id(&self, seq: u64) -> String {
        format!("demo-{}-{}", self.tag_str, seq)
    }

    fn task_id(&self, ctx: &TaskCtx) -> String {
        format!(
            "{}-{}-{}",
            ctx.feature.info().task_prefix,
            self.tag_str,
            ctx.task_no
        )
    }

    fn trace_id(&self, run_no: u64) -> String {
        let mut s = IdStream::new(self.tag, run_no, 0x7472);
        format!("{:016x}{:016x}", s.next(), s.next())
    }

    fn span_id(&self, seq: u64) -> String {
        // Zero is not a valid span id in W3C trace context.
        format!("{:016x}", IdStream::new(self.tag, seq, 0x7370).next() | 1)
    }

    fn request_id(&self, c: &Call) -> String {
        let mut s = IdStream::new(self.tag, c.seq, 0x7265);
        const B62: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
        const B58: &[u8] = b"123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";
        const B64: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        const HEX: &[u8] = b"0123456789abcdef";
        match spec(c.model).ids {
            IdStyle::OpenAi if c.operation == "responses" => format!("resp_{}", s.chars(HEX, 48)),
            IdStyle::OpenAi if c.operation == "embeddings" => format!("req_{}", s.chars(HEX, 32)),
            IdStyle::OpenAi => format!("chatcmpl-{}", s.chars(B62, 29)),
            IdStyle::Anthropic => format!("msg_01{}", s.chars(B58, 22)),
            IdStyle::Google => s.chars(B64, 23),
            IdStyle::Mistral => s.chars(HEX, 32),
            IdStyle::DeepSeek => {
                let h = s.chars(HEX, 32);
                format!(
                    "{}-{}-4{}-a{}-{}",
                    &h[0..8],
                    &h[8..12],
                    &h[13..16],
                    &h[17..20],
                    &h[20..32]
                )
            }
            IdStyle::OpenRouter => format!("gen-{}-{}", c.ts.div_euclid(1000), s.chars(B62, 20)),
            IdStyle::Vllm => format!("chatcmpl-{}", s.chars(HEX, 32)),
        }
    }

    // --- small helpers -------------------------------------------------------------------

    fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    fn next_task(&mut self) -> u64 {
        self.tasks += 1;
        self.tasks
    }

    fn next_run(&mut self) -> u64 {
        self.runs += 1;
        self.runs
    }

    fn next_session(&mut self) -> u64 {
        self.sessions += 1;
        self.sessions
    }

    fn chance(&mut self, p: f64) -> bool {
        self.rng.random::<f64>() < p
    }

    fn pick<T: Copy>(&mut self, items: &[(T, f64)]) -> T {
        let total: f64 = items.iter().map(|(_, w)| w).sum();
        let mut x = self.rng.random::<f64>() * total;
        for (item, w) in items {
            if x < *w {
                return *item;
            }
            x -= w;
        }
        items[items.len() - 1].0
    }

    fn normal(&mut self) -> f64 {
        let u1: f64 = 1.0 - self.rng.random::<f64>();
        let u2: f64 = self.rng.random();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }

    fn lognormal(&mut self, median: f64, sigma: f64) -> f64 {
        median * (sigma * self.normal()).exp()
    }

    /// A log-normal token count, clamped to a plausible range.
    fn tokens(&mut self, median: f64, sigma: f64, lo: u32, hi: u32) -> u32 {
        (self.lognormal(median, sigma).round() as i64).clamp(i64::from(lo), i64::from(hi)) as u32
    }

    /// A log-normal duration in ms.
    fn ms(&mut self, median: f64, sigma: f64) -> i64 {
        self.lognormal(median, sigma).round().max(1.0) as i64
    }

    /// Failures before the first success, capped.
    fn geometric(&mut self, p: f64, cap: u32) -> u32 {
        let mut n = 0;
        while n < cap && !self.chance(p) {
            n += 1;
        }
        n
    }

    fn poisson(&mut self, lambda: f64) -> u64 {
        if lambda <= 0.0 {
            return 0;
        }
        if lambda > 30.0 {
            return (lambda + lambda.sqrt() * self.normal()).round().max(0.0) as u64;
        }
        let l = (-lambda).exp();
        let mut k = 0;
        let mut p = 1.0;
        loop {
            p *= self.rng.random::<f64>();
            if p < l {
                return k;
            }
            k += 1;
        }
    }
}

fn route_for(f: Feature, m: M) -> Route {
    if spec(m).provider == "openrouter" {
        Route::OpenRouter
    } else if f.info().team == "platform" {
        // The platform team sends everything through its LiteLLM proxy.
        Route::LiteLlm
    } else {
        Route::Direct
    }
}

fn requested_for(route: Route, m: M) -> &'static str {
    match route {
        Route::LiteLlm => spec(m).alias,
        _ => spec(m).requested,
    }
}

fn is_nightly(t: i64) -> bool {
    let h = t.rem_euclid(DAY_MS) / HOUR_MS;
    h < 5
}

/// Traffic shape by time of day (UTC) and weekday, before normalisation.
fn raw_shape(p: Profile, t: i64) -> f64 {
    let hour = t.rem_euclid(DAY_MS) as f64 / HOUR_MS as f64;
    // 1970-01-01 was a Thursday; index 0 is Monday.
    let dow = (t.div_euclid(DAY_MS) + 3).rem_euclid(7) as usize;
    let hump = |centre: f64, width: f64| {
        let d = (hour - centre).abs();
        let d = d.min(24.0 - d);
        (-(d * d) / (2.0 * width * width)).exp()
    };
    match p {
        Profile::Interactive => {
            let week = [1.0, 1.05, 1.05, 1.0, 0.9, 0.35, 0.3][dow];
            (0.07 + 0.6 * hump(10.0, 2.6) + 0.8 * hump(16.0, 3.0)) * week
        }
        Profile::DevHours => {
            let week = [1.0, 1.05, 1.05, 1.0, 0.85, 0.15, 0.12][dow];
            (0.04 + 0.7 * hump(10.0, 2.3) + 0.8 * hump(16.5, 2.6)) * week
        }
        Profile::Nightly => {
            let week = [1.0, 1.0, 1.0, 1.0, 1.0, 0.8, 0.7][dow];
            (0.35 + 2.8 * hump(2.0, 1.0)) * week
        }
    }
}

fn round_cost(d: Decimal) -> Decimal {
    d.round_dp(10).normalize()
}

fn meta_obj(k: &str, v: &str) -> Value {
    let mut m = Map::new();
    m.insert(k.into(), v.into());
    Value::Object(m)
}

fn fmt_ts(ms: i64) -> String {
    DateTime::from_timestamp_millis(ms)
        .expect("demo timestamps are in range")
        .to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn mix(mut z: u64) -> u64 {
    // splitmix64's finaliser: cheap, well spread, stable across platforms and versions.
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Deterministic pseudo-random identifiers, independent of the traffic RNG, so an id depends
/// only on (config, what it names).
struct IdStream(u64);

impl IdStream {
    fn new(tag: u64, n: u64, salt: u64) -> IdStream {
        IdStream(mix(tag ^ mix(n ^ (salt << 48))))
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        mix(self.0)
    }

    fn chars(&mut self, alphabet: &[u8], n: usize) -> String {
        (0..n)
            .map(|_| char::from(alphabet[(self.next() % alphabet.len() as u64) as usize]))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    //! The demo is only useful if Tally accepts every record and the stories are really in the
    //! data, so these tests check the schema's rules, the links between calls, the catalog, the
    //! intended shares and the anomalies on a month of traffic.

    use std::collections::{BTreeMap, HashMap, HashSet};
    use std::sync::{Mutex, OnceLock};

    use chrono::{Datelike, NaiveDate, NaiveTime};
    use regex::Regex;

    use super::*;

    fn month_cfg() -> DemoConfig {
        DemoConfig {
            seed: 42,
            days: 30,
            end: DateTime::parse_from_rfc3339("2026-11-20T18:37:00Z")
                .unwrap()
                .with_timezone(&Utc),
            scale: 1.0,
        }
    }

    fn month() -> &'static DemoData {
        static DATA: OnceLock<DemoData> = OnceLock::new();
        DATA.get_or_init(|| generate(&month_cfg()))
    }

    /// Reads a JSON file relative to the crate: the same test runs in this crate and in tally.
    fn read_json(candidates: &[&str]) -> Value {
        let base = crate::test_root();
        let base = base.display();
        for c in candidates {
            if let Ok(text) = std::fs::read_to_string(format!("{base}/{c}")) {
                return serde_json::from_str(&text).unwrap_or_else(|e| panic!("{c}: {e}"));
            }
        }
        panic!("none of {candidates:?} exists under {base}")
    }

    fn schema() -> &'static Value {
        static S: OnceLock<Value> = OnceLock::new();
        S.get_or_init(|| {
            read_json(&[
                "schemas/usage-event.schema.json",
                "../main/schemas/usage-event.schema.json",
            ])
        })
    }

    fn catalog() -> &'static Value {
        static C: OnceLock<Value> = OnceLock::new();
        C.get_or_init(|| read_json(&["third_party/genai-prices/data.json"]))
    }

    fn s<'a>(e: &'a Value, k: &str) -> Option<&'a str> {
        e.get(k).and_then(Value::as_str)
    }

    fn n(e: &Value, k: &str) -> u64 {
        e.get(k).and_then(Value::as_u64).unwrap_or(0)
    }

    fn ts(e: &Value) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s(e, "timestamp").unwrap())
            .unwrap()
            .with_timezone(&Utc)
    }

    fn regex(pattern: &str) -> Regex {
        static MEMO: OnceLock<Mutex<HashMap<String, Regex>>> = OnceLock::new();
        let mut memo = MEMO.get_or_init(Mutex::default).lock().unwrap();
        memo.entry(pattern.to_string())
            .or_insert_with(|| Regex::new(pattern).unwrap())
            .clone()
    }

    /// A validator for the JSON Schema keywords the event schema uses.
    fn validate(schema: &Value, v: &Value, path: &str) -> Result<(), String> {
        if let Some(alts) = schema.get("oneOf").and_then(Value::as_array) {
            let hits = alts.iter().filter(|a| validate(a, v, path).is_ok()).count();
            if hits != 1 {
                return Err(format!("{path}: matches {hits} branches of oneOf"));
            }
        }
        if let Some(allowed) = schema.get("enum").and_then(Value::as_array) {
            if !allowed.contains(v) {
                return Err(format!("{path}: {v} not in enum"));
            }
        }
        if let Some(t) = schema.get("type").and_then(Value::as_str) {
            let ok = match t {
                "object" => v.is_object(),
                "string" => v.is_string(),
                "integer" => v.is_u64() || v.is_i64(),
                "number" => v.is_number(),
                "array" => v.is_array(),
                "boolean" => v.is_boolean(),
                other => panic!("validator does not know type {other}"),
            };
            if !ok {
                return Err(format!("{path}: {v} is not a {t}"));
            }
        }
        if let Some(text) = v.as_str() {
            let len = text.chars().count() as u64;
            if schema
                .get("minLength")
                .and_then(Value::as_u64)
                .is_some_and(|m| len < m)
            {
                return Err(format!("{path}: too short"));
            }
            if schema
                .get("maxLength")
                .and_then(Value::as_u64)
                .is_some_and(|m| len > m)
            {
                return Err(format!("{path}: too long"));
            }
            if let Some(p) = schema.get("pattern").and_then(Value::as_str) {
                if !regex(p).is_match(text) {
                    return Err(format!("{path}: {text:?} does not match {p}"));
                }
            }
            if s(schema, "format") == Some("date-time")
                && DateTime::parse_from_rfc3339(text).is_err()
            {
                return Err(format!("{path}: {text:?} is not RFC 3339"));
            }
        }
        if let Some(x) = v.as_f64() {
            if schema
                .get("minimum")
                .and_then(Value::as_f64)
                .is_some_and(|m| x < m)
            {
                return Err(format!("{path}: {x} below minimum"));
            }
            if schema
                .get("maximum")
                .and_then(Value::as_f64)
                .is_some_and(|m| x > m)
            {
                return Err(format!("{path}: {x} above maximum"));
            }
        }
        if let Some(items) = v.as_array() {
            if schema
                .get("maxItems")
                .and_then(Value::as_u64)
                .is_some_and(|m| items.len() as u64 > m)
            {
                return Err(format!("{path}: too many items"));
            }
            if let Some(item_schema) = schema.get("items") {
                for (i, item) in items.iter().enumerate() {
                    validate(item_schema, item, &format!("{path}[{i}]"))?;
                }
            }
        }
        if let Some(obj) = v.as_object() {
            for r in schema
                .get("required")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                if !obj.contains_key(r.as_str().unwrap()) {
                    return Err(format!("{path}: missing {r}"));
                }
            }
            let props = schema.get("properties").and_then(Value::as_object);
            for (k, val) in obj {
                match props.and_then(|p| p.get(k)) {
                    Some(ps) => validate(ps, val, &format!("{path}.{k}"))?,
                    None if schema.get("additionalProperties") == Some(&Value::Bool(false)) => {
                        return Err(format!("{path}: unknown field {k}"));
                    }
                    None => {}
                }
            }
        }
        Ok(())
    }

    #[test]
    fn same_config_gives_the_same_bytes() {
        let cfg = DemoConfig {
            days: 3,
            scale: 0.5,
            ..month_cfg()
        };
        let a = generate(&cfg);
        let b = generate(&cfg);
        assert!(!a.events.is_empty() && !a.outcomes.is_empty());
        assert_eq!(
            serde_json::to_string(&a.events).unwrap(),
            serde_json::to_string(&b.events).unwrap()
        );
        assert_eq!(
            serde_json::to_string(&a.outcomes).unwrap(),
            serde_json::to_string(&b.outcomes).unwrap()
        );
        let mut streamed = Vec::new();
        generate_events_into(&cfg, &mut |e| streamed.push(e));
        assert_eq!(
            streamed, a.events,
            "streaming must emit exactly what generate returns"
        );
        // Outcomes are passed on as soon as they are final, yet in timestamp order, each with
        // the project of its task's calls.
        let at =
            |v: &Value| chrono::DateTime::parse_from_rfc3339(s(v, "timestamp").unwrap()).unwrap();
        assert!(a.outcomes.windows(2).all(|w| at(&w[0]) <= at(&w[1])));
        let mut project_of: HashMap<String, String> = HashMap::new();
        let mut checked = 0;
        generate_into(&cfg, &mut |r| match r {
            Record::Event(e) => {
                if let (Some(t), Some(p)) = (s(&e, "task_id"), s(&e, "project")) {
                    project_of.insert(t.to_string(), p.to_string());
                }
            }
            Record::Outcome { project, outcome } => {
                let task = s(&outcome, "task_id").unwrap();
                assert_eq!(project_of.get(task).map(String::as_str), Some(project));
                checked += 1;
            }
        });
        assert_eq!(checked, a.outcomes.len());
        let other = generate(&DemoConfig {
            seed: 7,
            ..cfg.clone()
        });
        assert_ne!(other.events, a.events);
        // Ids carry a hash of the config, so a demo with another config never collides.
        let ids: HashSet<&str> = a.events.iter().filter_map(|e| s(e, "id")).collect();
        assert!(other
            .events
            .iter()
            .all(|e| !ids.contains(s(e, "id").unwrap())));
    }

    #[test]
    fn degenerate_configs_produce_nothing_or_little() {
        for cfg in [
            DemoConfig {
                days: 0,
                ..month_cfg()
            },
            DemoConfig {
                scale: 0.0,
                ..month_cfg()
            },
            DemoConfig {
                scale: f64::NAN,
                ..month_cfg()
            },
            DemoConfig {
                scale: f64::INFINITY,
                ..month_cfg()
            },
        ] {
            let d = generate(&cfg);
            assert!(d.events.is_empty() && d.outcomes.is_empty(), "{cfg:?}");
        }
        let tiny = generate(&DemoConfig {
            days: 1,
            scale: 0.01,
            ..month_cfg()
        });
        // A day at 1 % still has its runaway run, so the anomaly is never missing.
        assert!(tiny.events.len() < 500, "{}", tiny.events.len());
        let end = DemoConfig::default().end;
        assert_eq!((end.timestamp() % 60, end.timestamp_subsec_nanos()), (0, 0));
    }

    #[test]
    fn every_event_follows_the_schema() {
        let cfg = month_cfg();
        let data = month();
        let start = cfg.end - chrono::TimeDelta::days(i64::from(cfg.days));
        let hex = Regex::new("^[0-9a-f]+$").unwrap();
        let mut ids = HashSet::new();
        let mut prev = start;
        for (i, e) in data.events.iter().enumerate() {
            validate(schema(), e, &format!("events[{i}]")).unwrap();
            assert!(ids.insert(s(e, "id").unwrap()), "duplicate id {e}");
            let t = ts(e);
            assert!(
                t >= prev && t <= cfg.end,
                "events[{i}] out of order or window: {t}"
            );
            prev = t;

            let u = e.get("usage");
            if let Some(u) = u {
                let input = n(u, "input_tokens");
                let parts = n(u, "cache_read_tokens")
                    + n(u, "cache_write_tokens")
                    + n(u, "audio_input_tokens")
                    + n(u, "image_input_tokens");
                assert!(parts <= input, "input parts exceed total: {e}");
                assert!(
                    n(u, "cache_write_1h_tokens") <= n(u, "cache_write_tokens"),
                    "{e}"
                );
                let output = n(u, "output_tokens");
                assert!(n(u, "reasoning_tokens") <= output, "{e}");
                assert!(
                    n(u, "audio_output_tokens") + n(u, "reasoning_tokens") <= output,
                    "{e}"
                );
            }

            let status = s(e, "status").unwrap();
            let http = n(e, "http_status");
            match s(e, "error_type") {
                None => assert!(status == "success" && http == 200, "{e}"),
                Some(kind) => {
                    assert_eq!(status, "error", "{e}");
                    let expected = match kind {
                        "rate_limit" => 429,
                        "timeout" => 408,
                        "server_error" => 500,
                        "overloaded" => 529,
                        "invalid_json" => 200,
                        other => panic!("unexpected error_type {other}"),
                    };
                    assert_eq!(http, expected, "{e}");
                    if matches!(kind, "rate_limit" | "server_error" | "overloaded") {
                        assert_eq!(u.map_or(0, |u| n(u, "output_tokens")), 0, "{e}");
                    }
                }
            }
            let answered = status == "success" || s(e, "error_type") == Some("invalid_json");
            assert_eq!(e.get("request_id").is_some(), answered, "{e}");

            if let Some(cost) = e.get("cost") {
                let d =
                    Decimal::from_str(cost.as_str().expect("cost is a decimal string")).unwrap();
                assert!(d >= Decimal::ZERO && s(e, "currency") == Some("USD"), "{e}");
                assert!(e.get("usage").is_some(), "{e}");
            }
            if let (Some(l), Some(f)) = (e.get("latency_ms"), e.get("ttft_ms")) {
                assert!(f.as_f64() <= l.as_f64(), "ttft after the end: {e}");
            }
            assert_ne!(s(e, "model_requested"), s(e, "model"), "{e}");
            assert!(n(e, "attempt") >= 1, "{e}");
            if let Some(trace) = s(e, "trace_id") {
                assert!(trace.len() == 32 && hex.is_match(trace), "{e}");
                let span = s(e, "span_id").unwrap();
                assert!(span.len() == 16 && hex.is_match(span), "{e}");
                assert!(s(e, "run_id").is_some() && s(e, "agent").is_some(), "{e}");
            }
        }
        let end_ms = cfg.end.timestamp_millis();
        let mut prev = start;
        for o in &data.outcomes {
            let t = ts(o);
            assert!(t >= prev && t.timestamp_millis() <= end_ms, "{o}");
            prev = t;
            assert!(["success", "failure", "abandoned"].contains(&s(o, "outcome").unwrap()));
            assert!(
                s(o, "task_id").is_some() && s(o, "feature").is_some() && s(o, "user_id").is_some()
            );
            if let Some(v) = s(o, "value") {
                assert!(Decimal::from_str(v).unwrap() > Decimal::ZERO);
                assert_eq!(s(o, "outcome"), Some("success"));
            }
            let keys: Vec<&str> = o.as_object().unwrap().keys().map(String::as_str).collect();
            for k in keys {
                assert!(
                    [
                        "task_id",
                        "outcome",
                        "timestamp",
                        "feature",
                        "user_id",
                        "customer_id",
                        "value"
                    ]
                    .contains(&k),
                    "{o}"
                );
            }
        }
    }

    #[test]
    fn links_point_to_earlier_calls_of_the_same_run() {
        let data = month();
        let by_id: HashMap<&str, &Value> = data
            .events
            .iter()
            .map(|e| (s(e, "id").unwrap(), e))
            .collect();
        let spans: HashMap<(&str, &str), &Value> = data
            .events
            .iter()
            .filter_map(|e| Some(((s(e, "run_id")?, s(e, "span_id")?), e)))
            .collect();
        let mut runs_with_retry = HashSet::new();
        let mut runs_with_fallback = HashSet::new();
        let mut plain_tasks_with_retry = 0;
        for e in &data.events {
            for key in ["retry_of", "fallback_from"] {
                let Some(target) = s(e, key) else { continue };
                let t = by_id
                    .get(target)
                    .unwrap_or_else(|| panic!("{key} {target} is not an event"));
                assert_eq!(s(t, "task_id"), s(e, "task_id"), "{e}");
                assert_eq!(s(t, "run_id"), s(e, "run_id"), "{e}");
                assert_eq!(
                    s(t, "status"),
                    Some("error"),
                    "{key} must point at a failed call: {e}"
                );
                assert!(ts(t) <= ts(e), "{e}");
                assert_eq!(n(t, "attempt") + 1, n(e, "attempt"), "{e}");
                if key == "fallback_from" {
                    assert_ne!(s(t, "model"), s(e, "model"), "{e}");
                    assert!(s(e, "model_requested").is_some(), "{e}");
                }
                match (s(e, "run_id"), key) {
                    (Some(run), "retry_of") => {
                        runs_with_retry.insert(run);
                    }
                    (Some(run), _) => {
                        runs_with_fallback.insert(run);
                    }
                    (None, _) => plain_tasks_with_retry += 1,
                }
            }
            if let Some(parent) = s(e, "parent_span_id") {
                let run = s(e, "run_id").unwrap();
                let p = spans
                    .get(&(run, parent))
                    .unwrap_or_else(|| panic!("parent of {e} missing"));
                assert_eq!(s(p, "trace_id"), s(e, "trace_id"));
                assert!(ts(p) <= ts(e), "{e}");
            }
        }
        let both = runs_with_retry.intersection(&runs_with_fallback).count();
        assert!(runs_with_retry.len() > 20 && runs_with_fallback.len() > 5 && both > 0);
        assert!(plain_tasks_with_retry > 50);
    }

    fn rule_matches(rule: &Value, name: &str) -> bool {
        let text = |k: &str| rule.get(k).and_then(Value::as_str).map(str::to_lowercase);
        if let Some(x) = text("equals") {
            name == x
        } else if let Some(x) = text("starts_with") {
            name.starts_with(&x)
        } else if let Some(x) = text("ends_with") {
            name.ends_with(&x)
        } else if let Some(x) = text("contains") {
            name.contains(&x)
        } else if let Some(x) = rule.get("regex").and_then(Value::as_str) {
            regex(x).is_match(name)
        } else if let Some(list) = rule.get("or").and_then(Value::as_array) {
            list.iter().any(|r| rule_matches(r, name))
        } else if let Some(list) = rule.get("and").and_then(Value::as_array) {
            list.iter().all(|r| rule_matches(r, name))
        } else {
            panic!("unknown match rule {rule}")
        }
    }

    /// The first catalog model of `provider` whose rule matches `name`, as the catalog's
    /// reference implementation picks it.
    fn catalog_model(provider: &str, name: &str) -> Option<&'static Value> {
        type Memo = Mutex<HashMap<(String, String), Option<&'static Value>>>;
        static MEMO: OnceLock<Memo> = OnceLock::new();
        let memo = MEMO.get_or_init(Memo::default);
        let key = (provider.to_string(), name.to_string());
        if let Some(hit) = memo.lock().unwrap().get(&key) {
            return *hit;
        }
        let found = catalog_model_uncached(provider, name);
        memo.lock().unwrap().insert(key, found);
        found
    }

    fn catalog_model_uncached(provider: &str, name: &str) -> Option<&'static Value> {
        let lower = name.to_lowercase();
        catalog()
            .as_array()
            .unwrap()
            .iter()
            .find(|p| s(p, "id") == Some(provider))?["models"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| rule_matches(&m["match"], &lower))
    }

    fn dec(v: &Value) -> Decimal {
        let t = v.to_string();
        Decimal::from_str(&t)
            .or_else(|_| Decimal::from_scientific(&t))
            .unwrap()
    }

    fn constraint_holds(c: Option<&Value>, at: DateTime<Utc>) -> bool {
        let Some(c) = c else { return true };
        if let Some(d) = s(c, "start_date") {
            return at.date_naive() >= NaiveDate::parse_from_str(d, "%Y-%m-%d").unwrap();
        }
        let time = |k: &str| {
            NaiveTime::parse_from_str(s(c, k).unwrap().trim_end_matches('Z'), "%H:%M:%S").unwrap()
        };
        let now = at.time();
        now >= time("start_time") && now < time("end_time")
    }

    fn catalog_prices(model: &'static Value, at: DateTime<Utc>) -> &'static Value {
        match &model["prices"] {
            Value::Array(list) => &list
                .iter()
                .rev()
                .find(|e| constraint_holds(e.get("constraint"), at))
                .unwrap_or(&list[0])["prices"],
            p => p,
        }
    }

    fn price_of(prices: &Value, key: &str, input_total: u64) -> Option<Decimal> {
        let v = prices.get(key)?;
        if v.is_number() {
            return Some(dec(v));
        }
        let mut p = dec(&v["base"]);
        for tier in v["tiers"].as_array().unwrap() {
            if input_total > tier["start"].as_u64().unwrap() {
                p = dec(&tier["price"]);
            }
        }
        Some(p)
    }

    /// What Tally should compute from the catalog, independent of the generator's own prices;
    /// None when the event is unpriced.
    fn list_cost(e: &Value) -> Option<Decimal> {
        // Tally shows priority calls as unpriced (no catalog price); batch is assumed at the
        // usual half price, which only matters for the spend stories below.
        let discount = match s(e, "service_tier") {
            None | Some("standard") => Decimal::ONE,
            Some("batch") => Decimal::new(5, 1),
            Some(_) => return None,
        };
        let model = catalog_model(s(e, "provider")?, s(e, "model")?)?;
        let Some(u) = e.get("usage") else {
            return Some(Decimal::ZERO);
        };
        let p = catalog_prices(model, ts(e));
        let input = n(u, "input_tokens");
        let get = |k: &str| price_of(p, k, input);
        let in_p = get("input_mtok").unwrap_or_default();
        let out_p = get("output_mtok").unwrap_or_default();
        let cw_p = get("cache_write_mtok").unwrap_or(in_p);
        let (cr, cw, cw1h) = (
            n(u, "cache_read_tokens"),
            n(u, "cache_write_tokens"),
            n(u, "cache_write_1h_tokens"),
        );
        let (ai, ii, ao) = (
            n(u, "audio_input_tokens"),
            n(u, "image_input_tokens"),
            n(u, "audio_output_tokens"),
        );
        let uncached = input - cr - cw - ai - ii;
        let d = Decimal::from;
        let mtok = d(uncached) * in_p
            + d(cr) * get("cache_read_mtok").unwrap_or(in_p)
            + d(cw - cw1h) * cw_p
            + d(cw1h) * get("cache_write_1h_mtok").unwrap_or(cw_p)
            + d(ai) * get("input_audio_mtok").unwrap_or(in_p)
            + d(ii) * get("input_image_mtok").unwrap_or(in_p)
            + d(n(u, "output_tokens") - ao) * out_p
            + d(ao) * get("output_audio_mtok").unwrap_or(out_p);
        let searches = d(n(u, "web_search_requests"))
            * get("web_searches_kcount").unwrap_or_default()
            / d(1000);
        Some((mtok / d(1_000_000) + searches) * discount)
    }

    /// Reported cost where there is one (as Tally keeps it), else the list price.
    fn effective_cost(e: &Value) -> Decimal {
        match s(e, "cost") {
            Some(c) => Decimal::from_str(c).unwrap(),
            None => list_cost(e).unwrap_or_default(),
        }
    }

    #[test]
    fn model_names_match_the_catalog_and_unpriced_ones_do_not() {
        for m in &MODELS {
            match m.catalog {
                Some(id) => {
                    let found = catalog_model(m.provider, m.served).unwrap_or_else(|| {
                        panic!("{}/{} is not in the catalog", m.provider, m.served)
                    });
                    assert_eq!(
                        s(found, "id"),
                        Some(id),
                        "{}/{} matched another entry",
                        m.provider,
                        m.served
                    );
                }
                None => {
                    for p in catalog().as_array().unwrap() {
                        let hit = catalog_model(s(p, "id").unwrap(), m.served);
                        assert!(
                            hit.is_none(),
                            "{} should be unpriced but matches {:?}",
                            m.served,
                            hit.map(|h| &h["id"])
                        );
                    }
                }
            }
        }
        let used: HashSet<(&str, &str)> = month()
            .events
            .iter()
            .map(|e| (s(e, "provider").unwrap(), s(e, "model").unwrap()))
            .collect();
        let known: HashSet<(&str, &str)> = MODELS.iter().map(|m| (m.provider, m.served)).collect();
        assert!(used.is_subset(&known));
        assert_eq!(used.len(), MODELS.len(), "every model in the table is used");
    }

    #[test]
    fn hard_coded_prices_match_the_catalog() {
        let now = month_cfg().end;
        for m in MODELS.iter().filter(|m| m.price.is_some()) {
            let p = m.price.unwrap();
            let cat = catalog_prices(catalog_model(m.provider, m.served).unwrap(), now);
            let base = |k: &str| price_of(cat, k, 0);
            let mine = |t: &str| Decimal::from_str(t).unwrap();
            let name = m.served;
            assert_eq!(base("input_mtok"), Some(mine(p.input)), "{name} input");
            assert_eq!(
                base("output_mtok").unwrap_or_default(),
                mine(p.output),
                "{name} output"
            );
            for (key, v) in [
                ("cache_read_mtok", p.cache_read),
                ("cache_write_mtok", p.cache_write),
                ("cache_write_1h_mtok", p.cache_write_1h),
                ("input_audio_mtok", p.audio_in),
                ("output_audio_mtok", p.audio_out),
                ("web_searches_kcount", p.web_search_k),
            ] {
                assert_eq!(base(key), v.map(mine), "{name} {key}");
            }
        }
    }

    #[test]
    fn reported_costs_are_list_price_plus_the_gateway_fee() {
        let mut checked = [0usize; 2];
        for e in &month().events {
            let Some(reported) = s(e, "cost") else {
                continue;
            };
            let list =
                list_cost(e).unwrap_or_else(|| panic!("reported cost on an unpriced event {e}"));
            let (expected, i) = match s(e, "route") {
                Some("openrouter") => (list * Decimal::new(1055, 3), 0),
                Some("litellm") => (list, 1),
                other => panic!("unexpected reporting route {other:?}"),
            };
            assert_eq!(
                Decimal::from_str(reported).unwrap(),
                round_cost(expected),
                "{e}"
            );
            checked[i] += 1;
        }
        assert!(checked[0] > 1_000 && checked[1] > 1_000, "{checked:?}");
    }

    #[test]
    fn shares_are_as_intended() {
        let cfg = month_cfg();
        let data = month();
        let total = data.events.len() as f64;
        let share = |pred: &dyn Fn(&Value) -> bool| {
            data.events.iter().filter(|e| pred(e)).count() as f64 / total
        };
        let per_day = total / f64::from(cfg.days);
        assert!(
            (3_000.0..=5_000.0).contains(&per_day),
            "{per_day} calls/day"
        );

        let unpriced = share(&|e| list_cost(e).is_none());
        assert!((0.01..=0.025).contains(&unpriced), "unpriced {unpriced}");
        let errors = share(&|e| s(e, "status") == Some("error"));
        assert!((0.03..=0.06).contains(&errors), "errors {errors}");
        let openrouter = share(&|e| s(e, "route") == Some("openrouter"));
        assert!(
            (0.04..=0.12).contains(&openrouter),
            "openrouter {openrouter}"
        );
        let litellm = share(&|e| s(e, "route") == Some("litellm"));
        assert!((0.2..=0.45).contains(&litellm), "litellm {litellm}");
        let batch = share(&|e| s(e, "service_tier") == Some("batch"));
        assert!((0.01..=0.08).contains(&batch), "batch {batch}");
        let priority = share(&|e| s(e, "service_tier") == Some("priority"));
        assert!(priority > 0.0 && priority < 0.005, "priority {priority}");
        let cached = share(&|e| {
            e.get("usage")
                .is_some_and(|u| n(u, "cache_read_tokens") > 0)
        });
        assert!(cached > 0.25, "cache reads {cached}");
        for (k, min) in [
            ("cache_write_1h_tokens", 100),
            ("reasoning_tokens", 1_000),
            ("audio_input_tokens", 50),
            ("image_input_tokens", 100),
            ("web_search_requests", 100),
        ] {
            let c = data
                .events
                .iter()
                .filter(|e| e.get("usage").is_some_and(|u| n(u, k) > 0))
                .count();
            assert!(c >= min, "{k}: {c}");
        }
        for k in ["session_id", "metadata", "model_requested", "ttft_ms"] {
            assert!(data.events.iter().any(|e| e.get(k).is_some()), "{k}");
        }

        let dims = |k: &str| {
            data.events
                .iter()
                .filter_map(|e| s(e, k))
                .collect::<HashSet<_>>()
                .len()
        };
        assert_eq!(dims("feature"), 8);
        assert_eq!(dims("team_id"), 4);
        assert_eq!(dims("project"), 3);
        assert_eq!(dims("api_key_id"), 5);
        assert_eq!(dims("customer_id"), 25);
        assert_eq!(dims("user_id"), 60);
        assert_eq!(dims("agent"), 3);

        // Most finished tasks report an outcome; some stay open, some report hours later.
        let mut last_call: HashMap<&str, DateTime<Utc>> = HashMap::new();
        for e in &data.events {
            last_call.insert(s(e, "task_id").unwrap(), ts(e));
        }
        let reported = data.outcomes.len() as f64 / last_call.len() as f64;
        assert!(
            (0.7..=0.95).contains(&reported),
            "outcomes for {reported} of tasks"
        );
        let late = data
            .outcomes
            .iter()
            .filter(|o| ts(o) - last_call[s(o, "task_id").unwrap()] > chrono::TimeDelta::hours(1))
            .count();
        assert!(late > 100, "{late} late outcomes");
        let outcomes: HashSet<&str> = data
            .outcomes
            .iter()
            .filter_map(|o| s(o, "outcome"))
            .collect();
        assert_eq!(outcomes.len(), 3);
    }

    #[test]
    fn the_stories_are_in_the_data() {
        let cfg = month_cfg();
        let data = month();
        let mut by_customer: HashMap<&str, Decimal> = HashMap::new();
        let mut review_by_day: BTreeMap<NaiveDate, Decimal> = BTreeMap::new();
        let mut qa_by_day: BTreeMap<NaiveDate, Decimal> = BTreeMap::new();
        let mut run_cost: HashMap<&str, Decimal> = HashMap::new();
        for e in &data.events {
            let c = effective_cost(e);
            if let Some(cu) = s(e, "customer_id") {
                *by_customer.entry(cu).or_default() += c;
            }
            let day = ts(e).date_naive();
            match s(e, "feature") {
                Some("code-review") => *review_by_day.entry(day).or_default() += c,
                Some("doc-qa") => *qa_by_day.entry(day).or_default() += c,
                _ => {}
            }
            if let Some(run) = s(e, "run_id") {
                *run_cost.entry(run).or_default() += c;
            }
        }
        let mut ranked: Vec<(&str, Decimal)> = by_customer.into_iter().collect();
        ranked.sort_by_key(|c| std::cmp::Reverse(c.1));
        assert_eq!(ranked[0].0, "acme-corp");
        assert!(
            ranked[0].1 > ranked[1].1 * Decimal::new(15, 1),
            "{ranked:?}"
        );

        // The runaway loop: one day's code-review spend towers over the others.
        let mut days: Vec<Decimal> = review_by_day.values().copied().collect();
        days.sort();
        let median = days[days.len() / 2];
        let (peak_day, peak) = review_by_day.iter().max_by_key(|(_, c)| **c).unwrap();
        assert!(
            *peak > median * Decimal::from(3),
            "peak {peak} vs median {median}"
        );
        assert_eq!(
            *peak_day,
            (cfg.end - chrono::TimeDelta::days(12)).date_naive()
        );
        let mut runs: Vec<Decimal> = run_cost.values().copied().collect();
        runs.sort();
        assert!(runs[runs.len() - 1] > runs[runs.len() / 2] * Decimal::from(100));

        // The prompt change: doc-qa costs clearly more per weekday after it.
        let change = (cfg.end - chrono::TimeDelta::days(6)).date_naive();
        let avg = |after: bool| {
            let v: Vec<Decimal> = qa_by_day
                .iter()
                .filter(|(d, _)| {
                    (**d > change) == after
                        && **d != change
                        && d.weekday().num_days_from_monday() < 5
                })
                .map(|(_, c)| *c)
                .collect();
            v.iter().sum::<Decimal>() / Decimal::from(v.len())
        };
        assert!(
            avg(true) > avg(false) * Decimal::from(2),
            "{} vs {}",
            avg(true),
            avg(false)
        );

        // The incident: Anthropic answers 529 for an afternoon and calls fall back.
        let overloaded = data
            .events
            .iter()
            .filter(|e| s(e, "error_type") == Some("overloaded"))
            .count();
        assert!(overloaded > 30, "{overloaded}");

        // Weekly seasonality: weekdays are busier than weekends.
        let mut weekday = 0usize;
        let mut weekend = 0usize;
        for e in &data.events {
            if ts(e).weekday().num_days_from_monday() < 5 {
                weekday += 1;
            } else {
                weekend += 1;
            }
        }
        assert!(weekday as f64 / 5.0 > 1.5 * weekend as f64 / 2.0);
    }
}
