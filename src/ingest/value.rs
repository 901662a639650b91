//! A path-aware view of a parsed JSON record, shared by the source-format mappers.
//!
//! Every accessor returns the value or a [`FieldError`] whose field is the full path in the
//! source's own names (`usage.prompt_tokens_details.cached_tokens`, `attempts[2].status`), so a
//! rejected record tells the user exactly which field of *their* format was wrong. Numbers are
//! read from their exact JSON text (`serde_json` keeps it with `arbitrary_precision`), never
//! through a float. Absent and `null` are the same "not reported"; a value of the wrong type is
//! an error, never a default. This module knows nothing about any particular format.

use std::borrow::Cow;

use rust_decimal::Decimal;
use serde_json::{Map, Value};

use super::fields::{self, FieldError};

/// A JSON value with the path that leads to it. `'a` is the record's lifetime (strings read
/// from it borrow the record), `'p` the path's.
#[derive(Debug, Clone, Copy)]
pub struct J<'a, 'p> {
    pub v: &'a Value,
    path: &'p str,
}

impl<'a, 'p> J<'a, 'p> {
    /// The record itself; `prefix` names it in error paths (empty for the record root).
    pub fn root(v: &'a Value, prefix: &'p str) -> Self {
        Self { v, path: prefix }
    }

    /// This value's full path.
    pub fn path(&self) -> &str {
        self.path
    }

    /// Path of a child key, for error messages.
    pub fn child_path(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_string()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    /// An error at this value.
    pub fn err(&self, reason: impl Into<String>) -> FieldError {
        let p = if self.path.is_empty() {
            "(record)"
        } else {
            self.path
        };
        FieldError::new(p, reason)
    }

    /// An error at a child key.
    pub fn err_at(&self, key: &str, reason: impl Into<String>) -> FieldError {
        FieldError::new(self.child_path(key), reason)
    }

    pub fn as_object(&self) -> Option<&'a Map<String, Value>> {
        self.v.as_object()
    }

    /// True when the key is present and not null.
    pub fn has(&self, key: &str) -> bool {
        self.v.get(key).is_some_and(|v| !v.is_null())
    }

    /// The raw child value when present and not null.
    pub fn raw(&self, key: &str) -> Option<&'a Value> {
        self.v.get(key).filter(|v| !v.is_null())
    }

    /// Runs `f` on a child (present, not null), giving it a view whose paths are full.
    pub fn with<T>(
        &self,
        key: &str,
        f: impl FnOnce(J<'a, '_>) -> Result<T, FieldError>,
    ) -> Result<Option<T>, FieldError> {
        let Some(v) = self.raw(key) else {
            return Ok(None);
        };
        let path = self.child_path(key);
        f(J { v, path: &path }).map(Some)
    }

    /// Like [`J::with`], but the child must be a JSON object.
    pub fn with_obj<T>(
        &self,
        key: &str,
        f: impl FnOnce(J<'a, '_>) -> Result<T, FieldError>,
    ) -> Result<Option<T>, FieldError> {
        self.obj(key)?;
        self.with(key, f)
    }

    /// Iterates the elements of an array child with full paths; absent or null is no elements.
    pub fn each<T>(
        &self,
        key: &str,
        mut f: impl FnMut(usize, J<'a, '_>) -> Result<T, FieldError>,
    ) -> Result<Vec<T>, FieldError> {
        let Some(v) = self.raw(key) else {
            return Ok(Vec::new());
        };
        let Some(items) = v.as_array() else {
            return Err(self.err_at(key, format!("expected an array, got {}", kind(v))));
        };
        let base = self.child_path(key);
        let mut out = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            let path = format!("{base}[{i}]");
            out.push(f(
                i,
                J {
                    v: item,
                    path: &path,
                },
            )?);
        }
        Ok(out)
    }

    /// A child object, or an error when the child is present but not an object.
    pub fn obj(&self, key: &str) -> Result<Option<&'a Map<String, Value>>, FieldError> {
        match self.v.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Object(m)) => Ok(Some(m)),
            Some(other) => {
                Err(self.err_at(key, format!("expected a JSON object, got {}", kind(other))))
            }
        }
    }

    /// A string child (empty strings count as absent).
    pub fn str(&self, key: &str) -> Result<Option<&'a str>, FieldError> {
        match self.v.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.as_str())),
            Some(other) => Err(self.err_at(key, format!("expected a string, got {}", kind(other)))),
        }
    }

    /// A string child checked against the length limit.
    pub fn string(&self, key: &str, lim: &fields::Limits) -> Result<Option<String>, FieldError> {
        let s = self.str(key)?;
        fields::opt_str(&self.child_path(key), s.map(Cow::Borrowed), lim)
    }

    /// An identifier: a string, or a number or boolean written as text (ids such as
    /// `"user": 12345` arrive as numbers from some sources and must not be lost).
    pub fn id(&self, key: &str, lim: &fields::Limits) -> Result<Option<String>, FieldError> {
        let text = match self.v.get(key) {
            None | Some(Value::Null) => return Ok(None),
            Some(Value::String(s)) => Cow::Borrowed(s.as_str()),
            Some(Value::Number(n)) => Cow::Owned(n.to_string()),
            Some(Value::Bool(b)) => Cow::Owned(b.to_string()),
            Some(other) => {
                return Err(self.err_at(key, format!("expected a string id, got {}", kind(other))))
            }
        };
        fields::opt_str(&self.child_path(key), Some(text), lim)
    }

    /// A token or unit count: a non-negative integer (or a string of digits, as exports and
    /// stringified payloads carry them). Absent or null is `None`.
    pub fn count(&self, key: &str) -> Result<Option<u64>, FieldError> {
        match self.v.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => count_of(v)
                .map(Some)
                .map_err(|reason| self.err_at(key, reason)),
        }
    }

    /// A count that defaults to 0 when absent.
    pub fn count0(&self, key: &str) -> Result<u64, FieldError> {
        Ok(self.count(key)?.unwrap_or(0))
    }

    /// A decimal from a JSON number or a numeric string, read from its exact text.
    pub fn decimal(&self, key: &str) -> Result<Option<Decimal>, FieldError> {
        Ok(self.decimal_text(key)?.map(|(d, _)| d))
    }

    /// A decimal and the text it was read from (kept when the original must be recorded).
    pub fn decimal_text(&self, key: &str) -> Result<Option<(Decimal, String)>, FieldError> {
        match self.v.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => decimal_of(v)
                .map(Some)
                .map_err(|reason| self.err_at(key, reason)),
        }
    }

    /// A boolean; also `1`/`0` and the strings `true`/`false` in any case (Portkey writes
    /// `1`/`0`, stringified payloads write `True`/`False`).
    pub fn boolean(&self, key: &str) -> Result<Option<bool>, FieldError> {
        match self.v.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => bool_of(v).map_err(|reason| self.err_at(key, reason)),
        }
    }

    /// A whole number that may be negative (HTTP statuses, attempts).
    pub fn int(&self, key: &str) -> Result<Option<i64>, FieldError> {
        match self.v.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Number(n)) => n
                .as_i64()
                .map(Some)
                .ok_or_else(|| self.err_at(key, format!("expected a whole number, got {n}"))),
            Some(Value::String(s)) if !s.trim().is_empty() => s
                .trim()
                .parse::<i64>()
                .map(Some)
                .map_err(|_| self.err_at(key, format!("expected a whole number, got {s:?}"))),
            Some(Value::String(_)) => Ok(None),
            Some(other) => {
                Err(self.err_at(key, format!("expected a whole number, got {}", kind(other))))
            }
        }
    }
}

/// A short name for the JSON type of a value, for error messages.
pub fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A non-negative integer count from a number or a digit string.
pub fn count_of(v: &Value) -> Result<u64, String> {
    let text = match v {
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.trim().to_string(),
        other => return Err(format!("expected a token count, got {}", kind(other))),
    };
    if let Ok(n) = text.parse::<u64>() {
        return Ok(n);
    }
    if text.starts_with('-') && text[1..].chars().all(|c| c.is_ascii_digit()) && text.len() > 1 {
        return Err(format!("must not be negative ({text})"));
    }
    // `12.0` is a whole count written as a float by some serializers; `12.5` is not a count.
    if let Some(d) = fields::parse_decimal(&text) {
        if d.fract().is_zero() && !d.is_sign_negative() {
            if let Ok(n) = d.trunc().to_string().parse::<u64>() {
                return Ok(n);
            }
        }
        if d.is_sign_negative() {
            return Err(format!("must not be negative ({text})"));
        }
    }
    Err(format!(
        "expected a whole, non-negative token count, got {text}"
    ))
}

/// A decimal from a JSON number or numeric string, exactly.
pub fn decimal_of(v: &Value) -> Result<(Decimal, String), String> {
    let text = match v {
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.trim().to_string(),
        other => return Err(format!("expected a decimal number, got {}", kind(other))),
    };
    fields::parse_decimal(&text)
        .map(|d| (d, text.clone()))
        .ok_or_else(|| format!("{text:?} is not a decimal number"))
}

/// A boolean in the spellings sources use.
pub fn bool_of(v: &Value) -> Result<Option<bool>, String> {
    match v {
        Value::Bool(b) => Ok(Some(*b)),
        Value::Number(n) => match n.to_string().as_str() {
            "1" => Ok(Some(true)),
            "0" => Ok(Some(false)),
            other => Err(format!(
                "expected a boolean (true/false or 1/0), got {other}"
            )),
        },
        Value::String(s) => match s.trim().to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" => Ok(Some(true)),
            "false" | "0" | "no" => Ok(Some(false)),
            "" | "none" | "null" => Ok(None),
            other => Err(format!("expected a boolean, got {other:?}")),
        },
        other => Err(format!("expected a boolean, got {}", kind(other))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_name_nested_fields() {
        let v: Value =
            serde_json::from_str(r#"{"usage":{"details":{"cached":-3}},"list":[{"n":"x"}]}"#)
                .unwrap();
        let root = J::root(&v, "");
        let e = root
            .with("usage", |u| u.with("details", |d| d.count("cached")))
            .unwrap_err();
        assert_eq!(e.field, "usage.details.cached");
        assert!(e.reason.contains("negative"), "{}", e.reason);
        let e = root.each("list", |_, item| item.count("n")).unwrap_err();
        assert_eq!(e.field, "list[0].n");
        let prefixed = J::root(&v, "response");
        let e = prefixed.with("usage", |u| u.str("details")).unwrap_err();
        assert_eq!(e.field, "response.usage.details");
    }

    #[test]
    fn counts_and_decimals_are_exact() {
        let v: Value = serde_json::from_str(
            r#"{"a":12,"b":"34","c":12.0,"d":1.5,"e":0.000861,"f":"1.25e-5","g":8.61e-05}"#,
        )
        .unwrap();
        let r = J::root(&v, "");
        assert_eq!(r.count("a").unwrap(), Some(12));
        assert_eq!(r.count("b").unwrap(), Some(34));
        assert_eq!(r.count("c").unwrap(), Some(12));
        assert!(r.count("d").is_err());
        assert_eq!(r.decimal("e").unwrap().unwrap().to_string(), "0.000861");
        assert_eq!(r.decimal("f").unwrap().unwrap().to_string(), "0.0000125");
        assert_eq!(r.decimal("g").unwrap().unwrap().to_string(), "0.0000861");
        assert_eq!(r.count("missing").unwrap(), None);
    }
}
