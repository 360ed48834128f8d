//! Reading a config file: YAML parsing with key paths, then the checks that
//! serde cannot express (references between sections, regexes, duplicates).

use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde_saphyr::{Location, Spanned};

use crate::ServerUrl;
use crate::actions;
use crate::model::{Cluster, Config};

/// One problem in a config file, located at `file:line:col`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: String,
    pub line: u32,
    pub column: u32,
    /// Key path such as `sites[0].origin`; empty for the document itself.
    pub path: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A file that cannot be read has no place in it to name.
        if self.line == 0 {
            write!(f, "{}: ", self.file)?;
        } else {
            write!(f, "{}:{}:{}: ", self.file, self.line, self.column)?;
        }
        if !self.path.is_empty() {
            write!(f, "{}: ", self.path)?;
        }
        f.write_str(&self.message)
    }
}

/// Every problem found in one file, in file order.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ErrorList(pub Vec<ConfigError>);

impl fmt::Display for ErrorList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

/// A validated config and where it came from.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub config: Config,
    /// The name used in error messages.
    pub file: String,
    /// The file's text, to place errors found after loading.
    pub text: std::sync::Arc<str>,
    /// Relative paths in the file are resolved against this directory.
    pub base_dir: PathBuf,
}

impl Loaded {
    /// An error about the value at the key `path` (`origins.app`), placed
    /// at its line and column in the file.
    pub fn error(&self, path: impl Into<String>, message: impl Into<String>) -> ConfigError {
        let path = path.into();
        let (line, column) = crate::locate::locate(&self.text, &path);
        ConfigError {
            file: self.file.clone(),
            line,
            column,
            path,
            message: message.into(),
        }
    }

    /// Resolves a path from the file against its directory.
    pub fn resolve(&self, path: &Path) -> PathBuf {
        self.base_dir.join(path)
    }

    /// An error at a location the config recorded, for checks done later
    /// (certificates are read by the edge, for one).
    pub fn error_at(
        &self,
        at: Location,
        path: impl Into<String>,
        message: impl Into<String>,
    ) -> ConfigError {
        error_at(&self.file, at, path.into(), message.into())
    }
}

/// Reads and validates the file at `path`.
pub fn load_file(path: &Path) -> Result<Loaded, ErrorList> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| {
        ErrorList(vec![ConfigError {
            file: file.clone(),
            line: 0,
            column: 0,
            path: String::new(),
            message: format!("cannot read the file: {e}"),
        }])
    })?;
    let base_dir = path
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    load_str(&text, &file, &base_dir)
}

/// Parses and validates YAML text; `file` names it in errors.
pub fn load_str(text: &str, file: &str, base_dir: &Path) -> Result<Loaded, ErrorList> {
    let config = parse(text, file)?;
    let mut errors = validate(&config, file);
    if !errors.is_empty() {
        // What the checks could not place (a value without a position of
        // its own, or a default) is placed by its key path.
        for error in errors.iter_mut().filter(|e| e.line == 0) {
            (error.line, error.column) = crate::locate::locate(text, &error.path);
        }
        return Err(ErrorList(errors));
    }
    Ok(Loaded {
        config,
        file: file.to_owned(),
        text: text.into(),
        base_dir: base_dir.to_path_buf(),
    })
}

/// The smallest slice a rule may set: smaller ones cost a request each
/// for little.
const MIN_SLICE: u64 = 64 << 10;

fn parse(text: &str, file: &str) -> Result<Config, ErrorList> {
    let key_path = RefCell::new(String::new());
    let options = serde_saphyr::options! { with_snippet: false };
    let result = serde_saphyr::with_deserializer_from_str_with_options(text, options, |de| {
        serde_path_to_error::deserialize(de).map_err(|e| {
            *key_path.borrow_mut() = e.path().to_string();
            e.into_inner()
        })
    });
    result.map_err(|e| {
        let at = e.location().unwrap_or(Location::UNKNOWN);
        let path = key_path.into_inner();
        let path = if path == "." { String::new() } else { path };
        // A list item kept with its position (`Spanned`) adds a `value`
        // step that is not in the file.
        let path = path.replace("].value", "]");
        let mut error = error_at(file, at, path, plain_message(&e));
        if error.line == 0 {
            (error.line, error.column) = crate::locate::locate(text, &error.path);
        }
        ErrorList(vec![error])
    })
}

/// The error's own words, without the position the parser appends (we print
/// our own `file:line:col` in front).
fn plain_message(e: &serde_saphyr::Error) -> String {
    let text = e.to_string();
    let first = text.lines().next().unwrap_or_default().trim();
    let cut = first
        .find(" at line ")
        .map(|i| &first[..i])
        .unwrap_or(first);
    let cut = cut.strip_prefix("error: ").unwrap_or(cut);
    cut.trim().to_owned()
}

fn error_at(file: &str, at: Location, path: String, message: String) -> ConfigError {
    ConfigError {
        file: file.to_owned(),
        line: at.line() as u32,
        column: at.column() as u32,
        path,
        message,
    }
}

fn validate(config: &Config, file: &str) -> Vec<ConfigError> {
    let mut errors = Vec::new();
    let mut err = |at: Location, path: String, message: String| {
        errors.push(error_at(file, at, path, message))
    };

    if config.listen.is_empty() {
        err(
            Location::UNKNOWN,
            "listen".into(),
            "at least one listener is needed".into(),
        );
    }
    if config.limits.max_connections == 0 {
        err(
            Location::UNKNOWN,
            "limits.max_connections".into(),
            "must be at least 1".into(),
        );
    }
    let budget = config.admin.purge_budget;
    for (name, value) in [("burst", budget.burst), ("per_second", budget.per_second)] {
        if value == 0 {
            err(
                Location::UNKNOWN,
                format!("admin.purge_budget.{name}"),
                "must be at least 1".into(),
            );
        }
    }
    let mut seen_addrs = HashMap::new();
    for (i, listener) in config.listen.iter().enumerate() {
        if let Some(first) = seen_addrs.insert(listener.value.addr, i)
            && listener.value.addr.port() != 0
        {
            err(
                listener.referenced,
                format!("listen[{i}].addr"),
                format!("{} is already used by listen[{first}]", listener.value.addr),
            );
        }
        if let Some(tls) = &listener.value.tls
            && tls.certificates.is_empty()
        {
            err(
                listener.referenced,
                format!("listen[{i}].tls.certificates"),
                "a TLS listener needs at least one certificate".into(),
            );
        }
        if let Some(quic) = listener.value.quic() {
            validate_quic(i, listener, quic, &mut err);
        }
    }

    for (i, network) in config.admin.access.networks.iter().enumerate() {
        if crate::model::parse_network(&network.value).is_none() {
            err(
                network.referenced,
                format!("admin.access.networks[{i}]"),
                format!(
                    "{:?} is not a network (10.0.0.0/8, fd00::/8) or an address",
                    network.value
                ),
            );
        }
    }
    if config
        .admin
        .access
        .read_token_env
        .as_ref()
        .is_some_and(|v| v.trim().is_empty())
    {
        err(
            Location::UNKNOWN,
            "admin.access.read_token_env".into(),
            "name an environment variable".into(),
        );
    }
    for (i, token) in config.admin.scoped_tokens.iter().enumerate() {
        if token.hosts.is_empty() {
            err(
                Location::UNKNOWN,
                format!("admin.scoped_tokens[{i}].hosts"),
                "a scoped token needs at least one host".into(),
            );
        }
        for (j, host) in token.hosts.iter().enumerate() {
            if host == "*" || check_host_pattern(host).is_err() {
                err(
                    Location::UNKNOWN,
                    format!("admin.scoped_tokens[{i}].hosts[{j}]"),
                    format!("{host:?} is not a host name or *.domain"),
                );
            }
        }
    }
    let cache = &config.cache;
    if cache.memory.bytes() == 0 {
        err(
            Location::UNKNOWN,
            "cache.memory".into(),
            "must be more than 0 bytes".into(),
        );
    }
    if cache.max_object_size.bytes() == 0 {
        err(
            Location::UNKNOWN,
            "cache.max_object_size".into(),
            "must be more than 0 bytes".into(),
        );
    }
    for (i, name) in cache.tag_headers.iter().enumerate() {
        if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
            err(
                Location::UNKNOWN,
                format!("cache.tag_headers[{i}]"),
                format!("{name:?} is not a header name"),
            );
        }
    }
    for (i, name) in cache.targeted_fields.iter().enumerate() {
        let header = http::HeaderName::from_bytes(name.as_bytes());
        if header.is_err() || name.eq_ignore_ascii_case("cache-control") {
            err(
                Location::UNKNOWN,
                format!("cache.targeted_fields[{i}]"),
                format!("{name:?} is not a targeted field name"),
            );
        }
    }
    if !(0.0..=1.0).contains(&cache.heuristic_fraction) {
        err(
            Location::UNKNOWN,
            "cache.heuristic_fraction".into(),
            "must be between 0 and 1".into(),
        );
    }

    for (name, pool) in &config.origins {
        if pool.servers.is_empty() {
            err(
                Location::UNKNOWN,
                format!("origins.{name}.servers"),
                "an origin pool needs at least one server".into(),
            );
        }
        for (j, server) in pool.servers.iter().enumerate() {
            if let Err(message) = ServerUrl::parse(&server.url.value) {
                err(
                    server.url.referenced,
                    format!("origins.{name}.servers[{j}].url"),
                    message,
                );
            }
            if server.weight == 0 {
                err(
                    server.url.referenced,
                    format!("origins.{name}.servers[{j}].weight"),
                    "must be at least 1".into(),
                );
            }
        }
        let at_pool = pool
            .servers
            .first()
            .map_or(Location::UNKNOWN, |s| s.url.referenced);
        if pool.tls.client_cert.is_some() != pool.tls.client_key.is_some() {
            err(
                at_pool,
                format!("origins.{name}.tls"),
                "client_cert and client_key go together".into(),
            );
        }
        if let Some(host) = &pool.host
            && (http::HeaderValue::from_str(host).is_err()
                || host.is_empty()
                || host.contains(char::is_whitespace))
        {
            err(
                at_pool,
                format!("origins.{name}.host"),
                format!("{host:?} is not a valid Host value"),
            );
        }
        if pool.max_connections_per_server == 0 {
            err(
                at_pool,
                format!("origins.{name}.max_connections_per_server"),
                "must be at least 1".into(),
            );
        }
        for (key, span) in [
            ("connect", Some(pool.timeouts.connect)),
            ("response_header", Some(pool.timeouts.response_header)),
            ("idle", Some(pool.timeouts.idle)),
            ("total", pool.timeouts.total),
        ] {
            if span.is_some_and(|s| s.get().is_zero()) {
                err(
                    at_pool,
                    format!("origins.{name}.timeouts.{key}"),
                    "must be more than 0".into(),
                );
            }
        }
        if pool.resolve_interval.get() < std::time::Duration::from_secs(1) {
            err(
                at_pool,
                format!("origins.{name}.resolve_interval"),
                "must be at least 1s".into(),
            );
        }
        if pool.eject.cooldown > pool.eject.max_cooldown {
            err(
                at_pool,
                format!("origins.{name}.eject.cooldown"),
                format!(
                    "{} is longer than max_cooldown {}",
                    pool.eject.cooldown, pool.eject.max_cooldown
                ),
            );
        }
        if let Some(check) = &pool.health_check {
            if !check.path.starts_with('/') {
                err(
                    Location::UNKNOWN,
                    format!("origins.{name}.health_check.path"),
                    format!("{:?} must start with /", check.path),
                );
            }
            if check.interval.get() < std::time::Duration::from_millis(10)
                || check.timeout.get().is_zero()
            {
                err(
                    at_pool,
                    format!("origins.{name}.health_check"),
                    "interval must be at least 10ms and timeout more than 0".into(),
                );
            }
            if !(100..=599).contains(&check.expect_status) {
                err(
                    at_pool,
                    format!("origins.{name}.health_check.expect_status"),
                    format!("{} is not an HTTP status code", check.expect_status),
                );
            }
            if check.rise == 0 || check.fall == 0 {
                err(
                    Location::UNKNOWN,
                    format!("origins.{name}.health_check"),
                    "rise and fall must be at least 1".into(),
                );
            }
        }
    }

    if config.sites.is_empty() {
        err(
            Location::UNKNOWN,
            "sites".into(),
            "at least one site is needed".into(),
        );
    }
    let mut seen_hosts: HashMap<String, usize> = HashMap::new();
    for (i, site) in config.sites.iter().enumerate() {
        if site.hosts.is_empty() {
            err(
                site.origin.referenced,
                format!("sites[{i}].hosts"),
                "a site needs at least one host".into(),
            );
        }
        for (j, host) in site.hosts.iter().enumerate() {
            let path = format!("sites[{i}].hosts[{j}]");
            match check_host_pattern(&host.value) {
                Err(message) => err(host.referenced, path, message),
                Ok(()) => {
                    if let Some(first) = seen_hosts.insert(host.value.to_ascii_lowercase(), i) {
                        err(
                            host.referenced,
                            path,
                            format!("{:?} is already served by sites[{first}]", host.value),
                        );
                    }
                }
            }
        }
        if !config.origins.contains_key(&site.origin.value) {
            let known: Vec<&str> = config.origins.keys().map(String::as_str).collect();
            err(
                site.origin.referenced,
                format!("sites[{i}].origin"),
                format!(
                    "no origin named {:?} (known: {})",
                    site.origin.value,
                    if known.is_empty() {
                        "none".into()
                    } else {
                        known.join(", ")
                    }
                ),
            );
        }
        if let Some(hsts) = &site.hsts {
            actions::check_hsts(hsts, &format!("sites[{i}].hsts"), &mut err);
        }
        actions::check_error_pages(
            &site.error_pages,
            &format!("sites[{i}].error_pages"),
            &mut err,
        );
        for (h, name) in site.pass_headers.iter().enumerate() {
            if !crate::UNKEYED_HEADERS.contains(&name.value.to_ascii_lowercase().as_str()) {
                err(
                    name.referenced,
                    format!("sites[{i}].pass_headers[{h}]"),
                    format!(
                        "{:?} is not stripped, so it needs no passing; these are: {}",
                        name.value,
                        crate::UNKEYED_HEADERS.join(", ")
                    ),
                );
            }
        }
        for (k, rule) in site.rules.iter().enumerate() {
            if let Some(regex) = &rule.matcher.path_regex
                && let Err(e) = regex::Regex::new(&regex.value)
            {
                let first_line = e
                    .to_string()
                    .lines()
                    .last()
                    .unwrap_or_default()
                    .trim()
                    .to_owned();
                err(
                    regex.referenced,
                    format!("sites[{i}].rules[{k}].match.path_regex"),
                    format!("invalid regular expression: {first_line}"),
                );
            }
            for (h, name) in rule.key.headers.iter().enumerate() {
                if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
                    err(
                        site.origin.referenced,
                        format!("sites[{i}].rules[{k}].key.headers[{h}]"),
                        format!("{name:?} is not a header name"),
                    );
                }
            }
            for (c, name) in rule.key.cookies.iter().enumerate() {
                if name.is_empty() || name.contains([';', '=', ' ', ',']) {
                    err(
                        site.origin.referenced,
                        format!("sites[{i}].rules[{k}].key.cookies[{c}]"),
                        format!("{name:?} is not a cookie name"),
                    );
                }
            }
            for code in rule.ttl_by_status.keys() {
                if !(100..=599).contains(code) {
                    err(
                        site.origin.referenced,
                        format!("sites[{i}].rules[{k}].ttl_by_status"),
                        format!("{code} is not an HTTP status code"),
                    );
                }
            }
            let sets_ttl =
                rule.ttl.is_some() || rule.default_ttl.is_some() || !rule.ttl_by_status.is_empty();
            if rule.check_content_type && sets_ttl {
                for (e, extension) in rule.matcher.extensions.iter().flatten().enumerate() {
                    if !crate::media::is_known(extension) {
                        err(
                            site.origin.referenced,
                            format!("sites[{i}].rules[{k}].match.extensions[{e}]"),
                            format!(
                                "{extension:?} has no known media type, so a response's Content-Type cannot be checked against it; set check_content_type: false to apply the ttl to whatever the origin sends"
                            ),
                        );
                    }
                }
            }
            let at = format!("sites[{i}].rules[{k}]");
            if let Some(slice) = rule.slice {
                let max = config.cache.max_object_size.bytes();
                if !(MIN_SLICE..=max).contains(&slice.bytes()) {
                    err(
                        Location::UNKNOWN,
                        format!("{at}.slice"),
                        format!("must be from 64KiB to cache.max_object_size ({max} bytes)"),
                    );
                }
            }
            if let Some(redirect) = &rule.redirect {
                actions::check_redirect(redirect, &format!("{at}.redirect"), &mut err);
                if rule.rewrite.is_some() {
                    err(
                        redirect.referenced,
                        format!("{at}.redirect"),
                        "a rule that redirects does not also rewrite".into(),
                    );
                }
            }
            if let Some(rewrite) = &rule.rewrite {
                actions::check_rewrite(
                    rewrite,
                    rule.matcher.path_prefix.as_deref(),
                    &format!("{at}.rewrite"),
                    &mut err,
                );
            }
            if let Some(h) = &rule.request_headers {
                actions::check_header_lists(
                    h.referenced,
                    &format!("{at}.request_headers"),
                    [("set", &h.value.set), ("add", &h.value.add)],
                    &h.value.remove,
                    actions::REQUEST_FIXED,
                    &mut err,
                );
            }
            if let Some(h) = &rule.response_headers {
                actions::check_header_lists(
                    h.referenced,
                    &format!("{at}.response_headers"),
                    [("set", &h.value.set), ("add", &h.value.add)],
                    &h.value.remove,
                    actions::RESPONSE_FIXED,
                    &mut err,
                );
            }
            if let Some(prefix) = &rule.matcher.path_prefix
                && !prefix.starts_with('/')
            {
                err(
                    Location::UNKNOWN,
                    format!("sites[{i}].rules[{k}].match.path_prefix"),
                    format!("{prefix:?} must start with /"),
                );
            }
        }
    }
    actions::check_error_pages(&config.error_pages, "error_pages", &mut err);
    if let Some(log) = &config.access_log {
        let at = log.referenced;
        let log = &log.value;
        if log.path.trim().is_empty() {
            err(at, "access_log.path".into(), "name stdout or a file".into());
        }
        if !(0.0..=1.0).contains(&log.sample) {
            err(
                at,
                "access_log.sample".into(),
                format!("{} is not a share of requests from 0 to 1", log.sample),
            );
        }
        if log.fields.as_ref().is_some_and(Vec::is_empty) {
            err(
                at,
                "access_log.fields".into(),
                "name at least one field, or leave fields out for the default set".into(),
            );
        }
    }
    let compression = &config.compression;
    for (i, pattern) in compression.types.iter().enumerate() {
        let valid = pattern.split_once('/').is_some_and(|(kind, sub)| {
            !kind.is_empty()
                && !sub.is_empty()
                && kind != "*"
                && http::HeaderValue::from_str(pattern).is_ok()
                && !pattern.contains([';', ' ', ','])
        });
        if !valid {
            err(
                Location::UNKNOWN,
                format!("compression.types[{i}]"),
                format!("{pattern:?} is not a media type or type/*"),
            );
        }
    }
    if compression.enabled && compression.encodings.is_empty() {
        err(
            Location::UNKNOWN,
            "compression.encodings".into(),
            "name at least one encoding, or set enabled: false".into(),
        );
    }
    let levels = compression.levels;
    for (name, level, range) in [
        ("br", levels.br, 0..=11),
        ("zstd", levels.zstd, 1..=19),
        ("gzip", levels.gzip, 1..=9),
    ] {
        if !range.contains(&level) {
            err(
                Location::UNKNOWN,
                format!("compression.levels.{name}"),
                format!("{level} is outside {}..={}", range.start(), range.end()),
            );
        }
    }
    if let Some(cluster) = &config.cluster {
        validate_cluster(cluster, &mut err);
    }
    for (i, site) in config.sites.iter().enumerate() {
        let peer = config.cluster.as_ref().and_then(|c| c.peer_addr);
        if site.shield && peer.is_none() {
            err(
                site.origin.referenced,
                format!("sites[{i}].shield"),
                "the shield tier needs cluster.peer_addr (where members reach this node)".into(),
            );
        }
    }
    errors.sort_by_key(|e| (e.line, e.column));
    errors
}

/// The `cluster:` section: names that become NATS subjects and keys must
/// be single tokens, and something must be there to connect to.
/// QUIC needs TLS (its handshake is TLS 1.3) and limits that let a
/// connection work at all.
fn validate_quic(
    i: usize,
    listener: &Spanned<crate::model::Listener>,
    quic: &crate::model::Quic,
    err: &mut impl FnMut(Location, String, String),
) {
    let at = listener.referenced;
    if listener.value.tls.is_none() {
        err(
            at,
            format!("listen[{i}].quic"),
            "HTTP/3 needs TLS: give this listener `tls` or remove `quic`".into(),
        );
    }
    if !(1..=10_000).contains(&quic.max_streams) {
        err(
            at,
            format!("listen[{i}].quic.max_streams"),
            format!("{} is outside 1..=10000", quic.max_streams),
        );
    }
    for (name, size, least) in [
        ("max_header_list", quic.max_header_list, 4 * 1024),
        ("stream_window", quic.stream_window, 16 * 1024),
        ("connection_window", quic.connection_window, 16 * 1024),
    ] {
        if size.bytes() < least {
            err(
                at,
                format!("listen[{i}].quic.{name}"),
                format!("must be at least {least} bytes"),
            );
        }
    }
    if quic.connection_window.bytes() < quic.stream_window.bytes() {
        err(
            at,
            format!("listen[{i}].quic.connection_window"),
            "must be at least stream_window".into(),
        );
    }
    for (name, span) in [
        ("idle_timeout", quic.idle_timeout),
        ("body_timeout", quic.body_timeout),
    ] {
        if span.get().is_zero() {
            err(
                at,
                format!("listen[{i}].quic.{name}"),
                "must be more than 0".into(),
            );
        }
    }
    if !(1..=3).contains(&quic.amplification_factor) {
        err(
            at,
            format!("listen[{i}].quic.amplification_factor"),
            format!(
                "{} is outside 1..=3 (RFC 9000 §8.1 allows at most 3)",
                quic.amplification_factor
            ),
        );
    }
}

fn validate_cluster(cluster: &Cluster, err: &mut impl FnMut(Location, String, String)) {
    let token = |name: &str| {
        !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    };
    if !token(&cluster.node.value) {
        err(
            cluster.node.referenced,
            "cluster.node".into(),
            format!(
                "{:?} is not a node name (letters, digits, - and _)",
                cluster.node.value
            ),
        );
    }
    if cluster.nats.servers.is_empty() {
        err(
            Location::UNKNOWN,
            "cluster.nats.servers".into(),
            "at least one NATS server is needed".into(),
        );
    }
    for (i, server) in cluster.nats.servers.iter().enumerate() {
        let url = server.value.as_str();
        let scheme_ok = ["nats://", "tls://"].iter().any(|s| url.starts_with(s));
        let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
        if !scheme_ok || rest.is_empty() || rest.contains('/') {
            err(
                server.referenced,
                format!("cluster.nats.servers[{i}]"),
                format!("{url:?} is not a NATS server URL (nats://host:port or tls://host:port)"),
            );
        }
    }
    if cluster.nats.user.is_some() != cluster.nats.password_env.is_some() {
        err(
            Location::UNKNOWN,
            "cluster.nats.user".into(),
            "user and password_env go together".into(),
        );
    }
    for (key, name) in [
        ("cluster.fleet", &cluster.fleet),
        ("cluster.stream", &cluster.stream),
        ("cluster.members_bucket", &cluster.members_bucket),
        ("cluster.applied_bucket", &cluster.applied_bucket),
    ] {
        if !token(name) {
            err(
                Location::UNKNOWN,
                key.into(),
                format!("{name:?} is not a stream or bucket name (letters, digits, - and _)"),
            );
        }
    }
    let subject = &cluster.subject;
    if subject.is_empty()
        || subject
            .split('.')
            .any(|t| t.is_empty() || t.contains(['*', '>', ' ']))
    {
        err(
            Location::UNKNOWN,
            "cluster.subject".into(),
            format!("{subject:?} is not a NATS subject without wildcards"),
        );
    }
    for (key, span) in [
        ("cluster.heartbeat", &cluster.heartbeat),
        ("cluster.retention", &cluster.retention),
        ("cluster.max_lag", &cluster.max_lag),
    ] {
        if span.get().is_zero() {
            err(Location::UNKNOWN, key.into(), "must be more than 0".into());
        }
    }
}

/// A host pattern is `*`, `*.example.com` or a plain name, without port.
fn check_host_pattern(host: &str) -> Result<(), String> {
    if host == "*" {
        return Ok(());
    }
    let name = host.strip_prefix("*.").unwrap_or(host);
    let valid = !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        });
    if valid {
        Ok(())
    } else {
        Err(format!(
            "{host:?} is not a host name (write example.com, *.example.com or \"*\")"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::LagPolicy;

    const GOOD: &str = "\
listen:
  - addr: 127.0.0.1:8080
origins:
  app:
    servers:
      - url: http://127.0.0.1:9000
sites:
  - hosts: [example.com]
    origin: app
    rules:
      - match: { path_prefix: /static/ }
        ttl: 1d
        key: { query: ignore }
      - match: { path_prefix: /api/ }
        cache: bypass
";

    fn load(text: &str) -> Result<Loaded, ErrorList> {
        load_str(text, "test.yaml", Path::new("/etc/outpost"))
    }

    #[test]
    fn a_good_file_loads_with_defaults() {
        let loaded = load(GOOD).expect("valid");
        let config = &loaded.config;
        assert_eq!(config.cache.memory.bytes(), 256 << 20);
        assert_eq!(config.admin.token_env, "OUTPOST_ADMIN_TOKEN");
        assert_eq!(
            config.sites[0].rules[0].ttl.map(|t| t.get().as_secs()),
            Some(86_400)
        );
        assert_eq!(config.origins["app"].retries, 2);
        assert_eq!(
            loaded.resolve(Path::new("certs/a.pem")),
            Path::new("/etc/outpost/certs/a.pem")
        );
    }

    /// `quic: true`, `quic: false` and the mapping of limits; a QUIC
    /// listener without TLS, limits out of range and unknown keys are
    /// errors at their place.
    #[test]
    fn quic_is_a_switch_or_its_limits() {
        let tls =
            "  - addr: 127.0.0.1:8443\n    tls: {certificates: [{cert: a.pem, key: a.key}]}\n";
        let with = |quic: &str| {
            GOOD.replace(
                "  - addr: 127.0.0.1:8080\n",
                &format!("{tls}    quic: {quic}\n"),
            )
        };
        let on = load(&with("true")).expect("valid");
        let quic = on.config.listen[0].value.quic().expect("on");
        assert_eq!(quic.max_streams, 100);
        assert_eq!(quic.idle_timeout.get().as_secs(), 30);
        assert!(quic.retry);
        let off = load(&with("false")).expect("valid");
        assert!(off.config.listen[0].value.quic().is_none());
        let tuned = load(&with(
            "{max_streams: 50, stream_window: 256KiB, alt_svc_max_age: 1h}",
        ))
        .expect("valid");
        let quic = tuned.config.listen[0].value.quic().expect("on");
        assert_eq!(
            (
                quic.max_streams,
                quic.stream_window.bytes(),
                quic.alt_svc_max_age.get().as_secs()
            ),
            (50, 256 << 10, 3600)
        );
        assert_eq!(quic.connection_window.bytes(), 4 << 20);

        let message = load(&with("{max_streams: 0, stream_window: 1KiB}"))
            .unwrap_err()
            .to_string();
        assert!(
            message.contains("listen[0].quic.max_streams: 0 is outside 1..=10000"),
            "{message}"
        );
        assert!(
            message.contains("listen[0].quic.stream_window: must be at least 16384 bytes"),
            "{message}"
        );
        let message = load(&with("{amplification_factor: 4, body_timeout: 0s}"))
            .unwrap_err()
            .to_string();
        assert!(
            message.contains("listen[0].quic.amplification_factor: 4 is outside 1..=3"),
            "{message}"
        );
        assert!(
            message.contains("listen[0].quic.body_timeout: must be more than 0"),
            "{message}"
        );
        let message = load(&with("{max_stream: 5}")).unwrap_err().to_string();
        assert!(
            message.starts_with(
                "test.yaml:4:12: listen[0].quic.max_stream: unknown field `max_stream`"
            ),
            "{message}"
        );
        let plain = GOOD.replace(
            "  - addr: 127.0.0.1:8080\n",
            "  - addr: 127.0.0.1:8080\n    quic: true\n",
        );
        let message = load(&plain).unwrap_err().to_string();
        assert!(
            message.starts_with("test.yaml:2:5: listen[0].quic: HTTP/3 needs TLS"),
            "{message}"
        );
    }

    #[test]
    fn an_unknown_origin_is_named_with_its_position() {
        let text = GOOD.replace("origin: app", "origin: app2");
        let errors = load(&text).unwrap_err();
        assert_eq!(
            errors.to_string(),
            "test.yaml:9:13: sites[0].origin: no origin named \"app2\" (known: app)"
        );
    }

    #[test]
    fn an_unknown_key_is_an_error_with_its_path() {
        let text = GOOD
            .replace("retries_typo", "")
            .replace("    servers:", "    retires: 3\n    servers:");
        let errors = load(&text).unwrap_err();
        let message = errors.to_string();
        assert!(
            message.starts_with("test.yaml:5:5: origins.app.retires: unknown field `retires`"),
            "{message}"
        );
    }

    #[test]
    fn a_bad_duration_is_an_error_with_its_path() {
        let text = GOOD.replace("ttl: 1d", "ttl: 1 fortnight");
        let message = load(&text).unwrap_err().to_string();
        assert!(
            message.starts_with("test.yaml:12:14: sites[0].rules[0].ttl: "),
            "{message}"
        );
        assert!(message.contains("unknown duration unit"), "{message}");
    }

    #[test]
    fn edge_actions_are_checked_with_their_positions() {
        let added = [
            "      - match: { path_prefix: /old/ }",
            "        redirect: { to: \"https://{hostname}/\", status: 200 }",
            "      - match: { path_regex: ^/x }",
            "        rewrite: { path_prefix: /y/ }",
            "        request_headers: { set: { Host: other, \"bad name\": x }, remove: [Content-Length] }",
            "        response_headers: { set: { X-Ok: \"{path\" } }",
            "    hsts: { max_age: 1d, preload: true }",
            "    error_pages: { 302: { file: a.html } }",
            "",
        ];
        let text = GOOD.to_owned() + &added.join("\n");
        let message = load(&text).unwrap_err().to_string();
        for expected in [
            "test.yaml:17:19: sites[0].rules[2].redirect.status: 200 is not a redirect status",
            "sites[0].rules[2].redirect.to: unknown variable {hostname}; known: {scheme}, {host}",
            ":19:18: sites[0].rules[3].rewrite.path_prefix: replacing a prefix needs the rule's match.path_prefix",
            "sites[0].rules[3].request_headers.set.Host: Host is decided by Outpost",
            "sites[0].rules[3].request_headers.set.bad name: \"bad name\" is not a header name",
            "sites[0].rules[3].request_headers.remove[0]: Content-Length is decided by Outpost",
            "sites[0].rules[3].response_headers.set.X-Ok: a { is not closed",
            "sites[0].hsts.preload: the preload list needs max_age of a year",
            "sites[0].error_pages.302: 302 is not an error status",
        ] {
            assert!(message.contains(expected), "{expected}\n---\n{message}");
        }
        assert!(!message.contains(":0:0:"), "{message}");
    }

    /// `access_log` is a path, or a mapping with the fields of each line
    /// and the share of requests logged; a field no line has is an error
    /// at its place.
    #[test]
    fn the_access_log_is_a_path_or_a_mapping() {
        let short = load(&format!("access_log: stdout\n{GOOD}")).expect("valid");
        let log = short.config.access_log.expect("set").value;
        assert_eq!(
            (log.path.as_str(), log.fields, log.sample),
            ("stdout", None, 1.0)
        );
        let long = format!(
            "access_log:\n  path: logs/access.log\n  fields: [time, status, user_agent]\n  sample: 0.25\n{GOOD}"
        );
        let log = load(&long)
            .expect("valid")
            .config
            .access_log
            .expect("set")
            .value;
        assert_eq!(log.path, "logs/access.log");
        assert_eq!(
            log.fields,
            Some(vec![
                crate::LogField::Time,
                crate::LogField::Status,
                crate::LogField::UserAgent
            ])
        );
        assert_eq!(log.sample, 0.25);
        let unknown = format!("access_log:\n  path: a.log\n  fields: [time, colour]\n{GOOD}");
        let message = load(&unknown).unwrap_err().to_string();
        assert!(
            message.contains("test.yaml:3:") && message.contains("colour"),
            "{message}"
        );
        let bad = format!("access_log:\n  path: a.log\n  fields: []\n  sample: 1.5\n{GOOD}");
        let message = load(&bad).unwrap_err().to_string();
        for expected in [
            "access_log.sample: 1.5 is not a share of requests from 0 to 1",
            "access_log.fields: name at least one field",
        ] {
            assert!(message.contains(expected), "{expected}\n---\n{message}");
        }
        assert!(!message.contains(":0:0:"), "{message}");
        // Every field a line may have has its name.
        for (name, field) in crate::LogField::ALL {
            assert_eq!(field.name(), name);
        }
    }

    #[test]
    fn a_regex_rewrite_needs_its_replacement_and_a_redirect_does_not_rewrite() {
        let text = GOOD.replace(
            "        cache: bypass\n",
            "        cache: bypass\n        rewrite: { path_regex: \"^/api/(.*)\" }\n        redirect: { to: /elsewhere }\n",
        );
        let message = load(&text).unwrap_err().to_string();
        assert!(
            message.contains("rewrite.to: path_regex needs `to`"),
            "{message}"
        );
        assert!(
            message.contains("redirect: a rule that redirects does not also rewrite"),
            "{message}"
        );
        let good = GOOD.replace(
            "        cache: bypass\n",
            "        cache: bypass\n        rewrite: { path_regex: \"^/api/(.*)\", to: /v1/$1, key: rewritten }\n        response_headers: { set: { X-Id: \"{request_id}\" }, always: true }\n",
        );
        load(&good).expect("valid");
    }

    #[test]
    fn bad_values_are_all_reported() {
        let text = GOOD
            .replace("http://127.0.0.1:9000", "ftp://127.0.0.1:9000")
            .replace("/static/", "static/")
            .replace("hosts: [example.com]", "hosts: [\"exa mple.com\"]");
        let message = load(&text).unwrap_err().to_string();
        assert!(
            message.contains("origins.app.servers[0].url: scheme \"ftp\" is not supported"),
            "{message}"
        );
        assert!(
            message.contains("sites[0].hosts[0]: \"exa mple.com\" is not a host name"),
            "{message}"
        );
        assert!(
            message.contains("path_prefix: \"static/\" must start with /"),
            "{message}"
        );
    }

    #[test]
    fn a_slice_is_between_64kib_and_the_largest_object() {
        let text = GOOD.replace(
            "{ path_prefix: /static/ }",
            "{ path_prefix: /static/ }\n        slice: 1KiB",
        );
        let message = load(&text).unwrap_err().to_string();
        assert!(
            message
                .contains(": sites[0].rules[0].slice: must be from 64KiB to cache.max_object_size"),
            "{message}"
        );
        assert!(!message.contains(":0:0:"), "placed at its key: {message}");
        let text = GOOD.replace(
            "{ path_prefix: /static/ }",
            "{ path_prefix: /static/ }\n        slice: 1MiB",
        );
        let loaded = load(&text).unwrap();
        let slice = loaded.config.sites[0].rules[0].slice.map(|s| s.bytes());
        assert_eq!(slice, Some(1 << 20));
    }

    #[test]
    fn a_host_served_twice_is_an_error() {
        let text = format!("{GOOD}  - hosts: [EXAMPLE.com]\n    origin: app\n");
        let message = load(&text).unwrap_err().to_string();
        assert!(
            message.contains("sites[1].hosts[0]: \"EXAMPLE.com\" is already served by sites[0]"),
            "{message}"
        );
    }

    #[test]
    fn a_bad_regex_is_an_error() {
        let text = GOOD.replace("path_prefix: /api/", "path_regex: \"(unclosed\"");
        let message = load(&text).unwrap_err().to_string();
        assert!(
            message.contains("sites[0].rules[1].match.path_regex: invalid regular expression"),
            "{message}"
        );
    }

    #[test]
    fn a_ttl_by_an_extension_of_no_known_type_is_an_error_while_checked() {
        let text = GOOD.replace(
            "{ path_prefix: /static/ }",
            "{ path_prefix: /static/, extensions: [css, zzqq] }",
        );
        let message = load(&text).unwrap_err().to_string();
        assert!(
            message.contains(
                "sites[0].rules[0].match.extensions[1]: \"zzqq\" has no known media type"
            ),
            "{message}"
        );
        let unchecked = text.replace("ttl: 1d", "ttl: 1d\n        check_content_type: false");
        assert!(load(&unchecked).is_ok());
    }

    #[test]
    fn only_stripped_headers_may_be_passed() {
        let text = GOOD.replace(
            "    origin: app\n    rules:",
            "    origin: app\n    pass_headers: [X-Forwarded-Port, Accept]\n    rules:",
        );
        let message = load(&text).unwrap_err().to_string();
        assert!(
            message.contains("sites[0].pass_headers[1]: \"Accept\" is not stripped"),
            "{message}"
        );
        assert!(!message.contains("pass_headers[0]"), "{message}");
    }

    #[test]
    fn a_purge_budget_of_nothing_is_an_error() {
        let text = format!("{GOOD}admin:\n  purge_budget: {{ burst: 0 }}\n");
        let message = load(&text).unwrap_err().to_string();
        assert!(
            message.contains("admin.purge_budget.burst: must be at least 1"),
            "{message}"
        );
    }

    #[test]
    fn broken_yaml_is_located() {
        let message = load("listen: [\n").unwrap_err().to_string();
        assert!(message.starts_with("test.yaml:"), "{message}");
        assert!(!message.starts_with("test.yaml:0:0"), "{message}");
    }

    #[test]
    fn a_cluster_is_optional_and_checked() {
        let one = load(GOOD).expect("loads");
        assert!(one.config.cluster.is_none());
        let fleet = format!(
            "{GOOD}cluster:\n  node: edge-a\n  nats:\n    servers: [\"nats://127.0.0.1:4222\"]\n  peer_addr: 127.0.0.1:8080\n"
        );
        let loaded = load(&fleet).expect("loads");
        let cluster = loaded.config.cluster.expect("cluster");
        assert_eq!(cluster.node.value, "edge-a");
        assert_eq!(cluster.lag_policy, LagPolicy::Serve);
        assert_eq!(cluster.stream, "OUTPOST_PURGES");
        let bad = format!(
            "{GOOD}cluster:\n  node: edge a\n  nats:\n    servers: [\"http://x\"]\n  max_lag: 0s\n"
        );
        let errors = load(&bad).expect_err("refused").to_string();
        assert!(errors.contains("cluster.node"), "{errors}");
        assert!(errors.contains("cluster.nats.servers[0]"), "{errors}");
        assert!(errors.contains("cluster.max_lag"), "{errors}");
        let shield_alone = GOOD.replace("    origin: app\n", "    origin: app\n    shield: true\n");
        let errors = load(&shield_alone).expect_err("refused").to_string();
        assert!(errors.contains("sites[0].shield"), "{errors}");
    }

    #[test]
    fn server_urls_parse() {
        assert_eq!(
            ServerUrl::parse("https://Origin.example.net").unwrap(),
            ServerUrl {
                tls: true,
                host: "origin.example.net".into(),
                port: 443
            }
        );
        assert_eq!(
            ServerUrl::parse("http://[::1]:8000/").unwrap(),
            ServerUrl {
                tls: false,
                host: "::1".into(),
                port: 8000
            }
        );
        assert!(ServerUrl::parse("http://a/b").is_err());
        assert!(ServerUrl::parse("example.com").is_err());
    }

    /// Property tests: the example config with lines dropped, swapped or
    /// changed, and any text.
    mod properties {
        use super::*;
        use proptest::collection::vec;
        use proptest::prelude::*;

        const EXAMPLE: &str = include_str!("../examples/demo.yaml");

        fn check(text: &str) -> Result<(), TestCaseError> {
            match load_str(text, "t.yaml", Path::new("/")) {
                Ok(loaded) => {
                    let config = &loaded.config;
                    prop_assert!(!config.listen.is_empty() && !config.sites.is_empty());
                    for site in &config.sites {
                        prop_assert!(config.origins.contains_key(&site.origin.value));
                    }
                }
                Err(errors) => {
                    prop_assert!(!errors.0.is_empty());
                    prop_assert!(errors.0.iter().all(|e| !e.message.is_empty()));
                    prop_assert!(
                        errors
                            .0
                            .windows(2)
                            .all(|p| (p[0].line, p[0].column) <= (p[1].line, p[1].column))
                    );
                }
            }
            Ok(())
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(64))]

            /// A config with some lines changed loads, or is refused with
            /// located errors in file order; nothing panics.
            #[test]
            fn edited_configs_load_or_are_refused(
                edits in vec((any::<usize>(), "[ -~]{0,20}", 0u8..3), 0..4),
            ) {
                let mut lines: Vec<String> = EXAMPLE.lines().map(str::to_owned).collect();
                for (at, text, how) in edits {
                    let at = at % lines.len();
                    match how {
                        0 => lines[at] = text,
                        1 => { lines.remove(at); }
                        _ => lines.insert(at, text),
                    }
                    if lines.is_empty() {
                        lines.push(String::new());
                    }
                }
                check(&lines.join("\n"))?;
            }

            /// Any short text loads or is refused.
            #[test]
            fn any_text_loads_or_is_refused(text in "[ -~\n\t]{0,60}") {
                check(&text)?;
            }
        }
    }
}
