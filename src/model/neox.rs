//! GPT-NeoX (Pythia): LayerNorm blocks whose attention and MLP both read the block's input
//! (`use_parallel_residual`), one fused QKV projection laid out head by head
//! ([q_h, k_h, v_h] for each head h), rotary embeddings on the leading `rotary_pct` of
//! each head, and an untied output projection named `embed_out`.
// `x + f(x)`, never `x += f(x)`: Tensor's `+=` adds in place and would clobber the
// residual stream that autograd saved for the backward pass.

use super::attention::{AttendOptions, Step};
use super::blocks::Blocks;
use super::config::ModelConfig;
use super::layers::{activate, dropout, LayerNorm, Linear};
use super::lora::LoraPlan;
use super::lora::{Share, Tensors};
use super::rope::Rotation;
use super::trunk::Trunk;
use tch::{nn, Tensor};

struct Block {
    input_norm: LayerNorm,
    qkv: Linear,
    dense: Linear,
    post_norm: LayerNorm,
    up: Linear,
    down: Linear,
}

pub struct NeoX {
    pub(super) trunk: Trunk,
    blocks: Vec<Block>,
    norm: LayerNorm,
}

impl NeoX {
    /// Creates the variables under `p` (the `gpt_neox.` prefix) with HF names.
    pub fn new(p: nn::Path, config: &ModelConfig, lora: Option<&LoraPlan>) -> Self {
        let (d, ff, eps) = (
            config.hidden_size,
            config.intermediate_size,
            config.norm_eps,
        );
        let layers = &p / "layers";
        let blocks = (0..config.num_layers)
            .map(|i| {
                let b = &layers / i;
                let attn = &b / "attention";
                let mlp = &b / "mlp";
                Block {
                    input_norm: LayerNorm::new(&b / "input_layernorm", d, eps),
                    qkv: Linear::new(&attn / "query_key_value", d, 3 * d, config.qkv_bias, lora),
                    dense: Linear::new(&attn / "dense", d, d, config.out_bias, lora),
                    post_norm: LayerNorm::new(&b / "post_attention_layernorm", d, eps),
                    up: Linear::new(&mlp / "dense_h_to_4h", d, ff, true, lora),
                    down: Linear::new(&mlp / "dense_4h_to_h", ff, d, true, lora),
                }
            })
            .collect();
        NeoX {
            trunk: Trunk::new(&p, "embed_in", config),
            blocks,
            norm: LayerNorm::new(&p / "final_layer_norm", d, eps),
        }
    }
}

impl Blocks for NeoX {
    fn embed(&self, ids: &Tensor, step: &Step, train: bool) -> (Tensor, Option<Rotation>) {
        let c = &self.trunk.config;
        (
            dropout(self.trunk.lookup(ids), c.embd_dropout, train),
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
        let (b, t) = (x.size()[0], x.size()[1]);
        let attn_p = if train { c.attn_dropout } else { 0.0 };
        let drop = |x: Tensor| dropout(x, c.resid_dropout, train);
        // [B, T, 3d] -> [B, H, T, 3 hd]: each head's q, k and v sit side by side.
        let qkv = block
            .qkv
            .forward(&block.input_norm.forward(x))
            .view([b, t, c.num_heads, 3 * c.head_dim])
            .transpose(1, 2);
        let qkv = qkv.chunk(3, 3);
        let q = rotation.apply(&qkv[0]);
        let k = rotation.apply(&qkv[1]);
        let attn = drop(block.dense.forward(&step.attend(
            i,
            &q,
            &k,
            &qkv[2],
            attn_p,
            AttendOptions::default(),
        )));
        let mlp = |h: &Tensor| {
            let hidden = activate(&block.up.forward(&block.post_norm.forward(h)), c.activation);
            drop(block.down.forward(&hidden))
        };
        if c.parallel_residual {
            mlp(x) + attn + x
        } else {
            let mid = attn + x;
            mlp(&mid) + mid
        }
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
            qkv: self.qkv.share(t),
            dense: self.dense.share(t),
            post_norm: self.post_norm.share(t),
            up: self.up.share(t),
            down: self.down.share(t),
        }
    }
}

impl Share for NeoX {
    fn share(&self, t: &Tensors) -> Self {
        NeoX {
            trunk: self.trunk.share(t),
            blocks: self.blocks.share(t),
            norm: self.norm.share(t),
        }
    }
}
