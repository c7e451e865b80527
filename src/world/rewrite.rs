//! Rewrite prompts: deterministic transformations of word lists and plain sentences
//! (reverse, sort, replace, copy, remove), so the right answer is exactly one string.

use super::prompts::{pick, sample, CHAT_NAMES};
use super::prose::cap;
use super::spec::Spec;
use crate::rng::Rng;

/// Word transformations: reverse, sort, replace, copy, remove.
pub(crate) fn rewrite(rng: &mut Rng) -> (String, Spec) {
    let pool: Vec<&str> = [super::FOODS, super::COLOURS, super::SPECIES, super::JOBS].concat();
    let list = |rng: &mut Rng, n: usize| sample(rng, &pool, n);
    let comma = |ws: &[&str]| ws.join(", ");
    let (prompt, target) = match rng.below(20) {
        0..=4 => {
            let n = 3 + rng.below(4);
            let ws = list(rng, n);
            let mut rev = ws.clone();
            rev.reverse();
            let t = pick(
                rng,
                &[
                    "Put these words in reverse order: {w}.",
                    "Reverse the order of these words: {w}.",
                    "Write these words backwards, the last one first: {w}.",
                    "Say these words in the opposite order: {w}.",
                ],
            );
            (
                t.replace("{w}", &comma(&ws)),
                format!("{}.", cap(&comma(&rev))),
            )
        }
        5..=9 => {
            let n = 3 + rng.below(3);
            let ws = list(rng, n);
            let mut sorted = ws.clone();
            sorted.sort_unstable();
            let t = pick(
                rng,
                &[
                    "Sort these words in alphabetical order: {w}.",
                    "Put these words in alphabetical order: {w}.",
                    "Write these words from A to Z: {w}.",
                ],
            );
            (
                t.replace("{w}", &comma(&ws)),
                format!("{}.", cap(&comma(&sorted))),
            )
        }
        10..=14 => {
            let (s, from, to) = plain_sentence(rng);
            let t = pick(
                rng,
                &[
                    "Rewrite this sentence with {b} instead of {a}: {s}",
                    "Replace {a} with {b} in this sentence: {s}",
                    "Change {a} to {b}: {s}",
                    "In this sentence, put {b} in place of {a}. {s}",
                ],
            );
            let target = replace_word(&s, &from, &to);
            (
                t.replace("{a}", &from)
                    .replace("{b}", &to)
                    .replace("{s}", &s),
                target,
            )
        }
        15..=17 => {
            let (s, _, _) = plain_sentence(rng);
            let t = pick(
                rng,
                &[
                    "Repeat this sentence exactly: {s}",
                    "Copy this sentence: {s}",
                    "Say this back to me word for word: {s}",
                ],
            );
            (t.replace("{s}", &s), s)
        }
        _ => {
            let n = 4 + rng.below(3);
            let ws = list(rng, n);
            let drop = *rng.choose(&ws);
            let kept: Vec<&str> = ws.iter().copied().filter(|w| *w != drop).collect();
            let t = pick(
                rng,
                &[
                    "Remove the word {d} from this list: {w}.",
                    "Take {d} out of this list: {w}.",
                ],
            );
            (
                t.replace("{d}", drop).replace("{w}", &comma(&ws)),
                format!("{}.", cap(&comma(&kept))),
            )
        }
    };
    (prompt, Spec::Rewrite { target })
}

/// A plain sentence about a chat name, and a (word, replacement) pair of the same class
/// that keeps the sentence grammatical.
pub(crate) fn plain_sentence(rng: &mut Rng) -> (String, String, String) {
    let consonant = |xs: &[&'static str]| -> Vec<&'static str> {
        xs.iter()
            .copied()
            .filter(|x| !x.starts_with(['a', 'e', 'i', 'o', 'u']))
            .collect()
    };
    let (colours, species, jobs) = (
        consonant(super::COLOURS),
        consonant(super::SPECIES),
        consonant(super::JOBS),
    );
    let x = pick(rng, CHAT_NAMES);
    let two = |rng: &mut Rng, xs: &[&str]| -> (String, String) {
        let v = sample(rng, xs, 2);
        (v[0].to_string(), v[1].to_string())
    };
    let (c, c2) = two(rng, &colours);
    let (s, s2) = two(rng, &species);
    let foods: Vec<&str> = super::FOODS
        .iter()
        .copied()
        .filter(|f| *f != "soup")
        .collect();
    let (f, f2) = two(rng, &foods);
    let (j, j2) = two(rng, &jobs);
    let (d, d2) = two(rng, super::DAYS);
    let y = pick(rng, CHAT_NAMES);
    let y = if y == x { "Tom" } else { y };
    let (sentence, choices): (String, Vec<(String, String)>) = match rng.below(6) {
        0 => (format!("{x} has a {c} {s}."), vec![(c, c2), (s, s2)]),
        1 => (format!("{x} likes {f} and soup."), vec![(f, f2)]),
        2 => (format!("{x} went to the market on {d}."), vec![(d, d2)]),
        3 => (
            format!("{x} is a {j} and likes {f}."),
            vec![(j, j2), (f, f2)],
        ),
        4 => (
            format!("{x} saw a {c} {s} by the river."),
            vec![(c, c2), (s, s2)],
        ),
        _ => (
            format!("{x} gave some {f} to a {s}."),
            vec![(f, f2), (s, s2)],
        ),
    };
    let (from, to) = if rng.below(3) == 0 || x == y {
        (x.to_string(), y.to_string())
    } else {
        rng.choose(&choices).clone()
    };
    (sentence, from, to)
}

/// `s` with the whole word `from` replaced by `to`.
fn replace_word(s: &str, from: &str, to: &str) -> String {
    s.split(' ')
        .map(|w| {
            let core = w.trim_end_matches('.');
            if core == from {
                format!("{to}{}", &w[core.len()..])
            } else {
                w.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replace_word_keeps_punctuation() {
        assert_eq!(
            replace_word("Ann has a red cat.", "cat", "dog"),
            "Ann has a red dog."
        );
        assert_eq!(
            replace_word("Ann saw Annie.", "Ann", "Bob"),
            "Bob saw Annie."
        );
    }
}
