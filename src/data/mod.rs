//! The data users bring for SFT and the reward model: JSONL readers, tokenization, and
//! collation into left-padded tensors.
//!
//! # Files
//!
//! JSONL: one JSON object per line; blank lines are ignored; a UTF-8 BOM is allowed. Fields
//! other than those below (ids, sources, metadata) are ignored. Every record may carry an
//! optional `"category"` string (absent or `null`: none); evaluation reports by category.
//! Prompts are plain user text: the reader wraps them in the run's chat template
//! ([`ChatTemplate::prompt`](crate::template::ChatTemplate::prompt)), so they must not
//! contain it (with `[chat] template = "none"` they are used as given). Responses never
//! contain the template or an EOS; tokenization appends the EOS. A template that refuses a
//! record (a Jinja `raise_exception`) is an error at that line naming the field.
//!
//! ## SFT demonstrations ([`read_sft`])
//!
//! Either form, per line:
//!
//! ```json
//! {"prompt": "Name a river.", "response": "The Avel.", "category": "open_qa"}
//! {"messages": [{"role": "system", "content": "Be brief."},
//!               {"role": "user", "content": "Name a river."},
//!               {"role": "assistant", "content": "The Avel."}]}
//! ```
//!
//! (a `messages` record is one line in the file). In the `messages` form, roles are
//! `system`, `user` or `assistant`; the last message is the response and must be the
//! assistant's, and every earlier message becomes the templated prompt
//! ([`ChatTemplate::split_conversation`](crate::template::ChatTemplate::split_conversation)),
//! which needs at least one user message. A record may not mix the two forms. The prompt
//! and the response must not be empty or only whitespace.
//!
//! ## Reward-model comparisons ([`read_rm`])
//!
//! Either form, per line:
//!
//! ```json
//! {"prompt": "Name a river.", "responses": ["Dunford.", "The Avel.", "A river."], "ranking": [1, 2, 0]}
//! {"prompt": "Name a river.", "chosen": "The Avel.", "rejected": "Dunford."}
//! ```
//!
//! `ranking` lists indices into `responses`, from the best response to the worst:
//! `ranking[0]` is the index of the best one. Above, the best is `responses[1]`
//! ("The Avel."), then `responses[2]`, and the worst is `responses[0]` ("Dunford."). (It is
//! not the rank of each response.) K, the number of responses, is 2 to 9 and `ranking` is a
//! permutation of `0..K`; ties are not expressible. `chosen`/`rejected` is K = 2 with
//! `chosen` the better. Each prompt yields C(K, 2) comparisons. Responses must not be empty
//! or only whitespace, nor identical to another response of the same record (compared
//! without surrounding whitespace): a ranking between identical texts is meaningless.
//!
//! ## Errors
//!
//! A missing file is [`Error::Io`](crate::Error::Io). Anything wrong inside one is
//! [`Error::Format`](crate::Error::Format) naming the file, the 1-based line (blank lines
//! count) and the field, e.g. ``sft.jsonl: line 7: field `response`: missing``,
//! ``rm.jsonl: line 3: field `ranking`: [0, 0, 2] is not a permutation of 0..3``,
//! ``rm.jsonl: line 4: field `responses[2]`: empty``. A file without any record is an error
//! (`no records`). Reading stops at the first error.
//!
//! ## PPO prompts and pretraining text (read_prompts, read_pretrain)
//!
//! Prompts: JSONL `{"prompt": "...", "category"?}`, templated like SFT prompts. Pretraining
//! text for PPO-ptx: JSONL `{"text": "..."}` when the file ends in `.jsonl`, otherwise plain
//! text with documents separated by blank lines.
//!
//! # Sequences and batches
//!
//! A training sequence is `encode(templated prompt) ++ encode(response) ++ [EOS]`, prompt
//! and response encoded separately so the boundary is exactly where generation starts. The
//! prompt is encoded as the template says
//! ([`ChatTemplate::encode_prompt`](crate::template::ChatTemplate::encode_prompt)): a
//! Jinja template's text as it is, a prompt used as given after the tokenizer's BOS.
//!
//! Over-long rule: a sequence longer than `max_seq_len` tokens is skipped, never truncated
//! (a truncated response would teach the model to stop without EOS); for the reward model,
//! a prompt is skipped whole when any of its K sequences is too long. [`tokenize_sft`] and
//! [`tokenize_rm`] return how many they skipped, for the caller to report.
//!
//! Batches are left-padded, like every sequence in this crate: [`collate_sft`] gives the
//! inputs, their validity mask, the next-token targets and a loss mask over the response
//! and its EOS (optionally the prompt too); [`collate_rm`] puts every row's EOS in the last
//! column, where the reward is read, and lists each prompt's rows best to worst.
//! [`split_holdout`] and [`batches`] draw held-out sets and batch orders from a caller-owned
//! [`Rng`](crate::rng::Rng).

mod batch;
mod jsonl;
mod prompts;
mod rm;
mod sft;

pub use batch::{
    batches, collate_rm, collate_sft, sample_batch, split_holdout, tokenize_rm, tokenize_sft,
    RankedSequences, RmBatch, SftBatch, SftSequence,
};
pub use jsonl::{read_jsonl, JsonlReader, Record};
pub use prompts::{read_pretrain, read_prompts, Prompt};
pub use rm::{read_rm, RankedExample, MAX_K, MIN_K};
pub use sft::{read_sft, SftExample};
