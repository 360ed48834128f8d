//! Numbers that identify: random ids (for fills and Vary markers), and
//! sequence numbers that never go back, not even across a restart.

use std::sync::atomic::{AtomicU64, Ordering};

/// A random id (for fills and Vary markers): unique across processes and
/// restarts whatever the clock does.
pub(crate) fn unique_id() -> u64 {
    let mut bytes = [0u8; 8];
    match rustix::rand::getrandom(&mut bytes, rustix::rand::GetRandomFlags::empty()) {
        Ok(8) => u64::from_le_bytes(bytes),
        // Not expected on Linux; a counter from the clock is the fallback.
        _ => {
            static NEXT: AtomicU64 = AtomicU64::new(0);
            next_after_now(&NEXT)
        }
    }
}

/// Microseconds since the Unix epoch: sequence numbers are never below it,
/// so that numbers given after a restart are above those given before.
pub(crate) fn now_micros() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

/// The next number from `counter`: above every earlier one and not below
/// the current time in microseconds.
pub(crate) fn next_after_now(counter: &AtomicU64) -> u64 {
    counter.fetch_max(now_micros(), Ordering::Relaxed);
    counter.fetch_add(1, Ordering::Relaxed) + 1
}
