//! The `outpost` command: `run`, `check` and `demo` ([`outpost_edge::cli`],
//! which a binary built on the crate with its own hooks runs as well).

use std::process::ExitCode;

/// mimalloc: faster than the system allocator on the request path, and it
/// returns the memory of evicted and purged objects to the system sooner.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    outpost_edge::cli::main(None)
}
