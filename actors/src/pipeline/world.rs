//! The run's world and prompt pools, regenerated from the seed by every stage that needs
//! them.

use super::layout::Layout;
use anyhow::bail;
use rlhf::config::{PipelineConfig, RunConfig};
use rlhf::world::tasks::{pools, PoolSizes, Pools};
use rlhf::world::World;

/// The world of the run and its prompt pools: regenerated from the seed by every stage
/// that needs them (the same seed always gives the same pools).
pub fn world(config: &RunConfig, pipeline: &PipelineConfig) -> anyhow::Result<(World, Pools)> {
    let world = World::generate(config.seed);
    let sizes = PoolSizes {
        sft: pipeline.sft_prompts,
        rm: pipeline.rm_prompts,
        ppo: pipeline.ppo_prompts,
        test: pipeline.test_prompts,
    };
    let pools = pools(&world, config.seed, &sizes)?;
    Ok((world, pools))
}

/// [`world`] for the stages after `data`, checked against the prompts that stage wrote: a
/// run directory made by another version of the world generator fails here, not later.
pub fn world_of_run(config: &RunConfig) -> anyhow::Result<(World, Pools)> {
    let pipeline = config.pipeline.as_ref().expect("checked by the pipeline");
    let (world, pools) = world(config, pipeline)?;
    let layout = Layout::new(&config.run_dir);
    let template = rlhf::template::ChatTemplate::builtin();
    for (file, tasks) in [
        ("ppo_prompts.jsonl", &pools.ppo),
        ("test_prompts.jsonl", &pools.test),
    ] {
        let path = layout.data(file);
        let written = rlhf::data::read_prompts(&path, &template, &Default::default())?;
        let mut same = written.len() == tasks.len();
        for (w, t) in written.iter().zip(tasks.iter()) {
            same = same && w.text == template.prompt(&t.prompt)?;
        }
        if !same {
            bail!(
                "{}: these prompts are not the world's of seed {} as this version of rlhf \
                 generates it; the run directory was made by another version: delete it",
                path.display(),
                config.seed
            );
        }
    }
    Ok((world, pools))
}
