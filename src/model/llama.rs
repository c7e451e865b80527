//! Llama: rotary positions, RMSNorm, SwiGLU MLP, grouped-query attention. The same file
//! serves, through the config, Qwen2 (biases on q/k/v), Qwen3 (RMSNorm over each head's
//! queries and keys), Mistral (no sliding window) and Llama 3.1's rope scaling.
// `x = x + f(x)`, not `x += f(x)`: Tensor's `+=` adds in place and would clobber the
// residual stream that autograd saved for the backward pass.
#![allow(clippy::assign_op_pattern)]

use super::attention::Step;
use super::config::ModelConfig;
use super::layers::{init, Linear, RmsNorm};
use super::rope::RopeTables;
use tch::{nn, Tensor};

struct Block {
    input_norm: RmsNorm,
    q: Linear,
    k: Linear,
    v: Linear,
    /// Qwen3's per-head RMSNorms of queries and keys (over head_dim, before the rotation).
    q_norm: Option<RmsNorm>,
    k_norm: Option<RmsNorm>,
    o: Linear,
    post_norm: RmsNorm,
    gate: Linear,
    up: Linear,
    down: Linear,
}

pub struct Llama {
    embed: Tensor,
    blocks: Vec<Block>,
    norm: RmsNorm,
    rope: RopeTables,
    config: ModelConfig,
}

impl Llama {
    /// Creates the variables under `p` (the `model.` prefix) with HF names.
    pub fn new(p: nn::Path, config: &ModelConfig) -> Self {
        let (d, hd) = (config.hidden_size, config.head_dim);
        let (q_out, kv_out) = (config.num_heads * hd, config.num_kv_heads * hd);
        let layers = &p / "layers";
        let blocks = (0..config.num_layers)
            .map(|i| {
                let b = &layers / i;
                let attn = &b / "self_attn";
                let mlp = &b / "mlp";
                let ff = config.intermediate_size;
                let qk_norm = |name: &str| {
                    config
                        .qk_norm
                        .then(|| RmsNorm::new(&attn / name, hd, config.norm_eps))
                };
                Block {
                    input_norm: RmsNorm::new(&b / "input_layernorm", d, config.norm_eps),
                    q: Linear::new(&attn / "q_proj", d, q_out, config.qkv_bias),
                    k: Linear::new(&attn / "k_proj", d, kv_out, config.qkv_bias),
                    v: Linear::new(&attn / "v_proj", d, kv_out, config.qkv_bias),
                    q_norm: qk_norm("q_norm"),
                    k_norm: qk_norm("k_norm"),
                    o: Linear::new(&attn / "o_proj", q_out, d, config.out_bias),
                    post_norm: RmsNorm::new(&b / "post_attention_layernorm", d, config.norm_eps),
                    gate: Linear::new(&mlp / "gate_proj", d, ff, config.mlp_bias),
                    up: Linear::new(&mlp / "up_proj", d, ff, config.mlp_bias),
                    down: Linear::new(&mlp / "down_proj", ff, d, config.mlp_bias),
                }
            })
            .collect();
        let rope = config
            .rope
            .as_ref()
            .expect("the Llama family has rotary embeddings")
            .tables(config.max_positions, p.device());
        Llama {
            embed: (&p / "embed_tokens").var("weight", &[config.vocab_size, d], init()),
            blocks,
            norm: RmsNorm::new(&p / "norm", d, config.norm_eps),
            rope,
            config: config.clone(),
        }
    }

    pub fn config_mut(&mut self) -> &mut ModelConfig {
        &mut self.config
    }

    pub fn embedding(&self) -> &Tensor {
        &self.embed
    }

    /// Final hidden states [B, T, d] (after the last RMSNorm).
    pub fn forward(&self, ids: &Tensor, mut step: Step, train: bool) -> Tensor {
        let c = &self.config;
        let b = ids.size()[0];
        let rotation = self.rope.at(&step.positions, self.embed.kind());
        let attn_p = if train { c.attn_dropout } else { 0.0 };
        let mut x = Tensor::embedding(&self.embed, ids, -1, false, false);
        for (i, block) in self.blocks.iter().enumerate() {
            let h = block.input_norm.forward(&x);
            // [B, T, n, hd], normed per head where the model says so, then [B, n, T, hd].
            let heads = |t: Tensor, n: i64, norm: &Option<RmsNorm>| {
                let t = t.view([b, t_len(&t), n, c.head_dim]);
                match norm {
                    Some(norm) => norm.forward(&t),
                    None => t,
                }
                .transpose(1, 2)
            };
            let q = rotation.apply(&heads(block.q.forward(&h), c.num_heads, &block.q_norm));
            let k = rotation.apply(&heads(block.k.forward(&h), c.num_kv_heads, &block.k_norm));
            let v = heads(block.v.forward(&h), c.num_kv_heads, &None);
            x = x + block.o.forward(&step.attend(i, &q, &k, &v, attn_p));
            let h = block.post_norm.forward(&x);
            x = x + block
                .down
                .forward(&(block.gate.forward(&h).silu() * block.up.forward(&h)));
        }
        step.finish();
        self.norm.forward(&x)
    }
}

fn t_len(x: &Tensor) -> i64 {
    x.size()[1]
}
