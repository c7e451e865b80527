//! The neural reward model of stage 2 behind the reward contract: it scores the exact token
//! ids the policy sampled, read at each sequence's last token.

use super::contract::{Reward, ScoreRequest};
use rlhf::generate::left_pad;
use rlhf::model::Model;
use rlhf::train::last_token_scores;

pub struct ModelReward {
    pub model: Model,
}

impl Reward for ModelReward {
    fn score(&mut self, request: &ScoreRequest) -> anyhow::Result<Vec<f32>> {
        if request.is_empty() {
            return Ok(Vec::new());
        }
        let sequences: Vec<Vec<i64>> = request
            .prompt_ids
            .iter()
            .zip(&request.response_ids)
            .map(|(p, r)| p.iter().chain(r).copied().collect())
            .collect();
        // Left padding puts every last token in the last column; the pad id is masked.
        let (ids, valid) = left_pad(&sequences, 0);
        Ok(Vec::<f32>::try_from(last_token_scores(
            &self.model,
            &ids,
            &valid,
        ))?)
    }

    fn name(&self) -> String {
        "the reward model".into()
    }
}
