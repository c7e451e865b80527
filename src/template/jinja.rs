//! Jinja chat templates rendered as transformers' `apply_chat_template` renders them.
//!
//! transformers compiles a template in a sandboxed Jinja2 environment with `trim_blocks` and
//! `lstrip_blocks`, the `loopcontrols` extension, `raise_exception`, `strftime_now` and a
//! `tojson` that writes Python's `json.dumps` (non-ASCII kept), and renders it with
//! `messages`, `tools` and `documents` (None here), `add_generation_prompt` and the
//! tokenizer's named special tokens (`bos_token`, `eos_token`, ...). This is the same
//! environment in minijinja, with Python's string and dict methods from minijinja-contrib.

use minijinja::value::{Kwargs, Value, ValueKind};
use minijinja::{context, AutoEscape, Environment, ErrorKind};

use super::message::Message;

/// The name the template is compiled under; errors name the template's origin instead.
const NAME: &str = "chat_template";

/// A compiled Jinja chat template with the special-token variables it is rendered with.
pub struct JinjaTemplate {
    env: Environment<'static>,
    source: String,
    /// Where the source came from (a file, or "the built-in template"), for errors.
    origin: String,
    /// `bos_token`, `eos_token`, ... as the tokenizer names them.
    special_tokens: Vec<(String, String)>,
}

impl std::fmt::Debug for JinjaTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JinjaTemplate")
            .field("origin", &self.origin)
            .field("source", &self.source)
            .finish()
    }
}

impl Clone for JinjaTemplate {
    fn clone(&self) -> Self {
        JinjaTemplate::new(&self.source, &self.origin, self.special_tokens.clone())
            .expect("a template that compiled once compiles again")
    }
}

impl JinjaTemplate {
    /// Compiles `source`; an error is one line naming `origin`, the template line and the
    /// problem.
    pub fn new(
        source: &str,
        origin: &str,
        special_tokens: Vec<(String, String)>,
    ) -> Result<JinjaTemplate, String> {
        let mut env = Environment::new();
        let syntax = minijinja::syntax::SyntaxConfig::builder()
            .trim_blocks(true)
            .lstrip_blocks(true)
            .build()
            .expect("the default delimiters are valid");
        env.set_syntax(syntax);
        env.set_auto_escape_callback(|_| AutoEscape::None);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function("raise_exception", raise_exception);
        env.add_function("strftime_now", strftime_now);
        env.add_filter("tojson", tojson);
        env.add_template_owned(NAME, rewrite_generation_tags(source))
            .map_err(|e| describe(origin, &e))?;
        Ok(JinjaTemplate {
            env,
            source: source.to_string(),
            origin: origin.to_string(),
            special_tokens,
        })
    }

    /// The template text as given (what a saved tokenizer_config.json carries).
    pub fn source(&self) -> &str {
        &self.source
    }

    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The conversation as text; `add_generation_prompt` appends the assistant's header.
    pub fn render(
        &self,
        messages: &[Message],
        add_generation_prompt: bool,
    ) -> Result<String, String> {
        // Messages as Python dicts: `role` then `content`, in that order.
        let messages: Value = messages
            .iter()
            .map(|m| Value::from_pairs([("role", m.role.as_str()), ("content", &m.content)]))
            .collect();
        let specials = Value::from_pairs(
            self.special_tokens
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str())),
        );
        let ctx = context! {
            messages => messages,
            tools => (),
            documents => (),
            add_generation_prompt => add_generation_prompt,
            ..specials
        };
        self.env
            .get_template(NAME)
            .and_then(|t| t.render(ctx))
            .map_err(|e| describe(&self.origin, &e))
    }
}

/// One line: where the template came from, its line, and what went wrong.
fn describe(origin: &str, e: &minijinja::Error) -> String {
    let line = e.line().map(|l| format!(" line {l}")).unwrap_or_default();
    let what = match e.detail() {
        Some(detail) if e.kind() == ErrorKind::InvalidOperation => detail.to_string(),
        Some(detail) => format!("{}: {detail}", e.kind()),
        None => e.kind().to_string(),
    };
    let what = what.split_whitespace().collect::<Vec<_>>().join(" ");
    format!("{origin}: chat template{line}: {what}")
}

/// `raise_exception(message)`: the template refuses the conversation.
fn raise_exception(message: String) -> Result<Value, minijinja::Error> {
    Err(minijinja::Error::new(ErrorKind::InvalidOperation, message))
}

/// `{% generation %}` ... `{% endgeneration %}` (transformers' assistant-mask extension)
/// becomes `{% if true %}` ... `{% endif %}`: the same output and the same whitespace
/// control, which is all rendering needs.
fn rewrite_generation_tags(source: &str) -> String {
    let mut out = String::with_capacity(source.len());
    let mut rest = source;
    while let Some(at) = rest.find("{%") {
        out.push_str(&rest[..at]);
        let tag = &rest[at..];
        let Some(end) = tag.find("%}") else {
            break;
        };
        let inner = &tag[2..end];
        let (lead, body) = split_marker(inner, true);
        let (body, trail) = split_marker(body, false);
        let word = body.trim();
        let replacement = match word {
            "generation" => Some("if true"),
            "endgeneration" => Some("endif"),
            _ => None,
        };
        match replacement {
            Some(r) => out.push_str(&format!("{{%{lead} {r} {trail}%}}")),
            None => out.push_str(&tag[..end + 2]),
        }
        rest = &tag[end + 2..];
    }
    out.push_str(rest);
    out
}

/// Splits a leading (or trailing) whitespace-control marker `-` or `+` off a tag's inside.
fn split_marker(inner: &str, leading: bool) -> (&str, &str) {
    let has = |c: char| c == '-' || c == '+';
    if leading {
        match inner.chars().next() {
            Some(c) if has(c) => (&inner[..1], &inner[1..]),
            _ => ("", inner),
        }
    } else {
        match inner.chars().last() {
            Some(c) if has(c) => (&inner[..inner.len() - 1], &inner[inner.len() - 1..]),
            _ => (inner, ""),
        }
    }
}

/// `tojson`, as transformers overrides it: Python's `json.dumps(x, ensure_ascii=False,
/// indent=indent, sort_keys=sort_keys)` (", " and ": " separators; newlines with an indent).
fn tojson(value: &Value, kwargs: Kwargs) -> Result<Value, minijinja::Error> {
    let indent: Option<usize> = kwargs.get("indent")?;
    let sort_keys: Option<bool> = kwargs.get("sort_keys")?;
    let ensure_ascii: Option<bool> = kwargs.get("ensure_ascii")?;
    kwargs.assert_all_used()?;
    if ensure_ascii == Some(true) {
        return Err(minijinja::Error::new(
            ErrorKind::InvalidOperation,
            "tojson(ensure_ascii=true) is not supported",
        ));
    }
    let mut out = String::new();
    py_json(value, indent, sort_keys.unwrap_or(false), 0, &mut out)?;
    Ok(Value::from(out))
}

fn py_json(
    value: &Value,
    indent: Option<usize>,
    sort_keys: bool,
    depth: usize,
    out: &mut String,
) -> Result<(), minijinja::Error> {
    let newline = |out: &mut String, depth: usize| {
        if let Some(n) = indent {
            out.push('\n');
            out.push_str(&" ".repeat(n * depth));
        }
    };
    let separator = if indent.is_some() { "," } else { ", " };
    match value.kind() {
        ValueKind::Undefined | ValueKind::None => out.push_str("null"),
        ValueKind::Bool => out.push_str(if value.is_true() { "true" } else { "false" }),
        ValueKind::Number => out.push_str(&value.to_string()),
        ValueKind::String => out.push_str(
            &serde_json::to_string(value.as_str().unwrap_or_default()).expect("strings serialize"),
        ),
        ValueKind::Seq | ValueKind::Iterable | ValueKind::Map => {
            // A list iterates its items, a dict its keys (in insertion order, as Python).
            let is_map = value.kind() == ValueKind::Map;
            let mut keys: Vec<Value> = value.try_iter()?.collect();
            if is_map && sort_keys {
                keys.sort();
            }
            let (open, close) = if is_map { ('{', '}') } else { ('[', ']') };
            out.push(open);
            for (i, key) in keys.iter().enumerate() {
                if i > 0 {
                    out.push_str(separator);
                }
                newline(out, depth + 1);
                let item = if is_map {
                    let name = key.as_str().map_or_else(|| key.to_string(), String::from);
                    out.push_str(&serde_json::to_string(&name).expect("strings serialize"));
                    out.push_str(": ");
                    value.get_item(key)?
                } else {
                    key.clone()
                };
                py_json(&item, indent, sort_keys, depth + 1, out)?;
            }
            if !keys.is_empty() {
                newline(out, depth);
            }
            out.push(close);
        }
        _ => {
            return Err(minijinja::Error::new(
                ErrorKind::InvalidOperation,
                format!("tojson: cannot serialize a value of kind {}", value.kind()),
            ))
        }
    }
    Ok(())
}

/// `strftime_now(format)`: the current UTC time (transformers uses local time) in a
/// Python `strftime` format, for templates that print today's date (Llama 3.2).
fn strftime_now(format: String) -> Result<Value, minijinja::Error> {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    strftime(&format, secs).map(Value::from)
}

const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
const WEEKDAYS: [&str; 7] = [
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
    "Sunday",
];

/// `strftime` of a Unix time (UTC) for the common directives.
fn strftime(format: &str, unix_seconds: i64) -> Result<String, minijinja::Error> {
    let days = unix_seconds.div_euclid(86_400);
    let secs = unix_seconds.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    // 1970-01-01 was a Thursday (index 3 from Monday).
    let weekday = (days + 3).rem_euclid(7) as usize;
    let month_name = MONTHS[month as usize - 1];
    let mut out = String::new();
    let mut chars = format.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('Y') => out.push_str(&year.to_string()),
            Some('y') => out.push_str(&format!("{:02}", year.rem_euclid(100))),
            Some('m') => out.push_str(&format!("{month:02}")),
            Some('d') => out.push_str(&format!("{day:02}")),
            Some('e') => out.push_str(&format!("{day:>2}")),
            Some('B') => out.push_str(month_name),
            Some('b') => out.push_str(&month_name[..3]),
            Some('A') => out.push_str(WEEKDAYS[weekday]),
            Some('a') => out.push_str(&WEEKDAYS[weekday][..3]),
            Some('H') => out.push_str(&format!("{:02}", secs / 3600)),
            Some('M') => out.push_str(&format!("{:02}", secs / 60 % 60)),
            Some('S') => out.push_str(&format!("{:02}", secs % 60)),
            Some('%') => out.push('%'),
            other => {
                return Err(minijinja::Error::new(
                    ErrorKind::InvalidOperation,
                    format!(
                        "strftime_now: unsupported directive %{}",
                        other.map(String::from).unwrap_or_default()
                    ),
                ))
            }
        }
    }
    Ok(out)
}

/// (year, month 1..=12, day 1..=31) of a count of days since 1970-01-01 (Howard Hinnant's
/// `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::template::message::Role;

    fn render(source: &str, messages: &[Message], generation: bool) -> Result<String, String> {
        let specials = vec![
            ("bos_token".to_string(), "<s>".to_string()),
            ("eos_token".to_string(), "</s>".to_string()),
        ];
        JinjaTemplate::new(source, "t.jinja", specials)?.render(messages, generation)
    }

    #[test]
    fn trims_blocks_and_sees_special_tokens() {
        let source = "{{ bos_token }}{% for m in messages %}\n  {% if m.role == 'user' %}\n[{{ m.content.strip() }}]\n  {% endif %}\n{% endfor %}\n{% if add_generation_prompt %}>{% endif %}";
        let messages = [Message::new(Role::User, "  hi  ")];
        assert_eq!(render(source, &messages, true).unwrap(), "<s>[hi]\n>");
        assert_eq!(render(source, &messages, false).unwrap(), "<s>[hi]\n");
    }

    #[test]
    fn errors_are_one_line_naming_the_template() {
        let raise = "{% if messages | length > 1 %}{{ raise_exception('Roles must\nalternate') }}{% endif %}";
        let two = [Message::new(Role::User, "a"), Message::new(Role::User, "b")];
        assert_eq!(
            render(raise, &two, false).unwrap_err(),
            "t.jinja: chat template line 1: Roles must alternate"
        );
        let bad = "{% for m in messages %}{{ m.content }}";
        let err = render(bad, &two, false).unwrap_err();
        assert!(
            err.starts_with("t.jinja: chat template line 1: syntax error"),
            "{err}"
        );
        assert!(!err.contains('\n'), "{err}");
    }

    #[test]
    fn tojson_writes_python_json() {
        let source = "{{ x | tojson }}|{{ x | tojson(indent=2) }}|{{ 'é\"' | tojson }}";
        let t = JinjaTemplate::new(source, "t", vec![]).unwrap();
        let out = t
            .env
            .get_template(NAME)
            .unwrap()
            .render(context! { x => Value::from_pairs([
                ("b", Value::from(vec![Value::from(1), Value::from(2.5), Value::from(())])),
                ("a", Value::from(true)),
                ("c", Value::from_pairs(Vec::<(&str, Value)>::new())),
            ]) })
            .unwrap();
        assert_eq!(
            out,
            "{\"b\": [1, 2.5, null], \"a\": true, \"c\": {}}|{\n  \"b\": [\n    1,\n    2.5,\n    null\n  ],\n  \"a\": true,\n  \"c\": {}\n}|\"é\\\"\""
        );
    }

    #[test]
    fn generation_tags_render_their_body() {
        let source = "{% for m in messages %}{%- generation -%}\n{{ m.content }}\n{%- endgeneration %}{% endfor %}";
        let messages = [Message::new(Role::Assistant, "ok")];
        assert_eq!(render(source, &messages, false).unwrap(), "ok");
    }

    #[test]
    fn strftime_formats_utc_dates() {
        // 2024-07-26 13:05:09 UTC, a Friday.
        let t = 1_722_000_000 - 1_722_000_000 % 86_400 + 13 * 3600 + 5 * 60 + 9;
        assert_eq!(
            strftime("%d %b %Y, %A %B %m/%y %H:%M:%S %%", t).unwrap(),
            "26 Jul 2024, Friday July 07/24 13:05:09 %"
        );
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
        assert_eq!(civil_from_days(19_782), (2024, 2, 29));
        assert!(strftime("%Q", 0).is_err());
    }
}
