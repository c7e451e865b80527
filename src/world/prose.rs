//! Pretraining prose about a [`World`]: fact paragraphs, lists and short stories, written
//! from varied templates. Every statement agrees with the world's tables.

use super::{attr, Entity, Kind, World};
use crate::rng::Rng;

/// `documents` plain-English ASCII documents about the world of `seed`. Same seed, same
/// corpus; a prefix of a longer corpus is the shorter corpus.
pub fn corpus(seed: u64, documents: usize) -> Vec<String> {
    let world = World::generate(seed);
    let mut rng = Rng::new(seed ^ 0x50_524F_5345); // "PROSE"
    (0..documents).map(|_| document(&world, &mut rng)).collect()
}

/// One random document: facts about an entity, a list, or a story.
pub fn document(world: &World, rng: &mut Rng) -> String {
    let r = rng.below(20);
    let sentences = if r < 8 {
        facts(world, rng)
    } else if r < 13 {
        list(world, rng)
    } else {
        story(world, rng)
    };
    sentences.join(" ")
}

#[rustfmt::skip]
pub(crate) fn templates(kind: Kind, key: &str) -> &'static [&'static str] {
    use attr::*;
    match (kind, key) {
        (Kind::Land, CAPITAL) => &["The capital of {N} is {V}.", "{V} is the capital of {N}."],
        (Kind::Person, AGE) => &["{N} is {V} years old.", "{N} is {V}.", "{N} is {V} years of age."],
        (Kind::Person, JOB) => &["{N} is {aV}.", "{N} works as {aV}.", "By trade, {N} is {aV}."],
        (Kind::Person, HOME) => &["{N} lives in {V}.", "{N}'s home is in {V}.", "{N} lives in the town of {V}."],
        (Kind::Person, FAVOURITE_COLOUR) => &["{N}'s favourite colour is {V}.", "{N} likes {V} more than any other colour."],
        (Kind::Person, FAVOURITE_FOOD) => &["{N}'s favourite food is {V}.", "{N} likes {V} best of all."],
        (Kind::Person, PET) => &["{N} has {aS} called {V}.", "{N} keeps {aS} named {V}."],
        (Kind::Animal, SPECIES) => &["{N} is {aV}.", "{N} is {aV} that lives in {home}."],
        (Kind::Animal, COLOUR) => &["{N} is {V}.", "The colour of {N} is {V}."],
        (Kind::Animal, SIZE) => &["{N} is {V}.", "{N} is {V} for {aS}."],
        (Kind::Animal, AGE) => &["{N} is {V} {years} old.", "{N} is {V} {years} of age."],
        (Kind::Animal, OWNER) => &["{N} belongs to {V}.", "{N} is {V}'s {S}.", "{V} is the owner of {N}."],
        (Kind::Town, RIVER) => &["{N} lies on the river {V}.", "The river {V} runs through {N}.", "{N} is a town on the river {V}."],
        (Kind::Town, SIDE) => &["{N} is in the {V} of {land}.", "{N} lies in the {V} of {land}."],
        (Kind::Town, POPULATION) => &["{N} has {V} people.", "{V} people live in {N}.", "The town of {N} has {V} people."],
        (Kind::Town, KNOWN_FOR) => &["{N} is known for its {V}.", "People come to {N} for its {V}."],
        (Kind::Town, MAYOR) => &["The mayor of {N} is {V}.", "{V} is the mayor of {N}."],
        (Kind::Town, MARKET_DAY) => &["The market in {N} is on {V}.", "{N} holds its market on {V}."],
        (Kind::River, LENGTH_KM) => &["The river {N} is {V} kilometres long.", "The {N} is {V} kilometres long."],
        (Kind::River, SOURCE) => &["The river {N} starts on {V}.", "The source of the {N} is on {V}."],
        (Kind::River, MOUTH) => &["The river {N} flows into {V}.", "The {N} ends in {V}."],
        (Kind::Lake, DEPTH_M) => &["{N} is {V} metres deep.", "The water of {N} is {V} metres deep."],
        (Kind::Lake, COLOUR) => &["The water of {N} is {V}.", "{N} looks {V}."],
        (Kind::Mountain, HEIGHT_M) => &["{N} is {V} metres high.", "{N} rises {V} metres above the sea."],
        (Kind::Mountain, SIDE) => &["{N} stands in the {V} of {land}.", "{N} is in the {V} of {land}."],
        _ => &[],
    }
}

/// A paragraph of 2-5 facts about one entity, in random order; after the first sentence
/// a person, animal or place is sometimes referred to by pronoun.
fn facts(w: &World, rng: &mut Rng) -> Vec<String> {
    let e = rng.choose(&w.entities);
    let mut keys: Vec<&(String, String)> = e
        .attributes
        .iter()
        .filter(|(k, _)| !templates(e.kind, k).is_empty())
        .collect();
    rng.shuffle(&mut keys);
    // An animal is introduced by what it is.
    keys.sort_by_key(|(k, _)| k != attr::SPECIES);
    let n = keys.len().min(2 + rng.below(4));
    let (subj, _, poss) = pronouns(e);
    let mut out = Vec::new();
    for (i, (key, value)) in keys[..n].iter().enumerate() {
        let species = match e.kind {
            Kind::Animal => e.get(attr::SPECIES),
            _ => w.get(value).and_then(|pet| pet.get(attr::SPECIES)),
        }
        .unwrap_or("animal");
        let years = if value == "1" { "year" } else { "years" };
        let t = *rng.choose(templates(e.kind, key));
        let Some(mut s) = fill(
            t,
            &[
                ("N", e.name.as_str()),
                ("V", value),
                ("aV", &a(value)),
                ("S", species),
                ("aS", &a(species)),
                ("years", years),
                ("land", &w.land().name),
                ("home", e.get(attr::HOME).unwrap_or("")),
            ],
        ) else {
            continue;
        };
        if i > 0 && rng.below(2) == 0 {
            let possessive = format!("{}'s ", e.name);
            if let Some(rest) = s.strip_prefix(&possessive) {
                s = format!("{} {rest}", cap(poss));
            } else if let Some(rest) = s.strip_prefix(&format!("{} ", e.name)) {
                s = format!("{} {rest}", cap(subj));
            }
        }
        out.push(s);
    }
    out
}

fn list(w: &World, rng: &mut Rng) -> Vec<String> {
    let land = &w.land().name;
    let names = |it: &mut dyn Iterator<Item = &Entity>| -> Vec<String> {
        it.map(|e| e.name.clone()).collect()
    };
    let (noun, group, items) = match rng.below(7) {
        0 => ("towns", land.clone(), names(&mut w.of_kind(Kind::Town))),
        1 => ("rivers", land.clone(), names(&mut w.of_kind(Kind::River))),
        2 => ("lakes", land.clone(), names(&mut w.of_kind(Kind::Lake))),
        3 => (
            "mountains",
            land.clone(),
            names(&mut w.of_kind(Kind::Mountain)),
        ),
        4 => {
            let town = rng.choose(&names(&mut w.of_kind(Kind::Town))).clone();
            let people = names(&mut w.with(Kind::Person, attr::HOME, &town));
            ("people", town, people)
        }
        5 => {
            let river = rng.choose(&names(&mut w.of_kind(Kind::River))).clone();
            let towns = names(&mut w.with(Kind::Town, attr::RIVER, &river));
            let n = towns.len();
            let lead = match rng.below(2) {
                0 if n > 1 => format!("The {} towns on the river {river} are", number(n)),
                _ if n > 1 => format!("The river {river} runs through {} towns:", number(n)),
                _ => format!("The only town on the river {river} is"),
            };
            return vec![format!("{lead} {}.", and(&towns))];
        }
        _ => {
            let person = rng.choose(&names(&mut w.of_kind(Kind::Person))).clone();
            let job = w
                .get(&person)
                .and_then(|p| p.get(attr::JOB))
                .unwrap_or("baker");
            let people = names(&mut w.with(Kind::Person, attr::JOB, job));
            if people.len() == 1 {
                return vec![format!("The only {job} in {land} is {person}.")];
            }
            let n = number(people.len());
            return vec![format!("{land} has {n} {job}s: {}.", and(&people))];
        }
    };
    let n = number(items.len());
    let joined = and(&items);
    let s = match (noun, rng.below(3)) {
        ("people", 0) => format!("The people who live in {group} are {joined}."),
        ("people", 1) => format!("{n} people live in {group}: {joined}.", n = cap(&n)),
        ("people", _) => format!("In {group} live {joined}."),
        (_, 0) => format!("The {n} {noun} of {group} are {joined}."),
        (_, 1) => format!("There are {n} {noun} in {group}: {joined}."),
        _ => format!("{group} has {n} {noun}: {joined}."),
    };
    let mut out = vec![s];
    if noun == "towns" && rng.below(2) == 0 {
        out.push(format!(
            "The capital is {}.",
            w.land().get(attr::CAPITAL).unwrap_or("")
        ));
    }
    out
}

/// Story plots: sentences with `{var}` slots filled from the world. A story whose first
/// sentence has an empty slot is not told; later sentences with an empty slot are left out.
#[rustfmt::skip]
const STORIES: &[&[&str]] = &[
    &["{when}, {P} could not find {pet}.", "{Ps} looked in the garden and down by the river {river}.",
      "{pet}, {pp} {petcolour} {petspecies}, was nowhere to be seen.",
      "At last {ps} found {pet} asleep {hideout}.", "{P} carried it home and gave it some {food}."],
    &["It was {day}, so there was a market in {town}.", "{P} went to buy some {food}, because {ps} likes {food} best.",
      "At the first stall {ps} met {Q}, who is {aqjob}.", "{Q} had {product} to sell, and {P} bought some too.",
      "Then {P} went home with a full bag."],
    &["{P} and {Q} wanted to climb {mountain}.", "{mountain} is {height} metres high, so they set off early.",
      "The path was steep and the wind was cold.", "Near the top they saw the spring where the river {spring} begins.",
      "At the top they ate {food} and looked out over {land}."],
    &["{P} lives in {town}, and {pp} friend {Q} lives in {qhome}.", "{when}, {P} walked to {qhome} to see {Q}.",
      "On the way it began to {weather}, and the road grew {wet}.",
      "When {ps} arrived, {Q} gave {po} a cup of hot tea and some {qfood}.", "They talked until the stars came out."],
    &["One {season}, it rained for {ndays} days in {town}.", "The river {river} grew wide and fast.",
      "{P} and {Q} helped their neighbours carry their things up the hill.",
      "When the sun came back, the people of {town} had a party.", "The mayor, {mayor}, thanked everyone for their help."],
    &["{P} is {apjob} in {town}.", "{when}, {Q} came to {pp} door with a problem.",
      "{Ps} worked hard all day to help.", "{Q} was very grateful and gave {po} some {qfood} as thanks."],
    &["{P} has {apet} called {pet}.", "Every {day}, {ps} takes {pet} to the market in {town}.",
      "The children of {town} like to give {pet} a little {food}.", "{pet} is always happy on market day."],
];

fn story(w: &World, rng: &mut Rng) -> Vec<String> {
    let persons: Vec<&Entity> = w.of_kind(Kind::Person).collect();
    let mountains: Vec<&Entity> = w.of_kind(Kind::Mountain).collect();
    let (p, q) = (*rng.choose(&persons), *rng.choose(&persons));
    let m = *rng.choose(&mountains);
    let plot = *rng.choose(STORIES);
    // Missing facts become "" and silence the sentences that need them.
    let get = |e: Option<&Entity>, k: &str| e.and_then(|e| e.get(k)).unwrap_or("").to_string();
    let name = |e: Option<&Entity>| e.map_or(String::new(), |e| e.name.clone());
    let home = p.get(attr::HOME).unwrap_or("");
    let (town, pet) = (w.get(home), p.get(attr::PET).and_then(|n| w.get(n)));
    let q = Some(q).filter(|q| q.name != p.name);
    let (ps, po, pp) = pronouns(p);
    let look = format!("{} {}", get(pet, attr::COLOUR), get(pet, attr::SPECIES));
    let mut pick = |xs: &[&str]| rng.choose(xs).to_string();
    let wet = pick(&["wet", "white"]);
    let vars: Vec<(&str, String)> = vec![
        ("P", p.name.clone()),
        ("Q", name(q)),
        ("Ps", cap(ps)),
        ("ps", ps.into()),
        ("po", po.into()),
        ("pp", pp.into()),
        ("apjob", a(&get(Some(p), attr::JOB))),
        (
            "aqjob",
            q.map_or(String::new(), |q| a(&get(Some(q), attr::JOB))),
        ),
        ("food", get(Some(p), attr::FAVOURITE_FOOD)),
        ("qfood", get(q, attr::FAVOURITE_FOOD)),
        (
            "qhome",
            get(q.filter(|q| q.get(attr::HOME) != Some(home)), attr::HOME),
        ),
        ("town", home.into()),
        ("river", get(town, attr::RIVER)),
        ("day", get(town, attr::MARKET_DAY)),
        ("product", get(town, attr::KNOWN_FOR)),
        ("mayor", get(town, attr::MAYOR)),
        ("pet", name(pet)),
        ("petcolour", get(pet, attr::COLOUR)),
        ("petspecies", get(pet, attr::SPECIES)),
        ("apet", pet.map_or(String::new(), |_| a(&look))),
        ("mountain", m.name.clone()),
        ("height", get(Some(m), attr::HEIGHT_M)),
        (
            "spring",
            name(w.with(Kind::River, attr::SOURCE, &m.name).next()),
        ),
        ("land", w.land().name.clone()),
        (
            "when",
            pick(&["One morning", "One evening", "Last spring", "One cold day"]),
        ),
        (
            "hideout",
            pick(&["under an old cart", "behind the bakery", "in a hay cart"]),
        ),
        ("season", pick(&["spring", "autumn", "winter"])),
        ("weather", if wet == "wet" { "rain" } else { "snow" }.into()),
        ("wet", wet),
        ("ndays", number(2 + rng.below(4))),
    ];
    if fill(plot[0], &vars).is_none() {
        return story(w, rng);
    }
    let mut told: Vec<String> = plot.iter().filter_map(|t| fill(t, &vars)).collect();
    if told.len() > 3 && rng.below(3) == 0 {
        told.pop();
    }
    told
}

/// (subject, object, possessive) pronouns.
pub(crate) fn pronouns(e: &Entity) -> (&'static str, &'static str, &'static str) {
    match (e.kind, e.get(attr::PRONOUN)) {
        (Kind::Person, Some("she")) => ("she", "her", "her"),
        (Kind::Person, _) => ("he", "him", "his"),
        _ => ("it", "it", "its"),
    }
}

/// `template` with every `{key}` slot filled, or `None` if a slot it uses is empty.
pub(crate) fn fill<V: AsRef<str>>(template: &str, vars: &[(&str, V)]) -> Option<String> {
    let mut s = template.to_string();
    for (key, value) in vars {
        let slot = format!("{{{key}}}");
        if s.contains(&slot) {
            if value.as_ref().is_empty() {
                return None;
            }
            s = s.replace(&slot, value.as_ref());
        }
    }
    Some(s)
}

pub(crate) fn a(noun: &str) -> String {
    let article = if noun.starts_with(['a', 'e', 'i', 'o', 'u']) {
        "an"
    } else {
        "a"
    };
    format!("{article} {noun}")
}

pub(crate) fn cap(s: &str) -> String {
    let mut c = s.chars();
    c.next().map_or_else(String::new, |f| {
        f.to_ascii_uppercase().to_string() + c.as_str()
    })
}

pub(crate) fn and(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [rest @ .., last] => format!("{} and {last}", rest.join(", ")),
    }
}

pub(crate) fn number(n: usize) -> String {
    const WORDS: &[&str] = &[
        "no", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
        "eleven", "twelve",
    ];
    WORDS
        .get(n)
        .map_or_else(|| n.to_string(), |w| w.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn corpus_is_deterministic_ascii_and_seed_dependent() {
        let c = corpus(11, 300);
        assert_eq!(c.len(), 300);
        assert_eq!(c, corpus(11, 300));
        assert_eq!(c[..50], corpus(11, 50)[..]);
        assert_ne!(c, corpus(12, 300));
        assert!(c
            .iter()
            .all(|d| d.is_ascii() && d.ends_with('.') && !d.contains('{')));
        let distinct: std::collections::HashSet<&String> = c.iter().collect();
        assert!(
            distinct.len() > 200,
            "only {} distinct documents",
            distinct.len()
        );
    }

    #[test]
    fn prose_states_the_world_facts() {
        let w = World::generate(3);
        let text = corpus(3, 2000).join("\n");
        for town in w.of_kind(Kind::Town) {
            let mayor = town.get(attr::MAYOR).unwrap();
            assert!(
                text.contains(&format!("The mayor of {} is {mayor}.", town.name))
                    || text.contains(&format!("{mayor} is the mayor of {}.", town.name)),
                "mayor of {} never stated",
                town.name
            );
        }
        assert!(text.contains(&format!("of {} are", w.land().name)));
    }

    #[test]
    fn helpers() {
        assert_eq!(a("owl"), "an owl");
        assert_eq!(a("cat"), "a cat");
        let items = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(and(&items(&["A", "B", "C"])), "A, B and C");
        assert_eq!(and(&items(&["A"])), "A");
        assert_eq!(number(3), "three");
        assert_eq!(number(40), "40");
        let vars = [("N", "Ada"), ("aV", "a cook"), ("X", "")];
        assert_eq!(fill("{N} is {aV}.", &vars).unwrap(), "Ada is a cook.");
        assert_eq!(fill("{N} is {X}.", &vars), None);
    }
}
