//! The gold labeler as a reward scorer. PPO against it directly is the reference run that
//! shows how much of the true preference is reachable; beside a learned reward model it is
//! the monitor that makes over-optimisation visible.

use crate::system::reward::{Reward, ScoreRequest};
use anyhow::anyhow;
use rlhf::world::labeler::Labeler;
use rlhf::world::tasks::Task;
use rlhf::world::World;
use std::collections::HashMap;

pub struct GoldReward {
    world: World,
    labeler: Labeler,
    /// Each task under its prompt text, as score requests carry it.
    tasks: HashMap<String, Task>,
}

impl GoldReward {
    pub fn new(world: World, labeler: Labeler, tasks: Vec<Task>) -> GoldReward {
        GoldReward {
            world,
            labeler,
            tasks: tasks.into_iter().map(|t| (t.prompt.clone(), t)).collect(),
        }
    }
}

impl Reward for GoldReward {
    fn score(&mut self, request: &ScoreRequest) -> anyhow::Result<Vec<f32>> {
        request
            .prompts
            .iter()
            .zip(&request.responses)
            .enumerate()
            .map(|(row, (prompt, response))| {
                let task = self.tasks.get(prompt).ok_or_else(|| {
                    anyhow!(
                        "row {row} of rollout batch {} is not one of the world's prompts: {prompt:?}",
                        request.batch_id
                    )
                })?;
                Ok(self.labeler.score(&self.world, task, response) as f32)
            })
            .collect()
    }

    fn name(&self) -> String {
        "the gold labeler".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rlhf::rng::Rng;
    use rlhf::world::tasks::{pools, PoolSizes};

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
        let labeler = Labeler { disagreement: 0.0 };
        let mut rng = Rng::new(1);
        // Row 0 answers well, row 1 answers another task's demonstration.
        let answers = [
            labeler.demonstrate(&world, &tasks[0], &mut rng),
            labeler.demonstrate(&world, &tasks[2], &mut rng),
        ];
        let request = |prompts: [&str; 2]| ScoreRequest {
            batch_id: 7,
            prompts: prompts.iter().map(|p| p.to_string()).collect(),
            responses: answers.to_vec(),
            response_ids: vec![vec![]; 2],
            ..ScoreRequest::default()
        };
        let mut gold = GoldReward::new(world.clone(), labeler, tasks.clone());
        let scores = gold
            .score(&request([&tasks[0].prompt, &tasks[1].prompt]))
            .unwrap();
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
        let err = gold
            .score(&request(["Sing me a song.", &tasks[1].prompt]))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("row 0 of rollout batch 7") && err.contains("Sing me a song."),
            "{err}"
        );
    }
}
