//! Server-rendered SVG charts: stacked bars over time, with an optional forecast.
//!
//! Charts are drawn on the server so pages work without JavaScript and offline. Geometry is
//! computed from the exact decimals with integer pixels (no floats anywhere near money); each
//! bar carries a `<title>` tooltip with the exact amount. Every piece of text is escaped here,
//! because templates insert the finished SVG unescaped.

use std::fmt::Write;

use rust_decimal::prelude::ToPrimitive;
use rust_decimal::Decimal;

use crate::domain::money::{display_usd, to_api_string};

/// One stacked series: a label and one value per bucket (same length as the buckets).
#[derive(Debug, Clone)]
pub struct Series {
    pub label: String,
    pub values: Vec<Decimal>,
}

/// A stacked bar chart over labelled buckets.
#[derive(Debug, Clone, Default)]
pub struct BarChart {
    pub buckets: Vec<String>,
    pub series: Vec<Series>,
    /// Projected values for buckets after the data (drawn hatched), one per bucket; `None`
    /// where there is no projection.
    pub forecast: Vec<Option<Decimal>>,
    pub title: String,
    /// Values are counts (events), not dollars: axis and tooltips show plain numbers.
    pub counts: bool,
}

/// Colours of the series, readable on light and dark backgrounds.
const PALETTE: [&str; 9] = [
    "#2d6cdf", "#e8743b", "#19a979", "#ed4a7b", "#945ecf", "#13a4b4", "#525df4", "#bf399e",
    "#8d99ae",
];

const WIDTH: i64 = 960;
const HEIGHT: i64 = 260;
const LEFT: i64 = 64;
const BOTTOM: i64 = 28;
const TOP: i64 = 12;

/// Escapes text for SVG/XML content and attributes.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Pixels for `value` on a scale where `max` is `span` pixels (integer arithmetic on decimals).
fn px(value: Decimal, max: Decimal, span: i64) -> i64 {
    if max <= Decimal::ZERO || value <= Decimal::ZERO {
        return 0;
    }
    (value * Decimal::from(span) / max)
        .round()
        .to_i64()
        .unwrap_or(0)
        .clamp(0, span)
}

/// A "nice" axis maximum at or above `max`: 1, 2 or 5 times a power of ten.
fn nice_max(max: Decimal) -> Decimal {
    if max <= Decimal::ZERO {
        return Decimal::ONE;
    }
    let mut step = Decimal::new(1, 6);
    loop {
        for m in [1, 2, 5] {
            let candidate = step * Decimal::from(m);
            if candidate >= max {
                return candidate;
            }
        }
        step *= Decimal::TEN;
    }
}

impl BarChart {
    /// A value as the axis and tooltips show it.
    fn show(&self, v: Decimal) -> String {
        if self.counts {
            v.normalize().to_string()
        } else {
            display_usd(v)
        }
    }

    /// The chart as an SVG element.
    pub fn render(&self) -> String {
        let n = self.buckets.len().max(1) as i64;
        let plot_w = WIDTH - LEFT - 8;
        let plot_h = HEIGHT - TOP - BOTTOM;
        let totals: Vec<Decimal> = (0..self.buckets.len())
            .map(|i| {
                self.series
                    .iter()
                    .map(|s| s.values.get(i).copied().unwrap_or_default())
                    .sum::<Decimal>()
            })
            .collect();
        let peak = totals
            .iter()
            .copied()
            .chain(self.forecast.iter().flatten().copied())
            .max()
            .unwrap_or_default();
        let max = nice_max(peak);
        let slot = plot_w / n;
        let bar_w = (slot * 7 / 10).max(1);

        let mut svg = String::new();
        let _ = write!(
            svg,
            r#"<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{}" xmlns="http://www.w3.org/2000/svg">"#,
            escape(&self.title)
        );
        // Grid lines and axis labels at 0, ½ and the maximum.
        for (frac_num, frac_den) in [(0i64, 2i64), (1, 2), (2, 2)] {
            let y = TOP + plot_h - plot_h * frac_num / frac_den;
            let value = max * Decimal::from(frac_num) / Decimal::from(frac_den);
            let _ = write!(
                svg,
                r#"<line class="grid" x1="{LEFT}" y1="{y}" x2="{}" y2="{y}"/><text class="axis" x="{}" y="{}" text-anchor="end">{}</text>"#,
                WIDTH - 8,
                LEFT - 6,
                y + 4,
                escape(&self.show(value))
            );
        }
        for (i, bucket) in self.buckets.iter().enumerate() {
            let x = LEFT + slot * i as i64 + (slot - bar_w) / 2;
            let mut y = TOP + plot_h;
            for (k, series) in self.series.iter().enumerate() {
                let v = series.values.get(i).copied().unwrap_or_default();
                let h = px(v, max, plot_h);
                if h == 0 {
                    continue;
                }
                y -= h;
                let _ = write!(
                    svg,
                    r#"<rect x="{x}" y="{y}" width="{bar_w}" height="{h}" fill="{}"><title>{} · {}: {}</title></rect>"#,
                    PALETTE[k % PALETTE.len()],
                    escape(bucket),
                    escape(&series.label),
                    escape(&if self.counts {
                        self.show(v)
                    } else {
                        format!("{} (${})", display_usd(v), to_api_string(v))
                    })
                );
            }
            if let Some(Some(f)) = self.forecast.get(i) {
                let h = px(*f, max, plot_h);
                if h > 0 {
                    let _ = write!(
                        svg,
                        r#"<rect class="forecast" x="{x}" y="{}" width="{bar_w}" height="{h}"><title>{} · forecast: {}</title></rect>"#,
                        TOP + plot_h - h,
                        escape(bucket),
                        escape(&display_usd(*f))
                    );
                }
            }
            // Label every bucket when few, else about ten of them.
            let every = (self.buckets.len() / 10).max(1);
            if i % every == 0 {
                let _ = write!(
                    svg,
                    r#"<text class="axis" x="{}" y="{}" text-anchor="middle">{}</text>"#,
                    x + bar_w / 2,
                    HEIGHT - 8,
                    escape(bucket)
                );
            }
        }
        svg.push_str("</svg>");
        svg
    }

    /// The legend: series labels with the CSS class of their colour (`c0`…`c8`; the page's
    /// CSP forbids inline styles, so colours come from the stylesheet).
    pub fn legend(&self) -> Vec<(String, String)> {
        self.series
            .iter()
            .enumerate()
            .map(|(k, s)| (s.label.clone(), format!("c{}", k % PALETTE.len())))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_scale_to_a_nice_maximum_and_escape_labels() {
        let chart = BarChart {
            buckets: vec!["Mon".into(), "<Tue>".into()],
            series: vec![
                Series {
                    label: "a&b".into(),
                    values: vec![dec!(30), dec!(10)],
                },
                Series {
                    label: "c".into(),
                    values: vec![dec!(10), dec!(0)],
                },
            ],
            forecast: vec![None, Some(dec!(50))],
            title: "Spend".into(),
            counts: false,
        };
        let svg = chart.render();
        assert!(svg.contains("&lt;Tue&gt;") && svg.contains("a&amp;b") && !svg.contains("<Tue>"));
        // Max 50 → nice 50; plot height 220: 30 → 132 px, 10 → 44 px, forecast 50 → 220 px.
        assert!(
            svg.contains(r#"height="132""#)
                && svg.contains(r#"height="44""#)
                && svg.contains(r#"height="220""#)
        );
        assert!(svg.contains("(30)") || svg.contains("($30)"), "{svg}");
        assert_eq!(nice_max(dec!(0.0042)), dec!(0.005));
        assert_eq!(nice_max(dec!(1234)), dec!(2000));
    }
}
