use super::*;
use crate::config::{AssistantTurns, ChatConfig, DataKeys, TemplateKind};
use crate::data::collate_sft;
use crate::data::read_sft;
use tch::{Kind, Tensor};

const SKIP: Truncate = Truncate::Skip;

fn rows(t: &Tensor) -> Vec<Vec<i64>> {
    Vec::<Vec<i64>>::try_from(t).unwrap()
}

fn rows_f32(t: &Tensor) -> Vec<Vec<f32>> {
    assert_eq!(t.kind(), Kind::Float);
    Vec::<Vec<f32>>::try_from(t).unwrap()
}

fn tokenizer() -> Tokenizer {
    let texts: Vec<String> = [
        "Ada lives in the town of Dunford.",
        "The river Avel runs past the mill and into the sea.",
        "Name a river. The Avel is a river.",
        "Bram keeps three goats and a dog in the hills.",
        "What is the capital? The capital is Dunford.",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    Tokenizer::train_bpe(
        &texts,
        300,
        &["<|endoftext|>", "<|system|>", "<|user|>", "<|assistant|>"],
    )
    .unwrap()
}

fn sft(prompt: &str, response: &str) -> SftExample {
    SftExample::new(
        ChatTemplate::builtin().prompt(prompt).unwrap(),
        response.into(),
        None,
    )
}

#[test]
fn tokenize_sft_concatenates_and_skips_over_long() {
    let tok = tokenizer();
    let (eos, user, assistant) = (
        tok.eos_id(),
        tok.token_id("<|user|>"),
        tok.token_id("<|assistant|>"),
    );
    assert_eq!((eos, user, assistant), (0, Some(2), Some(3)));
    let examples = [
        sft("Name a river.", "The Avel."),
        sft(
            "Where does Ada live?",
            "Ada lives in the town of Dunford, past the mill.",
        ),
        sft("Hi", "Hello."),
    ];
    let expected: Vec<SftSequence> = examples
        .iter()
        .map(|e| {
            let prompt = tok.encode(&e.prompt).unwrap();
            let mut ids = prompt.clone();
            ids.extend(tok.encode(&e.response).unwrap());
            ids.push(eos);
            SftSequence::new(ids, prompt.len())
        })
        .collect();
    // The prompt opens with the user marker and ends with the assistant prefix.
    assert_eq!(expected[0].ids[0], 2);
    assert!(expected[0].ids[..expected[0].prompt_len].contains(&3));
    assert_eq!(*expected[0].ids.last().unwrap(), eos);

    let (all, skipped) =
        tokenize_sft(&examples, &tok, &ChatTemplate::builtin(), 1000, SKIP).unwrap();
    assert_eq!((all, skipped), (expected.clone(), Fitted::default()));

    // A limit of exactly the first example's length keeps it (and the shorter third),
    // and skips the longer second one.
    let (l0, l1, l2) = (
        expected[0].ids.len(),
        expected[1].ids.len(),
        expected[2].ids.len(),
    );
    assert!(l1 > l0 && l0 >= l2, "{l0} {l1} {l2}");
    let (kept, skipped) =
        tokenize_sft(&examples, &tok, &ChatTemplate::builtin(), l0, SKIP).unwrap();
    assert_eq!(kept, [expected[0].clone(), expected[2].clone()]);
    assert_eq!(
        skipped,
        Fitted {
            truncated: 0,
            skipped: 1
        }
    );
    let (kept, skipped) = tokenize_sft(&examples, &tok, &ChatTemplate::builtin(), 0, SKIP).unwrap();
    assert_eq!((kept.len(), skipped.skipped), (0, 3));
}

#[test]
fn tokenized_sft_mask_covers_exactly_the_response() {
    let tok = tokenizer();
    let examples = [sft("Name a river.", "The Avel."), sft("Hi", "Hello.")];
    let (seqs, _) = tokenize_sft(&examples, &tok, &ChatTemplate::builtin(), 1000, SKIP).unwrap();
    let batch = collate_sft(&seqs.iter().collect::<Vec<_>>(), tok.pad_id(), false);
    let (ids, targets, mask) = (
        rows(&batch.input_ids),
        rows(&batch.targets),
        rows_f32(&batch.loss_mask),
    );
    for (i, (example, seq)) in examples.iter().zip(&seqs).enumerate() {
        let predicted: Vec<i64> = (0..mask[i].len())
            .filter(|&t| mask[i][t] == 1.0)
            .map(|t| targets[i][t])
            .collect();
        let mut response = tok.encode(&example.response).unwrap();
        response.push(tok.eos_id());
        assert_eq!(predicted, response);
        assert_eq!(ids[i][ids[i].len() - seq.ids.len()..], seq.ids[..]);
    }
    assert_eq!(
        batch.tokens as usize,
        seqs.iter()
            .map(|s| s.ids.len() - s.prompt_len)
            .sum::<usize>()
    );
}

fn ranked(prompt: &str, responses: &[&str]) -> RankedExample {
    RankedExample {
        prompt: ChatTemplate::builtin().prompt(prompt).unwrap(),
        responses: responses.iter().map(|s| s.to_string()).collect(),
        category: None,
    }
}

#[test]
fn tokenize_rm_skips_whole_prompts() {
    let tok = tokenizer();
    let examples = [
        ranked("Name a river.", &["The Avel.", "A river.", "Dunford."]),
        ranked(
            "Hi",
            &[
                "Hello.",
                "The river Avel runs past the mill and into the sea.",
            ],
        ),
    ];
    let (all, skipped) =
        tokenize_rm(&examples, &tok, &ChatTemplate::builtin(), 1000, SKIP).unwrap();
    assert_eq!(skipped, Fitted::default());
    for (group, example) in all.iter().zip(&examples) {
        let prompt = tok.encode(&example.prompt).unwrap();
        assert_eq!(group.prompt_len, prompt.len());
        let expected: Vec<Vec<i64>> = example
            .responses
            .iter()
            .map(|r| {
                let mut ids = prompt.clone();
                ids.extend(tok.encode(r).unwrap());
                ids.push(tok.eos_id());
                ids
            })
            .collect();
        assert_eq!(group.rows, expected);
    }
    let longest_first = all[0].rows.iter().map(Vec::len).max().unwrap();
    let longest_second = all[1].rows.iter().map(Vec::len).max().unwrap();
    assert!(longest_second > longest_first);
    // The second prompt's short response fits, its long one does not: all of it goes.
    assert!(all[1].rows[0].len() <= longest_first);
    let (kept, skipped) = tokenize_rm(
        &examples,
        &tok,
        &ChatTemplate::builtin(),
        longest_first,
        SKIP,
    )
    .unwrap();
    assert_eq!((kept, skipped.skipped), (vec![all[0].clone()], 1));
}

/// The Llama 3 fixture: a tokenizer that puts `<|begin_of_text|>` before any text, and its
/// own chat template, which ends every turn with the EOS `<|eot_id|>`.
fn llama3() -> (Tokenizer, ChatTemplate) {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/chat/llama3");
    let tok = Tokenizer::from_dir(&dir).unwrap();
    let chat = ChatConfig {
        template: TemplateKind::Model,
        file: None,
    };
    let template = ChatTemplate::choose(&chat, &tok, &dir).unwrap();
    (tok, template)
}

fn write(name: &str, content: &str) -> std::path::PathBuf {
    let path =
        std::env::temp_dir().join(format!("rlhf-tokenize-{}-{name}.jsonl", std::process::id()));
    std::fs::write(&path, content).unwrap();
    path
}

/// The tokens a sequence trains on, in order, from its collated loss mask.
fn trained(seq: &SftSequence) -> Vec<i64> {
    let batch = collate_sft(&[seq], -1, false);
    let (targets, mask) = (rows(&batch.targets), rows_f32(&batch.loss_mask));
    (0..mask[0].len())
        .filter(|&t| mask[0][t] == 1.0)
        .map(|t| targets[0][t])
        .collect()
}

#[test]
fn every_assistant_turn_is_trained_with_its_end_of_turn() {
    let (tok, template) = llama3();
    let path = write(
        "turns",
        concat!(
            r#"{"messages": [{"role": "system", "content": "Be brief."}, "#,
            r#"{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello there."}, "#,
            r#"{"role": "user", "content": "Name a river."}, {"role": "assistant", "content": "The Avel."}]}"#,
            "\n"
        ),
    );
    let eot = tok.eos_id();
    assert_eq!(Some(eot), tok.token_id("<|eot_id|>"));
    let encode = |text: &str| tok.encode(text).unwrap();
    let all = read_sft(&path, &template, &DataKeys::default(), AssistantTurns::All).unwrap();
    let last = read_sft(&path, &template, &DataKeys::default(), AssistantTurns::Last).unwrap();
    assert_eq!(
        &all[0].prompt[all[0].earlier_responses[0].clone()],
        "Hello there."
    );
    assert!(last[0].earlier_responses.is_empty());
    let (seqs, _) = tokenize_sft(
        &[all[0].clone(), last[0].clone()],
        &tok,
        &template,
        1000,
        SKIP,
    )
    .unwrap();
    // Encoding at the turn's edges changes no token: the prompt is the template's text
    // encoded whole, which starts with the BOS the template writes.
    for seq in &seqs {
        assert_eq!(seq.ids[..seq.prompt_len], encode(&all[0].prompt)[..]);
        assert_eq!(seq.ids[0], tok.bos_id().unwrap());
    }
    let mut expected = encode("Hello there.");
    expected.push(eot);
    expected.extend(encode("The Avel."));
    expected.push(eot);
    assert_eq!(trained(&seqs[0]), expected);
    let mut only_last = encode("The Avel.");
    only_last.push(eot);
    assert_eq!(trained(&seqs[1]), only_last);
}

#[test]
fn plain_text_is_bos_text_eos_all_trained() {
    let (tok, template) = llama3();
    let example = SftExample::new(String::new(), "A river runs.".into(), None);
    let (seqs, _) = tokenize_sft(&[example], &tok, &template, 1000, SKIP).unwrap();
    let mut ids = vec![tok.bos_id().unwrap()];
    ids.extend(tok.encode("A river runs.").unwrap());
    ids.push(tok.eos_id());
    assert_eq!(seqs[0], SftSequence::new(ids.clone(), 1));
    assert_eq!(trained(&seqs[0]), ids[1..]);
}

#[test]
fn truncation_cuts_the_prompt_start_or_the_end_and_counts() {
    let tok = tokenizer();
    let example = sft("Where does Ada live?", "Ada lives in Dunford.");
    let (full, _) = tokenize_sft(
        std::slice::from_ref(&example),
        &tok,
        &ChatTemplate::builtin(),
        1000,
        SKIP,
    )
    .unwrap();
    let full = &full[0];
    let (n, len) = (full.prompt_len, full.ids.len());
    assert!(n > 3 && len - n > 3, "{n} {len}");
    let fit = |max, truncate| {
        tokenize_sft(
            std::slice::from_ref(&example),
            &tok,
            &ChatTemplate::builtin(),
            max,
            truncate,
        )
        .unwrap()
    };
    // Left: the prompt's first two tokens go (no BOS here), the response stays whole.
    let (left, counts) = fit(len - 2, Truncate::Left);
    assert_eq!(left, [SftSequence::new(full.ids[2..].to_vec(), n - 2)]);
    assert_eq!(
        counts,
        Fitted {
            truncated: 1,
            skipped: 0
        }
    );
    // Right: the response loses its last two tokens (its EOS among them).
    let (right, counts) = fit(len - 2, Truncate::Right);
    assert_eq!(right, [SftSequence::new(full.ids[..len - 2].to_vec(), n)]);
    assert_eq!(counts.truncated, 1);
    assert_eq!(
        fit(len - 2, SKIP).1,
        Fitted {
            truncated: 0,
            skipped: 1
        }
    );
    // Left needs the whole prompt to fit the response; right needs a response token.
    assert_eq!(fit(len - n, Truncate::Left).0[0].prompt_len, 0);
    assert_eq!(fit(len - n - 1, Truncate::Left).1.skipped, 1);
    assert_eq!(fit(n + 1, Truncate::Right).0[0].ids.len(), n + 1);
    assert_eq!(fit(n, Truncate::Right).1.skipped, 1);
    assert_eq!(fit(len, Truncate::Left).1, Fitted::default());
}

#[test]
fn left_truncation_keeps_the_bos_and_moves_earlier_turns() {
    let (tok, _) = llama3();
    let bos = tok.bos_id().unwrap();
    let seq = SftSequence {
        ids: vec![bos, 10, 11, 12, 13, 14, 15, 16],
        prompt_len: 6,
        prompt_spans: vec![2..3, 4..5],
    };
    let (cut, was_cut) = fit_sft(seq.clone(), 6, Truncate::Left, bos_len(&seq.ids, &tok)).unwrap();
    assert!(was_cut);
    // Tokens 10 and 11 go; the span on 11 goes with them, the one on 13 moves back by two.
    assert_eq!(
        cut,
        SftSequence {
            ids: vec![bos, 12, 13, 14, 15, 16],
            prompt_len: 4,
            prompt_spans: std::iter::once(2..3).collect(),
        }
    );
    assert_eq!(bos_len(&[10, bos], &tok), 0);
    // Prompts for generation: the BOS and the end (the generation prompt) stay.
    let ids = vec![bos, 1, 2, 3, 4, 5];
    assert_eq!(
        fit_prompt(ids.clone(), 4, Truncate::Left, 1),
        Some((vec![bos, 3, 4, 5], true))
    );
    assert_eq!(
        fit_prompt(ids.clone(), 6, Truncate::Left, 1),
        Some((ids.clone(), false))
    );
    assert_eq!(fit_prompt(ids.clone(), 4, SKIP, 1), None);
    assert_eq!(fit_prompt(ids, 1, Truncate::Left, 1), None);
}

#[test]
fn ranked_truncation_cuts_every_row_alike() {
    let group = RankedSequences {
        rows: vec![
            vec![1, 2, 3, 4, 9, 9, 0],
            vec![1, 2, 3, 4, 8, 0],
            vec![1, 2, 3, 4, 9, 7, 0],
        ],
        prompt_len: 4,
    };
    let fit = |max, truncate| fit_ranked(group.clone(), max, truncate, 0);
    assert_eq!(
        fit(5, Truncate::Left),
        Some((
            RankedSequences {
                rows: vec![vec![3, 4, 9, 9, 0], vec![3, 4, 8, 0], vec![3, 4, 9, 7, 0]],
                prompt_len: 2,
            },
            true
        ))
    );
    assert_eq!(fit(3, Truncate::Left).unwrap().0.prompt_len, 0);
    assert_eq!(fit(2, Truncate::Left), None);
    assert_eq!(
        fit(6, Truncate::Right).unwrap().0.rows,
        [
            vec![1, 2, 3, 4, 9, 9],
            vec![1, 2, 3, 4, 8, 0],
            vec![1, 2, 3, 4, 9, 7]
        ]
    );
    // Cut to 5 tokens, rows 0 and 2 are the same: they cannot be ranked.
    assert_eq!(fit(5, Truncate::Right), None);
    assert_eq!(fit(4, Truncate::Right), None);
    assert_eq!(fit(6, SKIP), None);
    assert_eq!(fit(7, SKIP), Some((group.clone(), false)));
}
