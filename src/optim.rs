//! AdamW with decoupled weight decay (PyTorch's `torch.optim.AdamW` semantics), written
//! here rather than taken from `tch::nn::Optimizer` so that its whole state (both moments
//! and the step count) can be checkpointed and restored for an exact resume.
//!
//! Moments are kept in f32 whatever the parameters' dtype. Parameters in bf16/f16 also get
//! an f32 master copy that the update is applied to and that is copied back (rounded) into
//! the parameter: mixed precision, where updates far smaller than a bf16 ulp still add up.
//! The learning rate is passed to every [`AdamW::step`] by the caller, which takes it from
//! [`crate::schedule`].

use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use tch::{Kind, Tensor};

/// The optimiser section of a stage's configuration.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OptimizerConfig {
    /// Peak (initial) learning rate; the schedule scales it.
    pub lr: f64,
    /// Decay rate of the first moment, in [0, 1).
    pub beta1: f64,
    /// Decay rate of the second moment, in [0, 1).
    pub beta2: f64,
    /// Added to the denominator for numerical stability (> 0).
    pub eps: f64,
    /// Decoupled weight decay, applied only to matrices (tensors with 2 or more dims).
    pub weight_decay: f64,
    /// Global gradient-norm clipping threshold; 0 disables clipping.
    pub max_grad_norm: f64,
}

impl Default for OptimizerConfig {
    fn default() -> Self {
        OptimizerConfig {
            lr: 1e-4,
            beta1: 0.9,
            beta2: 0.95,
            eps: 1e-8,
            weight_decay: 0.0,
            max_grad_norm: 1.0,
        }
    }
}

impl OptimizerConfig {
    /// Checks every field; the message starts with the field's name.
    pub fn validate(&self) -> std::result::Result<(), String> {
        if !(self.lr > 0.0 && self.lr.is_finite()) {
            return Err(format!("lr must be positive and finite, got {}", self.lr));
        }
        for (name, value) in [("beta1", self.beta1), ("beta2", self.beta2)] {
            if !(0.0..1.0).contains(&value) {
                return Err(format!("{name} must be in [0, 1), got {value}"));
            }
        }
        if !(self.eps > 0.0 && self.eps.is_finite()) {
            return Err(format!("eps must be positive and finite, got {}", self.eps));
        }
        if !(self.weight_decay >= 0.0 && self.weight_decay.is_finite()) {
            return Err(format!(
                "weight_decay must be non-negative and finite, got {}",
                self.weight_decay
            ));
        }
        if !(self.max_grad_norm >= 0.0 && self.max_grad_norm.is_finite()) {
            return Err(format!(
                "max_grad_norm must be non-negative and finite (0 disables clipping), got {}",
                self.max_grad_norm
            ));
        }
        Ok(())
    }
}

/// One parameter and its moments.
struct Slot {
    name: String,
    param: Tensor,
    /// First moment, f32, same shape and device as `param`.
    exp_avg: Tensor,
    /// Second moment, f32, same shape and device as `param`.
    exp_avg_sq: Tensor,
    /// Decoupled weight decay applies (the tensor has 2 or more dims).
    decay: bool,
    /// f32 master weights of a bf16/f16 parameter; None for f32 parameters.
    master: Option<Tensor>,
}

/// AdamW over a fixed list of named parameters.
pub struct AdamW {
    slots: Vec<Slot>,
    beta1: f64,
    beta2: f64,
    eps: f64,
    weight_decay: f64,
    steps: u64,
}

impl AdamW {
    /// `params`: the trainable variables with their names (from `VarStore::variables()`);
    /// decoupled weight decay applies only to tensors with dim >= 2 (not biases / norm
    /// weights). The parameters are shared with the caller (shallow handles), so updates
    /// are visible through the model. `config.lr` and `config.max_grad_norm` are not used
    /// here: the caller passes the scheduled rate to [`AdamW::step`] and the threshold to
    /// [`AdamW::clip_grad_norm`].
    pub fn new(mut params: Vec<(String, Tensor)>, config: &OptimizerConfig) -> AdamW {
        // A fixed order (callers often collect a HashMap, whose order changes per process)
        // makes the global gradient norm, a float sum, the same in every run.
        params.sort_by(|a, b| a.0.cmp(&b.0));
        let slots = params
            .into_iter()
            .map(|(name, param)| {
                let (shape, device) = (param.size(), param.device());
                let master =
                    (param.kind() != Kind::Float).then(|| param.detach().to_kind(Kind::Float));
                Slot {
                    master,
                    exp_avg: Tensor::zeros(&shape, (Kind::Float, device)),
                    exp_avg_sq: Tensor::zeros(&shape, (Kind::Float, device)),
                    decay: shape.len() >= 2,
                    name,
                    param,
                }
            })
            .collect();
        AdamW {
            slots,
            beta1: config.beta1,
            beta2: config.beta2,
            eps: config.eps,
            weight_decay: config.weight_decay,
            steps: 0,
        }
    }

    /// Zeroes every defined gradient (in place; gradients stay allocated).
    pub fn zero_grad(&mut self) {
        for slot in &mut self.slots {
            slot.param.zero_grad();
        }
    }

    /// Global L2 norm of all gradients before clipping; scales them down to max_norm when
    /// max_norm > 0 and the norm exceeds it. Returns the pre-clip norm (f64). Params
    /// without grad are skipped. This is the optimiser's one host sync.
    ///
    /// A non-finite norm is returned without touching the gradients: the caller should
    /// skip the step (a NaN/inf gradient cannot be repaired by scaling).
    pub fn clip_grad_norm(&mut self, max_norm: f64) -> f64 {
        tch::no_grad(|| {
            let grads: Vec<Tensor> = self
                .slots
                .iter()
                .map(|s| s.param.grad())
                .filter(Tensor::defined)
                .collect();
            let Some(first) = grads.first() else {
                return 0.0;
            };
            let device = first.device();
            let norms: Vec<Tensor> = grads
                .iter()
                .map(|g| g.norm_scalaropt_dtype(2.0, Kind::Float).to_device(device))
                .collect();
            let total = Tensor::stack(&norms, 0)
                .norm_scalaropt_dtype(2.0, Kind::Float)
                .double_value(&[]);
            if max_norm > 0.0 && total.is_finite() && total > max_norm {
                let coef = max_norm / total;
                for mut g in grads {
                    let _ = g.g_mul_scalar_(coef);
                }
            }
            total
        })
    }

    /// One update at learning rate `lr` (the schedule supplies it), with bias correction,
    /// under no_grad, moments kept in f32 even when params are bf16 (the update goes to the
    /// f32 master weights, which are copied back). Parameters whose gradient is undefined
    /// are left alone (their moments too); the bias correction uses the optimiser's global
    /// step count.
    pub fn step(&mut self, lr: f64) {
        self.steps += 1;
        let t = self.steps as f64;
        let (b1, b2) = (self.beta1, self.beta2);
        let bias1 = 1.0 - b1.powf(t);
        let bias2_sqrt = (1.0 - b2.powf(t)).sqrt();
        let step_size = lr / bias1;
        // p -= step_size * m / (sqrt(v) / bias2_sqrt + eps), written as one addcdiv_ by
        // folding -1/step_size into the denominator: d = sqrt(v) * c1 + c2.
        let c1 = -1.0 / (step_size * bias2_sqrt);
        let c2 = -self.eps / step_size;
        let decay_factor = 1.0 - lr * self.weight_decay;
        let apply_update = lr > 0.0;
        tch::no_grad(|| {
            for slot in &mut self.slots {
                let grad = slot.param.grad();
                if !grad.defined() {
                    continue;
                }
                let grad = if grad.kind() == Kind::Float {
                    grad
                } else {
                    grad.to_kind(Kind::Float)
                };
                let _ = slot.exp_avg.lerp_(&grad, 1.0 - b1);
                let _ = slot.exp_avg_sq.lerp_(&grad.square(), 1.0 - b2);
                if !apply_update {
                    continue;
                }
                let mut denom = slot.exp_avg_sq.sqrt();
                let _ = denom.g_mul_scalar_(c1);
                let _ = denom.g_add_scalar_(c2);
                let decay = slot.decay && self.weight_decay != 0.0;
                let target = slot.master.as_mut().unwrap_or(&mut slot.param);
                if decay {
                    let _ = target.g_mul_scalar_(decay_factor);
                }
                let _ = target.addcdiv_(&slot.exp_avg, &denom);
                if let Some(master) = &slot.master {
                    slot.param.copy_(master);
                }
            }
        });
    }

    /// Number of steps taken (restored by [`AdamW::load_state`]).
    pub fn steps(&self) -> u64 {
        self.steps
    }

    /// Moments, master weights and step count as named tensors ("exp_avg.<param>",
    /// "exp_avg_sq.<param>", "master.<param>" for bf16/f16 parameters, "step": a 0-dim
    /// i64) for checkpoints. The moments are the live tensors (shallow
    /// handles, as PyTorch's `state_dict`): write them out before the next step.
    pub fn state(&self) -> Vec<(String, Tensor)> {
        let mut out = Vec::with_capacity(2 * self.slots.len() + 1);
        for slot in &self.slots {
            out.push((
                format!("exp_avg.{}", slot.name),
                slot.exp_avg.shallow_clone(),
            ));
            out.push((
                format!("exp_avg_sq.{}", slot.name),
                slot.exp_avg_sq.shallow_clone(),
            ));
            if let Some(master) = &slot.master {
                out.push((format!("master.{}", slot.name), master.shallow_clone()));
            }
        }
        out.push(("step".to_string(), Tensor::from(self.steps as i64)));
        out
    }

    /// Restores what [`AdamW::state`] returned (on any device, in any float dtype). Every
    /// parameter's two moments and "step" must be present with the right shapes, and no
    /// moment may name an unknown parameter; otherwise an error names the tensor and
    /// nothing is changed. Other keys (e.g. model weights in the same file) are ignored.
    /// A bf16/f16 parameter without "master.<param>" (a state saved by an f32 run) takes
    /// its master weights from the parameter itself, so load the weights first.
    pub fn load_state(&mut self, tensors: &BTreeMap<String, Tensor>) -> Result<()> {
        let invalid = |what: String| Error::Invalid(format!("optimizer state: {what}"));
        let step = tensors
            .get("step")
            .ok_or_else(|| invalid("missing tensor `step`".into()))?;
        if step.numel() != 1 {
            return Err(invalid(format!(
                "tensor `step` must hold one value, has shape {:?}",
                step.size()
            )));
        }
        let step = step.to_kind(Kind::Int64).reshape([1i64]).int64_value(&[0]);
        if step < 0 {
            return Err(invalid(format!("tensor `step` is negative ({step})")));
        }
        let mut moments = Vec::with_capacity(self.slots.len());
        for slot in &self.slots {
            let shape = slot.param.size();
            let mut pair = Vec::with_capacity(2);
            for prefix in ["exp_avg", "exp_avg_sq"] {
                let key = format!("{prefix}.{}", slot.name);
                let tensor = tensors
                    .get(&key)
                    .ok_or_else(|| invalid(format!("missing tensor `{key}`")))?;
                if tensor.size() != shape {
                    return Err(invalid(format!(
                        "tensor `{key}` has shape {:?}, the parameter has {:?}",
                        tensor.size(),
                        shape
                    )));
                }
                pair.push(tensor);
            }
            let key = format!("master.{}", slot.name);
            let master = match tensors.get(&key) {
                Some(t) if t.size() != shape => {
                    return Err(invalid(format!(
                        "tensor `{key}` has shape {:?}, the parameter has {:?}",
                        t.size(),
                        shape
                    )))
                }
                found => found,
            };
            moments.push((pair, master));
        }
        for key in tensors.keys() {
            let name = key
                .strip_prefix("exp_avg_sq.")
                .or_else(|| key.strip_prefix("exp_avg."))
                .or_else(|| key.strip_prefix("master."));
            if let Some(name) = name {
                if !self.slots.iter().any(|s| s.name == name) {
                    return Err(invalid(format!("tensor `{key}` names no parameter")));
                }
            }
        }
        tch::no_grad(|| {
            for (slot, (pair, master)) in self.slots.iter_mut().zip(moments) {
                slot.exp_avg.copy_(pair[0]);
                slot.exp_avg_sq.copy_(pair[1]);
                if let Some(own) = &mut slot.master {
                    own.copy_(master.unwrap_or(&slot.param));
                }
            }
        });
        self.steps = step as u64;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A leaf tensor that requires grad.
    fn leaf(values: &[f32], shape: &[i64]) -> Tensor {
        Tensor::from_slice(values)
            .reshape(shape)
            .set_requires_grad(true)
    }

    fn values(t: &Tensor) -> Vec<f64> {
        Vec::<f64>::try_from(t.detach().to_kind(Kind::Double).reshape([-1])).unwrap()
    }

    /// Sets `p.grad` to `g` (after zero_grad) through a backward pass.
    fn set_grads(opt: &mut AdamW, params: &[&Tensor], grads: &[Vec<f32>]) {
        opt.zero_grad();
        let loss: Tensor = params
            .iter()
            .zip(grads)
            .map(|(p, g)| {
                let g = Tensor::from_slice(g).reshape(p.size()).to_kind(p.kind());
                (*p * g).sum(Kind::Float)
            })
            .sum();
        loss.backward();
    }

    /// The textbook AdamW recurrence on scalars, in f64.
    struct Naive {
        p: Vec<f64>,
        m: Vec<f64>,
        v: Vec<f64>,
        t: i32,
    }

    impl Naive {
        fn new(p: &[f32]) -> Naive {
            Naive {
                p: p.iter().map(|&x| x as f64).collect(),
                m: vec![0.0; p.len()],
                v: vec![0.0; p.len()],
                t: 0,
            }
        }

        // Indexed on purpose: the formulas read as written in the paper.
        #[allow(clippy::needless_range_loop)]
        fn step(&mut self, g: &[f64], lr: f64, c: &OptimizerConfig, decay: bool) {
            self.t += 1;
            for i in 0..self.p.len() {
                if decay {
                    self.p[i] -= lr * c.weight_decay * self.p[i];
                }
                self.m[i] = c.beta1 * self.m[i] + (1.0 - c.beta1) * g[i];
                self.v[i] = c.beta2 * self.v[i] + (1.0 - c.beta2) * g[i] * g[i];
                let m_hat = self.m[i] / (1.0 - c.beta1.powi(self.t));
                let v_hat = self.v[i] / (1.0 - c.beta2.powi(self.t));
                self.p[i] -= lr * m_hat / (v_hat.sqrt() + c.eps);
            }
        }
    }

    fn assert_close(got: &[f64], want: &[f64], tol: f64) {
        assert_eq!(got.len(), want.len());
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            assert!(
                (g - w).abs() <= tol * (1.0 + w.abs()),
                "element {i}: got {g}, want {w} (all: {got:?} vs {want:?})"
            );
        }
    }

    /// Gradient of 0.5*p^2 + c*p at step k: p + c_k (depends on the current parameters).
    fn grad_at(p: &[f64], k: usize) -> Vec<f64> {
        p.iter()
            .enumerate()
            .map(|(i, x)| x + ((i + 2 * k) as f64 * 0.37).sin())
            .collect()
    }

    #[test]
    fn matches_naive_adamw_for_several_steps() {
        let config = OptimizerConfig {
            weight_decay: 0.1,
            ..OptimizerConfig::default()
        };
        let w0 = [0.5f32, -1.0, 0.25, 2.0, -0.75, 0.1];
        let b0 = [0.3f32, -0.2, 0.0];
        let w = leaf(&w0, &[2, 3]);
        let b = leaf(&b0, &[3]);
        let mut opt = AdamW::new(
            vec![
                ("w".into(), w.shallow_clone()),
                ("b".into(), b.shallow_clone()),
            ],
            &config,
        );
        let (mut nw, mut nb) = (Naive::new(&w0), Naive::new(&b0));
        let lrs = [1e-2, 5e-3, 2e-2, 1e-2, 1e-3, 3e-2];
        for (k, &lr) in lrs.iter().enumerate() {
            let gw = grad_at(&nw.p, k);
            let gb = grad_at(&nb.p, k + 7);
            let f32s = |v: &[f64]| v.iter().map(|&x| x as f32).collect::<Vec<_>>();
            set_grads(&mut opt, &[&w, &b], &[f32s(&gw), f32s(&gb)]);
            opt.step(lr);
            nw.step(&gw, lr, &config, true);
            nb.step(&gb, lr, &config, false);
            assert_close(&values(&w), &nw.p, 1e-5);
            assert_close(&values(&b), &nb.p, 1e-5);
        }
        assert_eq!(opt.steps(), lrs.len() as u64);
        let state: BTreeMap<_, _> = opt.state().into_iter().collect();
        assert_close(&values(&state["exp_avg.w"]), &nw.m, 1e-5);
        assert_close(&values(&state["exp_avg_sq.b"]), &nb.v, 1e-5);
    }

    /// Steps of lr 1e-3 on a weight of 1.0 are each below half a bf16 ulp (2^-8): rounded
    /// into the bf16 weight alone they would vanish; the f32 master weights add them up.
    #[test]
    fn bf16_updates_below_one_ulp_accumulate_in_master_weights() {
        let config = OptimizerConfig::default();
        let w32 = leaf(&[1.0], &[1]);
        let w16 = Tensor::from_slice(&[1.0f32])
            .to_kind(Kind::BFloat16)
            .set_requires_grad(true);
        let mut o32 = AdamW::new(vec![("w".into(), w32.shallow_clone())], &config);
        let mut o16 = AdamW::new(vec![("w".into(), w16.shallow_clone())], &config);
        for _ in 0..40 {
            set_grads(&mut o32, &[&w32], &[vec![1.0]]);
            set_grads(&mut o16, &[&w16], &[vec![1.0]]);
            o32.step(1e-3);
            o16.step(1e-3);
        }
        let (full, half) = (values(&w32)[0], values(&w16)[0]);
        assert!((full - 0.96).abs() < 1e-3, "f32 run moved to {full}");
        // The bf16 weight is the f32 master rounded: within half an ulp (2^-9) of the f32 run.
        assert!(
            (half - full).abs() <= 1.0 / 512.0,
            "bf16 {half} vs f32 {full}"
        );
        let master = o16
            .state()
            .into_iter()
            .find(|(n, _)| n == "master.w")
            .unwrap()
            .1;
        assert_close(&values(&master), &values(&w32), 1e-6);
    }

    /// Saving and loading the state mid-run (master weights included) continues a bf16
    /// run bit for bit.
    #[test]
    fn bf16_state_round_trip_continues_exactly() {
        let config = OptimizerConfig::default();
        let make = || {
            Tensor::from_slice(&[1.0f32, -0.5, 0.25])
                .to_kind(Kind::BFloat16)
                .set_requires_grad(true)
        };
        let grads = |k: usize| vec![(0..3).map(|i| ((i + k) as f32).sin()).collect::<Vec<_>>()];
        let (w, mut w2) = (make(), make());
        let mut o = AdamW::new(vec![("w".into(), w.shallow_clone())], &config);
        for k in 0..5 {
            set_grads(&mut o, &[&w], &grads(k));
            o.step(3e-3);
        }
        let saved: BTreeMap<String, Tensor> =
            o.state().into_iter().map(|(n, t)| (n, t.copy())).collect();
        tch::no_grad(|| w2.copy_(&w));
        let mut o2 = AdamW::new(vec![("w".into(), w2.shallow_clone())], &config);
        o2.load_state(&saved).unwrap();
        for k in 5..10 {
            set_grads(&mut o, &[&w], &grads(k));
            set_grads(&mut o2, &[&w2], &grads(k));
            o.step(3e-3);
            o2.step(3e-3);
        }
        assert_eq!(values(&w), values(&w2));
    }

    #[test]
    fn bf16_params_keep_f32_moments_and_track_f32_run() {
        let config = OptimizerConfig::default();
        let w0 = [0.5f32, -1.0, 0.25, 2.0];
        let w32 = leaf(&w0, &[2, 2]);
        let w16 = Tensor::from_slice(&w0)
            .reshape([2, 2])
            .to_kind(Kind::BFloat16)
            .set_requires_grad(true);
        let mut o32 = AdamW::new(vec![("w".into(), w32.shallow_clone())], &config);
        let mut o16 = AdamW::new(vec![("w".into(), w16.shallow_clone())], &config);
        for k in 0..4 {
            let g: Vec<f32> = (0..4).map(|i| ((i + k) as f32 * 0.9).cos()).collect();
            set_grads(&mut o32, &[&w32], std::slice::from_ref(&g));
            set_grads(&mut o16, &[&w16], &[g]);
            o32.step(0.05);
            o16.step(0.05);
        }
        assert_eq!(w16.kind(), Kind::BFloat16);
        for (_, t) in o16.state().iter().filter(|(n, _)| n != "step") {
            assert_eq!(t.kind(), Kind::Float);
        }
        // bf16 keeps ~3 significant digits.
        assert_close(&values(&w16), &values(&w32), 1e-2);
        assert!(values(&w16) != w0.iter().map(|&x| x as f64).collect::<Vec<_>>());
    }

    #[test]
    fn clipping_scales_the_global_norm_to_exactly_max_norm() {
        let a = leaf(&[0.0; 4], &[2, 2]);
        let b = leaf(&[0.0; 2], &[2]);
        let c = leaf(&[0.0; 2], &[2]); // gets no gradient
        let mut opt = AdamW::new(
            vec![
                ("a".into(), a.shallow_clone()),
                ("b".into(), b.shallow_clone()),
                ("c".into(), c.shallow_clone()),
            ],
            &OptimizerConfig::default(),
        );
        let ga = vec![3.0f32, 0.0, 0.0, 4.0];
        let gb = vec![0.0f32, 12.0];
        // |g| = sqrt(9 + 16 + 144) = 13
        set_grads(&mut opt, &[&a, &b], &[ga.clone(), gb.clone()]);
        assert!(!c.grad().defined());
        let norm = opt.clip_grad_norm(6.5);
        assert!((norm - 13.0).abs() < 1e-5, "{norm}");
        assert_close(&values(&a.grad()), &[1.5, 0.0, 0.0, 2.0], 1e-6);
        assert_close(&values(&b.grad()), &[0.0, 6.0], 1e-6);
        let after = opt.clip_grad_norm(0.0);
        assert!((after - 6.5).abs() < 1e-5, "{after}");

        // Below the threshold, or with clipping disabled, nothing changes.
        set_grads(&mut opt, &[&a, &b], &[ga.clone(), gb.clone()]);
        assert!((opt.clip_grad_norm(20.0) - 13.0).abs() < 1e-5);
        assert!((opt.clip_grad_norm(0.0) - 13.0).abs() < 1e-5);
        assert_close(&values(&a.grad()), &[3.0, 0.0, 0.0, 4.0], 0.0);
    }

    #[test]
    fn weight_decay_spares_one_dimensional_params() {
        let config = OptimizerConfig {
            weight_decay: 0.5,
            ..OptimizerConfig::default()
        };
        let w = leaf(&[1.0, -2.0, 3.0, 4.0], &[2, 2]);
        let b = leaf(&[1.0, -2.0], &[2]);
        let mut opt = AdamW::new(
            vec![
                ("w".into(), w.shallow_clone()),
                ("b".into(), b.shallow_clone()),
            ],
            &config,
        );
        // Zero gradients: the Adam update is 0, only decay can move a parameter.
        set_grads(&mut opt, &[&w, &b], &[vec![0.0; 4], vec![0.0; 2]]);
        opt.step(0.1);
        assert_close(&values(&w), &[0.95, -1.9, 2.85, 3.8], 1e-6);
        assert_close(&values(&b), &[1.0, -2.0], 0.0);
    }

    #[test]
    fn state_round_trip_continues_identically() {
        let config = OptimizerConfig {
            weight_decay: 0.01,
            ..OptimizerConfig::default()
        };
        let w0 = [0.5f32, -1.0, 0.25, 2.0, -0.75, 0.1];
        let grads = |k: usize| -> Vec<f32> { (0..6).map(|i| ((i * 3 + k) as f32).sin()).collect() };
        let w = leaf(&w0, &[3, 2]);
        let mut opt = AdamW::new(vec![("w".into(), w.shallow_clone())], &config);
        for k in 0..3 {
            set_grads(&mut opt, &[&w], &[grads(k)]);
            opt.step(1e-2);
        }
        // A checkpoint: deep copies of the state and the weights.
        let saved: BTreeMap<String, Tensor> = opt
            .state()
            .into_iter()
            .map(|(n, t)| (n, t.copy()))
            .collect();
        let w_resumed = w.detach().copy().set_requires_grad(true);
        let mut resumed = AdamW::new(vec![("w".into(), w_resumed.shallow_clone())], &config);
        resumed.load_state(&saved).unwrap();
        assert_eq!(resumed.steps(), 3);
        for k in 3..6 {
            set_grads(&mut opt, &[&w], &[grads(k)]);
            opt.step(1e-2);
            set_grads(&mut resumed, &[&w_resumed], &[grads(k)]);
            resumed.step(1e-2);
        }
        assert_eq!(values(&w), values(&w_resumed));
    }

    #[test]
    fn load_state_names_missing_or_misshaped_tensors() {
        let w = leaf(&[0.0; 6], &[2, 3]);
        let mut opt = AdamW::new(
            vec![("layer.w".into(), w.shallow_clone())],
            &OptimizerConfig::default(),
        );
        let full: BTreeMap<String, Tensor> = opt.state().into_iter().collect();

        let mut missing = full
            .iter()
            .map(|(k, v)| (k.clone(), v.copy()))
            .collect::<BTreeMap<_, _>>();
        missing.remove("exp_avg_sq.layer.w");
        let err = opt.load_state(&missing).unwrap_err().to_string();
        assert!(
            err.contains("exp_avg_sq.layer.w") && err.contains("missing"),
            "{err}"
        );

        let mut bad = full
            .iter()
            .map(|(k, v)| (k.clone(), v.copy()))
            .collect::<BTreeMap<_, _>>();
        bad.insert(
            "exp_avg.layer.w".into(),
            Tensor::zeros([3, 2], (Kind::Float, tch::Device::Cpu)),
        );
        let err = opt.load_state(&bad).unwrap_err().to_string();
        assert!(
            err.contains("exp_avg.layer.w") && err.contains("[3, 2]"),
            "{err}"
        );

        let mut extra = full
            .iter()
            .map(|(k, v)| (k.clone(), v.copy()))
            .collect::<BTreeMap<_, _>>();
        extra.insert(
            "exp_avg.other".into(),
            Tensor::zeros([1], (Kind::Float, tch::Device::Cpu)),
        );
        let err = opt.load_state(&extra).unwrap_err().to_string();
        assert!(err.contains("exp_avg.other"), "{err}");

        let mut no_step = full;
        no_step.remove("step");
        let err = opt.load_state(&no_step).unwrap_err().to_string();
        assert!(err.contains("`step`"), "{err}");
    }

    #[test]
    fn config_validation_names_the_field() {
        assert_eq!(OptimizerConfig::default().validate(), Ok(()));
        let cases = [
            (
                OptimizerConfig {
                    lr: -1.0,
                    ..Default::default()
                },
                "lr must be positive and finite, got -1",
            ),
            (
                OptimizerConfig {
                    beta1: 1.0,
                    ..Default::default()
                },
                "beta1",
            ),
            (
                OptimizerConfig {
                    beta2: -0.1,
                    ..Default::default()
                },
                "beta2",
            ),
            (
                OptimizerConfig {
                    eps: 0.0,
                    ..Default::default()
                },
                "eps",
            ),
            (
                OptimizerConfig {
                    weight_decay: f64::NAN,
                    ..Default::default()
                },
                "weight_decay",
            ),
            (
                OptimizerConfig {
                    max_grad_norm: -1.0,
                    ..Default::default()
                },
                "max_grad_norm",
            ),
        ];
        for (config, prefix) in cases {
            let err = config.validate().unwrap_err();
            assert!(err.starts_with(prefix), "{err}");
        }
        let parsed: OptimizerConfig = toml::from_str("lr = 3e-5\nweight_decay = 0.1").unwrap();
        assert_eq!(parsed.lr, 3e-5);
        assert_eq!(parsed.beta2, 0.95);
        assert!(toml::from_str::<OptimizerConfig>("learning_rate = 1.0").is_err());
    }
}
