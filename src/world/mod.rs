//! The embedded synthetic world: a small fictional land whose entities and facts are
//! generated from one seed. Everything the world says (pretraining prose, later instruction
//! prompts and the gold labeler's answers) is derived from the same [`World`] tables, so
//! the true answer to a question about the world is always a table lookup.

pub mod prose;

mod chat;
mod demos;
mod facts;
mod grade;
mod harm;
mod knowledge;
pub mod labeler;
mod lexicon;
mod probes;
mod prompts;
mod rewrite;
mod spec;
pub mod tasks;
mod text;

use crate::rng::Rng;

/// What an entity is. Places first, then beings.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    /// The country itself (exactly one).
    Land,
    Town,
    River,
    Lake,
    Mountain,
    Person,
    /// A named animal, kept by a person.
    Animal,
}

/// Attribute keys. Values are plain strings; numbers are decimal digits, references to
/// other entities are their exact names.
pub mod attr {
    pub const CAPITAL: &str = "capital";
    /// Town: river it lies on. River: none (see SOURCE and MOUTH).
    pub const RIVER: &str = "river";
    /// Town, Mountain: "north", "south", "east" or "west".
    pub const SIDE: &str = "side";
    pub const POPULATION: &str = "population";
    pub const KNOWN_FOR: &str = "known for";
    pub const MAYOR: &str = "mayor";
    pub const MARKET_DAY: &str = "market day";
    /// River length in kilometres.
    pub const LENGTH_KM: &str = "length in kilometres";
    /// River: the mountain it starts on.
    pub const SOURCE: &str = "source";
    /// River: the lake it flows into.
    pub const MOUTH: &str = "flows into";
    pub const DEPTH_M: &str = "depth in metres";
    pub const HEIGHT_M: &str = "height in metres";
    pub const COLOUR: &str = "colour";
    /// Person: "he" or "she".
    pub const PRONOUN: &str = "pronoun";
    pub const AGE: &str = "age";
    pub const JOB: &str = "job";
    /// Person, Animal: the town they live in.
    pub const HOME: &str = "home";
    pub const FAVOURITE_COLOUR: &str = "favourite colour";
    pub const FAVOURITE_FOOD: &str = "favourite food";
    /// Person: name of their animal, if they keep one.
    pub const PET: &str = "pet";
    pub const SPECIES: &str = "species";
    pub const SIZE: &str = "size";
    pub const OWNER: &str = "owner";
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entity {
    pub name: String,
    pub kind: Kind,
    pub attributes: Vec<(String, String)>,
}

impl Entity {
    /// The value of an attribute, if the entity has it.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    fn set(&mut self, key: &str, value: impl Into<String>) {
        let value = value.into();
        match self.attributes.iter_mut().find(|(k, _)| k == key) {
            Some(slot) => slot.1 = value,
            None => self.attributes.push((key.to_string(), value)),
        }
    }
}

pub(crate) const STARTS: &[&str] = &[
    "Av", "Bel", "Cor", "Dun", "El", "Fen", "Gal", "Har", "Ith", "Kel", "Lor", "Mar", "Nor", "Orm",
    "Pel", "Quen", "Ros", "Sel", "Tor", "Ul", "Ver", "Wen", "Yar", "Zan",
];
pub(crate) const TOWN_ENDS: &[&str] = &[
    "ford", "mere", "wick", "ton", "dale", "holm", "by", "stead", "brook", "moor", "ley", "wyn",
];
pub(crate) const RIVER_ENDS: &[&str] = &["a", "en", "is", "ow", "une", "ith"];
pub(crate) const HILL_ENDS: &[&str] = &["crag", "peak", "horn", "fell"];
pub(crate) const LAKE_ENDS: &[&str] = &["water", "pool", "deep"];
const LAND_ENDS: &[&str] = &["ia", "and", "or"];
/// First names with their pronoun.
#[rustfmt::skip]
pub(crate) const PEOPLE: &[(&str, &str)] = &[
    ("Ada", "she"), ("Ben", "he"), ("Cara", "she"), ("Dan", "he"), ("Edda", "she"),
    ("Finn", "he"), ("Greta", "she"), ("Hugo", "he"), ("Ida", "she"), ("Jon", "he"),
    ("Kira", "she"), ("Leo", "he"), ("Mira", "she"), ("Ned", "he"), ("Olga", "she"),
    ("Pavel", "he"), ("Rosa", "she"), ("Sam", "he"), ("Tilda", "she"), ("Ugo", "he"),
    ("Vera", "she"), ("Walt", "he"), ("Yara", "she"), ("Zeno", "he"), ("Alma", "she"),
    ("Bruno", "he"), ("Clara", "she"), ("Dario", "he"), ("Elsa", "she"), ("Felix", "he"),
    ("Gina", "she"), ("Hans", "he"), ("Inga", "she"), ("Jakob", "he"), ("Lena", "she"),
    ("Marco", "he"), ("Nina", "she"), ("Otto", "he"), ("Petra", "she"), ("Rolf", "he"),
    ("Sofia", "she"), ("Theo", "he"), ("Una", "she"), ("Victor", "he"), ("Wanda", "she"),
    ("Axel", "he"), ("Bea", "she"), ("Carl", "he"), ("Dora", "she"), ("Emil", "he"),
];
pub(crate) const PET_NAMES: &[&str] = &[
    "Pip", "Bramble", "Socks", "Pepper", "Button", "Clover", "Dot", "Fudge", "Ginger", "Hazel",
    "Juniper", "Kipper", "Lumpy", "Maple", "Nutmeg", "Olive", "Pebble", "Quill", "Rusty", "Sprout",
    "Tansy", "Whisker", "Biscuit", "Acorn", "Mossy", "Puddle", "Thistle", "Sooty",
];
pub(crate) const SPECIES: &[&str] = &[
    "cat", "dog", "goat", "horse", "rabbit", "owl", "crow", "duck", "hen", "pig", "sheep",
    "donkey", "otter", "mouse", "parrot", "tortoise",
];
pub(crate) const COLOURS: &[&str] = &[
    "red", "blue", "green", "yellow", "white", "black", "brown", "grey", "orange", "purple",
    "pink", "silver",
];
pub(crate) const SIZES: &[&str] = &["tiny", "small", "large", "huge"];
#[rustfmt::skip]
pub(crate) const JOBS: &[&str] = &[
    "baker", "farmer", "smith", "teacher", "fisher", "weaver", "miller", "potter", "carpenter",
    "healer", "painter", "singer", "sailor", "builder", "shepherd", "guard", "cook", "tailor",
    "merchant", "gardener",
];
pub(crate) const FOODS: &[&str] = &[
    "apples", "pears", "plums", "bread", "cheese", "honey", "fish", "beans", "carrots", "soup",
    "cake", "nuts", "eggs", "rice", "figs", "pie",
];
pub(crate) const PRODUCTS: &[&str] = &[
    "apples", "cheese", "wool", "boats", "pots", "honey", "bells", "rope", "glass", "salt",
    "bread", "lace", "clocks", "wine", "cloth", "baskets",
];
pub(crate) const SIDES: &[&str] = &["north", "south", "east", "west"];
#[rustfmt::skip]
pub(crate) const DAYS: &[&str] = &[
    "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday",
];

const TOWNS: usize = 8;
const RIVERS: usize = 4;
const LAKES: usize = 3;
const MOUNTAINS: usize = 4;
const PERSONS: usize = 40;
const ANIMALS: usize = 24;

/// One generated world: every entity with its facts.
#[derive(Clone, Debug)]
pub struct World {
    pub seed: u64,
    pub entities: Vec<Entity>,
    /// The words a reader of this world knows (the labeler's fluency check), built on
    /// first use: only labeling needs them.
    pub(crate) lexicon: std::sync::Arc<std::sync::OnceLock<std::collections::BTreeSet<String>>>,
}

/// Worlds are equal when their tables are (the lexicon is derived from them).
impl PartialEq for World {
    fn eq(&self, other: &Self) -> bool {
        self.seed == other.seed && self.entities == other.entities
    }
}

impl Eq for World {}

impl World {
    /// The world of `seed`: one land, towns on rivers that run from mountains into lakes,
    /// people living in the towns, and their animals. Same seed, same world.
    pub fn generate(seed: u64) -> World {
        let mut rng = Rng::new(seed ^ 0x5752_4C44); // "WRLD"
        let mut stems: Vec<&str> = STARTS.to_vec();
        rng.shuffle(&mut stems);
        let mut stems = stems.into_iter();
        // A place never shares a person's name ("Yar" + "a" would be Yara).
        let mut place = |rng: &mut Rng, ends: &[&str], pre: &str| {
            let stem = stems.next().unwrap();
            loop {
                let name = format!("{pre}{stem}{}", rng.choose(ends));
                if !PEOPLE.iter().any(|(person, _)| *person == name) {
                    return name;
                }
            }
        };
        let new = |name: String, kind: Kind| Entity {
            name,
            kind,
            attributes: Vec::new(),
        };
        let mut land = new(place(&mut rng, LAND_ENDS, ""), Kind::Land);
        let mut mountains: Vec<Entity> = (0..MOUNTAINS)
            .map(|_| new(place(&mut rng, HILL_ENDS, "Mount "), Kind::Mountain))
            .collect();
        let mut lakes: Vec<Entity> = (0..LAKES)
            .map(|_| new(place(&mut rng, LAKE_ENDS, "Lake "), Kind::Lake))
            .collect();
        let mut rivers: Vec<Entity> = (0..RIVERS)
            .map(|_| new(place(&mut rng, RIVER_ENDS, ""), Kind::River))
            .collect();
        let mut towns: Vec<Entity> = (0..TOWNS)
            .map(|_| new(place(&mut rng, TOWN_ENDS, ""), Kind::Town))
            .collect();
        for m in &mut mountains {
            m.set(attr::HEIGHT_M, (800 + 50 * rng.below(65)).to_string());
            m.set(attr::SIDE, *rng.choose(SIDES));
        }
        for l in &mut lakes {
            l.set(attr::DEPTH_M, (5 + rng.below(116)).to_string());
            l.set(
                attr::COLOUR,
                *rng.choose(&["blue", "green", "grey", "brown"]),
            );
        }
        for (i, r) in rivers.iter_mut().enumerate() {
            r.set(attr::LENGTH_KM, (20 + 5 * rng.below(57)).to_string());
            r.set(attr::SOURCE, &mountains[i % MOUNTAINS].name);
            r.set(attr::MOUTH, &rng.choose(&lakes).name);
        }
        let mut people: Vec<(&str, &str)> = PEOPLE.to_vec();
        rng.shuffle(&mut people);
        let mut persons: Vec<Entity> = people[..PERSONS]
            .iter()
            .enumerate()
            .map(|(i, &(name, pronoun))| {
                let mut p = new(name.to_string(), Kind::Person);
                // The first resident of each town is its mayor, so an adult.
                let age = if i < TOWNS {
                    30 + rng.below(41)
                } else {
                    16 + rng.below(65)
                };
                let home = if i < 2 * TOWNS {
                    i % TOWNS
                } else {
                    rng.below(TOWNS)
                };
                p.set(attr::PRONOUN, pronoun);
                p.set(attr::AGE, age.to_string());
                p.set(attr::JOB, *rng.choose(JOBS));
                p.set(attr::HOME, &towns[home].name);
                p.set(attr::FAVOURITE_COLOUR, *rng.choose(COLOURS));
                p.set(attr::FAVOURITE_FOOD, *rng.choose(FOODS));
                p
            })
            .collect();
        for (i, t) in towns.iter_mut().enumerate() {
            // Every river has at least one town on it.
            let river = if i < RIVERS { i } else { rng.below(RIVERS) };
            t.set(attr::RIVER, &rivers[river].name);
            t.set(attr::SIDE, *rng.choose(SIDES));
            t.set(attr::POPULATION, (200 + 10 * rng.below(900)).to_string());
            t.set(attr::KNOWN_FOR, *rng.choose(PRODUCTS));
            t.set(attr::MAYOR, &persons[i].name);
            t.set(attr::MARKET_DAY, *rng.choose(DAYS));
        }
        let mut pet_names: Vec<&str> = PET_NAMES.to_vec();
        rng.shuffle(&mut pet_names);
        let mut owners: Vec<usize> = (0..PERSONS).collect();
        rng.shuffle(&mut owners);
        let animals: Vec<Entity> = (0..ANIMALS)
            .map(|i| {
                let owner = &mut persons[owners[i]];
                let mut a = new(pet_names[i].to_string(), Kind::Animal);
                a.set(attr::SPECIES, *rng.choose(SPECIES));
                a.set(attr::COLOUR, *rng.choose(COLOURS));
                a.set(attr::SIZE, *rng.choose(SIZES));
                a.set(attr::AGE, (1 + rng.below(15)).to_string());
                a.set(attr::OWNER, &owner.name);
                a.set(attr::HOME, owner.get(attr::HOME).unwrap_or_default());
                owner.set(attr::PET, &a.name);
                a
            })
            .collect();
        land.set(attr::CAPITAL, &rng.choose(&towns).name);
        let mut entities = vec![land];
        for group in [mountains, lakes, rivers, towns, persons, animals] {
            entities.extend(group);
        }
        World {
            seed,
            entities,
            lexicon: Default::default(),
        }
    }

    /// The country.
    pub fn land(&self) -> &Entity {
        &self.entities[0]
    }

    /// All entities of one kind, in a fixed order.
    pub fn of_kind(&self, kind: Kind) -> impl Iterator<Item = &Entity> + '_ {
        self.entities.iter().filter(move |e| e.kind == kind)
    }

    /// The entity called `name`.
    pub fn get(&self, name: &str) -> Option<&Entity> {
        self.entities.iter().find(|e| e.name == name)
    }

    /// Entities of `kind` whose attribute `key` equals `value`.
    pub fn with<'a>(
        &'a self,
        kind: Kind,
        key: &'a str,
        value: &'a str,
    ) -> impl Iterator<Item = &'a Entity> + 'a {
        self.of_kind(kind)
            .filter(move |e| e.get(key) == Some(value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn world_is_deterministic_and_consistent() {
        let w = World::generate(7);
        assert_eq!(w, World::generate(7));
        assert_ne!(w.entities, World::generate(8).entities);
        assert_eq!(w.of_kind(Kind::Land).count(), 1);
        let mut names: Vec<&str> = w.entities.iter().map(|e| e.name.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), w.entities.len(), "entity names are unique");
        for town in w.of_kind(Kind::Town) {
            let mayor = w.get(town.get(attr::MAYOR).unwrap()).unwrap();
            assert_eq!(mayor.get(attr::HOME), Some(town.name.as_str()));
            assert!(w.with(Kind::Person, attr::HOME, &town.name).count() >= 2);
            assert_eq!(
                w.get(town.get(attr::RIVER).unwrap()).unwrap().kind,
                Kind::River
            );
        }
        for river in w.of_kind(Kind::River) {
            assert!(w.with(Kind::Town, attr::RIVER, &river.name).count() >= 1);
        }
        for animal in w.of_kind(Kind::Animal) {
            let owner = w.get(animal.get(attr::OWNER).unwrap()).unwrap();
            assert_eq!(owner.get(attr::PET), Some(animal.name.as_str()));
            assert_eq!(owner.get(attr::HOME), animal.get(attr::HOME));
        }
        assert!(w.entities.iter().all(|e| e.name.is_ascii()));
    }

    #[test]
    fn places_never_take_a_persons_name() {
        for seed in 0..300 {
            let w = World::generate(seed);
            for e in w
                .entities
                .iter()
                .filter(|e| e.kind != Kind::Person && e.kind != Kind::Animal)
            {
                assert!(
                    !PEOPLE.iter().any(|(p, _)| *p == e.name),
                    "world {seed}: {} is a place and a person",
                    e.name
                );
            }
        }
    }
}
