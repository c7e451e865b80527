//! Reward-model comparisons: `{"prompt", "responses", "ranking"}` (K-wise) or
//! `{"prompt", "chosen", "rejected"}` (pairwise) records.

use std::path::Path;

use super::jsonl::{JsonlReader, Record};
use super::sft::{invalid_message, non_empty};
use crate::template::ChatTemplate;
use crate::Result;

/// The fewest and most responses a ranked record may have (InstructGPT ranks K = 4..9).
pub const MIN_K: usize = 2;
pub const MAX_K: usize = 9;

/// One prompt with K ranked responses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RankedExample {
    /// The fully templated prompt, ending with the assistant prefix.
    pub prompt: String,
    /// The responses ordered best to worst (K of them, 2..=9).
    pub responses: Vec<String>,
    pub category: Option<String>,
}

impl RankedExample {
    /// Number of pairwise comparisons, C(K, 2).
    pub fn comparisons(&self) -> usize {
        pairs(self.responses.len())
    }
}

/// C(k, 2).
pub(crate) fn pairs(k: usize) -> usize {
    k * k.saturating_sub(1) / 2
}

/// Reads a reward-model JSONL file (formats in the [module documentation](super)).
pub fn read_rm(path: &Path, template: &ChatTemplate) -> Result<Vec<RankedExample>> {
    JsonlReader::open(path)?
        .map(|record| parse_rm(&record?, template))
        .collect()
}

fn parse_rm(r: &Record, template: &ChatTemplate) -> Result<RankedExample> {
    let ranked = r.has("responses") || r.has("ranking");
    let pairwise = r.has("chosen") || r.has("rejected");
    let prompt = non_empty(r, "prompt", r.str("prompt")?)?;
    let responses = match (ranked, pairwise) {
        (true, true) => return Err(r.error(
            "has both `responses`/`ranking` and `chosen`/`rejected`: give one form or the other",
        )),
        (false, false) => {
            return Err(r.error("expected `responses` and `ranking`, or `chosen` and `rejected`"))
        }
        (true, false) => parse_ranked(r)?,
        (false, true) => {
            let chosen = non_empty(r, "chosen", r.str("chosen")?)?;
            let rejected = non_empty(r, "rejected", r.str("rejected")?)?;
            if chosen.trim() == rejected.trim() {
                return Err(r.field_error("rejected", "identical to `chosen`"));
            }
            vec![chosen.to_string(), rejected.to_string()]
        }
    };
    let prompt = template
        .prompt(prompt)
        .map_err(|e| r.field_error("prompt", invalid_message(e)))?;
    Ok(RankedExample {
        prompt,
        responses,
        category: r.opt_str("category")?.map(String::from),
    })
}

/// The responses reordered best to worst by `ranking`.
fn parse_ranked(r: &Record) -> Result<Vec<String>> {
    let responses = r.str_array("responses")?;
    let k = responses.len();
    if !(MIN_K..=MAX_K).contains(&k) {
        return Err(r.field_error("responses", format!("K = {k}, expected {MIN_K} to {MAX_K}")));
    }
    for (i, response) in responses.iter().enumerate() {
        non_empty(r, &format!("responses[{i}]"), response)?;
        if let Some(j) = responses[..i]
            .iter()
            .position(|o| o.trim() == response.trim())
        {
            return Err(r.field_error("responses", format!("responses {j} and {i} are identical")));
        }
    }
    let ranking = r.int_array("ranking")?;
    let mut seen = vec![false; k];
    let is_permutation = ranking.len() == k
        && ranking.iter().all(|&i| {
            usize::try_from(i)
                .ok()
                .filter(|&i| i < k)
                .is_some_and(|i| !std::mem::replace(&mut seen[i], true))
        });
    if !is_permutation {
        return Err(r.field_error(
            "ranking",
            format!("{ranking:?} is not a permutation of 0..{k}"),
        ));
    }
    Ok(ranking
        .iter()
        .map(|&i| responses[i as usize].to_string())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::super::jsonl::tests::{message, temp_file};
    use super::*;

    fn read(content: &str) -> (std::path::PathBuf, Result<Vec<RankedExample>>) {
        let path = temp_file("rm", content);
        let result = read_rm(&path, &ChatTemplate::builtin());
        (path, result)
    }

    fn error(content: &str) -> String {
        let (path, result) = read(content);
        message(&path, result)
    }

    #[test]
    fn both_forms_parse() {
        let (_, result) = read(concat!(
            r#"{"prompt": "Name a river.", "responses": ["b", "c", "a"], "ranking": [2, 0, 1], "#,
            r#""category": "open_qa", "id": "x1"}"#,
            "\n",
            r#"{"prompt": "Hi", "chosen": "Hello.", "rejected": "Go away."}"#,
        ));
        let examples = result.unwrap();
        assert_eq!(
            examples,
            [
                RankedExample {
                    prompt: "<|user|>\nName a river.\n<|assistant|>\n".into(),
                    responses: vec!["a".into(), "b".into(), "c".into()],
                    category: Some("open_qa".into()),
                },
                RankedExample {
                    prompt: "<|user|>\nHi\n<|assistant|>\n".into(),
                    responses: vec!["Hello.".into(), "Go away.".into()],
                    category: None,
                },
            ]
        );
        assert_eq!(
            (examples[0].comparisons(), examples[1].comparisons()),
            (3, 1)
        );
        // K = 9 is allowed.
        let (_, result) = read(
            r#"{"prompt": "p", "responses": ["1","2","3","4","5","6","7","8","9"], "ranking": [8,7,6,5,4,3,2,1,0]}"#,
        );
        assert_eq!(result.unwrap()[0].responses[0], "9");
    }

    #[test]
    fn errors_name_file_line_and_field() {
        let ok = r#"{"prompt": "p", "chosen": "a", "rejected": "b"}"#;
        let cases = [
            (r#"{"prompt": "p", "chosen": "a", "rejected": }"#, "F: line 2: invalid JSON: expected value (column 44)"),
            (r#"{"chosen": "a", "rejected": "b"}"#, "F: line 2: field `prompt`: missing"),
            (r#"{"prompt": " ", "chosen": "a", "rejected": "b"}"#, "F: line 2: field `prompt`: empty"),
            (r#"{"prompt": "p", "response": "a"}"#, "F: line 2: expected `responses` and `ranking`, or `chosen` and `rejected`"),
            (
                r#"{"prompt": "p", "chosen": "a", "rejected": "b", "ranking": [0, 1]}"#,
                "F: line 2: has both `responses`/`ranking` and `chosen`/`rejected`: give one form or the other",
            ),
            (r#"{"prompt": "p", "chosen": "a"}"#, "F: line 2: field `rejected`: missing"),
            (r#"{"prompt": "p", "chosen": "", "rejected": "b"}"#, "F: line 2: field `chosen`: empty"),
            (r#"{"prompt": "p", "chosen": "a", "rejected": 2}"#, "F: line 2: field `rejected`: expected a string"),
            (r#"{"prompt": "p", "chosen": "a ", "rejected": "a"}"#, "F: line 2: field `rejected`: identical to `chosen`"),
            (r#"{"prompt": "p", "responses": ["a", "b"]}"#, "F: line 2: field `ranking`: missing"),
            (r#"{"prompt": "p", "ranking": [0, 1]}"#, "F: line 2: field `responses`: missing"),
            (r#"{"prompt": "p", "responses": "a", "ranking": [0]}"#, "F: line 2: field `responses`: expected an array of strings"),
            (r#"{"prompt": "p", "responses": ["a", 1], "ranking": [0, 1]}"#, "F: line 2: field `responses`: expected an array of strings"),
            (r#"{"prompt": "p", "responses": ["a"], "ranking": [0]}"#, "F: line 2: field `responses`: K = 1, expected 2 to 9"),
            (
                r#"{"prompt": "p", "responses": ["1","2","3","4","5","6","7","8","9","10"], "ranking": [0,1,2,3,4,5,6,7,8,9]}"#,
                "F: line 2: field `responses`: K = 10, expected 2 to 9",
            ),
            (r#"{"prompt": "p", "responses": ["a", "b", "\t"], "ranking": [0, 1, 2]}"#, "F: line 2: field `responses[2]`: empty"),
            (r#"{"prompt": "p", "responses": ["a", "b", "a"], "ranking": [0, 1, 2]}"#, "F: line 2: field `responses`: responses 0 and 2 are identical"),
            (r#"{"prompt": "p", "responses": ["a", "b", "c"], "ranking": [0, 0, 2]}"#, "F: line 2: field `ranking`: [0, 0, 2] is not a permutation of 0..3"),
            (r#"{"prompt": "p", "responses": ["a", "b", "c"], "ranking": [0, 1]}"#, "F: line 2: field `ranking`: [0, 1] is not a permutation of 0..3"),
            (r#"{"prompt": "p", "responses": ["a", "b", "c"], "ranking": [0, 1, 3]}"#, "F: line 2: field `ranking`: [0, 1, 3] is not a permutation of 0..3"),
            (r#"{"prompt": "p", "responses": ["a", "b"], "ranking": [-1, 0]}"#, "F: line 2: field `ranking`: [-1, 0] is not a permutation of 0..2"),
            (r#"{"prompt": "p", "responses": ["a", "b"], "ranking": [0, 1.5]}"#, "F: line 2: field `ranking`: expected an array of integers"),
            (r#"{"prompt": "p", "responses": ["a", "b"], "ranking": "0,1"}"#, "F: line 2: field `ranking`: expected an array of integers"),
        ];
        for (line, expected) in cases {
            assert_eq!(error(&format!("{ok}\n{line}\n")), expected, "{line}");
        }
    }
}
