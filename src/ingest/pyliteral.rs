//! Reads the Python `str()`/`repr()` text that LiteLLM's legacy generic-logger payload
//! (`litellm.generic_api_use_v1 = True`) puts in every field, back into JSON values.
//!
//! LiteLLM passes each value of that payload through `str()`, so `usage` arrives as the text of
//! a pydantic object (`completion_tokens=310 prompt_tokens=2048 …` at the top level,
//! `PromptTokensDetailsWrapper(cached_tokens=1536, …)` inside) and `metadata` as a dict repr
//! (`{'user_api_key_team_id': 'team_support', …}`). This reader understands exactly that
//! subset: dicts, lists, tuples, quoted strings with escapes, numbers, `None`/`True`/`False`,
//! constructor calls `Name(k=v, …)` (read as objects of their keyword arguments), bare dotted
//! names (read as strings), and the top-level `k=v k=v` form. Numbers keep their exact text.
//! Anything else (`<object at 0x…>`) is an error naming the position, never a guess.

use serde_json::{Map, Number, Value};

/// Parses a Python literal; `Err` carries the byte position and what was expected.
pub fn parse(text: &str) -> Result<Value, String> {
    let mut p = Parser {
        s: text.as_bytes(),
        src: text,
        i: 0,
    };
    p.ws();
    let value = if p.looks_like_kwargs() {
        p.kwargs_until(None)?
    } else {
        p.value()?
    };
    p.ws();
    if p.i != p.s.len() {
        return Err(format!("unexpected text at byte {}", p.i));
    }
    Ok(value)
}

struct Parser<'a> {
    s: &'a [u8],
    src: &'a str,
    i: usize,
}

impl Parser<'_> {
    fn ws(&mut self) {
        while self.i < self.s.len() && self.s[self.i].is_ascii_whitespace() {
            self.i += 1;
        }
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn expect(&mut self, c: u8) -> Result<(), String> {
        self.ws();
        if self.peek() == Some(c) {
            self.i += 1;
            Ok(())
        } else {
            Err(format!("expected '{}' at byte {}", c as char, self.i))
        }
    }

    /// `name=` at the current position (after an identifier).
    fn looks_like_kwargs(&self) -> bool {
        let mut j = self.i;
        while j < self.s.len() && (self.s[j].is_ascii_alphanumeric() || self.s[j] == b'_') {
            j += 1;
        }
        j > self.i && self.s.get(j) == Some(&b'=') && self.s.get(j + 1) != Some(&b'=')
    }

    fn ident(&mut self) -> Option<&str> {
        let start = self.i;
        while self.i < self.s.len()
            && (self.s[self.i].is_ascii_alphanumeric()
                || self.s[self.i] == b'_'
                || self.s[self.i] == b'.')
        {
            self.i += 1;
        }
        (self.i > start).then(|| &self.src[start..self.i])
    }

    fn value(&mut self) -> Result<Value, String> {
        self.ws();
        match self.peek() {
            Some(b'{') => self.dict(),
            Some(b'[') => self.seq(b']'),
            Some(b'(') => self.seq(b')'),
            Some(b'\'' | b'"') => self.string().map(Value::String),
            Some(c) if c == b'-' || c.is_ascii_digit() => self.number(),
            Some(c) if c.is_ascii_alphabetic() || c == b'_' => {
                let name = self.ident().unwrap_or_default().to_string();
                // String prefixes: b'…', r'…', u'…'.
                if matches!(name.as_str(), "b" | "r" | "u" | "br" | "rb")
                    && matches!(self.peek(), Some(b'\'' | b'"'))
                {
                    return self.string().map(Value::String);
                }
                match name.as_str() {
                    "None" => return Ok(Value::Null),
                    "True" => return Ok(Value::Bool(true)),
                    "False" => return Ok(Value::Bool(false)),
                    _ => {}
                }
                if self.peek() == Some(b'(') {
                    self.i += 1;
                    return self.kwargs_until(Some(b')'));
                }
                Ok(Value::String(name))
            }
            Some(c) => Err(format!(
                "unexpected '{}' at byte {} (not a Python literal)",
                c as char, self.i
            )),
            None => Err("unexpected end of text".into()),
        }
    }

    /// `k=v, k=v` (or space-separated at the top level) up to `close`; positional arguments
    /// are kept under `_args`.
    fn kwargs_until(&mut self, close: Option<u8>) -> Result<Value, String> {
        let mut map = Map::new();
        let mut positional = Vec::new();
        loop {
            self.ws();
            match (self.peek(), close) {
                (None, None) => break,
                (Some(c), Some(end)) if c == end => {
                    self.i += 1;
                    break;
                }
                (None, Some(end)) => {
                    return Err(format!("expected '{}' before the end", end as char))
                }
                _ => {}
            }
            if self.looks_like_kwargs() {
                let key = self.ident().unwrap_or_default().to_string();
                self.expect(b'=')?;
                let v = self.value()?;
                map.insert(key, v);
            } else {
                positional.push(self.value()?);
            }
            self.ws();
            if self.peek() == Some(b',') {
                self.i += 1;
            }
        }
        if !positional.is_empty() {
            map.insert("_args".into(), Value::Array(positional));
        }
        Ok(Value::Object(map))
    }

    fn dict(&mut self) -> Result<Value, String> {
        self.expect(b'{')?;
        let mut map = Map::new();
        loop {
            self.ws();
            if self.peek() == Some(b'}') {
                self.i += 1;
                return Ok(Value::Object(map));
            }
            let key = match self.value()? {
                Value::String(s) => s,
                Value::Number(n) => n.to_string(),
                Value::Bool(b) => b.to_string(),
                Value::Null => "None".into(),
                _ => return Err(format!("unsupported dict key before byte {}", self.i)),
            };
            self.expect(b':')?;
            let v = self.value()?;
            map.insert(key, v);
            self.ws();
            match self.peek() {
                Some(b',') => self.i += 1,
                Some(b'}') => {}
                _ => return Err(format!("expected ',' or '}}' at byte {}", self.i)),
            }
        }
    }

    fn seq(&mut self, close: u8) -> Result<Value, String> {
        self.i += 1;
        let mut items = Vec::new();
        loop {
            self.ws();
            if self.peek() == Some(close) {
                self.i += 1;
                return Ok(Value::Array(items));
            }
            items.push(self.value()?);
            self.ws();
            match self.peek() {
                Some(b',') => self.i += 1,
                Some(c) if c == close => {}
                _ => {
                    return Err(format!(
                        "expected ',' or '{}' at byte {}",
                        close as char, self.i
                    ))
                }
            }
        }
    }

    fn string(&mut self) -> Result<String, String> {
        let quote = self.peek().ok_or("unexpected end of text")?;
        self.i += 1;
        let mut out = String::new();
        let start = self.i;
        let mut run = start;
        while let Some(c) = self.peek() {
            if c == quote {
                out.push_str(&self.src[run..self.i]);
                self.i += 1;
                return Ok(out);
            }
            if c == b'\\' {
                out.push_str(&self.src[run..self.i]);
                self.i += 1;
                let e = self.peek().ok_or("unterminated escape")?;
                self.i += 1;
                match e {
                    b'n' => out.push('\n'),
                    b't' => out.push('\t'),
                    b'r' => out.push('\r'),
                    b'0' => out.push('\0'),
                    b'\\' | b'\'' | b'"' => out.push(e as char),
                    b'x' | b'u' | b'U' => {
                        let len = match e {
                            b'x' => 2,
                            b'u' => 4,
                            _ => 8,
                        };
                        let hex = self
                            .src
                            .get(self.i..self.i + len)
                            .ok_or("short escape sequence")?;
                        let code = u32::from_str_radix(hex, 16)
                            .map_err(|_| format!("bad escape \\{}{hex}", e as char))?;
                        out.push(char::from_u32(code).unwrap_or('\u{fffd}'));
                        self.i += len;
                    }
                    other => {
                        out.push('\\');
                        out.push(other as char);
                    }
                }
                run = self.i;
                continue;
            }
            // Step over a whole UTF-8 character.
            let width = self.src[self.i..].chars().next().map_or(1, char::len_utf8);
            self.i += width;
        }
        Err(format!(
            "unterminated string starting at byte {}",
            start - 1
        ))
    }

    fn number(&mut self) -> Result<Value, String> {
        let start = self.i;
        if self.peek() == Some(b'-') {
            self.i += 1;
        }
        while let Some(c) = self.peek() {
            if c.is_ascii_digit() || matches!(c, b'.' | b'e' | b'E' | b'+' | b'-') {
                self.i += 1;
            } else {
                break;
            }
        }
        let text = &self.src[start..self.i];
        // Python writes `1.` and `.5` never, but `1e-05` often; JSON number syntax covers it.
        let n: Number = serde_json::from_str(text)
            .map_err(|_| format!("{text:?} at byte {start} is not a number"))?;
        Ok(Value::Number(n))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pydantic_str_of_a_usage_object() {
        let text = "completion_tokens=310 prompt_tokens=2048 total_tokens=2358 \
            completion_tokens_details=CompletionTokensDetailsWrapper(accepted_prediction_tokens=None, \
            audio_tokens=None, reasoning_tokens=0, rejected_prediction_tokens=None, text_tokens=None) \
            prompt_tokens_details=PromptTokensDetailsWrapper(audio_tokens=None, cached_tokens=1536, \
            text_tokens=None, image_tokens=None)";
        let v = parse(text).unwrap();
        assert_eq!(v["prompt_tokens"], 2048);
        assert_eq!(v["prompt_tokens_details"]["cached_tokens"], 1536);
        assert!(v["prompt_tokens_details"]["audio_tokens"].is_null());
    }

    #[test]
    fn dict_repr_with_nesting_escapes_and_calls() {
        let text = r#"{'user_api_key_team_id': 'team_support', "quote": 'it\'s', 'n': 8.61e-05, 'ok': True, 'when': datetime.datetime(2026, 1, 1, 0, 0, tzinfo=datetime.timezone.utc), 'tags': ['a', "b"], 'nested': {'agent_run': 'run_8812'}, 'none': None}"#;
        let v = parse(text).unwrap();
        assert_eq!(v["user_api_key_team_id"], "team_support");
        assert_eq!(v["quote"], "it's");
        assert_eq!(v["n"].to_string(), "8.61e-05");
        assert_eq!(v["ok"], true);
        assert_eq!(v["when"]["tzinfo"], "datetime.timezone.utc");
        assert_eq!(v["tags"][1], "b");
        assert_eq!(v["nested"]["agent_run"], "run_8812");
        assert!(v["none"].is_null());
        assert_eq!(parse("Usage(prompt_tokens=3)").unwrap()["prompt_tokens"], 3);
    }

    #[test]
    fn foreign_text_is_an_error_not_a_guess() {
        assert!(parse("<litellm.Usage object at 0x7f>").is_err());
        assert!(parse("{'a': 1").is_err());
        assert!(parse("'unterminated").is_err());
    }
}
