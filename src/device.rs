//! Devices and dtypes as users write them in configs and flags (`cpu`, `cuda:1`, `bf16`).

use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use tch::{Device, Kind};

/// Parse `cpu`, `cuda` (first GPU) or `cuda:N`.
pub fn parse_device(s: &str) -> Result<Device> {
    let bad = || {
        Error::Invalid(format!(
            "unknown device `{s}`: expected `cpu`, `cuda` or `cuda:N`"
        ))
    };
    match s {
        "cpu" => Ok(Device::Cpu),
        "cuda" => Ok(Device::Cuda(0)),
        _ => {
            let index = s.strip_prefix("cuda:").ok_or_else(bad)?;
            let index: usize = index.parse().map_err(|_| bad())?;
            Ok(Device::Cuda(index))
        }
    }
}

/// Floating-point precision of weights and activations.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DType {
    #[default]
    F32,
    Bf16,
    F16,
}

impl DType {
    pub fn kind(self) -> Kind {
        match self {
            DType::F32 => Kind::Float,
            DType::Bf16 => Kind::BFloat16,
            DType::F16 => Kind::Half,
        }
    }

    /// The name Hugging Face writes in `config.json` (`dtype`).
    pub fn hf_name(self) -> &'static str {
        match self {
            DType::F32 => "float32",
            DType::Bf16 => "bfloat16",
            DType::F16 => "float16",
        }
    }

    pub fn parse(s: &str) -> Result<DType> {
        match s {
            "f32" | "fp32" | "float32" => Ok(DType::F32),
            "bf16" | "bfloat16" => Ok(DType::Bf16),
            "f16" | "fp16" | "float16" => Ok(DType::F16),
            _ => Err(Error::Invalid(format!(
                "unknown dtype `{s}`: expected f32, bf16 or f16"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_devices_and_rejects_others() {
        assert_eq!(parse_device("cpu").unwrap(), Device::Cpu);
        assert_eq!(parse_device("cuda").unwrap(), Device::Cuda(0));
        assert_eq!(parse_device("cuda:3").unwrap(), Device::Cuda(3));
        for bad in ["gpu", "cuda:", "cuda:x", "CPU"] {
            let err = parse_device(bad).unwrap_err().to_string();
            assert!(err.contains(bad), "{err}");
        }
    }

    #[test]
    fn parses_dtypes() {
        assert_eq!(DType::parse("bf16").unwrap().kind(), Kind::BFloat16);
        assert_eq!(DType::parse("float16").unwrap(), DType::F16);
        assert!(DType::parse("f64").is_err());
    }
}
