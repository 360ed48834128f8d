//! What `outpost check` verifies beyond the file itself, and the pieces a
//! generation builds from the same checks: each listener's TLS acceptor.

use std::sync::Arc;

use outpost_config::{ErrorList, Loaded};

use crate::front::tls;
use crate::origin::error::Chain;
use crate::origin::server;

/// What `outpost check` verifies beyond the file itself: every listener
/// certificate, every origin pool's TLS files and every error page load,
/// as at start.
pub fn check(loaded: &Loaded) -> Result<(), ErrorList> {
    crate::proxy::router::Router::new(loaded)?;
    acceptors(loaded)?;
    for (name, pool) in &loaded.config.origins {
        server::check_tls(pool, &loaded.base_dir)
            .map_err(|e| single_error(loaded, format!("origins.{name}: {}", Chain(&e))))?;
    }
    Ok(())
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

pub(crate) fn single_error(loaded: &Loaded, message: String) -> ErrorList {
    ErrorList(vec![outpost_config::ConfigError {
        file: loaded.file.clone(),
        line: 0,
        column: 0,
        path: String::new(),
        message,
    }])
}
