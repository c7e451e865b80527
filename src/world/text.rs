//! Text helpers shared by the task generator and the gold labeler. Responses are judged on
//! normalised words (lowercase ASCII letters and digits; everything else separates), so
//! punctuation and capitals never decide correctness, only the surface-form score.

/// Lowercase words of `s`: runs of ASCII letters and digits. "Ada's" is `["ada", "s"]`,
/// "don't" is `["don", "t"]`.
pub(crate) fn words(s: &str) -> Vec<String> {
    s.split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(|w| w.to_ascii_lowercase())
        .collect()
}

/// How many words `s` has (as [`words`] splits them).
pub(crate) fn count(s: &str) -> usize {
    words(s).len()
}

/// `s` normalised for whole-word phrase search: its words joined by single spaces, with one
/// space at each end.
pub(crate) fn padded(s: &str) -> String {
    format!(" {} ", words(s).join(" "))
}

/// Whether the padded text contains `phrase` as whole words (`phrase` is normalised).
pub(crate) fn has(padded: &str, phrase: &str) -> bool {
    let p = words(phrase).join(" ");
    !p.is_empty() && padded.contains(&format!(" {p} "))
}

/// Whether any of `phrases` occurs in the padded text.
pub(crate) fn has_any(padded: &str, phrases: &[&str]) -> bool {
    phrases.iter().any(|p| has(padded, p))
}

/// Sentences of `s`: split after `.`, `!` or `?` and at line breaks, trimmed, non-empty.
pub(crate) fn sentences(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for c in s.chars() {
        if c == '\n' {
            push_sentence(&mut out, &mut cur);
            continue;
        }
        cur.push(c);
        if matches!(c, '.' | '!' | '?') {
            push_sentence(&mut out, &mut cur);
        }
    }
    push_sentence(&mut out, &mut cur);
    out
}

fn push_sentence(out: &mut Vec<String>, cur: &mut String) {
    let t = cur.trim();
    // A lone punctuation mark ("!!") is not a sentence of its own.
    if t.chars().any(|c| c.is_ascii_alphanumeric()) {
        out.push(t.to_string());
    } else if let Some(last) = out.last_mut() {
        last.push_str(t);
    }
    cur.clear();
}

/// Word-level Levenshtein distance.
pub(crate) fn edit_distance(a: &[String], b: &[String]) -> usize {
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, x) in a.iter().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, y) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(x != y);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// Surface form in [0, 1]: a clean single line of ASCII without template markers (0.3),
/// starting with a capital letter or digit (0.3), ending with `.`, `!` or `?` (0.4).
pub(crate) fn style(s: &str) -> f64 {
    let t = s.trim();
    let clean = t.is_ascii() && !t.contains('\n') && !t.contains("<|") && !t.contains("  ");
    let starts = t
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_uppercase() || c.is_ascii_digit());
    let ends = t.ends_with(['.', '!', '?']);
    0.3 * f64::from(u8::from(clean))
        + 0.3 * f64::from(u8::from(starts))
        + 0.4 * f64::from(u8::from(ends))
}

/// Words that carry no content; repeating them is never penalised.
const STOPWORDS: &[&str] = &[
    "a", "an", "the", "is", "are", "was", "of", "in", "on", "and", "to", "it", "its", "he", "she",
    "his", "her", "him", "they", "their", "that", "this", "with", "for", "at", "by", "as", "be",
    "has", "have", "i", "you", "your", "my", "me", "we", "do", "does", "not", "from", "or", "but",
    "so", "s", "t", "who", "what", "can", "am", "lives", "live",
];

/// Excess repetitions of content words: every occurrence of a word beyond the first counts,
/// except that words in `allowed_twice` (prompt words, the subject's name) may occur twice.
pub(crate) fn repeats(response_words: &[String], allowed_twice: &[String]) -> usize {
    let mut seen: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    let mut excess = 0;
    for w in response_words {
        if STOPWORDS.contains(&w.as_str()) {
            continue;
        }
        let n = seen.entry(w.as_str()).or_insert(0);
        *n += 1;
        let limit = if allowed_twice.contains(w) { 2 } else { 1 };
        if *n > limit {
            excess += 1;
        }
    }
    excess
}

/// Upper-case first letter.
pub(crate) fn cap(s: &str) -> String {
    super::prose::cap(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_phrases_and_sentences() {
        assert_eq!(words("Ada's cat, Pip!"), ["ada", "s", "cat", "pip"]);
        let p = padded("I don't know Lake Elwater.");
        assert!(has(&p, "don't know"));
        assert!(has(&p, "lake elwater"));
        assert!(!has(&p, "elw"));
        assert!(!has(&p, ""));
        assert_eq!(
            sentences("Ada is a baker. She lives in Elford!! Really?\nYes"),
            ["Ada is a baker.", "She lives in Elford!!", "Really?", "Yes"]
        );
        assert!(sentences("  ").is_empty());
    }

    #[test]
    fn edit_distance_and_style() {
        let w = |s: &str| words(s);
        assert_eq!(edit_distance(&w("a b c"), &w("a b c")), 0);
        assert_eq!(edit_distance(&w("a b c"), &w("a c")), 1);
        assert_eq!(edit_distance(&w("a b c"), &w("c b a")), 2);
        assert_eq!(edit_distance(&w(""), &w("x y")), 2);
        assert_eq!(style("Ada is a baker."), 1.0);
        assert!((style("ada is a baker") - 0.3).abs() < 1e-12);
        assert!(style("Ada\nis.") < 1.0);
    }

    #[test]
    fn repeats_count_excess_content_words() {
        let w = words("Plums, plums and plums and bread.");
        assert_eq!(repeats(&w, &[]), 2);
        assert_eq!(repeats(&w, &["plums".to_string()]), 1);
        assert_eq!(repeats(&words("the cat and the dog"), &[]), 0);
    }
}
