//! The building blocks the architectures share: a linear layer in `nn.Linear` layout, and
//! the LayerNorm and RMSNorm variants. Variables are created under HF's names
//! (`weight`, `bias`) so every architecture's checkpoints map 1:1.

use super::config::Activation;
use super::lora::{Adapter, LoraPlan};
use super::lora::{Share, Tensors};
use tch::{nn, Kind, Tensor};

/// The normal init every fresh weight matrix gets (HF's `initializer_range` 0.02).
pub fn init() -> nn::Init {
    nn::Init::Randn {
        mean: 0.0,
        stdev: 0.02,
    }
}

/// `nn.Linear`: y = x W^T + b with W stored as [out, in], plus a LoRA adapter where the
/// plan targets the layer.
pub struct Linear {
    weight: Tensor,
    bias: Option<Tensor>,
    adapter: Option<Adapter>,
}

impl Linear {
    pub fn new(
        p: nn::Path,
        inputs: i64,
        outputs: i64,
        bias: bool,
        lora: Option<&LoraPlan>,
    ) -> Self {
        Linear {
            weight: p.var("weight", &[outputs, inputs], init()),
            bias: bias.then(|| p.zeros("bias", &[outputs])),
            adapter: Adapter::attach(&p, inputs, outputs, lora),
        }
    }

    pub fn forward(&self, x: &Tensor) -> Tensor {
        let y = x.linear(&self.weight, self.bias.as_ref());
        match self.adapter.as_ref().and_then(|a| a.forward(x)) {
            Some(update) => y + update,
            None => y,
        }
    }
}

impl Share for Linear {
    fn share(&self, t: &Tensors) -> Self {
        Linear {
            weight: t.get(&self.weight),
            bias: t.opt(&self.bias),
            adapter: self.adapter.as_ref().map(|a| a.share(t)),
        }
    }
}

/// LayerNorm with weight and bias (GPT-2, GPT-NeoX).
pub struct LayerNorm {
    weight: Tensor,
    bias: Tensor,
    eps: f64,
}

impl LayerNorm {
    pub fn new(p: nn::Path, dim: i64, eps: f64) -> Self {
        LayerNorm {
            weight: p.ones("weight", &[dim]),
            bias: p.zeros("bias", &[dim]),
            eps,
        }
    }

    pub fn forward(&self, x: &Tensor) -> Tensor {
        let dim = *self.weight.size().last().expect("1-D weight");
        x.layer_norm([dim], Some(&self.weight), Some(&self.bias), self.eps, true)
    }
}

impl Share for LayerNorm {
    fn share(&self, t: &Tensors) -> Self {
        LayerNorm {
            weight: t.get(&self.weight),
            bias: t.get(&self.bias),
            eps: self.eps,
        }
    }
}

/// RMSNorm. Llama scales by `w` after casting back to the model dtype; Gemma stores
/// `w - 1` (initialised at 0) and scales by `1 + w` in f32 before the cast.
pub struct RmsNorm {
    weight: Tensor,
    eps: f64,
    plus_one: bool,
}

impl RmsNorm {
    /// Llama's RMSNorm (weights start at 1).
    pub fn new(p: nn::Path, dim: i64, eps: f64) -> Self {
        RmsNorm {
            weight: p.ones("weight", &[dim]),
            eps,
            plus_one: false,
        }
    }

    /// Gemma's RMSNorm (weights start at 0, the scale is `1 + w`).
    pub fn plus_one(p: nn::Path, dim: i64, eps: f64) -> Self {
        RmsNorm {
            weight: p.zeros("weight", &[dim]),
            eps,
            plus_one: true,
        }
    }

    /// Normalises in f32 whatever the model dtype, as `transformers` does.
    pub fn forward(&self, x: &Tensor) -> Tensor {
        let dim = self.weight.size()[0];
        if self.plus_one {
            let scale = self.weight.to_kind(Kind::Float) + 1.0;
            let normed = x
                .to_kind(Kind::Float)
                .rms_norm([dim], None::<Tensor>, self.eps);
            return (normed * scale).to_kind(x.kind());
        }
        if x.kind() == Kind::Float {
            return x.rms_norm([dim], Some(&self.weight), self.eps);
        }
        let normed = x
            .to_kind(Kind::Float)
            .rms_norm([dim], None::<Tensor>, self.eps);
        normed.to_kind(x.kind()) * &self.weight
    }
}

impl Share for RmsNorm {
    fn share(&self, t: &Tensors) -> Self {
        RmsNorm {
            weight: t.get(&self.weight),
            eps: self.eps,
            plus_one: self.plus_one,
        }
    }
}

/// Dropout only while training and only when asked for.
pub fn dropout(x: Tensor, p: f64, train: bool) -> Tensor {
    if train && p > 0.0 {
        x.dropout(p, true)
    } else {
        x
    }
}

/// An MLP's activation.
pub fn activate(x: &Tensor, activation: Activation) -> Tensor {
    match activation {
        Activation::GeluTanh => x.gelu("tanh"),
        Activation::GeluExact => x.gelu("none"),
        Activation::Relu => x.relu(),
        Activation::Silu => x.silu(),
    }
}

/// down(act(gate(x)) * up(x)): SwiGLU (Llama family) or GeGLU (Gemma), HF's `mlp` names.
pub struct GatedMlp {
    gate: Linear,
    up: Linear,
    down: Linear,
    activation: Activation,
}

impl GatedMlp {
    pub fn new(p: nn::Path, config: &super::config::ModelConfig, lora: Option<&LoraPlan>) -> Self {
        let (d, ff, bias) = (
            config.hidden_size,
            config.intermediate_size,
            config.mlp_bias,
        );
        GatedMlp {
            gate: Linear::new(&p / "gate_proj", d, ff, bias, lora),
            up: Linear::new(&p / "up_proj", d, ff, bias, lora),
            down: Linear::new(&p / "down_proj", ff, d, bias, lora),
            activation: config.activation,
        }
    }

    pub fn forward(&self, x: &Tensor) -> Tensor {
        let gated = activate(&self.gate.forward(x), self.activation) * self.up.forward(x);
        self.down.forward(&gated)
    }
}

impl Share for GatedMlp {
    fn share(&self, t: &Tensors) -> Self {
        GatedMlp {
            gate: self.gate.share(t),
            up: self.up.share(t),
            down: self.down.share(t),
            activation: self.activation,
        }
    }
}
