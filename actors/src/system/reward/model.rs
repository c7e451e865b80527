//! The neural reward model of stage 2 behind the reward contract: it scores the exact token
//! ids the policy sampled, read at each sequence's last token, in groups of sequences of
//! similar length (each padded only to its own longest; see [`rlhf::rollout::groups`]).

use super::contract::{Reward, ScoreRequest};
use rlhf::generate::left_pad;
use rlhf::model::Model;
use rlhf::rollout::groups::length_groups;
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
        let lengths: Vec<i64> = sequences.iter().map(|s| s.len() as i64).collect();
        let mut scores = vec![0f32; sequences.len()];
        for group in length_groups(&lengths, &vec![0; lengths.len()]) {
            let members: Vec<Vec<i64>> = group
                .rows
                .iter()
                .map(|&row| sequences[row as usize].clone())
                .collect();
            // Left padding puts every last token in the last column; the pad id is masked.
            let (ids, valid) = left_pad(&members, 0);
            let got = Vec::<f32>::try_from(last_token_scores(&self.model, &ids, &valid))?;
            for (&row, score) in group.rows.iter().zip(got) {
                scores[row as usize] = score;
            }
        }
        Ok(scores)
    }

    fn name(&self) -> String {
        "the reward model".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rlhf::device::DType;
    use rlhf::model::Head;
    use std::path::Path;
    use tch::Tensor;

    #[test]
    fn sequences_of_uneven_length_score_as_each_alone() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/llama-tiny-score");
        let (model, _) = Model::load(&dir, Head::Scalar, DType::F32, tch::Device::Cpu).unwrap();
        let lengths = [
            (3, 2),
            (2, 3),
            (20, 15),
            (3, 1),
            (4, 2),
            (2, 2),
            (25, 30),
            (3, 3),
        ];
        let mut next = 11i64;
        let mut ids = |n: usize| -> Vec<i64> {
            (0..n)
                .map(|_| {
                    next = (next * 48271) % 2147483647;
                    1 + next % 90
                })
                .collect()
        };
        let request = ScoreRequest {
            prompt_ids: lengths.iter().map(|&(p, _)| ids(p)).collect(),
            response_ids: lengths.iter().map(|&(_, r)| ids(r)).collect(),
            ..ScoreRequest::default()
        };
        let lens: Vec<i64> = lengths.iter().map(|&(p, r)| (p + r) as i64).collect();
        assert!(length_groups(&lens, &[0; 8]).len() > 1);
        let mut reward = ModelReward { model };
        let scores = reward.score(&request).unwrap();
        for (row, score) in scores.iter().enumerate() {
            let seq: Vec<i64> = request.prompt_ids[row]
                .iter()
                .chain(&request.response_ids[row])
                .copied()
                .collect();
            let ids = Tensor::from_slice(&seq).unsqueeze(0);
            let alone = last_token_scores(&reward.model, &ids, &ids.ones_like()).double_value(&[0]);
            assert!(
                (*score as f64 - alone).abs() < 1e-5,
                "row {row}: {score} vs {alone}"
            );
        }
    }
}
