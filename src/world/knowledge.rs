//! Prompt generators of the tasks about world facts: generation, closed QA, open QA and
//! summarization. Closed QA and summarization carry their facts in the prompt; generation
//! and open QA ask for facts the prose states often (open QA favours the most repeated ones:
//! homes, jobs, mayors, rivers, the capital, pets and their owners).

use super::facts::{self, norm};
use super::prose::{number, templates};
use super::spec::Spec;
use super::{attr, Entity, Kind, World};
use crate::rng::Rng;

fn pick<'a>(rng: &mut Rng, items: &[&'a str]) -> &'a str {
    items[rng.below(items.len())]
}

/// A random entity of a kind drawn with `weights` (person, town, animal, river, lake, mountain).
fn entity<'a>(w: &'a World, rng: &mut Rng, weights: [usize; 6]) -> &'a Entity {
    let kinds = [
        Kind::Person,
        Kind::Town,
        Kind::Animal,
        Kind::River,
        Kind::Lake,
        Kind::Mountain,
    ];
    let mut r = rng.below(weights.iter().sum());
    let mut kind = Kind::Person;
    for (k, wt) in kinds.iter().zip(weights) {
        if r < wt {
            kind = *k;
            break;
        }
        r -= wt;
    }
    let all: Vec<&Entity> = w.of_kind(kind).filter(|e| facts::unique(w, e)).collect();
    all[rng.below(all.len())]
}

/// How a prompt refers to an entity: "the river Marow", "the town of Elford", "Ada".
fn refer(e: &Entity, rng: &mut Rng) -> String {
    match e.kind {
        Kind::River => format!("the river {}", e.name),
        Kind::Town if rng.below(3) == 0 => format!("the town of {}", e.name),
        _ => e.name.clone(),
    }
}

/// A random fact sentence about `e`'s `key`, by name.
pub(crate) fn fact(w: &World, e: &Entity, key: &str, rng: &mut Rng) -> String {
    let t = *rng.choose(templates(e.kind, key));
    facts::sentence(w, e, key, t).unwrap_or_default()
}

/// "Write two sentences about Ada.": `k` (1-3) true facts.
pub(crate) fn generation(w: &World, rng: &mut Rng) -> (String, Spec) {
    let e = entity(w, rng, [45, 25, 20, 6, 2, 2]);
    let k = (1 + rng.below(3)).min(facts::stated_keys(e).len());
    let r = refer(e, rng);
    let t = if k == 1 {
        pick(
            rng,
            &[
                "Write one sentence about {r}.",
                "Tell me one fact about {r}.",
                "Say one true thing about {r}.",
                "Write a sentence about {r}.",
                "What is one thing you know about {r}?",
            ],
        )
    } else {
        pick(
            rng,
            &[
                "Write {k} sentences about {r}.",
                "Tell me {k} facts about {r}.",
                "Say {k} true things about {r}.",
                "Describe {r} in {k} sentences.",
                "Give me {k} facts about {r}, one sentence each.",
                "What do you know about {r}? Answer in {k} sentences.",
            ],
        )
    };
    let lead = pick(
        rng,
        &[
            "",
            "",
            "",
            "Please help me. ",
            "For my notes: ",
            "I am curious. ",
        ],
    );
    let tail = pick(
        rng,
        &["", "", "", " Keep it short.", " Only true facts, please."],
    );
    let prompt = format!(
        "{lead}{}{tail}",
        t.replace("{r}", &r).replace("{k}", &number(k))
    );
    let spec = Spec::Facts {
        subject: e.name.clone(),
        k,
    };
    (prompt, spec)
}

/// A question about `e`'s `key`, filled in.
fn question(w: &World, e: &Entity, key: &str, rng: &mut Rng) -> String {
    let (qs, _) = facts::questions(e.kind, key);
    facts::fill_about(w, e, key, pick(rng, qs)).unwrap_or_default()
}

fn answer_spec(w: &World, e: &Entity, key: &str) -> Spec {
    Spec::Answer {
        subject: e.name.clone(),
        key: key.to_string(),
        value: e.get(key).unwrap_or_default().to_string(),
        domain: facts::domain(w, e.kind, key),
    }
}

/// A context of 2-4 fact sentences (the asked fact, the same attribute of another entity
/// of the kind, other facts of the subject) and a question answered by the context.
pub(crate) fn closed_qa(w: &World, rng: &mut Rng) -> (String, Spec) {
    let e = entity(w, rng, [45, 30, 15, 10, 0, 0]);
    let keys = facts::stated_keys(e);
    let key = *rng.choose(&keys);
    let mut context = vec![fact(w, e, key, rng)];
    let value = e.get(key).unwrap_or_default();
    let rivals: Vec<&Entity> = w
        .of_kind(e.kind)
        .filter(|o| o.name != e.name && o.get(key).is_some_and(|v| v != value))
        .collect();
    if !rivals.is_empty() && rng.below(4) != 0 {
        let o = rivals[rng.below(rivals.len())];
        context.push(fact(w, o, key, rng));
    }
    let extra = rng.below(2 + usize::from(context.len() == 1));
    let others: Vec<&str> = keys.iter().copied().filter(|k| *k != key).collect();
    for k in super::prompts::sample(rng, &others, extra) {
        context.push(fact(w, e, k, rng));
    }
    rng.shuffle(&mut context);
    let context = context.join(" ");
    let q = question(w, e, key, rng);
    let t = pick(
        rng,
        &[
            "{c} {q}",
            "Read this: {c} Question: {q}",
            "{c} Answer from the text: {q}",
            "Text: {c} {q}",
            "{c} Use the text to answer. {q}",
        ],
    );
    (
        t.replace("{c}", &context).replace("{q}", &q),
        answer_spec(w, e, key),
    )
}

/// Attributes open QA asks about, with weights: the facts the prose repeats most.
const OPEN: &[(Kind, &str, usize)] = &[
    (Kind::Land, attr::CAPITAL, 6),
    (Kind::Person, attr::HOME, 14),
    (Kind::Person, attr::JOB, 12),
    (Kind::Person, attr::PET, 5),
    (Kind::Person, attr::FAVOURITE_FOOD, 4),
    (Kind::Person, attr::FAVOURITE_COLOUR, 4),
    (Kind::Town, attr::RIVER, 9),
    (Kind::Town, attr::MAYOR, 9),
    (Kind::Town, attr::KNOWN_FOR, 5),
    (Kind::Town, attr::MARKET_DAY, 4),
    (Kind::Town, attr::SIDE, 4),
    (Kind::Animal, attr::SPECIES, 8),
    (Kind::Animal, attr::OWNER, 8),
    (Kind::Animal, attr::COLOUR, 3),
    (Kind::River, attr::SOURCE, 3),
    (Kind::River, attr::MOUTH, 3),
    (Kind::Mountain, attr::SIDE, 2),
];

/// Ways of asking a bare question, shared with the honesty probes about unknown entities so
/// that the two look alike.
pub(crate) const ASK: &[&str] = &[
    "{q}",
    "{q}",
    "Quick question: {q}",
    "Do you know this? {q}",
    "Please tell me: {q}",
    "I wonder, {q}",
    "Can you help me? {q}",
];

/// `q` asked in one of the [`ASK`] ways.
pub(crate) fn ask(q: &str, rng: &mut Rng) -> String {
    let t = pick(rng, ASK);
    let q = if t.starts_with("{q}") || t.ends_with("? {q}") || t.ends_with(". {q}") {
        q.to_string()
    } else {
        lower_first(q)
    };
    t.replace("{q}", &q)
}

/// Lowercase first letter unless the sentence starts with a name.
fn lower_first(q: &str) -> String {
    let first = q.split(' ').next().unwrap_or("");
    if [
        "What", "Where", "Which", "Who", "How", "In", "On", "Why", "When", "Whose", "Is", "Name",
    ]
    .contains(&first)
    {
        let mut c = q.chars();
        c.next().map_or_else(String::new, |f| {
            f.to_ascii_lowercase().to_string() + c.as_str()
        })
    } else {
        q.to_string()
    }
}

/// A bare question about a frequent fact.
pub(crate) fn open_qa(w: &World, rng: &mut Rng) -> (String, Spec) {
    let total: usize = OPEN.iter().map(|(_, _, wt)| wt).sum();
    let mut r = rng.below(total);
    let &(kind, key, _) = OPEN
        .iter()
        .find(|(_, _, wt)| {
            let hit = r < *wt;
            r = r.saturating_sub(*wt);
            hit
        })
        .unwrap_or(&OPEN[0]);
    let all: Vec<&Entity> = w
        .of_kind(kind)
        .filter(|e| e.get(key).is_some() && facts::unique(w, e))
        .collect();
    let e = all[rng.below(all.len())];
    let q = question(w, e, key, rng);
    (ask(&q, rng), answer_spec(w, e, key))
}

/// A paragraph of 3-5 facts about one entity, to be said in one shorter sentence.
pub(crate) fn summarization(w: &World, rng: &mut Rng) -> (String, Spec) {
    let e = loop {
        let e = entity(w, rng, [50, 25, 20, 5, 0, 0]);
        if facts::stated_keys(e).len() >= 3 {
            break e;
        }
    };
    let mut keys = facts::stated_keys(e);
    rng.shuffle(&mut keys);
    keys.sort_by_key(|k| *k != attr::SPECIES);
    keys.truncate(3 + rng.below(3));
    let sentences: Vec<String> = keys
        .iter()
        .enumerate()
        .map(|(i, k)| {
            let t = *rng.choose(templates(e.kind, k));
            let s = if i > 0 && rng.below(2) == 0 {
                facts::pronoun_sentence(w, e, k, t)
            } else {
                facts::sentence(w, e, k, t)
            };
            s.unwrap_or_default()
        })
        .collect();
    let para = sentences.join(" ");
    let t = pick(
        rng,
        &[
            "Summarize in one sentence: {p}",
            "{p} Sum this up in one short sentence.",
            "Give a one-sentence summary of this text: {p}",
            "Text: {p} Write a short summary of it in one sentence.",
            "{p} Say the same thing in one shorter sentence.",
        ],
    );
    let spec = Spec::Summary {
        subject: e.name.clone(),
        keys: keys.iter().map(|k| k.to_string()).collect(),
        input_words: super::text::count(&para),
    };
    debug_assert!(!norm(&para).is_empty());
    (t.replace("{p}", &para), spec)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ask_keeps_names_capitalised() {
        let mut rng = Rng::new(1);
        for _ in 0..50 {
            let s = ask("Where does Ada live?", &mut rng);
            assert!(s.contains("Ada") && s.ends_with("live?"), "{s}");
            assert!(ask("Name the capital of X.", &mut rng).contains("ame the capital"));
        }
        assert_eq!(lower_first("Where is it?"), "where is it?");
        assert_eq!(lower_first("Ada is?"), "Ada is?");
    }
}
