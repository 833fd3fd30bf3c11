//! What the reading commands (`events`, `topics`, `stats`) share: the
//! server to ask and how to answer, one GET that turns an error answer into
//! a one-line message, and the aligned tables they print for people.
//!
//! Output is a table when stdout is a terminal and JSON (NDJSON for
//! `events`) otherwise, so `logagg events | jq` works as is; `--json` and
//! `--table` force one or the other.

use std::io::IsTerminal;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use serde::de::DeserializeOwned;

use super::client::{self, BaseUrl, TokenArgs};
use super::tls::TlsArgs;

/// The server and the output format, flattened into each reading command.
#[derive(Debug, Clone, Args)]
pub struct ReadArgs {
    /// Base URL of the server.
    #[arg(long, env = "LOGAGG_URL", default_value = "http://127.0.0.1:8080")]
    pub url: BaseUrl,

    /// Print JSON (NDJSON for events), also on a terminal.
    #[arg(long, conflicts_with = "table")]
    pub json: bool,

    /// Print a table, also when stdout is not a terminal.
    #[arg(long)]
    pub table: bool,

    #[command(flatten)]
    pub auth: TokenArgs,

    #[command(flatten)]
    pub tls: TlsArgs,
}

/// How a command prints its answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    /// Aligned columns, numbers with thousands separators.
    Table,
    /// What the API answered, as JSON (one document per line).
    Json,
}

impl ReadArgs {
    /// The output asked for, else a table on a terminal and JSON elsewhere.
    pub fn output(&self) -> Output {
        if self.json {
            Output::Json
        } else if self.table || std::io::stdout().is_terminal() {
            Output::Table
        } else {
            Output::Json
        }
    }

    /// An HTTP client for reads: connecting is bounded, a response body
    /// (a page of events) is not, as a large page takes a while to stream.
    pub fn client(&self) -> anyhow::Result<reqwest::Client> {
        let headers = self.auth.headers()?;
        self.tls.client(&self.url, |builder| {
            builder
                .connect_timeout(Duration::from_secs(5))
                .default_headers(headers.clone())
        })
    }
}

/// GETs `path` with `query` and reads the JSON answer as `T`.
///
/// # Errors
/// When the server cannot be reached, answers other than 2xx (the message
/// is the problem document's title and detail), or answers something that
/// is not the expected JSON (then `--url` probably names another service).
pub async fn get_json<T: DeserializeOwned>(
    http: &reqwest::Client,
    url: &BaseUrl,
    path: &str,
    query: &[(&str, String)],
) -> anyhow::Result<T> {
    let endpoint = url.endpoint(path);
    let response = http
        .get(endpoint.clone())
        .query(query)
        .send()
        .await
        .with_context(|| format!("reaching {endpoint} (is the server running? check --url)"))?;
    let status = response.status();
    // RFC 6750: the challenge names an error only when a token was sent.
    let sent_token = response
        .headers()
        .get(reqwest::header::WWW_AUTHENTICATE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|challenge| challenge.contains("error="));
    if let Some(denied) = client::denied(status, response.headers(), sent_token) {
        anyhow::bail!("{endpoint}: {denied}");
    }
    let foreign = client::foreign_answer(response.headers());
    let body = response
        .bytes()
        .await
        .with_context(|| format!("reading the answer of {endpoint}"))?;
    if let (false, Some(what)) = (status.is_success(), foreign) {
        anyhow::bail!(
            "{endpoint} answered {status} with {what}, {}",
            client::CHECK_URL
        );
    }
    if !status.is_success() {
        anyhow::bail!(
            "{endpoint} answered {status}: {}",
            client::problem(&body).summary()
        );
    }
    serde_json::from_slice(&body).map_err(|error| {
        anyhow::anyhow!(
            "{endpoint} did not answer as logagg does ({error}); check --url (logagg's base URL, such as http://127.0.0.1:8080)"
        )
    })
}

/// A table of text cells printed with aligned columns: text left-aligned,
/// numbers (columns marked `right`) right-aligned; two spaces between.
#[derive(Debug)]
pub struct Table {
    header: Vec<&'static str>,
    right: Vec<bool>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these columns; a column named in `right` is aligned
    /// right (numbers).
    pub fn new(header: &[&'static str], right: &[&'static str]) -> Self {
        Self {
            header: header.to_vec(),
            right: header.iter().map(|h| right.contains(h)).collect(),
            rows: Vec::new(),
        }
    }

    pub fn push(&mut self, row: Vec<String>) {
        debug_assert_eq!(row.len(), self.header.len(), "one cell per column");
        self.rows.push(row);
    }

    /// The table as lines of text, the header first when `with_header`; no
    /// line ends in spaces.
    pub fn render(&self, with_header: bool) -> String {
        let mut widths: Vec<usize> = self.header.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (width, cell) in widths.iter_mut().zip(row) {
                *width = (*width).max(cell.chars().count());
            }
        }
        let header: Vec<String> = self.header.iter().map(|h| (*h).to_owned()).collect();
        let lines = with_header.then_some(&header).into_iter().chain(&self.rows);
        let mut out = String::new();
        for row in lines {
            let mut line = String::new();
            for (column, cell) in row.iter().enumerate() {
                let pad = " ".repeat(widths[column] - cell.chars().count());
                if self.right[column] {
                    line.push_str(&pad);
                    line.push_str(cell);
                } else {
                    line.push_str(cell);
                    line.push_str(&pad);
                }
                line.push_str("  ");
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

/// `1234567` as `1,234,567`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

/// `text` cut to `max` characters, an ellipsis marking the cut.
pub fn shorten(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let mut short: String = text.chars().take(max.saturating_sub(1)).collect();
    short.push('…');
    short
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_get_thousands_separators() {
        for (n, text) in [
            (0, "0"),
            (999, "999"),
            (1_000, "1,000"),
            (1_234_567, "1,234,567"),
            (u64::MAX, "18,446,744,073,709,551,615"),
        ] {
            assert_eq!(thousands(n), text, "{n}");
        }
    }

    #[test]
    fn tables_align_text_left_and_numbers_right() {
        let mut table = Table::new(&["TOPIC", "EVENTS", "NOTE"], &["EVENTS"]);
        table.push(vec!["auth.login".into(), "1,234".into(), "x".into()]);
        table.push(vec!["a".into(), "5".into(), String::new()]);
        assert_eq!(
            table.render(true),
            "TOPIC       EVENTS  NOTE\n\
             auth.login   1,234  x\n\
             a                5\n"
        );
    }

    #[test]
    fn long_cells_are_shortened_with_an_ellipsis() {
        assert_eq!(shorten("abcdef", 4), "abc…");
        assert_eq!(shorten("abcd", 4), "abcd");
        assert_eq!(shorten("日本語です", 3), "日本…");
    }
}
