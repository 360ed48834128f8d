//! How the cache took part in an answer, as one typed value: it renders
//! this cache's `Cache-Status` entry (RFC 9211) and names the answer's
//! outcome in the metrics, so the header and the metric cannot disagree.

use http::{HeaderName, HeaderValue};
use outpost_cache::NotStored;

use super::headers::PSEUDONYM;

pub(crate) const CACHE_STATUS: HeaderName = HeaderName::from_static("cache-status");

/// This cache's `Cache-Status` entry (RFC 9211 §2): `hit`, or `fwd` with
/// why the request went forward, then the other parameters that apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CacheStatus {
    /// `hit` (§2.1), or `fwd` (§2.2); neither when the cache answered
    /// without a stored response and without going forward (a 504 for
    /// `only-if-cached`).
    pub(crate) answer: Answer,
    /// `fwd-status` (§2.3): the status the origin answered a forwarded
    /// request with, when the stored response answered all the same (a
    /// 304, a 200 to a HEAD, or an error within stale-if-error).
    pub(crate) fwd_status: Option<u16>,
    /// `ttl` (§2.4): how much longer the response stays fresh; negative
    /// when it answered stale.
    pub(crate) ttl: Option<Ttl>,
    /// `stored` (§2.5): the forwarded response was stored.
    pub(crate) stored: bool,
    /// `collapsed` (§2.6): the request was collapsed onto another's fetch.
    pub(crate) collapsed: bool,
    /// `detail` (§2.8).
    pub(crate) detail: Option<Detail>,
}

/// Whether a stored response answered, or why the request went forward.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Answer {
    Hit,
    Fwd(Fwd),
    /// Neither: the cache answered with an error of its own.
    Neither,
}

/// The `fwd` values this cache gives (RFC 9211 §2.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fwd {
    /// A rule says the cache takes no part.
    Bypass,
    /// The method is not one the cache answers.
    Method,
    /// Nothing was stored.
    Miss,
    /// A response is stored, for other values of its Vary fields.
    VaryMiss,
    /// A stored response was stale.
    Stale,
    /// A fresh stored response the request's own directives refused.
    Request,
}

/// A response's freshness in whole seconds (RFC 9211 §2.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ttl {
    /// Seconds of freshness left.
    Fresh(u64),
    /// Seconds past freshness: written negative (`ttl=-N`).
    Stale(u64),
}

/// Why the answer is what it is, beyond the other parameters (RFC 9211
/// §2.8): each value is one token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Detail {
    /// A stale response answered at once while it is revalidated (RFC 5861 §3).
    StaleWhileRevalidate,
    /// A stale response answered because the origin failed (RFC 5861 §4).
    StaleIfError,
    /// A stale response answered because no answer came at all (RFC 9111 §4.2.4).
    OriginUnreachable,
    /// The origin could not be reached or failed before answering.
    OriginError,
    /// `only-if-cached` and nothing usable stored (RFC 9111 §5.2.1.7).
    OnlyIfCached,
    /// A range of an object too large to keep went to the origin as asked.
    RangePassed,
    /// The response may not be stored, and why.
    NotStored(NotStored),
    /// The node has not heard from the fleet's purge stream for longer than
    /// allowed: a hit may be one a purge elsewhere removed, or the cache
    /// was passed by until the node catches up.
    PurgeLag,
    /// A rule answered with a redirect.
    Redirect,
}

impl Detail {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Detail::StaleWhileRevalidate => "stale-while-revalidate",
            Detail::StaleIfError => "stale-if-error",
            Detail::OriginUnreachable => "origin-unreachable",
            Detail::OriginError => "origin-error",
            Detail::OnlyIfCached => "only-if-cached",
            Detail::RangePassed => "range-passed",
            Detail::NotStored(reason) => reason.as_str(),
            Detail::PurgeLag => "purge-lag",
            Detail::Redirect => "redirect",
        }
    }
}

impl Fwd {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Fwd::Bypass => "bypass",
            Fwd::Method => "method",
            Fwd::Miss => "miss",
            Fwd::VaryMiss => "vary-miss",
            Fwd::Stale => "stale",
            Fwd::Request => "request",
        }
    }
}

/// What became of a request, for the metrics' `cache_status` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// A fresh stored response answered.
    Hit,
    /// A stored response answered stale, or after the origin was asked
    /// (revalidated, or failed within a stale window).
    Stale,
    /// The origin's response answered.
    Miss,
    /// A follower of another request's fetch.
    Collapsed,
    /// The cache took no part.
    Bypass,
    /// A rule answered with a redirect.
    Redirect,
    /// Outpost refused the request, or the origin could not answer it.
    Error,
}

impl Outcome {
    pub(crate) fn label(self) -> &'static str {
        match self {
            Outcome::Hit => "hit",
            Outcome::Stale => "stale",
            Outcome::Miss => "miss",
            Outcome::Collapsed => "collapsed",
            Outcome::Bypass => "bypass",
            Outcome::Redirect => "redirect",
            Outcome::Error => "error",
        }
    }

    /// The outcome of an answer that carries `status`, or none (one of
    /// Outpost's own refusals: 400, 413, 414, 421, …).
    pub(crate) fn of(status: Option<&CacheStatus>) -> Outcome {
        let Some(status) = status else {
            return Outcome::Error;
        };
        match status.detail {
            Some(Detail::OriginError) => return Outcome::Error,
            Some(Detail::Redirect) => return Outcome::Redirect,
            _ => {}
        }
        match status.answer {
            Answer::Hit => match status.ttl {
                Some(Ttl::Stale(_)) => Outcome::Stale,
                _ => Outcome::Hit,
            },
            _ if status.collapsed => Outcome::Collapsed,
            Answer::Fwd(Fwd::Bypass | Fwd::Method) => Outcome::Bypass,
            // Forwarded, yet the stored response answered (a Vary miss's
            // 304 selects a stored variant).
            Answer::Fwd(Fwd::Stale | Fwd::Request | Fwd::VaryMiss)
                if status.fwd_status.is_some()
                    || matches!(
                        status.detail,
                        Some(Detail::StaleIfError | Detail::OriginUnreachable)
                    ) =>
            {
                Outcome::Stale
            }
            Answer::Fwd(_) | Answer::Neither => Outcome::Miss,
        }
    }
}

impl CacheStatus {
    /// A stored response answered, `ttl` from freshness.
    pub(crate) fn hit(ttl: Ttl) -> Self {
        Self {
            ttl: Some(ttl),
            ..Self::new(Answer::Hit)
        }
    }

    /// The request went forward, for `why`.
    pub(crate) fn fwd(why: Fwd) -> Self {
        Self::new(Answer::Fwd(why))
    }

    /// The cache answered without a stored response and without the origin.
    pub(crate) fn neither(detail: Detail) -> Self {
        Self::new(Answer::Neither).detail(detail)
    }

    fn new(answer: Answer) -> Self {
        Self {
            answer,
            fwd_status: None,
            ttl: None,
            stored: false,
            collapsed: false,
            detail: None,
        }
    }

    pub(crate) fn detail(mut self, detail: Detail) -> Self {
        self.detail = Some(detail);
        self
    }

    pub(crate) fn fwd_status(mut self, status: u16) -> Self {
        self.fwd_status = Some(status);
        self
    }

    pub(crate) fn stored(mut self) -> Self {
        self.stored = true;
        self
    }

    pub(crate) fn collapsed(mut self) -> Self {
        self.collapsed = true;
        self
    }

    /// The field's text: this cache's name, then its parameters in one
    /// fixed order.
    pub(crate) fn text(&self) -> String {
        let mut text = String::with_capacity(48);
        text.push_str(PSEUDONYM);
        match self.answer {
            Answer::Hit => text.push_str("; hit"),
            Answer::Fwd(why) => {
                text.push_str("; fwd=");
                text.push_str(why.as_str());
            }
            Answer::Neither => {}
        }
        // Numbers by itoa: `write!` took most of a hit's field.
        let mut digits = itoa::Buffer::new();
        if let Some(status) = self.fwd_status {
            text.push_str("; fwd-status=");
            text.push_str(digits.format(status));
        }
        match self.ttl {
            Some(Ttl::Fresh(secs)) => {
                text.push_str("; ttl=");
                text.push_str(digits.format(secs));
            }
            Some(Ttl::Stale(secs)) => {
                text.push_str("; ttl=-");
                text.push_str(digits.format(secs));
            }
            None => {}
        }
        if self.stored {
            text.push_str("; stored");
        }
        if self.collapsed {
            text.push_str("; collapsed");
        }
        if let Some(detail) = self.detail {
            text.push_str("; detail=");
            text.push_str(detail.as_str());
        }
        text
    }

    /// The `Cache-Status` field value.
    pub(crate) fn header_value(&self) -> HeaderValue {
        HeaderValue::from_maybe_shared(bytes::Bytes::from(self.text()))
            .unwrap_or_else(|_| HeaderValue::from_static(PSEUDONYM))
    }
}

/// `ours` after the entries already in `headers` (those of the caches the
/// response passed before, in their order).
pub(crate) fn after_upstream(headers: &http::HeaderMap, ours: &HeaderValue) -> HeaderValue {
    let mut text = String::new();
    for value in headers.get_all(CACHE_STATUS) {
        if let Ok(entries) = value.to_str() {
            let entries = entries.trim();
            if !entries.is_empty() {
                text.push_str(entries);
                text.push_str(", ");
            }
        }
    }
    text.push_str(ours.to_str().unwrap_or_default());
    HeaderValue::from_str(&text).unwrap_or_else(|_| ours.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 9211 §2: the cache's name, then parameters; each answer this
    /// cache gives, with the metric label it is counted under.
    #[test]
    fn each_answer_renders_one_entry_and_one_label() {
        let cases = [
            (
                CacheStatus::hit(Ttl::Fresh(60)),
                "Outpost; hit; ttl=60",
                "hit",
            ),
            (
                CacheStatus::hit(Ttl::Stale(0)).detail(Detail::StaleWhileRevalidate),
                "Outpost; hit; ttl=-0; detail=stale-while-revalidate",
                "stale",
            ),
            (
                CacheStatus::fwd(Fwd::Miss).stored(),
                "Outpost; fwd=miss; stored",
                "miss",
            ),
            (
                CacheStatus::fwd(Fwd::Miss).detail(Detail::NotStored(NotStored::SetCookie)),
                "Outpost; fwd=miss; detail=set-cookie",
                "miss",
            ),
            (
                CacheStatus::fwd(Fwd::Stale).fwd_status(304),
                "Outpost; fwd=stale; fwd-status=304",
                "stale",
            ),
            (
                CacheStatus::fwd(Fwd::Stale).stored(),
                "Outpost; fwd=stale; stored",
                "miss",
            ),
            (
                CacheStatus::fwd(Fwd::Stale)
                    .fwd_status(503)
                    .detail(Detail::StaleIfError),
                "Outpost; fwd=stale; fwd-status=503; detail=stale-if-error",
                "stale",
            ),
            (
                CacheStatus::fwd(Fwd::Stale).detail(Detail::OriginUnreachable),
                "Outpost; fwd=stale; detail=origin-unreachable",
                "stale",
            ),
            (
                CacheStatus::fwd(Fwd::Request).fwd_status(304),
                "Outpost; fwd=request; fwd-status=304",
                "stale",
            ),
            (
                CacheStatus::fwd(Fwd::VaryMiss).fwd_status(304),
                "Outpost; fwd=vary-miss; fwd-status=304",
                "stale",
            ),
            (
                CacheStatus::fwd(Fwd::VaryMiss).collapsed(),
                "Outpost; fwd=vary-miss; collapsed",
                "collapsed",
            ),
            (
                CacheStatus::fwd(Fwd::Miss).detail(Detail::OriginError),
                "Outpost; fwd=miss; detail=origin-error",
                "error",
            ),
            (
                CacheStatus::neither(Detail::OnlyIfCached),
                "Outpost; detail=only-if-cached",
                "miss",
            ),
            (
                CacheStatus::fwd(Fwd::Bypass),
                "Outpost; fwd=bypass",
                "bypass",
            ),
            (
                CacheStatus::neither(Detail::Redirect),
                "Outpost; detail=redirect",
                "redirect",
            ),
            (
                CacheStatus::fwd(Fwd::Method),
                "Outpost; fwd=method",
                "bypass",
            ),
        ];
        for (status, text, label) in cases {
            assert_eq!(status.text(), text);
            assert_eq!(status.header_value(), text);
            assert_eq!(Outcome::of(Some(&status)).label(), label, "{text}");
        }
        assert_eq!(Outcome::of(None).label(), "error");
    }
}
