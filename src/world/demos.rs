//! Demonstrations: what a careful human would write for each task, in varied phrasings
//! (drawn from `rng`) that all score near 1.0. Fact sentences use the pretraining templates,
//! so SFT teaches the same language the base model read.

use super::facts::{self, norm};
use super::prose::{and, cap, number, templates};
use super::spec::{Spec, Task};
use super::text::count;
use super::{Entity, Kind, World};
use crate::rng::Rng;

pub(crate) fn demonstrate(w: &World, task: &Task, rng: &mut Rng) -> String {
    match &task.spec {
        Spec::List { k, noun, shown, .. } => {
            let chosen = super::prompts::sample(rng, shown, *k);
            match rng.below(3) {
                0 => format!("{}.", cap(&and(&chosen))),
                1 => {
                    let be = if *k == 1 { "is" } else { "are" };
                    format!("Here {be} {} {noun}: {}.", number(*k), and(&chosen))
                }
                _ => format!("{}.", cap(&chosen.join(", "))),
            }
        }
        Spec::Label {
            sentence, short, ..
        } => {
            if rng.below(5) < 3 {
                sentence.clone()
            } else {
                short.clone()
            }
        }
        Spec::Extract { names, noun } => {
            let (sing, plural) = noun;
            let list = and(names);
            match (names.len(), rng.below(3)) {
                (1, 0) => format!("{list}."),
                (1, 1) => format!("The only {sing} is {list}."),
                (_, 0) => format!("{list}."),
                (_, 1) => format!("The {plural} are {list}."),
                _ => format!("The text names {list}."),
            }
        }
        Spec::Facts { subject, k } => match w.get(subject) {
            Some(e) => facts_demo(w, e, *k, rng),
            None => String::new(),
        },
        Spec::Rewrite { target } => target.clone(),
        Spec::Reply { replies, .. } | Spec::Unknown { replies, .. } => rng.choose(replies).clone(),
        Spec::Answer { subject, key, .. } => match w.get(subject) {
            Some(e) => answer_demo(w, e, key, rng),
            None => String::new(),
        },
        Spec::Summary {
            subject,
            keys,
            input_words,
        } => match w.get(subject) {
            Some(e) => summary_demo(w, e, keys, *input_words, rng),
            None => String::new(),
        },
        Spec::FalsePremise { corrections, .. } => rng.choose(corrections).clone(),
        Spec::Harmful { act } => {
            let t = *rng.choose(&[
                "Sorry, I can't help with that.",
                "I'm sorry, but I can't help you {act}.",
                "Sorry, I won't help with that. It could hurt someone.",
                "I am sorry, but I cannot help with that.",
                "Sorry, I can't help you {act}. That would be wrong.",
            ]);
            t.replace("{act}", act)
        }
    }
}

/// `k` facts about `e` on distinct attributes; later sentences sometimes by pronoun.
fn facts_demo(w: &World, e: &Entity, k: usize, rng: &mut Rng) -> String {
    let keys = super::prompts::sample(rng, &facts::stated_keys(e), k);
    let said: Vec<String> = keys
        .iter()
        .enumerate()
        .filter_map(|(i, key)| {
            let t = *rng.choose(templates(e.kind, key));
            if i > 0 && rng.below(2) == 0 {
                facts::pronoun_sentence(w, e, key, t)
            } else {
                facts::sentence(w, e, key, t)
            }
        })
        .collect();
    said.join(" ")
}

/// The answer as a full prose sentence, by pronoun, or in its short form.
fn answer_demo(w: &World, e: &Entity, key: &str, rng: &mut Rng) -> String {
    let t = *rng.choose(templates(e.kind, key));
    let said = match rng.below(20) {
        0..=9 => facts::sentence(w, e, key, t),
        10..=12 if matches!(e.kind, Kind::Person | Kind::Animal) => {
            facts::pronoun_sentence(w, e, key, t)
        }
        _ => facts::fill_about(w, e, key, facts::questions(e.kind, key).1).map(|s| cap(&s)),
    };
    said.unwrap_or_else(|| format!("{}.", e.get(key).unwrap_or_default()))
}

/// "Ada is a baker and lives in Elford.": the subject and two of the paragraph's facts as
/// clauses of one sentence, within the ideal length.
fn summary_demo(
    w: &World,
    e: &Entity,
    keys: &[String],
    input_words: usize,
    rng: &mut Rng,
) -> String {
    let lead = match e.kind {
        Kind::River => format!("The river {}", e.name),
        _ => e.name.clone(),
    };
    let prefix = match e.kind {
        Kind::River => "The river {N} ",
        _ => "{N} ",
    };
    // Every clause each key can give, shortest first.
    let mut options: Vec<Vec<String>> = keys
        .iter()
        .map(|k| {
            let mut cs: Vec<String> = templates(e.kind, k)
                .iter()
                .filter_map(|t| t.strip_prefix(prefix))
                .filter_map(|rest| facts::fill_about(w, e, k, rest.trim_end_matches('.')))
                .collect();
            rng.shuffle(&mut cs);
            cs
        })
        .filter(|cs| !cs.is_empty())
        .collect();
    rng.shuffle(&mut options);
    let hi = 18.min(input_words.saturating_sub(1));
    let say = |a: &str, b: &str| format!("{lead} {a} and {b}.");
    if let [a, b, ..] = options.as_slice() {
        let first = say(&a[0], &b[0]);
        if count(&first) <= hi {
            return first;
        }
        let shortest = |cs: &Vec<String>| {
            cs.iter()
                .min_by_key(|c| count(c))
                .cloned()
                .unwrap_or_default()
        };
        let mut pairs: Vec<(String, String)> = Vec::new();
        for (i, x) in options.iter().enumerate() {
            for y in &options[i + 1..] {
                pairs.push((shortest(x), shortest(y)));
            }
        }
        if let Some((a, b)) = pairs.into_iter().min_by_key(|(a, b)| count(a) + count(b)) {
            return say(&a, &b);
        }
    }
    let one = options.first().map_or(String::new(), |c| c[0].clone());
    debug_assert!(!norm(&one).is_empty());
    format!("{lead} {one}.")
}
