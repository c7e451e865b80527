//! The words a reader of the world knows: what its prose, prompts and demonstrations use,
//! and every name and value in its tables. The labeler's fluency check counts the words of
//! a response outside this set as misspelled or invented ("canot", "Amle"), as a human
//! rater would notice them.

use super::grade::{IDK, NEG, POLITE, REFUSE};
use super::tasks::{generate, Category};
use super::text::words;
use super::World;
use crate::rng::Rng;
use std::collections::BTreeSet;

/// Prose documents and tasks per category sampled to collect the vocabulary: enough that
/// every template and phrase list appears (a test checks demonstrations are all known).
const DOCUMENTS: usize = 300;
const TASKS: usize = 300;

/// The vocabulary of `w`, built on first use and kept with the world.
pub(crate) fn of(w: &World) -> &BTreeSet<String> {
    w.lexicon.get_or_init(|| build(w))
}

/// The vocabulary of `w` (lowercase words as [`words`] splits them).
fn build(w: &World) -> BTreeSet<String> {
    let mut known = BTreeSet::new();
    let mut add = |text: &str| known.extend(words(text));
    for e in &w.entities {
        add(&e.name);
        for (key, value) in &e.attributes {
            add(key);
            add(value);
        }
    }
    let lists: [&[&str]; 13] = [
        IDK,
        REFUSE,
        NEG,
        POLITE,
        super::PET_NAMES,
        super::SPECIES,
        super::COLOURS,
        super::SIZES,
        super::JOBS,
        super::FOODS,
        super::PRODUCTS,
        super::SIDES,
        super::DAYS,
    ];
    for phrase in lists.into_iter().flatten() {
        add(phrase);
    }
    for (name, _) in super::PEOPLE {
        add(name);
    }
    let mut rng = Rng::new(w.seed ^ 0x4c45_5849); // "LEXI"
    for _ in 0..DOCUMENTS {
        add(&super::prose::document(w, &mut rng));
    }
    for c in Category::ALL {
        for _ in 0..TASKS {
            let t = generate(w, c, &mut rng);
            add(&t.prompt);
            for _ in 0..2 {
                add(&super::demos::demonstrate(w, &t, &mut rng));
            }
        }
    }
    known
}

/// Share in [0, 1] of `response_words` that are known: in `lexicon`, in the prompt, or
/// numbers. 1 for no words.
pub(crate) fn known_share(
    lexicon: &BTreeSet<String>,
    prompt_words: &[String],
    response_words: &[String],
) -> f64 {
    if response_words.is_empty() {
        return 1.0;
    }
    let known = response_words
        .iter()
        .filter(|w| {
            lexicon.contains(*w)
                || prompt_words.contains(w)
                || w.bytes().all(|b| b.is_ascii_digit())
        })
        .count();
    known as f64 / response_words.len() as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demonstrations_are_known_and_misspellings_are_not() {
        let w = World::generate(4);
        let lexicon = build(&w);
        let mut rng = Rng::new(99);
        for c in Category::ALL {
            for _ in 0..100 {
                let t = generate(&w, c, &mut rng);
                let d = super::super::demos::demonstrate(&w, &t, &mut rng);
                let prompt = words(&t.prompt);
                let unknown: Vec<String> = words(&d)
                    .into_iter()
                    .filter(|x| known_share(&lexicon, &prompt, std::slice::from_ref(x)) < 1.0)
                    .collect();
                assert!(unknown.is_empty(), "{c:?} {d:?}: unknown {unknown:?}");
            }
        }
        let share = |s: &str| known_share(&lexicon, &[], &words(s));
        assert_eq!(share("Sorry, I canot know that."), 0.8);
        assert_eq!(share("Amle."), 0.0);
        assert_eq!(share("It is 1234 metres."), 1.0);
        assert_eq!(known_share(&lexicon, &words("Nibo"), &words("Nibo")), 1.0);
    }
}
