use std::path::{Path, PathBuf};

use super::*;
use crate::world::prose::corpus;

const SPECIAL: &[&str] = &["<|endoftext|>", "<|user|>", "<|assistant|>"];

fn trained() -> Tokenizer {
    Tokenizer::train_bpe(&corpus(1, 400), 400, SPECIAL).unwrap()
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("rlhf-tokenizer-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn training_is_reproducible() {
    let texts = corpus(5, 600);
    let a = Tokenizer::train_bpe(&texts, 500, SPECIAL).unwrap();
    for _ in 0..3 {
        let b = Tokenizer::train_bpe(&texts, 500, SPECIAL).unwrap();
        assert_eq!(a.to_json().unwrap(), b.to_json().unwrap());
    }
    assert_eq!(a.vocab_size(), 500);
}

#[test]
fn round_trip_and_special_tokens() {
    let t = trained();
    assert_eq!(
        (t.eos_id(), t.pad_id(), t.token_id("<|user|>")),
        (0, 0, Some(1))
    );
    for s in [
        "Ada lives in the town of Dunford.",
        "  two  spaces,\n\ttabs and symbols: {}[]#@~",
        "naive cafe -> na\u{ef}ve caf\u{e9} \u{2013} \u{65e5}\u{672c} \u{1f642}",
        "",
    ] {
        let ids = t.encode(s).unwrap();
        assert!(ids
            .iter()
            .all(|&id| id >= 0 && (id as usize) < t.vocab_size()));
        assert_eq!(t.decode(&ids).unwrap(), s);
    }
    assert_eq!(t.encode("<|endoftext|>").unwrap(), vec![t.eos_id()]);
    let ids = t.encode("<|user|>\nHi<|endoftext|>").unwrap();
    assert_eq!(ids[0], 1);
    assert_eq!(*ids.last().unwrap(), 0);
    assert_eq!(t.decode(&ids).unwrap(), "<|user|>\nHi<|endoftext|>");
    assert!(t.decode(&[t.vocab_size() as i64]).is_err());
    assert!(t.decode(&[-1]).is_err());
}

#[test]
fn save_and_load_back() {
    let mut t = trained();
    assert_eq!(
        t.add_special_tokens(&["<|system|>".into(), "<|user|>".into()]),
        1
    );
    let dir = scratch("save");
    t.save(&dir).unwrap();
    let back = Tokenizer::from_dir(&dir).unwrap();
    assert_eq!(back.to_json().unwrap(), t.to_json().unwrap());
    assert_eq!((back.eos_id(), back.pad_id()), (t.eos_id(), t.pad_id()));
    let text = "<|system|>\nThe river Sela is 40 kilometres long.";
    assert_eq!(back.encode(text).unwrap(), t.encode(text).unwrap());
    let config = std::fs::read_to_string(dir.join("tokenizer_config.json")).unwrap();
    assert!(config.contains("\"tokenizer_class\": \"PreTrainedTokenizerFast\""));
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn eos_and_pad_from_tokenizer_config() {
    let t = Tokenizer::train_bpe(&corpus(1, 50), 300, &["<|pad|>", "<|stop|>"]).unwrap();
    let dir = scratch("config");
    std::fs::write(dir.join("tokenizer.json"), t.to_json().unwrap()).unwrap();
    let err = Tokenizer::from_dir(&dir).unwrap_err().to_string();
    assert!(
        err.contains("tokenizer.json") && err.contains("<|endoftext|>, </s>"),
        "{err}"
    );

    let config = dir.join("tokenizer_config.json");
    std::fs::write(
        &config,
        r#"{"eos_token": {"content": "<|stop|>"}, "pad_token": "<|pad|>"}"#,
    )
    .unwrap();
    let loaded = Tokenizer::from_dir(&dir).unwrap();
    assert_eq!((loaded.eos_id(), loaded.pad_id()), (1, 0));

    std::fs::write(
        &config,
        r#"{"eos_token": "<|missing|>", "model_max_length": 1e30}"#,
    )
    .unwrap();
    let err = Tokenizer::from_dir(&dir).unwrap_err().to_string();
    assert!(
        err.contains("tokenizer_config.json") && err.contains("<|missing|>"),
        "{err}"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn load_errors_name_the_file() {
    let dir = scratch("errors");
    match Tokenizer::from_dir(&dir) {
        Err(Error::Io { path, .. }) => assert_eq!(path, dir.join("tokenizer.json")),
        other => panic!("expected an Io error, got {other:?}"),
    }
    let file = dir.join("tokenizer.json");
    std::fs::write(&file, "{not json").unwrap();
    let err = Tokenizer::from_file(&file).unwrap_err();
    assert!(
        matches!(&err, Error::Format { path, what } if *path == file && what.contains("invalid JSON"))
    );
    std::fs::write(&file, r#"{"model": 3}"#).unwrap();
    let err = Tokenizer::from_file(&file).unwrap_err();
    assert!(matches!(&err, Error::Format { what, .. } if what.contains("not a valid tokenizer")));
    assert!(Tokenizer::train_bpe(&[], 100, SPECIAL).is_err());
    assert!(Tokenizer::train_bpe(&[], 1000, &[]).is_err());
    std::fs::remove_dir_all(dir).unwrap();
}

/// A copy of a chat fixture folder (tests/fixtures/chat/<family>) to edit.
fn chat_fixture(family: &str, tag: &str) -> PathBuf {
    let from = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/chat")
        .join(family);
    let dir = scratch(tag);
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, dir.join(path.file_name().unwrap())).unwrap();
    }
    dir
}

fn edit_config(dir: &Path, edit: impl FnOnce(&mut Map<String, Value>)) {
    let path = dir.join("tokenizer_config.json");
    let mut config: Map<String, Value> =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    edit(&mut config);
    std::fs::write(&path, serde_json::to_string(&config).unwrap()).unwrap();
}

/// BOS as transformers 5 adds it: an explicit `add_bos_token` / `add_eos_token` rebuilds
/// the post-processor (BOS only when asked and named), otherwise the post-processor's own.
#[test]
fn bos_prefix_follows_add_bos_token_then_the_post_processor() {
    let dir = chat_fixture("mistral", "bos");
    let bos = |dir: &Path| Tokenizer::from_dir(dir).unwrap().bos_prefix().to_vec();
    assert_eq!(bos(&dir), [1]);
    for (key, value, expected) in [
        ("add_bos_token", Value::Bool(false), vec![]),
        ("add_bos_token", Value::Bool(true), vec![1]),
        ("add_eos_token", Value::Bool(true), vec![]),
    ] {
        let copy = chat_fixture("mistral", "bos-edit");
        edit_config(&copy, |c| {
            c.insert(key.into(), value.clone());
        });
        assert_eq!(bos(&copy), expected, "{key} = {value}");
    }
    edit_config(&dir, |c| {
        c.insert("add_bos_token".into(), "yes".into());
    });
    let err = Tokenizer::from_dir(&dir).unwrap_err().to_string();
    assert!(
        err.contains("tokenizer_config.json: add_bos_token: expected true or false"),
        "{err}"
    );
    // No BOS token named: nothing to add.
    let qwen = chat_fixture("qwen2.5", "bos-qwen");
    edit_config(&qwen, |c| {
        c.insert("add_bos_token".into(), true.into());
    });
    assert_eq!(bos(&qwen), Vec::<i64>::new());
    let t = Tokenizer::from_dir(chat_fixture("mistral", "bos-encode")).unwrap();
    assert_eq!(t.encode_with_bos("Hi").unwrap()[0], 1);
    assert_ne!(t.encode("Hi").unwrap()[0], 1);
}

/// The chat template: `chat_template.jinja` wins over the config's, a list of named
/// templates gives its "default", and saving writes the template set (or none).
#[test]
fn chat_template_sources_and_saving() {
    let dir = chat_fixture("chatml", "template");
    let source = |dir: &Path| {
        Tokenizer::from_dir(dir)
            .unwrap()
            .chat_template()
            .map(|(s, p)| (s.to_string(), p.file_name().unwrap().to_owned()))
    };
    let (text, from) = source(&dir).unwrap();
    assert!(text.starts_with("{% for message in messages %}"));
    assert_eq!(from, "tokenizer_config.json");
    edit_config(&dir, |c| {
        c.insert(
            "chat_template".into(),
            serde_json::json!([{"name": "tool_use", "template": "T"}, {"name": "default", "template": "D"}]),
        );
    });
    assert_eq!(source(&dir).unwrap().0, "D");
    std::fs::write(dir.join("chat_template.jinja"), "J").unwrap();
    assert_eq!(
        source(&dir).unwrap(),
        ("J".to_string(), "chat_template.jinja".into())
    );
    std::fs::remove_file(dir.join("chat_template.jinja")).unwrap();
    edit_config(&dir, |c| {
        c.insert(
            "chat_template".into(),
            serde_json::json!([{"name": "tool_use", "template": "T"}]),
        );
    });
    let err = Tokenizer::from_dir(&dir).unwrap_err().to_string();
    assert!(err.contains("tokenizer_config.json: chat_template: a list of templates without one named \"default\""), "{err}");

    let mut t = Tokenizer::from_dir(chat_fixture("chatml", "template-save")).unwrap();
    let out = scratch("template-out");
    t.set_chat_template(Some(("NEW".into(), "x".into())));
    t.save(&out).unwrap();
    assert_eq!(source(&out).unwrap().0, "NEW");
    t.set_chat_template(None);
    t.save(&out).unwrap();
    assert_eq!(source(&out), None);
    assert_eq!(
        t.special_tokens_map(),
        [
            ("eos_token".to_string(), "<|im_end|>".to_string()),
            ("pad_token".to_string(), "<|endoftext|>".to_string())
        ]
    );
}
