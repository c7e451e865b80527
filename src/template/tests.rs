use super::*;
use crate::config::{ChatConfig, TemplateKind};
use crate::rng::Rng;
use crate::text_side::TextSide;
use crate::world::prose::corpus;

/// How the built-in template rendered before it was a Jinja template (`prefix(role) +
/// content + "\n"` per message, then `<|assistant|>\n`): the rendering every embedded-world
/// figure was measured with, which the Jinja one must reproduce byte for byte.
fn reference(messages: &[Message], add_generation_prompt: bool) -> String {
    let mut out = String::new();
    for m in messages {
        out.push_str(&format!("<|{}|>\n{}\n", m.role.as_str(), m.content));
    }
    if add_generation_prompt {
        out.push_str("<|assistant|>\n");
    }
    out
}

fn scratch(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("rlhf-template-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn chat(template: TemplateKind, file: Option<std::path::PathBuf>) -> ChatConfig {
    ChatConfig { template, file }
}

#[test]
fn builtin_single_turn_prompt() {
    let t = ChatTemplate::builtin();
    assert_eq!(
        t.prompt("Name a river.").unwrap(),
        "<|user|>\nName a river.\n<|assistant|>\n"
    );
}

#[test]
fn split_multi_turn_conversation() {
    let t = ChatTemplate::builtin();
    let messages = vec![
        Message::new(Role::System, "Be brief."),
        Message::new(Role::User, "Hi"),
        Message::new(Role::Assistant, "Hello."),
        Message::new(Role::User, "Name a river."),
        Message::new(Role::Assistant, "The Avel."),
    ];
    let (prompt, response) = t.split_conversation(&messages).unwrap();
    assert_eq!(
        prompt,
        "<|system|>\nBe brief.\n<|user|>\nHi\n<|assistant|>\nHello.\n\
         <|user|>\nName a river.\n<|assistant|>\n"
    );
    assert_eq!(response, "The Avel.");
    // A single user turn gives exactly `prompt()`.
    let (p1, _) = t.split_conversation(&messages[3..]).unwrap();
    assert_eq!(p1, t.prompt("Name a river.").unwrap());
}

/// The built-in template renders exactly as the embedded world always did, for any
/// conversation: contents with newlines, surrounding spaces, Jinja syntax, quotes and
/// non-ASCII text are copied as they are.
#[test]
fn builtin_renders_byte_identically_to_the_old_template() {
    let t = ChatTemplate::builtin();
    let pieces = [
        "Name a river.",
        "  padded  ",
        "two\nlines\n",
        "{{ bos_token }} {% if x %}",
        "it's \"quoted\" \\n",
        "caf\u{e9} \u{65e5}\u{672c} \u{1f642}",
        "",
        "\n",
    ];
    let roles = [Role::System, Role::User, Role::Assistant];
    let mut rng = Rng::new(19);
    for _ in 0..300 {
        let n = 1 + rng.below(6);
        let messages: Vec<Message> = (0..n)
            .map(|_| Message::new(roles[rng.below(3)], pieces[rng.below(pieces.len())]))
            .collect();
        for generation in [true, false] {
            assert_eq!(
                t.render(&messages, generation).unwrap(),
                reference(&messages, generation),
                "{messages:?}"
            );
        }
    }
}

/// The embedded world's token ids do not change: its tokenizer (the markers as special
/// tokens) encodes the built-in template's prompts, chosen as "builtin" or read back as the
/// saved folder's own template ("model"), to the ids of the old rendering.
#[test]
fn world_prompts_keep_their_token_ids() {
    let mut specials = vec!["<|endoftext|>"];
    specials.extend(BUILTIN_MARKERS);
    let tokenizer = Tokenizer::train_bpe(&corpus(2, 200), 400, &specials).unwrap();
    assert!(tokenizer.bos_prefix().is_empty());
    let dir = scratch("world");
    let generation = crate::generation_config::GenerationConfig::for_tokenizer(&tokenizer);
    TextSide::new(tokenizer.clone(), ChatTemplate::builtin(), generation)
        .save(&dir)
        .unwrap();
    let conversation = [
        Message::new(Role::System, "Be brief."),
        Message::new(Role::User, "Where does Ada live?"),
    ];
    let old = tokenizer.encode(&reference(&conversation, true)).unwrap();
    assert_eq!(old[0], tokenizer.token_id("<|system|>").unwrap());
    for kind in [TemplateKind::Builtin, TemplateKind::Model] {
        let side = TextSide::load(&dir, &chat(kind, None)).unwrap();
        let text = side.template.render(&conversation, true).unwrap();
        assert_eq!(side.encode_prompt(&text).unwrap(), old, "{kind:?}");
    }
    let saved = std::fs::read_to_string(dir.join("tokenizer_config.json")).unwrap();
    let saved: serde_json::Value = serde_json::from_str(&saved).unwrap();
    assert_eq!(saved["chat_template"], BUILTIN_SOURCE);
}

#[test]
fn split_rejects_bad_conversations() {
    let t = ChatTemplate::builtin();
    let err = |m: &[Message]| t.split_conversation(m).unwrap_err().to_string();
    assert_eq!(err(&[]), "conversation has no messages");
    assert!(err(&[Message::new(Role::User, "Hi")]).contains("must be from the assistant"));
    let no_user = [
        Message::new(Role::System, "s"),
        Message::new(Role::Assistant, "a"),
    ];
    assert!(err(&no_user).contains("no user message"));
}

#[test]
fn without_a_template_prompts_are_used_as_given() {
    let t = ChatTemplate::None;
    assert_eq!(t.prompt("Name a river.").unwrap(), "Name a river.");
    assert_eq!(t.source(), None);
    let pair = [
        Message::new(Role::User, "Hi"),
        Message::new(Role::Assistant, "Hello."),
    ];
    assert_eq!(
        t.split_conversation(&pair).unwrap(),
        ("Hi".to_string(), "Hello.".to_string())
    );
    let longer = [
        Message::new(Role::System, "Be brief."),
        pair[0].clone(),
        pair[1].clone(),
    ];
    let err = t.split_conversation(&longer).unwrap_err().to_string();
    assert!(err.contains("needs a chat template"), "{err}");
}

#[test]
fn choosing_a_template_names_what_is_missing_or_broken() {
    let tokenizer = Tokenizer::train_bpe(&corpus(1, 40), 300, &["<|endoftext|>"]).unwrap();
    let dir = scratch("choose");
    let err = ChatTemplate::choose(&chat(TemplateKind::Model, None), &tokenizer, &dir)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("tokenizer_config.json: no chat_template") && err.contains("\"builtin\""),
        "{err}"
    );
    let missing = dir.join("missing.jinja");
    let err = ChatTemplate::choose(
        &chat(TemplateKind::File, Some(missing.clone())),
        &tokenizer,
        &dir,
    )
    .unwrap_err();
    assert!(
        matches!(&err, Error::Io { path, .. } if *path == missing),
        "{err}"
    );
    let broken = dir.join("broken.jinja");
    std::fs::write(&broken, "{% for m in messages %}\n{{ m.content }\n").unwrap();
    let err = ChatTemplate::choose(
        &chat(TemplateKind::File, Some(broken.clone())),
        &tokenizer,
        &dir,
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.starts_with(&format!(
            "{}: chat template line 2: syntax error",
            broken.display()
        )),
        "{err}"
    );
    assert!(!err.contains('\n'), "{err}");
    let good = dir.join("chatml.jinja");
    std::fs::write(
        &good,
        "{% for m in messages %}{{ '<|im_start|>' + m.role + '\\n' + m.content + '<|im_end|>\\n' }}{% endfor %}",
    )
    .unwrap();
    let t = ChatTemplate::choose(&chat(TemplateKind::File, Some(good)), &tokenizer, &dir).unwrap();
    assert_eq!(
        t.render(&[Message::new(Role::User, "Hi")], false).unwrap(),
        "<|im_start|>user\nHi<|im_end|>\n"
    );
}

#[test]
fn messages_deserialize_with_lowercase_roles() {
    let rec: Vec<Message> = serde_json::from_str(
        r#"[{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Yo"}]"#,
    )
    .unwrap();
    assert_eq!(rec[0], Message::new(Role::User, "Hi"));
    assert_eq!(rec[1].role, Role::Assistant);
    assert!(serde_json::from_str::<Message>(r#"{"role": "User", "content": ""}"#).is_err());
}
