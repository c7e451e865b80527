//! The supervised (SFT) and reward-model losses. Each returns the loss as a scalar f32
//! tensor that carries the graph, plus statistics read back in a single host transfer.

use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};

/// Statistics of one [`sft_loss`] call.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SftStats {
    /// Target tokens that counted (the mask's sum).
    pub tokens: i64,
    /// The token-mean cross-entropy (nats per token).
    pub loss: f64,
}

/// Statistics of one [`kwise_loss`] call.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RankStats {
    /// Ranked (winner, loser) pairs over all prompts.
    pub pairs: usize,
    /// Fraction of pairs with r_w > r_l (ties count as wrong); 0 without pairs.
    pub accuracy: f64,
    /// Mean of r_w - r_l over the pairs (unweighted); 0 without pairs.
    pub mean_margin: f64,
    /// The loss value (the prompt-weighted mean).
    pub loss: f64,
}

/// Token-mean cross-entropy. logits [B,T,V] (any float dtype; log_softmax is computed in
/// f32), targets [B,T] i64, mask [B,T] (1 where the target counts; float or bool). Returns
/// (loss scalar f32 tensor, SftStats { tokens: i64 (mask sum), loss: f64 }).
///
/// Targets at masked-out positions are never read (they may be padding or -100). With no
/// counted token the loss is 0 (and still differentiable, with zero gradients).
pub fn sft_loss(logits: &Tensor, targets: &Tensor, mask: &Tensor) -> (Tensor, SftStats) {
    let (b, t) = match logits.size()[..] {
        [b, t, _] => (b, t),
        ref other => panic!("sft_loss: logits must be [B, T, V], got {other:?}"),
    };
    assert_eq!(targets.size(), [b, t], "sft_loss: targets must be [B, T]");
    assert_eq!(mask.size(), [b, t], "sft_loss: mask must be [B, T]");
    let weights = mask.to_kind(Kind::Bool).to_kind(Kind::Float);
    let token_logp = token_logps(logits, targets, mask);
    let tokens = weights.sum(Kind::Float);
    let loss = -(token_logp * &weights).sum(Kind::Float) / tokens.clamp_min(1.0);
    let host = read_back(&[&loss, &tokens]);
    let stats = SftStats {
        tokens: host[1].round() as i64,
        loss: host[0],
    };
    (loss, stats)
}

/// Each row's log-probability of its counted targets, summed: [B] f32. Same arguments as
/// [`sft_loss`]; DPO's sequence log-probability of a response.
pub fn sequence_logps(logits: &Tensor, targets: &Tensor, mask: &Tensor) -> Tensor {
    (token_logps(logits, targets, mask) * mask.to_kind(Kind::Bool).to_kind(Kind::Float))
        .sum_dim_intlist(-1, false, Kind::Float)
}

/// log softmax(logits)[target] per position, [B, T] f32, with masked-out targets (never
/// read) replaced by id 0.
fn token_logps(logits: &Tensor, targets: &Tensor, mask: &Tensor) -> Tensor {
    let safe_targets = targets
        .to_kind(Kind::Int64)
        .masked_fill(&mask.to_kind(Kind::Bool).logical_not(), 0);
    logits
        .log_softmax(-1, Kind::Float)
        .gather(-1, &safe_targets.unsqueeze(-1), false)
        .squeeze_dim(-1)
}

/// The InstructGPT K-wise reward loss. rewards [N] (one scalar per (prompt, response) row;
/// [N, 1] is accepted too); groups: one entry per prompt listing its rows from best to
/// worst (K = group.len() >= 2).
///
/// `loss = 1/P * sum over prompts of 1/C(K,2) * sum over i<j of -log sigmoid(r[g[i]] - r[g[j]])`,
/// so each prompt counts once whatever its K. The pair indices and weights are built on the
/// host once; the device does one gather and one logsigmoid. Returns (loss, RankStats).
/// With no groups the loss is 0 (still connected to `rewards`).
///
/// Panics when a group has fewer than two rows or names a row outside `rewards`: the data
/// readers validate rankings, so that is a programming error.
pub fn kwise_loss(rewards: &Tensor, groups: &[Vec<usize>]) -> (Tensor, RankStats) {
    let r = rewards.reshape([-1]).to_kind(Kind::Float);
    let pairs = pair_index(groups, r.size()[0] as usize, r.device());
    if pairs.count == 0 {
        return (r.sum(Kind::Float) * 0.0, RankStats::default());
    }
    let margin = r.index_select(0, &pairs.better) - r.index_select(0, &pairs.worse);
    let loss = -(margin.log_sigmoid() * &pairs.weight).sum(Kind::Float);
    let (accuracy, mean_margin) = tch::no_grad(|| {
        (
            margin.gt(0.0).to_kind(Kind::Float).mean(Kind::Float),
            margin.mean(Kind::Float),
        )
    });
    let host = read_back(&[&loss, &accuracy, &mean_margin]);
    let stats = RankStats {
        pairs: pairs.count,
        accuracy: host[1],
        mean_margin: host[2],
        loss: host[0],
    };
    (loss, stats)
}

/// Every ranked (better, worse) pair of `groups` (each prompt's rows best first), as row
/// indices, with each pair's weight 1 / (P * C(K,2)) so that
/// every prompt counts once whatever its K.
pub(crate) struct Pairs {
    pub count: usize,
    pub better: Tensor,
    pub worse: Tensor,
    pub weight: Tensor,
}

/// The pairs of `groups` over `n` rows, as tensors on `device` (see [`Pairs`]).
///
/// Panics when a group has fewer than two rows or names a row outside `n`: the data
/// readers validate rankings, so that is a programming error.
pub(crate) fn pair_index(groups: &[Vec<usize>], n: usize, device: Device) -> Pairs {
    let prompts = groups.len();
    let (mut better, mut worse, mut weight) = (Vec::new(), Vec::new(), Vec::new());
    for group in groups {
        let k = group.len();
        assert!(k >= 2, "a ranking has {k} row(s), needs at least two");
        for &row in group {
            assert!(row < n, "row {row} is outside the {n} rows");
        }
        let w = 1.0 / (prompts as f64 * (k * (k - 1) / 2) as f64);
        for i in 0..k {
            for j in i + 1..k {
                better.push(group[i] as i64);
                worse.push(group[j] as i64);
                weight.push(w as f32);
            }
        }
    }
    Pairs {
        count: weight.len(),
        better: Tensor::from_slice(&better).to_device(device),
        worse: Tensor::from_slice(&worse).to_device(device),
        weight: Tensor::from_slice(&weight).to_device(device),
    }
}

/// Scalars to the host in one transfer.
pub(crate) fn read_back(scalars: &[&Tensor]) -> Vec<f64> {
    let stacked = tch::no_grad(|| {
        let parts: Vec<Tensor> = scalars
            .iter()
            .map(|s| s.detach().to_kind(Kind::Double).reshape([1]))
            .collect();
        Tensor::cat(&parts, 0).to_device(Device::Cpu)
    });
    Vec::<f64>::try_from(&stacked).expect("scalars read back as f64")
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// log sigmoid(x), by hand (also for the DPO losses' tests).
    pub(crate) fn logsig(x: f64) -> f64 {
        -(1.0 + (-x).exp()).ln()
    }

    /// An f32 leaf tensor that records its gradient.
    pub(crate) fn leaf(values: &[f64]) -> Tensor {
        Tensor::from_slice(values)
            .to_kind(Kind::Float)
            .set_requires_grad(true)
    }

    pub(crate) fn grad_of(t: &Tensor) -> Vec<f64> {
        Vec::<f64>::try_from(t.grad().to_kind(Kind::Double)).unwrap()
    }

    fn scalar(t: &Tensor) -> f64 {
        t.double_value(&[])
    }

    #[test]
    fn k3_matches_hand_worked_example() {
        let r = [0.3, 1.1, -0.4];
        let rewards = leaf(&r);
        let (loss, stats) = kwise_loss(&rewards, &[vec![1, 0, 2]]);
        let want = (-logsig(r[1] - r[0]) - logsig(r[1] - r[2]) - logsig(r[0] - r[2])) / 3.0;
        assert!(
            (scalar(&loss) - want).abs() < 1e-6,
            "{} vs {want}",
            scalar(&loss)
        );
        assert!((stats.loss - want).abs() < 1e-6);
        assert_eq!(loss.kind(), Kind::Float);
        assert_eq!(loss.size(), Vec::<i64>::new());
        assert_eq!(stats.pairs, 3);
    }

    #[test]
    fn one_k4_ranking_equals_its_six_pairs() {
        let r = [0.7, -0.2, 1.5, 0.1];
        let ranking = vec![2, 0, 3, 1];
        let mut six = Vec::new();
        for i in 0..4 {
            for j in i + 1..4 {
                six.push(vec![ranking[i], ranking[j]]);
            }
        }
        assert_eq!(six.len(), 6);

        let a = leaf(&r);
        let (loss_a, stats_a) = kwise_loss(&a, std::slice::from_ref(&ranking));
        loss_a.backward();
        let b = leaf(&r);
        let (loss_b, stats_b) = kwise_loss(&b, &six);
        loss_b.backward();

        assert!((scalar(&loss_a) - scalar(&loss_b)).abs() < 1e-6);
        for (ga, gb) in grad_of(&a).iter().zip(grad_of(&b)) {
            assert!(
                (ga - gb).abs() < 1e-6,
                "{:?} vs {:?}",
                grad_of(&a),
                grad_of(&b)
            );
        }
        assert!(grad_of(&a).iter().any(|g| g.abs() > 1e-3));
        assert_eq!(stats_a.pairs, 6);
        assert_eq!(stats_a, stats_b);
    }

    #[test]
    fn prompts_weigh_equally_whatever_their_k() {
        // Prompt A: rows 0, 1 (K = 2); prompt B: rows 2..6 (K = 4).
        let r = [0.5, 0.9, 0.0, 1.0, -1.0, 2.0];
        let rewards = leaf(&r);
        let a = vec![0, 1];
        let b = vec![5, 3, 2, 4];
        let (loss, stats) = kwise_loss(&rewards, &[a.clone(), b.clone()]);
        let (loss_a, _) = kwise_loss(&rewards, &[a]);
        let (loss_b, _) = kwise_loss(&rewards, &[b]);
        let want = (scalar(&loss_a) + scalar(&loss_b)) / 2.0;
        assert!((scalar(&loss) - want).abs() < 1e-6);
        assert_eq!(stats.pairs, 7);
        // Pair-weighted averaging would give (1*la + 6*lb) / 7 instead: make sure it differs.
        let pair_mean = (scalar(&loss_a) + 6.0 * scalar(&loss_b)) / 7.0;
        assert!((scalar(&loss) - pair_mean).abs() > 1e-3);
    }

    #[test]
    fn rank_stats_on_a_hand_example() {
        // Ranking 0 > 1 > 2 with rewards 1, 3, 0: pairs (0,1) -2 wrong, (0,2) +1 right,
        // (1,2) +3 right. Second prompt: 3 > 4 with a tie, which counts as wrong.
        let rewards = Tensor::from_slice(&[1.0f32, 3.0, 0.0, 2.0, 2.0]);
        let (_, stats) = kwise_loss(&rewards, &[vec![0, 1, 2], vec![3, 4]]);
        assert_eq!(stats.pairs, 4);
        assert!((stats.accuracy - 0.5).abs() < 1e-12);
        assert!((stats.mean_margin - (-2.0 + 1.0 + 3.0 + 0.0) / 4.0).abs() < 1e-6);
    }

    #[test]
    fn kwise_accepts_bf16_column_rewards_and_empty_batches() {
        let rewards = Tensor::from_slice(&[0.5f32, -0.5])
            .to_kind(Kind::BFloat16)
            .reshape([2, 1]);
        let (loss, stats) = kwise_loss(&rewards, &[vec![0, 1]]);
        assert_eq!(loss.kind(), Kind::Float);
        assert!((stats.loss - -logsig(1.0)).abs() < 1e-3);
        assert_eq!(stats.accuracy, 1.0);

        let (loss, stats) = kwise_loss(&rewards, &[]);
        assert_eq!(scalar(&loss), 0.0);
        assert_eq!(stats, RankStats::default());
    }

    /// -log softmax(logits[b, t])[target[b, t]] averaged over the masked positions, by hand.
    fn naive_sft(logits: &[Vec<Vec<f64>>], targets: &[Vec<i64>], mask: &[Vec<f64>]) -> f64 {
        let (mut total, mut count) = (0.0, 0.0);
        for b in 0..logits.len() {
            for t in 0..logits[b].len() {
                if mask[b][t] == 0.0 {
                    continue;
                }
                let row = &logits[b][t];
                let max = row.iter().cloned().fold(f64::MIN, f64::max);
                let lse = max + row.iter().map(|x| (x - max).exp()).sum::<f64>().ln();
                total += lse - row[targets[b][t] as usize];
                count += 1.0;
            }
        }
        total / count
    }

    struct SftCase {
        logits: Vec<Vec<Vec<f64>>>,
        targets: Vec<Vec<i64>>,
        mask: Vec<Vec<f64>>,
    }

    impl SftCase {
        fn new() -> SftCase {
            let (b, t, v) = (2, 4, 5);
            let logits = (0..b)
                .map(|i| {
                    (0..t)
                        .map(|j| {
                            (0..v)
                                .map(|k| ((i * 31 + j * 7 + k * 3) as f64 * 0.61).sin() * 2.0)
                                .collect()
                        })
                        .collect()
                })
                .collect();
            SftCase {
                logits,
                targets: vec![vec![1, 4, 0, 2], vec![3, 3, 1, 0]],
                // The first positions are the prompt.
                mask: vec![vec![0.0, 1.0, 1.0, 1.0], vec![0.0, 0.0, 1.0, 1.0]],
            }
        }

        fn tensors(&self) -> (Tensor, Tensor, Tensor) {
            let flat: Vec<f64> = self.logits.iter().flatten().flatten().cloned().collect();
            let logits = Tensor::from_slice(&flat)
                .to_kind(Kind::Float)
                .reshape([2, 4, 5]);
            let targets = Tensor::from_slice(&self.targets.concat()).reshape([2, 4]);
            let mask = Tensor::from_slice(&self.mask.concat())
                .to_kind(Kind::Float)
                .reshape([2, 4]);
            (logits, targets, mask)
        }

        fn loss(&self) -> f64 {
            let (logits, targets, mask) = self.tensors();
            sft_loss(&logits, &targets, &mask).1.loss
        }
    }

    #[test]
    fn sft_matches_a_naive_loop_over_masked_positions() {
        let case = SftCase::new();
        let (logits, targets, mask) = case.tensors();
        let (loss, stats) = sft_loss(&logits, &targets, &mask);
        let want = naive_sft(&case.logits, &case.targets, &case.mask);
        assert_eq!(stats.tokens, 5);
        assert!((stats.loss - want).abs() < 1e-5, "{} vs {want}", stats.loss);
        assert!((scalar(&loss) - want).abs() < 1e-5);
        assert_eq!(loss.kind(), Kind::Float);

        // A bool mask and bf16 logits give the same loss (to bf16 precision).
        let (l16, s16) = sft_loss(
            &logits.to_kind(Kind::BFloat16),
            &targets,
            &mask.to_kind(Kind::Bool),
        );
        assert_eq!(l16.kind(), Kind::Float);
        assert_eq!(s16.tokens, 5);
        assert!((s16.loss - want).abs() < 5e-2);
    }

    #[test]
    fn sft_ignores_targets_at_masked_positions_only() {
        let base = SftCase::new();
        let reference = base.loss();

        let mut masked = SftCase::new();
        masked.targets[1][1] = 4;
        assert_eq!(masked.loss(), reference);
        // Even an invalid id (an ignore index) at a prompt position is never read.
        masked.targets[0][0] = -100;
        assert_eq!(masked.loss(), reference);

        let mut counted = SftCase::new();
        counted.targets[1][2] = 4;
        assert!((counted.loss() - reference).abs() > 1e-4);
    }

    #[test]
    fn sft_gradient_flows_and_empty_mask_is_zero() {
        let case = SftCase::new();
        let (logits, targets, mask) = case.tensors();
        let logits = logits.set_requires_grad(true);
        let (loss, _) = sft_loss(&logits, &targets, &mask);
        loss.backward();
        let grad = logits.grad();
        // No gradient reaches the prompt positions.
        assert_eq!(
            grad.get(0).get(0).abs().sum(Kind::Float).double_value(&[]),
            0.0
        );
        assert!(grad.get(0).get(1).abs().sum(Kind::Float).double_value(&[]) > 0.0);

        let (loss, stats) = sft_loss(&logits, &targets, &mask.zeros_like());
        assert_eq!(stats.tokens, 0);
        assert_eq!(scalar(&loss), 0.0);
    }
}
