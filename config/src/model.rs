//! The YAML model: every key an operator can write, with its default.
//!
//! Fields that later validation must point at are wrapped in [`Spanned`] so
//! an error can name the line and column they came from.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use serde_saphyr::Spanned;

use crate::actions::{ErrorPages, Hsts, Redirect, RequestHeaders, ResponseHeaders, Rewrite};
use crate::units::{Size, Span};

/// The whole file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub listen: Vec<Spanned<Listener>>,
    #[serde(default)]
    pub admin: Admin,
    #[serde(default)]
    pub cache: CacheSettings,
    #[serde(default)]
    pub origins: BTreeMap<String, OriginPool>,
    pub sites: Vec<Site>,
    /// `stdout`, or a file (relative to the config's directory) that gets
    /// one JSON line per request and is reopened on SIGUSR1; or a mapping
    /// with that `path`, the `fields` each line has and the `sample` of
    /// requests logged. Off when absent.
    pub access_log: Option<Spanned<AccessLog>>,
    /// A Unix socket (path relative to the config's directory) on which the
    /// running process hands its listening sockets to a successor started
    /// with `outpost run --upgrade`, or spawned on SIGUSR2. Off when absent.
    pub upgrade_socket: Option<std::path::PathBuf>,
    /// On SIGTERM or SIGINT, how long requests in flight may take to finish.
    #[serde(default = "Config::default_shutdown_grace")]
    pub shutdown_grace: Span,
    /// Limits on what clients may send and hold.
    #[serde(default)]
    pub limits: Limits,
    /// A fleet of Outposts on NATS JetStream; absent for a node on its own.
    pub cluster: Option<Cluster>,
    /// Bodies of Outpost's own error answers by status, for every site
    /// that names none of its own and for requests no site serves.
    #[serde(default)]
    pub error_pages: ErrorPages,
    /// Compression of what origins send uncompressed.
    #[serde(default)]
    pub compression: Compression,
}

/// The access log: where its lines go, what they say, and of how many
/// requests.
#[derive(Debug, Clone, PartialEq)]
pub struct AccessLog {
    /// `stdout`, or a file relative to the config's directory.
    pub path: String,
    /// The fields of each line, in this order; None: the default set.
    pub fields: Option<Vec<LogField>>,
    /// The share of requests logged, from 0 to 1 (chosen by request id).
    pub sample: f64,
}

/// What an access-log line may say of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogField {
    Time,
    RequestId,
    Client,
    Method,
    Host,
    Path,
    Protocol,
    Tls,
    TlsVersion,
    UserAgent,
    Referer,
    Status,
    CacheStatus,
    Rule,
    Origin,
    OriginMs,
    TtfbMs,
    BytesReceived,
    BytesSent,
    Complete,
    DurationMs,
    Error,
}

impl LogField {
    /// Every field, as written in the config and in each line.
    pub const ALL: [(&'static str, LogField); 22] = [
        ("time", LogField::Time),
        ("request_id", LogField::RequestId),
        ("client", LogField::Client),
        ("method", LogField::Method),
        ("host", LogField::Host),
        ("path", LogField::Path),
        ("protocol", LogField::Protocol),
        ("tls", LogField::Tls),
        ("tls_version", LogField::TlsVersion),
        ("user_agent", LogField::UserAgent),
        ("referer", LogField::Referer),
        ("status", LogField::Status),
        ("cache_status", LogField::CacheStatus),
        ("rule", LogField::Rule),
        ("origin", LogField::Origin),
        ("origin_ms", LogField::OriginMs),
        ("ttfb_ms", LogField::TtfbMs),
        ("bytes_received", LogField::BytesReceived),
        ("bytes_sent", LogField::BytesSent),
        ("complete", LogField::Complete),
        ("duration_ms", LogField::DurationMs),
        ("error", LogField::Error),
    ];

    /// The name a line gives the field.
    pub fn name(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(_, f)| *f == self)
            .map_or("?", |(n, _)| n)
    }
}

/// The mapping form of `access_log`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AccessLogMap {
    path: String,
    fields: Option<Vec<LogField>>,
    #[serde(default = "AccessLog::everyone")]
    sample: f64,
}

impl AccessLog {
    fn everyone() -> f64 {
        1.0
    }
}

impl<'de> Deserialize<'de> for AccessLog {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Either;
        impl<'de> serde::de::Visitor<'de> for Either {
            type Value = AccessLog;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("`stdout`, a file path, or a mapping with path, fields and sample")
            }

            fn visit_str<E: serde::de::Error>(self, path: &str) -> Result<AccessLog, E> {
                Ok(AccessLog {
                    path: path.to_owned(),
                    fields: None,
                    sample: 1.0,
                })
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<AccessLog, A::Error> {
                let map =
                    AccessLogMap::deserialize(serde::de::value::MapAccessDeserializer::new(map))?;
                Ok(AccessLog {
                    path: map.path,
                    fields: map.fields,
                    sample: map.sample,
                })
            }
        }
        deserializer.deserialize_any(Either)
    }
}

/// Responses the origin sent uncompressed are compressed for clients that
/// accept it, once per stored object: the compressed form is stored as a
/// variant of its own.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Compression {
    #[serde(default = "Compression::default_enabled")]
    pub enabled: bool,
    /// The encodings served, in order of preference when a client accepts
    /// several equally.
    #[serde(default = "Compression::default_encodings")]
    pub encodings: Vec<Encoding>,
    /// Media types compressed: `type/subtype`, or `type/*`.
    #[serde(default = "Compression::default_types")]
    pub types: Vec<String>,
    /// Responses whose Content-Length is below this are sent as they are.
    #[serde(default = "Compression::default_min_size")]
    pub min_size: Size,
    #[serde(default)]
    pub levels: Levels,
}

impl Compression {
    fn default_enabled() -> bool {
        true
    }
    fn default_encodings() -> Vec<Encoding> {
        vec![Encoding::Br, Encoding::Zstd, Encoding::Gzip]
    }
    fn default_types() -> Vec<String> {
        [
            "text/*",
            "application/json",
            "application/ld+json",
            "application/manifest+json",
            "application/javascript",
            "application/x-javascript",
            "application/xml",
            "application/rss+xml",
            "application/atom+xml",
            "application/xhtml+xml",
            "image/svg+xml",
        ]
        .map(String::from)
        .to_vec()
    }
    fn default_min_size() -> Size {
        Size(1024)
    }
}

impl Default for Compression {
    fn default() -> Self {
        Self {
            enabled: Self::default_enabled(),
            encodings: Self::default_encodings(),
            types: Self::default_types(),
            min_size: Self::default_min_size(),
            levels: Levels::default(),
        }
    }
}

/// A content coding Outpost compresses with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Encoding {
    Br,
    Zstd,
    Gzip,
}

impl Encoding {
    /// The coding's token in Accept-Encoding and Content-Encoding.
    pub fn token(self) -> &'static str {
        match self {
            Encoding::Br => "br",
            Encoding::Zstd => "zstd",
            Encoding::Gzip => "gzip",
        }
    }
}

/// Compression level of each encoding.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Levels {
    /// 0 to 11.
    #[serde(default = "Levels::default_br")]
    pub br: u32,
    /// 1 to 19.
    #[serde(default = "Levels::default_zstd")]
    pub zstd: u32,
    /// 1 to 9.
    #[serde(default = "Levels::default_gzip")]
    pub gzip: u32,
}

impl Levels {
    fn default_br() -> u32 {
        6
    }
    fn default_zstd() -> u32 {
        6
    }
    fn default_gzip() -> u32 {
        6
    }
}

impl Default for Levels {
    fn default() -> Self {
        Self {
            br: Self::default_br(),
            zstd: Self::default_zstd(),
            gzip: Self::default_gzip(),
        }
    }
}

/// What a client connection may take, whatever the site.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Client connections open at once, over every listener; more are
    /// closed as soon as they are accepted.
    #[serde(default = "Limits::default_max_connections")]
    pub max_connections: usize,
    /// Longest an idle HTTP/1.1 keep-alive connection stays open waiting
    /// for its next request; then it is closed.
    #[serde(default = "Limits::default_header_read_timeout")]
    pub header_read_timeout: Span,
    /// Time for a request head to arrive whole: the first from the
    /// connection's start (the HTTP/2 preface too), later ones from their
    /// first byte. Short, so that a head trickled in (slowloris) holds a
    /// connection slot for little time.
    #[serde(default = "Limits::default_head_timeout")]
    pub head_timeout: Span,
    /// Longest request target (path and query); longer is 414.
    #[serde(default = "Limits::default_max_uri_length")]
    pub max_uri_length: Size,
}

impl Limits {
    fn default_max_connections() -> usize {
        10_000
    }
    fn default_header_read_timeout() -> Span {
        Span(Duration::from_secs(30))
    }
    fn default_head_timeout() -> Span {
        Span(Duration::from_secs(10))
    }
    fn default_max_uri_length() -> Size {
        Size(8 * 1024)
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connections: Self::default_max_connections(),
            header_read_timeout: Self::default_header_read_timeout(),
            head_timeout: Self::default_head_timeout(),
            max_uri_length: Self::default_max_uri_length(),
        }
    }
}

impl Config {
    fn default_shutdown_grace() -> Span {
        Span(Duration::from_secs(30))
    }
}

/// One listening socket: plain text (HTTP/1.1 and h2c) or TLS.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Listener {
    pub addr: SocketAddr,
    pub tls: Option<Tls>,
    /// HTTP/3 on the same port (UDP), TLS listeners only: `true`, or a
    /// mapping of its limits.
    #[serde(default, deserialize_with = "quic_form")]
    pub quic: Option<Quic>,
}

impl Listener {
    /// Its QUIC settings, when it serves HTTP/3.
    pub fn quic(&self) -> Option<&Quic> {
        self.quic.as_ref().filter(|q| q.enabled)
    }
}

/// HTTP/3 over QUIC beside a TLS listener, with its limits. Each has a
/// default safe for a public edge.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Quic {
    /// `quic: false` keeps the mapping in the file but listens on no UDP.
    pub enabled: bool,
    /// Requests (bidirectional streams) a connection may have open at once.
    pub max_streams: u64,
    /// A connection with nothing sent or received this long is closed, and
    /// so is one without a request this long.
    pub idle_timeout: Span,
    /// Largest request header section (SETTINGS_MAX_FIELD_SECTION_SIZE).
    pub max_header_list: Size,
    /// What a client may send on one stream before we read it.
    pub stream_window: Size,
    /// What a client may send on all its streams before we read.
    pub connection_window: Size,
    /// How long clients may remember the `Alt-Svc` advertisement.
    pub alt_svc_max_age: Span,
    /// Check that a new client owns its address with a Retry round trip
    /// before doing the work of a handshake (RFC 9000 §8.1).
    pub retry: bool,
    /// Before a client's address is validated, Outpost sends it at most
    /// this many times what it received (RFC 9000 §8.1 allows up to 3).
    pub amplification_factor: u8,
    /// A request body that brings nothing this long closes its connection
    /// with H3_EXCESSIVE_LOAD: it holds the request open for nothing, or
    /// the client is sending frames that carry no bytes (RFC 9114 §10.5).
    pub body_timeout: Span,
    /// 0-RTT: a returning client may send requests in its first flight.
    /// Early data can be replayed by an attacker, so only safe methods are
    /// served from it (others get 425), and requests forwarded to an
    /// origin say `Early-Data: 1` (RFC 8470).
    pub early_data: bool,
}

impl Default for Quic {
    fn default() -> Self {
        Self {
            enabled: true,
            max_streams: 100,
            idle_timeout: Span(Duration::from_secs(30)),
            max_header_list: Size(64 * 1024),
            stream_window: Size(1024 * 1024),
            connection_window: Size(4 * 1024 * 1024),
            alt_svc_max_age: Span(Duration::from_secs(86_400)),
            retry: true,
            amplification_factor: 3,
            body_timeout: Span(Duration::from_secs(30)),
            early_data: false,
        }
    }
}

/// `quic: true`, `quic: false`, or the mapping of its limits.
fn quic_form<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<Quic>, D::Error> {
    struct Either;
    impl<'de> serde::de::Visitor<'de> for Either {
        type Value = Option<Quic>;

        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("`true`, `false`, or a mapping of QUIC limits")
        }

        fn visit_bool<E: serde::de::Error>(self, on: bool) -> Result<Option<Quic>, E> {
            Ok(Some(Quic {
                enabled: on,
                ..Quic::default()
            }))
        }

        fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<Option<Quic>, A::Error> {
            Quic::deserialize(serde::de::value::MapAccessDeserializer::new(map)).map(Some)
        }
    }
    deserializer.deserialize_any(Either)
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tls {
    pub certificates: Vec<Spanned<Certificate>>,
}

/// A certificate chain and its key, both PEM files. Relative paths are
/// resolved against the directory of the config file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Certificate {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// Host names this certificate is chosen for; the certificate's own
    /// subject alternative names when absent.
    pub hosts: Option<Vec<String>>,
}

/// The side API.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Admin {
    #[serde(default = "Admin::default_addr")]
    pub addr: SocketAddr,
    /// Name of the environment variable holding the bearer token for
    /// `/purge` and `/reload`.
    #[serde(default = "Admin::default_token_env")]
    pub token_env: String,
    /// Further tokens that may purge only the hosts they list.
    #[serde(default)]
    pub scoped_tokens: Vec<ScopedToken>,
    /// The purge work each token may do, in items named.
    #[serde(default)]
    pub purge_budget: PurgeBudget,
    /// Who may read the side API (`/stats`, `/metrics`, `/explain`, the
    /// status page): open to whoever reaches `addr` when absent.
    #[serde(default)]
    pub access: AdminAccess,
}

/// Limits on who reaches the side API beyond its purge tokens.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AdminAccess {
    /// Client networks (`10.0.0.0/8`, `::1/128`, or one address) that may
    /// use the side API at all, `/healthz` and `/readyz` aside; any when empty.
    #[serde(default)]
    pub networks: Vec<Spanned<String>>,
    /// The variable holding a bearer token that the reading routes ask for
    /// (the full admin token also does); none asked when absent.
    pub read_token_env: Option<String>,
}

impl AdminAccess {
    /// The networks, as parsed (the config check refused any that is not).
    pub fn parsed_networks(&self) -> Vec<ipnet::IpNet> {
        self.networks
            .iter()
            .filter_map(|n| parse_network(&n.value))
            .collect()
    }
}

/// A network in CIDR form, or one address (a /32 or /128).
pub fn parse_network(text: &str) -> Option<ipnet::IpNet> {
    let text = text.trim();
    text.parse::<ipnet::IpNet>().ok().or_else(|| {
        text.parse::<std::net::IpAddr>()
            .ok()
            .map(ipnet::IpNet::from)
    })
}

/// How many items (URLs, prefixes, hosts, tags; everything counts as
/// 10,000) each token may name in its purges.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PurgeBudget {
    /// Items a token may name at once; also the most one purge may name.
    #[serde(default = "PurgeBudget::default_burst")]
    pub burst: u64,
    /// Items given back to each token every second.
    #[serde(default = "PurgeBudget::default_per_second")]
    pub per_second: u64,
}

impl PurgeBudget {
    fn default_burst() -> u64 {
        100_000
    }
    fn default_per_second() -> u64 {
        10_000
    }
}

impl Default for PurgeBudget {
    fn default() -> Self {
        Self {
            burst: Self::default_burst(),
            per_second: Self::default_per_second(),
        }
    }
}

/// A bearer token, read from an environment variable, that may purge URLs,
/// prefixes and hosts of the listed hosts only (not tags, not everything,
/// and no reload).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScopedToken {
    pub token_env: String,
    /// Host names, `*.example.com` for any subdomain.
    pub hosts: Vec<String>,
}

impl Admin {
    fn default_addr() -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 9080))
    }
    fn default_token_env() -> String {
        "OUTPOST_ADMIN_TOKEN".into()
    }
}

impl Default for Admin {
    fn default() -> Self {
        Self {
            addr: Self::default_addr(),
            token_env: Self::default_token_env(),
            scoped_tokens: Vec::new(),
            purge_budget: PurgeBudget::default(),
            access: AdminAccess::default(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CacheSettings {
    /// Size of the memory tier in bytes of bodies plus stored headers.
    #[serde(default = "CacheSettings::default_memory")]
    pub memory: Size,
    pub disk: Option<Disk>,
    /// Larger responses stream through without being stored.
    #[serde(default = "CacheSettings::default_max_object_size")]
    pub max_object_size: Size,
    /// How long a request waits for another request's fetch of the same key.
    #[serde(default = "CacheSettings::default_coalesce_timeout")]
    pub coalesce_timeout: Span,
    /// Fraction of (Date - Last-Modified) used as a heuristic lifetime.
    #[serde(default = "CacheSettings::default_heuristic_fraction")]
    pub heuristic_fraction: f32,
    /// Longest heuristic freshness lifetime.
    #[serde(default = "CacheSettings::default_heuristic_max")]
    pub heuristic_max: Span,
    /// Response headers whose values tag objects for `tags` purges.
    #[serde(default = "CacheSettings::default_tag_headers")]
    pub tag_headers: Vec<String>,
    /// Send the tag headers on to clients (they are removed by default).
    #[serde(default)]
    pub expose_tag_headers: bool,
    /// Targeted cache-control fields Outpost obeys over Cache-Control, first
    /// present wins (RFC 9213).
    #[serde(default = "CacheSettings::default_targeted_fields")]
    pub targeted_fields: Vec<String>,
}

impl CacheSettings {
    fn default_memory() -> Size {
        Size(256 << 20)
    }
    fn default_max_object_size() -> Size {
        Size(512 << 20)
    }
    fn default_coalesce_timeout() -> Span {
        Span(Duration::from_secs(5))
    }
    fn default_heuristic_fraction() -> f32 {
        0.1
    }
    fn default_tag_headers() -> Vec<String> {
        vec!["Surrogate-Key".into(), "Cache-Tag".into()]
    }
    fn default_heuristic_max() -> Span {
        Span(Duration::from_secs(86_400))
    }
    fn default_targeted_fields() -> Vec<String> {
        vec!["CDN-Cache-Control".into(), "Surrogate-Control".into()]
    }
}

impl Default for CacheSettings {
    fn default() -> Self {
        Self {
            memory: Self::default_memory(),
            disk: None,
            max_object_size: Self::default_max_object_size(),
            coalesce_timeout: Self::default_coalesce_timeout(),
            heuristic_fraction: Self::default_heuristic_fraction(),
            heuristic_max: Self::default_heuristic_max(),
            tag_headers: Self::default_tag_headers(),
            expose_tag_headers: false,
            targeted_fields: Self::default_targeted_fields(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Disk {
    pub path: PathBuf,
    pub size: Size,
}

/// A named group of origin servers that one or more sites send misses to.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OriginPool {
    #[serde(default)]
    pub balance: Balance,
    pub servers: Vec<Server>,
    pub health_check: Option<HealthCheck>,
    /// Passive ejection: failures seen on live traffic take a server out.
    #[serde(default)]
    pub eject: Eject,
    /// Further attempts after a failure that is safe to retry.
    #[serde(default = "OriginPool::default_retries")]
    pub retries: u32,
    #[serde(default)]
    pub timeouts: Timeouts,
    /// Host header sent to the origin; the client's when absent.
    pub host: Option<String>,
    /// Requests in flight per server at most (with HTTP/1.1, connections).
    #[serde(default = "OriginPool::default_max_connections")]
    pub max_connections_per_server: usize,
    /// Connections kept idle per server.
    #[serde(default = "OriginPool::default_max_idle")]
    pub max_idle_per_server: usize,
    /// The protocol spoken to the servers.
    #[serde(default)]
    pub protocol: OriginProtocol,
    /// TLS settings for `https://` servers.
    #[serde(default)]
    pub tls: OriginTls,
    /// How often host names are resolved again.
    #[serde(default = "OriginPool::default_resolve_interval")]
    pub resolve_interval: Span,
}

impl OriginPool {
    /// A pool made in code rather than read from the file: `urls` on the
    /// ring, with every other setting at its default.
    pub fn of_servers(urls: impl IntoIterator<Item = String>) -> Self {
        Self {
            balance: Balance::default(),
            servers: urls
                .into_iter()
                .map(|url| Server {
                    url: Spanned {
                        value: url,
                        referenced: serde_saphyr::Location::UNKNOWN,
                        defined: serde_saphyr::Location::UNKNOWN,
                    },
                    weight: Server::default_weight(),
                })
                .collect(),
            health_check: None,
            eject: Eject::default(),
            retries: Self::default_retries(),
            timeouts: Timeouts::default(),
            host: None,
            max_connections_per_server: Self::default_max_connections(),
            max_idle_per_server: Self::default_max_idle(),
            protocol: OriginProtocol::default(),
            tls: OriginTls::default(),
            resolve_interval: Self::default_resolve_interval(),
        }
    }

    fn default_retries() -> u32 {
        2
    }
    fn default_max_connections() -> usize {
        1024
    }
    fn default_max_idle() -> usize {
        64
    }
    fn default_resolve_interval() -> Span {
        Span(Duration::from_secs(30))
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OriginProtocol {
    /// HTTP/1.1 on plain connections; HTTP/2 or HTTP/1.1 by ALPN over TLS.
    #[default]
    Auto,
    /// HTTP/1.1 only.
    Http1,
    /// HTTP/2 only: prior knowledge (h2c) on plain connections, ALPN h2 over TLS.
    Http2,
}

/// TLS to the origin servers, through BoringSSL.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OriginTls {
    /// Verify the server's certificate and name. Turning this off needs
    /// `verify: false` written out.
    #[serde(default = "OriginTls::default_verify")]
    pub verify: bool,
    /// PEM file of CA certificates to verify against instead of the system roots.
    pub ca_file: Option<PathBuf>,
    /// PEM certificate chain and key presented to the origin.
    pub client_cert: Option<PathBuf>,
    pub client_key: Option<PathBuf>,
    /// Name sent in SNI and verified; the server's host name when absent.
    pub sni: Option<String>,
}

impl OriginTls {
    fn default_verify() -> bool {
        true
    }
}

impl Default for OriginTls {
    fn default() -> Self {
        Self {
            verify: true,
            ca_file: None,
            client_cert: None,
            client_key: None,
            sni: None,
        }
    }
}

/// Passive ejection of servers that fail on live traffic.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Eject {
    /// Connect failures or 5xx answers in a row that take a server out; 0 turns ejection off.
    #[serde(default = "Eject::default_failures")]
    pub consecutive_failures: u32,
    /// First time out; it doubles with each ejection in a row.
    #[serde(default = "Eject::default_cooldown")]
    pub cooldown: Span,
    #[serde(default = "Eject::default_max_cooldown")]
    pub max_cooldown: Span,
}

impl Eject {
    fn default_failures() -> u32 {
        5
    }
    fn default_cooldown() -> Span {
        Span(Duration::from_secs(10))
    }
    fn default_max_cooldown() -> Span {
        Span(Duration::from_secs(300))
    }
}

impl Default for Eject {
    fn default() -> Self {
        Self {
            consecutive_failures: Self::default_failures(),
            cooldown: Self::default_cooldown(),
            max_cooldown: Self::default_max_cooldown(),
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Balance {
    #[default]
    ConsistentHash,
    RoundRobin,
    LeastConnections,
    Random,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Server {
    /// `http://host:port` or `https://host:port`, no path.
    pub url: Spanned<String>,
    #[serde(default = "Server::default_weight")]
    pub weight: u32,
}

impl Server {
    fn default_weight() -> u32 {
        1
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthCheck {
    #[serde(default = "HealthCheck::default_path")]
    pub path: String,
    #[serde(default = "HealthCheck::default_interval")]
    pub interval: Span,
    #[serde(default = "HealthCheck::default_timeout")]
    pub timeout: Span,
    #[serde(default = "HealthCheck::default_status")]
    pub expect_status: u16,
    /// Successes in a row that bring a server back.
    #[serde(default = "HealthCheck::default_rise")]
    pub rise: u32,
    /// Failures in a row that take a server out.
    #[serde(default = "HealthCheck::default_fall")]
    pub fall: u32,
}

impl HealthCheck {
    fn default_path() -> String {
        "/".into()
    }
    fn default_interval() -> Span {
        Span(Duration::from_secs(5))
    }
    fn default_timeout() -> Span {
        Span(Duration::from_secs(2))
    }
    fn default_status() -> u16 {
        200
    }
    fn default_rise() -> u32 {
        2
    }
    fn default_fall() -> u32 {
        3
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Timeouts {
    /// TCP connect (and TLS handshake) per server.
    #[serde(default = "Timeouts::default_connect")]
    pub connect: Span,
    /// From sending the request to the response headers.
    #[serde(default = "Timeouts::default_response_header")]
    pub response_header: Span,
    /// Longest silence between two pieces of the response body.
    #[serde(default = "Timeouts::default_idle")]
    pub idle: Span,
    /// Whole exchange, headers and body; none when absent.
    pub total: Option<Span>,
    /// Idle pooled connections are closed after this long.
    #[serde(default = "Timeouts::default_keepalive")]
    pub keepalive: Span,
}

impl Timeouts {
    fn default_connect() -> Span {
        Span(Duration::from_secs(2))
    }
    fn default_response_header() -> Span {
        Span(Duration::from_secs(15))
    }
    fn default_idle() -> Span {
        Span(Duration::from_secs(30))
    }
    fn default_keepalive() -> Span {
        Span(Duration::from_secs(60))
    }
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            connect: Self::default_connect(),
            response_header: Self::default_response_header(),
            idle: Self::default_idle(),
            total: None,
            keepalive: Self::default_keepalive(),
        }
    }
}

/// Request headers stripped before a request is keyed and forwarded,
/// unless a site passes them (`pass_headers`): origins and frameworks act
/// on them (a path, a method, a port or a scheme to use instead), so a
/// client could have a page stored for everyone that the key does not
/// tell apart.
pub const UNKEYED_HEADERS: &[&str] = &[
    "x-original-url",
    "x-rewrite-url",
    "x-forwarded-port",
    "x-forwarded-scheme",
    "x-forwarded-server",
    "x-forwarded-prefix",
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
    "x-host",
];

/// A group of host names served from one origin pool with one list of rules.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Site {
    /// Exact names, `*.example.com` for any subdomain, or `"*"` for any host
    /// that no other site names.
    pub hosts: Vec<Spanned<String>>,
    pub origin: Spanned<String>,
    /// Misses go through the key's owner in the fleet (the shield tier),
    /// which fetches from the origin once for every member. Needs
    /// `cluster.peer_addr`.
    #[serde(default)]
    pub shield: bool,
    /// Request headers that are stripped by default because they reshape
    /// the answer at many origins while not in the key (`X-Forwarded-Port`,
    /// `X-Original-URL`, ...) and that this site's origin needs: they are
    /// passed through and join the key, as if the origin varied on them.
    #[serde(default)]
    pub pass_headers: Vec<Spanned<String>>,
    /// `Strict-Transport-Security` on every answer over TLS.
    pub hsts: Option<Spanned<Hsts>>,
    /// Bodies of Outpost's own error answers for this site's requests, by
    /// status; the file's top-level `error_pages` for the codes not named.
    #[serde(default)]
    pub error_pages: ErrorPages,
    #[serde(default)]
    pub rules: Vec<Rule>,
}

/// How requests matching `match` are cached. The first matching rule wins;
/// a request that matches none is cached by the origin's headers alone.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    #[serde(rename = "match", default)]
    pub matcher: Match,
    /// Replaces the origin's freshness lifetime for this cache. Responses
    /// the origin marked `no-store` or `private` are still not stored.
    pub ttl: Option<Span>,
    /// `ttl` for particular status codes, e.g. `{404: 1m}`.
    #[serde(default)]
    pub ttl_by_status: std::collections::BTreeMap<u16, Span>,
    /// Freshness for responses that carry none of their own.
    pub default_ttl: Option<Span>,
    /// Serve this long past freshness while revalidating in the background,
    /// unless the response says otherwise (RFC 5861 §3).
    pub stale_while_revalidate: Option<Span>,
    /// Serve this long past freshness when the origin fails, unless the
    /// response says otherwise (RFC 5861 §4).
    pub stale_if_error: Option<Span>,
    /// Serve this long past freshness when no answer comes from the origin
    /// at all (connection refused or reset, timeout), whatever the
    /// response allowed, but never past must-revalidate, proxy-revalidate,
    /// s-maxage or no-cache: the "disconnected" cache of RFC 9111 §4.2.4.
    /// Default 5m; `0s` turns it off.
    pub stale_if_unreachable: Option<Span>,
    /// `false`: ignore the origin's Cache-Control and Expires altogether and
    /// cache by `ttl` / `default_ttl` (an authenticated request's response is
    /// still never shared unless the origin allowed it).
    #[serde(default = "Rule::default_respect_origin")]
    pub respect_origin: bool,
    /// `true`: the client's `no-cache` and `no-store` request directives
    /// neither bypass nor forbid the cache, as many CDNs do.
    #[serde(default)]
    pub ignore_client_no_cache: bool,
    #[serde(default)]
    pub cache: CacheMode,
    #[serde(default)]
    pub key: KeyRule,
    /// Store and share responses that carry `Set-Cookie`.
    #[serde(default)]
    pub share_set_cookie: bool,
    /// Store responses to requests that carry a `Cookie` even when the
    /// origin did not mark them shareable (`public`, `s-maxage`, or a
    /// lifetime in CDN-Cache-Control). Off by default: such a response may
    /// be one user's page.
    #[serde(default)]
    pub store_with_cookie: bool,
    /// With `match.extensions`: `ttl`, `ttl_by_status` and `default_ttl`
    /// apply only to responses whose Content-Type is a type of the path's
    /// extension (against web cache deception). `false` applies them to
    /// whatever the origin sends.
    #[serde(default = "Rule::default_check_content_type")]
    pub check_content_type: bool,
    /// Largest request body forwarded; larger is 413. Unlimited when absent.
    pub max_request_body: Option<Size>,
    /// `false`: responses to this rule's requests are never compressed by
    /// Outpost (the file's `compression` still decides the others).
    #[serde(default = "Rule::default_compress")]
    pub compress: bool,
    /// Range requests (and whole GETs) fetch and store aligned slices of
    /// this size, each with a range request of its own, as nginx's slice
    /// module does: a seek in a large object costs one or two slices.
    pub slice: Option<Size>,
    /// Answer with a redirect instead of serving the request.
    pub redirect: Option<Spanned<Redirect>>,
    /// Ask the origin for another path.
    pub rewrite: Option<Spanned<Rewrite>>,
    /// Header changes on the request before it is keyed and forwarded.
    pub request_headers: Option<Spanned<RequestHeaders>>,
    /// Header changes on the answers to the rule's requests.
    pub response_headers: Option<Spanned<ResponseHeaders>>,
}

impl Rule {
    fn default_respect_origin() -> bool {
        true
    }
    fn default_check_content_type() -> bool {
        true
    }
    fn default_compress() -> bool {
        true
    }
}

/// Conditions a request path must all meet; an empty match matches every path.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Match {
    pub path_prefix: Option<String>,
    pub path_regex: Option<Spanned<String>>,
    /// File extensions without the dot, e.g. `[css, js]`.
    pub extensions: Option<Vec<String>>,
    /// How the client connected: `http` (plain text) or `https` (TLS).
    pub scheme: Option<Scheme>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scheme {
    Http,
    Https,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CacheMode {
    /// Cache as the response headers and the rule allow.
    #[default]
    Cache,
    /// Never look up nor store: always go to the origin.
    Bypass,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyRule {
    #[serde(default)]
    pub query: QueryKey,
    /// Request headers whose values join the key (as Vary would).
    #[serde(default)]
    pub headers: Vec<String>,
    /// Cookies whose values join the key.
    #[serde(default)]
    pub cookies: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QueryKey {
    /// Keep the whole query in the key, parameters sorted by name.
    #[default]
    #[serde(alias = "keep")]
    All,
    /// Drop the query from the key.
    Ignore,
    /// Keep only these parameters.
    Include(Vec<String>),
    /// Keep every parameter but these (`utm_source`, say).
    Exclude(Vec<String>),
}

/// This node's place in a fleet: purges travel to every member through a
/// JetStream stream, and members announce themselves in a KV bucket.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cluster {
    /// Unique name of this node in the fleet: letters, digits, `-` and `_`.
    pub node: Spanned<String>,
    pub nats: Nats,
    /// Where other members reach this node's proxy (the shield tier): a
    /// plain-text listener of this node.
    pub peer_addr: Option<SocketAddr>,
    /// The fleet's name in `CDN-Loop` (RFC 8586): a request that carries it
    /// has passed a member already and goes to the origin.
    #[serde(default = "Cluster::default_fleet")]
    pub fleet: String,
    /// Where the node keeps what must outlive it: the last purge applied
    /// from the stream and the purges not yet published. Relative to the
    /// config's directory.
    #[serde(default = "Cluster::default_state_dir")]
    pub state_dir: PathBuf,
    /// The JetStream stream of purge events, created when missing.
    #[serde(default = "Cluster::default_stream")]
    pub stream: String,
    /// Subject prefix of purge events: each is published on `SUBJECT.ID`.
    #[serde(default = "Cluster::default_subject")]
    pub subject: String,
    /// How long the stream keeps purge events: a node away for longer
    /// purges everything when it returns.
    #[serde(default = "Cluster::default_retention")]
    pub retention: Span,
    /// KV bucket of member heartbeats.
    #[serde(default = "Cluster::default_members_bucket")]
    pub members_bucket: String,
    /// KV bucket recording which member applied which purge, and when.
    #[serde(default = "Cluster::default_applied_bucket")]
    pub applied_bucket: String,
    /// How often this node announces itself; a member silent for three
    /// intervals is gone.
    #[serde(default = "Cluster::default_heartbeat")]
    pub heartbeat: Span,
    /// What the cache does once it has not heard from the stream for
    /// `max_lag`: keep answering (`serve`, and say so in Cache-Status) or
    /// stop answering until caught up (`bypass`, every request goes to the
    /// origin).
    #[serde(default)]
    pub lag_policy: LagPolicy,
    #[serde(default = "Cluster::default_max_lag")]
    pub max_lag: Span,
}

impl Cluster {
    fn default_fleet() -> String {
        "outpost".into()
    }
    fn default_state_dir() -> PathBuf {
        PathBuf::from("/var/lib/outpost/fleet")
    }
    fn default_stream() -> String {
        "OUTPOST_PURGES".into()
    }
    fn default_subject() -> String {
        "outpost.purges".into()
    }
    fn default_retention() -> Span {
        Span(Duration::from_secs(7 * 86_400))
    }
    fn default_members_bucket() -> String {
        "outpost_members".into()
    }
    fn default_applied_bucket() -> String {
        "outpost_purges_applied".into()
    }
    fn default_heartbeat() -> Span {
        Span(Duration::from_secs(2))
    }
    fn default_max_lag() -> Span {
        Span(Duration::from_secs(30))
    }
}

/// The NATS servers of the fleet and how to log in to them.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Nats {
    /// `nats://host:port` (or `tls://`) of one or more servers of a cluster.
    pub servers: Vec<Spanned<String>>,
    /// A `.creds` file (user JWT and NKey seed), relative to the config's directory.
    pub creds_file: Option<PathBuf>,
    /// Name of an environment variable holding a token.
    pub token_env: Option<String>,
    /// A user name, with its password in the environment variable `password_env`.
    pub user: Option<String>,
    pub password_env: Option<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LagPolicy {
    /// Keep answering from the cache; hits say `detail=purge-lag`.
    #[default]
    Serve,
    /// Answer nothing from the cache until the stream is heard again.
    Bypass,
}
