//! An example reward plug-in: rewards responses that mention required keywords and stay
//! short, written against `rlhf_actors::reward::Reward` and served to a training run as a
//! remote reward node over the cluster. See README.md.

use clap::Parser;
use rlhf_actors::node::{serve_reward, NodeOptions};
use rlhf_actors::reward::{Reward, ScoreRequest};

/// The plug-in's state: what it checks.
struct KeywordReward {
    keywords: Vec<String>,
    max_words: usize,
}

impl Reward for KeywordReward {
    /// Per row: the share of keywords the response mentions (case-insensitive), minus 0.1
    /// per word beyond `max_words`.
    fn score(&mut self, request: &ScoreRequest) -> anyhow::Result<Vec<f32>> {
        Ok(request
            .responses
            .iter()
            .map(|response| {
                let text = response.to_lowercase();
                let hits = self
                    .keywords
                    .iter()
                    .filter(|k| text.contains(k.as_str()))
                    .count();
                let words = response.split_whitespace().count();
                let excess = words.saturating_sub(self.max_words) as f32;
                hits as f32 / self.keywords.len().max(1) as f32 - 0.1 * excess
            })
            .collect())
    }

    fn name(&self) -> String {
        "the keyword reward".into()
    }
}

/// Serve the keyword reward to a trainer whose `[ppo.reward]` has `kind = "remote"`.
#[derive(Parser)]
struct Args {
    /// The trainer's cluster address (its `[ppo.reward] listen`).
    #[arg(long, default_value = "127.0.0.1:4697")]
    connect: String,
    /// This node's name in the trainer's logs and errors.
    #[arg(long, default_value = "keyword-reward")]
    name: String,
    /// Comma-separated keywords a good response mentions.
    #[arg(long, value_delimiter = ',', required = true)]
    keywords: Vec<String>,
    /// Responses longer than this many words lose 0.1 per extra word.
    #[arg(long, default_value_t = 30)]
    max_words: usize,
}

fn main() {
    let args = Args::parse();
    let reward = KeywordReward {
        keywords: args.keywords.iter().map(|k| k.to_lowercase()).collect(),
        max_words: args.max_words,
    };
    let run = || -> anyhow::Result<()> {
        let options = NodeOptions {
            connect: args.connect.clone(),
            // The cluster secret comes from the environment, never the command line.
            secret: std::env::var("RLHF_CLUSTER_SECRET")
                .map_err(|_| anyhow::anyhow!("set RLHF_CLUSTER_SECRET to the cluster's secret"))?,
            name: args.name.clone(),
            tls: None,
        };
        serve_reward(Box::new(reward), options)
    };
    if let Err(e) = run() {
        eprintln!("error: {e:#}");
        std::process::exit(2);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keywords_count_and_long_answers_lose() {
        let mut reward = KeywordReward {
            keywords: vec!["river".into(), "town".into()],
            max_words: 4,
        };
        let request = ScoreRequest {
            responses: vec![
                "The River flows by the town.".into(),
                "A river.".into(),
                "Nothing here".into(),
            ],
            response_ids: vec![vec![]; 3],
            ..ScoreRequest::default()
        };
        let scores = reward.score(&request).unwrap();
        // Six words, two over the limit: 1.0 - 0.2.
        assert!((scores[0] - 0.8).abs() < 1e-6, "{scores:?}");
        assert_eq!(&scores[1..], [0.5, 0.0]);
    }
}
