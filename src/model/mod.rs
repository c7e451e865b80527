//! Causal language models in Hugging Face layout: GPT-2, Llama-family, GPT-NeoX and
//! Gemma 2 backbones with either the language-model head (policies, reference) or a scalar head
//! (reward and value models).
//!
//! A model folder holds `config.json` and `model.safetensors` (or a sharded index); weight
//! names and shapes are exactly those of `transformers`, so folders go both ways.

pub mod adapter_io;
pub mod attention;
pub mod bias_fold;
mod blocks;
pub mod config;
mod families;
pub mod gemma;
pub mod gpt2;
mod kv_cache;
pub mod layers;
pub mod llama;
pub mod lora;
pub mod neox;
mod recompute;
pub mod rope;
pub mod self_attention;
pub mod trunk;
pub mod weights;

pub use config::{Architecture, ModelConfig, ModelShape};
pub use kv_cache::KvCache;
pub use lora::LoraConfig;

use crate::device::DType;
use crate::{Error, Result};
use attention::Step;
use lora::{LoraPlan, Share, Switch, Tensors};
use serde_json::{json, Value};
use std::cell::RefCell;
use std::collections::HashMap;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use tch::{nn, Device, Kind, Tensor};

/// Which output a model carries on top of its backbone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Head {
    /// Next-token logits (tied to the embedding where the config says so).
    LanguageModel,
    /// One scalar per position, HF's `score` layer: rewards and values.
    Scalar,
}

enum Backbone {
    Gpt2(gpt2::Gpt2),
    Llama(llama::Llama),
    NeoX(neox::NeoX),
    Gemma2(gemma::Gemma2),
}

impl Backbone {
    fn blocks(&self) -> &dyn blocks::Blocks {
        match self {
            Backbone::Gpt2(m) => m,
            Backbone::Llama(m) => m,
            Backbone::NeoX(m) => m,
            Backbone::Gemma2(m) => m,
        }
    }
}

impl Architecture {
    /// The backbone's prefix in `*ForCausalLM` / `*ForSequenceClassification` files.
    fn prefix(self) -> &'static str {
        match self {
            Architecture::Gpt2 => "transformer",
            Architecture::Llama | Architecture::Gemma2 => "model",
            Architecture::NeoX => "gpt_neox",
        }
    }

    /// The untied output projection's name (transformers 5 writes NeoX's as `embed_out`).
    fn lm_head(self) -> &'static str {
        match self {
            Architecture::NeoX => "embed_out",
            _ => "lm_head",
        }
    }
}

pub struct Model {
    vs: nn::VarStore,
    /// LoRA adapters on the linear layers (None: every weight trains).
    lora: Option<lora::LoraPlan>,
    /// The folder the weights were loaded from: a LoRA adapter's base model.
    source: Option<PathBuf>,
    backbone: Backbone,
    lm_head: Option<Tensor>,
    score: Option<Tensor>,
    /// Added to every scalar output; `config.json` key `reward_bias` (see `set_score_bias`).
    score_bias: f64,
    head: Head,
    config: ModelConfig,
    raw_config: Value,
    /// Whether forwards with autograd on keep only each block's input (see `recompute`).
    checkpointing: bool,
    /// Checkpointed forwards whose blocks still await their backward pass, oldest first.
    pending: RefCell<Vec<recompute::Recompute>>,
}

/// What loading did besides filling the expected tensors.
#[derive(Debug, Default)]
pub struct LoadReport {
    /// Tensors in the file that this model has no use for.
    pub ignored: Vec<String>,
    /// Tensors absent from the file and freshly initialised (a new scalar head).
    pub initialized: Vec<String>,
}

impl Model {
    /// A randomly initialised model for a raw HF config (draws from libtorch's global RNG;
    /// call `tch::manual_seed` first for a reproducible init).
    pub fn new(raw_config: Value, head: Head, dtype: DType, device: Device) -> Result<Model> {
        Model::build(
            raw_config,
            Path::new("config.json"),
            head,
            (dtype, device),
            None,
        )
    }

    /// [`Model::new`] with LoRA adapters: base weights frozen, adapters (and a scalar
    /// head) trainable.
    pub fn new_with_lora(
        raw_config: Value,
        head: Head,
        dtype: DType,
        device: Device,
        lora: &LoraConfig,
    ) -> Result<Model> {
        let path = Path::new("config.json");
        Model::build(raw_config, path, head, (dtype, device), Some(lora))
    }

    fn build(
        raw_config: Value,
        path: &Path,
        head: Head,
        (dtype, device): (DType, Device),
        lora: Option<&LoraConfig>,
    ) -> Result<Model> {
        let config = ModelConfig::from_json(&raw_config, path)?;
        let mut vs = nn::VarStore::new(device);
        // Every tensor is created in the target dtype: no f32 copy of the model first.
        vs.set_kind(dtype.kind());
        let root = vs.root();
        let body = &root / config.arch.prefix();
        let plan = lora.map(|config| lora::LoraPlan {
            config: config.clone(),
            switch: lora::Switch::new(),
        });
        let adapt = plan.as_ref();
        let backbone = match config.arch {
            Architecture::Gpt2 => Backbone::Gpt2(gpt2::Gpt2::new(body, &config, adapt)),
            Architecture::Llama => Backbone::Llama(llama::Llama::new(body, &config, adapt)),
            Architecture::NeoX => Backbone::NeoX(neox::NeoX::new(body, &config, adapt)),
            Architecture::Gemma2 => Backbone::Gemma2(gemma::Gemma2::new(body, &config, adapt)),
        };
        let init = nn::Init::Randn {
            mean: 0.0,
            stdev: 0.02,
        };
        let d = config.hidden_size;
        let lm_head = (head == Head::LanguageModel && !config.tie_embeddings)
            .then(|| (&root / config.arch.lm_head()).var("weight", &[config.vocab_size, d], init));
        let score = (head == Head::Scalar).then(|| (&root / "score").var("weight", &[1, d], init));
        let score_bias = raw_config
            .get(REWARD_BIAS_KEY)
            .and_then(Value::as_f64)
            .unwrap_or(0.0);
        let model = Model {
            vs,
            lora: plan,
            source: None,
            backbone,
            lm_head,
            score,
            score_bias,
            head,
            config,
            raw_config,
            checkpointing: false,
            pending: RefCell::new(Vec::new()),
        };
        if model.lora.is_some() {
            model.freeze_base(path)?;
        }
        Ok(model)
    }

    /// Load a Hugging Face folder. A scalar head missing from the file (a reward model
    /// started from a language model) is initialised and listed in the report.
    pub fn load(
        dir: &Path,
        head: Head,
        dtype: DType,
        device: Device,
    ) -> Result<(Model, LoadReport)> {
        Model::load_with_lora(dir, head, dtype, device, None)
    }

    /// [`Model::load`] with LoRA adapters on the loaded base (see [`Model::new_with_lora`]).
    pub fn load_with_lora(
        dir: &Path,
        head: Head,
        dtype: DType,
        device: Device,
        lora: Option<&LoraConfig>,
    ) -> Result<(Model, LoadReport)> {
        if !dir.is_dir() {
            return Err(Error::io(
                dir,
                std::io::Error::new(std::io::ErrorKind::NotFound, "model folder not found"),
            ));
        }
        let config_path = config::config_path(dir);
        let (_, raw) = ModelConfig::load(&config_path)?;
        // A bad config is reported before the weights are read.
        ModelConfig::from_json(&raw, &config_path)?;
        // The file is read (its bytes freed) before the model exists, so the peak is the
        // file's tensors and the model, not the bytes besides.
        let (file_tensors, files) = read_weights(dir)?;
        let mut model = Model::build(raw, &config_path, head, (dtype, device), lora)?;
        model.source = Some(dir.to_path_buf());
        let report = model.fill(&file_tensors, &files)?;
        model.unfold(&file_tensors, &config_path)?;
        Ok((model, report))
    }

    /// Undoes what `save` folded into the weights for transformers (see `bias_fold`).
    fn unfold(&mut self, file: &FileTensors, config_path: &Path) -> Result<()> {
        let Some(fold) = bias_fold::Fold::read(&self.raw_config, config_path)? else {
            return Ok(());
        };
        let mut vars = self.vs.variables();
        let in_file = file.get(&fold.tensor).map(|(t, _)| t);
        if !fold.restore(&mut vars, in_file, config_path)? {
            // Changed since: the weights already carry the constant, as transformers reads them.
            self.set_score_bias(0.0);
        }
        if let Some(map) = self.raw_config.as_object_mut() {
            map.remove(bias_fold::FOLD_KEY);
        }
        Ok(())
    }

    fn fill(&self, file: &BTreeMap<String, (Tensor, PathBuf)>, files: &Path) -> Result<LoadReport> {
        let mut report = LoadReport::default();
        let mut used = BTreeSet::new();
        let arch = self.config.arch;
        let prefix = format!("{}.", arch.prefix());
        let lm_head = format!("{}.weight", arch.lm_head());
        let _guard = tch::no_grad_guard();
        for (name, mut var) in self.vs.variables() {
            if lora::is_adapter(&name) {
                continue;
            }
            // Bare backbones (GPT2Model, LlamaModel) are saved without the prefix; NeoX's
            // output projection is `lm_head` inside transformers 5, `embed_out` in files.
            let found = file
                .get_key_value(&name)
                .or_else(|| {
                    name.strip_prefix(&prefix)
                        .and_then(|bare| file.get_key_value(bare))
                })
                .or_else(|| {
                    file.get_key_value("lm_head.weight")
                        .filter(|_| name == lm_head)
                });
            let Some((key, (tensor, path))) = found else {
                if name == "score.weight" {
                    report.initialized.push(name);
                    continue;
                }
                return Err(Error::format(files, format!("missing tensor `{name}`")));
            };
            if tensor.size() != var.size() {
                return Err(Error::format(
                    path,
                    format!(
                        "tensor `{key}` has shape {:?}, config.json implies {:?}",
                        tensor.size(),
                        var.size()
                    ),
                ));
            }
            if !tensor.is_floating_point() {
                return Err(Error::format(
                    path,
                    format!("tensor `{key}` is not floating point"),
                ));
            }
            var.f_copy_(tensor)?;
            used.insert(key.clone());
        }
        let tied_head = self.config.tie_embeddings || self.head == Head::Scalar;
        report.ignored = file
            .keys()
            .filter(|k| !used.contains(*k))
            .filter(|k| !(is_buffer(k) || (tied_head && is_lm_head(k))))
            .cloned()
            .collect();
        Ok(report)
    }

    /// Write config.json and model.safetensors into `dir` (created if needed). A scalar
    /// head's `reward_bias` is folded into the weights where the architecture allows, so
    /// transformers scores as `rlhf` does (see `bias_fold`).
    pub fn save(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let mut tensors = self.merged_tensors();
        let mut hf_config = self.hf_config();
        let fold = match self.head {
            Head::Scalar => bias_fold::fold(&mut tensors, self.config.arch, self.score_bias),
            Head::LanguageModel => None,
        };
        let map = hf_config
            .as_object_mut()
            .expect("config validated as an object");
        match fold {
            Some(record) => map.insert(bias_fold::FOLD_KEY.into(), record),
            None => map.remove(bias_fold::FOLD_KEY),
        };
        weights::write(&dir.join("model.safetensors"), &tensors)?;
        let config = serde_json::to_string_pretty(&hf_config).expect("JSON value serialises");
        weights::write_atomic(&config::config_path(dir), config.as_bytes())
    }

    /// The raw config with what this model owns brought up to date.
    fn hf_config(&self) -> Value {
        let mut raw = self.raw_config.clone();
        let family = match self.config.model_type.as_str() {
            "gpt2" => "GPT2",
            "qwen2" => "Qwen2",
            "qwen3" => "Qwen3",
            "mistral" => "Mistral",
            "gpt_neox" => "GPTNeoX",
            "gemma2" => "Gemma2",
            _ => "Llama",
        };
        let class = match (self.head, self.config.arch) {
            (Head::LanguageModel, Architecture::Gpt2) => format!("{family}LMHeadModel"),
            (Head::LanguageModel, _) => format!("{family}ForCausalLM"),
            (Head::Scalar, _) => format!("{family}ForSequenceClassification"),
        };
        let map = raw.as_object_mut().expect("config validated as an object");
        map.insert("architectures".into(), json!([class]));
        map.insert("model_type".into(), json!(self.config.model_type));
        map.remove("torch_dtype");
        map.insert("dtype".into(), json!(self.dtype().hf_name()));
        if self.head == Head::Scalar {
            map.insert("num_labels".into(), json!(1));
            map.insert("id2label".into(), json!({"0": "LABEL_0"}));
            map.insert("label2id".into(), json!({"LABEL_0": 0}));
        }
        raw
    }

    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    pub fn head(&self) -> Head {
        self.head
    }

    pub fn device(&self) -> Device {
        self.vs.device()
    }

    pub fn dtype(&self) -> DType {
        match self.vs.kind() {
            Kind::BFloat16 => DType::Bf16,
            Kind::Half => DType::F16,
            _ => DType::F32,
        }
    }

    /// The parameters, for optimizers and weight copies.
    pub fn var_store(&self) -> &nn::VarStore {
        &self.vs
    }

    /// A cache sized for this model.
    pub fn new_cache(&self, batch: i64, capacity: i64) -> KvCache {
        KvCache::new(&self.config, batch, capacity, self.vs.kind(), self.device())
    }

    /// Final hidden states [B, T, d]. `valid` marks real tokens ([B, T], None = all real);
    /// with a cache the tokens are appended to it and attend to everything cached before.
    ///
    /// With gradient checkpointing on, a forward without a cache while autograd records
    /// keeps only each block's input: after `loss.backward()` the caller must run
    /// [`Model::backward_recomputed`] (or call [`backward`]) for the blocks' and the
    /// embedding's gradients.
    pub fn forward(
        &self,
        ids: &Tensor,
        valid: Option<&Tensor>,
        cache: Option<&mut KvCache>,
        train: bool,
    ) -> Tensor {
        self.adapters_train(train);
        let blocks = self.backbone.blocks();
        // Drawn here for both paths, so a recomputed forward draws the plain one's masks.
        let seeds = blocks::DropoutSeeds::draw(train && self.draws_dropout());
        if self.checkpointing && cache.is_none() && recompute::grad_enabled() {
            let step = Step::new(ids, valid, None);
            let (hidden, pending) = recompute::forward(blocks, ids, step, (train, seeds));
            self.pending.borrow_mut().push(pending);
            return hidden;
        }
        blocks::forward(blocks, ids, Step::new(ids, valid, cache), (train, seeds))
    }

    /// Whether a training forward draws dropout masks: the model's own dropout, or its
    /// LoRA adapters'.
    pub fn draws_dropout(&self) -> bool {
        let c = &self.config;
        let adapters = self.lora().is_some_and(|l| l.dropout > 0.0);
        c.embd_dropout > 0.0 || c.attn_dropout > 0.0 || c.resid_dropout > 0.0 || adapters
    }

    /// Training forwards keep each transformer block's input alone and recompute the
    /// block in the backward pass: activation memory falls from every block's graph to
    /// one [B, T, d] tensor per block, for one more forward pass of the blocks.
    /// Generation (forwards with a cache) and no_grad forwards are unchanged.
    pub fn set_gradient_checkpointing(&mut self, on: bool) {
        self.checkpointing = on;
        if !on {
            self.discard_recomputed();
        }
    }

    pub fn gradient_checkpointing(&self) -> bool {
        self.checkpointing
    }

    /// The second half of a backward pass through checkpointed forwards, to run after
    /// `loss.backward()`: each pending forward's blocks are recomputed and their (and the
    /// embedding's) gradients added to `.grad`. Forwards the loss did not reach are
    /// dropped. Without checkpointing there is nothing pending and this does nothing.
    pub fn backward_recomputed(&self) {
        let pending = std::mem::take(&mut *self.pending.borrow_mut());
        for recompute in pending {
            recompute.backward(self.backbone.blocks());
        }
    }

    /// Drops pending checkpointed forwards whose loss will not be backpropagated (an
    /// abandoned step), freeing their stored block inputs.
    pub fn discard_recomputed(&self) {
        self.pending.borrow_mut().clear();
    }

    /// Next-token logits for hidden states [..., d] -> [..., vocab], soft-capped where the
    /// model says so (Gemma 2).
    pub fn logits(&self, hidden: &Tensor) -> Tensor {
        let weight = match (&self.lm_head, &self.backbone) {
            (Some(w), _) => w,
            (None, _) if !self.config.tie_embeddings => {
                panic!("this model was loaded with a scalar head and has no LM head")
            }
            (None, Backbone::Gpt2(m)) => m.embedding(),
            (None, Backbone::Llama(m)) => &m.trunk.embed,
            (None, Backbone::NeoX(m)) => &m.trunk.embed,
            (None, Backbone::Gemma2(m)) => &m.trunk.embed,
        };
        let logits = hidden.linear(weight, None::<Tensor>);
        match self.config.final_softcap {
            Some(cap) => (logits / cap).tanh() * cap,
            None => logits,
        }
    }

    /// Scalar outputs for hidden states [..., d] -> [...].
    pub fn scores(&self, hidden: &Tensor) -> Tensor {
        let weight = self
            .score
            .as_ref()
            .expect("scores() needs a model loaded with Head::Scalar");
        let scores = hidden.linear(weight, None::<Tensor>).squeeze_dim(-1);
        if self.score_bias == 0.0 {
            scores
        } else {
            scores + self.score_bias
        }
    }

    /// A constant added to every score, saved as `reward_bias` in config.json; `save` also
    /// folds it into the weights where transformers can see it (GPT-2, GPT-NeoX: see
    /// `bias_fold`). InstructGPT sets it so that demonstrations score 0 on average.
    pub fn set_score_bias(&mut self, bias: f64) {
        self.score_bias = bias;
        self.raw_config[REWARD_BIAS_KEY] = serde_json::json!(bias);
    }

    pub fn score_bias(&self) -> f64 {
        self.score_bias
    }

    /// One dropout probability for embeddings, attention and residuals while training.
    pub fn set_dropout(&mut self, p: f64) {
        let config = match &mut self.backbone {
            Backbone::Gpt2(m) => m.config_mut(),
            Backbone::Llama(m) => &mut m.trunk.config,
            Backbone::NeoX(m) => &mut m.trunk.config,
            Backbone::Gemma2(m) => &mut m.trunk.config,
        };
        for c in [config, &mut self.config] {
            c.embd_dropout = p;
            c.attn_dropout = p;
            c.resid_dropout = p;
        }
    }
}

impl Model {
    /// A model on the same frozen base weights (no copy) with its own copies of the
    /// trainable tensors (LoRA's adapters and a scalar head) and its own adapter switch.
    /// Only for models with LoRA: without it every weight trains and nothing is shared.
    pub fn share(&self) -> Model {
        let plan = self
            .lora
            .as_ref()
            .expect("only a LoRA model shares its base");
        let vs = nn::VarStore::new(self.vs.device());
        let root = vs.root();
        let trainable: Vec<String> = self.trainable().into_iter().map(|(n, _)| n).collect();
        let mut map = HashMap::new();
        let _guard = tch::no_grad_guard();
        for (name, old) in self.vs.variables() {
            let train = trainable.contains(&name);
            let new = match train {
                true => old.detach().copy(),
                false => old.shallow_clone(),
            };
            let (parent, leaf) = name.rsplit_once('.').unwrap_or(("", &name));
            let path = parent
                .split('.')
                .filter(|c| !c.is_empty())
                .fold(root.clone(), |p, c| p.sub(c));
            let new = path.add(leaf, new, train);
            map.insert(old.data_ptr() as usize, new);
        }
        let tensors = Tensors::new(map, Switch::new());
        let plan = LoraPlan {
            config: plan.config.clone(),
            switch: tensors.switch.clone(),
        };
        Model {
            backbone: self.backbone.share(&tensors),
            vs,
            lora: Some(plan),
            source: self.source.clone(),
            lm_head: tensors.opt(&self.lm_head),
            score: tensors.opt(&self.score),
            score_bias: self.score_bias,
            head: self.head,
            config: self.config.clone(),
            raw_config: self.raw_config.clone(),
            checkpointing: self.checkpointing,
            pending: RefCell::new(Vec::new()),
        }
    }
}

impl Share for Backbone {
    fn share(&self, t: &Tensors) -> Self {
        match self {
            Backbone::Gpt2(m) => Backbone::Gpt2(m.share(t)),
            Backbone::Llama(m) => Backbone::Llama(m.share(t)),
            Backbone::NeoX(m) => Backbone::NeoX(m.share(t)),
            Backbone::Gemma2(m) => Backbone::Gemma2(m.share(t)),
        }
    }
}

/// `loss.backward()`, then the recomputed blocks of every checkpointed forward of
/// `models` that the loss was built on (see [`Model::set_gradient_checkpointing`]).
pub fn backward(loss: &Tensor, models: &[&Model]) {
    loss.backward();
    for model in models {
        model.backward_recomputed();
    }
}

/// Copies named tensors into a model's trainable tensors ([`Model::trainable`]) under
/// no_grad: the generator's weight sync, checkpoint restores and the PPO learner's rollback
/// (devices and float dtypes may differ). Every trainable tensor of the model must be given
/// with its shape, and every given name must be one; otherwise an error names the tensor
/// and nothing is copied.
pub fn load_weights(model: &mut Model, weights: &[(String, Tensor)]) -> Result<()> {
    let mut vars: BTreeMap<String, Tensor> = model.trainable().into_iter().collect();
    let invalid = |what: String| Error::Invalid(format!("weight sync: {what}"));
    for (name, tensor) in weights {
        let Some(var) = vars.get(name) else {
            return Err(invalid(format!("unknown tensor `{name}`")));
        };
        if tensor.size() != var.size() {
            return Err(invalid(format!(
                "tensor `{name}` has shape {:?}, the model expects {:?}",
                tensor.size(),
                var.size()
            )));
        }
    }
    if let Some(name) = vars
        .keys()
        .filter(|name| !weights.iter().any(|(n, _)| n == *name))
        .min()
    {
        return Err(invalid(format!("missing tensor `{name}`")));
    }
    let _guard = tch::no_grad_guard();
    for (name, tensor) in weights {
        let var = vars.get_mut(name).expect("checked above");
        var.f_copy_(tensor)?;
    }
    Ok(())
}

const REWARD_BIAS_KEY: &str = "reward_bias";

/// Buffers that some HF checkpoints store but that are recomputed here (GPT-2's and old
/// Pythia files' causal masks, rotary frequencies).
fn is_buffer(name: &str) -> bool {
    [
        ".attn.bias",
        ".attn.masked_bias",
        ".attention.bias",
        ".attention.masked_bias",
    ]
    .iter()
    .any(|suffix| name.ends_with(suffix))
        || name.ends_with("rotary_emb.inv_freq")
}

/// An output projection a tied or scalar-head model has no use for.
fn is_lm_head(name: &str) -> bool {
    name == "lm_head.weight" || name == "embed_out.weight"
}

type FileTensors = BTreeMap<String, (Tensor, PathBuf)>;

/// `model.safetensors`, or every shard named by `model.safetensors.index.json`.
/// Returns the tensors with the file each came from, and the path to name in errors.
fn read_weights(dir: &Path) -> Result<(FileTensors, PathBuf)> {
    let single = dir.join("model.safetensors");
    let index = dir.join("model.safetensors.index.json");
    let shards: Vec<PathBuf> = if single.exists() || !index.exists() {
        vec![single.clone()]
    } else {
        let text = std::fs::read_to_string(&index).map_err(|e| Error::io(&index, e))?;
        let json: Value = serde_json::from_str(&text).map_err(|e| {
            Error::format(&index, format!("invalid JSON at line {}: {e}", e.line()))
        })?;
        let map = json
            .get("weight_map")
            .and_then(Value::as_object)
            .ok_or_else(|| Error::format(&index, "missing key `weight_map`"))?;
        let files: BTreeSet<&str> = map.values().filter_map(Value::as_str).collect();
        files.into_iter().map(|f| dir.join(f)).collect()
    };
    let mut all = BTreeMap::new();
    for shard in &shards {
        for (name, tensor) in weights::read(shard)? {
            all.insert(name, (tensor, shard.clone()));
        }
    }
    let named = if shards.len() == 1 { single } else { index };
    Ok((all, named))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(model: &Model) -> i64 {
        let vars = model.var_store().variables();
        vars.values().map(|t| t.numel() as i64).sum()
    }

    /// `num_parameters` (FLOP counts, logs) agrees with the variables each architecture
    /// creates, for every fixture and for a fresh model of each architecture.
    #[test]
    fn parameter_counts_match_the_variables() {
        let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
        for entry in std::fs::read_dir(&fixtures).unwrap() {
            let dir = entry.unwrap().path();
            if !dir.join("config.json").exists() || dir.ends_with("-score") {
                continue;
            }
            let (config, raw) = ModelConfig::load(&config::config_path(&dir)).unwrap();
            let model = Model::new(raw, Head::LanguageModel, DType::F32, Device::Cpu).unwrap();
            assert_eq!(config.num_parameters(), count(&model), "{}", dir.display());
        }
        for arch in [
            Architecture::Gpt2,
            Architecture::Llama,
            Architecture::NeoX,
            Architecture::Gemma2,
        ] {
            let shape = ModelShape {
                arch,
                vocab_size: 64,
                hidden_size: 32,
                num_layers: 2,
                num_heads: 4,
                // GQA where the architecture has it (GPT-2 and NeoX configs ignore it).
                num_kv_heads: 2,
                max_positions: 16,
                eos_token_id: 0,
            };
            let raw = ModelConfig::new_json(&shape);
            let model = Model::new(raw, Head::LanguageModel, DType::F32, Device::Cpu).unwrap();
            assert_eq!(model.config().arch, arch);
            assert_eq!(model.config().num_parameters(), count(&model), "{arch:?}");
        }
    }
}
