//! Reading JSONL files users bring: one JSON object per line, blank lines ignored.
//!
//! Every error names the file and the 1-based line (blank lines count), and, for a field,
//! the field: ``data.jsonl: line 7: field `response`: missing``. Readers ask for fields by
//! rlhf's names; a stage's `keys` maps them to the user's ([`DataKeys`]), and errors name
//! the user's key.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::sync::Arc;

use serde_json::Value;

use crate::config::DataKeys;
use crate::{Error, Result};

/// rlhf's field name → the key records use instead.
type KeyMap = Arc<BTreeMap<&'static str, String>>;

/// One non-blank line of a JSONL file; `value` is always a JSON object.
#[derive(Clone, Debug)]
pub struct Record {
    path: Arc<Path>,
    /// 1-based line number in the file.
    pub line: usize,
    pub value: Value,
    keys: KeyMap,
}

impl Record {
    /// The key that holds rlhf's field `name` in this file.
    fn key<'a>(&'a self, name: &'a str) -> &'a str {
        self.keys.get(name).map_or(name, String::as_str)
    }

    /// Field `name` as the file spells it, in backquotes, for messages.
    pub fn quoted(&self, name: &str) -> String {
        format!("`{}`", self.key(name))
    }

    /// The value of field `name`, absent or `null` as `None`.
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.value.get(self.key(name)).filter(|v| !v.is_null())
    }

    /// The file the record was read from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// True when `field` is present and not `null`.
    pub fn has(&self, field: &str) -> bool {
        self.get(field).is_some()
    }

    /// `<file>: line N: <what>`.
    pub fn error(&self, what: impl std::fmt::Display) -> Error {
        Error::format(&*self.path, format!("line {}: {what}", self.line))
    }

    /// ``<file>: line N: field `<field>`: <what>``; `field` may name an element, e.g.
    /// `responses[2]` or `messages[1].role`, and is spelled with the file's key.
    pub fn field_error(&self, field: &str, what: impl std::fmt::Display) -> Error {
        let end = field.find(['[', '.']).unwrap_or(field.len());
        let (name, rest) = field.split_at(end);
        self.error(format_args!("field `{}{rest}`: {what}", self.key(name)))
    }

    fn required(&self, field: &str) -> Result<&Value> {
        self.get(field)
            .ok_or_else(|| self.field_error(field, "missing"))
    }

    /// A required string field.
    pub fn str(&self, field: &str) -> Result<&str> {
        self.required(field)?
            .as_str()
            .ok_or_else(|| self.field_error(field, "expected a string"))
    }

    /// An optional string field: absent or `null` is `None`.
    pub fn opt_str(&self, field: &str) -> Result<Option<&str>> {
        if !self.has(field) {
            return Ok(None);
        }
        self.str(field).map(Some)
    }

    /// A required array field.
    pub fn array(&self, field: &str) -> Result<&[Value]> {
        self.required(field)?
            .as_array()
            .map(Vec::as_slice)
            .ok_or_else(|| self.field_error(field, "expected an array"))
    }

    /// A required array of strings.
    pub fn str_array(&self, field: &str) -> Result<Vec<&str>> {
        let wrong = || self.field_error(field, "expected an array of strings");
        let Some(items) = self.required(field)?.as_array() else {
            return Err(wrong());
        };
        items.iter().map(|v| v.as_str().ok_or_else(wrong)).collect()
    }

    /// A required array of integers.
    pub fn int_array(&self, field: &str) -> Result<Vec<i64>> {
        let wrong = || self.field_error(field, "expected an array of integers");
        let Some(items) = self.required(field)?.as_array() else {
            return Err(wrong());
        };
        items.iter().map(|v| v.as_i64().ok_or_else(wrong)).collect()
    }
}

/// Streams the records of a JSONL file. A missing or unreadable file is `Error::Io`; a line
/// that is not JSON (`line N: invalid JSON: ...`) or not an object, and a file without any
/// record (`no records`), are `Error::Format`. The iterator ends after the first error.
pub struct JsonlReader {
    path: Arc<Path>,
    reader: BufReader<File>,
    line: usize,
    records: usize,
    buf: Vec<u8>,
    done: bool,
    keys: KeyMap,
}

impl JsonlReader {
    pub fn open(path: &Path) -> Result<JsonlReader> {
        let file = File::open(path).map_err(|e| Error::io(path, e))?;
        Ok(JsonlReader {
            path: Arc::from(path),
            reader: BufReader::new(file),
            line: 0,
            records: 0,
            buf: Vec::new(),
            done: false,
            keys: KeyMap::default(),
        })
    }

    /// Reads rlhf's fields from the keys `keys` names.
    pub fn with_keys(mut self, keys: &DataKeys) -> JsonlReader {
        self.keys = Arc::new(keys.remapped());
        self
    }

    fn next_record(&mut self) -> Result<Option<Record>> {
        loop {
            self.buf.clear();
            let n = self
                .reader
                .read_until(b'\n', &mut self.buf)
                .map_err(|e| Error::io(&*self.path, e))?;
            if n == 0 {
                if self.records == 0 {
                    return Err(Error::format(&*self.path, "no records"));
                }
                return Ok(None);
            }
            self.line += 1;
            let at =
                |what: String| Error::format(&*self.path, format!("line {}: {what}", self.line));
            let mut text =
                std::str::from_utf8(&self.buf).map_err(|e| at(format!("not valid UTF-8: {e}")))?;
            if self.line == 1 {
                text = text.strip_prefix('\u{feff}').unwrap_or(text);
            }
            let text = text.trim_end_matches(['\n', '\r']);
            if text.trim().is_empty() {
                continue;
            }
            let value: Value = serde_json::from_str(text).map_err(|e| at(invalid_json(&e)))?;
            if !value.is_object() {
                return Err(at(format!(
                    "expected a JSON object, found {}",
                    kind(&value)
                )));
            }
            self.records += 1;
            return Ok(Some(Record {
                path: self.path.clone(),
                line: self.line,
                value,
                keys: self.keys.clone(),
            }));
        }
    }
}

impl Iterator for JsonlReader {
    type Item = Result<Record>;

    fn next(&mut self) -> Option<Result<Record>> {
        if self.done {
            return None;
        }
        let next = self.next_record();
        if !matches!(next, Ok(Some(_))) {
            self.done = true;
        }
        next.transpose()
    }
}

/// All records of a JSONL file (see [`JsonlReader`] for the errors).
pub fn read_jsonl(path: &Path) -> Result<Vec<Record>> {
    JsonlReader::open(path)?.collect()
}

/// serde_json's message without its " at line 1 column C" suffix (the line is always 1
/// here), with the column kept.
fn invalid_json(e: &serde_json::Error) -> String {
    let message = e.to_string();
    let suffix = format!(" at line {} column {}", e.line(), e.column());
    let message = message.strip_suffix(&suffix).unwrap_or(&message);
    format!("invalid JSON: {message} (column {})", e.column())
}

/// The JSON kind of a value, for messages.
pub(crate) fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::path::PathBuf;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    /// Writes `content` to a fresh temporary file with a unique name.
    pub(crate) fn temp_file(name: &str, content: &str) -> PathBuf {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let path =
            std::env::temp_dir().join(format!("rlhf-data-{}-{n}-{name}.jsonl", std::process::id()));
        std::fs::write(&path, content).unwrap();
        path
    }

    /// The error message of `result`, with the temporary path replaced by `F`.
    pub(crate) fn message<T: std::fmt::Debug>(path: &Path, result: Result<T>) -> String {
        result
            .unwrap_err()
            .to_string()
            .replace(&path.display().to_string(), "F")
    }

    #[test]
    fn reads_records_with_line_numbers() {
        let path = temp_file(
            "lines",
            "\u{feff}{\"a\": 1}\n\n   \n{\"b\": \"x\", \"c\": null}\r\n{\"d\": [1, 2]}",
        );
        let records = read_jsonl(&path).unwrap();
        let lines: Vec<usize> = records.iter().map(|r| r.line).collect();
        assert_eq!(lines, [1, 4, 5]);
        assert_eq!(records[0].value["a"], 1);
        assert_eq!(records[1].str("b").unwrap(), "x");
        assert_eq!(records[1].opt_str("c").unwrap(), None);
        assert_eq!(records[1].opt_str("z").unwrap(), None);
        assert!(records[1].has("b") && !records[1].has("c"));
        assert_eq!(records[2].int_array("d").unwrap(), [1, 2]);
        assert_eq!(records[2].array("d").unwrap().len(), 2);
        assert_eq!(records[2].path(), path);
    }

    #[test]
    fn file_errors() {
        let missing = std::env::temp_dir().join("rlhf-data-does-not-exist.jsonl");
        assert!(matches!(read_jsonl(&missing), Err(Error::Io { .. })));

        for content in ["", "\n  \n"] {
            let path = temp_file("empty", content);
            assert_eq!(message(&path, read_jsonl(&path)), "F: no records");
        }

        let path = temp_file("bad", "{\"a\": 1}\n\n{\"a\": }\n{\"a\": 2}\n");
        assert_eq!(
            message(&path, read_jsonl(&path)),
            "F: line 3: invalid JSON: expected value (column 7)"
        );
        // The reader stops at the first error.
        let mut reader = JsonlReader::open(&path).unwrap();
        assert!(reader.next().unwrap().is_ok());
        assert!(reader.next().unwrap().is_err());
        assert!(reader.next().is_none());

        let path = temp_file("array", "[1, 2]\n");
        assert_eq!(
            message(&path, read_jsonl(&path)),
            "F: line 1: expected a JSON object, found an array"
        );

        let path = temp_file("utf8", "{\"a\": 1}\n");
        std::fs::write(&path, b"{\"a\": 1}\n{\"a\": \"\xff\"}\n").unwrap();
        assert!(message(&path, read_jsonl(&path)).starts_with("F: line 2: not valid UTF-8"));
    }

    #[test]
    fn remapped_keys_are_read_and_named_in_errors() {
        let path = temp_file(
            "keys",
            "{\"question\": \"Hi\", \"prompt\": \"no\", \"n\": [1, \"x\"]}\n",
        );
        let keys = DataKeys {
            prompt: Some("question".into()),
            ranking: Some("n".into()),
            ..DataKeys::default()
        };
        let records: Vec<Record> = JsonlReader::open(&path)
            .unwrap()
            .with_keys(&keys)
            .collect::<Result<_>>()
            .unwrap();
        let r = &records[0];
        assert_eq!(r.str("prompt").unwrap(), "Hi");
        assert!(r.has("prompt"));
        assert_eq!(
            message(&path, r.int_array("ranking")),
            "F: line 1: field `n`: expected an array of integers"
        );
        assert_eq!(
            message(
                &path,
                Err::<(), _>(r.field_error("prompt[0].content", "empty"))
            ),
            "F: line 1: field `question[0].content`: empty"
        );
        assert_eq!(
            message(&path, r.str("response")),
            "F: line 1: field `response`: missing"
        );
    }

    #[test]
    fn field_errors() {
        let path = temp_file(
            "fields",
            "\n{\"s\": 3, \"a\": \"x\", \"n\": [1, \"2\"], \"t\": [\"a\", 1], \"z\": null}\n",
        );
        let records = read_jsonl(&path).unwrap();
        let r = &records[0];
        assert_eq!(
            message(&path, r.str("missing")),
            "F: line 2: field `missing`: missing"
        );
        assert_eq!(message(&path, r.str("z")), "F: line 2: field `z`: missing");
        assert_eq!(
            message(&path, r.str("s")),
            "F: line 2: field `s`: expected a string"
        );
        assert_eq!(
            message(&path, r.opt_str("s")),
            "F: line 2: field `s`: expected a string"
        );
        assert_eq!(
            message(&path, r.array("a")),
            "F: line 2: field `a`: expected an array"
        );
        assert_eq!(
            message(&path, r.int_array("n")),
            "F: line 2: field `n`: expected an array of integers"
        );
        assert_eq!(
            message(&path, r.int_array("a")),
            "F: line 2: field `a`: expected an array of integers"
        );
        assert_eq!(
            message(&path, r.str_array("t")),
            "F: line 2: field `t`: expected an array of strings"
        );
    }
}
