//! Gemma 2: embeddings scaled by sqrt(hidden), RMSNorms that scale by (1 + w) around both
//! the attention and the MLP (before and after each), a GeGLU MLP (tanh GELU), attention
//! scores scaled by `query_pre_attn_scalar`^-1/2 and soft-capped, sliding windows on
//! alternate layers. The logits' soft-cap is applied with the head (`Model::logits`).
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
    post_attn_norm: RmsNorm,
    pre_mlp_norm: RmsNorm,
    mlp: GatedMlp,
    post_mlp_norm: RmsNorm,
}

pub struct Gemma2 {
    pub(super) trunk: Trunk,
    blocks: Vec<Block>,
    norm: RmsNorm,
}

impl Gemma2 {
    /// Creates the variables under `p` (the `model.` prefix) with HF names.
    pub fn new(p: nn::Path, config: &ModelConfig, lora: Option<&LoraPlan>) -> Self {
        let (d, eps) = (config.hidden_size, config.norm_eps);
        let layers = &p / "layers";
        let blocks = (0..config.num_layers)
            .map(|i| {
                let b = &layers / i;
                let norm = |name: &str| RmsNorm::plus_one(&b / name, d, eps);
                Block {
                    input_norm: norm("input_layernorm"),
                    attn: SelfAttention::new(&b / "self_attn", config, i, lora),
                    post_attn_norm: norm("post_attention_layernorm"),
                    pre_mlp_norm: norm("pre_feedforward_layernorm"),
                    mlp: GatedMlp::new(&b / "mlp", config, lora),
                    post_mlp_norm: norm("post_feedforward_layernorm"),
                }
            })
            .collect();
        Gemma2 {
            trunk: Trunk::new(&p, "embed_tokens", config),
            blocks,
            norm: RmsNorm::plus_one(&p / "norm", d, eps),
        }
    }
}

impl Blocks for Gemma2 {
    fn embed(&self, ids: &Tensor, step: &Step, _train: bool) -> (Tensor, Option<Rotation>) {
        let embed = &self.trunk.embed;
        // The scale is rounded to the model's dtype first, as transformers does.
        let scale = Tensor::from((self.trunk.config.hidden_size as f64).sqrt())
            .to_kind(embed.kind())
            .to_device(embed.device());
        (
            self.trunk.lookup(ids) * scale,
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
        let attn = block.attn.forward(&h, rotation, step, i, attn_p);
        let x = x + block.post_attn_norm.forward(&attn);
        let h = block.mlp.forward(&block.pre_mlp_norm.forward(&x));
        x + block.post_mlp_norm.forward(&h)
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
            post_attn_norm: self.post_attn_norm.share(t),
            pre_mlp_norm: self.pre_mlp_norm.share(t),
            mlp: self.mlp.share(t),
            post_mlp_norm: self.post_mlp_norm.share(t),
        }
    }
}

impl Share for Gemma2 {
    fn share(&self, t: &Tensors) -> Self {
        Gemma2 {
            trunk: self.trunk.share(t),
            blocks: self.blocks.share(t),
            norm: self.norm.share(t),
        }
    }
}
