//! What `outpost check` verifies beyond the file itself, and the pieces a
//! generation builds from the same checks: each listener's TLS acceptor;
//! and the origin host names that do not resolve, which `check` warns of.

use std::sync::Arc;

use outpost_config::{ConfigError, ErrorList, Loaded, ServerUrl};

use crate::front::tls;
use crate::origin::error::Chain;
use crate::origin::{resolve, server};

/// What `outpost check` verifies beyond the file itself: every listener
/// certificate, every origin pool's TLS files and every error page load,
/// as at start.
pub fn check(loaded: &Loaded) -> Result<(), ErrorList> {
    // Every problem found, not only the first.
    let mut errors = Vec::new();
    if let Err(ErrorList(found)) = crate::proxy::router::Router::new(loaded) {
        errors.extend(found);
    }
    if let Err(ErrorList(found)) = acceptors(loaded) {
        errors.extend(found);
    }
    for (name, pool) in &loaded.config.origins {
        if let Err(e) = server::check_tls(pool, &loaded.base_dir) {
            errors.push(loaded.error(format!("origins.{name}.tls"), Chain(&e).to_string()));
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        errors.sort_by_key(|e| (e.line, e.column));
        Err(ErrorList(errors))
    }
}

/// Longest `outpost check` waits for one origin host name to resolve.
const RESOLVE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Origin servers whose host names do not resolve now, one error each,
/// all resolved at once: `outpost check` prints them as warnings. `outpost
/// run` refuses to start with them: its pools resolve every name at start
/// and report a failure with [`unresolved_error`] too.
pub async fn unresolved(loaded: &Loaded) -> Vec<ConfigError> {
    let lookups = loaded.config.origins.iter().flat_map(|(name, pool)| {
        pool.servers
            .iter()
            .enumerate()
            .filter_map(move |(i, server)| {
                // A URL that does not parse is an error the file's check reports.
                let url = ServerUrl::parse(&server.url.value).ok()?;
                Some(async move {
                    let outcome = tokio::time::timeout(
                        RESOLVE_TIMEOUT,
                        resolve::resolve(&url.host, url.port),
                    )
                    .await;
                    let why = match outcome {
                        Ok(Ok(_)) => return None,
                        Ok(Err(e)) => e.to_string(),
                        Err(_) => format!("no answer within {RESOLVE_TIMEOUT:?}"),
                    };
                    Some(unresolved_error(loaded, name, i, &url.host, &why))
                })
            })
    });
    futures_util::future::join_all(lookups)
        .await
        .into_iter()
        .flatten()
        .collect()
}

/// The error for server `index` of the pool `pool`, whose host name does
/// not resolve (`why`), placed at its URL.
pub(crate) fn unresolved_error(
    loaded: &Loaded,
    pool: &str,
    index: usize,
    host: &str,
    why: &str,
) -> ConfigError {
    let path = format!("origins.{pool}.servers[{index}].url");
    let message = format!("host {host} does not resolve ({why})");
    match loaded
        .config
        .origins
        .get(pool)
        .and_then(|p| p.servers.get(index))
    {
        Some(server) => loaded.error_at(server.url.referenced, path, message),
        None => loaded.error(path, message),
    }
}

/// The TLS acceptor of each listener (None for plain ones), in config order.
pub(crate) fn acceptors(loaded: &Loaded) -> Result<Vec<Option<Arc<tls::Tls>>>, ErrorList> {
    let mut acceptors = Vec::new();
    for (i, listener) in loaded.config.listen.iter().enumerate() {
        let Some(tls) = &listener.value.tls else {
            acceptors.push(None);
            continue;
        };
        let files: Vec<tls::CertFiles> = tls
            .certificates
            .iter()
            .map(|c| tls::CertFiles {
                cert: loaded.resolve(&c.value.cert),
                key: loaded.resolve(&c.value.key),
                hosts: c.value.hosts.clone().unwrap_or_default(),
            })
            .collect();
        let acceptor = tls::acceptor(&files).map_err(|e| {
            let at = tls
                .certificates
                .first()
                .map_or(listener.referenced, |c| c.referenced);
            ErrorList(vec![loaded.error_at(
                at,
                format!("listen[{i}].tls.certificates"),
                e.to_string(),
            )])
        })?;
        acceptors.push(Some(Arc::new(acceptor)));
    }
    Ok(acceptors)
}

/// One error about the value at the key `path`, placed in the file.
pub(crate) fn single_error(loaded: &Loaded, path: &str, message: String) -> ErrorList {
    ErrorList(vec![loaded.error(path, message)])
}
