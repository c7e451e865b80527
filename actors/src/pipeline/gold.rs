//! The gold labeler as a reward scorer. PPO against it directly is the reference run that
//! shows how much of the true preference is reachable; beside a learned reward model it is
//! the monitor that makes over-optimisation visible.

use crate::ppo::scorers::RewardScorer;
use anyhow::{anyhow, Context};
use rlhf::rollout::RolloutBatch;
use rlhf::template::ChatTemplate;
use rlhf::tokenizer::Tokenizer;
use rlhf::world::labeler::Labeler;
use rlhf::world::tasks::Task;
use rlhf::world::World;
use std::collections::HashMap;
use tch::Tensor;

pub struct GoldReward {
    world: World,
    labeler: Labeler,
    tokenizer: Tokenizer,
    /// Each task under the token ids of its templated prompt, as rollouts carry them.
    tasks: HashMap<Vec<i64>, Task>,
}

impl GoldReward {
    pub fn new(
        world: World,
        labeler: Labeler,
        tokenizer: Tokenizer,
        tasks: Vec<Task>,
    ) -> anyhow::Result<GoldReward> {
        let template = ChatTemplate::default();
        let mut by_ids = HashMap::with_capacity(tasks.len());
        for task in tasks {
            by_ids.insert(tokenizer.encode(&template.prompt(&task.prompt))?, task);
        }
        Ok(GoldReward {
            world,
            labeler,
            tokenizer,
            tasks: by_ids,
        })
    }

    /// The task and response text of each row.
    fn rows<'a>(&'a self, batch: &RolloutBatch) -> anyhow::Result<Vec<(&'a Task, String)>> {
        let prompts = Vec::<Vec<i64>>::try_from(&batch.prompt_ids)?;
        let prompt_mask = Vec::<Vec<i64>>::try_from(&batch.prompt_mask)?;
        let responses = Vec::<Vec<i64>>::try_from(&batch.response_ids)?;
        let response_mask = Vec::<Vec<f32>>::try_from(&batch.response_mask)?;
        let eos = self.tokenizer.eos_id();
        let mut out = Vec::with_capacity(prompts.len());
        for row in 0..prompts.len() {
            let prompt: Vec<i64> = kept(&prompts[row], |i| prompt_mask[row][i] != 0);
            let Some(task) = self.tasks.get(&prompt) else {
                let text = self.tokenizer.decode(&prompt).unwrap_or_default();
                return Err(anyhow!(
                    "gold labeler: row {row} of rollout batch {} is not one of the world's prompts: {text:?}",
                    batch.id
                ));
            };
            let response: Vec<i64> = kept(&responses[row], |i| response_mask[row][i] > 0.0)
                .into_iter()
                .filter(|&t| t != eos)
                .collect();
            let text = self
                .tokenizer
                .decode(&response)
                .context("gold labeler: decoding a response")?;
            out.push((task, text));
        }
        Ok(out)
    }
}

fn kept(ids: &[i64], keep: impl Fn(usize) -> bool) -> Vec<i64> {
    ids.iter()
        .enumerate()
        .filter(|&(i, _)| keep(i))
        .map(|(_, &t)| t)
        .collect()
}

impl RewardScorer for GoldReward {
    fn score(&mut self, batch: &RolloutBatch) -> anyhow::Result<Tensor> {
        let scores: Vec<f32> = self
            .rows(batch)?
            .iter()
            .map(|(task, text)| self.labeler.score(&self.world, task, text) as f32)
            .collect();
        Ok(Tensor::from_slice(&scores))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rlhf::rng::Rng;
    use rlhf::world::tasks::{pools, PoolSizes};
    use tch::Kind;

    #[test]
    fn scores_each_row_as_the_labeler_scores_its_text() {
        let world = World::generate(5);
        let sizes = PoolSizes {
            sft: 4,
            rm: 4,
            ppo: 6,
            test: 4,
        };
        let tasks = pools(&world, 5, &sizes).unwrap().ppo;
        let corpus = rlhf::world::prose::corpus(5, 200);
        let template = ChatTemplate::default();
        let mut specials = vec!["<|endoftext|>".to_string()];
        specials.extend(template.special_tokens());
        let specials: Vec<&str> = specials.iter().map(String::as_str).collect();
        let tokenizer = Tokenizer::train_bpe(&corpus, 400, &specials).unwrap();
        let labeler = Labeler { disagreement: 0.0 };
        let mut rng = Rng::new(1);
        // Row 0 answers well, row 1 answers another task's demonstration.
        let answers = [
            labeler.demonstrate(&world, &tasks[0], &mut rng),
            labeler.demonstrate(&world, &tasks[2], &mut rng),
        ];
        let prompts: Vec<Vec<i64>> = [&tasks[0], &tasks[1]]
            .iter()
            .map(|t| tokenizer.encode(&template.prompt(&t.prompt)).unwrap())
            .collect();
        let eos = tokenizer.eos_id();
        let responses: Vec<Vec<i64>> = answers
            .iter()
            .map(|a| {
                let mut ids = tokenizer.encode(a).unwrap();
                ids.push(eos);
                ids
            })
            .collect();
        let batch = |prompts: &[Vec<i64>]| {
            let (prompt_ids, prompt_mask) = rlhf::generate::left_pad(prompts, 0);
            let width = responses.iter().map(Vec::len).max().unwrap();
            let mut ids = vec![0i64; 2 * width];
            let mut mask = vec![0f32; 2 * width];
            for (row, r) in responses.iter().enumerate() {
                for (j, &t) in r.iter().enumerate() {
                    ids[row * width + j] = t;
                    mask[row * width + j] = 1.0;
                }
            }
            RolloutBatch {
                id: 7,
                policy_version: 0,
                prompt_ids,
                prompt_mask,
                response_ids: Tensor::from_slice(&ids).view([2, width as i64]),
                response_mask: Tensor::from_slice(&mask).view([2, width as i64]),
                behaviour_logprobs: Tensor::zeros(
                    [2, width as i64],
                    (Kind::Float, tch::Device::Cpu),
                ),
                ended_with_eos: Tensor::from_slice(&[true, true]),
                ref_logprobs: None,
                scores: None,
                monitor_scores: None,
            }
        };
        let mut gold =
            GoldReward::new(world.clone(), labeler, tokenizer.clone(), tasks.clone()).unwrap();
        let scores = Vec::<f32>::try_from(gold.score(&batch(&prompts)).unwrap()).unwrap();
        let expected = [
            labeler.score(&world, &tasks[0], &answers[0]),
            labeler.score(&world, &tasks[1], &answers[1]),
        ];
        for (got, want) in scores.iter().zip(expected) {
            assert!(
                (*got as f64 - want).abs() < 1e-6,
                "{scores:?} vs {expected:?}"
            );
        }
        assert!(scores[0] > 0.9 && scores[1] < scores[0], "{scores:?}");

        // A prompt outside the task list is an error that quotes it.
        let stranger = vec![
            tokenizer
                .encode(&template.prompt("Sing me a song."))
                .unwrap(),
            prompts[1].clone(),
        ];
        let err = gold.score(&batch(&stranger)).unwrap_err().to_string();
        assert!(
            err.contains("row 0 of rollout batch 7") && err.contains("Sing me a song."),
            "{err}"
        );
    }
}
