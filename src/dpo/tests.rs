use super::*;
use crate::losses::tests::{grad_of as grads, leaf, logsig};

fn objective(pl: bool, loss: DpoLoss, label_smoothing: f64) -> DpoObjective {
    DpoObjective {
        beta: 0.5,
        loss,
        label_smoothing,
        pl,
        sft_coef: 0.0,
    }
}

/// `dpo_loss` with a reference of 0: the log-probs are the log-ratios.
fn loss_of(
    logratios: &Tensor,
    tokens: &Tensor,
    groups: &[Vec<usize>],
    objective: &DpoObjective,
) -> (Tensor, DpoStats) {
    dpo_loss(
        logratios,
        &logratios.zeros_like().detach(),
        tokens,
        groups,
        objective,
    )
}

fn ones(n: usize) -> Tensor {
    Tensor::ones([n as i64], (Kind::Float, tch::Device::Cpu))
}

#[test]
fn plackett_luce_of_one_k3_ranking_by_hand() {
    // Ranking rows 2 > 0 > 1, rewards beta * logratio.
    let lr = [0.4, -1.2, 2.0];
    let (loss, stats) = loss_of(
        &leaf(&lr),
        &ones(3),
        &[vec![2, 0, 1]],
        &objective(true, DpoLoss::Sigmoid, 0.0),
    );
    let r: Vec<f64> = lr.iter().map(|x| 0.5 * x).collect();
    let lse = |xs: &[f64]| xs.iter().map(|x| x.exp()).sum::<f64>().ln();
    let want = -(r[2] - lse(&[r[2], r[0], r[1]])) - (r[0] - lse(&[r[0], r[1]]));
    assert!((stats.loss - want).abs() < 1e-6, "{} vs {want}", stats.loss);
    assert!((loss.double_value(&[]) - want).abs() < 1e-6);
    // The pair figures: (2,0) +0.8, (2,1) +1.6, (0,1) +0.8, all right.
    assert_eq!(stats.pairs, 3);
    assert_eq!(stats.accuracy, 1.0);
    assert!((stats.margin - (0.8 + 1.6 + 0.8) / 3.0).abs() < 1e-6);
    assert!((stats.chosen_reward - (1.0 + 1.0 + 0.2) / 3.0).abs() < 1e-6);
    assert!((stats.rejected_reward - (0.2 - 0.6 - 0.6) / 3.0).abs() < 1e-6);
    assert!((stats.implicit_kl - (0.4 - 1.2 + 2.0) / 3.0).abs() < 1e-6);
}

#[test]
fn plackett_luce_at_k2_is_the_sigmoid_loss_and_weighs_prompts_equally() {
    // Prompt A: rows 0 > 1 (K = 2); prompt B: rows 4 > 2 > 5 > 3 (K = 4).
    let lr = [1.0, 0.2, -0.3, 0.9, 0.1, -2.0];
    let pair = [vec![0, 1]];
    let a = leaf(&lr);
    let (pl, _) = loss_of(&a, &ones(6), &pair, &objective(true, DpoLoss::Sigmoid, 0.0));
    pl.backward();
    let b = leaf(&lr);
    let (sig, _) = loss_of(
        &b,
        &ones(6),
        &pair,
        &objective(false, DpoLoss::Sigmoid, 0.0),
    );
    sig.backward();
    assert!((pl.double_value(&[]) - -logsig(0.5 * 0.8)).abs() < 1e-6);
    assert!((pl.double_value(&[]) - sig.double_value(&[])).abs() < 1e-7);
    for (x, y) in grads(&a).iter().zip(grads(&b)) {
        assert!((x - y).abs() < 1e-7);
    }
    assert!(grads(&a)[0] < 0.0 && grads(&a)[1] > 0.0);

    let both = [vec![0, 1], vec![4, 2, 5, 3]];
    let o = objective(true, DpoLoss::Sigmoid, 0.0);
    let t = leaf(&lr);
    let (loss, stats) = loss_of(&t, &ones(6), &both, &o);
    let (la, _) = loss_of(&t, &ones(6), &both[..1], &o);
    let (lb, _) = loss_of(&t, &ones(6), &both[1..], &o);
    let want = (la.double_value(&[]) + lb.double_value(&[])) / 2.0;
    assert!((loss.double_value(&[]) - want).abs() < 1e-6);
    assert_eq!(stats.pairs, 1 + 6);
    // Padding the K = 2 prompt to the K = 4 width changed nothing: `la` was computed alone.
}

#[test]
fn cdpo_and_ipo_pairs_by_hand() {
    let lr = [0.6, -0.4, 1.5];
    let tokens = Tensor::from_slice(&[3.0f32, 2.0, 5.0]);
    let ranking = [vec![0, 1, 2]];
    let (loss, _) = loss_of(
        &leaf(&lr),
        &tokens,
        &ranking,
        &objective(false, DpoLoss::Sigmoid, 0.2),
    );
    let pairs = [(0, 1), (0, 2), (1, 2)];
    let cdpo = |m: f64| -0.8 * logsig(m) - 0.2 * logsig(-m);
    let want: f64 = pairs
        .iter()
        .map(|&(w, l)| cdpo(0.5 * (lr[w] - lr[l])))
        .sum::<f64>()
        / 3.0;
    assert!((loss.double_value(&[]) - want).abs() < 1e-6);

    let (loss, _) = loss_of(
        &leaf(&lr),
        &tokens,
        &ranking,
        &objective(false, DpoLoss::Ipo, 0.0),
    );
    let len = [3.0, 2.0, 5.0];
    let want: f64 = pairs
        .iter()
        .map(|&(w, l)| (lr[w] / len[w] - lr[l] / len[l] - 1.0 / (2.0 * 0.5)).powi(2))
        .sum::<f64>()
        / 3.0;
    assert!((loss.double_value(&[]) - want).abs() < 1e-6);
}

#[test]
fn the_objective_refuses_what_has_no_meaning() {
    let ok = DpoObjective::default();
    assert!(ok.validate().is_ok());
    let bad = |o: DpoObjective| o.validate().unwrap_err();
    assert!(bad(DpoObjective {
        beta: 0.0,
        ..ok.clone()
    })
    .contains("objective.beta"));
    assert!(bad(DpoObjective {
        label_smoothing: 0.5,
        ..ok.clone()
    })
    .contains("[0, 0.5)"));
    assert!(bad(DpoObjective {
        loss: DpoLoss::Ipo,
        ..ok.clone()
    })
    .contains("pl = false"));
    assert!(bad(DpoObjective {
        label_smoothing: 0.1,
        ..ok.clone()
    })
    .contains("cDPO"));
    let ipo = DpoObjective {
        loss: DpoLoss::Ipo,
        pl: false,
        label_smoothing: 0.1,
        ..ok
    };
    assert!(bad(ipo).contains("cDPO"));
}

#[test]
fn no_rankings_give_a_zero_loss() {
    let (loss, stats) = loss_of(&leaf(&[0.3]), &ones(1), &[], &DpoObjective::default());
    assert_eq!(loss.double_value(&[]), 0.0);
    assert_eq!(stats, DpoStats::default());
}

#[test]
fn sft_coef_adds_the_best_responses_token_mean_nll() {
    // Two rankings: rows 1 > 0 > 2 and 3 > 4; the best rows 1 and 3 have 4 and 2 tokens.
    let logps = [-3.0, -2.0, -5.0, -1.0, -4.0];
    let reference = Tensor::from_slice(&[-2.5f32, -2.5, -4.0, -2.0, -3.0]);
    let tokens = Tensor::from_slice(&[3.0f32, 4.0, 6.0, 2.0, 5.0]);
    let groups = [vec![1, 0, 2], vec![3, 4]];
    let plain = objective(true, DpoLoss::Sigmoid, 0.0);
    let with = DpoObjective {
        sft_coef: 0.7,
        ..plain.clone()
    };
    let a = leaf(&logps);
    let (without, _) = dpo_loss(&a, &reference, &tokens, &groups, &plain);
    let b = leaf(&logps);
    let (loss, stats) = dpo_loss(&b, &reference, &tokens, &groups, &with);
    let nll = (2.0 + 1.0) / (4.0 + 2.0);
    assert!((stats.chosen_nll - nll).abs() < 1e-6);
    assert!((loss.double_value(&[]) - without.double_value(&[]) - 0.7 * nll).abs() < 1e-6);
    // The NLL's gradient reaches the best rows only: -0.7 / 6 each.
    without.backward();
    loss.backward();
    let extra: Vec<f64> = grads(&b)
        .iter()
        .zip(grads(&a))
        .map(|(x, y)| x - y)
        .collect();
    for (row, g) in extra.iter().enumerate() {
        let want = if row == 1 || row == 3 {
            -0.7 / 6.0
        } else {
            0.0
        };
        assert!((g - want).abs() < 1e-6, "row {row}: {g} vs {want}");
    }
}

/// TRL's `DPOTrainer._compute_loss` on fixed logits (scripts/dpo_fixtures.py): the sequence
/// log-probs from the same logits by [`crate::losses::sequence_logps`], then `dpo_loss`
/// with `pl = false` on the pairs, give TRL's loss and reward figures.
#[test]
fn pair_losses_match_trl_dpo_trainer() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/dpo/trl_dpo_losses.json"
    );
    let fixture: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let cases = fixture["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 6);
    let floats = |v: &serde_json::Value| -> Vec<f32> {
        let mut out = Vec::new();
        fn walk(v: &serde_json::Value, out: &mut Vec<f32>) {
            match v {
                serde_json::Value::Array(items) => items.iter().for_each(|i| walk(i, out)),
                other => out.push(other.as_f64().unwrap() as f32),
            }
        }
        walk(v, &mut out);
        out
    };
    for case in cases {
        let ids = Tensor::from_slice(&floats(&case["input_ids"])).to_kind(Kind::Int64);
        let rows = case["input_ids"].as_array().unwrap().len() as i64;
        let ids = ids.view([rows, -1]);
        let t = ids.size()[1];
        let completion = Tensor::from_slice(&floats(&case["completion_mask"])).view([rows, t]);
        let logits = Tensor::from_slice(&floats(&case["logits"])).view([rows, t, -1]);
        // Position i predicts token i + 1, as TRL shifts them.
        let logps = crate::losses::sequence_logps(
            &logits.narrow(1, 0, t - 1),
            &ids.narrow(1, 1, t - 1),
            &completion.narrow(1, 1, t - 1),
        );
        let mut reference = floats(&case["ref_chosen_logps"]);
        reference.extend(floats(&case["ref_rejected_logps"]));
        let reference = Tensor::from_slice(&reference);
        let pairs = rows as usize / 2;
        let groups: Vec<Vec<usize>> = (0..pairs).map(|i| vec![i, pairs + i]).collect();
        let loss = match case["loss_type"].as_str().unwrap() {
            "ipo" => DpoLoss::Ipo,
            // "aot" on one pair is cDPO (see the script).
            _ => DpoLoss::Sigmoid,
        };
        let objective = DpoObjective {
            beta: case["beta"].as_f64().unwrap(),
            loss,
            label_smoothing: case["label_smoothing"].as_f64().unwrap(),
            pl: false,
            sft_coef: 0.0,
        };
        objective.validate().unwrap();
        let tokens = completion.sum_dim_intlist(1, false, Kind::Float);
        let (_, stats) = dpo_loss(&logps, &reference, &tokens, &groups, &objective);
        let close = |ours: f64, key: &str| {
            let theirs = case[key].as_f64().unwrap();
            assert!(
                (ours - theirs).abs() <= 1e-5 * theirs.abs().max(1.0),
                "{} beta {}: {key} {ours} vs TRL {theirs}",
                case["loss_type"],
                objective.beta
            );
        };
        close(stats.loss, "loss");
        close(stats.chosen_reward, "rewards_chosen");
        close(stats.rejected_reward, "rewards_rejected");
        close(stats.accuracy, "rewards_accuracies");
        close(stats.margin, "rewards_margins");
    }
}
