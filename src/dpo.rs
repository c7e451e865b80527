//! Direct preference optimisation (Rafailov et al. 2023) on ranked responses: the policy's
//! implicit reward of a response is `beta * (log pi(y|x) - log pi_ref(y|x))`, summed over the
//! response's tokens, and the loss asks it to order the responses as the labels do.
//!
//! - `pl = true` (default): the Plackett-Luce likelihood of the whole ranking (the DPO
//!   paper's appendix A.3), `-sum over k < K of log softmax(r[k..])[0]` for responses ranked
//!   best first, so InstructGPT's K-wise rankings train directly; at K = 2 it is the sigmoid
//!   loss.
//! - `pl = false`: every ranking is expanded into its C(K,2) pairs, as the reward model's
//!   loss does, with `loss = "sigmoid"` (DPO, with `label_smoothing` the conservative cDPO)
//!   or `loss = "ipo"` (IPO, on log-ratios divided by the response's token count as TRL
//!   computes it).
//!
//! Every prompt counts once whatever its K, as in [`crate::losses::kwise_loss`].

use crate::losses::{pair_index, read_back};
use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

/// Default `beta`: TRL's and the DPO paper's.
const DEFAULT_BETA: f64 = 0.1;
/// Rewards of the padding of a short ranking in the Plackett-Luce matrix: its exp is 0 in
/// f32 next to any real reward, so it adds nothing to a softmax.
const PAD_REWARD: f64 = -1e4;

/// `[dpo.objective]`: the preference loss.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DpoObjective {
    /// The implicit reward's scale (DPO's beta; IPO's tau): the strength of the KL leash
    /// to the reference policy.
    #[serde(default = "beta")]
    pub beta: f64,
    /// `sigmoid` (DPO) or `ipo` (IPO; needs `pl = false`).
    #[serde(default)]
    pub loss: DpoLoss,
    /// cDPO: the probability that a pair's label is flipped, in [0, 0.5) (sigmoid with
    /// `pl = false` only).
    #[serde(default)]
    pub label_smoothing: f64,
    /// The Plackett-Luce loss over whole rankings; `false`: each ranking's C(K,2) pairs.
    #[serde(default = "pl")]
    pub pl: bool,
    /// Weight of the token-mean negative log-likelihood of each ranking's best response,
    /// added to the loss (RPO; TRL's `loss_type = ["sigmoid", "sft"]` with this weight,
    /// OpenRLHF's `nll_loss_coef`): it keeps DPO from lowering the likelihood of the
    /// responses it prefers.
    #[serde(default)]
    pub sft_coef: f64,
}

/// The pairwise preference losses.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DpoLoss {
    #[default]
    Sigmoid,
    Ipo,
}

fn beta() -> f64 {
    DEFAULT_BETA
}

fn pl() -> bool {
    true
}

impl Default for DpoObjective {
    fn default() -> Self {
        DpoObjective {
            beta: DEFAULT_BETA,
            loss: DpoLoss::Sigmoid,
            label_smoothing: 0.0,
            pl: true,
            sft_coef: 0.0,
        }
    }
}

impl DpoObjective {
    /// Errors name the key under `[dpo.objective]`.
    pub fn validate(&self) -> std::result::Result<(), String> {
        if !(self.beta > 0.0 && self.beta.is_finite()) {
            return Err(format!(
                "objective.beta must be positive, got {}",
                self.beta
            ));
        }
        if !(0.0..0.5).contains(&self.label_smoothing) {
            return Err(format!(
                "objective.label_smoothing must be in [0, 0.5), got {}",
                self.label_smoothing
            ));
        }
        if !(self.sft_coef >= 0.0 && self.sft_coef.is_finite()) {
            return Err(format!(
                "objective.sft_coef must be non-negative, got {}",
                self.sft_coef
            ));
        }
        if self.pl && self.loss == DpoLoss::Ipo {
            return Err("objective.loss = \"ipo\" is pairwise: set objective.pl = false".into());
        }
        if self.label_smoothing > 0.0 && (self.pl || self.loss == DpoLoss::Ipo) {
            return Err(
                "objective.label_smoothing (cDPO) needs loss = \"sigmoid\" and pl = false".into(),
            );
        }
        Ok(())
    }
}

/// Figures of one [`dpo_loss`] call; the pair figures are over every ranked pair, whatever
/// the loss, as TRL's `rewards/*` are.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct DpoStats {
    /// The loss value (the prompt-weighted mean).
    pub loss: f64,
    /// Ranked (better, worse) pairs over all prompts.
    pub pairs: usize,
    /// Fraction of pairs whose better response has the higher implicit reward.
    pub accuracy: f64,
    /// Mean implicit-reward margin r(better) - r(worse) over the pairs.
    pub margin: f64,
    /// Mean implicit reward of the better response of each pair.
    pub chosen_reward: f64,
    /// Mean implicit reward of the worse response of each pair.
    pub rejected_reward: f64,
    /// Mean of log pi - log pi_ref over every response (nats per response): the
    /// sequence-level log-ratio the implicit rewards are beta times.
    pub implicit_kl: f64,
    /// Token-mean negative log-likelihood of the best responses (the `sft_coef` term's
    /// value before its weight).
    pub chosen_nll: f64,
}

/// The DPO loss of rows with response log-probs `logps` [N] under the policy (summed over
/// each response's tokens, with the graph) and `reference` [N] under the reference policy,
/// and response token counts `tokens` [N] (IPO's and the NLL's normaliser); `groups` lists
/// each prompt's rows best first (K >= 2). Returns (loss scalar f32 tensor with the graph,
/// figures). With no groups the loss is 0.
///
/// Panics on a group of fewer than two rows or a row outside `logps` (the readers validate
/// rankings).
pub fn dpo_loss(
    logps: &Tensor,
    reference: &Tensor,
    tokens: &Tensor,
    groups: &[Vec<usize>],
    objective: &DpoObjective,
) -> (Tensor, DpoStats) {
    let logps = logps.reshape([-1]).to_kind(Kind::Float);
    let logratios = &logps - reference.reshape([-1]).to_kind(Kind::Float);
    let tokens = tokens.reshape([-1]).to_kind(Kind::Float);
    let rewards = &logratios * objective.beta;
    let pairs = pair_index(groups, rewards.size()[0] as usize, rewards.device());
    if pairs.count == 0 {
        return (rewards.sum(Kind::Float) * 0.0, DpoStats::default());
    }
    let better = rewards.index_select(0, &pairs.better);
    let worse = rewards.index_select(0, &pairs.worse);
    let margin = &better - &worse;
    let loss = match (objective.pl, objective.loss) {
        (true, _) => plackett_luce(&rewards, groups),
        (false, DpoLoss::Sigmoid) => {
            let eps = objective.label_smoothing;
            let per_pair = margin.log_sigmoid() * -(1.0 - eps) - (-&margin).log_sigmoid() * eps;
            (per_pair * &pairs.weight).sum(Kind::Float)
        }
        (false, DpoLoss::Ipo) => {
            let per_token = &logratios / tokens.clamp_min(1.0);
            let gap =
                per_token.index_select(0, &pairs.better) - per_token.index_select(0, &pairs.worse);
            let per_pair = (gap - 1.0 / (2.0 * objective.beta)).square();
            (per_pair * &pairs.weight).sum(Kind::Float)
        }
    };
    // The best responses' tokens: the NLL is a mean over them, as TRL's "sft" loss.
    let best: Vec<i64> = groups.iter().map(|g| g[0] as i64).collect();
    let best = Tensor::from_slice(&best).to_device(rewards.device());
    let chosen_nll = -logps.index_select(0, &best).sum(Kind::Float)
        / tokens
            .index_select(0, &best)
            .sum(Kind::Float)
            .clamp_min(1.0);
    let loss = if objective.sft_coef > 0.0 {
        loss + &chosen_nll * objective.sft_coef
    } else {
        loss
    };
    let figures = tch::no_grad(|| {
        let rows: Vec<i64> = groups.iter().flatten().map(|&r| r as i64).collect();
        let rows = Tensor::from_slice(&rows).to_device(rewards.device());
        [
            margin.gt(0.0).to_kind(Kind::Float).mean(Kind::Float),
            margin.mean(Kind::Float),
            better.mean(Kind::Float),
            worse.mean(Kind::Float),
            (rewards.index_select(0, &rows) / objective.beta).mean(Kind::Float),
            chosen_nll.detach(),
        ]
    });
    let mut scalars = vec![&loss];
    scalars.extend(figures.iter());
    let host = read_back(&scalars);
    let stats = DpoStats {
        loss: host[0],
        pairs: pairs.count,
        accuracy: host[1],
        margin: host[2],
        chosen_reward: host[3],
        rejected_reward: host[4],
        implicit_kl: host[5],
        chosen_nll: host[6],
    };
    (loss, stats)
}

/// `1/P * sum over prompts of -sum over k < K-1 of (r[g[k]] - logsumexp(r[g[k..]]))`, on a
/// [P, K_max] matrix of each prompt's rewards, best first, padded with [`PAD_REWARD`].
fn plackett_luce(rewards: &Tensor, groups: &[Vec<usize>]) -> Tensor {
    let width = groups.iter().map(Vec::len).max().unwrap_or(0);
    let prompts = groups.len();
    let mut index = vec![0i64; prompts * width];
    let mut pad = vec![true; prompts * width];
    let mut counted = vec![0f32; prompts * width];
    for (p, group) in groups.iter().enumerate() {
        for (k, &row) in group.iter().enumerate() {
            index[p * width + k] = row as i64;
            pad[p * width + k] = false;
            // The last place's term is log softmax of one entry: 0, and left out.
            if k + 1 < group.len() {
                counted[p * width + k] = 1.0 / prompts as f32;
            }
        }
    }
    let device = rewards.device();
    let shape = [prompts as i64, width as i64];
    let ranked = rewards
        .index_select(0, &Tensor::from_slice(&index).to_device(device))
        .view(shape)
        .masked_fill(
            &Tensor::from_slice(&pad).to_device(device).view(shape),
            PAD_REWARD,
        );
    // logsumexp over each place and every place after it.
    let rest = ranked.flip([1]).logcumsumexp(1).flip([1]);
    let weight = Tensor::from_slice(&counted).to_device(device).view(shape);
    -((ranked - rest) * weight).sum(Kind::Float)
}

#[cfg(test)]
mod tests;
