//! Helpers shared by the unit tests of the PPO math.

use crate::rng::Rng;
use tch::{Kind, Tensor};

/// An f32 tensor of the given shape from f64 values.
pub fn t(v: &[f64], shape: &[i64]) -> Tensor {
    Tensor::from_slice(v).to_kind(Kind::Float).reshape(shape)
}

/// All elements, flattened, as f64.
pub fn values(t: &Tensor) -> Vec<f64> {
    Vec::<f64>::try_from(t.detach().to_kind(Kind::Double).reshape([-1])).unwrap()
}

/// Element-wise |got - want| <= tol (NaN fails).
pub fn close(got: &[f64], want: &[f64], tol: f64) {
    assert_eq!(got.len(), want.len(), "{got:?} vs {want:?}");
    for (g, w) in got.iter().zip(want) {
        assert!((g - w).abs() <= tol, "{got:?} vs {want:?}");
    }
}

/// `n` uniform values in [-2, 2).
pub fn random(rng: &mut Rng, n: usize) -> Vec<f64> {
    (0..n).map(|_| rng.uniform() * 4.0 - 2.0).collect()
}

/// An f32 [B, width] mask whose row b has `lens[b]` ones from column 0.
pub fn ragged_mask(lens: &[usize], width: usize) -> Tensor {
    let v: Vec<f64> = lens
        .iter()
        .flat_map(|&len| (0..width).map(move |i| if i < len { 1.0 } else { 0.0 }))
        .collect();
    t(&v, &[lens.len() as i64, width as i64])
}
