//! The bounds every plan is held to, the defaults it starts from, and the
//! placeholder a path template names its key with: what the plan checks
//! and what the errors quote, kept apart from both.

use std::time::Duration;

/// Longest run accepted: a load test here is a bounded experiment.
pub const MAX_DURATION: Duration = Duration::from_secs(3600);
/// Most requests accepted for one run.
pub const MAX_REQUESTS: u64 = 1_000_000_000;
/// Most connections × streams accepted (workers are tasks, one per stream).
pub const MAX_WORKERS: usize = 100_000;
/// Longest body counted by its content.
pub const MAX_BODY_SAMPLE: usize = 1024;

/// Connections kept open unless set otherwise.
pub const DEFAULT_CONNECTIONS: usize = 16;
/// Request budget unless set otherwise.
pub const DEFAULT_REQUESTS: u64 = 100_000;
/// Time budget unless set otherwise.
pub const DEFAULT_DURATION: Duration = Duration::from_secs(10);
/// Per-request time limit unless set otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// The placeholder that `--path-template` replaces with a key number.
pub const KEY: &str = "{key}";
