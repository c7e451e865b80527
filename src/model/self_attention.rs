//! Grouped-query self-attention with separate q/k/v/o projections under HF's `self_attn`
//! names, shared by the Llama family and Gemma 2: optional per-head q/k RMSNorms (Qwen3),
//! rotary positions, and the layer's attention options (scale, soft-cap, window).

use super::attention::{AttendOptions, Step};
use super::config::ModelConfig;
use super::layers::{Linear, RmsNorm};
use super::lora::LoraPlan;
use super::lora::{Share, Tensors};
use super::rope::Rotation;
use tch::{nn, Tensor};

pub struct SelfAttention {
    q: Linear,
    k: Linear,
    v: Linear,
    /// Qwen3's RMSNorms over each head's queries and keys, before the rotation.
    q_norm: Option<RmsNorm>,
    k_norm: Option<RmsNorm>,
    o: Linear,
    options: AttendOptions,
    heads: (i64, i64, i64),
}

impl SelfAttention {
    /// The projections of layer `layer` under `p` (its `self_attn`).
    pub fn new(p: nn::Path, config: &ModelConfig, layer: i64, lora: Option<&LoraPlan>) -> Self {
        let (d, hd) = (config.hidden_size, config.head_dim);
        let (q_out, kv_out) = (config.num_heads * hd, config.num_kv_heads * hd);
        let qk_norm = |name: &str| {
            config
                .qk_norm
                .then(|| RmsNorm::new(&p / name, hd, config.norm_eps))
        };
        SelfAttention {
            q: Linear::new(&p / "q_proj", d, q_out, config.qkv_bias, lora),
            k: Linear::new(&p / "k_proj", d, kv_out, config.qkv_bias, lora),
            v: Linear::new(&p / "v_proj", d, kv_out, config.qkv_bias, lora),
            q_norm: qk_norm("q_norm"),
            k_norm: qk_norm("k_norm"),
            o: Linear::new(&p / "o_proj", q_out, d, config.out_bias, lora),
            options: AttendOptions {
                scale: config.attn_scale,
                softcap: config.attn_softcap,
                window: config.window(layer),
            },
            heads: (config.num_heads, config.num_kv_heads, hd),
        }
    }

    /// The attention block's output [B, T, d] for normed inputs `h` [B, T, d].
    pub fn forward(
        &self,
        h: &Tensor,
        rotation: &Rotation,
        step: &mut Step,
        layer: usize,
        dropout: f64,
    ) -> Tensor {
        let (heads, kv_heads, hd) = self.heads;
        let (b, t) = (h.size()[0], h.size()[1]);
        // [B, T, n, hd], normed per head where the model says so, then [B, n, T, hd].
        let split = |x: Tensor, n: i64, norm: &Option<RmsNorm>| {
            let x = x.view([b, t, n, hd]);
            match norm {
                Some(norm) => norm.forward(&x),
                None => x,
            }
            .transpose(1, 2)
        };
        let q = rotation.apply(&split(self.q.forward(h), heads, &self.q_norm));
        let k = rotation.apply(&split(self.k.forward(h), kv_heads, &self.k_norm));
        let v = split(self.v.forward(h), kv_heads, &None);
        self.o
            .forward(&step.attend(layer, &q, &k, &v, dropout, self.options))
    }
}

impl Share for SelfAttention {
    fn share(&self, t: &Tensors) -> Self {
        SelfAttention {
            q: self.q.share(t),
            k: self.k.share(t),
            v: self.v.share(t),
            q_norm: self.q_norm.share(t),
            k_norm: self.k_norm.share(t),
            o: self.o.share(t),
            options: self.options,
            heads: self.heads,
        }
    }
}
