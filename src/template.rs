//! Chat and prompt templating, in one place for every stage.
//!
//! A conversation is rendered as `prefix(role) + content + turn_end` per message. A prompt
//! for generation ends with the assistant prefix, so the model continues with the response.
//! The response itself never contains the template: stages append the tokenizer's EOS
//! after it when they train on it.

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// Who speaks a message; lowercase in JSONL (`"system"`, `"user"`, `"assistant"`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    System,
    User,
    Assistant,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::System => "system",
            Role::User => "user",
            Role::Assistant => "assistant",
        }
    }
}

/// One message of a `{"messages": [...]}` record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    pub role: Role,
    pub content: String,
}

impl Message {
    pub fn new(role: Role, content: impl Into<String>) -> Self {
        Message {
            role,
            content: content.into(),
        }
    }
}

/// The strings around each turn. `Default` is the embedded template:
/// `<|system|>\n`, `<|user|>\n`, `<|assistant|>\n` and a turn end of `\n`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChatTemplate {
    pub system_prefix: String,
    pub user_prefix: String,
    pub assistant_prefix: String,
    pub turn_end: String,
}

impl Default for ChatTemplate {
    fn default() -> Self {
        ChatTemplate {
            system_prefix: "<|system|>\n".into(),
            user_prefix: "<|user|>\n".into(),
            assistant_prefix: "<|assistant|>\n".into(),
            turn_end: "\n".into(),
        }
    }
}

impl ChatTemplate {
    pub fn prefix(&self, role: Role) -> &str {
        match role {
            Role::System => &self.system_prefix,
            Role::User => &self.user_prefix,
            Role::Assistant => &self.assistant_prefix,
        }
    }

    /// A single-turn prompt, ending with the assistant prefix, ready for generation.
    pub fn prompt(&self, user: &str) -> String {
        let mut out = String::new();
        self.push_turn(&mut out, Role::User, user);
        out.push_str(&self.assistant_prefix);
        out
    }

    /// Splits a conversation into (prompt, response): the prompt is every message but the
    /// last, rendered, followed by the assistant prefix; the response is the content of the
    /// last message, which must be the assistant's. At least one user message is required.
    pub fn split_conversation(&self, messages: &[Message]) -> Result<(String, String)> {
        let Some((last, history)) = messages.split_last() else {
            return Err(Error::Invalid("conversation has no messages".into()));
        };
        if last.role != Role::Assistant {
            return Err(Error::Invalid(format!(
                "the last message of a conversation must be from the assistant, not the {}",
                last.role.as_str()
            )));
        }
        if !history.iter().any(|m| m.role == Role::User) {
            return Err(Error::Invalid(
                "conversation has no user message before the final assistant message".into(),
            ));
        }
        let mut prompt = String::new();
        for m in history {
            self.push_turn(&mut prompt, m.role, &m.content);
        }
        prompt.push_str(&self.assistant_prefix);
        Ok((prompt, last.content.clone()))
    }

    /// The role markers (the prefixes without surrounding whitespace, non-empty, without
    /// repeats), to add to a tokenizer as special tokens so each is one token.
    pub fn special_tokens(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for p in [
            &self.system_prefix,
            &self.user_prefix,
            &self.assistant_prefix,
        ] {
            let marker = p.trim();
            if !marker.is_empty() && !out.iter().any(|m| m == marker) {
                out.push(marker.to_string());
            }
        }
        out
    }

    fn push_turn(&self, out: &mut String, role: Role, content: &str) {
        out.push_str(self.prefix(role));
        out.push_str(content);
        out.push_str(&self.turn_end);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_single_turn_prompt() {
        let t = ChatTemplate::default();
        assert_eq!(
            t.prompt("Name a river."),
            "<|user|>\nName a river.\n<|assistant|>\n"
        );
    }

    #[test]
    fn split_multi_turn_conversation() {
        let t = ChatTemplate::default();
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
        assert_eq!(p1, t.prompt("Name a river."));
    }

    #[test]
    fn split_rejects_bad_conversations() {
        let t = ChatTemplate::default();
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
    fn messages_deserialize_with_lowercase_roles() {
        let rec: Vec<Message> = serde_json::from_str(
            r#"[{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Yo"}]"#,
        )
        .unwrap();
        assert_eq!(rec[0], Message::new(Role::User, "Hi"));
        assert_eq!(rec[1].role, Role::Assistant);
        assert!(serde_json::from_str::<Message>(r#"{"role": "User", "content": ""}"#).is_err());
    }

    #[test]
    fn template_serde_and_special_tokens() {
        let t = ChatTemplate::default();
        let json = serde_json::to_string(&t).unwrap();
        assert_eq!(serde_json::from_str::<ChatTemplate>(&json).unwrap(), t);
        let extra = r#"{"system_prefix": "", "user_prefix": "", "assistant_prefix": "",
                        "turn_end": "", "bos": ""}"#;
        assert!(serde_json::from_str::<ChatTemplate>(extra).is_err());
        assert_eq!(
            t.special_tokens(),
            vec!["<|system|>", "<|user|>", "<|assistant|>"]
        );
    }
}
