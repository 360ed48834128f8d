//! The process over time: start-up, config generations and reload, the
//! binary upgrade, shutdown, and the built-in demo.

pub(crate) mod check;
pub mod demo;
pub(crate) mod generation;
pub(crate) mod reload;
pub(crate) mod start;
pub mod upgrade;
