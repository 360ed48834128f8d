//! Reading the `Cache-Status` response header (RFC 9211), e.g.
//! `Outpost; hit; ttl=42` or `Outpost; fwd=miss; stored`, into an outcome
//! (`hit`, `miss`, `stale`, `bypass`, ...) and a detail string for the
//! report.

/// Outcome for a response without a `Cache-Status` header.
pub const NONE: &str = "none";
/// Outcome of a fresh hit.
pub const HIT: &str = "hit";
/// Outcome of a hit served stale (negative ttl, e.g. stale-while-revalidate).
pub const STALE_HIT: &str = "hit-stale";

/// One `Cache-Status` value, read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheStatus {
    /// `hit`, `hit-stale`, the `fwd=` reason (`miss`, `stale`, `bypass`,
    /// `method`, `uri-miss`, `vary-miss`, `request`, ...) or `other`.
    pub outcome: String,
    /// The parameters without the cache's name and without `ttl` (which
    /// changes from answer to answer), e.g. `fwd=miss; stored`.
    pub detail: String,
}

impl CacheStatus {
    /// Whether the answer came from the cache (fresh or stale).
    pub fn is_hit(outcome: &str) -> bool {
        outcome == HIT || outcome == STALE_HIT
    }
}

/// Reads a header value. With several caches listed, the last one (the one
/// nearest the client) is used.
pub fn parse(value: &str) -> CacheStatus {
    let member = value.rsplit(',').next().unwrap_or(value);
    let params = member.split(';').skip(1).map(str::trim);
    let mut hit = false;
    let mut stale = false;
    let mut fwd = None;
    let mut detail = Vec::new();
    for p in params {
        if p.is_empty() {
            continue;
        }
        let (key, val) = match p.split_once('=') {
            Some((k, v)) => (k.trim(), Some(v.trim().trim_matches('"'))),
            None => (p, None),
        };
        match (key.to_ascii_lowercase().as_str(), val) {
            ("hit", _) => hit = true,
            ("fwd", Some(v)) => fwd = Some(v.to_ascii_lowercase()),
            ("ttl", Some(v)) => stale = v.starts_with('-'),
            _ => {}
        }
        if key != "ttl" {
            detail.push(p);
        }
    }
    let outcome = match (hit, fwd) {
        (true, _) if stale => STALE_HIT.to_owned(),
        (true, _) => HIT.to_owned(),
        (false, Some(reason)) if !reason.is_empty() => reason,
        _ => "other".to_owned(),
    };
    CacheStatus {
        outcome,
        detail: detail.join("; "),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(v: &str) -> (String, String) {
        let c = parse(v);
        (c.outcome, c.detail)
    }

    #[test]
    fn outposts_own_values() {
        assert_eq!(
            outcome("Outpost; hit; ttl=41"),
            ("hit".into(), "hit".into())
        );
        assert_eq!(
            outcome("Outpost; fwd=miss; stored"),
            ("miss".into(), "fwd=miss; stored".into())
        );
        assert_eq!(
            outcome("Outpost; hit; ttl=-3; detail=stale-while-revalidate"),
            (
                "hit-stale".into(),
                "hit; detail=stale-while-revalidate".into()
            )
        );
        assert_eq!(
            outcome("Outpost; fwd=stale; fwd-status=304"),
            ("stale".into(), "fwd=stale; fwd-status=304".into())
        );
        assert_eq!(outcome("Outpost; fwd=bypass").0, "bypass");
        assert_eq!(outcome("Outpost; detail=only-if-cached").0, "other");
    }

    #[test]
    fn several_caches_use_the_nearest() {
        assert_eq!(outcome("Origin; fwd=miss, Outpost; hit").0, "hit");
        assert_eq!(outcome("Outpost; HIT, Edge; FWD=Miss").0, "miss");
    }

    #[test]
    fn hits_count_fresh_and_stale() {
        assert!(CacheStatus::is_hit(HIT));
        assert!(CacheStatus::is_hit(STALE_HIT));
        assert!(!CacheStatus::is_hit("miss"));
        assert!(!CacheStatus::is_hit(NONE));
    }

    #[test]
    fn garbage_does_not_panic() {
        for v in ["", ";", ",,,", "x; =; fwd=; ttl", "Outpost;;;hit"] {
            let _ = parse(v);
        }
        assert_eq!(outcome("Outpost;;;hit").0, "hit");
    }
}
