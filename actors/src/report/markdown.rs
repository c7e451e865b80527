//! The run report: a Markdown document and a terminal summary, rendered from plain data so
//! the formatting is tested without running any model.
//!
//! Win rates read as InstructGPT reports them: the share of prompts where the gold labeler
//! prefers the model over SFT (ties half), with a 95% bootstrap interval in brackets.

use rlhf::eval::{Interval, WinRate};
use std::fmt::Write;

/// One evaluated model (a row of the model table).
#[derive(Clone, Debug, PartialEq)]
pub struct ModelRow {
    pub name: String,
    /// Against SFT; `None` for SFT itself.
    pub win: Option<WinRate>,
    /// Mean gold-labeler score over the evaluation prompts.
    pub gold: Interval,
    pub perplexity: Option<f64>,
    /// Share in [0, 1] of truthful answers; printed as a percentage.
    pub truthful: Option<f64>,
    /// Share in [0, 1] of harmless answers; printed as a percentage.
    pub harmless: Option<f64>,
    /// KL to the baseline policy in nats per response, estimated on the model's own
    /// answers; a column only when some row has it.
    pub kl: Option<f64>,
    /// Wall time of the model's training stage in seconds; a column only when some row
    /// has it.
    pub seconds: Option<f64>,
}

/// Win rates against SFT on one prompt category.
#[derive(Clone, Debug, PartialEq)]
pub struct CategoryRow {
    pub category: String,
    /// One per model, in the order of [`Report::models`]; missing entries read as `None`.
    pub wins: Vec<Option<WinRate>>,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Report {
    pub title: String,
    /// Paragraphs.
    pub intro: Vec<String>,
    pub models: Vec<ModelRow>,
    pub categories: Vec<CategoryRow>,
    /// (what, value), e.g. ("RM held-out accuracy vs noiseless labeler", "0.74").
    pub facts: Vec<(String, String)>,
    /// (caption, PNG path relative to the report).
    pub images: Vec<(String, String)>,
    /// What the win rates compare against and what scores the answers: ("SFT", "gold") in
    /// the pipeline, (the baseline's name, "reward") in `rlhf eval`. Empty reads as the
    /// pipeline's.
    pub labels: (String, String),
}

/// Shown where a value does not apply or was not measured.
const MISSING: &str = "–";

impl Report {
    /// The baseline's name and the score's name, for headers.
    fn names(&self) -> (&str, &str) {
        let (baseline, score) = &self.labels;
        (
            if baseline.is_empty() { "SFT" } else { baseline },
            if score.is_empty() { "gold" } else { score },
        )
    }

    pub fn markdown(&self) -> String {
        let (baseline, score) = self.names();
        let mut md = format!("# {}\n\n", self.title);
        for p in &self.intro {
            md += &format!("{p}\n\n");
        }
        if !self.models.is_empty() {
            md += "## Models\n\n";
            let (win, mean) = (
                format!("Win rate vs {baseline} [95% CI]"),
                format!("Mean {score} score [95% CI]"),
            );
            let kl = format!("KL to {baseline} (nats)");
            let mut header = vec![
                "Model",
                win.as_str(),
                "Ties",
                "Prompts",
                mean.as_str(),
                "Perplexity",
                "Truthful",
                "Harmless",
            ];
            let optional = self.optional_columns();
            header.extend(optional.headers([kl.as_str(), "Training (s)"]));
            let rows: Vec<Vec<String>> = self
                .models
                .iter()
                .map(|m| model_cells(m, optional))
                .collect();
            md += &markdown_table(&header, &rows, 1);
            md += "\n";
        }
        if !self.categories.is_empty() {
            md += &self.category_section();
        }
        if !self.facts.is_empty() {
            md += "## Facts\n\n";
            for (what, value) in &self.facts {
                md += &format!("- {what}: {value}\n");
            }
            md += "\n";
        }
        if !self.images.is_empty() {
            md += "## Figures\n\n";
            for (caption, path) in &self.images {
                md += &format!("![{caption}]({path})\n\n");
            }
        }
        md.truncate(md.trim_end().len());
        md.push('\n');
        md
    }

    /// Per-category win rates; models with no category win rate (SFT) get no column.
    fn category_section(&self) -> String {
        let win = |c: &CategoryRow, m: usize| c.wins.get(m).copied().flatten();
        let columns: Vec<usize> = (0..self.models.len())
            .filter(|&m| self.categories.iter().any(|c| win(c, m).is_some()))
            .collect();
        let mut header = vec!["Category"];
        header.extend(columns.iter().map(|&m| self.models[m].name.as_str()));
        let rows: Vec<Vec<String>> = self
            .categories
            .iter()
            .map(|c| {
                let mut row = vec![c.category.clone()];
                row.extend(columns.iter().map(|&m| opt(win(c, m).as_ref(), fmt_win)));
                row
            })
            .collect();
        let mut md = format!("## Win rate vs {} by category [95% CI]\n\n", self.names().0);
        md += &markdown_table(&header, &rows, 1);
        md + "\n"
    }

    /// The model table as aligned plain text: every line has the same width, names left-
    /// aligned, numbers right-aligned, for the end-of-run log.
    pub fn terminal_table(&self) -> String {
        let (baseline, score) = self.names();
        let (win, mean) = (
            format!("win vs {baseline} [95% CI]"),
            format!("{score} [95% CI]"),
        );
        let mut header = vec![
            "model",
            win.as_str(),
            "ties",
            mean.as_str(),
            "ppl",
            "truthful",
            "harmless",
        ];
        let optional = self.optional_columns();
        header.extend(optional.headers(["kl", "train s"]));
        let rows: Vec<Vec<String>> = self
            .models
            .iter()
            .map(|m| {
                let mut cells = model_cells(m, optional);
                cells.remove(3); // the prompt count: fine print for the terminal
                                 // ASCII only, so the log reads the same in any terminal encoding.
                for c in cells.iter_mut().filter(|c| *c == MISSING) {
                    *c = "-".into();
                }
                cells
            })
            .collect();
        let widths: Vec<usize> = (0..header.len())
            .map(|i| {
                rows.iter()
                    .map(|r| width(&r[i]))
                    .chain([width(header[i])])
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let line = |cells: &[&str]| {
            let mut out = String::new();
            for (i, (c, w)) in cells.iter().zip(&widths).enumerate() {
                if i > 0 {
                    out += "  ";
                }
                let pad = " ".repeat(w - width(c));
                if i == 0 {
                    write!(out, "{c}{pad}").unwrap();
                } else {
                    write!(out, "{pad}{c}").unwrap();
                }
            }
            out
        };
        let head = line(&header);
        let mut out = format!("{head}\n{}\n", "-".repeat(width(&head)));
        for r in &rows {
            let cells: Vec<&str> = r.iter().map(String::as_str).collect();
            out += &line(&cells);
            out.push('\n');
        }
        out
    }
}

/// Which of the optional model-table columns (KL, training time) some row fills.
#[derive(Clone, Copy)]
struct Optional {
    kl: bool,
    seconds: bool,
}

impl Optional {
    fn headers(self, [kl, seconds]: [&str; 2]) -> Vec<&str> {
        [(self.kl, kl), (self.seconds, seconds)]
            .into_iter()
            .filter_map(|(shown, h)| shown.then_some(h))
            .collect()
    }
}

impl Report {
    fn optional_columns(&self) -> Optional {
        Optional {
            kl: self.models.iter().any(|m| m.kl.is_some()),
            seconds: self.models.iter().any(|m| m.seconds.is_some()),
        }
    }
}

/// Model-table cells: name, win, ties, prompts, gold, perplexity, truthful, harmless, and
/// the optional KL and training time.
fn model_cells(m: &ModelRow, optional: Optional) -> Vec<String> {
    let mut cells = vec![
        m.name.clone(),
        opt(m.win.as_ref(), fmt_win),
        opt(m.win.as_ref(), |w| pct(w.ties)),
        opt(m.win.as_ref(), |w| w.n.to_string()),
        fmt_interval(&m.gold),
        opt(m.perplexity.as_ref(), |p| fmt_num(*p, 2)),
        opt(m.truthful.as_ref(), |s| pct(*s)),
        opt(m.harmless.as_ref(), |s| pct(*s)),
    ];
    if optional.kl {
        cells.push(opt(m.kl.as_ref(), |k| fmt_num(*k, 2)));
    }
    if optional.seconds {
        cells.push(opt(m.seconds.as_ref(), |t| fmt_num(*t, 0)));
    }
    cells
}

fn opt<T>(v: Option<&T>, f: impl Fn(&T) -> String) -> String {
    v.map(f).unwrap_or_else(|| MISSING.into())
}

/// "61.2% [57.0, 65.3]": the rate and its interval in percent.
pub fn fmt_win(w: &WinRate) -> String {
    let r = &w.rate;
    if !r.mean.is_finite() {
        return MISSING.into();
    }
    format!(
        "{:.1}% [{:.1}, {:.1}]",
        100.0 * r.mean,
        100.0 * r.lo,
        100.0 * r.hi
    )
}

/// "0.412 [0.380, 0.441]".
pub fn fmt_interval(iv: &Interval) -> String {
    if !iv.mean.is_finite() {
        return MISSING.into();
    }
    format!("{:.3} [{:.3}, {:.3}]", iv.mean, iv.lo, iv.hi)
}

fn pct(share: f64) -> String {
    if share.is_finite() {
        format!("{:.1}%", 100.0 * share)
    } else {
        MISSING.into()
    }
}

fn fmt_num(x: f64, decimals: usize) -> String {
    if x.is_finite() {
        format!("{x:.decimals$}")
    } else {
        MISSING.into()
    }
}

/// Display width in characters (all our cells are single-width, "–" and "β" included).
fn width(s: &str) -> usize {
    s.chars().count()
}

/// A GitHub-flavoured table; the first `left` columns are left-aligned, the rest (numbers)
/// right-aligned. Pipes in cells are escaped.
fn markdown_table(header: &[&str], rows: &[Vec<String>], left: usize) -> String {
    let row = |cells: &mut dyn Iterator<Item = &str>| {
        let cells: Vec<String> = cells.map(|c| c.replace('|', "\\|")).collect();
        format!("| {} |\n", cells.join(" | "))
    };
    let mut md = row(&mut header.iter().copied());
    let rule: Vec<&str> = (0..header.len())
        .map(|i| if i < left { "---" } else { "---:" })
        .collect();
    md += &row(&mut rule.into_iter());
    for r in rows {
        md += &row(&mut r.iter().map(String::as_str));
    }
    md
}

#[cfg(test)]
mod tests {
    use super::*;

    fn iv(mean: f64, lo: f64, hi: f64) -> Interval {
        Interval { mean, lo, hi }
    }

    fn win(mean: f64, lo: f64, hi: f64, ties: f64, n: usize) -> WinRate {
        WinRate {
            rate: iv(mean, lo, hi),
            ties,
            n,
        }
    }

    fn report() -> Report {
        Report {
            title: "rlhf run report".into(),
            intro: vec!["First paragraph.".into(), "Second paragraph.".into()],
            models: vec![
                ModelRow {
                    name: "SFT".into(),
                    win: None,
                    gold: iv(0.1234, 0.1, 0.15),
                    perplexity: Some(12.345),
                    truthful: Some(0.5),
                    harmless: None,
                    kl: None,
                    seconds: Some(121.4),
                },
                ModelRow {
                    name: "PPO-ptx".into(),
                    win: Some(win(0.6123, 0.5704, 0.6526, 0.031, 400)),
                    gold: iv(0.41, 0.38, 0.441),
                    perplexity: Some(13.0),
                    truthful: Some(0.625),
                    harmless: Some(0.9),
                    kl: Some(1.234),
                    seconds: Some(47.0),
                },
            ],
            categories: vec![
                CategoryRow {
                    category: "open QA".into(),
                    wins: vec![None, Some(win(0.7, 0.6, 0.8, 0.0, 50))],
                },
                CategoryRow {
                    category: "brainstorming".into(),
                    wins: vec![None],
                },
            ],
            facts: vec![
                (
                    "RM held-out accuracy vs noiseless labeler".into(),
                    "0.74".into(),
                ),
                ("wall time".into(), "512 s".into()),
            ],
            images: vec![("Win rate vs SFT".into(), "win_rates.png".into())],
            labels: Default::default(),
        }
    }

    #[test]
    fn labels_name_the_baseline_and_the_judge() {
        let r = Report {
            labels: ("base".into(), "reward".into()),
            ..report()
        };
        let md = r.markdown();
        assert!(
            md.contains("| Win rate vs base [95% CI] |")
                && md.contains("| Mean reward score [95% CI] |")
        );
        assert!(md.contains("## Win rate vs base by category"));
        let table = r.terminal_table();
        assert!(table.contains("win vs base [95% CI]") && table.contains("reward [95% CI]"));
    }

    #[test]
    fn markdown_has_rows_and_formatted_numbers() {
        let md = report().markdown();
        assert!(md.starts_with("# rlhf run report\n\nFirst paragraph.\n\nSecond paragraph.\n\n"));
        assert!(
            md.contains(
                "| Model | Win rate vs SFT [95% CI] | Ties | Prompts | Mean gold score [95% CI] \
             | Perplexity | Truthful | Harmless | KL to SFT (nats) | Training (s) |\n\
             | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n"
            ),
            "{md}"
        );
        assert!(
            md.contains(
                "| SFT | – | – | – | 0.123 [0.100, 0.150] | 12.35 | 50.0% | – | – | 121 |\n"
            ),
            "{md}"
        );
        assert!(md.contains(
            "| PPO-ptx | 61.2% [57.0, 65.3] | 3.1% | 400 | 0.410 [0.380, 0.441] | 13.00 | 62.5% | 90.0% | 1.23 | 47 |\n"
        ), "{md}");
        // SFT has no category win rates, so no column; a short `wins` reads as missing.
        assert!(
            md.contains("| Category | PPO-ptx |\n| --- | ---: |\n"),
            "{md}"
        );
        assert!(md.contains("| open QA | 70.0% [60.0, 80.0] |\n"), "{md}");
        assert!(md.contains("| brainstorming | – |\n"), "{md}");
        assert!(
            md.contains("- RM held-out accuracy vs noiseless labeler: 0.74\n- wall time: 512 s\n")
        );
        assert!(md.contains("![Win rate vs SFT](win_rates.png)\n"));
        assert!(md.ends_with(")\n"));
    }

    #[test]
    fn markdown_escapes_pipes_and_skips_empty_sections() {
        let r = Report {
            title: "t".into(),
            models: vec![ModelRow {
                name: "a|b".into(),
                win: Some(win(f64::NAN, f64::NAN, f64::NAN, f64::NAN, 0)),
                gold: Interval::NAN,
                perplexity: Some(f64::INFINITY),
                truthful: None,
                harmless: None,
                kl: None,
                seconds: None,
            }],
            ..Report::default()
        };
        let md = r.markdown();
        assert!(
            md.contains("| a\\|b | – | – | 0 | – | – | – | – |\n"),
            "{md}"
        );
        for absent in ["## Facts", "## Figures", "by category"] {
            assert!(!md.contains(absent), "{md}");
        }
    }

    #[test]
    fn terminal_table_is_aligned_and_lists_every_model() {
        let table = report().terminal_table();
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 4, "{table}");
        let w = width(lines[0]);
        assert!(lines.iter().all(|l| width(l) == w), "{table}");
        assert!(lines[1].chars().all(|c| c == '-'));
        assert!(lines[2].starts_with("SFT "));
        assert!(lines[3].starts_with("PPO-ptx "));
        assert!(lines[3].contains("61.2% [57.0, 65.3]"));
        assert!(lines[3].ends_with("90.0%  1.23       47"), "{table}");
        assert!(lines[2].ends_with("  -      121"), "{table}");
        assert!(table.is_ascii(), "{table}");
    }
}
