//! `rlhf bench scaling`: how the time of a training step (SFT, forward + backward + AdamW)
//! and of a generation run grows as the batch doubles and as the model doubles (d_model
//! and/or layers), on random models of the shape flags. Prints a JSON line per
//! measurement, then a table, and draws every curve relative to its first point against
//! the number of doublings, beside the linear-scaling line, into one PNG.

use super::generate::{GenerateBench, Generating};
use super::shape::{merge, ShapeArgs};
use super::sys;
use super::train::{Mode, TrainBench, Training};
use crate::report::plot::{line_chart, Series};
use clap::Args;
use rlhf::model::Head;
use serde_json::json;
use std::path::PathBuf;

/// Settings of `rlhf bench scaling`.
#[derive(Args, Clone)]
pub struct ScalingBench {
    /// Batch sizes of the batch sweep (the shape flags' model), comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "4,8,16")]
    pub batches: Vec<i64>,
    /// Widths of the d_model sweep at --batch (each keeps --heads); empty: no such sweep.
    #[arg(long, value_delimiter = ',', default_value = "128,256,512")]
    pub d_models: Vec<i64>,
    /// Layer counts of the layers sweep at --batch (e.g. 3,6,12); empty: no such sweep.
    #[arg(long, value_delimiter = ',')]
    pub layer_counts: Vec<i64>,
    /// Batch of the model-size sweeps.
    #[arg(long, default_value_t = 8)]
    pub batch: i64,
    /// Tokens per training sequence.
    #[arg(long, default_value_t = 192)]
    pub seq_len: i64,
    #[arg(long, default_value_t = 64)]
    pub prompt_len: i64,
    /// Tokens sampled per generation run (no early stop, temperature 1, top_k 0).
    #[arg(long, default_value_t = 64)]
    pub new_tokens: i64,
    /// Where the chart goes (its folder is created).
    #[arg(long, default_value = "runs/bench/scaling.png")]
    pub out: PathBuf,
}

/// One measured point of one sweep.
struct Point {
    sweep: &'static str,
    /// The value that doubles (batch, d_model or layers).
    value: i64,
    batch: i64,
    d_model: i64,
    layers: i64,
    params: i64,
    train_seconds: f64,
    train_tokens_per_second: f64,
    train_peak_fraction: f64,
    generate_seconds: f64,
    generate_tokens_per_second: f64,
    generate_peak_fraction: f64,
}

pub fn run(shape: &ShapeArgs, s: &ScalingBench) -> anyhow::Result<()> {
    shape.setup()?;
    anyhow::ensure!(
        shape.model.is_none(),
        "bench scaling builds random models of each size; --model does not apply"
    );
    anyhow::ensure!(
        !s.batches.is_empty() || !s.d_models.is_empty() || !s.layer_counts.is_empty(),
        "nothing to sweep: give --batches, --d-models or --layer-counts"
    );
    let positive = |list: &[i64]| list.iter().all(|&v| v > 0);
    anyhow::ensure!(
        positive(&s.batches) && positive(&s.d_models) && positive(&s.layer_counts) && s.batch > 0,
        "batch sizes, widths and layer counts must be at least 1"
    );
    if let Some(d) = s.d_models.iter().find(|&&d| d % shape.heads != 0) {
        anyhow::bail!(
            "--d-models: {d} is not divisible into {} heads",
            shape.heads
        );
    }
    anyhow::ensure!(
        s.out.extension().is_some_and(|e| e == "png"),
        "--out must end in .png"
    );
    let mut points = Vec::new();
    for &batch in &s.batches {
        points.push(measure(shape, s, "batch", batch, batch)?);
    }
    for &d_model in &s.d_models {
        let sized = ShapeArgs {
            d_model,
            ..shape.clone()
        };
        points.push(measure(&sized, s, "d_model", d_model, s.batch)?);
    }
    for &layers in &s.layer_counts {
        let sized = ShapeArgs {
            layers,
            ..shape.clone()
        };
        points.push(measure(&sized, s, "layers", layers, s.batch)?);
    }
    println!("{}", table(&points));
    if let Some(dir) = s.out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let series = chart_series(&points);
    line_chart(
        &s.out,
        "Step time as batch and model size double",
        "doublings from the first point",
        "time / time at the first point",
        &series,
    )?;
    println!(
        "{}",
        json!({"bench": "scaling", "chart": s.out.display().to_string(), "points": points.len(),
            "dtype": shape.dtype, "device": shape.device, "threads": shape.threads,
            "seq_len": s.seq_len, "prompt_len": s.prompt_len, "new_tokens": s.new_tokens,
            "peak_rss_bytes": sys::peak_rss_bytes()})
    );
    Ok(())
}

/// A training step and a generation run of `shape` at `batch`.
fn measure(
    shape: &ShapeArgs,
    s: &ScalingBench,
    sweep: &'static str,
    value: i64,
    batch: i64,
) -> anyhow::Result<Point> {
    let positions = s.seq_len.max(s.prompt_len + s.new_tokens);
    let context = json!({"sweep": sweep, "value": value});
    let train_settings = TrainBench {
        mode: Mode::Sft,
        batch,
        seq_len: s.seq_len,
        k: 2,
        gradient_checkpointing: false,
    };
    let mut training = Training::new(
        shape.random_model(Head::LanguageModel, positions, &shape.device)?,
        &train_settings,
    )?;
    let config = training.trainer.model().config().clone();
    let mut settings = json!({"bench": "scaling-train", "batch": batch, "seq_len": s.seq_len});
    merge(&mut settings, &context);
    let train = shape.time(&config, "tokens", settings, training.flops(), || {
        training.run()
    })?;
    drop(training);
    let generate_settings = GenerateBench {
        batch,
        prompt_len: s.prompt_len,
        new_tokens: s.new_tokens,
        temperature: 1.0,
        top_k: 0,
        prompts: None,
        episodes: None,
        static_batch: false,
    };
    let mut generating = Generating::new(
        shape.random_model(Head::LanguageModel, positions, &shape.device)?,
        &generate_settings,
    )?;
    let mut settings = json!({"bench": "scaling-generate", "batch": batch, "prompt_len": s.prompt_len, "new_tokens": s.new_tokens});
    merge(&mut settings, &context);
    let generate = shape.time(&config, "tokens", settings, generating.flops(), || {
        generating.run()
    })?;
    Ok(Point {
        sweep,
        value,
        batch,
        d_model: config.hidden_size,
        layers: config.num_layers,
        params: config.num_parameters(),
        train_seconds: train.seconds_median,
        train_tokens_per_second: train.per_second_median,
        train_peak_fraction: train.peak_fraction,
        generate_seconds: generate.seconds_median,
        generate_tokens_per_second: generate.per_second_median,
        generate_peak_fraction: generate.peak_fraction,
    })
}

fn table(points: &[Point]) -> String {
    let mut out = format!(
        "{:<8} {:>6} {:>7} {:>6} {:>10} {:>12} {:>11} {:>7} {:>12} {:>11} {:>7}\n",
        "sweep",
        "batch",
        "d_model",
        "layers",
        "params",
        "train step s",
        "train tok/s",
        "peak %",
        "generate s",
        "gen tok/s",
        "peak %"
    );
    for p in points {
        out += &format!(
            "{:<8} {:>6} {:>7} {:>6} {:>10} {:>12.4} {:>11.0} {:>7.1} {:>12.4} {:>11.0} {:>7.1}\n",
            p.sweep,
            p.batch,
            p.d_model,
            p.layers,
            p.params,
            p.train_seconds,
            p.train_tokens_per_second,
            100.0 * p.train_peak_fraction,
            p.generate_seconds,
            p.generate_tokens_per_second,
            100.0 * p.generate_peak_fraction,
        );
    }
    out
}

/// Each sweep's training and generation times relative to its first point, against
/// log2(value / first value), and the line that doubles with every doubling.
fn chart_series(points: &[Point]) -> Vec<Series> {
    let mut series = Vec::new();
    let mut widest: f64 = 0.0;
    for sweep in ["batch", "d_model", "layers"] {
        let of: Vec<&Point> = points.iter().filter(|p| p.sweep == sweep).collect();
        let Some(first) = of.first() else { continue };
        for (what, time) in [
            (
                "training step",
                (|p: &Point| p.train_seconds) as fn(&Point) -> f64,
            ),
            ("generation", |p: &Point| p.generate_seconds),
        ] {
            let points: Vec<(f64, f64)> = of
                .iter()
                .map(|p| {
                    let x = (p.value as f64 / first.value as f64).log2();
                    widest = widest.max(x);
                    (x, time(p) / time(first))
                })
                .collect();
            series.push(Series {
                label: format!("{what}, {sweep} x2"),
                points,
            });
        }
    }
    let steps = widest.ceil().max(1.0) as i32;
    series.push(Series {
        label: "linear (x2 per doubling)".into(),
        points: (0..=steps).map(|i| (i as f64, 2f64.powi(i))).collect(),
    });
    series
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(sweep: &'static str, value: i64, train: f64, generate: f64) -> Point {
        Point {
            sweep,
            value,
            batch: 1,
            d_model: 1,
            layers: 1,
            params: 1,
            train_seconds: train,
            train_tokens_per_second: 1.0,
            train_peak_fraction: 0.5,
            generate_seconds: generate,
            generate_tokens_per_second: 1.0,
            generate_peak_fraction: 0.5,
        }
    }

    #[test]
    fn curves_are_relative_to_the_first_point_per_doubling() {
        let points = [
            point("batch", 4, 1.0, 2.0),
            point("batch", 8, 1.5, 2.0),
            point("batch", 16, 3.0, 4.0),
            point("layers", 3, 2.0, 1.0),
            point("layers", 6, 4.0, 2.0),
        ];
        let series = chart_series(&points);
        let labels: Vec<&str> = series.iter().map(|s| s.label.as_str()).collect();
        assert_eq!(
            labels,
            [
                "training step, batch x2",
                "generation, batch x2",
                "training step, layers x2",
                "generation, layers x2",
                "linear (x2 per doubling)"
            ]
        );
        assert_eq!(series[0].points, [(0.0, 1.0), (1.0, 1.5), (2.0, 3.0)]);
        assert_eq!(series[1].points, [(0.0, 1.0), (1.0, 1.0), (2.0, 2.0)]);
        assert_eq!(series[3].points, [(0.0, 1.0), (1.0, 2.0)]);
        assert_eq!(series[4].points, [(0.0, 1.0), (1.0, 2.0), (2.0, 4.0)]);
        let text = table(&points);
        assert_eq!(text.lines().count(), 6);
        assert!(text.lines().nth(1).unwrap().starts_with("batch"));
    }
}
