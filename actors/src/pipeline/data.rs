//! The pipeline's first stage: from the seed alone, the tokenizer and the randomly
//! initialised model (as `rlhf init`), the pretraining prose and its held-out part, the
//! labeler's demonstrations for SFT, and the PPO and test prompts.

use super::layout::Layout;
use crate::stages::run_dir::write_jsonl;
use rlhf::config::RunConfig;
use rlhf::rng::Rng;
use rlhf::world::labeler::Labeler;
use rlhf::world::prose;
use rlhf::world::tasks::Task;
use serde_json::{json, Value};
use std::path::Path;
use tracing::info;

pub fn build(config: &RunConfig, config_path: &Path) -> anyhow::Result<()> {
    let pipeline = RunConfig::section(&config.pipeline, "pipeline", config_path)?;
    let layout = Layout::new(&config.run_dir);
    crate::pipeline::init::build(config, config_path)?;
    // The corpus is prefix-stable: the documents after the tokenizer's are unseen prose.
    let corpus = prose::corpus(
        config.seed,
        config.world.documents + pipeline.heldout_documents,
    );
    let (train, held_out) = corpus.split_at(config.world.documents);
    let text = |docs: &[String]| docs.iter().map(|d| json!({"text": d})).collect::<Vec<_>>();
    write_jsonl(&layout.data("pretrain.jsonl"), &text(train))?;
    write_jsonl(&layout.data("prose_heldout.jsonl"), &text(held_out))?;

    let (world, pools) = super::world::world(config, pipeline)?;
    let labeler = Labeler {
        disagreement: pipeline.disagreement,
    };
    let mut rng = Rng::new(config.seed ^ 0xde30);
    let demos: Vec<Value> = pools
        .sft
        .iter()
        .map(|t| {
            json!({"prompt": t.prompt, "response": labeler.demonstrate(&world, t, &mut rng),
                   "category": t.category.name()})
        })
        .collect();
    write_jsonl(&layout.data("sft.jsonl"), &demos)?;
    write_jsonl(&layout.data("rm_prompts.jsonl"), &prompts(&pools.rm))?;
    write_jsonl(&layout.data("ppo_prompts.jsonl"), &prompts(&pools.ppo))?;
    write_jsonl(&layout.data("test_prompts.jsonl"), &prompts(&pools.test))?;
    info!(
        demonstrations = pools.sft.len(),
        rm_prompts = pools.rm.len(),
        ppo_prompts = pools.ppo.len(),
        test_prompts = pools.test.len(),
        dir = %layout.data("").display(),
        "wrote the world's data"
    );
    Ok(())
}

fn prompts(tasks: &[Task]) -> Vec<Value> {
    tasks
        .iter()
        .map(|t| json!({"prompt": t.prompt, "category": t.category.name()}))
        .collect()
}
