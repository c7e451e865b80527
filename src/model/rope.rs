//! Rotary position embeddings, shared by every RoPE architecture (the Llama family,
//! GPT-NeoX, Gemma): the inverse frequencies (plain, or rescaled as Llama 3.1 does), the
//! cos/sin tables, and the rotation of the leading `dims` of each head (NeoX rotates only
//! a fraction of it, `rotary_pct`).

use tch::{Device, Kind, Tensor};

#[derive(Clone, Debug, PartialEq)]
pub struct Rope {
    pub theta: f64,
    /// Leading dimensions of each head that rotate (the head size for full rotation).
    pub dims: i64,
    pub scaling: RopeScaling,
}

/// How the inverse frequencies are rescaled for longer contexts.
#[derive(Clone, Debug, PartialEq)]
pub enum RopeScaling {
    None,
    /// Llama 3.1's: long wavelengths divided by `factor`, short ones kept, a smooth blend
    /// between (transformers' `_compute_llama3_parameters`).
    Llama3 {
        factor: f64,
        low_freq_factor: f64,
        high_freq_factor: f64,
        original_max_positions: f64,
    },
}

impl Rope {
    /// Inverse frequencies theta^(-2i/dims), i < dims/2, rescaled as configured.
    pub fn inv_freq(&self) -> Vec<f64> {
        let d = self.dims as f64;
        let plain = (0..self.dims / 2).map(|i| 1.0 / self.theta.powf(2.0 * i as f64 / d));
        match self.scaling {
            RopeScaling::None => plain.collect(),
            RopeScaling::Llama3 {
                factor,
                low_freq_factor,
                high_freq_factor,
                original_max_positions,
            } => {
                let low_wavelen = original_max_positions / low_freq_factor;
                let high_wavelen = original_max_positions / high_freq_factor;
                plain
                    .map(|f| {
                        let wavelen = 2.0 * std::f64::consts::PI / f;
                        if wavelen < high_wavelen {
                            f
                        } else if wavelen > low_wavelen {
                            f / factor
                        } else {
                            let smooth = (original_max_positions / wavelen - low_freq_factor)
                                / (high_freq_factor - low_freq_factor);
                            (1.0 - smooth) * f / factor + smooth * f
                        }
                    })
                    .collect()
            }
        }
    }

    /// cos/sin of position * inv_freq for `max_positions` positions.
    pub fn tables(&self, max_positions: i64, device: Device) -> RopeTables {
        let inv_freq = match self.scaling {
            // The plain table as computed before scaling existed, to the last bit.
            RopeScaling::None => {
                let exponents = Tensor::arange_start_step(0, self.dims, 2, (Kind::Double, device))
                    / self.dims as f64;
                Tensor::from(self.theta)
                    .to_device(device)
                    .pow(&exponents)
                    .reciprocal()
            }
            RopeScaling::Llama3 { .. } => Tensor::from_slice(&self.inv_freq()).to_device(device),
        };
        let positions = Tensor::arange(max_positions, (Kind::Double, device));
        let angles = positions.outer(&inv_freq);
        let angles = Tensor::cat(&[&angles, &angles], 1);
        RopeTables {
            cos: angles.cos().to_kind(Kind::Float),
            sin: angles.sin().to_kind(Kind::Float),
        }
    }
}

/// [max_positions, dims] cos and sin tables in the rotate-half layout.
pub struct RopeTables {
    cos: Tensor,
    sin: Tensor,
}

impl RopeTables {
    /// The tables at `positions` [B, T], as [B, 1, T, dims] so they broadcast over heads.
    pub fn at(&self, positions: &Tensor, kind: Kind) -> Rotation {
        let (b, t) = (positions.size()[0], positions.size()[1]);
        let pick = |table: &Tensor| {
            table
                .index_select(0, &positions.flatten(0, 1))
                .view([b, 1, t, -1])
                .to_kind(kind)
        };
        Rotation {
            cos: pick(&self.cos),
            sin: pick(&self.sin),
        }
    }
}

impl super::lora::Share for RopeTables {
    fn share(&self, t: &super::lora::Tensors) -> Self {
        RopeTables {
            cos: t.get(&self.cos),
            sin: t.get(&self.sin),
        }
    }
}

/// The cos/sin of one forward's positions.
pub struct Rotation {
    cos: Tensor,
    sin: Tensor,
}

impl Rotation {
    /// Rotates the leading dims of x [B, H, T, head_dim]; the rest passes unchanged.
    pub fn apply(&self, x: &Tensor) -> Tensor {
        let dims = self.cos.size()[3];
        let head = x.size()[3];
        if dims == head {
            return self.rotate(x);
        }
        let parts = x.split_with_sizes([dims, head - dims], 3);
        Tensor::cat(&[self.rotate(&parts[0]), parts[1].shallow_clone()], 3)
    }

    fn rotate(&self, x: &Tensor) -> Tensor {
        let half = x.chunk(2, 3);
        let rotated = Tensor::cat(&[half[1].neg(), half[0].shallow_clone()], 3);
        x * &self.cos + rotated * &self.sin
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn llama3_scaling_keeps_short_divides_long_and_blends_between() {
        let llama3 = |theta: f64, original_max_positions: f64| Rope {
            theta,
            dims: 8,
            scaling: RopeScaling::Llama3 {
                factor: 8.0,
                low_freq_factor: 1.0,
                high_freq_factor: 4.0,
                original_max_positions,
            },
        };
        let r = llama3(10.0, 64.0);
        // Plain: 1, 10^-1/4, 10^-1/2, 10^-3/4; wavelengths 6.3, 11.2, 19.9, 35.3 against
        // the bounds 16 (high) and 64 (low).
        let f = r.inv_freq();
        let plain: Vec<f64> = (0..4).map(|i| 10f64.powf(-(i as f64) / 4.0)).collect();
        assert_eq!(f[0], plain[0]);
        assert_eq!(f[1], plain[1]);
        let smooth = |p: f64| {
            let s = (64.0 * p / (2.0 * std::f64::consts::PI) - 1.0) / 3.0;
            (1.0 - s) * p / 8.0 + s * p
        };
        assert!((f[2] - smooth(plain[2])).abs() < 1e-15);
        assert!(f[2] < plain[2] && f[2] > plain[2] / 8.0);
        assert!((f[3] - smooth(plain[3])).abs() < 1e-15);
        let long = llama3(10000.0, 16.0);
        // theta 10^4: the last wavelength (2 pi 10^3) is beyond 16: divided by 8.
        let last = long.inv_freq()[3];
        assert!((last - 1e-3 / 8.0).abs() < 1e-18, "{last}");
    }

    #[test]
    fn partial_rotation_leaves_the_tail_of_each_head_alone() {
        let r = Rope {
            theta: 10000.0,
            dims: 4,
            scaling: RopeScaling::None,
        };
        let tables = r.tables(16, Device::Cpu);
        let positions = Tensor::from_slice(&[3i64, 7]).view([1, 2]);
        let x = Tensor::randn([1, 2, 2, 8], (Kind::Float, Device::Cpu));
        let y = tables.at(&positions, Kind::Float).apply(&x);
        assert!(y.narrow(3, 4, 4).equal(&x.narrow(3, 4, 4)));
        assert!(!y.narrow(3, 0, 4).equal(&x.narrow(3, 0, 4)));
        // A rotation keeps each pair's norm.
        let norm = |t: &Tensor| {
            t.narrow(3, 0, 4)
                .square()
                .sum(Kind::Double)
                .double_value(&[])
        };
        assert!((norm(&y) - norm(&x)).abs() < 1e-4);
    }
}
