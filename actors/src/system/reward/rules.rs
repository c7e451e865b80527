//! `kind = "rules"`: a verifier on the response text. Each row scores the sum of the rules
//! it satisfies.

use super::contract::{Reward, ScoreRequest};
use anyhow::Context;
use regex::Regex;
use rlhf::config::RuleConfig;
use rlhf::data::JsonlReader;
use std::collections::HashMap;

enum Rule {
    Regex(Regex, f64),
    Length(usize, usize, f64),
    ExactMatch(HashMap<String, String>, f64),
}

pub struct Rules {
    rules: Vec<Rule>,
}

impl Rules {
    /// Compiles the patterns and reads the answer files; errors name the rule.
    pub fn new(configs: &[RuleConfig]) -> anyhow::Result<Rules> {
        let mut rules = Vec::with_capacity(configs.len());
        for (i, config) in configs.iter().enumerate() {
            rules.push(match config {
                RuleConfig::Regex { pattern, score } => Rule::Regex(
                    Regex::new(pattern)
                        .with_context(|| format!("ppo.reward rules[{i}]: pattern {pattern:?}"))?,
                    *score,
                ),
                RuleConfig::Length {
                    min_words,
                    max_words,
                    score,
                } => Rule::Length(*min_words, *max_words, *score),
                RuleConfig::ExactMatch { answers, score } => {
                    let mut by_prompt = HashMap::new();
                    for record in JsonlReader::open(answers)? {
                        let r = record?;
                        by_prompt.insert(
                            r.str("prompt")?.to_string(),
                            r.str("answer")?.trim().to_string(),
                        );
                    }
                    Rule::ExactMatch(by_prompt, *score)
                }
            });
        }
        Ok(Rules { rules })
    }

    fn row(&self, prompt: &str, response: &str) -> f64 {
        self.rules
            .iter()
            .map(|rule| match rule {
                Rule::Regex(re, score) if re.is_match(response) => *score,
                Rule::Length(min, max, score) => {
                    let words = response.split_whitespace().count();
                    if (*min..=*max).contains(&words) {
                        *score
                    } else {
                        0.0
                    }
                }
                Rule::ExactMatch(answers, score)
                    if answers.get(prompt).is_some_and(|a| a == response.trim()) =>
                {
                    *score
                }
                _ => 0.0,
            })
            .sum()
    }
}

impl Reward for Rules {
    fn score(&mut self, request: &ScoreRequest) -> anyhow::Result<Vec<f32>> {
        Ok(request
            .prompts
            .iter()
            .zip(&request.responses)
            .map(|(p, r)| self.row(p, r) as f32)
            .collect())
    }

    fn name(&self) -> String {
        "the rules reward".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(prompts: &[&str], responses: &[&str]) -> ScoreRequest {
        ScoreRequest {
            prompts: prompts.iter().map(|s| s.to_string()).collect(),
            responses: responses.iter().map(|s| s.to_string()).collect(),
            response_ids: vec![vec![]; responses.len()],
            ..ScoreRequest::default()
        }
    }

    #[test]
    fn each_row_scores_the_rules_it_satisfies() {
        let dir = std::env::temp_dir().join(format!("rlhf-rules-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let answers = dir.join("answers.jsonl");
        std::fs::write(&answers, "{\"prompt\": \"2+2?\", \"answer\": \"4\"}\n").unwrap();
        let mut rules = Rules::new(&[
            RuleConfig::Regex {
                pattern: "^[A-Z]".into(),
                score: 1.0,
            },
            RuleConfig::Length {
                min_words: 2,
                max_words: 3,
                score: 0.5,
            },
            RuleConfig::ExactMatch {
                answers,
                score: 2.0,
            },
        ])
        .unwrap();
        let scores = rules
            .score(&request(
                &["a", "a", "a", "2+2?", "2+2?"],
                &["Hello there", "hello", "One two three four", " 4 ", "5"],
            ))
            .unwrap();
        assert_eq!(scores, [1.5, 0.0, 1.0, 2.0, 0.0]);
        let e = Rules::new(&[RuleConfig::Regex {
            pattern: "(".into(),
            score: 1.0,
        }])
        .err()
        .unwrap();
        assert!(
            format!("{e:#}").contains("rules[0]: pattern \"(\""),
            "{e:#}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
