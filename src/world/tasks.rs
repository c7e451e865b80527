//! Instruction tasks of the embedded world, in the paper's categories plus honesty and
//! harmlessness probes, and the disjoint prompt pools of the SFT, RM, PPO and test stages.
//!
//! Every task is short (prompts of at most ~50 words, ideal responses of 1-25 words) and
//! checkable: its `Spec` (in `spec.rs`) says what a right response contains, from the
//! prompt itself or from facts the pretraining prose states often. Tasks are built so that
//! a model can fail them by sampling, calibration, format or constraint errors (wrong
//! count, extra words, "I don't know" to a known question, answering about an unknown
//! entity, complying with harm), which PPO against a reward model can fix, not only by
//! missing knowledge.

use std::collections::HashSet;

pub use super::spec::{Category, Task};
use super::{chat, harm, knowledge, probes, prompts, rewrite, World};
use crate::rng::Rng;
use crate::{Error, Result};

/// One random task of `category` about `world`.
pub fn generate(world: &World, category: Category, rng: &mut Rng) -> Task {
    let (prompt, spec) = match category {
        Category::Brainstorming => prompts::brainstorming(world, rng),
        Category::Classification => prompts::classification(world, rng),
        Category::Extract => prompts::extract(world, rng),
        Category::Rewrite => rewrite::rewrite(rng),
        Category::Chat => chat::chat(world, rng),
        Category::Generation => knowledge::generation(world, rng),
        Category::ClosedQa => knowledge::closed_qa(world, rng),
        Category::OpenQa => knowledge::open_qa(world, rng),
        Category::Summarization => knowledge::summarization(world, rng),
        Category::Honesty => probes::honesty(world, rng),
        Category::Harmlessness => harm::harmlessness(world, rng),
    };
    Task {
        category,
        prompt,
        spec,
    }
}

/// Requested pool sizes (number of prompts).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolSizes {
    pub sft: usize,
    pub rm: usize,
    pub ppo: usize,
    pub test: usize,
}

/// The prompt pools of the four stages.
#[derive(Clone, Debug, PartialEq)]
pub struct Pools {
    pub sft: Vec<Task>,
    pub rm: Vec<Task>,
    pub ppo: Vec<Task>,
    pub test: Vec<Task>,
}

/// Disjoint pools (no prompt string in two pools, no duplicates within one) drawn from one
/// shuffled stream of generated tasks, deterministic in (world, seed, sizes). Each pool
/// holds every category in the fixed proportions of [`Category::percent`] (largest
/// remainders round, ties to the earlier category); PPO and test come from the same
/// distribution. Per category, distinct tasks are generated until all four pools are
/// served, then shuffled (so no pool gets the late, rarer prompts) and dealt out in the
/// order sft, rm, ppo, test. An error if a category cannot produce enough distinct prompts.
pub fn pools(world: &World, seed: u64, sizes: &PoolSizes) -> Result<Pools> {
    let mut rng = Rng::new(seed ^ world.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0x5441_534B); // "TASK"
    let wanted = [sizes.sft, sizes.rm, sizes.ppo, sizes.test];
    let per_pool: Vec<Vec<usize>> = wanted.iter().map(|&n| split(n)).collect();
    let mut seen: HashSet<String> = HashSet::new();
    let mut out: [Vec<Task>; 4] = Default::default();
    for (ci, category) in Category::ALL.into_iter().enumerate() {
        let need: usize = per_pool.iter().map(|p| p[ci]).sum();
        let mut crng = Rng::new(rng.next_u64());
        let mut stream = Vec::with_capacity(need);
        // Give up once new prompts have become rare: STALL draws in a row gave none.
        let mut misses = 0;
        while stream.len() < need && misses < STALL {
            let task = generate(world, category, &mut crng);
            if seen.insert(task.prompt.clone()) {
                stream.push(task);
                misses = 0;
            } else {
                misses += 1;
            }
        }
        if stream.len() < need {
            return Err(Error::Invalid(format!(
                "the embedded world makes only {} distinct {} prompts, {need} are needed; \
                 ask for smaller prompt pools",
                stream.len(),
                category.name()
            )));
        }
        crng.shuffle(&mut stream);
        let mut stream = stream.into_iter();
        for (pool, counts) in out.iter_mut().zip(&per_pool) {
            pool.extend(stream.by_ref().take(counts[ci]));
        }
    }
    for pool in &mut out {
        rng.shuffle(pool);
    }
    let [sft, rm, ppo, test] = out;
    Ok(Pools { sft, rm, ppo, test })
}

const STALL: usize = 20_000;

/// `n` split over the categories by [`Category::percent`], largest remainders first.
fn split(n: usize) -> Vec<usize> {
    let mut counts: Vec<usize> = Category::ALL
        .iter()
        .map(|c| n * c.percent() / 100)
        .collect();
    let mut order: Vec<usize> = (0..counts.len()).collect();
    // Stable sort: equal remainders keep category order.
    order.sort_by_key(|&i| std::cmp::Reverse(n * Category::ALL[i].percent() % 100));
    let short = n - counts.iter().sum::<usize>();
    for &i in order.iter().take(short) {
        counts[i] += 1;
    }
    counts
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::world::text::count;

    #[test]
    fn categories_round_trip_and_shares_sum_to_100() {
        for c in Category::ALL {
            assert_eq!(Category::from_name(c.name()), Some(c));
        }
        assert_eq!(Category::from_name("nope"), None);
        assert_eq!(
            Category::ALL.iter().map(|c| c.percent()).sum::<usize>(),
            100
        );
        let probes: usize = Category::ALL
            .iter()
            .filter(|c| c.is_probe())
            .map(|c| c.percent())
            .sum();
        assert_eq!(probes, 15);
        assert_eq!(split(100), Category::ALL.map(|c| c.percent()));
        for n in [0, 1, 7, 33, 999] {
            assert_eq!(split(n).iter().sum::<usize>(), n);
        }
        assert_eq!(split(10), [1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0]);
    }

    #[test]
    fn pools_are_deterministic_disjoint_and_proportional() {
        let w = World::generate(3);
        let sizes = PoolSizes {
            sft: 600,
            rm: 500,
            ppo: 800,
            test: 200,
        };
        let p = pools(&w, 9, &sizes).unwrap();
        assert_eq!(p, pools(&w, 9, &sizes).unwrap());
        assert_ne!(p.test, pools(&w, 10, &sizes).unwrap().test);
        let all = [&p.sft, &p.rm, &p.ppo, &p.test];
        for (pool, n) in all.iter().zip([600, 500, 800, 200]) {
            assert_eq!(pool.len(), n);
            for (c, want) in Category::ALL.iter().zip(split(n)) {
                assert_eq!(pool.iter().filter(|t| t.category == *c).count(), want);
            }
        }
        let mut prompts: HashSet<&str> = HashSet::new();
        for t in all.iter().flat_map(|p| p.iter()) {
            assert!(prompts.insert(&t.prompt), "duplicate prompt {:?}", t.prompt);
        }
        // Pools interleave categories.
        let head: HashSet<Category> = p.sft[..20].iter().map(|t| t.category).collect();
        assert!(head.len() >= 5, "{head:?}");
    }

    #[test]
    fn too_large_pools_are_an_error() {
        let w = World::generate(3);
        let sizes = PoolSizes {
            sft: 1_000_000,
            rm: 0,
            ppo: 0,
            test: 0,
        };
        let err = pools(&w, 1, &sizes).unwrap_err().to_string();
        assert!(err.contains("distinct"), "{err}");
    }

    #[test]
    fn every_category_has_thousands_of_short_ascii_prompts() {
        for seed in [1, 2] {
            let w = World::generate(seed);
            let mut rng = Rng::new(seed);
            let mut short = Vec::new();
            for c in Category::ALL {
                let mut distinct = HashSet::new();
                let mut longest = 0;
                for _ in 0..12_000 {
                    let t = generate(&w, c, &mut rng);
                    assert!(t.prompt.is_ascii(), "{:?}", t.prompt);
                    assert!(!t.prompt.contains('{'), "{:?}", t.prompt);
                    longest = longest.max(count(&t.prompt));
                    distinct.insert(t.prompt);
                }
                assert!(longest <= 50, "{c:?}: a prompt of {longest} words");
                if distinct.len() < 2000 {
                    short.push((c, distinct.len()));
                }
            }
            assert!(
                short.is_empty(),
                "too few distinct prompts of 12000: {short:?}"
            );
        }
    }
}
