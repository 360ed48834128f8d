//! Configs for the common cases, as YAML text: one site on one origin
//! ([`simple_config`]) or one catch-all site on a pool ([`pool_config`]).
//! Everything listens on 127.0.0.1 port 0.

use crate::origin::Origin;

/// A config with one plain listener on port 0, the admin API on port 0, and
/// one site for `hosts` served by `origin`; `rules` is YAML for the rule list.
pub fn simple_config(origin: &Origin, hosts: &[&str], rules: &str) -> String {
    let hosts: Vec<String> = hosts.iter().map(|h| format!("{h:?}")).collect();
    format!(
        "listen:\n  - addr: 127.0.0.1:0\nadmin:\n  addr: 127.0.0.1:0\ncache:\n  memory: 64MiB\n  max_object_size: 1MiB\n\
         origins:\n  app:\n    servers:\n      - url: {}\nsites:\n  - hosts: [{}]\n    origin: app\n    rules: {}\n",
        origin.url(),
        hosts.join(", "),
        if rules.is_empty() { "[]" } else { rules }
    )
}

/// A config with one plain listener, the admin API, and one catch-all site
/// served by a pool of `servers` (URLs); `pool` is extra YAML for the pool,
/// indented under it (e.g. `"    balance: round_robin\n"`).
pub fn pool_config(servers: &[String], pool: &str) -> String {
    let servers: Vec<String> = servers
        .iter()
        .map(|url| format!("      - url: {url}\n"))
        .collect();
    format!(
        "listen: [{{addr: 127.0.0.1:0}}]\nadmin: {{addr: 127.0.0.1:0}}\norigins:\n  app:\n    servers:\n{}{pool}sites:\n  - hosts: [\"*\"]\n    origin: app\n",
        servers.concat()
    )
}
