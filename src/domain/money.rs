//! Money: exact decimal amounts and the one scale at which Tally stores them.
//!
//! Every amount is a `rust_decimal::Decimal` from parsing to the dashboard and a `DECIMAL` column
//! in DuckDB; nothing here ever touches a float. Per-event costs are stored with
//! [`COST_SCALE`] decimal places, which keeps a single token of the cheapest model exact while
//! fitting DuckDB's fast 64-bit `DECIMAL(18, 12)`.

use rust_decimal::{Decimal, RoundingStrategy};

/// Decimal places of every stored per-event cost (a picodollar).
pub const COST_SCALE: u32 = 12;

/// Largest per-event cost a `DECIMAL(18, 12)` column holds.
pub fn max_event_cost() -> Decimal {
    // 18 digits, 12 of them after the point: 999999.999999999999.
    Decimal::from_i128_with_scale(999_999_999_999_999_999, COST_SCALE)
}

/// Rounds an amount to the stored scale (banker's rounding, so rounding errors do not drift one
/// way over millions of events).
pub fn round_cost(amount: Decimal) -> Decimal {
    amount.round_dp_with_strategy(COST_SCALE, RoundingStrategy::MidpointNearestEven)
}

/// Formats an amount for the JSON API: every stored digit, trailing zeros dropped.
pub fn to_api_string(amount: Decimal) -> String {
    amount.normalize().to_string()
}

/// Formats a USD amount for people: `$1,234.56`; amounts under a dollar keep four decimals so
/// small per-call costs do not all read `$0.00`. Exact values belong in tooltips and exports.
pub fn display_usd(amount: Decimal) -> String {
    let dp = if amount.abs() < Decimal::ONE && !amount.is_zero() {
        4
    } else {
        2
    };
    let rounded = amount.round_dp_with_strategy(dp, RoundingStrategy::MidpointAwayFromZero);
    let text = format!("{:.*}", dp as usize, rounded.abs());
    let (int, frac) = text.split_once('.').unwrap_or((&text, ""));
    let mut grouped = String::new();
    for (i, ch) in int.chars().enumerate() {
        if i > 0 && (int.len() - i) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(ch);
    }
    let sign = if amount.is_sign_negative() && !rounded.is_zero() {
        "-"
    } else {
        ""
    };
    format!("{sign}${grouped}.{frac}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display() {
        let d = |s: &str| display_usd(s.parse().unwrap());
        assert_eq!(d("1234567.891"), "$1,234,567.89");
        assert_eq!(d("0.012345"), "$0.0123");
        assert_eq!(d("0"), "$0.00");
        assert_eq!(d("999.995"), "$1,000.00");
        assert_eq!(d("-12.5"), "-$12.50");
    }

    #[test]
    fn rounding_to_the_stored_scale_is_half_even() {
        assert_eq!(
            round_cost("0.0000000000005".parse().unwrap()).to_string(),
            "0.000000000000"
        );
        assert_eq!(
            round_cost("0.0000000000015".parse().unwrap()).to_string(),
            "0.000000000002"
        );
    }
}
