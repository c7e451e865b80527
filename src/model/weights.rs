//! Named tensors in safetensors files: the only place that reads or writes weight files.

use crate::{Error, Result};
use safetensors::{tensor::TensorView, Dtype, SafeTensors};
use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::Path;
use tch::{Device, Kind, Tensor};

/// Every tensor of a safetensors file, on the CPU, in the file's dtype.
pub fn read(path: &Path) -> Result<BTreeMap<String, Tensor>> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let file = SafeTensors::deserialize(&bytes)
        .map_err(|e| Error::format(path, format!("corrupt safetensors file: {e}")))?;
    file.iter()
        .map(|(name, view)| {
            let kind = kind_of(view.dtype()).ok_or_else(|| {
                Error::format(
                    path,
                    format!("tensor `{name}`: unsupported dtype {:?}", view.dtype()),
                )
            })?;
            let shape: Vec<i64> = view.shape().iter().map(|&d| d as i64).collect();
            let tensor = Tensor::f_from_data_size(view.data(), &shape, kind)?;
            Ok((name.to_string(), tensor))
        })
        .collect()
}

/// Write tensors atomically: a temporary file, fsync, then rename over `path`.
pub fn write(path: &Path, tensors: &[(String, Tensor)]) -> Result<()> {
    let cpu: Vec<(String, Tensor, Dtype)> = tensors
        .iter()
        .map(|(name, t)| {
            let dtype = dtype_of(t.kind()).ok_or_else(|| {
                Error::Invalid(format!("tensor `{name}`: cannot save dtype {:?}", t.kind()))
            })?;
            Ok((name.clone(), t.to_device(Device::Cpu).contiguous(), dtype))
        })
        .collect::<Result<_>>()?;
    let buffers: Vec<Vec<u8>> = cpu
        .iter()
        .map(|(_, t, _)| {
            let numel = t.numel();
            let mut buf = vec![0u8; numel * t.kind().elt_size_in_bytes()];
            t.f_copy_data_u8(&mut buf, numel)?;
            Ok(buf)
        })
        .collect::<Result<_>>()?;
    let views: Vec<(String, TensorView)> = cpu
        .iter()
        .zip(&buffers)
        .map(|((name, t, dtype), buf)| {
            let shape: Vec<usize> = t.size().iter().map(|&d| d as usize).collect();
            TensorView::new(*dtype, shape, buf)
                .map(|v| (name.clone(), v))
                .map_err(|e| Error::Invalid(format!("tensor `{name}`: {e}")))
        })
        .collect::<Result<_>>()?;
    // transformers refuses files whose metadata lacks the framework tag.
    let metadata = HashMap::from([("format".to_string(), "pt".to_string())]);
    let bytes = safetensors::serialize(views, Some(metadata))
        .map_err(|e| Error::Invalid(format!("{}: {e}", path.display())))?;
    write_atomic(path, &bytes)
}

/// Replace `path` with `bytes` so that a crash leaves either the old or the new file.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    let io = |e| Error::io(path, e);
    let mut f = std::fs::File::create(&tmp).map_err(io)?;
    f.write_all(bytes).map_err(io)?;
    f.sync_all().map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}

fn kind_of(dtype: Dtype) -> Option<Kind> {
    Some(match dtype {
        Dtype::F32 => Kind::Float,
        Dtype::F16 => Kind::Half,
        Dtype::BF16 => Kind::BFloat16,
        Dtype::F64 => Kind::Double,
        Dtype::I64 => Kind::Int64,
        Dtype::I32 => Kind::Int,
        Dtype::I16 => Kind::Int16,
        Dtype::I8 => Kind::Int8,
        Dtype::U8 => Kind::Uint8,
        Dtype::BOOL => Kind::Bool,
        _ => return None,
    })
}

fn dtype_of(kind: Kind) -> Option<Dtype> {
    Some(match kind {
        Kind::Float => Dtype::F32,
        Kind::Half => Dtype::F16,
        Kind::BFloat16 => Dtype::BF16,
        Kind::Double => Dtype::F64,
        Kind::Int64 => Dtype::I64,
        Kind::Int => Dtype::I32,
        Kind::Int16 => Dtype::I16,
        Kind::Int8 => Dtype::I8,
        Kind::Uint8 => Dtype::U8,
        Kind::Bool => Dtype::BOOL,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_tensors_of_each_dtype() {
        let dir = std::env::temp_dir().join(format!("rlhf-weights-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("t.safetensors");
        let a = Tensor::from_slice(&[1.5f32, -2.0, 3.25, 4.0]).view([2, 2]);
        let b = a.to_kind(Kind::BFloat16);
        let c = Tensor::from_slice(&[7i64, 8, 9]);
        write(
            &path,
            &[
                ("a".into(), a.shallow_clone()),
                ("b".into(), b),
                ("c".into(), c),
            ],
        )
        .unwrap();
        let back = read(&path).unwrap();
        assert_eq!(back["a"].size(), vec![2, 2]);
        assert!(back["a"].equal(&a));
        assert_eq!(back["b"].kind(), Kind::BFloat16);
        assert_eq!(Vec::<i64>::try_from(&back["c"]).unwrap(), vec![7, 8, 9]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn corrupt_header_names_the_file() {
        let dir = std::env::temp_dir().join(format!("rlhf-weights-bad-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("bad.safetensors");
        std::fs::write(&path, b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all").unwrap();
        let err = read(&path).unwrap_err().to_string();
        assert!(
            err.contains("bad.safetensors") && err.contains("corrupt"),
            "{err}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
