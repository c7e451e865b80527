//! Attention shared by every architecture: the KV cache, masks and positions, and the
//! scaled-dot-product core, with the options Gemma 2 needs (a query scale of its own,
//! tanh soft-capping of the scores, sliding windows on some layers).
//!
//! Sequences are left-padded. A `valid` mask (1 = real token) travels with every forward;
//! positions count only real tokens, so a padded row sees the same positions as it would
//! unpadded (the rule `transformers` uses in generation). Every query may attend to itself
//! even when it is padding, so no softmax row is empty and padding never produces NaN.

use super::kv_cache::KvCache;
use tch::{Kind, Tensor};

/// How one layer attends, beyond the plain causal softmax(q k^T / sqrt(d)) v.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct AttendOptions {
    /// The score scale (default 1 / sqrt(head_dim)).
    pub scale: Option<f64>,
    /// Scores become cap * tanh(score / cap) before the mask and softmax (Gemma 2).
    pub softcap: Option<f64>,
    /// A query sees only the keys less than this many slots before it (itself included).
    pub window: Option<i64>,
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
    /// The mask of the last window asked for, kept for the next layer with that window.
    windowed: Option<(i64, Tensor)>,
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
                windowed: None,
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
                windowed: None,
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
            windowed: None,
        }
    }

    /// Attention of one layer, with the layer's options (scale, soft-cap, window).
    /// q: [B, H, T, D]; k, v: [B, H_kv, T, D]. Returns [B, T, H*D].
    pub fn attend(
        &mut self,
        layer: usize,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        dropout: f64,
        options: AttendOptions,
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
        let mask = match options.window {
            Some(window) => Some(self.window_mask(window, k.size()[2])),
            None => self.mask.as_ref().map(Tensor::shallow_clone),
        };
        let out = match options.softcap {
            None => {
                let grouped = q.size()[1] != k.size()[1];
                Tensor::scaled_dot_product_attention(
                    q,
                    &k,
                    &v,
                    mask.as_ref(),
                    dropout,
                    self.causal && mask.is_none(),
                    options.scale,
                    grouped,
                )
            }
            Some(cap) => {
                let mask = mask.unwrap_or_else(|| self.base_mask(k.size()[2]));
                capped_attention(q, &k, &v, &mask, dropout, options.scale, cap)
            }
        };
        let (b, h, t, d) = out.size4().expect("attention output is 4-D");
        out.transpose(1, 2).reshape([b, t, h * d])
    }

    /// This step's mask over `keys` keys, spelled out where the fused causal path has none.
    fn base_mask(&self, keys: i64) -> Tensor {
        match &self.mask {
            Some(mask) => mask.shallow_clone(),
            None => {
                let tokens = self.positions.size()[1];
                Tensor::ones([tokens, keys], (Kind::Bool, self.positions.device()))
                    .tril(keys - tokens)
                    .view([1, 1, tokens, keys])
            }
        }
    }

    /// The mask with keys `window` or more slots before the query left out (transformers
    /// counts slots, padding included, as the cache does).
    fn window_mask(&mut self, window: i64, keys: i64) -> Tensor {
        if let Some((w, mask)) = &self.windowed {
            if *w == window {
                return mask.shallow_clone();
            }
        }
        let device = self.positions.device();
        let tokens = self.positions.size()[1];
        let key_slots = Tensor::arange(keys, (Kind::Int64, device)).unsqueeze(0);
        let query_slots =
            Tensor::arange_start(self.past, self.past + tokens, (Kind::Int64, device)).unsqueeze(1);
        let near = key_slots.gt_tensor(&(query_slots - window));
        let mask = self
            .base_mask(keys)
            .logical_and(&near.view([1, 1, tokens, keys]));
        self.windowed = Some((window, mask.shallow_clone()));
        mask
    }

    /// Marks the new tokens as cached; call once after the last layer.
    pub fn finish(self) {
        if let Some(cache) = self.cache {
            cache.len = self.past + self.positions.size()[1];
        }
    }
}

/// softmax(cap * tanh(q k^T scale / cap), masked) v in f32, as transformers' eager
/// attention for Gemma 2 (SDPA cannot cap). Key/value heads are repeated for GQA.
fn capped_attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    mask: &Tensor,
    dropout: f64,
    scale: Option<f64>,
    cap: f64,
) -> Tensor {
    let groups = q.size()[1] / k.size()[1];
    let repeat = |t: &Tensor| {
        if groups > 1 {
            t.repeat_interleave_self_int(groups, 1, None)
        } else {
            t.shallow_clone()
        }
    };
    let (k, v) = (repeat(k), repeat(v));
    let scale = scale.unwrap_or(1.0 / (q.size()[3] as f64).sqrt());
    let scores = q.matmul(&k.transpose(2, 3)) * scale;
    let scores = (scores / cap).tanh() * cap;
    let scores = scores.masked_fill(&mask.logical_not(), f64::NEG_INFINITY);
    let mut probs = scores.softmax(-1, Kind::Float).to_kind(q.kind());
    if dropout > 0.0 {
        probs = probs.dropout(dropout, true);
    }
    probs.matmul(&v)
}
