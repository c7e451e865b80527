//! Llama: rotary positions, RMSNorm, SwiGLU MLP, grouped-query attention. The same file
//! serves Qwen2 (biases on q/k/v) and Mistral (no sliding window) through the config.
// `x = x + f(x)`, not `x += f(x)`: Tensor's `+=` adds in place and would clobber the
// residual stream that autograd saved for the backward pass.
#![allow(clippy::assign_op_pattern)]

use super::attention::Step;
use super::config::ModelConfig;
use tch::{nn, Kind, Tensor};

struct Linear {
    weight: Tensor,
    bias: Option<Tensor>,
}

impl Linear {
    fn new(p: nn::Path, inputs: i64, outputs: i64, bias: bool) -> Self {
        let init = nn::Init::Randn {
            mean: 0.0,
            stdev: 0.02,
        };
        Linear {
            weight: p.var("weight", &[outputs, inputs], init),
            bias: bias.then(|| p.zeros("bias", &[outputs])),
        }
    }

    fn forward(&self, x: &Tensor) -> Tensor {
        x.linear(&self.weight, self.bias.as_ref())
    }
}

struct RmsNorm {
    weight: Tensor,
    eps: f64,
}

impl RmsNorm {
    fn new(p: nn::Path, dim: i64, eps: f64) -> Self {
        RmsNorm {
            weight: p.ones("weight", &[dim]),
            eps,
        }
    }

    /// Normalises in f32 whatever the model dtype, as `transformers` does.
    fn forward(&self, x: &Tensor) -> Tensor {
        let dim = self.weight.size()[0];
        if x.kind() == Kind::Float {
            return x.rms_norm([dim], Some(&self.weight), self.eps);
        }
        let normed = x
            .to_kind(Kind::Float)
            .rms_norm([dim], None::<Tensor>, self.eps);
        normed.to_kind(x.kind()) * &self.weight
    }
}

struct Block {
    input_norm: RmsNorm,
    q: Linear,
    k: Linear,
    v: Linear,
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
    /// [max_positions, head_dim] cos and sin tables, rotate-half layout.
    cos: Tensor,
    sin: Tensor,
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
                Block {
                    input_norm: RmsNorm::new(&b / "input_layernorm", d, config.norm_eps),
                    q: Linear::new(&attn / "q_proj", d, q_out, config.qkv_bias),
                    k: Linear::new(&attn / "k_proj", d, kv_out, config.qkv_bias),
                    v: Linear::new(&attn / "v_proj", d, kv_out, config.qkv_bias),
                    o: Linear::new(&attn / "o_proj", q_out, d, config.out_bias),
                    post_norm: RmsNorm::new(&b / "post_attention_layernorm", d, config.norm_eps),
                    gate: Linear::new(&mlp / "gate_proj", d, ff, config.mlp_bias),
                    up: Linear::new(&mlp / "up_proj", d, ff, config.mlp_bias),
                    down: Linear::new(&mlp / "down_proj", ff, d, config.mlp_bias),
                }
            })
            .collect();
        let (cos, sin) = rope_tables(config, p.device());
        Llama {
            embed: (&p / "embed_tokens").var(
                "weight",
                &[config.vocab_size, d],
                nn::Init::Randn {
                    mean: 0.0,
                    stdev: 0.02,
                },
            ),
            blocks,
            norm: RmsNorm::new(&p / "norm", d, config.norm_eps),
            cos,
            sin,
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
        let (b, t) = (ids.size()[0], ids.size()[1]);
        let kind = self.embed.kind();
        // [B, 1, T, hd] so they broadcast over heads.
        let cos = self
            .cos
            .index_select(0, &step.positions.flatten(0, 1))
            .view([b, 1, t, -1])
            .to_kind(kind);
        let sin = self
            .sin
            .index_select(0, &step.positions.flatten(0, 1))
            .view([b, 1, t, -1])
            .to_kind(kind);
        let rotate = |x: Tensor| {
            let half = x.chunk(2, 3);
            let rotated = Tensor::cat(&[half[1].neg(), half[0].shallow_clone()], 3);
            x * &cos + rotated * &sin
        };
        let attn_p = if train { c.attn_dropout } else { 0.0 };
        let mut x = Tensor::embedding(&self.embed, ids, -1, false, false);
        for (i, block) in self.blocks.iter().enumerate() {
            let h = block.input_norm.forward(&x);
            let heads = |t: Tensor, n: i64| t.view([b, t_len(&t), n, c.head_dim]).transpose(1, 2);
            let q = rotate(heads(block.q.forward(&h), c.num_heads));
            let k = rotate(heads(block.k.forward(&h), c.num_kv_heads));
            let v = heads(block.v.forward(&h), c.num_kv_heads);
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

/// cos/sin of position * theta^(-2i/hd), duplicated across the two halves.
fn rope_tables(config: &ModelConfig, device: tch::Device) -> (Tensor, Tensor) {
    let hd = config.head_dim;
    let exponents = Tensor::arange_start_step(0, hd, 2, (Kind::Double, device)) / hd as f64;
    let inv_freq = Tensor::from(config.rope_theta)
        .to_device(device)
        .pow(&exponents)
        .reciprocal();
    let positions = Tensor::arange(config.max_positions, (Kind::Double, device));
    let angles = positions.outer(&inv_freq);
    let angles = Tensor::cat(&[&angles, &angles], 1);
    (
        angles.cos().to_kind(Kind::Float),
        angles.sin().to_kind(Kind::Float),
    )
}
