//! A PPO update with gradient checkpointing on both models equals one without: with one
//! minibatch (the old figures' passes reused by the first step), with several over two
//! epochs, and with PPO-ptx's pretraining batches.

use super::tests::{frozen_copy, learner, rollout};
use super::update_tests::ptx_batches;
use super::*;

fn copy_weights(from: &PpoLearner, to: &mut PpoLearner) {
    load_weights(&mut to.policy, &from.policy_weights()).unwrap();
    if let (Some(a), Some(b)) = (&from.critic, &mut to.critic) {
        load_weights(&mut b.model, &a.model.trainable_copy()).unwrap();
    }
}

#[test]
fn a_checkpointed_update_equals_a_plain_one() {
    for (minibatches, ptx_coef) in [(1, 0.0), (2, 0.5)] {
        let ppo = PpoConfig {
            ppo_epochs: 2,
            minibatches,
            ptx_coef,
            ..PpoConfig::default()
        };
        let (plain, mut checkpointed) = (learner(&ppo, 1e-3), learner(&ppo, 1e-3));
        // The same start (tests in parallel share libtorch's seeded generator).
        copy_weights(&plain, &mut checkpointed);
        let mut plain = plain;
        checkpointed.set_gradient_checkpointing(true);
        assert!(checkpointed.policy().gradient_checkpointing());
        assert!(checkpointed.value().unwrap().gradient_checkpointing());
        let reference = frozen_copy(&plain);
        let mut rng = Rng::new(5);
        let ptx = match ptx_coef > 0.0 {
            true => ptx_batches(&mut rng, ppo.optimizer_steps(8)),
            false => vec![],
        };
        for _ in 0..2 {
            let batch = rollout(&plain, &reference, &mut rng, 8, 6);
            // Off-policy, so ratios, advantages and clipping all matter.
            let _ = batch
                .behaviour_logprobs
                .shallow_clone()
                .g_add_scalar_(-0.05);
            let seed = rng.next_u64();
            let a = plain
                .update(&batch, &ptx, &mut Rng::new(seed), 1e-2)
                .unwrap();
            let b = checkpointed
                .update(&batch, &ptx, &mut Rng::new(seed), 1e-2)
                .unwrap();
            for (x, y, what) in [
                (a.policy_loss, b.policy_loss, "policy loss"),
                (a.value_loss, b.value_loss, "value loss"),
                (a.grad_norm_policy, b.grad_norm_policy, "policy grad norm"),
                (a.grad_norm_value, b.grad_norm_value, "value grad norm"),
                (
                    a.ptx_loss.unwrap_or(0.0),
                    b.ptx_loss.unwrap_or(0.0),
                    "ptx loss",
                ),
            ] {
                assert!(
                    (x - y).abs() <= 1e-5 * (1.0 + y.abs()),
                    "{minibatches} minibatches: {what}: {x} vs {y}"
                );
            }
            assert!(a.grad_norm_policy > 0.0 && a.grad_norm_value > 0.0);
        }
        for (model_a, model_b) in [
            (plain.policy(), checkpointed.policy()),
            (plain.value().unwrap(), checkpointed.value().unwrap()),
        ] {
            let vars_b = model_b.var_store().variables();
            for (name, var) in model_a.var_store().variables() {
                let diff = (&var - &vars_b[&name]).abs().max().double_value(&[]);
                // Steps are ~lr = 1e-2 per weight; kernel-order noise is far below (see
                // `a_shared_first_pass_trains_as_separate_passes_do`); a missing block
                // gradient would leave a weight a whole step behind.
                assert!(
                    diff < 1e-4,
                    "{minibatches} minibatches: {name} differs by {diff}"
                );
            }
        }
    }
}
