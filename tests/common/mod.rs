//! Helpers shared by the integration tests.
#![allow(dead_code)] // each test binary uses a different subset

use rlhf::device::DType;
use rlhf::model::{weights, Head, Model};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use tch::{Device, Tensor};

pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

pub fn load(name: &str, head: Head) -> Model {
    Model::load(&fixture(name), head, DType::F32, Device::Cpu)
        .unwrap()
        .0
}

pub fn expected(name: &str) -> BTreeMap<String, Tensor> {
    weights::read(&fixture(name).join("expected.safetensors")).unwrap()
}

/// A fresh empty directory under the system temp dir.
pub fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("rlhf-test-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Copy a fixture folder so a test can damage it.
pub fn copy_fixture(name: &str, tag: &str) -> PathBuf {
    let dir = temp_dir(tag);
    for entry in std::fs::read_dir(fixture(name)).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, dir.join(path.file_name().unwrap())).unwrap();
    }
    dir
}

/// The project venv's python (which has transformers), or RLHF_PYTHON.
pub fn python() -> PathBuf {
    if let Ok(p) = std::env::var("RLHF_PYTHON") {
        return PathBuf::from(p);
    }
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python");
    assert!(
        venv.exists(),
        "{} not found: run scripts/setup.sh first",
        venv.display()
    );
    venv
}

pub fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
    (a - b).abs().max().double_value(&[])
}
