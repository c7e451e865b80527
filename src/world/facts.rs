//! Facts as the prose states them: fact sentences from the pretraining templates, the set of
//! values each attribute can take, a checker that tells whether a sentence states a true or a
//! false fact, and the questions and short answers of the QA tasks. Tasks and labeler both
//! use these, so the labeler accepts exactly the phrasings the base model read.

use super::prose::{a, fill, pronouns, templates};
use super::text::{has, padded, words};
use super::{attr, Entity, Kind, World};

/// The values an attribute can take, normalised (lowercase words joined by spaces).
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Domain {
    /// Any run of digits.
    Number,
    Words(Vec<String>),
}

impl Domain {
    pub(crate) fn words<S: AsRef<str>>(items: impl IntoIterator<Item = S>) -> Domain {
        Domain::Words(items.into_iter().map(|s| norm(s.as_ref())).collect())
    }

    /// Whether `value` (any case) is one of the domain's values.
    pub(crate) fn contains(&self, value: &str) -> bool {
        let v = norm(value);
        match self {
            Domain::Number => !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()),
            Domain::Words(items) => items.contains(&v),
        }
    }

    /// How many distinct values of the domain, other than `right`, the padded text mentions.
    pub(crate) fn others_in(&self, padded_text: &str, right: &[&str]) -> usize {
        let right: Vec<String> = right.iter().map(|r| norm(r)).collect();
        match self {
            Domain::Number => {
                let mut seen: Vec<&str> = padded_text
                    .split(' ')
                    .filter(|w| !w.is_empty() && w.bytes().all(|b| b.is_ascii_digit()))
                    .filter(|w| !right.iter().any(|r| r == w))
                    .collect();
                seen.sort_unstable();
                seen.dedup();
                seen.len()
            }
            Domain::Words(items) => items
                .iter()
                .filter(|v| !right.contains(v) && mentions(padded_text, v))
                .count(),
        }
    }
}

/// Lowercase words joined by single spaces.
pub(crate) fn norm(s: &str) -> String {
    words(s).join(" ")
}

/// Whether the padded text names `value`; "Lake Elwater" and "Mount Belcrag" also count
/// when named without "Lake" or "Mount".
pub(crate) fn mentions(padded_text: &str, value: &str) -> bool {
    let v = norm(value);
    has(padded_text, &v)
        || ["lake ", "mount "]
            .iter()
            .any(|p| v.strip_prefix(p).is_some_and(|rest| has(padded_text, rest)))
}

/// Whether no other entity has `e`'s name. A few worlds give a river a person's name
/// ("Yara"); tasks about an entity by name use only unambiguous ones.
pub(crate) fn unique(w: &World, e: &Entity) -> bool {
    w.entities.iter().filter(|x| x.name == e.name).count() == 1
}

/// The attribute keys of `e` that the prose states, in table order.
pub(crate) fn stated_keys(e: &Entity) -> Vec<&str> {
    e.attributes
        .iter()
        .map(|(k, _)| k.as_str())
        .filter(|k| !templates(e.kind, k).is_empty())
        .collect()
}

/// The slot values of a fact template about `e`'s `key` (as prose fills them).
fn vars(w: &World, e: &Entity, key: &str) -> Vec<(&'static str, String)> {
    let value = e.get(key).unwrap_or("").to_string();
    let species = match e.kind {
        Kind::Animal => e.get(attr::SPECIES),
        _ => w.get(&value).and_then(|pet| pet.get(attr::SPECIES)),
    }
    .unwrap_or("animal")
    .to_string();
    vec![
        ("N", e.name.clone()),
        ("aV", a(&value)),
        ("aS", a(&species)),
        ("S", species),
        ("years", if value == "1" { "year" } else { "years" }.into()),
        ("land", w.land().name.clone()),
        ("home", e.get(attr::HOME).unwrap_or("").to_string()),
        ("V", value),
    ]
}

/// The sentence stating `e`'s `key` with `template` (one of `templates(e.kind, key)`).
pub(crate) fn sentence(w: &World, e: &Entity, key: &str, template: &str) -> Option<String> {
    fill(template, &vars(w, e, key))
}

/// Like [`sentence`], but a template that starts with the name is said with the pronoun
/// ("She lives in Elford.", "Its colour ..."), as later sentences of prose paragraphs are.
pub(crate) fn pronoun_sentence(w: &World, e: &Entity, key: &str, template: &str) -> Option<String> {
    let (subj, _, poss) = pronouns(e);
    let t = if let Some(rest) = template.strip_prefix("{N}'s ") {
        format!("{} {rest}", super::text::cap(poss))
    } else if let Some(rest) = template.strip_prefix("{N} ") {
        format!("{} {rest}", super::text::cap(subj))
    } else {
        template.to_string()
    };
    sentence(w, e, key, &t)
}

/// The values `kind`'s attribute `key` can take in `w`.
pub(crate) fn domain(w: &World, kind: Kind, key: &str) -> Domain {
    use attr::*;
    let names = |k: Kind| Domain::words(w.of_kind(k).map(|e| e.name.as_str()));
    match key {
        AGE | POPULATION | LENGTH_KM | DEPTH_M | HEIGHT_M => Domain::Number,
        JOB => Domain::words(super::JOBS),
        HOME | CAPITAL => names(Kind::Town),
        FAVOURITE_COLOUR | COLOUR => Domain::words(super::COLOURS),
        FAVOURITE_FOOD => Domain::words(super::FOODS),
        PET => Domain::words(super::PET_NAMES),
        SPECIES => Domain::words(super::SPECIES),
        SIZE => Domain::words(super::SIZES),
        OWNER | MAYOR => names(Kind::Person),
        RIVER => names(Kind::River),
        SIDE => Domain::words(super::SIDES),
        KNOWN_FOR => Domain::words(super::PRODUCTS),
        MARKET_DAY => Domain::words(super::DAYS),
        SOURCE => names(Kind::Mountain),
        MOUTH => names(Kind::Lake),
        _ => {
            debug_assert!(false, "no domain for {kind:?} {key}");
            Domain::Words(Vec::new())
        }
    }
}

/// What a sentence claims, judged against the world.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Claim {
    /// A true fact: the entity and the attribute it states.
    True(String, String),
    /// A fact template with a value of the right kind that is not the true one.
    False,
    /// Not a fact in the prose's phrasing.
    Unverified,
}

/// Judges one sentence: it is matched against every fact template of `subject` (also with
/// the pronoun) and of the entities it names, with the value slot left open. The open slot
/// holding the true value makes the claim true; holding another value of the attribute's
/// domain makes it false (a sentence that matches several templates is true if any says so).
pub(crate) fn check(w: &World, subject: &Entity, s: &str) -> Claim {
    let sw = words(s);
    let p = padded(s);
    let mut claim = Claim::Unverified;
    let named = w
        .entities
        .iter()
        .filter(|e| e.name != subject.name && has(&p, &e.name));
    for e in std::iter::once(subject).chain(named) {
        for key in stated_keys(e) {
            let value = norm(e.get(key).unwrap_or(""));
            for t in templates(e.kind, key) {
                let variants = [
                    sentence_skeleton(w, e, key, t),
                    (e.name == subject.name)
                        .then(|| pronoun_skeleton(w, e, key, t))
                        .flatten(),
                ];
                for (pre, article, post) in variants.into_iter().flatten() {
                    let Some(mid) = middle(&sw, &pre, &post) else {
                        continue;
                    };
                    let mid = if article {
                        mid.strip_prefix("a ")
                            .or_else(|| mid.strip_prefix("an "))
                            .unwrap_or(&mid)
                            .to_string()
                    } else {
                        mid
                    };
                    if mid == value {
                        return Claim::True(e.name.clone(), key.to_string());
                    }
                    if domain(w, e.kind, key).contains(&mid) {
                        claim = Claim::False;
                    }
                }
            }
        }
    }
    claim
}

/// (words before the value slot, whether the slot has an article, words after it).
type Skeleton = (Vec<String>, bool, Vec<String>);

fn sentence_skeleton(w: &World, e: &Entity, key: &str, t: &str) -> Option<Skeleton> {
    let (slot, article) = if t.contains("{aV}") {
        ("{aV}", true)
    } else {
        ("{V}", false)
    };
    let (pre, post) = t.split_once(slot)?;
    let vars = vars(w, e, key);
    Some((
        words(&fill(pre, &vars)?),
        article,
        words(&fill(post, &vars)?),
    ))
}

fn pronoun_skeleton(w: &World, e: &Entity, key: &str, t: &str) -> Option<Skeleton> {
    let (subj, _, poss) = pronouns(e);
    let t = if let Some(rest) = t.strip_prefix("{N}'s ") {
        format!("{poss} {rest}")
    } else {
        format!("{subj} {}", t.strip_prefix("{N} ")?)
    };
    sentence_skeleton(w, e, key, &t)
}

/// The words of `sw` between `pre` and `post`, if it starts and ends with them.
fn middle(sw: &[String], pre: &[String], post: &[String]) -> Option<String> {
    if sw.len() <= pre.len() + post.len() || !sw.starts_with(pre) || !sw.ends_with(post) {
        return None;
    }
    Some(sw[pre.len()..sw.len() - post.len()].join(" "))
}

/// Question phrasings about `kind`'s `key` (`{N}` the entity, `{S}` its pet's or its own
/// species, `{land}` the country) and the short answer form (`{V}`, `{aV}`, `{years}`).
#[rustfmt::skip]
pub(crate) fn questions(kind: Kind, key: &str) -> (&'static [&'static str], &'static str) {
    use attr::*;
    match (kind, key) {
        (Kind::Land, CAPITAL) => (&["What is the capital of {N}?", "Which town is the capital of {N}?", "Name the capital of {N}."], "{V}."),
        (Kind::Person, HOME) => (&["Where does {N} live?", "In which town does {N} live?", "Which town is {N}'s home?"], "In {V}."),
        (Kind::Person, JOB) => (&["What is {N}'s job?", "What does {N} do for a living?", "What work does {N} do?"], "{aV}."),
        (Kind::Person, AGE) => (&["How old is {N}?", "What age is {N}?"], "{V} years old."),
        (Kind::Person, FAVOURITE_COLOUR) => (&["What is {N}'s favourite colour?", "Which colour does {N} like best?"], "{V}."),
        (Kind::Person, FAVOURITE_FOOD) => (&["What is {N}'s favourite food?", "What food does {N} like best?"], "{V}."),
        (Kind::Person, PET) => (&["What is the name of {N}'s {S}?", "What is {N}'s {S} called?"], "{V}."),
        (Kind::Animal, SPECIES) => (&["What kind of animal is {N}?", "What animal is {N}?"], "{aV}."),
        (Kind::Animal, COLOUR) => (&["What colour is {N}?", "What is the colour of {N}?"], "{V}."),
        (Kind::Animal, SIZE) => (&["How big is {N}?", "What size is {N}?"], "{V}."),
        (Kind::Animal, AGE) => (&["How old is {N}?", "What age is {N}?"], "{V} {years} old."),
        (Kind::Animal, OWNER) => (&["Who owns {N}?", "Who is the owner of {N}?", "Whose {S} is {N}?"], "{V}."),
        (Kind::Town, RIVER) => (&["Which river runs through {N}?", "On which river does {N} lie?", "What river is {N} on?"], "The river {V}."),
        (Kind::Town, SIDE) => (&["In which part of {land} is {N}?", "Where in {land} is {N}?"], "In the {V}."),
        (Kind::Town, POPULATION) => (&["How many people live in {N}?", "What is the population of {N}?"], "{V} people."),
        (Kind::Town, KNOWN_FOR) => (&["What is {N} known for?", "Why do people come to {N}?"], "Its {V}."),
        (Kind::Town, MAYOR) => (&["Who is the mayor of {N}?", "Who is {N}'s mayor?"], "{V}."),
        (Kind::Town, MARKET_DAY) => (&["On which day is the market in {N}?", "When does {N} hold its market?"], "On {V}."),
        (Kind::River, LENGTH_KM) => (&["How long is the river {N}?", "What is the length of the river {N}?"], "{V} kilometres."),
        (Kind::River, SOURCE) => (&["Where does the river {N} start?", "On which mountain does the river {N} begin?"], "On {V}."),
        (Kind::River, MOUTH) => (&["Where does the river {N} flow?", "Which lake does the river {N} flow into?"], "Into {V}."),
        (Kind::Lake, DEPTH_M) => (&["How deep is {N}?", "What is the depth of {N}?"], "{V} metres."),
        (Kind::Lake, COLOUR) => (&["What colour is the water of {N}?", "What colour is {N}?"], "{V}."),
        (Kind::Mountain, HEIGHT_M) => (&["How high is {N}?", "What is the height of {N}?"], "{V} metres."),
        (Kind::Mountain, SIDE) => (&["In which part of {land} is {N}?", "Where in {land} is {N}?"], "In the {V}."),
        _ => (&[], ""),
    }
}

/// `template` filled for `e`'s `key` (the question and short-answer slots).
pub(crate) fn fill_about(w: &World, e: &Entity, key: &str, template: &str) -> Option<String> {
    fill(template, &vars(w, e, key))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checker_tells_true_false_and_unverified() {
        let w = World::generate(5);
        let ada = w.of_kind(Kind::Person).next().unwrap();
        let home = ada.get(attr::HOME).unwrap();
        let other = w.of_kind(Kind::Town).find(|t| t.name != home).unwrap();
        let (subj, _, _) = pronouns(ada);
        let n = &ada.name;
        let truth = Claim::True(n.clone(), attr::HOME.into());
        assert_eq!(check(&w, ada, &format!("{n} lives in {home}.")), truth);
        assert_eq!(check(&w, ada, &format!("{subj} lives in {home}.")), truth);
        let wrong = format!("{n} lives in {}.", other.name);
        assert_eq!(check(&w, ada, &wrong), Claim::False);
        let age = ada.get(attr::AGE).unwrap();
        let job = ada.get(attr::JOB).unwrap();
        assert_eq!(
            check(&w, ada, &format!("{n} is {age}.")),
            Claim::True(n.clone(), attr::AGE.into())
        );
        assert_eq!(
            check(&w, ada, &format!("{n} is {}.", a(job))),
            Claim::True(n.clone(), attr::JOB.into())
        );
        let wrong_job = super::super::JOBS.iter().find(|j| **j != job).unwrap();
        assert_eq!(
            check(&w, ada, &format!("{n} is {}.", a(wrong_job))),
            Claim::False
        );
        assert_eq!(check(&w, ada, &format!("{n} is happy.")), Claim::Unverified);
        // A fact about another entity that names the subject counts.
        let town = w.get(home).unwrap();
        let mayor = town.get(attr::MAYOR).unwrap();
        let m = w.get(mayor).unwrap();
        assert_eq!(
            check(&w, m, &format!("The mayor of {home} is {mayor}.")),
            Claim::True(home.to_string(), attr::MAYOR.into())
        );
    }

    #[test]
    fn domains_and_mentions() {
        let w = World::generate(5);
        let d = domain(&w, Kind::Person, attr::JOB);
        assert!(d.contains("Baker") && !d.contains("plums"));
        assert!(Domain::Number.contains("42") && !Domain::Number.contains("4x"));
        let p = padded("She is 34, not 35 or 34.");
        assert_eq!(Domain::Number.others_in(&p, &["34"]), 1);
        let lake = w.of_kind(Kind::Lake).next().unwrap();
        let bare = lake.name.strip_prefix("Lake ").unwrap();
        assert!(mentions(
            &padded(&format!("It flows into {bare}.")),
            &lake.name
        ));
        // Every stated attribute has a domain holding its value and a question.
        for e in &w.entities {
            for key in stated_keys(e) {
                assert!(
                    domain(&w, e.kind, key).contains(e.get(key).unwrap()),
                    "{key}"
                );
                assert!(!questions(e.kind, key).0.is_empty(), "{:?} {key}", e.kind);
            }
        }
    }
}
