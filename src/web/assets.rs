//! The dashboard's files, embedded at compile time: `index.html` (the one
//! page every client-side route answers, with the namespace and install id
//! filled in once at start) and the static assets under `/static/`.
//!
//! Asset names are not content-hashed, so responses carry an ETag (a hash of
//! the content, computed at compile time) and `Cache-Control: no-cache`:
//! browsers revalidate each time and get a 304 until the binary changes.

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::not_modified;

/// Revalidate on every use: asset names stay the same across releases.
const CACHE_CONTROL: &str = "no-cache";

/// The page loads only our own script, styles and API; nothing inline.
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; img-src 'self' data:; \
     object-src 'none'; base-uri 'none'; frame-ancestors 'none'";

const INDEX_TEMPLATE: &str = include_str!("assets/index.html");

/// One embedded static file.
pub struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static [u8],
    hash: u64,
}

macro_rules! asset {
    ($name:literal, $content_type:literal) => {
        Asset {
            name: $name,
            content_type: $content_type,
            body: include_bytes!(concat!("assets/", $name)),
            hash: fnv1a(include_bytes!(concat!("assets/", $name))),
        }
    };
}

const ASSETS: &[Asset] = &[
    asset!("app.js", "text/javascript; charset=utf-8"),
    asset!("app.css", "text/css; charset=utf-8"),
    asset!("favicon.svg", "image/svg+xml"),
];

/// FNV-1a, 64 bits: stable across builds and platforms, cheap at compile
/// time; collisions only cost a stale cache entry, never correctness
/// of the data shown.
const fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut i = 0;
    while i < bytes.len() {
        hash ^= bytes[i] as u64;
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        i += 1;
    }
    hash
}

fn etag(hash: u64) -> String {
    format!("\"{hash:016x}\"")
}

/// The asset served at `/static/<name>`.
pub fn find(name: &str) -> Option<&'static Asset> {
    ASSETS.iter().find(|a| a.name == name)
}

impl Asset {
    pub fn respond(&self, request: &HeaderMap) -> Response {
        respond(
            request,
            &etag(self.hash),
            self.content_type,
            Body::from(self.body),
            &[],
        )
    }
}

/// `index.html` with this installation's values filled in.
pub struct Page {
    html: String,
    etag: String,
}

/// Renders the page once: `{{namespace}}` and `{{uuid}}` are replaced by the
/// flags' values, HTML-escaped.
pub fn index_page(namespace: &str, uuid: &str) -> Page {
    let html = INDEX_TEMPLATE
        .replace("{{namespace}}", &escape_html(namespace))
        .replace("{{uuid}}", &escape_html(uuid));
    let etag = etag(fnv1a(html.as_bytes()));
    Page { html, etag }
}

impl Page {
    pub fn respond(&self, request: &HeaderMap) -> Response {
        respond(
            request,
            &self.etag,
            "text/html; charset=utf-8",
            Body::from(self.html.clone()),
            &[(header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY)],
        )
    }
}

fn respond(
    request: &HeaderMap,
    etag: &str,
    content_type: &'static str,
    body: Body,
    extra: &[(header::HeaderName, &'static str)],
) -> Response {
    let mut rsp = if not_modified(request, etag) {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        let mut rsp = (StatusCode::OK, body).into_response();
        rsp.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        rsp
    };
    let headers = rsp.headers_mut();
    if let Ok(value) = HeaderValue::from_str(etag) {
        headers.insert(header::ETAG, value);
    }
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static(CACHE_CONTROL),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    for (name, value) in extra {
        headers.insert(name, HeaderValue::from_static(value));
    }
    rsp
}

fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_carries_the_escaped_namespace() {
        let page = index_page("conduit<x>", "1234");
        assert!(page.html.contains("data-namespace=\"conduit&lt;x&gt;\""));
        assert!(page.html.contains("data-uuid=\"1234\""));
        assert!(!page.html.contains("{{"));
    }

    #[test]
    fn every_asset_the_page_links_is_embedded() {
        for link in INDEX_TEMPLATE.split("/static/").skip(1) {
            let name = link.split('"').next().unwrap();
            assert!(find(name).is_some(), "{name} is linked but not embedded");
        }
        assert!(find("../Cargo.toml").is_none());
    }

    #[test]
    fn etags_follow_the_content() {
        assert_ne!(fnv1a(b"a"), fnv1a(b"b"));
        assert_eq!(etag(0xab), "\"00000000000000ab\"");
    }
}
