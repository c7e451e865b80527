//! Bad model folders give one-line errors that name the file and the key or tensor.

mod common;

use common::*;
use rlhf::device::DType;
use rlhf::model::{weights, Head, Model};
use std::path::Path;
use tch::{Device, Tensor};

fn load_err(dir: &Path) -> String {
    match Model::load(dir, Head::LanguageModel, DType::F32, Device::Cpu) {
        Ok(_) => panic!("{} loaded", dir.display()),
        Err(e) => {
            let msg = e.to_string();
            assert!(!msg.contains('\n'), "multi-line error: {msg}");
            msg
        }
    }
}

/// Rewrites model.safetensors with `edit` applied to its tensors.
fn edit_weights(dir: &Path, edit: impl FnOnce(&mut Vec<(String, Tensor)>)) {
    let path = dir.join("model.safetensors");
    let mut tensors: Vec<(String, Tensor)> = weights::read(&path).unwrap().into_iter().collect();
    edit(&mut tensors);
    weights::write(&path, &tensors).unwrap();
}

#[test]
fn missing_folder_and_missing_files() {
    let err = load_err(Path::new("/nonexistent/model"));
    assert!(
        err.contains("/nonexistent/model") && err.contains("not found"),
        "{err}"
    );
    let dir = copy_fixture("gpt2-tiny", "no-config");
    std::fs::remove_file(dir.join("config.json")).unwrap();
    let err = load_err(&dir);
    assert!(
        err.contains("config.json") && err.contains("No such file"),
        "{err}"
    );
    let dir = copy_fixture("gpt2-tiny", "no-weights");
    std::fs::remove_file(dir.join("model.safetensors")).unwrap();
    let err = load_err(&dir);
    assert!(
        err.contains("model.safetensors") && err.contains("No such file"),
        "{err}"
    );
}

#[test]
fn unknown_architecture_names_the_key() {
    let dir = copy_fixture("gpt2-tiny", "bert");
    let text = std::fs::read_to_string(dir.join("config.json")).unwrap();
    std::fs::write(
        dir.join("config.json"),
        text.replace("\"gpt2\"", "\"bert\""),
    )
    .unwrap();
    let err = load_err(&dir);
    assert!(
        err.contains("config.json: unknown architecture `bert` (key `model_type`); supported: gpt2, llama, mistral, qwen2, qwen3, gpt_neox, gemma2"),
        "{err}"
    );
}

#[test]
fn unsupported_rope_scaling_names_the_type_and_the_accepted_ones() {
    let dir = copy_fixture("llama3-tiny", "yarn");
    let text = std::fs::read_to_string(dir.join("config.json")).unwrap();
    std::fs::write(
        dir.join("config.json"),
        text.replace("\"llama3\"", "\"yarn\""),
    )
    .unwrap();
    let err = load_err(&dir);
    assert!(
        err.contains("config.json: key `rope_parameters`: rope type `yarn` is not supported (default, llama3)"),
        "{err}"
    );
}

#[test]
fn malformed_config_values_name_the_key() {
    let dir = copy_fixture("llama-tiny", "bad-key");
    let text = std::fs::read_to_string(dir.join("config.json")).unwrap();
    std::fs::write(
        dir.join("config.json"),
        text.replace("\"num_hidden_layers\": 2", "\"num_hidden_layers\": \"two\""),
    )
    .unwrap();
    let err = load_err(&dir);
    assert!(
        err.contains("config.json: key `num_hidden_layers`: expected a positive integer"),
        "{err}"
    );
    std::fs::write(dir.join("config.json"), "{\"model_type\": \"llama\",").unwrap();
    let err = load_err(&dir);
    assert!(err.contains("config.json: invalid JSON at line 1"), "{err}");
}

#[test]
fn missing_tensor_is_named() {
    let dir = copy_fixture("gpt2-tiny", "missing-tensor");
    edit_weights(&dir, |t| {
        t.retain(|(name, _)| name != "transformer.h.1.mlp.c_fc.weight")
    });
    let err = load_err(&dir);
    assert!(
        err.contains("model.safetensors: missing tensor `transformer.h.1.mlp.c_fc.weight`"),
        "{err}"
    );
}

#[test]
fn misshaped_tensor_is_named_with_both_shapes() {
    let dir = copy_fixture("llama-tiny", "bad-shape");
    edit_weights(&dir, |t| {
        let entry = t
            .iter_mut()
            .find(|(n, _)| n == "model.layers.0.self_attn.k_proj.weight")
            .unwrap();
        entry.1 = Tensor::zeros([32, 32], (tch::Kind::Float, Device::Cpu));
    });
    let err = load_err(&dir);
    assert!(
        err.contains("tensor `model.layers.0.self_attn.k_proj.weight` has shape [32, 32], config.json implies [16, 32]"),
        "{err}"
    );
}

#[test]
fn corrupt_safetensors_header_is_reported() {
    let dir = copy_fixture("gpt2-tiny", "corrupt");
    let path = dir.join("model.safetensors");
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[8..20].copy_from_slice(b"garbage!!!!!");
    std::fs::write(&path, bytes).unwrap();
    let err = load_err(&dir);
    assert!(
        err.contains("model.safetensors: corrupt safetensors file"),
        "{err}"
    );
    std::fs::write(&path, b"short").unwrap();
    let err = load_err(&dir);
    assert!(
        err.contains("model.safetensors: corrupt safetensors file"),
        "{err}"
    );
}

#[test]
fn extra_tensors_are_reported_not_fatal() {
    let dir = copy_fixture("gpt2-tiny", "extra");
    edit_weights(&dir, |t| {
        t.push((
            "vision.proj.weight".into(),
            Tensor::zeros([2, 2], (tch::Kind::Float, Device::Cpu)),
        ))
    });
    let (_, report) = Model::load(&dir, Head::LanguageModel, DType::F32, Device::Cpu).unwrap();
    assert_eq!(report.ignored, vec!["vision.proj.weight".to_string()]);
}

#[test]
fn scalar_head_missing_from_a_language_model_is_initialised() {
    let (model, report) =
        Model::load(&fixture("gpt2-tiny"), Head::Scalar, DType::F32, Device::Cpu).unwrap();
    assert_eq!(report.initialized, vec!["score.weight".to_string()]);
    assert_eq!(model.head(), Head::Scalar);
}
