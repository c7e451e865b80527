//! The contract: the request every reward receives, the [`Reward`] trait, the check every
//! answer passes, and the [`Decoder`] that turns rollout batches into requests.

use anyhow::{anyhow, ensure, Context};
use rlhf::rollout::RolloutBatch;
use rlhf::tokenizer::Tokenizer;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::Arc;

/// One rollout batch to score.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ScoreRequest {
    /// The rollout batch's sequence number.
    pub batch_id: u64,
    /// The version of the policy that sampled the responses.
    pub policy_version: u64,
    /// Each row's prompt as the prompt file gives it (without the chat template).
    pub prompts: Vec<String>,
    /// Each row's response text, without the EOS token.
    pub responses: Vec<String>,
    /// Each row's prompt token ids in the chat template, without padding.
    pub prompt_ids: Vec<Vec<i64>>,
    /// Each row's response token ids, EOS included when the response ended with it.
    pub response_ids: Vec<Vec<i64>>,
}

impl ScoreRequest {
    /// Number of rows.
    pub fn len(&self) -> usize {
        self.response_ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A reward: one finite score per row, higher is better.
pub trait Reward: Send {
    fn score(&mut self, request: &ScoreRequest) -> anyhow::Result<Vec<f32>>;

    /// What errors and logs call this reward.
    fn name(&self) -> String {
        "reward".into()
    }
}

/// Scores as a reward returned them, refused unless there is one finite score per row.
pub fn checked_scores(
    source: &str,
    request: &ScoreRequest,
    scores: Vec<f32>,
) -> anyhow::Result<Vec<f32>> {
    ensure!(
        scores.len() == request.len(),
        "{source} returned {} scores for the {} rows of rollout batch {}",
        scores.len(),
        request.len(),
        request.batch_id
    );
    if let Some(row) = scores.iter().position(|s| !s.is_finite()) {
        return Err(anyhow!(
            "{source} returned a non-finite score ({}) for row {row} of rollout batch {}",
            scores[row],
            request.batch_id
        ));
    }
    Ok(scores)
}

/// Turns rollout batches into score requests: token ids without padding, and text through
/// the tokenizer and the prompt file (prompts are looked up by their templated ids).
#[derive(Clone)]
pub struct Decoder {
    tokenizer: Option<Tokenizer>,
    /// The ids that end a response, dropped from its text.
    eos: Vec<i64>,
    /// Raw prompt text under the token ids of its templated form.
    prompts: Arc<HashMap<Vec<i64>, String>>,
}

impl Decoder {
    /// `prompts`: (templated prompt ids, raw prompt text) for every prompt of the run;
    /// `eos`: the ids that end a response.
    pub fn new(
        tokenizer: Tokenizer,
        eos: Vec<i64>,
        prompts: impl IntoIterator<Item = (Vec<i64>, String)>,
    ) -> Self {
        Decoder {
            tokenizer: Some(tokenizer),
            eos,
            prompts: Arc::new(prompts.into_iter().collect()),
        }
    }

    /// Token ids only, empty text: for benchmarks and tests on random models.
    pub fn ids_only() -> Decoder {
        Decoder {
            tokenizer: None,
            eos: Vec::new(),
            prompts: Arc::new(HashMap::new()),
        }
    }

    pub fn request(&self, batch: &RolloutBatch) -> anyhow::Result<ScoreRequest> {
        let prompt_ids = unpadded(&batch.prompt_ids, &batch.prompt_mask)?;
        let response_ids = unpadded(&batch.response_ids, &batch.response_mask)?;
        let (mut prompts, mut responses) = (Vec::new(), Vec::new());
        if let Some(tokenizer) = &self.tokenizer {
            for (row, ids) in prompt_ids.iter().enumerate() {
                let text = match self.prompts.get(ids) {
                    Some(text) => text.clone(),
                    None => tokenizer.decode(ids).with_context(|| {
                        format!("decoding prompt {row} of rollout batch {}", batch.id)
                    })?,
                };
                prompts.push(text);
            }
            for (row, ids) in response_ids.iter().enumerate() {
                let body: Vec<i64> = ids
                    .iter()
                    .copied()
                    .filter(|t| !self.eos.contains(t))
                    .collect();
                responses.push(tokenizer.decode(&body).with_context(|| {
                    format!("decoding response {row} of rollout batch {}", batch.id)
                })?);
            }
        } else {
            prompts = vec![String::new(); prompt_ids.len()];
            responses = vec![String::new(); response_ids.len()];
        }
        Ok(ScoreRequest {
            batch_id: batch.id,
            policy_version: batch.policy_version,
            prompts,
            responses,
            prompt_ids,
            response_ids,
        })
    }
}

/// The rows of `ids` [B, T] where `mask` is non-zero.
fn unpadded(ids: &tch::Tensor, mask: &tch::Tensor) -> anyhow::Result<Vec<Vec<i64>>> {
    let ids = Vec::<Vec<i64>>::try_from(ids)?;
    let mask = Vec::<Vec<f64>>::try_from(mask.to_kind(tch::Kind::Double))?;
    Ok(ids
        .iter()
        .zip(&mask)
        .map(|(row, keep)| {
            row.iter()
                .zip(keep)
                .filter(|(_, &k)| k != 0.0)
                .map(|(&t, _)| t)
                .collect()
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(rows: usize) -> ScoreRequest {
        ScoreRequest {
            batch_id: 4,
            response_ids: vec![vec![1]; rows],
            ..ScoreRequest::default()
        }
    }

    #[test]
    fn scores_must_be_one_finite_number_per_row() {
        assert_eq!(
            checked_scores("r", &request(2), vec![0.5, -1.0]).unwrap(),
            [0.5, -1.0]
        );
        let e = checked_scores("the http reward", &request(3), vec![0.5])
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "the http reward returned 1 scores for the 3 rows of rollout batch 4"
        );
        let e = checked_scores("r", &request(2), vec![0.5, f32::NAN])
            .unwrap_err()
            .to_string();
        assert!(e.contains("non-finite score (NaN) for row 1"), "{e}");
    }

    #[test]
    fn requests_carry_unpadded_ids() {
        use tch::Tensor;
        let batch = RolloutBatch {
            id: 9,
            policy_version: 2,
            prompt_ids: Tensor::from_slice(&[0i64, 5, 6, 7, 8, 9]).view([2, 3]),
            prompt_mask: Tensor::from_slice(&[0i64, 1, 1, 1, 1, 1]).view([2, 3]),
            response_ids: Tensor::from_slice(&[3i64, 0, 4, 2]).view([2, 2]),
            response_mask: Tensor::from_slice(&[1f32, 0., 1., 1.]).view([2, 2]),
            behaviour_logprobs: Tensor::zeros([2, 2], (tch::Kind::Float, tch::Device::Cpu)),
            ended_with_eos: Tensor::from_slice(&[false, true]),
            ref_logprobs: None,
            scores: None,
            monitor_scores: None,
        };
        let r = Decoder::ids_only().request(&batch).unwrap();
        assert_eq!((r.batch_id, r.policy_version), (9, 2));
        assert_eq!(r.prompt_ids, [vec![5, 6], vec![7, 8, 9]]);
        assert_eq!(r.response_ids, [vec![3], vec![4, 2]]);
        assert_eq!(r.prompts, ["", ""]);
    }
}
