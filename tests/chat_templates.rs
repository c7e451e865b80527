//! Chat templates as transformers applies them: for tokenizers carrying the templates of
//! real families (Llama 3, Llama 3.1, Qwen2.5, ChatML, Mistral; `tests/fixtures/chat/`,
//! made by `scripts/chat_fixtures.py`), `rlhf` renders every recorded conversation to the
//! text and token ids of `apply_chat_template`, refuses what the template refuses, adds
//! the BOS `tokenizer(text)` adds, and stops at every EOS of `generation_config.json`. A
//! folder saved by `rlhf` loads in `AutoTokenizer` with the template it used.

mod common;

use common::{fixture, python, temp_dir};
use rlhf::config::{ChatConfig, TemplateKind};
use rlhf::template::{Message, Role};
use rlhf::text_side::TextSide;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

const FAMILIES: [&str; 5] = ["llama3", "llama3.1", "qwen2.5", "chatml", "mistral"];

fn chat(template: TemplateKind) -> ChatConfig {
    ChatConfig {
        template,
        file: None,
    }
}

fn dir(family: &str) -> PathBuf {
    fixture("chat").join(family)
}

fn cases(dir: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("cases.json")).unwrap()).unwrap()
}

fn messages(case: &Value) -> Vec<Message> {
    serde_json::from_value(case["messages"].clone()).unwrap()
}

fn ids(value: &Value) -> Vec<i64> {
    serde_json::from_value(value.clone()).unwrap()
}

#[test]
fn token_ids_equal_apply_chat_template() {
    for family in FAMILIES {
        let dir = dir(family);
        let side = TextSide::load(&dir, &chat(TemplateKind::Model)).unwrap();
        let record = cases(&dir);
        let mut checked = 0;
        for case in record["cases"].as_array().unwrap() {
            let (name, generation) = (
                &case["name"],
                case["add_generation_prompt"].as_bool().unwrap(),
            );
            let rendered = side.template.render(&messages(case), generation);
            if let Some(expected) = case.get("error") {
                let err = rendered.unwrap_err().to_string();
                assert!(
                    err.contains(expected.as_str().unwrap()) && !err.contains('\n'),
                    "{family} {name}: {err}"
                );
                continue;
            }
            let text = rendered.unwrap_or_else(|e| panic!("{family} {name}: {e}"));
            assert_eq!(
                text,
                case["text"].as_str().unwrap(),
                "{family} {name} {generation}"
            );
            assert_eq!(
                side.encode_prompt(&text).unwrap(),
                ids(&case["ids"]),
                "{family} {name} {generation}"
            );
            checked += 1;
        }
        assert!(checked >= 10, "{family}: {checked} cases");
    }
}

/// A template that writes `{{ bos_token }}` gets one BOS (its own); one that does not gets
/// none; prompts used as given get the BOS `tokenizer(text)` adds (Llama 3's and Mistral's
/// post-processors add one, ChatML's and Qwen's none).
#[test]
fn bos_as_transformers_adds_it() {
    for family in FAMILIES {
        let dir = dir(family);
        let side = TextSide::load(&dir, &chat(TemplateKind::None)).unwrap();
        for plain in cases(&dir)["plain"].as_array().unwrap() {
            let text = plain["text"].as_str().unwrap();
            let prompt = side.template.prompt(text).unwrap();
            assert_eq!(prompt, text);
            assert_eq!(
                side.encode_prompt(&prompt).unwrap(),
                ids(&plain["ids"]),
                "{family}"
            );
        }
        let bos = side.tokenizer.bos_prefix().to_vec();
        let expected_bos = matches!(family, "llama3" | "llama3.1" | "mistral");
        assert_eq!(bos.len(), usize::from(expected_bos), "{family}: {bos:?}");
        let templated = TextSide::load(&dir, &chat(TemplateKind::Model)).unwrap();
        let text = templated.template.prompt("Hi there!").unwrap();
        let encoded = templated.encode_prompt(&text).unwrap();
        let leading = encoded.iter().take_while(|id| bos.contains(id)).count();
        assert_eq!(leading, bos.len(), "{family}: {encoded:?}");
    }
}

#[test]
fn generation_stops_at_every_eos_of_generation_config() {
    for family in FAMILIES {
        let dir = dir(family);
        let side = TextSide::load(&dir, &chat(TemplateKind::Model)).unwrap();
        let stops = side.eos_token_ids();
        assert_eq!(stops[0], side.tokenizer.eos_id(), "{family}");
        for id in ids(&cases(&dir)["eos_token_ids"]) {
            assert!(stops.contains(&id), "{family}: {id} not in {stops:?}");
        }
    }
    let llama = TextSide::load(&dir("llama3"), &chat(TemplateKind::Model)).unwrap();
    assert_eq!(llama.eos_token_ids().len(), 2);
    let defaults = llama.generation.sampling_defaults();
    assert_eq!(
        (defaults.greedy, defaults.temperature, defaults.top_p),
        (Some(false), Some(0.6), Some(0.9))
    );
}

/// The folder `rlhf` saves advertises the template the run used: transformers' own
/// `apply_chat_template` on it gives the recorded ids (the model's template), the built-in
/// template's text with the tokenizer's BOS first, or no template at all.
#[test]
fn saved_folders_carry_the_template_used_into_transformers() {
    for (family, kind) in [
        ("llama3.1", TemplateKind::Model),
        ("mistral", TemplateKind::Model),
        ("llama3", TemplateKind::Builtin),
        ("qwen2.5", TemplateKind::None),
    ] {
        let side = TextSide::load(&dir(family), &chat(kind)).unwrap();
        let out = temp_dir(&format!("chat-save-{family}"));
        // A stale chat_template.jinja would win over tokenizer_config.json in transformers.
        std::fs::write(out.join("chat_template.jinja"), "stale").unwrap();
        side.save(&out).unwrap();
        assert!(!out.join("chat_template.jinja").exists());
        let reloaded = TextSide::load(&out, &chat(TemplateKind::Model));
        let conversation = [
            Message::new(Role::System, "You are a terse assistant."),
            Message::new(Role::User, "Name a river in the north."),
        ];
        let expected = match kind {
            TemplateKind::None => {
                let err = reloaded.unwrap_err().to_string();
                assert!(err.contains("no chat_template"), "{err}");
                None
            }
            _ => {
                let reloaded = reloaded.unwrap();
                let text = side.template.render(&conversation, true).unwrap();
                assert_eq!(reloaded.template.render(&conversation, true).unwrap(), text);
                if kind == TemplateKind::Builtin {
                    assert!(
                        text.starts_with("<|begin_of_text|><|system|>\n"),
                        "{text:?}"
                    );
                }
                Some(side.encode_prompt(&text).unwrap())
            }
        };
        let result = Command::new(python())
            .arg(fixture("../../scripts/chat_check.py"))
            .arg(&out)
            .arg(serde_json::to_string(&conversation).unwrap())
            .arg(serde_json::to_string(&expected).unwrap())
            .arg(serde_json::to_string(side.eos_token_ids()).unwrap())
            .output()
            .unwrap();
        assert!(
            result.status.success(),
            "{family} {kind:?}: transformers disagrees with the saved folder:\n{}{}",
            String::from_utf8_lossy(&result.stdout),
            String::from_utf8_lossy(&result.stderr)
        );
        std::fs::remove_dir_all(&out).unwrap();
    }
}
