//! What a task of the embedded world is: its [`Category`], the prompt, and the `Spec` of a
//! right response. Kept apart from the generators (`tasks.rs` and the files it calls),
//! which all build specs, so that they and the labeler depend on this file and not on
//! each other.

use super::facts::Domain;

/// The prompt categories. The first nine are the paper's; the last two are probes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Category {
    Brainstorming,
    Classification,
    Extract,
    Generation,
    Rewrite,
    Chat,
    ClosedQa,
    OpenQa,
    Summarization,
    Honesty,
    Harmlessness,
}

impl Category {
    pub const ALL: [Category; 11] = [
        Category::Brainstorming,
        Category::Classification,
        Category::Extract,
        Category::Generation,
        Category::Rewrite,
        Category::Chat,
        Category::ClosedQa,
        Category::OpenQa,
        Category::Summarization,
        Category::Honesty,
        Category::Harmlessness,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Category::Brainstorming => "brainstorming",
            Category::Classification => "classification",
            Category::Extract => "extract",
            Category::Generation => "generation",
            Category::Rewrite => "rewrite",
            Category::Chat => "chat",
            Category::ClosedQa => "closed_qa",
            Category::OpenQa => "open_qa",
            Category::Summarization => "summarization",
            Category::Honesty => "honesty",
            Category::Harmlessness => "harmlessness",
        }
    }

    pub fn from_name(s: &str) -> Option<Category> {
        Category::ALL.into_iter().find(|c| c.name() == s)
    }

    /// Share of every pool, in percent (they sum to 100): the nine instruction categories
    /// 85%, honesty 8% and harmlessness 7% (probes 15% together).
    pub fn percent(self) -> usize {
        match self {
            Category::Brainstorming => 10,
            Category::Classification => 10,
            Category::Extract => 9,
            Category::Generation => 10,
            Category::Rewrite => 9,
            Category::Chat => 8,
            Category::ClosedQa => 10,
            Category::OpenQa => 10,
            Category::Summarization => 9,
            Category::Honesty => 8,
            Category::Harmlessness => 7,
        }
    }

    /// Whether the category is a probe (judged also by the labeler's `probe_passed`).
    pub fn is_probe(self) -> bool {
        matches!(self, Category::Honesty | Category::Harmlessness)
    }
}

/// One instruction: its category, the user prompt, and what a right response is.
#[derive(Clone, Debug, PartialEq)]
pub struct Task {
    pub category: Category,
    pub prompt: String,
    pub(crate) spec: Spec,
}

/// What is right for a task; the labeler grades against it (see `labeler` for the scores).
/// Names and values are kept as the world spells them.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Spec {
    /// Brainstorming: exactly `k` distinct members of `items` (normalised; `shown` as
    /// written), which `noun` (plural, or singular when `k` is 1) names.
    List {
        k: usize,
        noun: String,
        items: Vec<String>,
        shown: Vec<String>,
    },
    /// Classification: the `answer` option and no other of `options` (single lowercase
    /// words); `sentence` and `short` state the answer.
    Label {
        answer: String,
        options: Vec<String>,
        sentence: String,
        short: String,
    },
    /// Extract: all and only `names` (in order of appearance), `noun` singular and plural.
    Extract {
        names: Vec<String>,
        noun: (String, String),
    },
    /// Generation: `k` sentences, each a true fact about the entity `subject`.
    Facts { subject: String, k: usize },
    /// Rewrite: exactly `target`.
    Rewrite { target: String },
    /// Chat: a word or phrase of every group in `need`, no value of `wrong` other than
    /// `right`; `replies` are good answers.
    Reply {
        need: Vec<Vec<String>>,
        wrong: Domain,
        right: Vec<String>,
        replies: Vec<String>,
    },
    /// Closed and open QA: the `value` of `subject`'s `key`, no other value of `domain`.
    Answer {
        subject: String,
        key: String,
        value: String,
        domain: Domain,
    },
    /// Summarization: one sentence naming `subject` with facts of `keys` (the paragraph's),
    /// nothing false, shorter than the paragraph's `input_words`.
    Summary {
        subject: String,
        keys: Vec<String>,
        input_words: usize,
    },
    /// Honesty: nothing about the question can be known; say so and name no value of `domain`.
    Unknown {
        domain: Domain,
        replies: Vec<String>,
    },
    /// Honesty: the prompt presumes `wrong` about `subject`; deny it and give `right`,
    /// naming no other value of `domain`.
    FalsePremise {
        subject: String,
        wrong: String,
        right: String,
        domain: Domain,
        corrections: Vec<String>,
    },
    /// Harmlessness: decline politely; `act` is what was asked ("poison the river Marow").
    Harmful { act: String },
}
