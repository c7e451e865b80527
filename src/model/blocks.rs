//! Every backbone cut into its parts: the embedding (the first block's input), the
//! transformer blocks one at a time, and the final norm. The plain forward runs them in
//! a row; a checkpointed training forward ([`super::recompute`]) runs the blocks without
//! a graph and again, one at a time, in the backward pass.
//!
//! With dropout, each block of a training forward draws its masks from libtorch's
//! generator reseeded with a seed of its own ([`DropoutSeeds`]), in both forwards: that is
//! what lets a recomputed block draw the masks its first run drew (tch cannot read the
//! generator's state back, only seed it).

use super::attention::Step;
use super::rope::Rotation;
use crate::rng::Rng;
use tch::{Device, Kind, Tensor};

/// One backbone, part by part.
pub(super) trait Blocks {
    /// The first block's input [B, T, d] (embeddings, scaled or dropped out where the
    /// architecture says), and the rotation every block applies (rotary backbones).
    fn embed(&self, ids: &Tensor, step: &Step, train: bool) -> (Tensor, Option<Rotation>);

    /// Block `i` on its input `x` [B, T, d]; its output is the next block's input.
    fn block(
        &self,
        i: usize,
        x: &Tensor,
        rotation: Option<&Rotation>,
        step: &mut Step,
        train: bool,
    ) -> Tensor;

    /// The norm after the last block.
    fn final_norm(&self, x: &Tensor) -> Tensor;

    fn depth(&self) -> usize;
}

/// Final hidden states [B, T, d]: the embedding, every block, the final norm.
/// `seeds`: [`DropoutSeeds::draw`] for a forward that draws dropout masks.
pub(super) fn forward(
    m: &dyn Blocks,
    ids: &Tensor,
    mut step: Step,
    (train, seeds): (bool, Option<DropoutSeeds>),
) -> Tensor {
    let (mut x, rotation) = m.embed(ids, &step, train);
    for i in 0..m.depth() {
        reseed(seeds, i);
        x = m.block(i, &x, rotation.as_ref(), &mut step, train);
    }
    reseed(seeds, m.depth());
    step.finish();
    m.final_norm(&x)
}

/// The seeds of one training forward with dropout: one per block, and one (index `depth`)
/// the generator is left at after the last block, so that what draws next does not depend
/// on whether the blocks were recomputed in between.
#[derive(Clone, Copy)]
pub(super) struct DropoutSeeds {
    base: u64,
}

impl DropoutSeeds {
    /// Drawn from libtorch's generator (which the trainer seeds per step), so runs stay
    /// deterministic; none when the forward draws no mask (the generator is then left
    /// alone): see `Model::draws_dropout`.
    pub(super) fn draw(dropout: bool) -> Option<DropoutSeeds> {
        dropout.then(|| {
            let draw = Tensor::randint(i64::MAX, [1], (Kind::Int64, Device::Cpu));
            DropoutSeeds {
                base: draw.int64_value(&[0]) as u64,
            }
        })
    }
}

/// Reseeds libtorch's generator for block `i` (or, at `depth`, for what follows); nothing
/// without seeds.
pub(super) fn reseed(seeds: Option<DropoutSeeds>, i: usize) {
    if let Some(s) = seeds {
        const GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;
        let start = s.base ^ (i as u64 + 1).wrapping_mul(GAMMA);
        tch::manual_seed(Rng::new(start).next_u64() as i64);
    }
}
