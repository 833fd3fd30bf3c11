//! What the commands that talk to a server share: its base URL, parsed and
//! checked once at the command line, the one way an endpoint's URL is made
//! from it, the bearer token they send ([`TokenArgs`]), and how an error
//! answer is read.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::str::FromStr;

use anyhow::Context;
use clap::Args;
use reqwest::StatusCode;
use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderValue, WWW_AUTHENTICATE};

use crate::api::Problem;

/// Longest non-JSON error body quoted in a message, in bytes.
const BODY_QUOTED_MAX: usize = 300;

/// A server's base URL, such as `http://127.0.0.1:8080` (a path prefix, as
/// behind a reverse proxy, is kept).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaseUrl(reqwest::Url);

impl BaseUrl {
    /// The URL a client on this machine reaches a server listening on
    /// `listen` at: a wildcard address becomes loopback.
    pub fn local(listen: SocketAddr) -> Self {
        let ip = match listen.ip() {
            IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
            ip => ip,
        };
        format!("http://{}", SocketAddr::new(ip, listen.port()))
            .parse()
            .expect("an http URL of a socket address is a base URL")
    }

    /// The URL of `path` (which starts with `/`) on this server.
    pub fn endpoint(&self, path: &str) -> reqwest::Url {
        let mut url = self.0.clone();
        let joined = format!("{}{path}", url.path().trim_end_matches('/'));
        url.set_path(&joined);
        url
    }
}

impl FromStr for BaseUrl {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let url = reqwest::Url::parse(text.trim())
            .map_err(|e| format!("{text:?} is not a URL ({e}); e.g. http://127.0.0.1:8080"))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(format!("{text:?}: give an http:// or https:// URL"));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(format!(
                "{text:?}: give the server's base URL, without a query or fragment"
            ));
        }
        Ok(Self(url))
    }
}

impl fmt::Display for BaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0.as_str().trim_end_matches('/'))
    }
}

/// Reads an error answer's body: a problem document, or else the body's
/// own (shortened) text as the detail.
pub fn problem(body: &[u8]) -> Problem {
    serde_json::from_slice(body).unwrap_or_else(|_| {
        let text = String::from_utf8_lossy(body);
        let text = text.trim();
        let mut end = text.len().min(BODY_QUOTED_MAX);
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        Problem {
            detail: text[..end].to_owned(),
            ..Problem::default()
        }
    })
}

/// The bearer token a client command sends, for a server started with
/// `--auth-tokens`. Flattened into each client command's arguments.
#[derive(Clone, Args)]
pub struct TokenArgs {
    /// Bearer token to send as `Authorization: Bearer` (for a server
    /// started with --auth-tokens). A flag shows in `ps`: prefer the
    /// variable or --token-file.
    #[arg(
        long,
        env = "LOGAGG_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN",
        conflicts_with = "token_file"
    )]
    pub token: Option<String>,

    /// File holding the bearer token (surrounding whitespace is ignored).
    #[arg(long, env = "LOGAGG_TOKEN_FILE", value_name = "FILE")]
    pub token_file: Option<PathBuf>,
}

impl fmt::Debug for TokenArgs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenArgs")
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("token_file", &self.token_file)
            .finish()
    }
}

impl TokenArgs {
    /// The headers every request of the command carries: `Authorization`
    /// (marked sensitive, so it is never printed) when a token was given.
    ///
    /// # Errors
    /// When the token file cannot be read, or the token is empty or holds
    /// characters a header cannot carry.
    pub fn headers(&self) -> anyhow::Result<HeaderMap> {
        let token = match (&self.token, &self.token_file) {
            (Some(token), _) => token.trim().to_owned(),
            (None, Some(path)) => std::fs::read_to_string(path)
                .with_context(|| format!("reading the token file {}", path.display()))?
                .trim()
                .to_owned(),
            (None, None) => return Ok(HeaderMap::new()),
        };
        anyhow::ensure!(
            !token.is_empty(),
            "the token is empty: give --token, --token-file or LOGAGG_TOKEN a token"
        );
        let mut value = HeaderValue::from_str(&format!("Bearer {token}"))
            .ok()
            .filter(|_| token.bytes().all(|b| b.is_ascii_graphic()))
            .context("the token holds spaces or characters an HTTP header cannot carry")?;
        value.set_sensitive(true);
        Ok(HeaderMap::from_iter([(AUTHORIZATION, value)]))
    }
}

/// One line for a 401 or 403 answer: which credential is wrong and what to
/// do about it; `None` for any other status. `sent_token` says whether the
/// request carried a token.
pub fn denied(status: StatusCode, headers: &HeaderMap, sent_token: bool) -> Option<String> {
    let challenge = headers
        .get(WWW_AUTHENTICATE)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default();
    match status {
        StatusCode::UNAUTHORIZED if !sent_token => Some(format!(
            "the server requires a bearer token ({status}): pass --token, --token-file or LOGAGG_TOKEN"
        )),
        StatusCode::UNAUTHORIZED => Some(format!(
            "the server refused the token ({status}): it is not in the server's --auth-tokens file; check --token, --token-file or LOGAGG_TOKEN"
        )),
        StatusCode::FORBIDDEN => {
            let scope = challenge
                .split_once("scope=\"")
                .and_then(|(_, rest)| rest.split_once('"'))
                .map_or("a needed", |(scope, _)| scope);
            Some(format!(
                "the token lacks the {scope} scope ({status}): use a token with {scope} (or admin)"
            ))
        }
        _ => None,
    }
}

/// What an answer is when it is not one of logagg's: every error logagg
/// sends is a problem document (`application/problem+json`), so any other
/// error body (an HTML page, a proxy's text) came from something else.
/// `None` for a problem document.
pub fn foreign_answer(headers: &reqwest::header::HeaderMap) -> Option<String> {
    unexpected_body(headers, "application/problem+json")
}

/// What an answer holds when its `Content-Type` is not `expected` (such as
/// "an HTML page"), or `None` when it is.
pub fn unexpected_body(headers: &reqwest::header::HeaderMap, expected: &str) -> Option<String> {
    let content_type = headers
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase())
        .unwrap_or_default();
    match content_type.as_str() {
        found if found == expected => None,
        "" => Some("a body without a Content-Type".to_owned()),
        "text/html" => Some("an HTML page".to_owned()),
        other => Some(format!("a body of type {other}")),
    }
}

/// The hint for an answer that did not come from logagg.
pub const CHECK_URL: &str = "not an answer from logagg; check --url (logagg's base URL, such as \
     http://127.0.0.1:8080) and any proxy in front of it";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_becomes_a_sensitive_header_and_a_bad_one_an_error() {
        let args = |token: Option<&str>| TokenArgs {
            token: token.map(str::to_owned),
            token_file: None,
        };
        assert!(args(None).headers().expect("no token").is_empty());
        let headers = args(Some(" abc-123 \n")).headers().expect("a token");
        assert_eq!(headers[AUTHORIZATION], "Bearer abc-123");
        assert!(headers[AUTHORIZATION].is_sensitive());
        assert!(!format!("{:?}", args(Some("abc-123"))).contains("abc-123"));
        for bad in ["", "two words", "caf\u{e9}"] {
            assert!(args(Some(bad)).headers().is_err(), "{bad:?}");
        }
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("token");
        std::fs::write(&path, "from-a-file\n").expect("write");
        let from_file = TokenArgs {
            token: None,
            token_file: Some(path),
        };
        assert_eq!(
            from_file.headers().expect("a token")[AUTHORIZATION],
            "Bearer from-a-file"
        );
    }

    #[test]
    fn refusals_say_which_credential_is_wrong() {
        let mut headers = HeaderMap::new();
        let say =
            |status, headers: &HeaderMap, sent| denied(status, headers, sent).unwrap_or_default();
        assert!(say(StatusCode::UNAUTHORIZED, &headers, false).contains("requires a bearer token"));
        assert!(say(StatusCode::UNAUTHORIZED, &headers, true).contains("refused the token"));
        headers.insert(
            WWW_AUTHENTICATE,
            HeaderValue::from_static(
                "Bearer realm=\"logagg\", error=\"insufficient_scope\", scope=\"publish\"",
            ),
        );
        assert!(say(StatusCode::FORBIDDEN, &headers, true).contains("lacks the publish scope"));
        assert_eq!(denied(StatusCode::NOT_FOUND, &headers, true), None);
    }

    #[test]
    fn endpoints_join_one_slash_and_keep_a_prefix() {
        let base: BaseUrl = "http://127.0.0.1:8080/".parse().expect("valid");
        assert_eq!(
            base.endpoint("/publish").as_str(),
            "http://127.0.0.1:8080/publish"
        );
        assert_eq!(base.to_string(), "http://127.0.0.1:8080");
        let prefixed: BaseUrl = "http://proxy/logagg".parse().expect("valid");
        assert_eq!(
            prefixed.endpoint("/stats").as_str(),
            "http://proxy/logagg/stats"
        );
    }

    #[test]
    fn only_http_and_https_base_urls_are_taken() {
        assert!("https://example.com".parse::<BaseUrl>().is_ok());
        for bad in ["ftp://example.com", "localhost:8080", "http://h/?q=1", ""] {
            assert!(bad.parse::<BaseUrl>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn only_problem_documents_are_logagg_answers() {
        let mut headers = reqwest::header::HeaderMap::new();
        assert_eq!(
            foreign_answer(&headers).as_deref(),
            Some("a body without a Content-Type")
        );
        for (content_type, foreign) in [
            ("application/problem+json", None),
            ("text/html; charset=utf-8", Some("an HTML page")),
            ("text/plain", Some("a body of type text/plain")),
        ] {
            headers.insert(
                reqwest::header::CONTENT_TYPE,
                content_type.parse().expect("header"),
            );
            assert_eq!(
                foreign_answer(&headers).as_deref(),
                foreign,
                "{content_type}"
            );
        }
    }

    #[test]
    fn error_bodies_are_read_leniently() {
        let problem_doc = problem(
            br#"{"title":"Events failed validation","detail":"1 problem(s)","errors":[{"index":2,"field":"topic","message":"is required"}]}"#,
        );
        assert_eq!(
            problem_doc.summary(),
            "Events failed validation: 1 problem(s)"
        );
        assert_eq!(problem_doc.errors[0].index, 2);
        assert_eq!(
            problem(b"  upstream exploded\n").summary(),
            "upstream exploded"
        );
        assert_eq!(problem(b"").summary(), "no details given");
    }
}
