//! Rotary position embeddings, shared by every RoPE architecture (the Llama family,
//! GPT-NeoX, Gemma): the inverse frequencies (plain, or rescaled as Llama 3.1 does), the
//! cos/sin tables, and the rotation of the leading `dims` of each head (NeoX rotates only
//! a fraction of it, `rotary_pct`).

use super::families::Keys;
use crate::Result;
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

/// The rope types `parse` accepts, for error messages.
const SUPPORTED: &str = "default, llama3";

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

/// The rope of a config: `rope_parameters` (transformers 5), else the top-level
/// `theta_key` (`rope_theta`; NeoX's `rotary_emb_base`) with `rope_scaling` (older
/// files). `rotary_fraction` is the share of each head that rotates when the parameters
/// do not say (NeoX's `rotary_pct`); other architectures pass 1.
pub(super) fn parse(
    k: &Keys,
    head_dim: i64,
    theta_key: &str,
    rotary_fraction: f64,
) -> Result<Rope> {
    let key = if k.get("rope_parameters").is_some() {
        "rope_parameters"
    } else {
        "rope_scaling"
    };
    let params = k.get(key);
    let field = |name: &str| params.and_then(|p| p.get(name)).filter(|v| !v.is_null());
    let number = |name: &str| -> Result<Option<f64>> {
        match field(name) {
            None => Ok(None),
            Some(v) => v
                .as_f64()
                .map(Some)
                .ok_or_else(|| k.err(format!("key `{key}.{name}`: expected a number, got {v}"))),
        }
    };
    let kind = field("rope_type")
        .or_else(|| field("type"))
        .map(|v| {
            v.as_str()
                .ok_or_else(|| k.err(format!("key `{key}.rope_type`: expected a string, got {v}")))
        })
        .transpose()?
        .unwrap_or("default");
    let theta = match number("rope_theta")? {
        Some(theta) => theta,
        None => k.float_or(theta_key, 10000.0)?,
    };
    if !(theta > 1.0 && theta.is_finite()) {
        return Err(k.err(format!(
            "key `{theta_key}`: expected a number > 1, got {theta}"
        )));
    }
    let fraction = number("partial_rotary_factor")?.unwrap_or(rotary_fraction);
    if !(fraction > 0.0 && fraction <= 1.0) {
        return Err(k.err(format!(
            "key `{key}.partial_rotary_factor`: expected a fraction in (0, 1], got {fraction}"
        )));
    }
    // transformers truncates: int(head_dim * fraction).
    let dims = (head_dim as f64 * fraction) as i64;
    if dims < 2 || dims % 2 != 0 {
        return Err(k.err(format!(
            "rotary dimensions {dims} (head_dim {head_dim} x {fraction}) must be even and at least 2"
        )));
    }
    let scaling = match kind {
        "default" => RopeScaling::None,
        "llama3" => {
            let need = |name: &str| -> Result<f64> {
                number(name)?
                    .ok_or_else(|| k.err(format!("key `{key}`: rope type llama3 needs `{name}`")))
            };
            let scaling = RopeScaling::Llama3 {
                factor: need("factor")?,
                low_freq_factor: need("low_freq_factor")?,
                high_freq_factor: need("high_freq_factor")?,
                original_max_positions: need("original_max_position_embeddings")?,
            };
            check_llama3(k, key, &scaling)?;
            scaling
        }
        other => {
            return Err(k.err(format!(
                "key `{key}`: rope type `{other}` is not supported ({SUPPORTED})"
            )))
        }
    };
    Ok(Rope {
        theta,
        dims,
        scaling,
    })
}

fn check_llama3(k: &Keys, key: &str, scaling: &RopeScaling) -> Result<()> {
    let RopeScaling::Llama3 {
        factor,
        low_freq_factor,
        high_freq_factor,
        original_max_positions,
    } = *scaling
    else {
        return Ok(());
    };
    let positive = [
        ("factor", factor),
        ("low_freq_factor", low_freq_factor),
        ("high_freq_factor", high_freq_factor),
        ("original_max_position_embeddings", original_max_positions),
    ];
    if let Some((name, v)) = positive.iter().find(|(_, v)| !(*v > 0.0 && v.is_finite())) {
        return Err(k.err(format!(
            "key `{key}.{name}`: expected a positive number, got {v}"
        )));
    }
    if high_freq_factor <= low_freq_factor {
        return Err(k.err(format!(
            "key `{key}`: high_freq_factor {high_freq_factor} must exceed low_freq_factor {low_freq_factor}"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};
    use std::path::Path;

    fn rope(raw: Value) -> Result<Rope> {
        let map = raw.as_object().unwrap().clone();
        let keys = Keys::new(Path::new("config.json"), &map);
        parse(&keys, 8, "rope_theta", 1.0)
    }

    #[test]
    fn llama3_scaling_keeps_short_divides_long_and_blends_between() {
        let r = rope(
            json!({"rope_parameters": {"rope_type": "llama3", "rope_theta": 10.0,
            "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
            "original_max_position_embeddings": 64}}),
        )
        .unwrap();
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
        let long = rope(json!({"rope_scaling": {"type": "llama3", "factor": 8.0,
            "low_freq_factor": 1.0, "high_freq_factor": 4.0,
            "original_max_position_embeddings": 16}, "rope_theta": 10000.0}))
        .unwrap();
        // theta 10^4: the last wavelength (2 pi 10^3) is beyond 16: divided by 8.
        let last = long.inv_freq()[3];
        assert!((last - 1e-3 / 8.0).abs() < 1e-18, "{last}");
    }

    #[test]
    fn unsupported_rope_types_name_the_key_and_the_accepted_ones() {
        for (raw, key) in [
            (
                json!({"rope_scaling": {"type": "yarn", "factor": 4.0}}),
                "rope_scaling",
            ),
            (
                json!({"rope_parameters": {"rope_type": "linear", "factor": 2.0}}),
                "rope_parameters",
            ),
        ] {
            let err = rope(raw).unwrap_err().to_string();
            assert!(
                err.starts_with("config.json: key `")
                    && err.contains(key)
                    && err.contains("is not supported (default, llama3)"),
                "{err}"
            );
        }
        let err = rope(json!({"rope_scaling": {"rope_type": "llama3", "factor": 8.0}}))
            .unwrap_err()
            .to_string();
        assert!(err.contains("needs `low_freq_factor`"), "{err}");
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
