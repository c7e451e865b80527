//! Generation: the KV-cache path against naive full recomputation, EOS handling,
//! determinism under a seed, and reduced precision.

mod common;

use common::*;
use rlhf::device::DType;
use rlhf::generate::{
    cache_shape, generate, generate_each, left_pad, prompt_streams, GenerateOptions, Generation,
};
use rlhf::model::{Head, KvCache, Model};
use rlhf::rng::Rng;
use rlhf::sampling::Sampling;
use tch::{Device, Kind, Tensor};

/// Ragged prompts: left padding differs per row.
fn prompts() -> Vec<Vec<i64>> {
    vec![
        vec![5, 17],
        vec![40, 2, 33, 8, 61],
        vec![9, 9, 12, 70, 3, 44, 21],
    ]
}

fn options(eos: Option<i64>) -> GenerateOptions {
    GenerateOptions {
        sampling: Sampling {
            temperature: 0.9,
            top_k: 40,
            top_p: 0.95,
            greedy: false,
        },
        max_new_tokens: 10,
        eos_token_ids: eos.into_iter().collect(),
        pad_token_id: 0,
        static_batch: false,
    }
}

fn run(model: &Model, opts: &GenerateOptions, seed: u64) -> Generation {
    let (rows, capacity) = cache_shape(&prompts(), opts.max_new_tokens, 3);
    run_in(model, opts, seed, &mut model.new_cache(rows, capacity))
}

fn run_in(model: &Model, opts: &GenerateOptions, seed: u64, cache: &mut KvCache) -> Generation {
    let count = prompts().len();
    generate(
        model,
        cache,
        &prompts(),
        opts,
        &mut prompt_streams(seed, 0, count),
    )
    .unwrap()
}

/// The same sampling without a cache: every step re-runs the whole (re-padded) sequence.
fn naive(model: &Model, opts: &GenerateOptions, seed: u64) -> (Vec<Vec<i64>>, Vec<Vec<f64>>) {
    let rows = prompts().len();
    // Row r's t-th token takes the t-th draw of prompt r's own stream.
    let mut streams = prompt_streams(seed, 0, rows);
    let mut noise = vec![0f32; opts.max_new_tokens as usize * rows];
    for (r, stream) in streams.iter_mut().enumerate() {
        for t in 0..opts.max_new_tokens as usize {
            noise[t * rows + r] = stream.uniform() as f32;
        }
    }
    let mut seqs = prompts();
    let (mut tokens, mut logprobs) = (vec![vec![]; rows], vec![vec![]; rows]);
    let mut done = vec![false; rows];
    for t in 0..opts.max_new_tokens as usize {
        let (ids, mask) = left_pad(&seqs, 0);
        let hidden = tch::no_grad(|| model.forward(&ids, Some(&mask), None, false));
        let logits = model.logits(&hidden.select(1, ids.size()[1] - 1));
        let u = Tensor::from_slice(&noise[t * rows..(t + 1) * rows]);
        let (next, lp) = opts.sampling.sample(&logits, &u);
        for r in 0..rows {
            if done[r] {
                continue;
            }
            let tok = next.int64_value(&[r as i64]);
            tokens[r].push(tok);
            logprobs[r].push(lp.double_value(&[r as i64]));
            seqs[r].push(tok);
            done[r] = opts.eos_token_ids.contains(&tok);
        }
        if done.iter().all(|&d| d) {
            break;
        }
    }
    (tokens, logprobs)
}

/// The engine against [`naive`]: all prompts in one batch; fewer rows than prompts, so
/// rows are refilled; and caches with the fewest columns, which must shift them left.
fn check_against_naive(model: &Model, opts: &GenerateOptions, seed: u64) {
    let (tokens, logprobs) = naive(model, opts, seed);
    let least = 7 + opts.max_new_tokens;
    for (rows, columns) in [(3, least), (2, least), (1, least), (2, 2 * least)] {
        let out = run_in(model, opts, seed, &mut model.new_cache(rows, columns));
        for (r, (want_tokens, want_lp)) in tokens.iter().zip(&logprobs).enumerate() {
            let r = r as i64;
            let n = want_tokens.len() as i64;
            let got = Vec::<i64>::try_from(out.tokens.get(r).narrow(0, 0, n)).unwrap();
            assert_eq!(&got, want_tokens, "{rows} rows x {columns}: row {r}");
            let mask = Vec::<bool>::try_from(out.mask.get(r)).unwrap();
            assert!(
                mask.iter().take(n as usize).all(|&m| m)
                    && mask.iter().skip(n as usize).all(|&m| !m),
                "row {r} mask {mask:?}"
            );
            let lp =
                Vec::<f64>::try_from(out.logprobs.get(r).narrow(0, 0, n).to_kind(Kind::Double))
                    .unwrap();
            for (a, b) in lp.iter().zip(want_lp) {
                assert!((a - b).abs() < 1e-5, "row {r}: logprob {a} vs {b}");
            }
        }
    }
}

#[test]
fn kv_cache_matches_full_recomputation_with_left_padding() {
    for name in ["gpt2-tiny", "llama-tiny", "qwen2-tiny"] {
        let model = load(name, Head::LanguageModel);
        check_against_naive(&model, &options(None), 7);
    }
}

#[test]
fn rows_stop_at_eos_and_are_padded_after() {
    let model = load("llama-tiny", Head::LanguageModel);
    // Make the token that row 1 samples at step 3 the EOS, so that row stops early.
    let free = run(&model, &options(None), 11);
    let eos = free.tokens.int64_value(&[1, 3]);
    let opts = options(Some(eos));
    check_against_naive(&model, &opts, 11);
    let out = run(&model, &opts, 11);
    let row: Vec<i64> = Vec::try_from(out.tokens.get(1)).unwrap();
    let first = row.iter().position(|&t| t == eos).unwrap();
    assert!(first <= 3);
    assert!(
        row[first + 1..].iter().all(|&t| t == 0),
        "padding after EOS: {row:?}"
    );
    let lp: Vec<f64> = Vec::try_from(out.logprobs.get(1).to_kind(Kind::Double)).unwrap();
    assert!(lp[first + 1..].iter().all(|&x| x == 0.0));
}

/// With several EOS ids (Llama 3's `<|eot_id|>` and `<|end_of_text|>`), a row stops at
/// whichever it samples first.
#[test]
fn rows_stop_at_any_of_several_eos_ids() {
    let model = load("llama-tiny", Head::LanguageModel);
    let free = run(&model, &options(None), 11);
    let (row0, row2) = (
        free.tokens.int64_value(&[0, 2]),
        free.tokens.int64_value(&[2, 4]),
    );
    let mut opts = options(Some(row0));
    opts.eos_token_ids.push(row2);
    check_against_naive(&model, &opts, 11);
    let out = run(&model, &opts, 11);
    // Rows sample as without stops until they stop: row 0 by step 2, row 2 by step 4.
    for (row, by) in [(0, 2), (2, 4)] {
        let tokens: Vec<i64> = Vec::try_from(out.tokens.get(row)).unwrap();
        let first = tokens
            .iter()
            .position(|t| [row0, row2].contains(t))
            .unwrap();
        assert!(first <= by, "row {row}: {tokens:?}");
        assert!(
            tokens[first + 1..].iter().all(|&t| t == 0),
            "row {row}: {tokens:?}"
        );
    }
}

#[test]
fn deterministic_under_a_seed() {
    let model = load("gpt2-tiny", Head::LanguageModel);
    let a = run(&model, &options(None), 3);
    let b = run(&model, &options(None), 3);
    let c = run(&model, &options(None), 4);
    assert!(a.tokens.equal(&b.tokens) && a.logprobs.equal(&b.logprobs));
    assert!(
        !a.tokens.equal(&c.tokens),
        "a different seed should sample differently"
    );
}

#[test]
fn bf16_and_f16_models_generate_close_to_f32() {
    let f32_model = load("llama-tiny", Head::LanguageModel);
    let exp = expected("llama-tiny");
    let reference =
        tch::no_grad(|| f32_model.logits(&f32_model.forward(&exp["input_ids"], None, None, false)));
    for dtype in [DType::Bf16, DType::F16] {
        let (model, _) = Model::load(
            &fixture("llama-tiny"),
            Head::LanguageModel,
            dtype,
            Device::Cpu,
        )
        .unwrap();
        assert_eq!(model.dtype(), dtype);
        let logits =
            tch::no_grad(|| model.logits(&model.forward(&exp["input_ids"], None, None, false)));
        assert_eq!(logits.kind(), dtype.kind());
        let diff = max_abs_diff(&logits.to_kind(Kind::Float), &reference);
        assert!(diff < 0.1, "{dtype:?}: max |logit diff| {diff}");
        let out = run(&model, &options(None), 5);
        assert_eq!(out.tokens.size(), vec![3, 10]);
        assert_eq!(out.logprobs.kind(), Kind::Float);
    }
}

#[test]
fn cache_that_does_not_fit_is_an_error() {
    let model = load("gpt2-tiny", Head::LanguageModel);
    let mut small = model.new_cache(3, 8);
    let err = generate(
        &model,
        &mut small,
        &prompts(),
        &options(None),
        &mut prompt_streams(0, 0, 3),
    )
    .unwrap_err();
    assert!(err.to_string().contains("KV cache of 3x8"), "{err}");
    let mut cache = model.new_cache(3, 20);
    let err = generate(
        &model,
        &mut cache,
        &prompts(),
        &options(None),
        &mut prompt_streams(0, 0, 2),
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("2 random streams for 3 prompts"),
        "{err}"
    );
    let mut with_empty = prompts();
    with_empty[1].clear();
    let err = generate(
        &model,
        &mut cache,
        &with_empty,
        &options(None),
        &mut prompt_streams(0, 0, 3),
    )
    .unwrap_err();
    assert!(err.to_string().contains("prompt 1 has no tokens"), "{err}");
}

/// Each prompt samples from its own stream: the same episodes, token for token, whatever
/// the engine's rows (64 rows for 64 prompts, 7 rows refilled as episodes end, or one at a
/// time), whether the prompts come in one call or in calls of 7, and under static batching.
#[test]
fn episodes_do_not_depend_on_the_batch() {
    let model = load("gpt2-tiny", Head::LanguageModel);
    let prompts = random_prompts(3, 64, 9);
    let opts = sampled_12(vec![95]);
    // Calls of `call` prompts each, on an engine of `rows` rows.
    let episodes = |call: usize, rows: usize, opts: &GenerateOptions| -> Vec<Vec<i64>> {
        let mut out = Vec::new();
        for (c, chunk) in prompts.chunks(call).enumerate() {
            let (rows, columns) = cache_shape(chunk, 12, rows);
            let mut cache = model.new_cache(rows, columns);
            let mut streams = prompt_streams(42, c * call, chunk.len());
            let g = generate(&model, &mut cache, chunk, opts, &mut streams).unwrap();
            out.extend(responses(&g));
        }
        out
    };
    let whole = episodes(64, 64, &opts);
    assert!(whole.iter().any(|e| e.last() == Some(&95)) && whole.iter().any(|e| e.len() == 12));
    assert_eq!(episodes(64, 7, &opts), whole);
    assert_eq!(episodes(64, 1, &opts), whole);
    assert_eq!(episodes(7, 7, &opts), whole);
    assert_eq!(episodes(7, 3, &opts), whole);
    let fixed = GenerateOptions {
        static_batch: true,
        ..opts.clone()
    };
    assert_eq!(episodes(64, 64, &fixed), whole);
    assert_eq!(episodes(64, 7, &fixed), whole);
    // Another seed samples other episodes.
    let (rows, columns) = cache_shape(&prompts, 12, 64);
    let mut cache = model.new_cache(rows, columns);
    let other = generate(
        &model,
        &mut cache,
        &prompts,
        &opts,
        &mut prompt_streams(43, 0, 64),
    )
    .unwrap();
    let first = &responses(&other)[0];
    let n = whole[0].len().min(first.len());
    assert_ne!(first[..n], whole[0][..n]);
}

/// `count` prompts of 1 to `longest` random tokens (ids 1..=90), from `seed`.
fn random_prompts(seed: u64, count: usize, longest: usize) -> Vec<Vec<i64>> {
    let mut rng = Rng::new(seed);
    (0..count)
        .map(|_| {
            (0..1 + rng.below(longest))
                .map(|_| 1 + rng.below(90) as i64)
                .collect()
        })
        .collect()
}

/// Untempered sampling of at most 12 tokens, stopping at `eos`.
fn sampled_12(eos: Vec<i64>) -> GenerateOptions {
    GenerateOptions {
        sampling: Sampling::default(),
        max_new_tokens: 12,
        eos_token_ids: eos,
        pad_token_id: 0,
        static_batch: false,
    }
}

/// Each row's tokens up to its mask's end.
fn responses(g: &Generation) -> Vec<Vec<i64>> {
    let tokens = Vec::<Vec<i64>>::try_from(&g.tokens).unwrap();
    let live = Vec::<Vec<bool>>::try_from(&g.mask).unwrap();
    tokens
        .into_iter()
        .zip(live)
        .map(|(t, m)| t.into_iter().zip(m).filter(|p| p.1).map(|p| p.0).collect())
        .collect()
}

/// Episodes are handed on as they end: each once, equal to its row of the result, shorter
/// ones before longer ones (every row starts at once when the rows hold all prompts).
#[test]
fn episodes_are_handed_on_as_they_end() {
    let model = load("gpt2-tiny", Head::LanguageModel);
    let prompts = random_prompts(5, 20, 6);
    let opts = sampled_12(vec![95, 7, 31]);
    for rows in [20, 6] {
        let (rows, columns) = cache_shape(&prompts, 12, rows);
        let mut cache = model.new_cache(rows, columns);
        let mut handed = Vec::new();
        let g = generate_each(
            &model,
            &mut cache,
            &prompts,
            &opts,
            &mut prompt_streams(9, 0, 20),
            |e| {
                handed.push(e);
                Ok(())
            },
        )
        .unwrap();
        let rows_out = responses(&g);
        let mut seen = [false; 20];
        for e in &handed {
            assert!(!seen[e.index], "episode {} handed on twice", e.index);
            seen[e.index] = true;
            assert_eq!(e.tokens, rows_out[e.index]);
            assert_eq!(e.logprobs.len(), e.tokens.len());
        }
        assert!(seen.iter().all(|&s| s));
        if rows == 20 {
            let lengths: Vec<usize> = handed.iter().map(|e| e.tokens.len()).collect();
            assert!(lengths.windows(2).all(|w| w[0] <= w[1]), "{lengths:?}");
            assert!(lengths[0] < lengths[19], "{lengths:?}");
        }
    }
}

/// With more prompts than rows, prompts are admitted shortest first (so those prefilled
/// together need little padding): one row takes them one at a time, in that order.
#[test]
fn prompts_outnumbering_the_rows_are_admitted_shortest_first() {
    let model = load("gpt2-tiny", Head::LanguageModel);
    let prompts = random_prompts(5, 12, 9);
    let opts = sampled_12(vec![95]);
    let mut cache = model.new_cache(1, 2 * (9 + 12));
    let mut order = Vec::new();
    generate_each(
        &model,
        &mut cache,
        &prompts,
        &opts,
        &mut prompt_streams(9, 0, 12),
        |e| {
            order.push(e.index);
            Ok(())
        },
    )
    .unwrap();
    let lengths: Vec<usize> = order.iter().map(|&i| prompts[i].len()).collect();
    assert!(lengths.windows(2).all(|w| w[0] <= w[1]), "{lengths:?}");
    assert!(lengths[0] < lengths[11], "{lengths:?}");
}
