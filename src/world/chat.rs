//! Chat prompts: greetings, thanks, goodbyes, and recalling what the user just said.

use super::facts::{self, Domain};
use super::prompts::{names, pick, strs, CHAT_NAMES};
use super::prose::{a, cap};
use super::spec::Spec;
use super::{attr, Kind, World};
use crate::rng::Rng;

/// Pet names users mention in chat; none is an animal of any world.
const CHAT_PETS: &[&str] = &[
    "Bobble", "Cricket", "Dapple", "Fizz", "Jelly", "Muffin", "Noodle", "Pickle", "Roo", "Tuft",
    "Wobble", "Ziggy",
];

/// Greetings, thanks, goodbyes and recalling what the user just said.
pub(crate) fn chat(w: &World, rng: &mut Rng) -> (String, Spec) {
    let x = pick(rng, CHAT_NAMES);
    let named = rng.below(2) == 0;
    let hi = if named {
        pick(
            rng,
            &["Hi, I am {x}. ", "Hello, my name is {x}. ", "I'm {x}. "],
        )
        .replace("{x}", x)
    } else {
        String::new()
    };
    let species = pick(rng, super::SPECIES);
    let name_group = vec![x.to_string()];
    let mut need: Vec<Vec<String>> = Vec::new();
    let (mut wrong, mut right) = (Domain::Words(Vec::new()), Vec::new());
    let (prompt, replies): (String, &[&str]) = match rng.below(20) {
        0..=4 => {
            let t = pick(
                rng,
                &[
                    "Hi, I am {x}. Can you greet me?",
                    "Hello! My name is {x}. Please say hello to me.",
                    "Hi there, I'm {x}. Say hi to me!",
                    "Good morning! I am {x}. Will you greet me?",
                    "My name is {x}. Please greet me.",
                    "I am {x} and I am new here. Can you say hello?",
                ],
            );
            need = vec![
                strs(&["hello", "hi", "good morning", "welcome"]),
                name_group,
            ];
            (
                t.replace("{x}", x),
                &[
                    "Hello, {x}! Nice to meet you.",
                    "Hi {x}, it is good to meet you.",
                    "Hello {x}! How are you today?",
                    "Welcome, {x}! Nice to meet you.",
                ],
            )
        }
        5 | 6 => {
            let t = pick(
                rng,
                &[
                    "Thank you so much for your help!",
                    "Thanks a lot, that was very kind of you.",
                    "That helped me a lot. Thank you!",
                    "Thanks for all your help today.",
                ],
            );
            need.push(strs(&["welcome", "glad", "pleasure"]));
            let replies: &[&str] = if named {
                need.push(name_group);
                &[
                    "You are welcome, {x}!",
                    "My pleasure, {x}.",
                    "You are welcome, {x}. I am glad I could help.",
                ]
            } else {
                &[
                    "You are welcome!",
                    "My pleasure!",
                    "You are welcome. I am glad I could help.",
                ]
            };
            (format!("{hi}{t}"), replies)
        }
        7 | 8 => {
            let t = pick(
                rng,
                &[
                    "I have to go now. Goodbye!",
                    "Bye for now, I am off home.",
                    "It was nice to talk. See you later!",
                    "I must go. Bye!",
                ],
            );
            need.push(strs(&["goodbye", "bye", "see you"]));
            let replies: &[&str] = if named {
                need.push(name_group);
                &[
                    "Goodbye, {x}! Take care.",
                    "Bye, {x}! Have a nice day.",
                    "See you later, {x}!",
                ]
            } else {
                &[
                    "Goodbye! Take care.",
                    "Bye! Have a nice day.",
                    "See you later!",
                ]
            };
            (format!("{hi}{t}"), replies)
        }
        9 => {
            let t = pick(
                rng,
                &[
                    "How are you today?",
                    "Hi! How are you?",
                    "Hello, how are you doing?",
                    "How is your day going?",
                ],
            );
            need = vec![
                strs(&["well", "fine", "good", "great"]),
                strs(&["thank", "thanks"]),
            ];
            (
                format!("{hi}{t}"),
                &[
                    "I am well, thank you. How are you?",
                    "I am fine, thanks for asking!",
                    "I am very well, thank you.",
                ],
            )
        }
        r => {
            let (fact, question, value, domain, replies): (&str, &str, String, Domain, &[&str]) =
                match r % 6 {
                    0 => (
                        "my favourite food is {v}",
                        pick(
                            rng,
                            &["What is my favourite food?", "Which food do I like best?"],
                        ),
                        pick(rng, super::FOODS).into(),
                        Domain::words(super::FOODS),
                        &[
                            "Your favourite food is {v}.",
                            "You like {v} best.",
                            "It is {v}.",
                        ],
                    ),
                    1 => (
                        "my favourite colour is {v}",
                        pick(
                            rng,
                            &[
                                "What is my favourite colour?",
                                "Which colour do I like best?",
                            ],
                        ),
                        pick(rng, super::COLOURS).into(),
                        Domain::words(super::COLOURS),
                        &[
                            "Your favourite colour is {v}.",
                            "You like {v} best.",
                            "It is {v}.",
                        ],
                    ),
                    2 => (
                        "I live in {v}",
                        pick(rng, &["Where do I live?", "Which town do I live in?"]),
                        rng.choose(&names(w, Kind::Town)).clone(),
                        facts::domain(w, Kind::Person, attr::HOME),
                        &["You live in {v}.", "In {v}.", "You said you live in {v}."],
                    ),
                    3 => (
                        pick(rng, &["I have {as} called {v}", "my {s} is called {v}"]),
                        pick(
                            rng,
                            &["What is my {s} called?", "What is the name of my {s}?"],
                        ),
                        pick(rng, CHAT_PETS).into(),
                        Domain::words(CHAT_PETS),
                        &["Your {s} is called {v}.", "It is called {v}.", "{v}."],
                    ),
                    4 => (
                        "I am {v} years old",
                        pick(rng, &["How old am I?", "What is my age?"]),
                        (8 + rng.below(83)).to_string(),
                        Domain::Number,
                        &["You are {v} years old.", "You are {v}.", "{v} years old."],
                    ),
                    _ => (
                        "I work as {av}",
                        pick(rng, &["What is my job?", "What work do I do?"]),
                        pick(rng, super::JOBS).into(),
                        Domain::words(super::JOBS),
                        &["You are {av}.", "You work as {av}.", "Your job is {v}."],
                    ),
                };
            let lead = if named {
                format!("I am {x} and {fact}.")
            } else {
                format!("{}.", cap(fact))
            };
            need.push(vec![value.clone()]);
            wrong = domain;
            right.push(value);
            (format!("{lead} {question}"), replies)
        }
    };
    let fill = |t: &str| {
        let v = right.first().map_or("", |v| v.as_str());
        t.replace("{x}", x)
            .replace("{as}", &a(species))
            .replace("{s}", species)
            .replace("{av}", &a(v))
            .replace("{v}", v)
    };
    let spec = Spec::Reply {
        need,
        wrong,
        replies: replies.iter().map(|r| fill(r)).collect(),
        right: right.clone(),
    };
    (fill(&prompt), spec)
}
