//! Matching: from an event's provider and model strings to a catalog model.
//!
//! Owns name normalisation (case, `models/` and `vendor/` prefixes), provider resolution
//! (aliases, ids, `provider_match`, guessing from the model name), the model search order and
//! its memo cache. Rules are compiled once when the pricer is built. It knows nothing about
//! prices, times or money: it only answers "which catalog model, billed by which provider".

use std::collections::HashMap;
use std::sync::RwLock;

use regex::{Regex, RegexBuilder};

use super::catalog::{Catalog, MatchRule};
use super::PricingError;

/// Cached resolutions kept before the cache is cleared. Real traffic uses a few hundred
/// distinct (provider, model) pairs; the bound only stops unbounded growth from junk names.
pub(crate) const MAX_CACHE_ENTRIES: usize = 10_000;

/// A match rule with lower-cased literals and compiled regexes.
#[derive(Debug)]
pub(crate) enum CompiledRule {
    Equals(Box<str>),
    StartsWith(Box<str>),
    EndsWith(Box<str>),
    Contains(Box<str>),
    Regex(Regex),
    Or(Vec<CompiledRule>),
    And(Vec<CompiledRule>),
}

impl CompiledRule {
    pub(crate) fn compile(rule: &MatchRule) -> Result<CompiledRule, PricingError> {
        let lower = |s: &str| s.to_lowercase().into_boxed_str();
        Ok(match rule {
            MatchRule::Equals(s) => CompiledRule::Equals(lower(s)),
            MatchRule::StartsWith(s) => CompiledRule::StartsWith(lower(s)),
            MatchRule::EndsWith(s) => CompiledRule::EndsWith(lower(s)),
            MatchRule::Contains(s) => CompiledRule::Contains(lower(s)),
            // Case-insensitive so that an upper-case literal in a pattern still matches the
            // lower-cased name, like the string clauses.
            MatchRule::Regex(p) => CompiledRule::Regex(
                RegexBuilder::new(p)
                    .case_insensitive(true)
                    .build()
                    .map_err(|e| PricingError::Catalog(format!("bad regex {p:?}: {e}")))?,
            ),
            MatchRule::Or(rules) => CompiledRule::Or(
                rules
                    .iter()
                    .map(CompiledRule::compile)
                    .collect::<Result<_, _>>()?,
            ),
            MatchRule::And(rules) => CompiledRule::And(
                rules
                    .iter()
                    .map(CompiledRule::compile)
                    .collect::<Result<_, _>>()?,
            ),
        })
    }

    /// `text` must already be lower case.
    pub(crate) fn is_match(&self, text: &str) -> bool {
        match self {
            CompiledRule::Equals(s) => text == &**s,
            CompiledRule::StartsWith(s) => text.starts_with(&**s),
            CompiledRule::EndsWith(s) => text.ends_with(&**s),
            CompiledRule::Contains(s) => text.contains(&**s),
            CompiledRule::Regex(r) => r.is_match(text),
            CompiledRule::Or(rules) => rules.iter().any(|r| r.is_match(text)),
            CompiledRule::And(rules) => rules.iter().all(|r| r.is_match(text)),
        }
    }

    /// Names the rule accepts by plain equality, through `or` only (an `equals` inside an `and`
    /// is not sufficient on its own).
    fn exact_names<'a>(&'a self, out: &mut Vec<&'a str>) {
        match self {
            CompiledRule::Equals(s) => out.push(s),
            CompiledRule::Or(rules) => rules.iter().for_each(|r| r.exact_names(out)),
            _ => {}
        }
    }
}

/// A catalog model: (provider index, model index).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ModelRef {
    pub provider: usize,
    pub model: usize,
}

/// How a model was found, for explanations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Route {
    /// In the billing provider's own list.
    Direct,
    /// In one of the billing provider's `fallback_model_providers`.
    FallbackProvider,
    /// After splitting a `vendor/model` name, in the vendor's list.
    VendorPrefix,
    /// In the list of a provider guessed from the model name.
    Inferred,
}

/// The outcome of matching one (provider, model) pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Resolution {
    /// The provider that bills the call: the event's provider when the catalog knows it,
    /// otherwise the one the model was found under.
    pub billing: Option<usize>,
    pub model: Option<(ModelRef, Route)>,
    /// The event named a provider that matched nothing in the catalog.
    pub unknown_provider: bool,
}

#[derive(Debug)]
struct CompiledProvider {
    id: String,
    provider_match: Option<CompiledRule>,
    model_match: Option<CompiledRule>,
    fallbacks: Vec<usize>,
    models: Vec<CompiledRule>,
    /// Names some model's rule accepts by `equals` → first such model in list order.
    exact: HashMap<Box<str>, usize>,
}

#[derive(Default)]
struct Cache {
    /// provider as given ("" when absent) → model as given → resolution. Two levels so a
    /// lookup needs no allocation.
    by_provider: HashMap<String, HashMap<String, Resolution>>,
    len: usize,
}

/// Compiled matching rules of one catalog plus the memo cache.
pub(crate) struct Matcher {
    providers: Vec<CompiledProvider>,
    by_id: HashMap<String, usize>,
    aliases: HashMap<String, usize>,
    hints: Vec<(CompiledRule, usize)>,
    cache: RwLock<Cache>,
}

impl std::fmt::Debug for Matcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Matcher")
            .field("providers", &self.providers.len())
            .finish_non_exhaustive()
    }
}

impl Matcher {
    /// Compiles every rule of a validated catalog.
    pub(crate) fn new(catalog: &Catalog) -> Result<Matcher, PricingError> {
        let by_id: HashMap<String, usize> = catalog
            .providers
            .iter()
            .enumerate()
            .map(|(i, p)| (p.id.clone(), i))
            .collect();
        let index_of = |id: &str| {
            by_id
                .get(id)
                .copied()
                .ok_or_else(|| PricingError::Catalog(format!("unknown provider {id:?}")))
        };
        let mut providers = Vec::with_capacity(catalog.providers.len());
        for p in &catalog.providers {
            let models: Vec<CompiledRule> = p
                .models
                .iter()
                .map(|m| CompiledRule::compile(&m.rule))
                .collect::<Result<_, _>>()?;
            let mut exact: HashMap<Box<str>, usize> = HashMap::new();
            for (i, rule) in models.iter().enumerate() {
                let mut names = Vec::new();
                rule.exact_names(&mut names);
                for name in names {
                    exact.entry(name.into()).or_insert(i);
                }
            }
            providers.push(CompiledProvider {
                id: p.id.clone(),
                provider_match: p
                    .provider_match
                    .as_ref()
                    .map(CompiledRule::compile)
                    .transpose()?,
                model_match: p
                    .model_match
                    .as_ref()
                    .map(CompiledRule::compile)
                    .transpose()?,
                fallbacks: p
                    .fallback_model_providers
                    .iter()
                    .map(|f| index_of(f))
                    .collect::<Result<_, _>>()?,
                models,
                exact,
            });
        }
        let aliases = catalog
            .provider_aliases
            .iter()
            .map(|(alias, target)| Ok((alias.to_lowercase(), index_of(target)?)))
            .collect::<Result<_, PricingError>>()?;
        let hints = catalog
            .model_provider_hints
            .iter()
            .map(|h| Ok((CompiledRule::compile(&h.rule)?, index_of(&h.provider)?)))
            .collect::<Result<_, PricingError>>()?;
        Ok(Matcher {
            providers,
            by_id,
            aliases,
            hints,
            cache: RwLock::new(Cache::default()),
        })
    }

    pub(crate) fn provider_id(&self, index: usize) -> &str {
        self.providers.get(index).map_or("", |p| p.id.as_str())
    }

    pub(crate) fn provider_index(&self, id: &str) -> Option<usize> {
        self.by_id.get(id).copied()
    }

    /// Alias → catalog id → `provider_match`, on the lower-cased, trimmed name. Aliases come
    /// first because `provider_match` rules are loose: `azure_openai` contains `openai`.
    pub(crate) fn canonical_provider(&self, provider: &str) -> Option<usize> {
        let p = provider.trim().to_lowercase();
        if p.is_empty() {
            return None;
        }
        if let Some(&i) = self.aliases.get(&p) {
            return Some(i);
        }
        if let Some(&i) = self.by_id.get(&p) {
            return Some(i);
        }
        self.providers
            .iter()
            .position(|q| q.provider_match.as_ref().is_some_and(|r| r.is_match(&p)))
    }

    /// Guesses the provider of a lower-cased, normalised model name: Tally's hints, then the
    /// providers' `model_match` rules in catalog order.
    fn infer_normalised(&self, model: &str) -> Option<usize> {
        if let Some((_, i)) = self.hints.iter().find(|(rule, _)| rule.is_match(model)) {
            return Some(*i);
        }
        self.providers
            .iter()
            .position(|q| q.model_match.as_ref().is_some_and(|r| r.is_match(model)))
    }

    /// Provider guessed from a model name, including a `vendor/` prefix.
    pub(crate) fn infer_provider(&self, model: &str) -> Option<usize> {
        let m = normalise_model(model);
        self.infer_normalised(&m).or_else(|| {
            let (vendor, rest) = m.split_once('/')?;
            self.canonical_provider(vendor)
                .or_else(|| self.infer_normalised(rest))
        })
    }

    /// Finds `model` in one provider's list: a model that names it by `equals` first, then the
    /// first rule that matches in list order (the reference behaviour). The exact pass only
    /// matters when a looser rule earlier in the list also accepts the name; the current data
    /// has no such case, but an upstream edit could introduce one silently.
    fn find_in(&self, provider: usize, model: &str) -> Option<usize> {
        let p = self.providers.get(provider)?;
        if let Some(&i) = p.exact.get(model) {
            return Some(i);
        }
        p.models.iter().position(|r| r.is_match(model))
    }

    /// The provider's own list, then its fallback providers' lists (one level, as upstream).
    fn find_with_fallbacks(&self, provider: usize, model: &str) -> Option<(ModelRef, bool)> {
        if let Some(m) = self.find_in(provider, model) {
            return Some((ModelRef { provider, model: m }, false));
        }
        let p = self.providers.get(provider)?;
        p.fallbacks.iter().find_map(|&f| {
            self.find_in(f, model).map(|m| {
                (
                    ModelRef {
                        provider: f,
                        model: m,
                    },
                    true,
                )
            })
        })
    }

    /// Resolves without the cache. See the `pricing` module docs for the order of attempts.
    pub(crate) fn resolve_uncached(&self, provider: Option<&str>, model: &str) -> Resolution {
        let given = provider.map(str::trim).filter(|p| !p.is_empty());
        let billing = given.and_then(|p| self.canonical_provider(p));
        let unknown_provider = given.is_some() && billing.is_none();
        let m = normalise_model(model);

        let found = |model: Option<(ModelRef, Route)>, billing: Option<usize>| Resolution {
            billing: billing.or(model.map(|(r, _)| r.provider)),
            model,
            unknown_provider,
        };

        if let Some(b) = billing {
            if let Some((r, via_fallback)) = self.find_with_fallbacks(b, &m) {
                let route = if via_fallback {
                    Route::FallbackProvider
                } else {
                    Route::Direct
                };
                return found(Some((r, route)), billing);
            }
        } else if let Some(i) = self.infer_normalised(&m) {
            if let Some((r, _)) = self.find_with_fallbacks(i, &m) {
                return found(Some((r, Route::Inferred)), None);
            }
        }

        // `vendor/model` (OpenRouter ids, LiteLLM's `provider/model`): look the rest up under
        // the vendor, or under a provider guessed from the rest.
        if let Some((vendor, rest)) = m.split_once('/') {
            let vendor_provider = self
                .canonical_provider(vendor)
                .or_else(|| self.infer_normalised(rest));
            if let Some(v) = vendor_provider {
                if let Some((r, _)) = self.find_with_fallbacks(v, rest) {
                    return found(Some((r, Route::VendorPrefix)), billing);
                }
            }
        }

        Resolution {
            billing: billing.or_else(|| self.infer_provider(model)),
            model: None,
            unknown_provider,
        }
    }

    /// Resolves through the memo cache.
    pub(crate) fn resolve(&self, provider: Option<&str>, model: &str) -> Resolution {
        let pkey = provider.unwrap_or("");
        {
            // A poisoned lock only means another thread panicked while holding it; the map is
            // still a valid memo, so keep using it.
            let cache = self.cache.read().unwrap_or_else(|e| e.into_inner());
            if let Some(hit) = cache.by_provider.get(pkey).and_then(|m| m.get(model)) {
                return *hit;
            }
        }
        let res = self.resolve_uncached(provider, model);
        let mut cache = self.cache.write().unwrap_or_else(|e| e.into_inner());
        if cache.len >= MAX_CACHE_ENTRIES {
            *cache = Cache::default();
        }
        let inner = cache.by_provider.entry(pkey.to_owned()).or_default();
        if inner.insert(model.to_owned(), res).is_none() {
            cache.len += 1;
        }
        res
    }

    #[cfg(test)]
    pub(crate) fn cache_len(&self) -> usize {
        self.cache.read().map(|c| c.len).unwrap_or(0)
    }
}

/// Lower-cases and trims a model name and strips resource-path prefixes that name no model:
/// Gemini's `models/…` and Vertex's `projects/…/publishers/…/models/…`.
pub(crate) fn normalise_model(model: &str) -> String {
    let m = model.trim().to_lowercase();
    if let Some(rest) = m.strip_prefix("models/") {
        return rest.to_owned();
    }
    if m.starts_with("projects/") || m.starts_with("publishers/") {
        if let Some((_, rest)) = m.rsplit_once("/models/") {
            return rest.to_owned();
        }
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(json: &str) -> CompiledRule {
        let r: MatchRule = serde_json::from_str(json).expect("rule json");
        CompiledRule::compile(&r).expect("compile")
    }

    #[test]
    fn clauses_compare_case_insensitively_and_regex_is_unanchored() {
        let r = rule(r#"{"or":[{"starts_with":"MiniMax-M"},{"equals":"M2-her"}]}"#);
        assert!(r.is_match("minimax-m1"));
        assert!(r.is_match("m2-her"));
        let r = rule(r#"{"regex":"(?:mi|code|dev|magi|mini)stral"}"#);
        assert!(r.is_match("open-mistral-7b"));
        let r = rule(r#"{"regex":"^o[134]"}"#);
        assert!(r.is_match("o3-mini") && !r.is_match("gpt-o3"));
        let r = rule(r#"{"and":[{"contains":"huggingface"},{"contains":"groq"}]}"#);
        assert!(r.is_match("huggingface-groq") && !r.is_match("groq"));
    }

    #[test]
    fn model_prefixes_are_normalised() {
        assert_eq!(
            normalise_model(" models/Gemini-2.5-Flash "),
            "gemini-2.5-flash"
        );
        assert_eq!(
            normalise_model(
                "projects/p/locations/us-central1/publishers/google/models/gemini-2.0-flash-001"
            ),
            "gemini-2.0-flash-001"
        );
        // Fireworks ids carry `models/` in the middle; they must stay whole.
        assert_eq!(
            normalise_model("accounts/fireworks/models/llama-v3p1-8b-instruct"),
            "accounts/fireworks/models/llama-v3p1-8b-instruct"
        );
    }
}
