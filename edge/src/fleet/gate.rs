//! Whether the cache may answer, as the fleet's purge stream allows: the
//! one thing the request path reads of the fleet, an atomic load per
//! request.

use std::sync::atomic::{AtomicU8, Ordering};

/// What the proxy does with what the cache holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Access {
    /// Caught up with the stream: answer from the cache.
    Open,
    /// Not heard from the stream for longer than `max_lag`, under the
    /// `serve` policy: answer, and say so in Cache-Status.
    Lagging,
    /// Purges may be missing (starting up before the replay, or lagging
    /// under the `bypass` policy): nothing is answered from the cache.
    Closed,
}

#[derive(Debug)]
pub(crate) struct Gate(AtomicU8);

impl Gate {
    /// A gate that stays closed until the node has caught up.
    pub(crate) fn closed() -> Self {
        Self(AtomicU8::new(Access::Closed as u8))
    }

    pub(crate) fn access(&self) -> Access {
        match self.0.load(Ordering::Acquire) {
            0 => Access::Open,
            1 => Access::Lagging,
            _ => Access::Closed,
        }
    }

    pub(crate) fn set(&self, access: Access) {
        self.0.store(access as u8, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gate_reads_back_what_was_set() {
        let gate = Gate::closed();
        assert_eq!(gate.access(), Access::Closed);
        for access in [Access::Open, Access::Lagging, Access::Closed] {
            gate.set(access);
            assert_eq!(gate.access(), access);
        }
    }
}
