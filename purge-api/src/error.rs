//! Why the side API refuses a purge: a URL that names no stored key, a
//! prefix it cannot read, or a scoped token reaching past its hosts.
//! Each becomes the message of a `400` or `403`, causes included.

use outpost_cache::{KeyError, PathError};

/// Why a purge URL names no key.
#[derive(Debug, thiserror::Error)]
pub enum UrlError {
    #[error(transparent)]
    Invalid(#[from] KeyError),
    #[error("{0:?} has no valid host")]
    NoHost(String),
    #[error("no site serves host {0}")]
    NoSite(String),
    /// The URL's rule keys by a rewritten path, and the rewrite failed.
    #[error("{0}")]
    Rewrite(String),
    #[error("{url:?}")]
    Path {
        url: String,
        #[source]
        source: PathError,
    },
}

/// Why a prefix (or host) cannot be purged as given.
#[derive(Debug, thiserror::Error)]
pub enum PrefixError {
    #[error("{0:?}: prefixes name a host and path without a scheme")]
    Scheme(String),
    #[error("{0:?} does not start with a host")]
    NoHost(String),
    #[error("{text:?}")]
    Path {
        text: String,
        #[source]
        source: PathError,
    },
}

/// Why a purge request is refused as a whole (nothing of it applies).
#[derive(Debug, thiserror::Error)]
pub enum PurgeError {
    #[error("{0} is empty")]
    Empty(&'static str),
    #[error("everything must be true when given")]
    EverythingFalse,
    #[error("name what to purge: urls, prefixes, hosts, tags or everything")]
    Nothing,
    #[error(transparent)]
    Url(#[from] UrlError),
    #[error(transparent)]
    Prefix(#[from] PrefixError),
    #[error("{0:?} is not a host name")]
    NotAHost(String),
    #[error("within_hosts limits a tag purge: name tags too")]
    WithinWithoutTags,
}

/// Why a scoped token may not make a purge.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ScopeError {
    #[error("this token may not purge everything")]
    Everything,
    #[error("this token may not purge tags on host {0:?}")]
    TagsOn(String),
    #[error("this token may not purge host {0:?}")]
    Host(String),
}

/// An error and its causes on one line: `a: b: c`.
pub(crate) fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
