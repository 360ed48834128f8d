//! What the fuzz targets in `fuzz/` drive: how a purge request's prefixes,
//! hosts and URLs are read, and what a token scoped to hosts may purge.
//! The body itself is [`crate::PurgeRequest`], read with `serde_json` as
//! the side API reads it. Nothing else in the workspace uses this.

use crate::PurgeRequest;
use crate::error::PrefixError;

/// A prefix (or host) as purges match it: `host/path`, no scheme.
pub fn normalize_prefix(text: &str) -> Result<String, PrefixError> {
    crate::purge::normalize_prefix(text)
}

/// The URL as given and with the other of http and https.
pub fn scheme_variants(url: &str) -> Vec<String> {
    crate::purge::scheme_variants(url)
}

/// Whether a token scoped to `allowed` (lower-case names or `*.` and a
/// parent name) may make `purge`.
pub fn scope_allows(allowed: &[String], purge: &PurgeRequest) -> bool {
    crate::auth::check_hosts(allowed, purge).is_ok()
}
