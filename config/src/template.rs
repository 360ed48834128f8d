//! Templates in edge rules (`redirect.to`, header values): text with
//! `{variable}` places filled from the request. The variables are a small
//! fixed set, so an unknown name is a config error rather than an empty
//! string at run time; `{{` and `}}` write a brace.

use std::fmt;

/// What a template may ask of the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Var {
    /// `http` or `https`, as the client connected.
    Scheme,
    /// The host name the request was routed by (lower case, no port).
    Host,
    /// The normalized path, without the query.
    Path,
    /// The query without its `?`; empty when there is none.
    Query,
    /// The path, then `?` and the query when there is one.
    Uri,
    /// The path after the rule's `match.path_prefix` (the whole path when
    /// the rule has none).
    Rest,
    /// The client's IP address.
    Client,
    /// The id this request has in the access log and on error pages.
    RequestId,
}

impl Var {
    /// Every variable, as written between braces.
    pub const ALL: [(&'static str, Var); 8] = [
        ("scheme", Var::Scheme),
        ("host", Var::Host),
        ("path", Var::Path),
        ("query", Var::Query),
        ("uri", Var::Uri),
        ("rest", Var::Rest),
        ("client", Var::Client),
        ("request_id", Var::RequestId),
    ];

    fn named(name: &str) -> Option<Var> {
        Self::ALL.iter().find(|(n, _)| *n == name).map(|(_, v)| *v)
    }
}

/// One piece of a template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    Text(String),
    Var(Var),
}

/// A parsed template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
}

/// Why a template does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error("unknown variable {{{0}}}; known: {known}", known = known())]
    Unknown(String),
    #[error("a {{ is not closed (write {{{{ for a brace)")]
    Unclosed,
    #[error("a }} stands alone (write }}}} for a brace)")]
    StrayClose,
}

fn known() -> String {
    Var::ALL
        .iter()
        .map(|(n, _)| format!("{{{n}}}"))
        .collect::<Vec<_>>()
        .join(", ")
}

impl Template {
    pub fn parse(text: &str) -> Result<Self, TemplateError> {
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut rest = text;
        while let Some(at) = rest.find(['{', '}']) {
            literal.push_str(&rest[..at]);
            let tail = &rest[at..];
            if let Some(after) = tail.strip_prefix("{{") {
                literal.push('{');
                rest = after;
            } else if let Some(after) = tail.strip_prefix("}}") {
                literal.push('}');
                rest = after;
            } else if tail.starts_with('}') {
                return Err(TemplateError::StrayClose);
            } else {
                let end = tail.find('}').ok_or(TemplateError::Unclosed)?;
                let name = &tail[1..end];
                let var =
                    Var::named(name).ok_or_else(|| TemplateError::Unknown(name.to_owned()))?;
                if !literal.is_empty() {
                    parts.push(Part::Text(std::mem::take(&mut literal)));
                }
                parts.push(Part::Var(var));
                rest = &tail[end + 1..];
            }
        }
        literal.push_str(rest);
        if !literal.is_empty() {
            parts.push(Part::Text(literal));
        }
        Ok(Self { parts })
    }

    /// The text when the template has no variable.
    pub fn constant(&self) -> Option<&str> {
        match self.parts.as_slice() {
            [] => Some(""),
            [Part::Text(text)] => Some(text),
            _ => None,
        }
    }

    pub fn parts(&self) -> &[Part] {
        &self.parts
    }

    /// The template with each variable's value written by `write`.
    pub fn render(&self, write: impl FnMut(Var, &mut String)) -> String {
        let mut out = String::new();
        self.render_into(&mut out, write);
        out
    }

    /// [`Template::render`] at the end of `out`, which a caller may reuse.
    pub fn render_into(&self, out: &mut String, mut write: impl FnMut(Var, &mut String)) {
        for part in &self.parts {
            match part {
                Part::Text(text) => out.push_str(text),
                Part::Var(var) => write(*var, out),
            }
        }
    }

    /// Whether the template uses `var`.
    pub fn uses(&self, var: Var) -> bool {
        self.parts.contains(&Part::Var(var))
    }
}

impl fmt::Display for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for part in &self.parts {
            match part {
                Part::Text(text) => f.write_str(&text.replace('{', "{{").replace('}', "}}"))?,
                Part::Var(var) => {
                    let name = Var::ALL
                        .iter()
                        .find(|(_, v)| v == var)
                        .map_or("?", |(n, _)| n);
                    write!(f, "{{{name}}}")?;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fill(var: Var, out: &mut String) {
        out.push_str(match var {
            Var::Host => "example.com",
            Var::Uri => "/a?b=1",
            Var::Path => "/a",
            _ => "x",
        });
    }

    #[test]
    fn variables_are_filled_and_braces_escaped() {
        let t = Template::parse("https://{host}{uri}").unwrap();
        assert_eq!(t.render(fill), "https://example.com/a?b=1");
        assert!(t.uses(Var::Host) && !t.uses(Var::Client));
        let t = Template::parse("{{literal}} {path}").unwrap();
        assert_eq!(t.render(fill), "{literal} /a");
        assert_eq!(Template::parse("plain").unwrap().constant(), Some("plain"));
        assert_eq!(Template::parse("{path}").unwrap().constant(), None);
    }

    #[test]
    fn unknown_variables_and_stray_braces_are_errors() {
        let e = Template::parse("https://{hostname}/").unwrap_err();
        assert_eq!(e, TemplateError::Unknown("hostname".into()));
        assert!(e.to_string().contains("{request_id}"), "{e}");
        assert_eq!(Template::parse("a{host"), Err(TemplateError::Unclosed));
        assert_eq!(Template::parse("a}b"), Err(TemplateError::StrayClose));
    }

    #[test]
    fn display_writes_what_parses_back() {
        for text in ["{{x}} {host}{uri}", "", "}}{{", "a{rest}b"] {
            let t = Template::parse(text).unwrap();
            assert_eq!(Template::parse(&t.to_string()).unwrap(), t, "{text}");
        }
    }
}
