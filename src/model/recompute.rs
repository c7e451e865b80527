//! Activation recomputation (gradient checkpointing) for training forwards. tch has no
//! custom autograd function, so the backward pass is split in two by hand:
//!
//! 1. [`forward`] runs the embedding with its graph, every block under no_grad (keeping
//!    only each block's input), and the final norm with its graph on a fresh leaf: the
//!    last block's output, detached, requiring grad. The caller's loss is built on top.
//! 2. The caller's `loss.backward()` fills the head's, the final norm's and the leaf's
//!    gradients (and the tied embedding's share as the LM head).
//! 3. [`Recompute::backward`] walks the blocks from last to first: reruns each on its
//!    stored input with the graph, backpropagates the gradient of its output (adding to
//!    its parameters' `.grad`, as a plain backward does) and takes its input's gradient on
//!    to the block before; last, through the embedding.
//!
//! Activation memory is then one [B, T, d] tensor per block plus one block's graph at a
//! time, for one more forward pass of the blocks.

use super::attention::Step;
use super::blocks::{reseed, Blocks, DropoutSeeds};
use super::rope::Rotation;
use tch::{Kind, Tensor};

/// What the backward pass of one checkpointed forward needs.
pub(super) struct Recompute {
    step: Step<'static>,
    rotation: Option<Rotation>,
    train: bool,
    seeds: Option<DropoutSeeds>,
    /// The first block's input, with its graph back to the embedding (if any).
    embedded: Tensor,
    /// Every block's input, detached; `inputs[0]` is `embedded`'s value.
    inputs: Vec<Tensor>,
    /// The last block's output as a leaf: the final norm's input.
    leaf: Tensor,
}

/// Whether autograd records (tch does not say; an op on a tensor requiring grad tells).
pub(super) fn grad_enabled() -> bool {
    let probe = Tensor::from(0f32).set_requires_grad(true);
    (&probe * 1.0).requires_grad()
}

/// Final hidden states [B, T, d] with a graph through the final norm alone, and what
/// [`Recompute::backward`] needs for the blocks and the embedding.
pub(super) fn forward(
    m: &dyn Blocks,
    ids: &Tensor,
    mut step: Step<'static>,
    (train, seeds): (bool, Option<DropoutSeeds>),
) -> (Tensor, Recompute) {
    let (embedded, rotation) = m.embed(ids, &step, train);
    let mut inputs = Vec::with_capacity(m.depth());
    let last = tch::no_grad(|| {
        let mut x = embedded.detach();
        for i in 0..m.depth() {
            reseed(seeds, i);
            let next = m.block(i, &x, rotation.as_ref(), &mut step, train);
            inputs.push(x);
            x = next;
        }
        x
    });
    reseed(seeds, m.depth());
    let leaf = last.set_requires_grad(true);
    let hidden = m.final_norm(&leaf);
    let recompute = Recompute {
        step,
        rotation,
        train,
        seeds,
        embedded,
        inputs,
        leaf,
    };
    (hidden, recompute)
}

impl Recompute {
    /// The blocks' and the embedding's share of the backward pass, after the loss's
    /// `backward()` reached the leaf; nothing when it did not (a forward whose output the
    /// loss does not use). Gradients add to what `.grad` holds, as a plain backward's do.
    pub(super) fn backward(mut self, m: &dyn Blocks) {
        let mut grad = self.leaf.grad();
        if !grad.defined() {
            return;
        }
        tch::with_grad(|| {
            for i in (0..m.depth()).rev() {
                reseed(self.seeds, i);
                // A leaf of its own: the stored input must not collect gradients across
                // calls, and needs a graph even when nothing before it trains.
                let input = self.inputs[i].detach().set_requires_grad(true);
                let out = m.block(
                    i,
                    &input,
                    self.rotation.as_ref(),
                    &mut self.step,
                    self.train,
                );
                // d/d(out) of sum(out * grad) is `grad`: a vector-Jacobian product that
                // accumulates into every parameter's `.grad`, which `run_backward` would not.
                (out * grad.detach()).sum(Kind::Float).backward();
                grad = input.grad();
                self.inputs[i] = Tensor::new();
            }
            // Through the embedding, unless nothing there trains (a frozen embedding
            // without dropout: no graph).
            if self.embedded.requires_grad() {
                (&self.embedded * grad.detach()).sum(Kind::Float).backward();
            }
        });
        // Leave the generator where the first forward left it.
        reseed(self.seeds, m.depth());
    }
}
