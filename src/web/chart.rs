//! The chart on a trigger's page: matches and deliveries per run over
//! time, written as inline SVG (axes, gridlines, two series, labels, a
//! legend). Pure: runs in, markup out; every text is escaped.

use std::fmt::Write as _;

use chrono::{DateTime, Utc};

/// The chart's drawing size in SVG units (it scales to its box).
const WIDTH: f64 = 720.0;
const HEIGHT: f64 = 240.0;
/// Room for the y labels on the left and the x labels below.
const LEFT: f64 = 48.0;
const RIGHT: f64 = 16.0;
const TOP: f64 = 28.0;
const BOTTOM: f64 = 36.0;
/// How many gridlines above zero the value axis may have, in order of
/// preference: the first that divides the axis' top evenly is used.
const Y_STEPS: [u64; 4] = [4, 5, 2, 1];
/// Labelled instants on the time axis (first, evenly between, last).
const X_LABELS: usize = 4;
/// The labels' and the legend's text size (SVG units).
const FONT: u32 = 13;

/// The series' colours: matches, deliveries.
const MATCHES_COLOUR: &str = "#2563eb";
const DELIVERIES_COLOUR: &str = "#d97706";

/// One run on the chart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunPoint {
    pub at: DateTime<Utc>,
    pub matches: u64,
    pub deliveries: u64,
}

/// The SVG for `points` (any order); a chart saying so when there are none.
pub fn runs_chart(points: &[RunPoint]) -> String {
    let mut points = points.to_vec();
    points.sort_by_key(|p| p.at);
    let mut svg = format!(
        "<svg class=\"chart\" viewBox=\"0 0 {WIDTH} {HEIGHT}\" role=\"img\" \
         aria-label=\"matches and deliveries per run\" xmlns=\"http://www.w3.org/2000/svg\">"
    );
    legend(&mut svg);
    if points.is_empty() {
        let _ = write!(
            svg,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\" fill=\"#6b7280\" font-size=\"{FONT}\">no runs yet</text>",
            WIDTH / 2.0,
            HEIGHT / 2.0
        );
        svg.push_str("</svg>");
        return svg;
    }
    let top = nice_ceiling(
        points
            .iter()
            .map(|p| p.matches.max(p.deliveries))
            .max()
            .unwrap_or(0),
    );
    let scale = Scale::new(&points, top);
    y_axis(&mut svg, top);
    x_axis(&mut svg, &points, &scale);
    series(&mut svg, &points, &scale, MATCHES_COLOUR, "matches", |p| {
        p.matches
    });
    series(
        &mut svg,
        &points,
        &scale,
        DELIVERIES_COLOUR,
        "deliveries",
        |p| p.deliveries,
    );
    svg.push_str("</svg>");
    svg
}

/// The smallest 1, 2 or 5 × 10^k that is at least `value` (and at least 1),
/// so gridlines fall on round numbers.
pub fn nice_ceiling(value: u64) -> u64 {
    let mut magnitude = 1u64;
    loop {
        for step in [1u64, 2, 5] {
            let candidate = step.saturating_mul(magnitude);
            if candidate >= value.max(1) {
                return candidate;
            }
        }
        if magnitude > u64::MAX / 10 {
            return u64::MAX;
        }
        magnitude *= 10;
    }
}

/// Maps runs to drawing coordinates.
struct Scale {
    first: i64,
    span: i64,
    top: u64,
}

impl Scale {
    fn new(points: &[RunPoint], top: u64) -> Scale {
        let first = points.first().map_or(0, |p| p.at.timestamp_millis());
        let last = points.last().map_or(0, |p| p.at.timestamp_millis());
        Scale {
            first,
            span: last - first,
            top,
        }
    }

    fn x(&self, at: DateTime<Utc>) -> f64 {
        let plot = WIDTH - LEFT - RIGHT;
        match self.span {
            0 => LEFT + plot / 2.0,
            span => LEFT + plot * (at.timestamp_millis() - self.first) as f64 / span as f64,
        }
    }

    fn y(&self, value: u64) -> f64 {
        let plot = HEIGHT - TOP - BOTTOM;
        HEIGHT - BOTTOM - plot * value as f64 / self.top as f64
    }
}

fn legend(svg: &mut String) {
    for (i, (colour, label)) in [
        (MATCHES_COLOUR, "matches"),
        (DELIVERIES_COLOUR, "deliveries"),
    ]
    .into_iter()
    .enumerate()
    {
        let x = LEFT + 120.0 * i as f64;
        let _ = write!(
            svg,
            "<rect x=\"{x}\" y=\"8\" width=\"12\" height=\"12\" fill=\"{colour}\"/>\
             <text x=\"{}\" y=\"18\" font-size=\"{FONT}\" fill=\"#111827\">{label}</text>",
            x + 16.0
        );
    }
}

/// The values the gridlines mark, from 0 to `top` in whole, even steps.
pub fn y_ticks(top: u64) -> Vec<u64> {
    let steps = Y_STEPS
        .into_iter()
        .find(|n| *n <= top && top.is_multiple_of(*n))
        .unwrap_or(1);
    (0..=steps).map(|i| top / steps * i).collect()
}

fn y_axis(svg: &mut String, top: u64) {
    let plot = HEIGHT - TOP - BOTTOM;
    for value in y_ticks(top) {
        let y = HEIGHT - BOTTOM - plot * value as f64 / top.max(1) as f64;
        let _ = write!(
            svg,
            "<line x1=\"{LEFT}\" y1=\"{y:.1}\" x2=\"{}\" y2=\"{y:.1}\" stroke=\"#e5e7eb\"/>\
             <text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\" font-size=\"{FONT}\" fill=\"#4b5563\">{value}</text>",
            WIDTH - RIGHT,
            LEFT - 6.0,
            y + 4.0
        );
    }
    let _ = write!(
        svg,
        "<line x1=\"{LEFT}\" y1=\"{TOP}\" x2=\"{LEFT}\" y2=\"{}\" stroke=\"#9ca3af\"/>",
        HEIGHT - BOTTOM
    );
}

fn x_axis(svg: &mut String, points: &[RunPoint], scale: &Scale) {
    let base = HEIGHT - BOTTOM;
    let _ = write!(
        svg,
        "<line x1=\"{LEFT}\" y1=\"{base}\" x2=\"{}\" y2=\"{base}\" stroke=\"#9ca3af\"/>",
        WIDTH - RIGHT
    );
    let format = time_format(points);
    for at in label_instants(points) {
        let x = scale.x(at);
        let anchor = match x {
            x if x < LEFT + 40.0 => "start",
            x if x > WIDTH - RIGHT - 40.0 => "end",
            _ => "middle",
        };
        let _ = write!(
            svg,
            "<line x1=\"{x:.1}\" y1=\"{base}\" x2=\"{x:.1}\" y2=\"{}\" stroke=\"#9ca3af\"/>\
             <text x=\"{x:.1}\" y=\"{}\" text-anchor=\"{anchor}\" font-size=\"{FONT}\" fill=\"#4b5563\">{}</text>",
            base + 4.0,
            base + 18.0,
            escape(&at.format(format).to_string())
        );
    }
}

/// How the time axis labels instants: to the second when the runs span
/// under an hour, to the minute under two days, else by the day.
fn time_format(points: &[RunPoint]) -> &'static str {
    let (Some(first), Some(last)) = (points.first(), points.last()) else {
        return "%m-%d %H:%M";
    };
    match last.at - first.at {
        span if span < chrono::Duration::hours(1) => "%H:%M:%S",
        span if span < chrono::Duration::days(2) => "%m-%d %H:%M",
        _ => "%Y-%m-%d",
    }
}

/// The instants labelled on the time axis: the first and last run, and
/// evenly spaced ones between (one when every run is at one instant).
fn label_instants(points: &[RunPoint]) -> Vec<DateTime<Utc>> {
    let (Some(first), Some(last)) = (points.first(), points.last()) else {
        return Vec::new();
    };
    if first.at == last.at {
        return vec![first.at];
    }
    let span = last.at - first.at;
    (0..X_LABELS)
        .map(|i| first.at + span * i as i32 / (X_LABELS as i32 - 1))
        .collect()
}

fn series(
    svg: &mut String,
    points: &[RunPoint],
    scale: &Scale,
    colour: &str,
    label: &str,
    value: impl Fn(&RunPoint) -> u64,
) {
    let path: Vec<String> = points
        .iter()
        .map(|p| format!("{:.1},{:.1}", scale.x(p.at), scale.y(value(p))))
        .collect();
    let _ = write!(
        svg,
        "<polyline class=\"series\" data-series=\"{label}\" fill=\"none\" stroke=\"{colour}\" stroke-width=\"2\" points=\"{}\"/>",
        path.join(" ")
    );
    for p in points {
        let _ = write!(
            svg,
            "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"3\" fill=\"{colour}\"><title>{}: {} {label}</title></circle>",
            scale.x(p.at),
            scale.y(value(p)),
            escape(&p.at.format("%Y-%m-%d %H:%M:%S UTC").to_string()),
            value(p)
        );
    }
}

/// Text safe inside SVG elements and attribute values.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(minute: i64, matches: u64, deliveries: u64) -> RunPoint {
        RunPoint {
            at: DateTime::<Utc>::from_timestamp(1_800_000_000 + minute * 60, 0).unwrap(),
            matches,
            deliveries,
        }
    }

    #[test]
    fn gridlines_fall_on_round_numbers() {
        assert_eq!(nice_ceiling(0), 1);
        assert_eq!(nice_ceiling(1), 1);
        assert_eq!(nice_ceiling(3), 5);
        assert_eq!(nice_ceiling(7), 10);
        assert_eq!(nice_ceiling(11), 20);
        assert_eq!(nice_ceiling(250), 500);
        assert_eq!(nice_ceiling(u64::MAX), u64::MAX);
        assert_eq!(y_ticks(1), vec![0, 1]);
        assert_eq!(y_ticks(2), vec![0, 1, 2]);
        assert_eq!(y_ticks(10), vec![0, 2, 4, 6, 8, 10]);
        assert_eq!(y_ticks(20), vec![0, 5, 10, 15, 20]);
    }

    #[test]
    fn two_series_with_a_point_per_run_in_time_order() {
        let svg = runs_chart(&[run(10, 4, 1), run(0, 2, 2), run(20, 8, 0)]);
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
        assert_eq!(svg.matches("<polyline").count(), 2);
        assert_eq!(svg.matches("<circle").count(), 6);
        // y runs 0..10 (the largest value, 8, rounded up): 8 matches at
        // the last run, x at the right edge, y at 80% of the plot height.
        let plot = HEIGHT - TOP - BOTTOM;
        let last = format!("{:.1},{:.1}", WIDTH - RIGHT, HEIGHT - BOTTOM - plot * 0.8);
        let matches = svg.split("data-series=\"matches\"").nth(1).unwrap();
        let points = matches.split("points=\"").nth(1).unwrap();
        let points = points.split('"').next().unwrap();
        assert!(points.starts_with(&format!("{LEFT:.1},")), "{points}");
        assert!(points.ends_with(&last), "{points} ends at {last}");
        assert!(svg.contains(">10</text>"), "the top gridline is labelled");
        assert!(svg.contains("8 matches</title>"));
        assert!(svg.contains("0 deliveries</title>"));
    }

    #[test]
    fn one_run_sits_in_the_middle_and_no_runs_says_so() {
        let svg = runs_chart(&[run(0, 3, 3)]);
        let middle = LEFT + (WIDTH - LEFT - RIGHT) / 2.0;
        assert!(svg.contains(&format!("cx=\"{middle:.1}\"")), "{svg}");
        assert!(runs_chart(&[]).contains("no runs yet"));
    }

    #[test]
    fn the_time_axis_shows_seconds_minutes_or_days_as_the_span_needs() {
        assert_eq!(time_format(&[run(0, 1, 1), run(59, 1, 1)]), "%H:%M:%S");
        assert_eq!(
            time_format(&[run(0, 1, 1), run(60 * 30, 1, 1)]),
            "%m-%d %H:%M"
        );
        assert_eq!(time_format(&[run(0, 1, 1), run(60 * 72, 1, 1)]), "%Y-%m-%d");
        let svg = runs_chart(&[run(0, 1, 1), run(1, 1, 1)]);
        assert!(
            svg.contains(">08:00:00</text>") && svg.contains(">08:01:00</text>"),
            "{svg}"
        );
    }

    #[test]
    fn labels_are_escaped() {
        assert_eq!(
            escape("<a href='x'>&\""),
            "&lt;a href=&#39;x&#39;&gt;&amp;&quot;"
        );
    }
}
