//! The YAML config loader: parsing with key paths, then validation.
//!
//! The input is a config file's text. Checked:
//! - no input panics (nor runs the stack out: deep nesting, aliases);
//! - a refused file has at least one error, each with a message, in file
//!   order, and the list prints;
//! - a loaded file holds what validation promises: listeners, sites whose
//!   origins exist, origin servers whose URLs parse, limits above zero;
//! - sizes and durations, as the file has them and as the input reads as
//!   one, print as text that reads back as the same value.

#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use outpost_config::{ServerUrl, Size, Span, load_str};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if text.len() < 64 {
        for line in text.lines() {
            check_units(line);
        }
    }
    match load_str(text, "fuzz.yaml", Path::new("/etc/outpost")) {
        Err(errors) => {
            assert!(!errors.0.is_empty(), "refused without an error");
            for error in &errors.0 {
                assert!(
                    !error.message.is_empty(),
                    "an error without a message: {error:?}"
                );
            }
            for pair in errors.0.windows(2) {
                assert!(
                    (pair[0].line, pair[0].column) <= (pair[1].line, pair[1].column),
                    "errors out of file order: {errors:?}"
                );
            }
            let _ = errors.to_string();
        }
        Ok(loaded) => {
            let config = &loaded.config;
            assert!(!config.listen.is_empty() && !config.sites.is_empty());
            assert!(config.limits.max_connections > 0);
            assert!(config.cache.memory.bytes() > 0);
            for site in &config.sites {
                assert!(config.origins.contains_key(&site.origin.value));
                assert!(!site.hosts.is_empty());
            }
            for pool in config.origins.values() {
                assert!(!pool.servers.is_empty());
                for server in &pool.servers {
                    assert!(ServerUrl::parse(&server.url.value).is_ok());
                }
            }
            round_trip_size(config.cache.memory);
            round_trip_size(config.limits.max_uri_length);
            round_trip_span(config.shutdown_grace);
            round_trip_span(config.limits.header_read_timeout);
        }
    }
});

fn check_units(text: &str) {
    if let Ok(size) = text.parse::<Size>() {
        round_trip_size(size);
    }
    if let Ok(span) = text.parse::<Span>() {
        round_trip_span(span);
    }
}

fn round_trip_size(size: Size) {
    let text = size.to_string();
    assert_eq!(
        text.parse::<Size>(),
        Ok(size),
        "{size:?} prints as {text:?}"
    );
}

fn round_trip_span(span: Span) {
    let text = span.to_string();
    assert_eq!(
        text.parse::<Span>(),
        Ok(span),
        "{span:?} prints as {text:?}"
    );
}
