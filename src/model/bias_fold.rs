//! Folding a reward model's constant (`reward_bias`, the demonstration centring) into a
//! weight that `transformers` reads, so `AutoModelForSequenceClassification` scores what
//! `rlhf` scores.
//!
//! HF's `score` layers have no bias. Where the last norm before them is a LayerNorm with a
//! bias (GPT-2's `ln_f`, GPT-NeoX's `final_layer_norm`), raising coordinate j of that bias
//! by c / s_j adds exactly c to every score (s: the score weight; j: its largest entry, the
//! smallest change). RMSNorm backbones (the Llama family, Gemma 2) have no such term, and their
//! scores are odd in the residual stream, so no weight can hold a constant: there
//! `reward_bias` stays a config key that transformers keeps but does not add.
//!
//! `rlhf` itself keeps the unfolded weights, so training and reloading compute exactly what
//! they did before folding existed: config.json records the coordinate with its value
//! before and after, and loading puts the old value back. If the file no longer holds the
//! folded value (the weights were changed elsewhere, e.g. fine-tuned in transformers), the
//! file is taken as transformers reads it: the fold is kept and nothing is added.

use super::config::Architecture;
use crate::{Error, Result};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::path::Path;
use tch::Tensor;

/// The config.json key of the fold record.
pub const FOLD_KEY: &str = "reward_bias_folded";

/// The bias a constant can be folded into, for architectures that have one.
pub fn target(arch: Architecture) -> Option<&'static str> {
    match arch {
        Architecture::Gpt2 => Some("transformer.ln_f.bias"),
        Architecture::NeoX => Some("gpt_neox.final_layer_norm.bias"),
        Architecture::Llama | Architecture::Gemma2 => None,
    }
}

/// Folds `bias` into the named tensors about to be saved (`score.weight` and the target
/// must be among them); returns the record for config.json, or None when nothing could be
/// folded (no target, a zero bias or an all-zero score weight).
pub fn fold(tensors: &mut [(String, Tensor)], arch: Architecture, bias: f64) -> Option<Value> {
    let name = target(arch)?;
    if bias == 0.0 {
        return None;
    }
    let _guard = tch::no_grad_guard();
    let score: Vec<f64> = tensors
        .iter()
        .find(|(n, _)| n == "score.weight")
        .map(|(_, t)| Vec::<f64>::try_from(t.to_kind(tch::Kind::Double).flatten(0, -1)))?
        .ok()?;
    let (j, s_j) = score
        .iter()
        .copied()
        .enumerate()
        .max_by(|a, b| a.1.abs().total_cmp(&b.1.abs()))?;
    if s_j == 0.0 {
        return None;
    }
    let slot = tensors.iter_mut().find(|(n, _)| n == name)?;
    let unfolded = slot.1.double_value(&[j as i64]);
    let folded_tensor = slot.1.to_device(tch::Device::Cpu).copy();
    let _ = folded_tensor.get(j as i64).fill_(unfolded + bias / s_j);
    // What the file will hold, after rounding to the tensor's dtype.
    let folded = folded_tensor.double_value(&[j as i64]);
    slot.1 = folded_tensor;
    Some(json!({
        "tensor": name,
        "index": j,
        "unfolded": unfolded,
        "folded": folded,
        "reason": "transformers' score head has no bias: reward_bias is added to this coordinate"
    }))
}

/// A fold record read back from config.json.
pub struct Fold {
    pub tensor: String,
    pub index: i64,
    pub unfolded: f64,
    pub folded: f64,
}

impl Fold {
    /// The record in `raw` (None when the config has none); errors name the key.
    pub fn read(raw: &Value, path: &Path) -> Result<Option<Fold>> {
        let Some(record) = raw.get(FOLD_KEY).filter(|v| !v.is_null()) else {
            return Ok(None);
        };
        let bad = |field: &str| {
            Error::format(
                path,
                format!("key `{FOLD_KEY}.{field}`: missing or of the wrong type"),
            )
        };
        let number = |field: &str| {
            record
                .get(field)
                .and_then(Value::as_f64)
                .ok_or_else(|| bad(field))
        };
        Ok(Some(Fold {
            tensor: record
                .get("tensor")
                .and_then(Value::as_str)
                .ok_or_else(|| bad("tensor"))?
                .to_string(),
            index: record
                .get("index")
                .and_then(Value::as_i64)
                .ok_or_else(|| bad("index"))?,
            unfolded: number("unfolded")?,
            folded: number("folded")?,
        }))
    }

    /// Puts the unfolded value back into `vars` when `file` still holds the folded one;
    /// returns whether it did (false: the weights changed since, keep them as they are).
    pub fn restore(
        &self,
        vars: &mut HashMap<String, Tensor>,
        file: Option<&Tensor>,
        path: &Path,
    ) -> Result<bool> {
        let wrong = |what: String| Error::format(path, format!("key `{FOLD_KEY}`: {what}"));
        let Some(var) = vars.get_mut(&self.tensor) else {
            return Err(wrong(format!("the model has no tensor `{}`", self.tensor)));
        };
        let len = var.size()[0];
        if !(0..len).contains(&self.index) {
            return Err(wrong(format!(
                "index {} is outside `{}` (length {len})",
                self.index, self.tensor
            )));
        }
        let intact = file.is_some_and(|t| t.double_value(&[self.index]) == self.folded);
        if intact {
            let _guard = tch::no_grad_guard();
            let _ = var.get(self.index).fill_(self.unfolded);
        }
        Ok(intact)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::DType;
    use crate::model::{weights, Head, Model};
    use std::path::PathBuf;

    fn fixture(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(name)
    }

    fn load(dir: &Path) -> Model {
        Model::load(dir, Head::Scalar, DType::F32, tch::Device::Cpu)
            .unwrap()
            .0
    }

    fn scores(model: &Model) -> Tensor {
        let ids = Tensor::from_slice(&[5i64, 9, 14, 3, 77, 21]).view([2, 3]);
        tch::no_grad(|| model.scores(&model.forward(&ids, None, None, false)))
    }

    fn temp(tag: &str) -> PathBuf {
        std::env::temp_dir().join(format!("rlhf-fold-{tag}-{}", std::process::id()))
    }

    fn config(dir: &Path) -> Value {
        serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap()
    }

    /// The file holds the constant in `ln_f.bias`, read without the bias it equals rlhf's
    /// score; rlhf reads its own weights and bias back to the bit.
    #[test]
    fn a_folded_export_scores_alike_without_the_bias_and_reloads_exactly() {
        let mut model = load(&fixture("gpt2-tiny-score"));
        model.set_score_bias(-1.25);
        let dir = temp("exact");
        model.save(&dir).unwrap();
        let record = &config(&dir)[FOLD_KEY];
        assert_eq!(record["tensor"], "transformer.ln_f.bias");
        let file = weights::read(&dir.join("model.safetensors")).unwrap();
        let j = record["index"].as_i64().unwrap();
        let original = model.var_store().variables()["transformer.ln_f.bias"].double_value(&[j]);
        assert_ne!(file["transformer.ln_f.bias"].double_value(&[j]), original);
        assert_eq!(record["unfolded"].as_f64().unwrap(), original);

        let back = load(&dir);
        assert_eq!(back.score_bias(), -1.25);
        assert!(scores(&back).equal(&scores(&model)));
        for (name, var) in model.var_store().variables() {
            assert!(back.var_store().variables()[&name].equal(&var), "{name}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// Weights changed elsewhere (the folded value is gone) are read as transformers reads
    /// them: the fold stays in the weights and no bias is added on top.
    #[test]
    fn a_fold_changed_elsewhere_is_read_as_transformers_reads_it() {
        let mut model = load(&fixture("gpt2-tiny-score"));
        model.set_score_bias(2.0);
        let dir = temp("stale");
        model.save(&dir).unwrap();
        let path = dir.join("model.safetensors");
        let mut file: Vec<(String, Tensor)> = weights::read(&path).unwrap().into_iter().collect();
        let (_, ln_f) = file
            .iter_mut()
            .find(|(n, _)| n == "transformer.ln_f.bias")
            .unwrap();
        let j = config(&dir)[FOLD_KEY]["index"].as_i64().unwrap();
        let nudged = ln_f.double_value(&[j]) + 1e-3;
        let _ = ln_f.get(j).fill_(nudged);
        weights::write(&path, &file).unwrap();
        let back = load(&dir);
        assert_eq!(back.score_bias(), 0.0);
        let ln = &back.var_store().variables()["transformer.ln_f.bias"];
        assert_eq!(ln.double_value(&[j]), nudged as f32 as f64);
        // The old score plus 2, give or take the nudge (|s_j| * 1e-3).
        let diff = (scores(&back) - scores(&model))
            .abs()
            .max()
            .double_value(&[]);
        assert!(diff < 2e-3, "{diff}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn rmsnorm_models_keep_the_bias_in_the_config_only() {
        let mut model = load(&fixture("llama-tiny-score"));
        model.set_score_bias(0.5);
        let dir = temp("llama");
        model.save(&dir).unwrap();
        let raw = config(&dir);
        assert!(raw.get(FOLD_KEY).is_none());
        assert_eq!(raw["reward_bias"], 0.5);
        let back = load(&dir);
        assert_eq!(back.score_bias(), 0.5);
        assert!(scores(&back).equal(&scores(&model)));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_broken_fold_record_names_the_key() {
        let mut model = load(&fixture("gpt2-tiny-score"));
        model.set_score_bias(1.0);
        let dir = temp("broken");
        model.save(&dir).unwrap();
        for (field, value, message) in [
            (
                "index",
                json!(10_000),
                "index 10000 is outside `transformer.ln_f.bias`",
            ),
            (
                "index",
                json!("three"),
                "key `reward_bias_folded.index`: missing or of the wrong type",
            ),
            (
                "tensor",
                json!("transformer.nope"),
                "the model has no tensor `transformer.nope`",
            ),
        ] {
            let mut raw = config(&dir);
            raw[FOLD_KEY][field] = value;
            std::fs::write(dir.join("config.json"), raw.to_string()).unwrap();
            let err = Model::load(&dir, Head::Scalar, DType::F32, tch::Device::Cpu)
                .err()
                .unwrap()
                .to_string();
            assert!(
                err.contains("config.json") && err.contains(message),
                "{err}"
            );
            model.save(&dir).unwrap();
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
