//! What the property tests generate: Cache-Control values (well-formed or
//! not), header lines, and the pieces of URLs. The fuzz targets in `fuzz/`
//! check the same properties for longer, from bytes.

use http::HeaderValue;
use proptest::collection::vec;
use proptest::prelude::*;

use crate::freshness::quoted;

/// One Cache-Control directive: known or not, bare, with a number or a
/// token, or with a quoted string holding anything printable.
pub(crate) fn directive() -> impl Strategy<Value = String> {
    let name = prop_oneof![
        Just("max-age".to_owned()),
        Just("s-maxage".to_owned()),
        Just("no-cache".to_owned()),
        Just("private".to_owned()),
        Just("no-store".to_owned()),
        Just("public".to_owned()),
        Just("must-understand".to_owned()),
        "[a-zA-Z][a-zA-Z0-9!#$%&'*+.^_`|~-]{0,8}",
    ];
    let value = prop_oneof![
        Just(None),
        "[0-9]{1,12}".prop_map(Some),
        "[a-zA-Z0-9!#$%&'*+.^_`|~-]{1,8}".prop_map(Some),
        "[ -~]{0,12}".prop_map(|s| Some(quoted(&s))),
    ];
    (name, value, "[ \t]{0,1}").prop_map(|(name, value, ws)| match value {
        None => name,
        Some(value) => format!("{name}{ws}={ws}{value}"),
    })
}

/// A Cache-Control field line: directives, or any printable text.
pub(crate) fn cache_control() -> impl Strategy<Value = HeaderValue> {
    prop_oneof![
        3 => vec(directive(), 0..6).prop_map(|d| d.join(", ")),
        1 => "[ -~\t]{0,40}",
    ]
    .prop_filter_map("a field value", |text| HeaderValue::from_str(&text).ok())
}

/// A list-valued field line: members with parameters, in any case, with
/// any spacing, sometimes empty.
pub(crate) fn list_value() -> impl Strategy<Value = HeaderValue> {
    let member = "[a-zA-Z*-]{0,6}( ?; ?[qQa-z]{1,2} ?= ?[0-9.]{0,5})?";
    prop_oneof![
        3 => vec(member, 0..5).prop_map(|m| m.join(",  ")),
        1 => "[ -~\t]{0,30}",
    ]
    .prop_filter_map("a field value", |text| HeaderValue::from_str(&text).ok())
}

/// A path as clients write it: segments of letters, dots, percent-escapes
/// (valid, stray or of any byte) and a few other characters.
pub(crate) fn path() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        "[a-zA-Z0-9._~-]{1,4}",
        "%[0-9a-fA-F]{2}",
        Just("%".to_owned()),
        Just(".".to_owned()),
        Just("..".to_owned()),
        Just("%2e".to_owned()),
        Just("%2E".to_owned()),
        "[!$&'()*+,;=:@]",
        "[^/?#]",
    ];
    vec(vec(piece, 0..4).prop_map(|p| p.concat()), 0..5)
        .prop_map(|segments| format!("/{}", segments.join("/")))
}

/// A host as a Host field may carry it: a name, an IPv6 literal, a port,
/// trailing dots, any case.
pub(crate) fn host() -> impl Strategy<Value = String> {
    let name = prop_oneof![
        "[a-zA-Z0-9-]{1,6}(\\.[a-zA-Z0-9-]{1,6}){0,2}",
        Just("[::1]".to_owned()),
        Just("[2001:db8::1]".to_owned()),
    ];
    (
        name,
        "\\.{0,2}",
        prop_oneof![
            Just(String::new()),
            ":[0-9]{1,5}",
            Just(":80".to_owned()),
            Just(":443".to_owned())
        ],
        "\\.{0,1}",
    )
        .prop_map(|(name, dots, port, tail)| format!("{name}{dots}{port}{tail}"))
}

/// A query: parameters with names and values that may be escaped.
pub(crate) fn query() -> impl Strategy<Value = String> {
    let part = prop_oneof!["[a-z_]{0,5}", "%[0-9a-fA-F]{2}", Just("%".to_owned())];
    let param = (
        vec(part.clone(), 0..3),
        proptest::option::of(vec(part, 0..3)),
    )
        .prop_map(|(name, value)| match value {
            Some(value) => format!("{}={}", name.concat(), value.concat()),
            None => name.concat(),
        });
    vec(param, 0..5).prop_map(|params| params.join("&"))
}
