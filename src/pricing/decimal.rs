//! Exact decimal (de)serialisation for prices, multipliers and custom rates.
//!
//! Owns the one rule for reading money-like numbers: a value arrives as a string (`"2.50"`), an
//! integer, or (from `serde_json` with `arbitrary_precision`) a number token whose exact text is
//! kept; it becomes a `Decimal` without passing through a float. A binary float handed over by a
//! format such as TOML (`0.1`) is rejected, because by then the exact text is already lost. This
//! module must never call a float conversion, not even to build an error message from a value.

use std::fmt;
use std::str::FromStr;

use rust_decimal::prelude::FromPrimitive;
use rust_decimal::Decimal;
use serde::de::{self, MapAccess, Visitor};
use serde::{Deserializer, Serialize, Serializer};

/// The key under which `serde_json` (feature `arbitrary_precision`) hands a number's exact text
/// to a visitor. It is private to serde_json but has been stable for years, and rust_decimal's own
/// arbitrary-precision support relies on the same string.
const JSON_NUMBER_TOKEN: &str = "$serde_json::private::Number";

/// Parses the exact text of a decimal number: plain (`"0.075"`) or scientific (`"2.5e-7"`).
/// Rejects text that a `Decimal` cannot hold without rounding.
pub(crate) fn parse_exact(text: &str) -> Result<Decimal, String> {
    let text = text.trim();
    let parsed = if text.contains(['e', 'E']) {
        Decimal::from_scientific(text)
    } else {
        Decimal::from_str_exact(text)
    };
    parsed.map_err(|e| format!("`{text}` is not an exact decimal number ({e})"))
}

struct ExactVisitor;

impl<'de> Visitor<'de> for ExactVisitor {
    type Value = Decimal;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a decimal number written as a string (\"2.50\") or an integer")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Decimal, E> {
        parse_exact(v).map_err(E::custom)
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Decimal, E> {
        Ok(Decimal::from(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Decimal, E> {
        Ok(Decimal::from(v))
    }

    fn visit_i128<E: de::Error>(self, v: i128) -> Result<Decimal, E> {
        Decimal::from_i128(v).ok_or_else(|| E::custom(format!("integer {v} is too large")))
    }

    fn visit_u128<E: de::Error>(self, v: u128) -> Result<Decimal, E> {
        Decimal::from_u128(v).ok_or_else(|| E::custom(format!("integer {v} is too large")))
    }

    fn visit_f64<E: de::Error>(self, _v: f64) -> Result<Decimal, E> {
        // The float is not printed: its shortest representation could read as exact and hide
        // that the configured text was already rounded by the parser.
        Err(E::custom(
            "a floating-point number cannot hold most decimal prices exactly; \
             quote the number as a string, e.g. \"0.1\" instead of 0.1",
        ))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Decimal, A::Error> {
        // serde_json with `arbitrary_precision` presents a number as a one-entry map whose value
        // is the number's exact text.
        match map.next_key::<String>()? {
            Some(key) if key == JSON_NUMBER_TOKEN => {
                let text: String = map.next_value()?;
                parse_exact(&text).map_err(de::Error::custom)
            }
            _ => Err(de::Error::invalid_type(de::Unexpected::Map, &self)),
        }
    }
}

/// Deserialises one exact decimal (see the module docs for what is accepted).
pub(crate) fn deserialize_exact<'de, D: Deserializer<'de>>(d: D) -> Result<Decimal, D::Error> {
    d.deserialize_any(ExactVisitor)
}

struct OptionVisitor;

impl<'de> Visitor<'de> for OptionVisitor {
    type Value = Option<Decimal>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an optional decimal number")
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        deserialize_exact(d).map(Some)
    }
}

/// Deserialises an optional exact decimal; `null` or a missing key (with `#[serde(default)]`)
/// is `None`.
pub(crate) fn deserialize_exact_option<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<Decimal>, D::Error> {
    d.deserialize_option(OptionVisitor)
}

/// Serialises a decimal as a JSON number token carrying its exact text (`2.50` stays `2.50`).
/// Used for the generated catalog, whose readers are Tally and `jq`, not humans editing it.
pub(crate) fn serialize_number<S: Serializer>(v: &Decimal, s: S) -> Result<S::Ok, S::Error> {
    serde_json::Number::from_str(&v.to_string())
        .map_err(serde::ser::Error::custom)?
        .serialize(s)
}

/// Serialises a decimal as a string: the form operators write in TOML, so a serialised config
/// reads back exactly.
pub(crate) fn serialize_string<S: Serializer>(v: &Decimal, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&v.to_string())
}

/// `serialize_string` for optional values (only called for `Some` when paired with
/// `skip_serializing_if = "Option::is_none"`).
pub(crate) fn serialize_string_option<S: Serializer>(
    v: &Option<Decimal>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match v {
        Some(d) => s.serialize_str(&d.to_string()),
        None => s.serialize_none(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::de::value::{
        Error as ValueError, F64Deserializer, I64Deserializer, StrDeserializer,
    };
    use serde::de::IntoDeserializer;

    #[test]
    fn json_numbers_keep_their_exact_text() {
        // More digits than an f64 holds: a float round trip would change them.
        let mut de = serde_json::Deserializer::from_str("0.12345678901234567890123");
        let d = deserialize_exact(&mut de).expect("exact");
        assert_eq!(d.to_string(), "0.12345678901234567890123");
        let mut de = serde_json::Deserializer::from_str("2.50");
        assert_eq!(
            deserialize_exact(&mut de).expect("exact").to_string(),
            "2.50"
        );
        let mut de = serde_json::Deserializer::from_str("9.7e-7");
        assert_eq!(deserialize_exact(&mut de).expect("exact"), dec!(0.00000097));
    }

    #[test]
    fn strings_and_integers_are_accepted() {
        let s: StrDeserializer<ValueError> = "2.50".into_deserializer();
        assert_eq!(deserialize_exact(s).expect("str"), dec!(2.50));
        let i: I64Deserializer<ValueError> = 3i64.into_deserializer();
        assert_eq!(deserialize_exact(i).expect("int"), dec!(3));
    }

    #[test]
    fn floats_are_rejected_with_a_hint_to_quote() {
        let f: F64Deserializer<ValueError> = 0.1f64.into_deserializer();
        let err = deserialize_exact(f)
            .expect_err("float must be rejected")
            .to_string();
        assert!(err.contains("quote the number"), "{err}");
    }

    #[test]
    fn numbers_serialise_as_exact_json_tokens() {
        #[derive(Serialize)]
        struct W {
            #[serde(serialize_with = "serialize_number")]
            v: Decimal,
        }
        let json = serde_json::to_string(&W { v: dec!(0.075) }).expect("serialise");
        assert_eq!(json, r#"{"v":0.075}"#);
    }
}
