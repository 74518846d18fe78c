//! Route templates per deployment (telemetry's `-routes FILE`): requests
//! to a deployment that has templates are counted under the template they
//! match, so the `path` label of that deployment's series carries
//! `/books/{id}` instead of every book's own path (and `[DEFAULT]` for a
//! request no template matched). Routes are defined centrally, in one
//! file, with no proxy configuration.
//!
//! The file has one route per line, three fields separated by spaces:
//!
//! ```text
//! # namespace/deployment  method  template
//! default/books           GET     /books/{id}
//! default/books           POST    /checkout
//! default/books           *       /static/{file*}
//! ```
//!
//! - the deployment as `namespace/name`, the target of the requests;
//! - the request method as the proxy reports it (`GET`, `POST`, …), or `*`
//!   for any;
//! - the template: `/` then segments separated by `/`; a segment is a
//!   literal, `{name}` (exactly one non-empty segment) or, last only,
//!   `{name*}` (one or more segments: the rest of the path).
//!
//! A request's path is matched without its query (`?…`); the first
//! template of its deployment that matches, in file order, names its
//! route. `#` starts a comment; blank lines are skipped. A file that breaks
//! any rule is refused whole with its line number and the reason.

use std::collections::HashMap;
use std::fmt;
use std::path::Path;

use super::labels::MAX_LABEL_VALUE_BYTES;

/// The `path` label of a request to a deployment with templates that none
/// of them matched.
pub const DEFAULT_ROUTE: &str = "[DEFAULT]";

/// Largest routes file read: a few thousand routes are a few hundred kB.
pub const MAX_ROUTES_FILE_BYTES: u64 = 1 << 20;

/// Most templates one file may hold across all deployments: each becomes up
/// to one series per caller and method, so the file is itself a
/// cardinality budget; a mesh's API surface is hundreds of routes, not
/// tens of thousands.
pub const MAX_ROUTES: usize = 10_000;

/// Most segments in one template: a matched path is walked once per
/// template tried, so this bounds the cost of a request's match.
pub const MAX_TEMPLATE_SEGMENTS: usize = 32;

/// Why a routes file is refused.
#[derive(Debug, thiserror::Error)]
pub enum RoutesError {
    #[error("{path}: {error}")]
    Read { path: String, error: std::io::Error },
    #[error("{path}: larger than {MAX_ROUTES_FILE_BYTES} bytes")]
    TooLarge { path: String },
    #[error("{path}: not UTF-8 text")]
    NotText { path: String },
    #[error("{path}:{line}: {reason}")]
    Line {
        path: String,
        line: usize,
        reason: String,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Segment {
    Literal(Box<str>),
    /// `{name}`: one non-empty segment.
    One,
    /// `{name*}`: one or more segments, the rest of the path.
    Rest,
}

#[derive(Clone, Debug)]
struct Template {
    /// `None` for `*`.
    method: Option<Box<str>>,
    /// The template as written: the `path` label of what it matches.
    text: Box<str>,
    segments: Box<[Segment]>,
}

impl Template {
    fn matches(&self, method: &str, path: &str) -> bool {
        if self.method.as_deref().is_some_and(|m| m != method) {
            return false;
        }
        let path = path.split(['?', '#']).next().unwrap_or_default();
        let Some(rest) = path.strip_prefix('/') else {
            return false;
        };
        if self.segments.is_empty() {
            return rest.is_empty();
        }
        let mut parts = rest.split('/');
        for segment in &self.segments {
            match segment {
                Segment::Literal(text) => {
                    if parts.next() != Some(&**text) {
                        return false;
                    }
                }
                Segment::One => {
                    if parts.next().is_none_or(str::is_empty) {
                        return false;
                    }
                }
                Segment::Rest => {
                    return parts.next().is_some_and(|p| !p.is_empty());
                }
            }
        }
        parts.next().is_none()
    }
}

/// Every deployment's route templates, in file order.
#[derive(Clone, Default)]
pub struct Routes {
    by_deployment: HashMap<Box<str>, Vec<Template>>,
    count: usize,
}

impl fmt::Debug for Routes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Routes")
            .field("deployments", &self.by_deployment.len())
            .field("routes", &self.count)
            .finish()
    }
}

impl Routes {
    /// Reads and parses a routes file.
    pub fn load(path: &Path) -> Result<Self, RoutesError> {
        use std::io::Read as _;
        let name = path.display().to_string();
        let read = |error| RoutesError::Read {
            path: name.clone(),
            error,
        };
        let file = std::fs::File::open(path).map_err(read)?;
        let mut bytes = Vec::new();
        file.take(MAX_ROUTES_FILE_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(read)?;
        if bytes.len() as u64 > MAX_ROUTES_FILE_BYTES {
            return Err(RoutesError::TooLarge { path: name });
        }
        let text =
            String::from_utf8(bytes).map_err(|_| RoutesError::NotText { path: name.clone() })?;
        Self::parse(&text).map_err(|(line, reason)| RoutesError::Line {
            path: name,
            line,
            reason,
        })
    }

    /// Parses a routes file's text; an error is the 1-based line and why.
    pub fn parse(text: &str) -> Result<Self, (usize, String)> {
        let mut routes = Self::default();
        for (i, line) in text.lines().enumerate() {
            let n = i + 1;
            let line = line.split('#').next().unwrap_or_default().trim();
            if line.is_empty() {
                continue;
            }
            let fields: Vec<&str> = line.split_whitespace().collect();
            let [deployment, method, template] = fields[..] else {
                return Err((
                    n,
                    format!(
                        "expected `namespace/deployment METHOD /template`, found {} field(s)",
                        fields.len()
                    ),
                ));
            };
            check_deployment(deployment).map_err(|reason| (n, reason))?;
            let method = parse_method(method).map_err(|reason| (n, reason))?;
            let segments = parse_template(template).map_err(|reason| (n, reason))?;
            if routes.count == MAX_ROUTES {
                return Err((n, format!("more than {MAX_ROUTES} routes")));
            }
            let list = routes.by_deployment.entry(deployment.into()).or_default();
            if list
                .iter()
                .any(|t| t.method == method && t.segments == segments)
            {
                return Err((
                    n,
                    format!(
                        "{deployment} {} {template} is listed twice",
                        method_text(&method)
                    ),
                ));
            }
            list.push(Template {
                method,
                text: template.into(),
                segments,
            });
            routes.count += 1;
        }
        Ok(routes)
    }

    /// Whether no deployment has templates.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Whether `deployment` (`namespace/name`) has templates.
    pub fn has(&self, deployment: &str) -> bool {
        self.by_deployment.contains_key(deployment)
    }

    /// The `path` label of a request to `deployment`: the first matching
    /// template, [`DEFAULT_ROUTE`] when none matches, `None` when the
    /// deployment has no templates (the path is kept as reported).
    pub fn route(&self, deployment: &str, method: &str, path: &str) -> Option<&str> {
        if deployment.is_empty() {
            return None;
        }
        let templates = self.by_deployment.get(deployment)?;
        Some(
            templates
                .iter()
                .find(|t| t.matches(method, path))
                .map_or(DEFAULT_ROUTE, |t| &*t.text),
        )
    }
}

fn method_text(method: &Option<Box<str>>) -> &str {
    method.as_deref().unwrap_or("*")
}

fn check_deployment(text: &str) -> Result<(), String> {
    let ok = |part: &str| {
        !part.is_empty()
            && part.len() <= 253
            && part
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
    };
    match text.split_once('/') {
        Some((ns, name)) if ok(ns) && ok(name) && ns.len() <= 63 => Ok(()),
        _ => Err(format!(
            "deployment {text:?}: give it as namespace/name (lowercase Kubernetes names)"
        )),
    }
}

fn parse_method(text: &str) -> Result<Option<Box<str>>, String> {
    if text == "*" {
        return Ok(None);
    }
    // An HTTP token (RFC 9110 §5.6.2); proxies report registered methods
    // in upper case.
    let token = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
    if text.len() > 64 || !text.bytes().all(token) {
        return Err(format!(
            "method {text:?}: give an HTTP method (GET, POST, ...) or * for any"
        ));
    }
    Ok(Some(text.into()))
}

fn parse_template(text: &str) -> Result<Box<[Segment]>, String> {
    let bad = |why: &str| format!("template {text:?}: {why}");
    if text.len() > MAX_LABEL_VALUE_BYTES {
        return Err(bad(&format!("longer than {MAX_LABEL_VALUE_BYTES} bytes")));
    }
    let Some(rest) = text.strip_prefix('/') else {
        return Err(bad("it must start with /"));
    };
    if text.contains(['?', '#']) {
        return Err(bad("a template matches the path only, without ? or #"));
    }
    if rest.is_empty() {
        return Ok(Box::new([]));
    }
    let parts: Vec<&str> = rest.split('/').collect();
    if parts.len() > MAX_TEMPLATE_SEGMENTS {
        return Err(bad(&format!("more than {MAX_TEMPLATE_SEGMENTS} segments")));
    }
    let last = parts.len() - 1;
    parts
        .iter()
        .enumerate()
        .map(|(i, part)| {
            if let Some(inner) = part.strip_prefix('{').and_then(|p| p.strip_suffix('}')) {
                let (name, rest) = match inner.strip_suffix('*') {
                    Some(name) => (name, true),
                    None => (inner, false),
                };
                let ident = |b: u8| b.is_ascii_alphanumeric() || b == b'_' || b == b'-';
                if name.is_empty() || !name.bytes().all(ident) {
                    return Err(bad(&format!(
                        "parameter {part:?}: name it with letters, digits, _ or -"
                    )));
                }
                if rest && i != last {
                    return Err(bad(&format!(
                        "{part:?} takes the rest of the path, so it must be the last segment"
                    )));
                }
                return Ok(if rest { Segment::Rest } else { Segment::One });
            }
            if part.contains(['{', '}']) {
                return Err(bad(&format!(
                    "segment {part:?}: a parameter is a whole segment, {{name}} or {{name*}}"
                )));
            }
            if part.is_empty() && i != last {
                return Err(bad("an empty segment (//)"));
            }
            Ok(Segment::Literal((*part).into()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = "\
# the books service
default/books GET /books/{id}
default/books GET /books/{id}/reviews   # its reviews
default/books POST /checkout

default/books * /static/{file*}
shop/web GET /
";

    fn routes() -> Routes {
        Routes::parse(FILE).unwrap()
    }

    #[test]
    fn requests_take_the_first_matching_template() {
        let r = routes();
        let route = |d, m, p| r.route(d, m, p);
        assert_eq!(
            route("default/books", "GET", "/books/1"),
            Some("/books/{id}")
        );
        assert_eq!(
            route("default/books", "GET", "/books/500?x=1"),
            Some("/books/{id}")
        );
        assert_eq!(
            route("default/books", "GET", "/books/7/reviews"),
            Some("/books/{id}/reviews")
        );
        assert_eq!(
            route("default/books", "POST", "/checkout"),
            Some("/checkout")
        );
        assert_eq!(
            route("default/books", "HEAD", "/static/css/a.css"),
            Some("/static/{file*}")
        );
        assert_eq!(route("shop/web", "GET", "/"), Some("/"));
    }

    #[test]
    fn what_no_template_matches_is_the_default_route() {
        let r = routes();
        for (method, path) in [
            ("POST", "/books/1"),
            ("GET", "/books"),
            ("GET", "/books/"),
            ("GET", "/books/1/2"),
            ("GET", "/static"),
            ("GET", "/static/"),
            ("GET", "books/1"),
            ("GET", ""),
        ] {
            assert_eq!(
                r.route("default/books", method, path),
                Some(DEFAULT_ROUTE),
                "{method} {path}"
            );
        }
        assert_eq!(
            r.route("shop/web", "GET", "/index.html"),
            Some(DEFAULT_ROUTE)
        );
    }

    #[test]
    fn deployments_without_templates_keep_their_paths() {
        let r = routes();
        assert_eq!(r.route("default/authors", "GET", "/books/1"), None);
        assert_eq!(r.route("", "GET", "/books/1"), None);
        assert!(r.has("default/books") && !r.has("default/authors"));
    }

    #[test]
    fn a_bad_file_is_refused_with_its_line_and_reason() {
        for (text, line, says) in [
            ("default/books GET", 1, "found 2 field(s)"),
            ("\n\nbooks GET /a", 3, "namespace/name"),
            ("default/Books GET /a", 1, "lowercase"),
            ("default/books G(T /a", 1, "HTTP method"),
            ("default/books GET a", 1, "start with /"),
            ("default/books GET /a?b", 1, "without ?"),
            ("default/books GET /a/{}", 1, "parameter"),
            ("default/books GET /a/{x*}/b", 1, "last segment"),
            ("default/books GET /a/x{id}", 1, "whole segment"),
            ("default/books GET /a//b", 1, "empty segment"),
            (
                "default/books GET /a/{x}\ndefault/books GET /a/{y}",
                2,
                "listed twice",
            ),
        ] {
            let (n, reason) = Routes::parse(text).unwrap_err();
            assert_eq!(n, line, "{text:?}: {reason}");
            assert!(reason.contains(says), "{text:?}: {reason}");
        }
        let long = format!("default/books GET /{}", "a/".repeat(40));
        assert!(Routes::parse(&long).unwrap_err().1.contains("segments"));
    }

    #[test]
    fn the_file_holds_at_most_max_routes() {
        let text: String = (0..=MAX_ROUTES)
            .map(|i| format!("default/books GET /r{i}\n"))
            .collect();
        let (line, reason) = Routes::parse(&text).unwrap_err();
        assert_eq!(line, MAX_ROUTES + 1);
        assert!(reason.contains("more than"), "{reason}");
    }

    #[test]
    fn load_names_the_file() {
        let dir = std::env::temp_dir().join(format!("conduit-routes-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("routes");
        std::fs::write(&path, "default/books GET /a\ndefault/books GET nope\n").unwrap();
        let error = Routes::load(&path).unwrap_err().to_string();
        assert!(
            error.ends_with(":2: template \"nope\": it must start with /"),
            "{error}"
        );
        assert!(error.contains("routes"), "{error}");
        std::fs::write(&path, FILE).unwrap();
        assert!(Routes::load(&path).unwrap().has("shop/web"));
        let _ = std::fs::remove_dir_all(dir);
    }
}
