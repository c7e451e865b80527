//! Prompt generators of the tasks whose answer lies in the prompt or in word lists:
//! brainstorming, classification and extract (rewrite and chat have their own modules). Each returns the prompt and
//! its [`Spec`]; phrasings, entities and numbers are drawn at random so that thousands of
//! distinct prompts exist per category.

use super::facts::{self, norm};
use super::prose::{a, cap, number};
use super::spec::Spec;
use super::{attr, Entity, Kind, World};
use crate::rng::Rng;

/// Names people introduce themselves with in chat; none is a person of any world.
pub(crate) const CHAT_NAMES: &[&str] = &[
    "Anna", "Tom", "Lucy", "Max", "Eva", "Paul", "Mia", "Nora", "Oscar", "Ruth", "Simon", "Tess",
    "Ivan", "Jill", "Kurt", "Lily", "Mark", "Nell", "Pia", "Rita", "Sara", "Tim", "Amy", "Bob",
    "Cole", "Dina", "Eli", "Fay", "Gus", "Hana",
];
pub(crate) fn pick<'a>(rng: &mut Rng, items: &[&'a str]) -> &'a str {
    items[rng.below(items.len())]
}

pub(crate) fn names(w: &World, kind: Kind) -> Vec<String> {
    w.of_kind(kind).map(|e| e.name.clone()).collect()
}

/// Names of `kind` that no other entity has.
fn unique_names(w: &World, kind: Kind) -> Vec<String> {
    w.of_kind(kind)
        .filter(|e| facts::unique(w, e))
        .map(|e| e.name.clone())
        .collect()
}

pub(crate) fn strs(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// `k` distinct random items.
pub(crate) fn sample<T: Clone>(rng: &mut Rng, items: &[T], k: usize) -> Vec<T> {
    let mut v = items.to_vec();
    rng.shuffle(&mut v);
    v.truncate(k);
    v
}

/// "Name three foods.": the item sets with their nouns (singular, plural).
pub(crate) fn brainstorming(w: &World, rng: &mut Rng) -> (String, Spec) {
    let land = &w.land().name;
    let towns = names(w, Kind::Town);
    let town = rng.choose(&towns).clone();
    let (sing, plural, items): (String, String, Vec<String>) = match rng.below(12) {
        0 | 1 => {
            let (s, p) = *rng.choose(&[("food", "foods"), ("kind of food", "kinds of food")]);
            (s.into(), p.into(), strs(super::FOODS))
        }
        2 => ("colour".into(), "colours".into(), strs(super::COLOURS)),
        3 | 4 => {
            let (s, p) = *rng.choose(&[("job", "jobs"), ("kind of work", "kinds of work")]);
            (s.into(), p.into(), strs(super::JOBS))
        }
        5 => {
            let (s, p) =
                *rng.choose(&[("animal", "animals"), ("kind of animal", "kinds of animal")]);
            (s.into(), p.into(), strs(super::SPECIES))
        }
        6 => (format!("town in {land}"), format!("towns in {land}"), towns),
        7 => (
            format!("river in {land}"),
            format!("rivers in {land}"),
            names(w, Kind::River),
        ),
        8 => (
            format!("mountain in {land}"),
            format!("mountains in {land}"),
            names(w, Kind::Mountain),
        ),
        9 => (
            format!("person who lives in {town}"),
            format!("people who live in {town}"),
            w.with(Kind::Person, attr::HOME, &town)
                .map(|e| e.name.clone())
                .collect(),
        ),
        10 => (
            "day of the week".into(),
            "days of the week".into(),
            strs(super::DAYS),
        ),
        _ => (
            "name for a pet".into(),
            "names for a pet".into(),
            strs(super::PET_NAMES),
        ),
    };
    let k = [1, 2, 2, 3, 3, 3, 4, 4][rng.below(8)]
        .min(items.len().saturating_sub(1))
        .max(1);
    let count = if k == 1 {
        if rng.below(2) == 0 {
            a(&sing)
        } else {
            format!("one {sing}")
        }
    } else if rng.below(3) == 0 {
        format!("{k} {plural}")
    } else {
        format!("{} {plural}", number(k))
    };
    let t = pick(
        rng,
        &[
            "Name {c}.",
            "List {c}.",
            "Give me {c}.",
            "Can you name {c}?",
            "Tell me {c}, please.",
            "Please list {c}.",
            "Write down {c}.",
            "Think of {c}.",
            "I need {c}. Can you help?",
            "Quick, name {c}!",
        ],
    );
    let lead = pick(rng, &["", "", "", "Hi! ", "For a game, ", "For my class: "]);
    let tail = pick(
        rng,
        &[
            "",
            "",
            "",
            " Keep it short.",
            " Use commas.",
            " Just the list, please.",
        ],
    );
    let t = if lead.is_empty() || lead == "Hi! " {
        t.to_string()
    } else {
        format!("{lead}{}", lower_first(t))
    };
    let t = format!("{t}{tail}");
    let noun = if k == 1 { sing } else { plural };
    let spec = Spec::List {
        k,
        noun,
        shown: items.clone(),
        items: items.iter().map(|s| norm(s)).collect(),
    };
    (t.replace("{c}", &count), spec)
}

/// "Is plums a food or a colour?", "Is Pip a cat or a dog?", "Is 37 odd or even?".
pub(crate) fn classification(w: &World, rng: &mut Rng) -> (String, Spec) {
    let (subject, answer, mut options, sentence, short) = match rng.below(20) {
        0..=3 => {
            let groups: [(&str, &[&str]); 4] = [
                ("food", super::FOODS),
                ("colour", super::COLOURS),
                ("job", super::JOBS),
                ("animal", super::SPECIES),
            ];
            let g = rng.below(groups.len());
            let (label, list) = groups[g];
            let word = pick(rng, list);
            let mut others: Vec<&str> = groups
                .iter()
                .map(|(l, _)| *l)
                .filter(|l| *l != label)
                .collect();
            rng.shuffle(&mut others);
            others.truncate(1 + rng.below(2));
            let opts: Vec<String> = std::iter::once(label)
                .chain(others)
                .map(String::from)
                .collect();
            let sentence = format!("{} is {}.", cap(word), a(label));
            (
                word.to_string(),
                label.to_string(),
                opts,
                sentence,
                format!("{}.", cap(&a(label))),
            )
        }
        4..=6 => {
            let pets: Vec<&Entity> = w
                .of_kind(Kind::Animal)
                .filter(|e| facts::unique(w, e))
                .collect();
            let pet = *rng.choose(&pets);
            let species = pet.get(attr::SPECIES).unwrap_or("cat");
            let opts = with_others(rng, species, super::SPECIES);
            let sentence = format!("{} is {}.", pet.name, a(species));
            (
                pet.name.clone(),
                species.to_string(),
                opts,
                sentence,
                format!("{}.", cap(&a(species))),
            )
        }
        7..=9 => {
            let people: Vec<&Entity> = w
                .of_kind(Kind::Person)
                .filter(|e| facts::unique(w, e))
                .collect();
            let p = *rng.choose(&people);
            let job = p.get(attr::JOB).unwrap_or("baker");
            let opts = with_others(rng, job, super::JOBS);
            let sentence = format!("{} is {}.", p.name, a(job));
            (
                p.name.clone(),
                job.to_string(),
                opts,
                sentence,
                format!("{}.", cap(&a(job))),
            )
        }
        10..=12 => {
            let kinds = [
                (Kind::Town, "town"),
                (Kind::River, "river"),
                (Kind::Person, "person"),
                (Kind::Animal, "animal"),
            ];
            let (kind, label) = *rng.choose(&kinds);
            let subject = rng.choose(&unique_names(w, kind)).clone();
            let all: Vec<&str> = kinds.iter().map(|(_, l)| *l).collect();
            let opts = with_others(rng, label, &all);
            let sentence = format!("{subject} is {}.", a(label));
            (
                subject,
                label.to_string(),
                opts,
                sentence,
                format!("{}.", cap(&a(label))),
            )
        }
        13 | 14 => {
            let towns: Vec<&Entity> = w.of_kind(Kind::Town).collect();
            let t = *rng.choose(&towns);
            let side = t.get(attr::SIDE).unwrap_or("north");
            let mut opts = with_others(rng, side, super::SIDES);
            opts.truncate(2);
            let land = &w.land().name;
            let sentence = format!("{} is in the {side} of {land}.", t.name);
            let prompt = format!(
                "Is {} in the {} or the {} of {land}?",
                t.name, opts[0], opts[1]
            );
            let prompt = if opts[0] == side || rng.below(2) == 0 {
                prompt
            } else {
                format!(
                    "Is {} in the {} or the {} of {land}?",
                    t.name, opts[1], opts[0]
                )
            };
            let spec = Spec::Label {
                answer: side.into(),
                options: opts,
                sentence,
                short: format!("In the {side}."),
            };
            return (prompt, spec);
        }
        15..=17 => {
            let n = 1 + rng.below(99);
            let label = if n % 2 == 1 { "odd" } else { "even" };
            let opts = vec!["odd".to_string(), "even".to_string()];
            let prompt = pick(
                rng,
                &[
                    "Is {n} an odd or an even number?",
                    "Is the number {n} odd or even?",
                    "Is {n} even or odd?",
                    "Tell me if {n} is odd or even.",
                ],
            );
            let spec = Spec::Label {
                answer: label.into(),
                options: opts,
                sentence: format!("{n} is an {label} number."),
                short: format!("It is {label}."),
            };
            return (prompt.replace("{n}", &n.to_string()), spec);
        }
        _ => {
            let x = 1 + rng.below(99);
            let mut y = 1 + rng.below(98);
            if y >= x {
                y += 1;
            }
            let label = if x > y { "more" } else { "less" };
            let prompt = pick(
                rng,
                &[
                    "Is {x} more or less than {y}?",
                    "Is {x} less or more than {y}?",
                    "Tell me: is {x} more or less than {y}?",
                ],
            );
            let spec = Spec::Label {
                answer: label.into(),
                options: vec!["more".into(), "less".into()],
                sentence: format!("{x} is {label} than {y}."),
                short: format!("It is {label}."),
            };
            let prompt = prompt
                .replace("{x}", &x.to_string())
                .replace("{y}", &y.to_string());
            return (prompt, spec);
        }
    };
    rng.shuffle(&mut options);
    let listed: Vec<String> = options.iter().map(|o| a(o)).collect();
    let alts = or(&listed);
    let t = pick(
        rng,
        &[
            "Is {s} {alts}?",
            "Which is {s}: {alts}?",
            "Tell me if {s} is {alts}.",
            "Is {s} {alts}? Answer in a few words.",
            "Classify {s}: is it {alts}?",
        ],
    );
    let spec = Spec::Label {
        answer,
        options,
        sentence,
        short,
    };
    (t.replace("{s}", &subject).replace("{alts}", &alts), spec)
}

/// `s` with its first letter in lowercase.
fn lower_first(s: &str) -> String {
    if s.starts_with("I ") {
        return s.to_string();
    }
    let mut c = s.chars();
    c.next().map_or_else(String::new, |f| {
        f.to_ascii_lowercase().to_string() + c.as_str()
    })
}

/// `right` and one or two other values of `all`, right first.
fn with_others(rng: &mut Rng, right: &str, all: &[&str]) -> Vec<String> {
    let others: Vec<&str> = all.iter().copied().filter(|x| *x != right).collect();
    let mut opts = vec![right.to_string()];
    opts.extend(
        {
            let n = 1 + rng.below(2);
            sample(rng, &others, n)
        }
        .into_iter()
        .map(String::from),
    );
    opts
}

/// "a, b or c".
fn or(items: &[String]) -> String {
    match items {
        [rest @ .., last] if !rest.is_empty() => format!("{} or {last}", rest.join(", ")),
        _ => items.join(""),
    }
}

/// A short text of 2-4 fact sentences and "List every town named in the text.".
pub(crate) fn extract(w: &World, rng: &mut Rng) -> (String, Spec) {
    let kinds = [
        (Kind::Person, "person", "people"),
        (Kind::Town, "town", "towns"),
        (Kind::Animal, "animal", "animals"),
        (Kind::River, "river", "rivers"),
    ];
    let (kind, sing, plural) = *rng.choose(&kinds);
    let sayable: Vec<&Entity> = w
        .entities
        .iter()
        .filter(|e| e.kind != Kind::Land && !facts::stated_keys(e).is_empty())
        .collect();
    loop {
        let mut sentences: Vec<String> = Vec::new();
        let mut said: Vec<(&str, &str)> = Vec::new();
        let carriers = 1 + rng.below(3);
        let others = usize::from(carriers < 3) + rng.below(2);
        while sentences.len() < carriers + others {
            let e = *rng.choose(&sayable);
            let keys = facts::stated_keys(e);
            let key = *rng.choose(&keys);
            let t = *rng.choose(super::prose::templates(e.kind, key));
            let Some(s) = facts::sentence(w, e, key, t) else {
                continue;
            };
            let names_kind = e.kind == kind
                || w.get(e.get(key).unwrap_or(""))
                    .is_some_and(|v| v.kind == kind);
            let fact = (e.name.as_str(), key);
            if (sentences.len() < carriers) == names_kind && !said.contains(&fact) {
                said.push(fact);
                sentences.push(s);
            }
        }
        rng.shuffle(&mut sentences);
        let text = sentences.join(" ");
        let names = named_in(w, &text, kind);
        if names.is_empty() || names.len() > 4 {
            continue;
        }
        let t = pick(
            rng,
            &[
                "{text} List every {sing} named in the text.",
                "{text} Which {plural} does this text name?",
                "Read this: {text} Now list all the {plural} in it.",
                "Text: {text} Question: which {plural} are named?",
                "{text} Name all the {plural} mentioned above.",
                "Find the {plural} in this text. {text}",
            ],
        );
        let prompt = t
            .replace("{text}", &text)
            .replace("{sing}", sing)
            .replace("{plural}", plural);
        let spec = Spec::Extract {
            names,
            noun: (sing.into(), plural.into()),
        };
        return (prompt, spec);
    }
}

/// Names of `kind` in `text`, in order of first appearance.
fn named_in(w: &World, text: &str, kind: Kind) -> Vec<String> {
    let tw = super::text::words(text);
    let mut found: Vec<(usize, String)> = w
        .of_kind(kind)
        .filter_map(|e| {
            let nw = super::text::words(&e.name);
            let at = tw.windows(nw.len()).position(|win| win == nw.as_slice())?;
            Some((at, e.name.clone()))
        })
        .collect();
    found.sort();
    found.into_iter().map(|(_, n)| n).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn helpers() {
        assert_eq!(or(&strs(&["a food", "a job"])), "a food or a job");
        assert_eq!(or(&strs(&["x", "y", "z"])), "x, y or z");
        let w = World::generate(2);
        let town = w.of_kind(Kind::Town).next().unwrap().name.clone();
        let person = w.of_kind(Kind::Person).nth(3).unwrap().name.clone();
        let text = format!("{person} lives in {town}. The mayor of {town} is nobody.");
        assert_eq!(named_in(&w, &text, Kind::Town), std::slice::from_ref(&town));
        assert_eq!(named_in(&w, &text, Kind::Person), [person]);
    }
}
