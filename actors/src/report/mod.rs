//! The evaluation report: the comparison behind `rlhf eval` and the pipeline's evaluation
//! ([`evaluate`]), report.md and the terminal table ([`markdown`]), PNG charts ([`plot`]).

pub mod evaluate;
pub mod markdown;
pub mod plot;
