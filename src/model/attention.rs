//! Attention shared by both architectures: the KV cache, masks and positions, and the
//! scaled-dot-product core.
//!
//! Sequences are left-padded. A `valid` mask (1 = real token) travels with every forward;
//! positions count only real tokens, so a padded row sees the same positions as it would
//! unpadded (the rule `transformers` uses in generation). Every query may attend to itself
//! even when it is padding, so no softmax row is empty and padding never produces NaN.

use super::config::ModelConfig;
use tch::{Device, Kind, Tensor};

/// Preallocated keys and values for every layer, owned by the caller (a generator keeps
/// one across batches) and passed into each forward.
pub struct KvCache {
    keys: Vec<Tensor>,
    values: Vec<Tensor>,
    /// [batch, capacity] bool: which cached slots hold real tokens.
    valid: Tensor,
    /// [batch] i64: the position the next real token of each row will take.
    next_pos: Tensor,
    len: i64,
}

impl KvCache {
    /// Room for `capacity` tokens (prompt + generated) per row.
    pub fn new(
        config: &ModelConfig,
        batch: i64,
        capacity: i64,
        kind: Kind,
        device: Device,
    ) -> Self {
        let shape = [batch, config.num_kv_heads, capacity, config.head_dim];
        let alloc = || {
            (0..config.num_layers)
                .map(|_| Tensor::zeros(shape, (kind, device)))
                .collect()
        };
        KvCache {
            keys: alloc(),
            values: alloc(),
            valid: Tensor::zeros([batch, capacity], (Kind::Bool, device)),
            next_pos: Tensor::zeros([batch], (Kind::Int64, device)),
            len: 0,
        }
    }

    /// Forget the cached tokens, keeping the memory.
    pub fn reset(&mut self) {
        self.len = 0;
        let _ = self.valid.fill_(0);
        let _ = self.next_pos.fill_(0);
    }

    pub fn len(&self) -> i64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn batch(&self) -> i64 {
        self.valid.size()[0]
    }

    pub fn capacity(&self) -> i64 {
        self.valid.size()[1]
    }

    /// Whether this cache can serve `batch` rows of `tokens` tokens for this model.
    pub fn fits(&self, config: &ModelConfig, batch: i64, tokens: i64, kind: Kind) -> bool {
        self.batch() == batch
            && self.capacity() >= tokens
            && self.keys.len() as i64 == config.num_layers
            && self.keys[0].size()[1] == config.num_kv_heads
            && self.keys[0].size()[3] == config.head_dim
            && self.keys[0].kind() == kind
    }
}

/// Positions and the attention mask of one forward, computed once for all layers.
pub struct Step<'a> {
    /// [batch, tokens] i64 positions of the new tokens.
    pub positions: Tensor,
    /// [batch, 1, tokens, keys] bool, or None when plain causal attention is exact.
    mask: Option<Tensor>,
    causal: bool,
    cache: Option<&'a mut KvCache>,
    past: i64,
}

impl<'a> Step<'a> {
    /// `valid`: [batch, tokens] mask of real tokens, or None when every token is real.
    pub fn new(ids: &Tensor, valid: Option<&Tensor>, cache: Option<&'a mut KvCache>) -> Self {
        let (batch, tokens) = (ids.size()[0], ids.size()[1]);
        let device = ids.device();
        // A batch without padding needs no mask: one host read buys the fused causal kernel.
        let unpadded = valid.is_none_or(|v| v.min().int64_value(&[]) != 0);
        if unpadded && cache.is_none() {
            // Unpadded training batches: the fused causal kernel, no mask tensor.
            let positions = Tensor::arange(tokens, (Kind::Int64, device))
                .unsqueeze(0)
                .expand([batch, tokens], false);
            return Step {
                positions,
                mask: None,
                causal: true,
                cache: None,
                past: 0,
            };
        }
        let valid = match valid {
            Some(v) => v.to_kind(Kind::Bool),
            None => Tensor::ones([batch, tokens], (Kind::Bool, device)),
        };
        let counted = valid.to_kind(Kind::Int64).cumsum(1, Kind::Int64) - 1;
        let Some(cache) = cache else {
            let positions = counted.clamp_min(0);
            let causal = Tensor::ones([tokens, tokens], (Kind::Bool, device)).tril(0);
            let eye = Tensor::eye(tokens, (Kind::Bool, device));
            let mask = causal
                .logical_and(&valid.unsqueeze(1).logical_or(&eye))
                .unsqueeze(1);
            return Step {
                positions,
                mask: Some(mask),
                causal: false,
                cache: None,
                past: 0,
            };
        };
        let past = cache.len;
        assert!(
            past + tokens <= cache.capacity() && batch == cache.batch(),
            "KV cache of {}x{} cannot take {batch}x{tokens} more tokens after {past}",
            cache.batch(),
            cache.capacity()
        );
        let positions = (counted + cache.next_pos.unsqueeze(1)).clamp_min(0);
        cache.valid.narrow(1, past, tokens).copy_(&valid);
        let _ = cache
            .next_pos
            .g_add_(&valid.sum_dim_intlist(1, false, Kind::Int64));
        let total = past + tokens;
        let keys = Tensor::arange(total, (Kind::Int64, device)).unsqueeze(0);
        let queries = Tensor::arange_start(past, total, (Kind::Int64, device)).unsqueeze(1);
        let causal = keys.le_tensor(&queries);
        let own = keys.eq_tensor(&queries);
        let mask = causal
            .logical_and(
                &cache
                    .valid
                    .narrow(1, 0, total)
                    .unsqueeze(1)
                    .logical_or(&own),
            )
            .unsqueeze(1);
        Step {
            positions,
            mask: Some(mask),
            causal: false,
            cache: Some(cache),
            past,
        }
    }

    /// Attention of one layer. q: [B, H, T, D]; k, v: [B, H_kv, T, D]. Returns [B, T, H*D].
    pub fn attend(
        &mut self,
        layer: usize,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        dropout: f64,
    ) -> Tensor {
        let (k, v) = match self.cache.as_deref_mut() {
            Some(cache) => {
                let tokens = k.size()[2];
                cache.keys[layer].narrow(2, self.past, tokens).copy_(k);
                cache.values[layer].narrow(2, self.past, tokens).copy_(v);
                let total = self.past + tokens;
                (
                    cache.keys[layer].narrow(2, 0, total),
                    cache.values[layer].narrow(2, 0, total),
                )
            }
            None => (k.shallow_clone(), v.shallow_clone()),
        };
        let grouped = q.size()[1] != k.size()[1];
        let out = Tensor::scaled_dot_product_attention(
            q,
            &k,
            &v,
            self.mask.as_ref(),
            dropout,
            self.causal,
            None,
            grouped,
        );
        let (b, h, t, d) = out.size4().expect("attention output is 4-D");
        out.transpose(1, 2).reshape([b, t, h * d])
    }

    /// Marks the new tokens as cached; call once after the last layer.
    pub fn finish(self) {
        if let Some(cache) = self.cache {
            cache.len = self.past + self.positions.size()[1];
        }
    }
}
