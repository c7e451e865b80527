//! Property tests: no input a user can feed the engine's parsers makes them panic. Each
//! parser gets random bytes and mutations of a valid input (so the cases reach past the
//! first syntax check), a bounded number of cases per run; every outcome must be `Ok` or an
//! error whose message is one line naming the file.

mod common;

use proptest::prelude::*;
use rlhf::checkpoint::verify;
use rlhf::config::{AssistantTurns, ChatConfig, DataKeys, RunConfig, TemplateKind};
use rlhf::data::{read_pretrain, read_prompts, read_rm, read_sft};
use rlhf::device::DType;
use rlhf::model::{weights, Head, Model};
use rlhf::template::ChatTemplate;
use rlhf::tokenizer::Tokenizer;
use std::path::{Path, PathBuf};

const CASES: u32 = 200;

fn scratch(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("rlhf-fuzz-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A valid input with random edits: deleted, replaced and inserted bytes.
fn mutated(valid: &'static str) -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec((0..valid.len().max(1), any::<u8>(), 0u8..3), 0..8).prop_map(
        move |edits| {
            let mut bytes = valid.as_bytes().to_vec();
            for (at, byte, kind) in edits {
                let at = at.min(bytes.len());
                match kind {
                    0 if at < bytes.len() => {
                        bytes.remove(at);
                    }
                    1 if at < bytes.len() => bytes[at] = byte,
                    _ => bytes.insert(at, byte),
                }
            }
            bytes
        },
    )
}

fn inputs(valid: &'static str) -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![prop::collection::vec(any::<u8>(), 0..300), mutated(valid)]
}

/// Errors are one line and name the file they are about.
fn check_error(message: String, path: &Path) {
    assert!(!message.contains('\n'), "multi-line error: {message}");
    let name = path.file_name().unwrap().to_string_lossy();
    assert!(
        message.contains(name.as_ref()),
        "error without the file: {message}"
    );
}

const CONFIG: &str = "seed = 1\nrun_dir = \"runs/x\"\n[chat]\ntemplate = \"file\"\nfile = \"t.jinja\"\n[model]\narch = \"gpt2\"\nlayers = 2\nd_model = 32\nheads = 4\nmax_positions = 64\n[ppo]\npolicy = \"p\"\nreward_model = \"r\"\nprompts = \"q.jsonl\"\nsteps = 2\nrollout_batch_size = 2\nmax_prompt_len = 8\nmax_new_tokens = 4\n[ppo.reward]\nkind = \"rules\"\nrules = [{ kind = \"length\", min_words = 1, max_words = 3, score = 1.0 }]\n";
const SFT: &str = "{\"prompt\": \"Hi\", \"response\": \"Hello.\", \"category\": \"chat\"}\n{\"messages\": [{\"role\": \"user\", \"content\": \"a\"}, {\"role\": \"user\", \"content\": \"a\"}, {\"role\": \"assistant\", \"content\": \"b\"}]}\n";
const RM: &str = "{\"prompt\": \"Q\", \"responses\": [\"a\", \"b\", \"c\"], \"ranking\": [2, 0, 1]}\n{\"prompt\": \"Q\", \"chosen\": \"a\", \"rejected\": \"b\"}\n";
const PROMPTS: &str = "{\"prompt\": \"Name a river.\", \"category\": \"open_qa\"}\n";
const MANIFEST: &str =
    "{\"step\": 3, \"algorithm\": \"xxh3-64\", \"files\": [{\"path\": \"w\", \"bytes\": 1, \"checksum\": \"e6c632b61e964e1f\"}]}";

proptest! {
    #![proptest_config(ProptestConfig { cases: CASES, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn run_configs(bytes in inputs(CONFIG)) {
        let path = Path::new("fuzz.toml");
        if let Err(e) = RunConfig::parse(&String::from_utf8_lossy(&bytes), path) {
            check_error(e.to_string(), path);
        }
    }

    #[test]
    fn data_files(sft in inputs(SFT), rm in inputs(RM), prompts in inputs(PROMPTS)) {
        let dir = scratch("data");
        // The built-in template, none, and a model's Jinja template that refuses some
        // conversations (Mistral's: roles must alternate, no lone system message).
        let mistral = common::fixture("chat/mistral");
        let tokenizer = Tokenizer::from_dir(&mistral).unwrap();
        let model = ChatConfig { template: TemplateKind::Model, file: None };
        let keys = DataKeys::default();
        let templates = [
            ChatTemplate::builtin(),
            ChatTemplate::None,
            ChatTemplate::choose(&model, &tokenizer, &mistral).unwrap(),
        ];
        for (name, bytes) in [("sft.jsonl", &sft), ("rm.jsonl", &rm), ("prompts.jsonl", &prompts)] {
            let path = dir.join(name);
            std::fs::write(&path, bytes).unwrap();
            for template in &templates {
                let outcome = match name {
                    "sft.jsonl" => read_sft(&path, template, &keys, AssistantTurns::All).map(|_| ()),
                    "rm.jsonl" => read_rm(&path, template, &keys).map(|_| ()),
                    _ => read_prompts(&path, template, &keys).map(|_| ()),
                };
                if let Err(e) = outcome {
                    check_error(e.to_string(), &path);
                }
            }
            // The same bytes as pretraining text (JSONL or plain).
            if let Err(e) = read_pretrain(&path, &keys) {
                check_error(e.to_string(), &path);
            }
        }
    }

    #[test]
    fn checkpoint_manifests(bytes in inputs(MANIFEST)) {
        let dir = scratch("manifest");
        std::fs::write(dir.join("w"), "a").unwrap();
        std::fs::write(dir.join("manifest.json"), &bytes).unwrap();
        if let Err(e) = verify(&dir) {
            assert!(!e.to_string().contains('\n'), "{e}");
        }
    }

    #[test]
    fn safetensors_files(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        let dir = scratch("safetensors");
        let path = dir.join("model.safetensors");
        std::fs::write(&path, &bytes).unwrap();
        if let Err(e) = weights::read(&path) {
            check_error(e.to_string(), &path);
        }
    }
}

proptest! {
    // Model and tokenizer folders are slower to try: fewer cases.
    #![proptest_config(ProptestConfig { cases: CASES / 4, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn model_configs(edit in mutated(r#"{"model_type": "gpt2", "n_embd": 32, "n_head": 4, "n_layer": 2, "n_positions": 64, "vocab_size": 96}"#)) {
        let dir = common::copy_fixture("gpt2-tiny", "fuzz-config");
        let path = dir.join("config.json");
        std::fs::write(&path, &edit).unwrap();
        if let Err(e) = Model::load(&dir, Head::LanguageModel, DType::F32, tch::Device::Cpu) {
            assert!(!e.to_string().contains('\n'), "{e}");
        }
    }

    #[test]
    fn tokenizer_files(bytes in inputs(r#"{"version": "1.0", "model": {"type": "BPE", "vocab": {"a": 0}, "merges": []}}"#)) {
        let dir = scratch("tokenizer");
        std::fs::write(dir.join("tokenizer.json"), &bytes).unwrap();
        if let Err(e) = Tokenizer::from_dir(&dir) {
            assert!(!e.to_string().contains('\n'), "{e}");
        }
    }
}
