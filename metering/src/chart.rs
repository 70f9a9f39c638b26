//! Pictures of a cost series: a terminal sparkline and a small SVG chart.

use std::fmt::Write as _;

use crate::report::CostSeries;

const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];

/// One block character per value, scaled between `min(0, values)` and the
/// largest value (all equal values draw the lowest bar).
pub fn sparkline(values: &[i64]) -> String {
    let lo = values.iter().copied().min().unwrap_or(0).min(0);
    let hi = values.iter().copied().max().unwrap_or(0);
    let span = i128::from(hi) - i128::from(lo);
    values
        .iter()
        .map(|&v| {
            if span <= 0 {
                BARS[0]
            } else {
                let i = (i128::from(v) - i128::from(lo)) * 7 / span;
                BARS[i.clamp(0, 7) as usize]
            }
        })
        .collect()
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

const COLORS: [&str; 8] = [
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
];

/// A self-contained SVG: one stacked bar per day, one colour per meter,
/// with the largest daily total on the axis and a legend.
pub fn svg_chart(series: &CostSeries) -> String {
    let (w, h, left, top, bottom, legend_w) = (
        720.0_f64, 300.0_f64, 70.0_f64, 30.0_f64, 40.0_f64, 200.0_f64,
    );
    let plot_w = w - left - legend_w;
    let plot_h = h - top - bottom;
    let n = series.days.len().max(1);
    let max_total = series
        .totals
        .iter()
        .map(|m| m.micros())
        .max()
        .unwrap_or(0)
        .max(1);
    let bar_w = plot_w / n as f64;
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="11">"#
    );
    let _ = writeln!(s, r#"<rect width="{w}" height="{h}" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{left}" y="18" font-size="13">Daily cost, {} ({})</text>"#,
        xml_escape(&series.project),
        xml_escape(&series.currency)
    );
    // Axes and the top label.
    let _ = writeln!(
        s,
        r##"<path d="M{left} {top} V{} H{}" stroke="#333" fill="none"/>"##,
        top + plot_h,
        left + plot_w
    );
    let max_label = crate::money::Money::from_micros(max_total).to_cents_string();
    let _ = writeln!(
        s,
        r#"<text x="{}" y="{}" text-anchor="end">{max_label}</text>"#,
        left - 4.0,
        top + 4.0
    );
    let _ = writeln!(
        s,
        r#"<text x="{}" y="{}" text-anchor="end">0</text>"#,
        left - 4.0,
        top + plot_h
    );
    for (i, day) in series.days.iter().enumerate() {
        let x = left + i as f64 * bar_w;
        let mut y = top + plot_h;
        for (k, m) in series.meters.iter().enumerate() {
            let v = m.costs.get(i).map(|c| c.micros()).unwrap_or(0).max(0);
            let bh = plot_h * v as f64 / max_total as f64;
            if bh > 0.0 {
                y -= bh;
                let _ = writeln!(
                    s,
                    r#"<rect x="{x:.2}" y="{y:.2}" width="{:.2}" height="{bh:.2}" fill="{}"><title>{} {}: {}</title></rect>"#,
                    (bar_w * 0.85).max(1.0),
                    COLORS[k % COLORS.len()],
                    day,
                    xml_escape(&m.meter),
                    m.costs.get(i).copied().unwrap_or_default()
                );
            }
        }
        if i == 0 || i + 1 == series.days.len() || (n > 10 && i % (n / 5).max(1) == 0) {
            let _ = writeln!(
                s,
                r#"<text x="{x:.2}" y="{}">{}</text>"#,
                top + plot_h + 14.0,
                &day[5..]
            );
        }
    }
    for (k, m) in series.meters.iter().enumerate() {
        let y = top + 14.0 * k as f64;
        let x = w - legend_w + 10.0;
        let _ = writeln!(
            s,
            r#"<rect x="{x}" y="{y}" width="10" height="10" fill="{}"/>"#,
            COLORS[k % COLORS.len()]
        );
        let _ = writeln!(
            s,
            r#"<text x="{}" y="{}">{}</text>"#,
            x + 14.0,
            y + 9.0,
            xml_escape(&m.meter)
        );
    }
    s.push_str("</svg>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::money::Money;
    use crate::report::MeterCosts;

    #[test]
    fn sparkline_scales() {
        assert_eq!(sparkline(&[]), "");
        assert_eq!(sparkline(&[0, 0]), "▁▁");
        assert_eq!(sparkline(&[0, 7, 14]), "▁▄█");
        assert_eq!(sparkline(&[5, 10]), "▄█");
        assert_eq!(sparkline(&[i64::MIN, i64::MAX]), "▁█");
    }

    #[test]
    fn svg_is_well_formed_enough() {
        let series = CostSeries {
            project: "p<1>".into(),
            currency: "USD".into(),
            days: vec!["2026-03-01".into(), "2026-03-02".into()],
            meters: vec![
                MeterCosts {
                    meter: "instance.vcpu".into(),
                    costs: vec![Money::from_micros(10), Money::from_micros(30)],
                },
                MeterCosts {
                    meter: "instance.memory".into(),
                    costs: vec![Money::from_micros(5), Money::ZERO],
                },
            ],
            totals: vec![Money::from_micros(15), Money::from_micros(30)],
        };
        let svg = svg_chart(&series);
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert!(svg.contains("p&lt;1&gt;"));
        assert_eq!(svg.matches("<title>").count(), 3);
        assert!(svg.contains("instance.memory"));
    }
}
