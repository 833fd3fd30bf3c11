//! What the commands that talk to a server share: its base URL, parsed and
//! checked once at the command line, the one way an endpoint's URL is made
//! from it, and how an error answer is read.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;

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

#[cfg(test)]
mod tests {
    use super::*;

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
