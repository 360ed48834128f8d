//! Outpost's configuration: the YAML model, its defaults, and validation
//! whose every error names `FILE:LINE:COL`, the key path and what is wrong.

pub mod actions;
mod load;
mod locate;
pub mod media;
mod model;
pub mod template;
mod units;

pub use load::{ConfigError, ErrorList, Loaded, load_file, load_str};
pub use model::*;
pub use units::{Size, Span};

pub use serde_saphyr::Spanned;

/// Parsed URL of an origin server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerUrl {
    pub tls: bool,
    pub host: String,
    pub port: u16,
}

impl ServerUrl {
    /// Parses `http://host[:port]` or `https://host[:port]` (a trailing `/` allowed).
    pub fn parse(text: &str) -> Result<ServerUrl, String> {
        let uri: http::Uri = text
            .parse()
            .map_err(|e| format!("{text:?} is not a URL: {e}"))?;
        let tls = match uri.scheme_str() {
            Some("http") => false,
            Some("https") => true,
            Some(other) => {
                return Err(format!(
                    "scheme {other:?} is not supported (use http or https)"
                ));
            }
            None => return Err(format!("{text:?} has no scheme (write http://{text})")),
        };
        let authority = uri
            .authority()
            .ok_or_else(|| format!("{text:?} has no host"))?;
        if authority.as_str().contains('@') {
            return Err("credentials in an origin URL are not supported".into());
        }
        if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
            return Err(format!(
                "{text:?} has a path or query; an origin URL is scheme, host and port only"
            ));
        }
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']');
        if host.is_empty() {
            return Err(format!("{text:?} has no host"));
        }
        let port = authority.port_u16().unwrap_or(if tls { 443 } else { 80 });
        Ok(ServerUrl {
            tls,
            host: host.to_ascii_lowercase(),
            port,
        })
    }
}
