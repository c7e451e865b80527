//! LoRA (Hu et al. 2021): a frozen linear layer `W` plus a trainable low-rank update,
//! `y = x W^T + (alpha / r) * dropout(x) A^T B^T` with `A` [r, in] and `B` [out, r], `B`
//! starting at zero so training starts from the base model. Names, shapes, init and scaling
//! are `peft`'s, so adapters go both ways (see `adapter_io`).

use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tch::{nn, Kind, Tensor};

/// `[<stage>.lora]`: low-rank adapters on the model's linear layers; the base weights are
/// frozen and only the adapters (and a scalar head) train.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LoraConfig {
    /// The adapters' rank `r`.
    pub rank: i64,
    /// The update is scaled by `alpha / rank`.
    pub alpha: f64,
    /// Dropout on the adapters' input while training.
    pub dropout: f64,
    /// Layers that get adapters, by name or dotted name suffix as in `peft`'s
    /// `target_modules` (`c_attn`, `q_proj`, `mlp.c_proj`); empty: every linear layer of
    /// every block (`peft`'s `all-linear`).
    pub targets: Vec<String>,
}

impl Default for LoraConfig {
    fn default() -> Self {
        LoraConfig {
            rank: 8,
            alpha: 16.0,
            dropout: 0.0,
            targets: Vec::new(),
        }
    }
}

impl LoraConfig {
    /// Checks every field; the message starts with the field's name.
    pub fn validate(&self) -> std::result::Result<(), String> {
        if self.rank < 1 {
            return Err(format!("rank must be at least 1, got {}", self.rank));
        }
        if !(self.alpha > 0.0 && self.alpha.is_finite()) {
            return Err(format!(
                "alpha must be positive and finite, got {}",
                self.alpha
            ));
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return Err(format!("dropout must be in [0, 1), got {}", self.dropout));
        }
        if let Some(t) = self.targets.iter().find(|t| t.is_empty()) {
            return Err(format!("targets: empty name `{t}`"));
        }
        Ok(())
    }

    pub fn scale(&self) -> f64 {
        self.alpha / self.rank as f64
    }

    /// Whether the layer named `module` (`transformer.h.0.attn.c_attn`) gets an adapter.
    pub fn targets_module(&self, module: &str) -> bool {
        self.targets.is_empty() || self.targets.iter().any(|t| matches_target(module, t))
    }
}

/// `peft`'s rule: the whole name, or a dotted suffix of it.
pub fn matches_target(module: &str, target: &str) -> bool {
    module == target || module.ends_with(&format!(".{target}"))
}

/// The suffixes of adapter variables, as `peft` names them.
pub const A_SUFFIX: &str = "lora_A.weight";
pub const B_SUFFIX: &str = "lora_B.weight";

/// Whether a variable name is an adapter's.
pub fn is_adapter(name: &str) -> bool {
    name.ends_with(A_SUFFIX) || name.ends_with(B_SUFFIX)
}

/// What every adapter of one model reads at each forward: whether adapters are on (off:
/// the base model, such as PPO's reference policy) and whether the pass trains (dropout).
#[derive(Debug)]
pub struct Switch {
    enabled: AtomicBool,
    train: AtomicBool,
}

impl Switch {
    pub fn new() -> Arc<Switch> {
        Arc::new(Switch {
            enabled: AtomicBool::new(true),
            train: AtomicBool::new(false),
        })
    }

    pub fn set_enabled(&self, on: bool) {
        self.enabled.store(on, Ordering::Relaxed);
    }

    pub fn enabled(&self) -> bool {
        self.enabled.load(Ordering::Relaxed)
    }

    pub fn set_train(&self, train: bool) {
        self.train.store(train, Ordering::Relaxed);
    }
}

/// What a model's layers need to create their adapters: the config and the switch.
#[derive(Clone, Debug)]
pub struct LoraPlan {
    pub config: LoraConfig,
    pub switch: Arc<Switch>,
}

/// One layer's adapter. `A` and `B` are f32 whatever the base's dtype: the base may be
/// held in bf16 while the update trains in full precision.
pub struct Adapter {
    a: Tensor,
    b: Tensor,
    scale: f64,
    dropout: f64,
    switch: Arc<Switch>,
}

impl Adapter {
    /// The adapter of the layer under `p` when the plan targets it: `A` drawn as `peft`
    /// draws it (Kaiming-uniform, bound 1/sqrt(in)), `B` zero.
    pub fn attach(
        p: &nn::Path,
        inputs: i64,
        outputs: i64,
        plan: Option<&LoraPlan>,
    ) -> Option<Self> {
        let plan = plan?;
        let module = p.components().collect::<Vec<_>>().join(".");
        if !plan.config.targets_module(&module) {
            return None;
        }
        let r = plan.config.rank;
        let bound = 1.0 / (inputs as f64).sqrt();
        let float = (Kind::Float, p.device());
        let a = Tensor::empty([r, inputs], float).uniform_(-bound, bound);
        let a = (p / "lora_A").add("weight", a, true);
        let b = (p / "lora_B").add("weight", Tensor::zeros([outputs, r], float), true);
        Some(Adapter {
            a,
            b,
            scale: plan.config.scale(),
            dropout: plan.config.dropout,
            switch: plan.switch.clone(),
        })
    }

    /// The update for inputs `x` [..., in] -> [..., out] in `x`'s dtype; None while the
    /// switch has adapters off.
    pub fn forward(&self, x: &Tensor) -> Option<Tensor> {
        if !self.switch.enabled() {
            return None;
        }
        let train = self.switch.train.load(Ordering::Relaxed);
        let x32 = x.to_kind(Kind::Float);
        let x32 = if train && self.dropout > 0.0 {
            x32.dropout(self.dropout, true)
        } else {
            x32
        };
        // Scaled at rank r, not at the layer's full output width: the same product for
        // r/out of the work and no second [.., out] tensor.
        let update =
            (x32.linear(&self.a, None::<Tensor>) * self.scale).linear(&self.b, None::<Tensor>);
        Some(update.to_kind(x.kind()))
    }

    /// This adapter on the new model's copies of `A` and `B`, behind its switch.
    pub fn share(&self, t: &Tensors) -> Adapter {
        Adapter {
            a: t.get(&self.a),
            b: t.get(&self.b),
            scale: self.scale,
            dropout: self.dropout,
            switch: t.switch.clone(),
        }
    }

    /// The dense update `scale * B A` [out, in], f32.
    pub fn delta(&self) -> Tensor {
        self.b.matmul(&self.a) * self.scale
    }
}

// Sharing: the frozen base of one LoRA model under another's adapters (`Model::share`).

/// The new model's variables, by the storage of the old model's: trainable ones copied,
/// frozen ones shared. Tensors that are not variables (rope tables) are shared as they are.
/// Adapters take the new model's switch.
pub struct Tensors {
    map: HashMap<usize, Tensor>,
    pub switch: Arc<Switch>,
}

impl Tensors {
    pub fn new(map: HashMap<usize, Tensor>, switch: Arc<Switch>) -> Tensors {
        Tensors { map, switch }
    }

    /// The new model's tensor for one of the old model's.
    pub fn get(&self, t: &Tensor) -> Tensor {
        match self.map.get(&(t.data_ptr() as usize)) {
            Some(new) => new.shallow_clone(),
            None => t.shallow_clone(),
        }
    }

    pub fn opt(&self, t: &Option<Tensor>) -> Option<Tensor> {
        t.as_ref().map(|t| self.get(t))
    }
}

/// A layer rebuilt on the new model's tensors.
pub trait Share {
    fn share(&self, t: &Tensors) -> Self;
}

impl<T: Share> Share for Vec<T> {
    fn share(&self, t: &Tensors) -> Self {
        self.iter().map(|x| x.share(t)).collect()
    }
}

impl<T: Share> Share for Option<T> {
    fn share(&self, t: &Tensors) -> Self {
        self.as_ref().map(|x| x.share(t))
    }
}
