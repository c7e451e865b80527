//! The KV cache: keys and values of every layer for a batch of rows, in columns shared by
//! all rows. A forward writes its tokens at the column `len` (one more column per decode
//! step, for every row); each row's real tokens are marked in `valid`, so a row may start
//! at any column. The generator moves rows in and out between steps (continuous batching):
//! finished rows leave (live rows move into their places), new rows are admitted at the end with their prompt
//! placed so it ends at `len`, and when the columns run out they all shift left.

use super::config::ModelConfig;
use tch::{Device, Kind, Tensor};

/// Preallocated keys and values for every layer, owned by the caller (a generator keeps
/// one across batches) and passed into each forward.
pub struct KvCache {
    pub(super) keys: Vec<Tensor>,
    pub(super) values: Vec<Tensor>,
    /// [rows, capacity] bool: which cached slots hold real tokens.
    pub(super) valid: Tensor,
    /// [rows] i64: the position the next real token of each row will take.
    pub(super) next_pos: Tensor,
    /// Columns in use (the next token goes at this column).
    pub(super) len: i64,
    /// The whole allocation (keys, values, valid, next_pos): the fields above view its
    /// first rows, the rows served now.
    whole: Box<(Vec<Tensor>, Vec<Tensor>, Tensor, Tensor)>,
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
        let (keys, values): (Vec<Tensor>, Vec<Tensor>) = (alloc(), alloc());
        let valid = Tensor::zeros([batch, capacity], (Kind::Bool, device));
        let next_pos = Tensor::zeros([batch], (Kind::Int64, device));
        let mut cache = KvCache {
            keys: Vec::new(),
            values: Vec::new(),
            valid: valid.shallow_clone(),
            next_pos: next_pos.shallow_clone(),
            len: 0,
            whole: Box::new((keys, values, valid, next_pos)),
        };
        cache.serve(batch);
        cache
    }

    /// Point the served views at the first `rows` allocated rows.
    fn serve(&mut self, rows: i64) {
        let (keys, values, valid, next_pos) = &*self.whole;
        let first = |t: &Tensor| t.narrow(0, 0, rows);
        self.keys = keys.iter().map(first).collect();
        self.values = values.iter().map(first).collect();
        self.valid = first(valid);
        self.next_pos = first(next_pos);
    }

    /// Forget the cached tokens and serve every allocated row again, keeping the memory.
    pub fn reset(&mut self) {
        self.reset_rows(self.allocated_rows());
    }

    /// Forget the cached tokens and serve the first `rows` allocated rows (0 for none,
    /// before [`KvCache::admit_rows`]).
    pub fn reset_rows(&mut self, rows: i64) {
        assert!(
            rows <= self.allocated_rows(),
            "{rows} rows of a smaller cache"
        );
        self.len = 0;
        let _ = self.whole.2.fill_(0);
        let _ = self.whole.3.fill_(0);
        self.serve(rows);
    }

    /// Serve only the first `rows` rows, after copying rows `from` into rows `to` ([n] i64
    /// each): finished rows leave the batch by having live rows from the end moved into
    /// their places, and later steps compute only the rows still generating. Only the
    /// columns in use are copied.
    pub fn keep_rows(&mut self, rows: i64, from: &Tensor, to: &Tensor) {
        let len = self.len;
        let compact = |t: &mut Tensor, dim: i64| {
            if from.numel() > 0 {
                let mut used = t.narrow(dim, 0, len);
                let moved = used.index_select(0, from);
                let _ = used.index_copy_(0, to, &moved);
            }
            *t = t.narrow(0, 0, rows);
        };
        for t in self.keys.iter_mut().chain(self.values.iter_mut()) {
            compact(t, 2);
        }
        compact(&mut self.valid, 1);
        let moved = self.next_pos.index_select(0, from);
        let _ = self.next_pos.index_copy_(0, to, &moved);
        self.next_pos = self.next_pos.narrow(0, 0, rows);
    }

    /// Serve `prompt.batch()` more rows after the served ones, holding the tokens cached in
    /// `prompt` (a cache of the same model, filled from column 0) in the columns that end
    /// at this cache's `len`: the next forward continues them. Needs `len` at least
    /// `prompt.len()` and enough allocated rows.
    pub fn admit_rows(&mut self, prompt: &KvCache) {
        let (first, added, width) = (self.batch(), prompt.batch(), prompt.len);
        assert!(
            first + added <= self.allocated_rows() && width <= self.len,
            "cannot admit {added} rows of {width} tokens into a {}x{} cache at column {}",
            self.allocated_rows(),
            self.capacity(),
            self.len
        );
        self.serve(first + added);
        let rows = |t: &Tensor| t.narrow(0, first, added);
        let _ = rows(&self.valid).fill_(0);
        let at = self.len - width;
        let pairs = self.keys.iter().zip(&prompt.keys);
        for (to, from) in pairs.chain(self.values.iter().zip(&prompt.values)) {
            rows(to)
                .narrow(2, at, width)
                .copy_(&from.narrow(2, 0, width));
        }
        rows(&self.valid)
            .narrow(1, at, width)
            .copy_(&prompt.valid.narrow(1, 0, width));
        rows(&self.next_pos).copy_(&prompt.next_pos);
    }

    /// Add `columns` columns that hold no token for any row (the left padding of rows to
    /// be admitted).
    pub fn skip_columns(&mut self, columns: i64) {
        assert!(
            self.len + columns <= self.capacity(),
            "KV cache columns exhausted"
        );
        self.len += columns;
    }

    /// Drop the first `columns` columns (which must hold no token of a served row) and move
    /// the others left, making room at the end. Positions are kept per row, so the
    /// continuation is unchanged.
    pub fn shift_left(&mut self, columns: i64) {
        let kept = self.len - columns;
        let shift = |t: &Tensor, dim: i64| {
            let moved = t.narrow(dim, columns, kept).copy();
            t.narrow(dim, 0, kept).copy_(&moved);
        };
        for t in self.keys.iter().chain(&self.values) {
            shift(t, 2);
        }
        // Columns from `kept` on are rewritten, `valid` included, before any read.
        shift(&self.valid, 1);
        self.len = kept;
    }

    pub fn len(&self) -> i64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The rows the cache serves now (fewer than allocated after [`KvCache::keep_rows`]).
    pub fn batch(&self) -> i64 {
        self.valid.size()[0]
    }

    /// The rows it can serve at most.
    pub fn allocated_rows(&self) -> i64 {
        self.whole.2.size()[0]
    }

    pub fn capacity(&self) -> i64 {
        self.valid.size()[1]
    }

    /// Whether this cache holds keys and values of this model's layout and dtype.
    pub fn suits(&self, config: &ModelConfig, kind: Kind) -> bool {
        let keys = &self.whole.0;
        keys.len() as i64 == config.num_layers
            && keys[0].size()[1] == config.num_kv_heads
            && keys[0].size()[3] == config.head_dim
            && keys[0].kind() == kind
    }

    /// Whether this cache (reset) can serve `batch` rows of `tokens` tokens for this model.
    pub fn fits(&self, config: &ModelConfig, batch: i64, tokens: i64, kind: Kind) -> bool {
        self.allocated_rows() == batch && self.capacity() >= tokens && self.suits(config, kind)
    }
}
