//! Llama: rotary positions, RMSNorm, SwiGLU MLP, grouped-query attention. The same file
//! serves, through the config, Qwen2 (biases on q/k/v), Qwen3 (RMSNorm over each head's
//! queries and keys), Mistral and Qwen's sliding windows, and Llama 3.1's rope scaling.
// `x + f(x)`, never `x += f(x)`: Tensor's `+=` adds in place and would clobber the
// residual stream that autograd saved for the backward pass.

use super::attention::Step;
use super::blocks::Blocks;
use super::config::ModelConfig;
use super::layers::{GatedMlp, RmsNorm};
use super::lora::LoraPlan;
use super::lora::{Share, Tensors};
use super::rope::Rotation;
use super::self_attention::SelfAttention;
use super::trunk::Trunk;
use tch::{nn, Tensor};

struct Block {
    input_norm: RmsNorm,
    attn: SelfAttention,
    post_norm: RmsNorm,
    mlp: GatedMlp,
}

pub struct Llama {
    pub(super) trunk: Trunk,
    blocks: Vec<Block>,
    norm: RmsNorm,
}

impl Llama {
    /// Creates the variables under `p` (the `model.` prefix) with HF names.
    pub fn new(p: nn::Path, config: &ModelConfig, lora: Option<&LoraPlan>) -> Self {
        let (d, eps) = (config.hidden_size, config.norm_eps);
        let layers = &p / "layers";
        let blocks = (0..config.num_layers)
            .map(|i| {
                let b = &layers / i;
                Block {
                    input_norm: RmsNorm::new(&b / "input_layernorm", d, eps),
                    attn: SelfAttention::new(&b / "self_attn", config, i, lora),
                    post_norm: RmsNorm::new(&b / "post_attention_layernorm", d, eps),
                    mlp: GatedMlp::new(&b / "mlp", config, lora),
                }
            })
            .collect();
        Llama {
            trunk: Trunk::new(&p, "embed_tokens", config),
            blocks,
            norm: RmsNorm::new(&p / "norm", d, eps),
        }
    }
}

impl Blocks for Llama {
    fn embed(&self, ids: &Tensor, step: &Step, _train: bool) -> (Tensor, Option<Rotation>) {
        (
            self.trunk.lookup(ids),
            Some(self.trunk.rotation(&step.positions)),
        )
    }

    fn block(
        &self,
        i: usize,
        x: &Tensor,
        rotation: Option<&Rotation>,
        step: &mut Step,
        train: bool,
    ) -> Tensor {
        let c = &self.trunk.config;
        let block = &self.blocks[i];
        let rotation = rotation.expect("rotary backbone");
        let attn_p = if train { c.attn_dropout } else { 0.0 };
        let h = block.input_norm.forward(x);
        let x = x + block.attn.forward(&h, rotation, step, i, attn_p);
        let h = block.post_norm.forward(&x);
        x + block.mlp.forward(&h)
    }

    fn final_norm(&self, x: &Tensor) -> Tensor {
        self.norm.forward(x)
    }

    fn depth(&self) -> usize {
        self.blocks.len()
    }
}

impl Share for Block {
    fn share(&self, t: &Tensors) -> Self {
        Block {
            input_norm: self.input_norm.share(t),
            attn: self.attn.share(t),
            post_norm: self.post_norm.share(t),
            mlp: self.mlp.share(t),
        }
    }
}

impl Share for Llama {
    fn share(&self, t: &Tensors) -> Self {
        Llama {
            trunk: self.trunk.share(t),
            blocks: self.blocks.share(t),
            norm: self.norm.share(t),
        }
    }
}
