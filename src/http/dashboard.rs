//! `GET /`: the live dashboard, one HTML page with its stylesheet and script
//! inline, embedded in the binary (`src/http/dashboard/`).
//!
//! The page is static. Everything it shows it reads from the API in the
//! browser (`/stats`, `/health`, `/topics`, `/metrics`, `/events/{topic}/
//! {event_id}`, `/subscribe`), sending the reader's bearer token when the
//! server asks for one, so it can see nothing the API would not show that
//! reader, and `/` itself holds no data. Its Content-Security-Policy names
//! the inline stylesheet and script by their SHA-256 and allows connections
//! to this origin only: nothing else loads or runs, and an injected script
//! would not execute.
//!
//! The page is assembled, hashed and gzip-compressed once, on first use;
//! answers carry an `ETag`, so a reload costs a 304.

use std::io::Write;
use std::sync::LazyLock;

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use sha2::{Digest, Sha256};

const TEMPLATE: &str = include_str!("dashboard/index.html");
const STYLE: &str = include_str!("dashboard/dashboard.css");
const SCRIPT: &str = include_str!("dashboard/dashboard.js");

/// The page, ready to serve.
struct Page {
    html: String,
    gzip: Vec<u8>,
    content_security_policy: HeaderValue,
    etag: HeaderValue,
}

static PAGE: LazyLock<Page> = LazyLock::new(Page::build);

impl Page {
    fn build() -> Self {
        // The HTML parser ends a <script> or <style> element at the first
        // matching end tag, wherever it is: the unit tests check neither
        // source contains one.
        let html = TEMPLATE
            .replacen("{{style}}", STYLE, 1)
            .replacen("{{script}}", SCRIPT, 1);
        let policy = [
            "default-src 'none'".to_owned(),
            format!("script-src '{}'", sha256_source(SCRIPT)),
            format!("style-src '{}'", sha256_source(STYLE)),
            "connect-src 'self'".to_owned(),
            // The favicon is an inline SVG data URL.
            "img-src data:".to_owned(),
            "base-uri 'none'".to_owned(),
            "form-action 'none'".to_owned(),
            "frame-ancestors 'none'".to_owned(),
        ]
        .join("; ");
        let etag = format!("\"{}\"", &sha256_source(&html)["sha256-".len()..][..16]);
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        encoder
            .write_all(html.as_bytes())
            .expect("writing to a Vec cannot fail");
        Self {
            gzip: encoder.finish().expect("writing to a Vec cannot fail"),
            html,
            content_security_policy: HeaderValue::from_str(&policy)
                .expect("hashes and keywords are valid header characters"),
            etag: HeaderValue::from_str(&etag).expect("base64 is a valid header value"),
        }
    }
}

/// A CSP hash source (`sha256-<base64>`) for an inline element's content.
fn sha256_source(text: &str) -> String {
    format!("sha256-{}", BASE64.encode(Sha256::digest(text.as_bytes())))
}

/// Whether the client takes gzip (`Accept-Encoding` names it without `q=0`).
fn accepts_gzip(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|coding| {
            let mut parts = coding.split(';').map(str::trim);
            let name = parts.next().unwrap_or("");
            let refused = parts.any(|p| p.strip_prefix("q=").is_some_and(|q| q.parse() == Ok(0.0)));
            name.eq_ignore_ascii_case("gzip") && !refused
        })
}

/// The dashboard page.
#[utoipa::path(get, path = "/", tag = "operate",
    responses((status = 200, description = "The live dashboard", body = String, content_type = "text/html; charset=utf-8"),
              (status = 304, description = "The page is unchanged (If-None-Match)")))]
pub async fn page(headers: HeaderMap) -> Response {
    let page = &*PAGE;
    let common = [
        (
            header::CONTENT_SECURITY_POLICY,
            page.content_security_policy.clone(),
        ),
        (header::ETAG, page.etag.clone()),
        // Revalidate every time (a 304 while the binary is the same), so an
        // upgraded server never runs with a stale page.
        (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        (header::VARY, HeaderValue::from_static("accept-encoding")),
        (
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ),
        (
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ),
    ];
    let unchanged = headers
        .get(header::IF_NONE_MATCH)
        .is_some_and(|tags| tags.as_bytes() == page.etag.as_bytes());
    if unchanged {
        return (StatusCode::NOT_MODIFIED, common).into_response();
    }
    let html = HeaderValue::from_static("text/html; charset=utf-8");
    if accepts_gzip(&headers) {
        let gzip = HeaderValue::from_static("gzip");
        let head = [
            (header::CONTENT_TYPE, html),
            (header::CONTENT_ENCODING, gzip),
        ];
        (common, head, page.gzip.clone()).into_response()
    } else {
        (common, [(header::CONTENT_TYPE, html)], page.html.clone()).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_template_takes_the_stylesheet_and_the_script_once_each() {
        assert_eq!(TEMPLATE.matches("{{style}}").count(), 1);
        assert_eq!(TEMPLATE.matches("{{script}}").count(), 1);
        assert!(PAGE.html.contains(STYLE) && PAGE.html.contains(SCRIPT));
        assert!(!PAGE.html.contains("{{"), "a placeholder is left");
    }

    #[test]
    fn neither_inline_source_ends_its_element_early() {
        assert!(!SCRIPT.to_ascii_lowercase().contains("</script"));
        assert!(!STYLE.to_ascii_lowercase().contains("</style"));
    }

    #[test]
    fn the_policy_allows_exactly_the_inline_sources() {
        let policy = PAGE.content_security_policy.to_str().expect("ascii");
        assert!(policy.contains(&format!("script-src '{}'", sha256_source(SCRIPT))));
        assert!(policy.contains(&format!("style-src '{}'", sha256_source(STYLE))));
        assert!(policy.contains("connect-src 'self'"));
        assert!(!policy.contains("unsafe"));
    }

    #[test]
    fn gzip_is_sent_only_when_accepted() {
        let accept = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::ACCEPT_ENCODING, value.parse().expect("header"));
            accepts_gzip(&headers)
        };
        assert!(accept("gzip, deflate, br"));
        assert!(accept("br;q=1.0, GZIP;q=0.5"));
        assert!(!accept("gzip;q=0"));
        assert!(!accept("br, identity"));
        assert!(!accepts_gzip(&HeaderMap::new()));
    }
}
