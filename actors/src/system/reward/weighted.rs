//! `kind = "weighted"`: the weighted sum of several rewards, each checked on its own so an
//! error names the part that failed.

use super::contract::{checked_scores, Reward, ScoreRequest};
use anyhow::Context;

pub struct Weighted {
    pub parts: Vec<(f64, Box<dyn Reward>)>,
}

impl Reward for Weighted {
    fn score(&mut self, request: &ScoreRequest) -> anyhow::Result<Vec<f32>> {
        let mut total = vec![0f64; request.len()];
        for (weight, part) in &mut self.parts {
            let name = part.name();
            let scores = part.score(request).with_context(|| name.clone())?;
            let scores = checked_scores(&name, request, scores)?;
            for (t, s) in total.iter_mut().zip(scores) {
                *t += *weight * s as f64;
            }
        }
        Ok(total.into_iter().map(|t| t as f32).collect())
    }

    fn name(&self) -> String {
        let names: Vec<String> = self.parts.iter().map(|(_, p)| p.name()).collect();
        format!("the weighted reward ({})", names.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Constant(Vec<f32>);

    impl Reward for Constant {
        fn score(&mut self, _: &ScoreRequest) -> anyhow::Result<Vec<f32>> {
            Ok(self.0.clone())
        }
    }

    #[test]
    fn the_sum_is_weighted_and_a_bad_part_is_named() {
        let request = ScoreRequest {
            response_ids: vec![vec![]; 2],
            ..ScoreRequest::default()
        };
        let mut w = Weighted {
            parts: vec![
                (1.0, Box::new(Constant(vec![1.0, 2.0]))),
                (-0.5, Box::new(Constant(vec![4.0, 0.0]))),
            ],
        };
        assert_eq!(w.score(&request).unwrap(), [-1.0, 2.0]);
        w.parts.push((1.0, Box::new(Constant(vec![1.0]))));
        let e = w.score(&request).unwrap_err().to_string();
        assert!(
            e.starts_with("reward returned 1 scores for the 2 rows"),
            "{e}"
        );
    }
}
