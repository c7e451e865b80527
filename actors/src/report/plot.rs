//! PNG charts for the run report: training curves as line charts, win rates as bars with
//! their bootstrap intervals.
//!
//! Text goes through plotters' pure-Rust `ab_glyph` path with a DejaVu Sans subset embedded
//! in the binary (actors/assets/, license alongside), never through system fonts: a report
//! must render on a bare machine without fontconfig, freetype or any installed font.

use anyhow::{anyhow, bail, Result};
use plotters::coord::ranged1d::SegmentValue;
use plotters::prelude::*;
use plotters::style::{register_font, FontStyle};
use rlhf::eval::Interval;
use std::error::Error;
use std::ops::Range;
use std::path::Path;
use std::sync::OnceLock;

const SIZE: (u32, u32) = (800, 500);
const FONT: &[u8] = include_bytes!("../../assets/DejaVuSans-subset.ttf");

/// Line colours (matplotlib's "tab10"): distinguishable, and stable across reruns.
const COLORS: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

/// One named line of a [`line_chart`].
#[derive(Clone, Debug, PartialEq)]
pub struct Series {
    pub label: String,
    pub points: Vec<(f64, f64)>,
}

/// One line chart with a legend, axis labels and a title, written as an 800x500 PNG.
/// Non-finite points are skipped; with no finite point at all the chart is drawn with
/// empty unit axes. `path` must end in `.png`; its folder must exist.
pub fn line_chart(
    path: &Path,
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[Series],
) -> Result<()> {
    check_png(path)?;
    draw_lines(path, title, x_label, y_label, series)
        .map_err(|e| anyhow!("writing chart {}: {e}", path.display()))
}

/// Bars with 95% interval whiskers (e.g. each model's win rate against SFT), one per
/// `(name, interval)`, written as an 800x500 PNG. `reference` draws a horizontal line
/// (0.5: parity with the baseline). Bars with a non-finite mean are left out of the drawing
/// but keep their slot and label. `path` must end in `.png`; its folder must exist.
pub fn bar_chart_with_intervals(
    path: &Path,
    title: &str,
    y_label: &str,
    bars: &[(String, Interval)],
    reference: Option<f64>,
) -> Result<()> {
    check_png(path)?;
    draw_bars(path, title, y_label, bars, reference)
        .map_err(|e| anyhow!("writing chart {}: {e}", path.display()))
}

fn check_png(path: &Path) -> Result<()> {
    let png = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("png"));
    if !png {
        bail!("chart path {} must end in .png", path.display());
    }
    Ok(())
}

/// Registers the embedded font once per process for the families plotters asks for.
fn fonts() -> std::result::Result<(), String> {
    static REGISTERED: OnceLock<std::result::Result<(), String>> = OnceLock::new();
    REGISTERED
        .get_or_init(|| {
            for family in ["sans-serif", "serif", "monospace"] {
                register_font(family, FontStyle::Normal, FONT)
                    .map_err(|_| "the embedded chart font does not parse".to_string())?;
            }
            Ok(())
        })
        .clone()
}

type DrawResult = std::result::Result<(), Box<dyn Error>>;

fn draw_lines(
    path: &Path,
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[Series],
) -> DrawResult {
    fonts()?;
    let finite: Vec<Vec<(f64, f64)>> = series
        .iter()
        .map(|s| {
            s.points
                .iter()
                .copied()
                .filter(|(x, y)| x.is_finite() && y.is_finite())
                .collect()
        })
        .collect();
    let all = || finite.iter().flatten();
    let x_range = padded_range(all().map(|p| p.0), 0.0);
    let y_range = padded_range(all().map(|p| p.1), 0.05);
    let (x_ticks, y_ticks) = (tick_format(&x_range), tick_format(&y_range));

    let root = BitMapBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 24))
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(70)
        .build_cartesian_2d(x_range, y_range)?;
    chart
        .configure_mesh()
        .x_desc(x_label)
        .y_desc(y_label)
        .x_label_formatter(&x_ticks)
        .y_label_formatter(&y_ticks)
        .axis_desc_style(("sans-serif", 16))
        .label_style(("sans-serif", 13))
        .max_light_lines(1)
        .light_line_style(BLACK.mix(0.05))
        .bold_line_style(BLACK.mix(0.15))
        .draw()?;

    for (i, (s, points)) in series.iter().zip(&finite).enumerate() {
        let color = COLORS[i % COLORS.len()];
        let style = color.stroke_width(2);
        chart
            .draw_series(LineSeries::new(points.iter().copied(), style))?
            .label(s.label.as_str())
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], style));
        // A lone point draws no line; short series get markers so each point shows.
        if points.len() <= 40 {
            chart.draw_series(points.iter().map(|&p| Circle::new(p, 3, color.filled())))?;
        }
    }
    if series.iter().any(|s| !s.label.is_empty()) {
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .label_font(("sans-serif", 13))
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK.mix(0.4))
            .draw()?;
    }
    root.present()?;
    Ok(())
}

fn draw_bars(
    path: &Path,
    title: &str,
    y_label: &str,
    bars: &[(String, Interval)],
    reference: Option<f64>,
) -> DrawResult {
    fonts()?;
    let bounds = bars
        .iter()
        .flat_map(|(_, iv)| [iv.mean, iv.lo, iv.hi])
        .chain(reference)
        .chain([0.0]); // bars grow from 0, so 0 is always on the axis
    let y_range = padded_range(bounds, 0.08);
    let y_ticks = tick_format(&y_range);
    // Integer ranges are inclusive in plotters: 0..n-1 makes n segments, the last one
    // closed by `SegmentValue::Last`.
    let n = bars.len().max(1);
    let right_of = |i: usize| {
        if i + 1 < n {
            SegmentValue::Exact(i + 1)
        } else {
            SegmentValue::Last
        }
    };

    let root = BitMapBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 24))
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(70)
        .build_cartesian_2d((0..n - 1).into_segmented(), y_range)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .y_desc(y_label)
        .axis_desc_style(("sans-serif", 16))
        .label_style(("sans-serif", 13))
        .y_label_formatter(&y_ticks)
        .max_light_lines(1)
        .light_line_style(BLACK.mix(0.05))
        .bold_line_style(BLACK.mix(0.15))
        .x_labels(n)
        .x_label_formatter(&|v| match v {
            SegmentValue::CenterOf(i) => bars.get(*i).map(|b| b.0.clone()).unwrap_or_default(),
            _ => String::new(),
        })
        .draw()?;

    let shown = || {
        bars.iter()
            .enumerate()
            .filter(|(_, (_, iv))| iv.mean.is_finite())
    };
    chart.draw_series(shown().map(|(i, (_, iv))| {
        let color = COLORS[i % COLORS.len()];
        let mut bar = Rectangle::new(
            [(SegmentValue::Exact(i), 0.0), (right_of(i), iv.mean)],
            color.mix(0.8).filled(),
        );
        bar.set_margin(0, 0, 25, 25);
        bar
    }))?;
    chart.draw_series(
        shown()
            .filter(|(_, (_, iv))| iv.lo.is_finite() && iv.hi.is_finite())
            .map(|(i, (_, iv))| {
                ErrorBar::new_vertical(
                    SegmentValue::CenterOf(i),
                    iv.lo,
                    iv.mean,
                    iv.hi,
                    BLACK.stroke_width(2),
                    16,
                )
            }),
    )?;
    if let Some(r) = reference.filter(|r| r.is_finite()) {
        let ends = [(SegmentValue::Exact(0), r), (SegmentValue::Last, r)];
        chart.draw_series(std::iter::once(PathElement::new(ends, BLACK.mix(0.5))))?;
    }
    root.present()?;
    Ok(())
}

/// Tick labels with as many decimals as a tenth of the axis span needs ("20", "0.2",
/// "0.015"), and never "-0.0" for a tick that is zero up to rounding.
fn tick_format(range: &Range<f64>) -> impl Fn(&f64) -> String {
    let step = (range.end - range.start) / 10.0;
    let decimals = (-step.log10()).ceil().clamp(0.0, 8.0) as usize;
    move |v| {
        let s = format!("{v:.decimals$}");
        match s.strip_prefix('-') {
            Some(abs) if abs.chars().all(|c| c == '0' || c == '.') => abs.to_string(),
            _ => s,
        }
    }
}

/// The range spanned by the finite `values`, widened by `pad` of its span on each side.
/// Falls back to 0..1 without values and to v-0.5..v+0.5 when all values are equal, so
/// plotters always gets a non-empty range.
fn padded_range(values: impl Iterator<Item = f64>, pad: f64) -> Range<f64> {
    let (lo, hi) = values
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(v), hi.max(v))
        });
    if lo > hi {
        0.0..1.0
    } else if lo == hi {
        lo - 0.5..hi + 0.5
    } else {
        let p = (hi - lo) * pad;
        lo - p..hi + p
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    /// A fresh file path under the system temp dir, unique per test and process.
    fn temp_png(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("rlhf-plot-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir.join(format!("{name}.png"))
    }

    fn assert_png(path: &Path) {
        let bytes = std::fs::read(path).unwrap();
        assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "{}", path.display());
        // An 800x500 RGB chart with text compresses to a few KB up to some tens of KB.
        assert!(
            (2_000..2_000_000).contains(&bytes.len()),
            "{} bytes",
            bytes.len()
        );
        std::fs::remove_file(path).unwrap();
    }

    #[test]
    fn line_chart_writes_a_png() {
        let path = temp_png("lines");
        let series = [
            Series {
                label: "policy loss".into(),
                points: (0..200)
                    .map(|i| (i as f64, (i as f64 / 20.0).sin()))
                    .collect(),
            },
            Series {
                label: "KL (β = 0.02)".into(),
                points: vec![(0.0, 0.0), (50.0, f64::NAN), (100.0, 0.4), (150.0, 0.1)],
            },
        ];
        line_chart(&path, "PPO — training", "step", "value", &series).unwrap();
        assert_png(&path);
    }

    #[test]
    fn empty_and_degenerate_series_still_chart() {
        let path = temp_png("empty");
        line_chart(&path, "nothing yet", "step", "loss", &[]).unwrap();
        assert_png(&path);
        let path = temp_png("degenerate");
        let one = Series {
            label: "one point".into(),
            points: vec![(3.0, 2.0), (f64::INFINITY, 1.0)],
        };
        let none = Series {
            label: "no points".into(),
            points: vec![],
        };
        line_chart(&path, "degenerate", "step", "loss", &[one, none]).unwrap();
        assert_png(&path);
    }

    #[test]
    fn bar_chart_writes_a_png() {
        let path = temp_png("bars");
        let iv = |mean, lo, hi| Interval { mean, lo, hi };
        let bars = [
            ("PPO".to_string(), iv(0.612, 0.57, 0.653)),
            ("PPO-ptx".to_string(), iv(0.58, 0.54, 0.62)),
            ("empty".to_string(), Interval::NAN),
        ];
        bar_chart_with_intervals(&path, "Win rate vs SFT", "win rate", &bars, Some(0.5)).unwrap();
        assert_png(&path);
        let path = temp_png("no-bars");
        bar_chart_with_intervals(&path, "none", "win rate", &[], None).unwrap();
        assert_png(&path);
    }

    #[test]
    fn errors_name_the_path() {
        let dir = temp_png("missing").with_extension("");
        let path = dir.join("no-such-dir").join("chart.png");
        let err = line_chart(&path, "t", "x", "y", &[]).unwrap_err();
        assert!(format!("{err:#}").contains("no-such-dir"), "{err:#}");
        let err = line_chart(Path::new("chart.svg"), "t", "x", "y", &[]).unwrap_err();
        assert!(err.to_string().contains("chart.svg"), "{err}");
    }

    #[test]
    fn ticks_have_the_decimals_the_span_needs() {
        let f = tick_format(&(0.0..200.0));
        assert_eq!((f(&20.0), f(&-0.0)), ("20".to_string(), "0".to_string()));
        let f = tick_format(&(-1.1..1.1));
        assert_eq!(
            (f(&0.2), f(&-1e-17)),
            ("0.2".to_string(), "0.0".to_string())
        );
        assert_eq!(tick_format(&(0.0..0.05))(&0.015), "0.015");
    }

    #[test]
    fn padded_range_never_empty() {
        assert_eq!(padded_range([].into_iter(), 0.1), 0.0..1.0);
        assert_eq!(padded_range([2.0, f64::NAN].into_iter(), 0.1), 1.5..2.5);
        assert_eq!(padded_range([0.0, 10.0].into_iter(), 0.1), -1.0..11.0);
    }
}
