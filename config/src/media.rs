//! The media types a file extension stands for, so that a rule matched by
//! extension can check that a response is what its path claims (a cached
//! `/account.php/x.css` that is really an HTML page is web cache deception).

/// Whether `content_type` (a `Content-Type` value, parameters allowed) is
/// one of the media types of `extension`; None when the extension is not
/// known, so nothing can be said.
pub fn agrees(extension: &str, content_type: Option<&str>) -> Option<bool> {
    let known = known_types(extension)?;
    let Some(content_type) = content_type else {
        return Some(false);
    };
    let essence = content_type.split(';').next().unwrap_or_default().trim();
    Some(known.iter().any(|t| t.eq_ignore_ascii_case(essence)))
}

/// Whether the extension's media types are known.
pub fn is_known(extension: &str) -> bool {
    known_types(extension).is_some()
}

fn known_types(extension: &str) -> Option<Vec<&'static str>> {
    let extension = extension.trim_start_matches('.');
    let mut types: Vec<&'static str> = mime_guess::from_ext(extension).iter_raw().collect();
    // Types in wide use that the registry lists under other names.
    let aliases: &[&'static str] = match extension.to_ascii_lowercase().as_str() {
        "js" | "mjs" => &[
            "application/javascript",
            "text/javascript",
            "application/x-javascript",
        ],
        "json" => &["application/json"],
        "woff" => &["font/woff", "application/font-woff"],
        "woff2" => &["font/woff2", "application/font-woff2"],
        "ico" => &["image/x-icon", "image/vnd.microsoft.icon"],
        "svg" => &["image/svg+xml"],
        "xml" => &["application/xml", "text/xml"],
        _ => &[],
    };
    types.extend_from_slice(aliases);
    (!types.is_empty()).then_some(types)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stylesheet_path_must_carry_a_stylesheet() {
        assert_eq!(agrees("css", Some("text/css; charset=utf-8")), Some(true));
        assert_eq!(agrees("CSS", Some("Text/CSS")), Some(true));
        assert_eq!(agrees("css", Some("text/html; charset=utf-8")), Some(false));
        assert_eq!(agrees("css", None), Some(false));
    }

    #[test]
    fn common_static_types_are_known_under_their_usual_names() {
        for (ext, ty) in [
            ("js", "text/javascript"),
            ("js", "application/javascript"),
            ("png", "image/png"),
            ("jpg", "image/jpeg"),
            ("woff2", "font/woff2"),
            ("svg", "image/svg+xml"),
            ("json", "application/json"),
            ("mp4", "video/mp4"),
            ("html", "text/html"),
        ] {
            assert_eq!(agrees(ext, Some(ty)), Some(true), "{ext} {ty}");
        }
    }

    #[test]
    fn unknown_extensions_say_nothing() {
        assert_eq!(agrees("outpostxyz", Some("text/html")), None);
        assert!(!is_known("outpostxyz"));
        assert!(is_known(".css"));
    }
}
