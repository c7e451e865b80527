//! What a model with LoRA adapters does besides its forward pass: which tensors train, the
//! merged weights a plain Hugging Face folder gets, and `peft` adapter folders
//! (`adapter_config.json` + `adapter_model.safetensors`) both ways.

use super::config::Architecture;
use super::lora::{is_adapter, matches_target, LoraConfig, A_SUFFIX, B_SUFFIX};
use super::{weights, Head, Model};
use crate::{Error, Result};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use tch::{Kind, Tensor};

/// The scalar head, trained whole beside the adapters (`peft`'s `modules_to_save`).
const SCORE: &str = "score.weight";
/// Prefix of every tensor name in a `peft` adapter file.
const PEFT_PREFIX: &str = "base_model.model.";
pub const ADAPTER_CONFIG: &str = "adapter_config.json";
pub const ADAPTER_WEIGHTS: &str = "adapter_model.safetensors";

/// `transformer.h.0.attn.c_attn` for `transformer.h.0.attn.c_attn.<suffix>`.
fn module_of<'a>(name: &'a str, suffix: &str) -> Option<&'a str> {
    name.strip_suffix(suffix)?.strip_suffix('.')
}

impl Model {
    /// Freezes every base weight of a freshly built model with adapters, after checking that
    /// each named target matched a layer (a typo would otherwise train nothing there).
    pub(super) fn freeze_base(&self, path: &Path) -> Result<()> {
        let (lora, config) = (self.lora().expect("a LoRA model"), &self.config);
        let vars = self.vs.variables();
        let adapted: Vec<&str> = vars.keys().filter_map(|n| module_of(n, A_SUFFIX)).collect();
        for target in &lora.targets {
            if !adapted.iter().any(|m| matches_target(m, target)) {
                let layers: BTreeSet<&str> = vars
                    .iter()
                    .filter(|(n, t)| t.dim() == 2 && (n.contains(".h.") || n.contains(".layers.")))
                    .filter_map(|(n, _)| n.strip_suffix(".weight")?.rsplit('.').next())
                    .collect();
                return Err(Error::Invalid(format!(
                    "lora.targets: `{target}` names no linear layer of {} ({} model); its layers: {}",
                    path.display(),
                    config.model_type,
                    layers.into_iter().collect::<Vec<_>>().join(", ")
                )));
            }
        }
        for (name, var) in vars {
            if !is_adapter(&name) && name != SCORE {
                let _ = var.set_requires_grad(false);
            }
        }
        Ok(())
    }

    /// The LoRA config the model was built with (None: full fine-tuning).
    pub fn lora(&self) -> Option<&LoraConfig> {
        self.lora.as_ref().map(|plan| &plan.config)
    }

    /// Switches the adapters on or off (off: the base model, PPO's reference policy).
    /// Without adapters nothing changes.
    pub fn set_adapters(&self, on: bool) {
        if let Some(plan) = &self.lora {
            plan.switch.set_enabled(on);
        }
    }

    /// Tells the adapters whether the coming forward pass trains (their dropout).
    pub(super) fn adapters_train(&self, train: bool) {
        if let Some(plan) = &self.lora {
            plan.switch.set_train(train);
        }
    }

    /// The tensors training changes, sorted by name: every variable, or with LoRA the
    /// adapters and a scalar head. Optimizers, training-state checkpoints and weight syncs
    /// use these.
    pub fn trainable(&self) -> Vec<(String, Tensor)> {
        let mut vars: Vec<(String, Tensor)> = self
            .vs
            .variables()
            .into_iter()
            .filter(|(name, _)| self.lora.is_none() || is_adapter(name) || name == SCORE)
            .collect();
        vars.sort_by(|a, b| a.0.cmp(&b.0));
        vars
    }

    /// Detached copies of [`Model::trainable`]: what a weight sync sends and a rollback
    /// snapshot keeps.
    pub fn trainable_copy(&self) -> Vec<(String, Tensor)> {
        let _guard = tch::no_grad_guard();
        let copy = |(name, t): (String, Tensor)| (name, t.detach().copy());
        self.trainable().into_iter().map(copy).collect()
    }

    /// Every tensor as a plain model holds it, sorted by name: with LoRA each adapted
    /// weight becomes `W + (alpha / r) B A` (transposed for GPT-2's Conv1D layout), in the
    /// model's dtype.
    pub(super) fn merged_tensors(&self) -> Vec<(String, Tensor)> {
        let vars = self.vs.variables();
        let _guard = tch::no_grad_guard();
        let transpose = self.config.arch == Architecture::Gpt2;
        let mut tensors: Vec<(String, Tensor)> = vars
            .iter()
            .filter(|(name, _)| !is_adapter(name))
            .map(|(name, weight)| {
                let merged = self.delta(&vars, name).map(|delta| {
                    let delta = if transpose { delta.tr() } else { delta };
                    (weight.to_kind(Kind::Float) + delta).to_kind(weight.kind())
                });
                let tensor = merged.unwrap_or_else(|| weight.shallow_clone());
                (name.clone(), tensor)
            })
            .collect();
        tensors.sort_by(|a, b| a.0.cmp(&b.0));
        tensors
    }

    /// `(alpha / r) B A` [out, in] of the adapter on the layer whose weight is `weight`.
    fn delta(&self, vars: &HashMap<String, Tensor>, weight: &str) -> Option<Tensor> {
        let lora = self.lora()?;
        let module = module_of(weight, "weight")?;
        let a = vars.get(&format!("{module}.{A_SUFFIX}"))?;
        let b = vars.get(&format!("{module}.{B_SUFFIX}"))?;
        Some(b.matmul(a) * lora.scale())
    }

    /// Writes a `peft` adapter folder into `dir`: the adapters (and a scalar head, as
    /// `modules_to_save`) under `peft`'s names and an `adapter_config.json` naming the
    /// folder the base was loaded from. `peft.PeftModel.from_pretrained(base, dir)` scores
    /// as this model.
    pub fn save_adapter(&self, dir: &Path) -> Result<()> {
        let base = self.source.as_deref().unwrap_or(Path::new(""));
        let lora = self.lora().ok_or_else(|| {
            Error::Invalid("only a model with LoRA adapters has an adapter folder".into())
        })?;
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let tensors: Vec<(String, Tensor)> = self
            .trainable()
            .into_iter()
            .map(|(name, t)| (format!("{PEFT_PREFIX}{name}"), t))
            .collect();
        weights::write(&dir.join(ADAPTER_WEIGHTS), &tensors)?;
        let targets: BTreeSet<&str> = tensors
            .iter()
            .filter_map(|(n, _)| module_of(n, A_SUFFIX)?.rsplit('.').next())
            .collect();
        let scalar = self.head == Head::Scalar;
        let config = json!({
            "peft_type": "LORA",
            "task_type": if scalar { "SEQ_CLS" } else { "CAUSAL_LM" },
            "base_model_name_or_path": base.display().to_string(),
            "r": lora.rank,
            "lora_alpha": lora.alpha,
            "lora_dropout": lora.dropout,
            "target_modules": targets,
            "fan_in_fan_out": self.config.arch == Architecture::Gpt2,
            "bias": "none",
            "modules_to_save": if scalar { json!(["score"]) } else { Value::Null },
            "inference_mode": true,
            "use_rslora": false,
            "init_lora_weights": true,
        });
        let text = serde_json::to_string_pretty(&config).expect("JSON value serialises");
        weights::write_atomic(&dir.join(ADAPTER_CONFIG), text.as_bytes())
    }

    /// What a stage saves: a plain folder of merged weights in `dir` and, with LoRA, a
    /// `peft` adapter folder beside it, `<dir>-adapter`.
    pub fn export(&self, dir: &Path) -> Result<()> {
        self.save(dir)?;
        if self.lora.is_none() {
            return Ok(());
        }
        let name = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        self.save_adapter(&dir.with_file_name(format!("{name}-adapter")))
    }

    /// Reads a `peft` adapter folder's tensors into this model's adapters (built with the
    /// folder's rank and targets: see [`read_adapter_config`]). Errors name the file and
    /// the tensor.
    pub fn load_adapter(&mut self, dir: &Path) -> Result<()> {
        let path = dir.join(ADAPTER_WEIGHTS);
        let file: BTreeMap<String, Tensor> = weights::read(&path)?.into_iter().collect();
        let mut given = Vec::new();
        for (name, _) in self.trainable() {
            let key = format!("{PEFT_PREFIX}{name}");
            let tensor = file
                .get(&key)
                .ok_or_else(|| Error::format(&path, format!("missing tensor `{key}`")))?;
            given.push((name, tensor.shallow_clone()));
        }
        if let Some(extra) = file.keys().find(|k| {
            !given
                .iter()
                .any(|(n, _)| **k == format!("{PEFT_PREFIX}{n}"))
        }) {
            return Err(Error::format(
                &path,
                format!("tensor `{extra}` is not an adapter of this model"),
            ));
        }
        super::load_weights(self, &given).map_err(|e| Error::format(&path, e.to_string()))
    }
}

/// The LoRA config of a `peft` adapter folder (`r`, `lora_alpha`, `lora_dropout`,
/// `target_modules`), refusing what `rlhf` does not build.
pub fn read_adapter_config(dir: &Path) -> Result<LoraConfig> {
    let path = dir.join(ADAPTER_CONFIG);
    let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
    let json: Value = serde_json::from_str(&text)
        .map_err(|e| Error::format(&path, format!("invalid JSON at line {}: {e}", e.line())))?;
    let field = |key: &str| {
        json.get(key)
            .ok_or_else(|| Error::format(&path, format!("missing key `{key}`")))
    };
    if field("peft_type")?.as_str() != Some("LORA") {
        return Err(Error::format(
            &path,
            "key `peft_type`: only LORA adapters are read",
        ));
    }
    for key in ["use_rslora", "use_dora"] {
        if json.get(key).and_then(Value::as_bool) == Some(true) {
            return Err(Error::format(&path, format!("key `{key}`: not supported")));
        }
    }
    let number = |key: &str| {
        field(key)?
            .as_f64()
            .ok_or_else(|| Error::format(&path, format!("key `{key}`: expected a number")))
    };
    let targets = match field("target_modules")? {
        Value::Array(names) => names
            .iter()
            .map(|n| n.as_str().map(String::from))
            .collect::<Option<Vec<_>>>(),
        Value::String(s) if s == "all-linear" => Some(Vec::new()),
        _ => None,
    }
    .ok_or_else(|| Error::format(&path, "key `target_modules`: expected a list of names"))?;
    let config = LoraConfig {
        rank: number("r")? as i64,
        alpha: number("lora_alpha")?,
        dropout: json
            .get("lora_dropout")
            .and_then(Value::as_f64)
            .unwrap_or(0.0),
        targets,
    };
    config
        .validate()
        .map_err(|e| Error::format(&path, format!("lora {e}")))?;
    Ok(config)
}

#[cfg(test)]
mod tests;
