//! Cross-origin requests: which other web origins' pages may call the API
//! from a browser (`serve --cors-origin`).
//!
//! Off by default: a browser then lets only pages served by logagg itself
//! (the dashboard) read its answers. Each `--cors-origin` allows one origin
//! (`https://ops.example.com`), or `*` any. Allowed: `GET` and `POST`, the
//! request headers the API reads (`Authorization` among them, so a page can
//! send a bearer token), and the answer headers a client needs to see
//! (`Retry-After`, `WWW-Authenticate`, `X-Request-Id`). Credentials in the
//! CORS sense (cookies, browser-held HTTP auth) are never allowed: the API
//! uses none, and a page sends its token explicitly. Preflights are
//! answered before routing and authentication (a preflight carries no
//! token), and every answer, refusals included, carries the headers, so a
//! page can read a 401's problem document.

use std::time::Duration;

use axum::http::{HeaderName, HeaderValue, Method, header};
use tower_http::cors::{AllowOrigin, CorsLayer};

/// How long a browser may cache a preflight's answer.
const PREFLIGHT_MAX_AGE: Duration = Duration::from_secs(3600);

/// The origins allowed to call the API from a browser.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum CorsOrigins {
    /// No cross-origin access (the default).
    #[default]
    Off,
    /// Any origin (`--cors-origin '*'`).
    Any,
    /// These origins, exactly (`scheme://host[:port]`).
    List(Vec<HeaderValue>),
}

impl CorsOrigins {
    /// From the values of `--cors-origin`, each already checked by
    /// [`parse_origin`]: none is off, a `*` among them is any.
    pub fn new(origins: &[String]) -> Self {
        if origins.is_empty() {
            Self::Off
        } else if origins.iter().any(|origin| origin == "*") {
            Self::Any
        } else {
            Self::List(
                origins
                    .iter()
                    .map(|origin| {
                        HeaderValue::from_str(origin).expect("parse_origin checked the origin")
                    })
                    .collect(),
            )
        }
    }

    /// The layer answering preflights and marking answers, or `None` when
    /// cross-origin access is off.
    pub(crate) fn layer(&self) -> Option<CorsLayer> {
        let allow = match self {
            Self::Off => return None,
            Self::Any => AllowOrigin::any(),
            Self::List(origins) => AllowOrigin::list(origins.iter().cloned()),
        };
        Some(
            CorsLayer::new()
                .allow_origin(allow)
                .allow_methods([Method::GET, Method::POST])
                .allow_headers([
                    header::AUTHORIZATION,
                    header::CONTENT_TYPE,
                    header::CONTENT_ENCODING,
                    HeaderName::from_static("last-event-id"),
                    HeaderName::from_static("x-request-id"),
                    HeaderName::from_static("x-logagg-source"),
                ])
                .expose_headers([
                    header::RETRY_AFTER,
                    header::WWW_AUTHENTICATE,
                    HeaderName::from_static("x-request-id"),
                ])
                .max_age(PREFLIGHT_MAX_AGE),
        )
    }
}

/// One `--cors-origin` value: `*`, or an origin as browsers send it in
/// `Origin` (`scheme://host[:port]`, no path), which is what it is
/// compared with.
///
/// # Errors
/// A message with an example, for clap to show beside the flag.
pub fn parse_origin(text: &str) -> Result<String, String> {
    let text = text.trim();
    if text == "*" {
        return Ok(text.to_owned());
    }
    let example = "e.g. https://ops.example.com or http://localhost:3000, or * for any";
    let url = reqwest::Url::parse(text)
        .map_err(|e| format!("{text:?} is not an origin ({e}); {example}"))?;
    let origin = url.origin().ascii_serialization();
    if origin != text.trim_end_matches('/') || !matches!(url.scheme(), "http" | "https") {
        return Err(format!(
            "{text:?} is not an origin: give scheme://host[:port] only ({origin:?}?); {example}"
        ));
    }
    Ok(origin)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_are_checked_and_normalized() {
        assert_eq!(parse_origin("*"), Ok("*".to_owned()));
        assert_eq!(
            parse_origin("https://ops.example.com/"),
            Ok("https://ops.example.com".to_owned())
        );
        assert_eq!(
            parse_origin("http://localhost:3000"),
            Ok("http://localhost:3000".to_owned())
        );
        for bad in [
            "ops.example.com",
            "https://ops.example.com/path",
            "ftp://x",
            "",
            "https://x?q=1",
        ] {
            assert!(parse_origin(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_star_among_the_origins_allows_any() {
        assert_eq!(CorsOrigins::new(&[]), CorsOrigins::Off);
        assert!(CorsOrigins::Off.layer().is_none());
        let any = CorsOrigins::new(&["https://a.example".to_owned(), "*".to_owned()]);
        assert_eq!(any, CorsOrigins::Any);
        let list = CorsOrigins::new(&["https://a.example".to_owned()]);
        assert_eq!(
            list,
            CorsOrigins::List(vec![HeaderValue::from_static("https://a.example")])
        );
    }
}
