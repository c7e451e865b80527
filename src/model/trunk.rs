//! What every rotary backbone (Llama family, GPT-NeoX, Gemma 2) holds besides its blocks
//! and final norm: the token embedding, the rope tables and its resolved config.

use super::config::ModelConfig;
use super::layers::init;
use super::lora::{Share, Tensors};
use super::rope::{RopeTables, Rotation};
use tch::{nn, Tensor};

pub struct Trunk {
    pub embed: Tensor,
    rope: RopeTables,
    pub config: ModelConfig,
}

impl Trunk {
    /// The embedding `name` under `p` ([vocab, hidden]) and the config's rope tables.
    /// Backbones call it after creating their blocks, the order their variables (and a
    /// seeded random init) have always had.
    pub fn new(p: &nn::Path, name: &str, config: &ModelConfig) -> Self {
        let rope = config
            .rope
            .as_ref()
            .expect("rotary backbones have a rope")
            .tables(config.max_positions, p.device());
        Trunk {
            embed: (p / name).var("weight", &[config.vocab_size, config.hidden_size], init()),
            rope,
            config: config.clone(),
        }
    }

    /// The token embeddings of `ids` [B, T] -> [B, T, hidden].
    pub fn lookup(&self, ids: &Tensor) -> Tensor {
        Tensor::embedding(&self.embed, ids, -1, false, false)
    }

    /// The rotation of one forward's positions, in the model's dtype.
    pub fn rotation(&self, positions: &Tensor) -> Rotation {
        self.rope.at(positions, self.embed.kind())
    }
}

impl Share for Trunk {
    fn share(&self, t: &Tensors) -> Self {
        Trunk {
            embed: t.get(&self.embed),
            rope: self.rope.share(t),
            config: self.config.clone(),
        }
    }
}
