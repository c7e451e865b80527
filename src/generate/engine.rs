//! The continuous-batching loop behind [`super::generate`]: rows admitted from a queue of
//! prompts, one decode step for all rows at a time, finished rows leaving at once.

use super::batch::{eos_ids, left_pad, Episode, GenerateOptions, Generation};
use crate::model::{KvCache, Model};
use crate::rng::Rng;
use crate::{Error, Result};
use tch::{Device, Kind, Tensor};

/// Refill freed rows once this share of the rows is free (or no prompt is left to wait
/// for): each refill is a prefill forward of its own, so admitting a few rows at a time
/// would cost a forward for little work.
const REFILL_SHARE: i64 = 4;

/// Shift the cache's columns left once this many at its start hold no live row's token:
/// attention reads every column up to the last, so dead columns cost every step.
const SHIFT_AT: i64 = 16;

/// A row of the batch: the prompt it continues and the tokens it has made.
struct Row {
    prompt: usize,
    /// The cache column of its first prompt token.
    start: i64,
    made: i64,
    /// Static batching only: ended, but kept in the batch until the others end.
    done: bool,
}

pub(super) struct Engine<'a> {
    model: &'a Model,
    options: &'a GenerateOptions,
    prompts: &'a [Vec<i64>],
    streams: &'a mut [Rng],
    /// The columns every refilled prompt's prefill fits in: the longest prompt less its
    /// last token (fed by the next decode step). The cache never holds fewer columns while
    /// prompts remain, so a refilled prompt always fits before the shared column.
    lead: i64,
    /// The most rows at once.
    width: i64,
    rows: Vec<Row>,
    /// The order prompts are admitted in: by length when they outnumber the rows, so the
    /// prompts prefilled together need little padding (an episode does not depend on its
    /// batch, up to float rounding: see the module docs of `generate`).
    order: Vec<usize>,
    /// The next place in `order` to admit.
    next: usize,
    /// The refills' prefill cache, allocated at the first refill.
    scratch: Option<KvCache>,
    /// Every prompt's tokens and log-probs, [prompts x max_new_tokens] flat, plus one
    /// trailing slot where the static batch's ended rows write.
    tokens: Tensor,
    logprobs: Tensor,
    lengths: Vec<i64>,
    eos: Tensor,
    device: Device,
}

impl<'a> Engine<'a> {
    pub(super) fn new(
        model: &'a Model,
        options: &'a GenerateOptions,
        prompts: &'a [Vec<i64>],
        streams: &'a mut [Rng],
        rows: i64,
    ) -> Self {
        let device = model.device();
        let slots = prompts.len() as i64 * options.max_new_tokens + 1;
        let mut order: Vec<usize> = (0..prompts.len()).collect();
        if prompts.len() as i64 > rows {
            order.sort_by_key(|&i| prompts[i].len());
        }
        Engine {
            model,
            options,
            prompts,
            streams,
            lead: prompts.iter().map(Vec::len).max().unwrap_or(1) as i64 - 1,
            width: rows.min(prompts.len() as i64),
            rows: Vec::new(),
            order,
            next: 0,
            scratch: None,
            tokens: Tensor::full([slots], options.pad_token_id, (Kind::Int64, device)),
            logprobs: Tensor::zeros([slots], (Kind::Float, device)),
            lengths: vec![0; prompts.len()],
            eos: eos_ids(&options.eos_token_ids, device),
            device,
        }
    }

    /// Generate every prompt's episode, handing each to `on_done` (if any) as it ends.
    pub(super) fn run(
        mut self,
        cache: &mut KvCache,
        mut on_done: Option<&mut dyn FnMut(Episode) -> Result<()>>,
    ) -> Result<Generation> {
        // Each row's next input: its sampled token, or a new row's last prompt token.
        let mut input = Tensor::zeros([0], (Kind::Int64, self.device));
        loop {
            let logits = if self.rows.is_empty() {
                if self.next == self.prompts.len() {
                    break;
                }
                self.start(cache)
            } else {
                if self.admitting() {
                    let last = self.admit(cache);
                    input = Tensor::cat(&[input, last], 0);
                }
                self.make_room(cache)?;
                let hidden = self
                    .model
                    .forward(&input.unsqueeze(1), None, Some(cache), false);
                self.model.logits(&hidden.squeeze_dim(1))
            };
            let uniforms = self.uniforms();
            let (sampled, logprob) = self.options.sampling.sample(&logits, &uniforms);
            let slots = self.slots();
            let _ = self.tokens.index_copy_(0, &slots, &sampled);
            let _ = self
                .logprobs
                .index_copy_(0, &slots, &logprob.to_kind(Kind::Float));
            let ended = self.ended(&sampled)?;
            let mut finished = Vec::new();
            for (row, ended) in self.rows.iter_mut().zip(ended) {
                if row.done {
                    continue;
                }
                row.made += 1;
                if ended || row.made == self.options.max_new_tokens {
                    row.done = true;
                    self.lengths[row.prompt] = row.made;
                    finished.push(row.prompt);
                }
            }
            if let Some(hand_on) = on_done.as_mut() {
                // Rows move, so hand on by prompt index: an order no batch layout changes.
                finished.sort_unstable();
                for prompt in finished {
                    hand_on(self.episode(prompt)?)?;
                }
            }
            input = self.retire(cache, sampled);
        }
        Ok(self.finish())
    }

    /// Whether to admit prompts into a running batch before this step: once enough rows
    /// are free (never under static batching).
    fn admitting(&self) -> bool {
        let left = (self.prompts.len() - self.next) as i64;
        let free = self.width - self.rows.len() as i64;
        !self.options.static_batch
            && left > 0
            && free > 0
            && free >= left.min((self.width / REFILL_SHARE).max(1))
    }

    /// Start an empty batch with the next prompts: prefill them whole, left-padded so they
    /// end at the column after the lead, and return the logits of their first tokens.
    fn start(&mut self, cache: &mut KvCache) -> Tensor {
        let count = (self.width as usize).min(self.prompts.len() - self.next);
        let (ids, valid) = left_pad(&self.upcoming(count), self.options.pad_token_id);
        let width = ids.size()[1];
        cache.reset_rows(count as i64);
        cache.skip_columns(self.lead + 1 - width);
        let hidden = self.model.forward(
            &ids.to_device(self.device),
            Some(&valid.to_device(self.device)),
            Some(cache),
            false,
        );
        self.enter(count, cache.len());
        self.model.logits(&hidden.select(1, width - 1))
    }

    /// Admit the next prompts into the free rows of a running batch: prefill all but their
    /// last tokens on their own, place them in the cache to end at its last column, and
    /// return those last tokens, the new rows' first inputs.
    fn admit(&mut self, cache: &mut KvCache) -> Tensor {
        let count = ((self.width as usize) - self.rows.len()).min(self.prompts.len() - self.next);
        let chosen = self.upcoming(count);
        let heads: Vec<Vec<i64>> = chosen.iter().map(|p| p[..p.len() - 1].to_vec()).collect();
        let last: Vec<i64> = chosen.iter().map(|p| p[p.len() - 1]).collect();
        let (ids, valid) = left_pad(&heads, self.options.pad_token_id);
        let (model, width, lead) = (self.model, self.width, self.lead);
        let scratch = self
            .scratch
            .get_or_insert_with(|| model.new_cache(width, lead));
        scratch.reset_rows(count as i64);
        if ids.size()[1] > 0 {
            let _ = model.forward(
                &ids.to_device(self.device),
                Some(&valid.to_device(self.device)),
                Some(scratch),
                false,
            );
        }
        cache.admit_rows(scratch);
        self.enter(count, cache.len() + 1);
        Tensor::from_slice(&last).to_device(self.device)
    }

    /// The next `count` prompts to admit.
    fn upcoming(&self, count: usize) -> Vec<Vec<i64>> {
        self.order[self.next..self.next + count]
            .iter()
            .map(|&i| self.prompts[i].clone())
            .collect()
    }

    /// Add rows for the next `count` prompts, whose last prompt tokens sit (or will sit) in
    /// the column before `end`.
    fn enter(&mut self, count: usize, end: i64) {
        let order = &self.order[self.next..self.next + count];
        let new = order.iter().map(|&prompt| Row {
            prompt,
            start: end - self.prompts[prompt].len() as i64,
            made: 0,
            done: false,
        });
        self.rows.extend(new);
        self.next += count;
    }

    /// Room for one more column, and no long run of dead columns: drop the columns before
    /// the oldest live row's first token (keeping the lead while prompts remain to be
    /// admitted) when the cache is full or enough of them have piled up.
    fn make_room(&mut self, cache: &mut KvCache) -> Result<()> {
        let keep = if self.next < self.prompts.len() {
            self.lead
        } else {
            0
        };
        let first = self.rows.iter().map(|r| r.start).min().unwrap_or(0);
        let drop = first.min(cache.len() - keep);
        let full = cache.len() == cache.capacity();
        if full && drop <= 0 {
            return Err(Error::Invalid(format!(
                "KV cache of {} columns is full",
                cache.capacity()
            )));
        }
        if full || drop >= SHIFT_AT {
            cache.shift_left(drop);
            for row in &mut self.rows {
                row.start -= drop;
            }
        }
        Ok(())
    }

    /// Each row's uniform for this step: its stream's next draw (1 for an ended row, whose
    /// sample is thrown away).
    fn uniforms(&mut self) -> Tensor {
        let draws: Vec<f32> = self
            .rows
            .iter()
            .map(|row| {
                if self.options.sampling.greedy || row.done {
                    1.0
                } else {
                    self.streams[row.prompt].uniform() as f32
                }
            })
            .collect();
        Tensor::from_slice(&draws).to_device(self.device)
    }

    /// Where each row's sample of this step is kept (an ended row's in the spare slot).
    fn slots(&self) -> Tensor {
        let steps = self.options.max_new_tokens;
        let spare = self.lengths.len() as i64 * steps;
        let slots: Vec<i64> = self
            .rows
            .iter()
            .map(|row| {
                if row.done {
                    spare
                } else {
                    row.prompt as i64 * steps + row.made
                }
            })
            .collect();
        Tensor::from_slice(&slots).to_device(self.device)
    }

    /// Which rows sampled an EOS id at this step.
    fn ended(&self, sampled: &Tensor) -> Result<Vec<bool>> {
        if self.options.eos_token_ids.is_empty() {
            return Ok(vec![false; self.rows.len()]);
        }
        Vec::<bool>::try_from(Tensor::isin(sampled, &self.eos, false, false))
            .map_err(|e| Error::Invalid(format!("reading finished rows: {e}")))
    }

    /// Let ended rows leave (static batching: only once all have ended) and return the
    /// remaining rows' next inputs. Live rows from the end move into the ended rows' places.
    fn retire(&mut self, cache: &mut KvCache, sampled: Tensor) -> Tensor {
        if self.options.static_batch {
            if self.rows.iter().all(|r| r.done) {
                self.rows.clear();
                cache.reset_rows(0);
                return sampled.narrow(0, 0, 0);
            }
            return sampled;
        }
        let live = self.rows.iter().filter(|r| !r.done).count();
        if live == self.rows.len() {
            return sampled;
        }
        let holes: Vec<usize> = (0..live).filter(|&i| self.rows[i].done).collect();
        let movers: Vec<usize> = (live..self.rows.len())
            .filter(|&i| !self.rows[i].done)
            .collect();
        let (mut from, mut to) = (Vec::new(), Vec::new());
        for (&hole, &mover) in holes.iter().zip(&movers) {
            self.rows.swap(hole, mover);
            from.push(mover as i64);
            to.push(hole as i64);
        }
        self.rows.truncate(live);
        let from = Tensor::from_slice(&from).to_device(self.device);
        let to = Tensor::from_slice(&to).to_device(self.device);
        cache.keep_rows(live as i64, &from, &to);
        let moved = sampled.index_select(0, &from);
        sampled.index_copy(0, &to, &moved).narrow(0, 0, live as i64)
    }

    /// The episode of a prompt that has just ended, read back from the output slots.
    fn episode(&self, prompt: usize) -> Result<Episode> {
        let at = prompt as i64 * self.options.max_new_tokens;
        let made = self.lengths[prompt];
        let read = |what: &str, e: tch::TchError| Error::Invalid(format!("reading {what}: {e}"));
        Ok(Episode {
            index: prompt,
            tokens: Vec::<i64>::try_from(self.tokens.narrow(0, at, made))
                .map_err(|e| read("tokens", e))?,
            logprobs: Vec::<f32>::try_from(self.logprobs.narrow(0, at, made))
                .map_err(|e| read("log-probs", e))?,
        })
    }

    /// Every prompt's episode, [prompts, longest episode].
    fn finish(self) -> Generation {
        let steps = self.options.max_new_tokens;
        let prompts = self.lengths.len() as i64;
        let used = self.lengths.iter().copied().max().unwrap_or(0);
        let grid = |t: &Tensor| t.narrow(0, 0, prompts * steps).view([prompts, steps]);
        let lengths = Tensor::from_slice(&self.lengths).to_device(self.device);
        let columns = Tensor::arange(used, (Kind::Int64, self.device)).unsqueeze(0);
        Generation {
            tokens: grid(&self.tokens).narrow(1, 0, used),
            logprobs: grid(&self.logprobs).narrow(1, 0, used),
            mask: columns.lt_tensor(&lengths.unsqueeze(1)),
        }
    }
}
