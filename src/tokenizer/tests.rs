use std::path::PathBuf;

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
