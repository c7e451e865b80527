//! GPT-2: learned positions, pre-LayerNorm blocks, GELU MLP, tied input/output embeddings.
//! Weights keep the Hugging Face names and shapes (Conv1D: [in, out]) so checkpoints map 1:1.
// `x + f(x)`, never `x += f(x)`: Tensor's `+=` adds in place and would clobber the
// residual stream that autograd saved for the backward pass.

use super::attention::{AttendOptions, Step};
use super::blocks::Blocks;
use super::config::ModelConfig;
use super::layers::{activate, dropout, init, LayerNorm};
use super::lora::{Adapter, LoraPlan};
use super::lora::{Share, Tensors};
use super::rope::Rotation;
use tch::{nn, Tensor};

/// HF's Conv1D: y = x W + b with W stored as [in, out], plus a LoRA adapter where the plan
/// targets the layer (`peft`'s `fan_in_fan_out`: the adapter keeps nn.Linear's layout).
struct Conv1D {
    weight: Tensor,
    bias: Tensor,
    adapter: Option<Adapter>,
}

impl Conv1D {
    fn new(p: nn::Path, inputs: i64, outputs: i64, lora: Option<&LoraPlan>) -> Self {
        Conv1D {
            weight: p.var("weight", &[inputs, outputs], init()),
            bias: p.zeros("bias", &[outputs]),
            adapter: Adapter::attach(&p, inputs, outputs, lora),
        }
    }

    fn forward(&self, x: &Tensor) -> Tensor {
        let y = x.matmul(&self.weight) + &self.bias;
        match self.adapter.as_ref().and_then(|a| a.forward(x)) {
            Some(update) => y + update,
            None => y,
        }
    }
}

struct Block {
    ln_1: LayerNorm,
    c_attn: Conv1D,
    c_proj: Conv1D,
    ln_2: LayerNorm,
    c_fc: Conv1D,
    mlp_proj: Conv1D,
}

pub struct Gpt2 {
    wte: Tensor,
    wpe: Tensor,
    blocks: Vec<Block>,
    ln_f: LayerNorm,
    config: ModelConfig,
}

impl Gpt2 {
    /// Creates the variables under `p` (the `transformer.` prefix) with HF names.
    pub fn new(p: nn::Path, config: &ModelConfig, lora: Option<&LoraPlan>) -> Self {
        let d = config.hidden_size;
        let h = &p / "h";
        let blocks = (0..config.num_layers)
            .map(|i| {
                let b = &h / i;
                Block {
                    ln_1: LayerNorm::new(&b / "ln_1", d, config.norm_eps),
                    c_attn: Conv1D::new(&b / "attn" / "c_attn", d, 3 * d, lora),
                    c_proj: Conv1D::new(&b / "attn" / "c_proj", d, d, lora),
                    ln_2: LayerNorm::new(&b / "ln_2", d, config.norm_eps),
                    c_fc: Conv1D::new(&b / "mlp" / "c_fc", d, config.intermediate_size, lora),
                    mlp_proj: Conv1D::new(&b / "mlp" / "c_proj", config.intermediate_size, d, lora),
                }
            })
            .collect();
        Gpt2 {
            wte: (&p / "wte").var("weight", &[config.vocab_size, d], init()),
            wpe: (&p / "wpe").var(
                "weight",
                &[config.max_positions, d],
                nn::Init::Randn {
                    mean: 0.0,
                    stdev: 0.01,
                },
            ),
            blocks,
            ln_f: LayerNorm::new(&p / "ln_f", d, config.norm_eps),
            config: config.clone(),
        }
    }

    pub fn config_mut(&mut self) -> &mut ModelConfig {
        &mut self.config
    }

    /// The input embedding, which is also the (tied) output projection.
    pub fn embedding(&self) -> &Tensor {
        &self.wte
    }
}

impl Blocks for Gpt2 {
    fn embed(&self, ids: &Tensor, step: &Step, train: bool) -> (Tensor, Option<Rotation>) {
        let embedded = Tensor::embedding(&self.wte, ids, -1, false, false)
            + Tensor::embedding(&self.wpe, &step.positions, -1, false, false);
        (dropout(embedded, self.config.embd_dropout, train), None)
    }

    fn block(
        &self,
        i: usize,
        x: &Tensor,
        _rotation: Option<&Rotation>,
        step: &mut Step,
        train: bool,
    ) -> Tensor {
        let (c, block) = (&self.config, &self.blocks[i]);
        let drop = |x: Tensor| dropout(x, c.resid_dropout, train);
        let attn_p = if train { c.attn_dropout } else { 0.0 };
        let (b, t) = (x.size()[0], x.size()[1]);
        let heads_shape = [b, t, c.num_heads, c.head_dim];
        let qkv = block.c_attn.forward(&block.ln_1.forward(x));
        let parts = qkv.split(c.hidden_size, 2);
        let heads = |t: &Tensor| t.view(heads_shape).transpose(1, 2);
        let attn = step.attend(
            i,
            &heads(&parts[0]),
            &heads(&parts[1]),
            &heads(&parts[2]),
            attn_p,
            AttendOptions::default(),
        );
        let x = x + drop(block.c_proj.forward(&attn));
        let hidden = block.c_fc.forward(&block.ln_2.forward(&x));
        let hidden = activate(&hidden, c.activation);
        x + drop(block.mlp_proj.forward(&hidden))
    }

    fn final_norm(&self, x: &Tensor) -> Tensor {
        self.ln_f.forward(x)
    }

    fn depth(&self) -> usize {
        self.blocks.len()
    }
}

impl Share for Conv1D {
    fn share(&self, t: &Tensors) -> Self {
        Conv1D {
            weight: t.get(&self.weight),
            bias: t.get(&self.bias),
            adapter: self.adapter.as_ref().map(|a| a.share(t)),
        }
    }
}

impl Share for Block {
    fn share(&self, t: &Tensors) -> Self {
        Block {
            ln_1: self.ln_1.share(t),
            c_attn: self.c_attn.share(t),
            c_proj: self.c_proj.share(t),
            ln_2: self.ln_2.share(t),
            c_fc: self.c_fc.share(t),
            mlp_proj: self.mlp_proj.share(t),
        }
    }
}

impl Share for Gpt2 {
    fn share(&self, t: &Tensors) -> Self {
        Gpt2 {
            wte: t.get(&self.wte),
            wpe: t.get(&self.wpe),
            blocks: self.blocks.share(t),
            ln_f: self.ln_f.share(t),
            config: self.config.clone(),
        }
    }
}
