//! A `POST /publish` that acknowledges every event at once and stores
//! nothing: the ceiling of `logagg publish` on this machine, so the benchmark
//! can show the load generator is not what limits the real server.
//!
//! Run: `cargo run --release --example null_server -- 127.0.0.1:18090`

use axum::Router;
use axum::body::Bytes;
use axum::http::header;
use axum::routing::post;

/// Counts NDJSON lines (what `logagg publish` sends) without parsing them,
/// so the receipt matches what was sent and the publisher's checks pass.
async fn publish(body: Bytes) -> impl axum::response::IntoResponse {
    let events = body
        .split(|b| *b == b'\n')
        .filter(|line| line.iter().any(|b| !b.is_ascii_whitespace()))
        .count();
    (
        [(header::CONTENT_TYPE, "application/json")],
        format!(r#"{{"received":{events},"unique":{events},"duplicates":0,"conflicts":0}}"#),
    )
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let address = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:18090".to_owned());
    let listener = tokio::net::TcpListener::bind(&address).await?;
    eprintln!("null server on {address}");
    axum::serve(listener, Router::new().route("/publish", post(publish))).await
}
