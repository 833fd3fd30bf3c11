//! Bearer-token authentication: which token may call which route.
//!
//! Tokens come from one file (`serve --auth-tokens FILE`), a token and its
//! scopes per line. Each route group of `http::router` is wrapped in a
//! guard naming the [`Scope`] it needs: `publish` for every ingest route,
//! `read` for every read route, and `/health` and `/metrics` as
//! `--health-access` and `--metrics-access` say; `admin` holds every scope.
//! The dashboard page (`GET /`) stays open: it is static and holds no data,
//! and its own requests send the reader's token; so does `/openapi.json`,
//! which describes the API. Without a tokens file no
//! route is wrapped and every route is open, as before authentication
//! existed.
//!
//! A request without a bearer token, or with one the server does not know,
//! is a 401; a known token without the route's scope is a 403. Both are
//! problem documents with the RFC 6750 `WWW-Authenticate` challenge
//! ([`Denial`]). Tokens are taken from the `Authorization` header only, never
//! from the query string (RFC 6750 §2.3 allows it, but a URL ends up in
//! logs, histories and `Referer`s; the dashboard reads `/subscribe` with
//! `fetch()`, which can send the header).
//!
//! Secrecy: the server keeps only each token's SHA-256 digest, and compares
//! a presented token's digest with every configured digest in constant time
//! (`subtle`), without stopping at a match, so timing reveals neither a
//! token's prefix nor which line matched. Nothing logs the `Authorization`
//! header (the request span names method, URI and request id only, the
//! URI with the value of an `access_token` or `token` parameter replaced
//! by `REDACTED`, for a client that tries the query string anyway), no
//! answer echoes a token, and a malformed line of the tokens file is
//! reported by file and line number, never by its text.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::{ApiError, AppState};

/// The fewest characters a token may have: shorter ones are guessable.
pub const TOKEN_CHARS_MIN: usize = 16;

/// The realm named in every challenge.
const REALM: &str = "logagg";

/// What a token may do. `Admin` holds the other two.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Every ingest route: `/publish`, `/publish/{topic}`, OTLP, Loki.
    Publish,
    /// Every read route: events, topics, stats, subscribe (and `/metrics`
    /// and `/health` when they are not open).
    Read,
    /// Every route.
    Admin,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Publish => "publish",
            Self::Read => "read",
            Self::Admin => "admin",
        }
    }

    fn bit(self) -> u8 {
        match self {
            Self::Publish => 1,
            Self::Read => 2,
            Self::Admin => 4,
        }
    }

    fn parse(name: &str) -> Option<Self> {
        match name {
            "publish" => Some(Self::Publish),
            "read" => Some(Self::Read),
            "admin" => Some(Self::Admin),
            _ => None,
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The scopes of one token.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Scopes(u8);

impl Scopes {
    fn with(self, scope: Scope) -> Self {
        Self(self.0 | scope.bit())
    }

    fn allow(self, scope: Scope) -> bool {
        self.0 & (scope.bit() | Scope::Admin.bit()) != 0
    }
}

/// Who may reach `/health` or `/metrics` when tokens are configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RouteAccess {
    /// Anyone, without a token.
    Open,
    /// A token with the `read` scope (or `admin`).
    Read,
}

/// The configured tokens, as SHA-256 digests with their scopes.
pub struct Tokens {
    entries: Vec<([u8; 32], Scopes)>,
}

impl fmt::Debug for Tokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Tokens({} configured)", self.entries.len())
    }
}

/// A tokens file that cannot be used. The message names the file and line,
/// never a token.
#[derive(Debug, thiserror::Error)]
pub enum TokensError {
    #[error("reading the tokens file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("tokens file {}:{line}: {problem}", path.display())]
    Malformed {
        path: PathBuf,
        line: usize,
        problem: String,
    },
    #[error(
        "{} holds no tokens: add a line `TOKEN SCOPE[,SCOPE...]`, or drop --auth-tokens to run without authentication",
        path.display()
    )]
    Empty { path: PathBuf },
}

impl Tokens {
    /// Reads a tokens file: one `TOKEN SCOPE[,SCOPE…]` per line, blank lines
    /// and lines starting with `#` skipped.
    ///
    /// # Errors
    /// When the file cannot be read, holds no token, or a line is malformed
    /// (the error names the file and line and says what to fix).
    pub fn load(path: &Path) -> Result<Self, TokensError> {
        let text = std::fs::read_to_string(path).map_err(|source| TokensError::Read {
            path: path.to_owned(),
            source,
        })?;
        let tokens = Self::parse(&text).map_err(|error| match error {
            ParseError::Line { line, problem } => TokensError::Malformed {
                path: path.to_owned(),
                line,
                problem,
            },
            ParseError::Empty => TokensError::Empty {
                path: path.to_owned(),
            },
        })?;
        // Only for a usable file: a malformed one stays a one-line error.
        warn_if_readable_by_others(path);
        Ok(tokens)
    }

    fn parse(text: &str) -> Result<Self, ParseError> {
        let mut entries: Vec<([u8; 32], Scopes)> = Vec::new();
        let mut lines_of_entries = Vec::new();
        for (index, line) in text.lines().enumerate() {
            let number = index + 1;
            let fail = |problem: String| ParseError::Line {
                line: number,
                problem,
            };
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let mut fields = line.split_whitespace();
            let token = fields.next().unwrap_or_default();
            let scopes = fields.next().ok_or_else(|| {
                fail("a token needs its scopes after a space: `TOKEN publish,read`".to_owned())
            })?;
            if fields.next().is_some() {
                return Err(fail(
                    "more than two fields: write `TOKEN SCOPE[,SCOPE...]` (scopes separated by commas, no spaces)"
                        .to_owned(),
                ));
            }
            check_token(token).map_err(fail)?;
            let scopes = parse_scopes(scopes).map_err(fail)?;
            let digest = digest(token.as_bytes());
            if let Some(first) = entries.iter().position(|(d, _)| *d == digest) {
                return Err(fail(format!(
                    "the token of line {} again: give each token once, with all its scopes",
                    lines_of_entries[first]
                )));
            }
            entries.push((digest, scopes));
            lines_of_entries.push(number);
        }
        if entries.is_empty() {
            return Err(ParseError::Empty);
        }
        Ok(Self { entries })
    }

    /// The scopes of the presented token, or `None` when it is not one of
    /// the configured tokens. Every configured digest is compared, in
    /// constant time, whether or not an earlier one matched.
    fn scopes_of(&self, presented: &[u8]) -> Option<Scopes> {
        let presented = digest(presented);
        let mut found = 0_u8;
        for (digest, scopes) in &self.entries {
            let matched = digest.ct_eq(&presented).unwrap_u8(); // 1 or 0
            found |= scopes.0 & matched.wrapping_neg(); // all ones when matched
        }
        // Every scope set is non-empty, so a match always sets a bit.
        (found != 0).then_some(Scopes(found))
    }

    /// Whether the request's bearer token holds `scope`.
    ///
    /// # Errors
    /// The [`Denial`] to answer with.
    fn authorize(&self, headers: &HeaderMap, scope: Scope) -> Result<(), Denial> {
        let deny = |reason| Denial { reason, scope };
        let mut values = headers.get_all(header::AUTHORIZATION).iter();
        let Some(value) = values.next() else {
            return Err(deny(Reason::Missing));
        };
        if values.next().is_some() {
            return Err(deny(Reason::Malformed));
        }
        let token = bearer_token(value.as_bytes()).ok_or(deny(Reason::Malformed))?;
        match self.scopes_of(token) {
            None => Err(deny(Reason::Unknown)),
            Some(scopes) if scopes.allow(scope) => Ok(()),
            Some(_) => Err(deny(Reason::LacksScope)),
        }
    }
}

/// Logs a warning when other users may read the tokens file, as ssh does
/// for a private key (a warning, not an error: a container may mount it
/// readable by design).
fn warn_if_readable_by_others(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(metadata) = std::fs::metadata(path) {
            let mode = metadata.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                tracing::warn!(
                    path = %path.display(),
                    mode = format!("{mode:o}"),
                    "other users may read the tokens file; `chmod 600` it"
                );
            }
        }
    }
}

enum ParseError {
    Line { line: usize, problem: String },
    Empty,
}

fn digest(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// A token is an RFC 6750 `b64token` (so it fits in a header as it is) of
/// at least [`TOKEN_CHARS_MIN`] characters. The message never quotes it.
fn check_token(token: &str) -> Result<(), String> {
    let body = token.trim_end_matches('=');
    let allowed = |c: char| c.is_ascii_alphanumeric() || "-._~+/".contains(c);
    if body.is_empty() || !body.chars().all(allowed) {
        return Err(
            "the token may hold only letters, digits, - . _ ~ + / and trailing = (e.g. from `openssl rand -hex 32`)"
                .to_owned(),
        );
    }
    if token.len() < TOKEN_CHARS_MIN {
        return Err(format!(
            "the token is shorter than {TOKEN_CHARS_MIN} characters, too easy to guess (e.g. `openssl rand -hex 32` makes a good one)"
        ));
    }
    Ok(())
}

fn parse_scopes(list: &str) -> Result<Scopes, String> {
    let mut scopes = Scopes::default();
    for name in list.split(',') {
        let scope = Scope::parse(name).ok_or_else(|| {
            format!("unknown scope {name:?}: the scopes are publish, read and admin, separated by commas")
        })?;
        scopes = scopes.with(scope);
    }
    Ok(scopes)
}

/// The token of an `Authorization: Bearer <token>` value (the scheme is
/// case-insensitive), or `None` for another scheme or an empty token.
fn bearer_token(value: &[u8]) -> Option<&[u8]> {
    let (scheme, rest) = value.split_at_checked(6)?;
    if !scheme.eq_ignore_ascii_case(b"bearer") || !rest.starts_with(b" ") {
        return None;
    }
    let token = rest.trim_ascii();
    (!token.is_empty()).then_some(token)
}

/// Why a request was refused, and the scope its route needs: the body of
/// a 401 or 403 ([`ApiError::Denied`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Denial {
    pub reason: Reason,
    pub scope: Scope,
}

/// What was wrong with the request's credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// 401: no `Authorization` header.
    Missing,
    /// 401: an `Authorization` header that is not one `Bearer <token>`.
    Malformed,
    /// 401: a bearer token the server does not know.
    Unknown,
    /// 403: a known token without the route's scope.
    LacksScope,
}

impl Denial {
    pub fn status(&self) -> StatusCode {
        match self.reason {
            Reason::LacksScope => StatusCode::FORBIDDEN,
            _ => StatusCode::UNAUTHORIZED,
        }
    }

    /// The `WWW-Authenticate` challenge, as RFC 6750 §3 shapes it: no error
    /// code when credentials are missing, `invalid_token` for a bad one,
    /// `insufficient_scope` with the needed scope.
    pub fn challenge(&self) -> HeaderValue {
        let challenge = match self.reason {
            Reason::Missing | Reason::Malformed => format!("Bearer realm=\"{REALM}\""),
            Reason::Unknown => format!("Bearer realm=\"{REALM}\", error=\"invalid_token\""),
            Reason::LacksScope => format!(
                "Bearer realm=\"{REALM}\", error=\"insufficient_scope\", scope=\"{}\"",
                self.scope
            ),
        };
        HeaderValue::from_str(&challenge).expect("the challenge is ASCII")
    }
}

impl fmt::Display for Denial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scope = self.scope;
        match self.reason {
            Reason::Missing => write!(
                f,
                "this server requires a bearer token: send `Authorization: Bearer TOKEN` with a token that has the {scope} scope"
            ),
            Reason::Malformed => write!(
                f,
                "the Authorization header must be one `Bearer TOKEN` (a token with the {scope} scope)"
            ),
            Reason::Unknown => write!(
                f,
                "the bearer token is not one this server knows: send a token from its --auth-tokens file with the {scope} scope"
            ),
            Reason::LacksScope => write!(
                f,
                "the bearer token lacks the {scope} scope that this route needs (admin holds every scope)"
            ),
        }
    }
}

/// Who may call what: the configured tokens (none: everything is open) and
/// the access rules of the two operator routes.
#[derive(Debug, Clone)]
pub struct Access {
    tokens: Option<Arc<Tokens>>,
    health: RouteAccess,
    metrics: RouteAccess,
}

impl Access {
    /// No authentication: every route open.
    pub fn open() -> Self {
        Self {
            tokens: None,
            health: RouteAccess::Open,
            metrics: RouteAccess::Open,
        }
    }

    /// Tokens (if any) and who may reach `/health` and `/metrics` when there
    /// are tokens.
    pub fn new(tokens: Option<Tokens>, health: RouteAccess, metrics: RouteAccess) -> Self {
        Self {
            tokens: tokens.map(Arc::new),
            health,
            metrics,
        }
    }

    /// Whether requests need a token at all.
    pub fn requires_tokens(&self) -> bool {
        self.tokens.is_some()
    }

    /// `routes`, each behind a guard that lets through only tokens with
    /// `scope` (unchanged without tokens).
    pub(crate) fn guard(&self, routes: Router<AppState>, scope: Scope) -> Router<AppState> {
        match &self.tokens {
            None => routes,
            Some(tokens) => routes.route_layer(axum::middleware::from_fn_with_state(
                Guard {
                    tokens: Arc::clone(tokens),
                    scope,
                },
                require_scope,
            )),
        }
    }

    /// `/health`'s routes, guarded as `--health-access` says.
    pub(crate) fn guard_health(&self, routes: Router<AppState>) -> Router<AppState> {
        self.guard_operator(routes, self.health)
    }

    /// `/metrics`'s routes, guarded as `--metrics-access` says.
    pub(crate) fn guard_metrics(&self, routes: Router<AppState>) -> Router<AppState> {
        self.guard_operator(routes, self.metrics)
    }

    fn guard_operator(&self, routes: Router<AppState>, access: RouteAccess) -> Router<AppState> {
        match access {
            RouteAccess::Open => routes,
            RouteAccess::Read => self.guard(routes, Scope::Read),
        }
    }

    /// Logs a loud warning when the server is reachable from other machines
    /// and anyone who reaches it may publish and read.
    pub fn warn_if_exposed(&self, address: SocketAddr) {
        if self.tokens.is_none() && !address.ip().is_loopback() {
            tracing::warn!(
                %address,
                "AUTHENTICATION IS OFF and the server listens beyond this machine: anyone who \
                 can reach it can publish and read every event. Give --auth-tokens FILE \
                 (see the README's Authentication section), or listen on 127.0.0.1"
            );
        }
    }
}

/// The state of one guard: the tokens and the scope its routes need.
#[derive(Clone)]
struct Guard {
    tokens: Arc<Tokens>,
    scope: Scope,
}

/// Lets the request through when its bearer token holds the guard's scope;
/// else answers 401 or 403.
async fn require_scope(State(guard): State<Guard>, request: Request, next: Next) -> Response {
    match guard.tokens.authorize(request.headers(), guard.scope) {
        Ok(()) => next.run(request).await,
        Err(denial) => ApiError::Denied(denial).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PUBLISHER: &str = "publisher-token-0123456789";
    const READER: &str = "reader-token-0123456789";
    const ADMIN: &str = "admin-token-0123456789";

    fn tokens() -> Tokens {
        let text = format!(
            "# who may do what\n\n{PUBLISHER} publish\n  {READER}\tread  \n{ADMIN} admin\nboth-token-0123456789 publish,read\n"
        );
        Tokens::parse(&text).unwrap_or_else(|_| panic!("a valid file"))
    }

    fn headers(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, value.parse().expect("header"));
        headers
    }

    fn reason(tokens: &Tokens, value: Option<&str>, scope: Scope) -> Option<Reason> {
        let headers = value.map(headers).unwrap_or_default();
        tokens.authorize(&headers, scope).err().map(|d| d.reason)
    }

    #[test]
    fn each_scope_allows_its_routes_and_admin_allows_all() {
        let tokens = tokens();
        let bearer = |token: &str| format!("Bearer {token}");
        for (token, publish, read) in [
            (PUBLISHER, true, false),
            (READER, false, true),
            (ADMIN, true, true),
            ("both-token-0123456789", true, true),
        ] {
            for (scope, allowed) in [(Scope::Publish, publish), (Scope::Read, read)] {
                let got = reason(&tokens, Some(&bearer(token)), scope);
                let want = (!allowed).then_some(Reason::LacksScope);
                assert_eq!(got, want, "{token} for {scope}");
            }
        }
        assert_eq!(
            reason(&tokens, Some(&format!("bearer  {ADMIN} ")), Scope::Admin),
            None,
            "the scheme is case-insensitive"
        );
    }

    #[test]
    fn missing_malformed_and_unknown_tokens_are_told_apart() {
        let tokens = tokens();
        let read = Scope::Read;
        assert_eq!(reason(&tokens, None, read), Some(Reason::Missing));
        for value in ["Basic dXNlcjpwYXNz", "Bearer", "Bearer ", "Bearertoken"] {
            assert_eq!(
                reason(&tokens, Some(value), read),
                Some(Reason::Malformed),
                "{value:?}"
            );
        }
        let prefix = &READER[..READER.len() - 1];
        for value in [format!("Bearer {prefix}"), format!("Bearer {READER}x")] {
            assert_eq!(reason(&tokens, Some(&value), read), Some(Reason::Unknown));
        }
        let mut twice = headers(&format!("Bearer {READER}"));
        twice.append(header::AUTHORIZATION, "Bearer other".parse().expect("h"));
        assert_eq!(
            tokens.authorize(&twice, read).map_err(|d| d.reason),
            Err(Reason::Malformed)
        );
    }

    #[test]
    fn challenges_follow_rfc_6750() {
        let denial = |reason| Denial {
            reason,
            scope: Scope::Read,
        };
        assert_eq!(
            denial(Reason::Missing).challenge(),
            "Bearer realm=\"logagg\""
        );
        assert_eq!(denial(Reason::Missing).status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            denial(Reason::Unknown).challenge(),
            "Bearer realm=\"logagg\", error=\"invalid_token\""
        );
        assert_eq!(
            denial(Reason::LacksScope).challenge(),
            "Bearer realm=\"logagg\", error=\"insufficient_scope\", scope=\"read\""
        );
        assert_eq!(denial(Reason::LacksScope).status(), StatusCode::FORBIDDEN);
    }

    #[test]
    fn malformed_lines_are_named_by_number_without_their_token() {
        let secret = "s3cret-token-abcdefghij";
        for (text, line, says) in [
            (format!("{secret}\n"), 1, "needs its scopes"),
            (
                format!("# c\n{secret} read,write\n"),
                2,
                "unknown scope \"write\"",
            ),
            (
                format!("\n\n{secret} read extra\n"),
                3,
                "more than two fields",
            ),
            ("short-token read\n".to_owned(), 1, "shorter than 16"),
            (
                "tok€n-0123456789abcdef read\n".to_owned(),
                1,
                "only letters",
            ),
            (
                format!("{secret} read\n{secret} publish\n"),
                2,
                "of line 1 again",
            ),
            (format!("{secret} read,\n"), 1, "unknown scope \"\""),
        ] {
            match Tokens::parse(&text) {
                Err(ParseError::Line { line: got, problem }) => {
                    assert_eq!(got, line, "{text:?}: {problem}");
                    assert!(problem.contains(says), "{text:?}: {problem}");
                    assert!(!problem.contains("s3cret"), "{problem}");
                }
                _ => panic!("{text:?} should be refused"),
            }
        }
        assert!(matches!(
            Tokens::parse("# only comments\n\n"),
            Err(ParseError::Empty)
        ));
    }

    #[test]
    fn tokens_are_kept_as_digests_and_never_printed() {
        let tokens = tokens();
        assert_eq!(format!("{tokens:?}"), "Tokens(4 configured)");
        let access = Access::new(Some(tokens), RouteAccess::Open, RouteAccess::Read);
        assert!(!format!("{access:?}").contains(PUBLISHER));
    }
}
