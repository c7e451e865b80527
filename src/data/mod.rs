//! The data users bring for SFT, the reward model and PPO: JSONL readers, tokenization
//! with the over-long rule, and collation into left-padded tensors.
//!
//! # Files
//!
//! JSONL: one JSON object per line; blank lines are ignored; a UTF-8 BOM is allowed. Fields
//! other than those below (ids, sources, metadata) are ignored. Every record may carry an
//! optional `"category"` string (absent or `null`: none); evaluation reports by category.
//! A stage's `keys` ([`DataKeys`](crate::config::DataKeys)) reads any field below from
//! another key of the user's records; errors then name the user's key.
//!
//! Values come in TRL's two forms. Standard: a string. Conversational: a list of messages
//! `[{"role": "system" | "user" | "assistant", "content": "..."}, ...]`. A string prompt is
//! one user message; the reader renders a prompt's messages with the run's chat template
//! and its generation prompt ([`ChatTemplate::render`](crate::template::ChatTemplate::render)),
//! so string prompts must not contain the template (with `[chat] template = "none"` a
//! string prompt is used as given, and conversations are refused). A prompt given as
//! messages needs a user message and must not end with the assistant's. A response
//! (`response`, `completion`, `chosen`, `rejected`, `responses[i]`) is a string or a list of
//! exactly one assistant message; it never contains the template or an EOS (tokenization
//! appends the EOS). Texts must not be empty or only whitespace. A template that refuses a
//! conversation (a Jinja `raise_exception`) is an error at that line naming the field.
//!
//! ## SFT demonstrations ([`read_sft`])
//!
//! One form per line:
//!
//! ```json
//! {"prompt": "Name a river.", "response": "The Avel.", "category": "open_qa"}
//! {"prompt": [{"role": "user", "content": "Name a river."}],
//!  "completion": [{"role": "assistant", "content": "The Avel."}]}
//! {"messages": [{"role": "system", "content": "Be brief."},
//!               {"role": "user", "content": "Name a river."},
//!               {"role": "assistant", "content": "The Avel."}]}
//! {"text": "The Avel runs past the mill and into the sea."}
//! ```
//!
//! (each record is one line in the file). `completion` is TRL's name for `response`; a
//! record gives one of them. In the `messages` form the last message is the response and
//! must be the assistant's; the earlier messages become the templated prompt
//! ([`ChatTemplate::split_conversation`](crate::template::ChatTemplate::split_conversation)),
//! which needs a user message. With `assistant_turns = "all"` (the default) every earlier
//! assistant message after the first user message is trained too, in the context of the
//! turns before it ([`SftExample::earlier_responses`]); the template must render each turn
//! right after the conversation before it (a template that rewrites past turns is an error
//! that says to set `assistant_turns = "last"`). The prompt/completion form trains the
//! completion only, as TRL does. A `text` record is plain text: the tokenizer's BOS, the
//! text and EOS, every token trained.
//!
//! ## Reward-model comparisons ([`read_rm`])
//!
//! One form per line:
//!
//! ```json
//! {"prompt": "Name a river.", "responses": ["Dunford.", "The Avel.", "A river."], "ranking": [1, 2, 0]}
//! {"prompt": "Name a river.", "chosen": "The Avel.", "rejected": "Dunford."}
//! {"chosen": [{"role": "user", "content": "Name a river."}, {"role": "assistant", "content": "The Avel."}],
//!  "rejected": [{"role": "user", "content": "Name a river."}, {"role": "assistant", "content": "Dunford."}]}
//! ```
//!
//! `ranking` lists indices into `responses`, from the best response to the worst:
//! `ranking[0]` is the index of the best one. Above, the best is `responses[1]`
//! ("The Avel."), then `responses[2]`, and the worst is `responses[0]` ("Dunford."). (It is
//! not the rank of each response.) K, the number of responses, is 2 to 9 and `ranking` is a
//! permutation of `0..K`; ties are not expressible. `chosen`/`rejected` is K = 2 with
//! `chosen` the better. Without `prompt` the prompt is implicit, as in TRL: for message
//! lists, the messages both start with (each must then hold one assistant message); for
//! strings, the text both start with, cut back to its last whitespace so no word is split
//! (the whitespace stays with the responses). Each prompt yields C(K, 2) comparisons.
//! Responses must not be identical to another response of the same record (compared
//! without surrounding whitespace): a ranking between identical texts is meaningless.
//!
//! ## PPO prompts and pretraining text ([`read_prompts`], [`read_pretrain`])
//!
//! Prompts: `{"prompt"}` (a string or a list of messages) or `{"messages"}` (a final
//! assistant message, a reference answer, is dropped). Reward plug-ins see the prompt's
//! last user message ([`Prompt::raw`]). Pretraining text for PPO-ptx: JSONL `{"text"}`
//! when the file ends in `.jsonl`, otherwise plain text with documents separated by blank
//! lines.
//!
//! ## Errors
//!
//! A missing file is [`Error::Io`](crate::Error::Io). Anything wrong inside one is
//! [`Error::Format`](crate::Error::Format) naming the file, the 1-based line (blank lines
//! count) and the field, e.g. ``sft.jsonl: line 7: field `response`: missing``,
//! ``rm.jsonl: line 3: field `ranking`: [0, 0, 2] is not a permutation of 0..3``,
//! ``rm.jsonl: line 4: field `responses[2]`: empty``,
//! ``sft.jsonl: line 2: field `messages[1].role`: expected "system", "user" or
//! "assistant", not "bot"``. A file without any record is an error (`no records`). Reading
//! stops at the first error.
//!
//! # Sequences and batches
//!
//! A training sequence is `encode(templated prompt) ++ encode(response) ++ [EOS]`, prompt
//! and response encoded separately so the boundary is exactly where generation starts
//! ([`tokenize_sft`], [`tokenize_rm`]). The prompt is encoded as the template says
//! ([`ChatTemplate::encode_prompt`](crate::template::ChatTemplate::encode_prompt)): a
//! Jinja template's text as it is, a prompt used as given after the tokenizer's BOS.
//!
//! Over-long rule (`truncate`, [`Truncate`](crate::config::Truncate)): a sequence longer
//! than `max_seq_len` tokens is skipped (the default; for the reward model, the prompt with
//! all K responses), cut at the start of the prompt after its BOS (`left`), or cut at the
//! end (`right`, the response loses its EOS). The tokenizers return [`Fitted`]: how many
//! they cut and skipped, for the caller to report. PPO prompts use [`fit_prompt`].
//!
//! Batches are left-padded, like every sequence in this crate: [`collate_sft`] gives the
//! inputs, their validity mask, the next-token targets and a loss mask over the response,
//! its EOS and the earlier trained turns (optionally the whole prompt); [`collate_rm`] puts
//! every row's last token in the last column, where the reward is read, and lists each
//! prompt's rows best to worst. [`split_holdout`] and [`batches`] draw held-out sets and
//! batch orders from a caller-owned [`Rng`](crate::rng::Rng).

mod batch;
mod fields;
mod jsonl;
mod prompts;
mod rm;
mod sft;
mod tokenize;

pub use batch::{
    batches, collate_dpo, collate_rm, collate_sft, sample_batch, split_holdout, DpoBatch, RmBatch,
    SftBatch,
};
pub use jsonl::{read_jsonl, JsonlReader, Record};
pub use prompts::{read_pretrain, read_prompts, Prompt};
pub use rm::{read_rm, RankedExample, MAX_K, MIN_K};
pub use sft::{read_sft, SftExample};
pub use tokenize::{
    bos_len, fit_prompt, tokenize_rm, tokenize_sft, Fitted, RankedSequences, SftSequence,
};
