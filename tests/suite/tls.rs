//! HTTPS (issue 11): a server started with `--tls-cert`/`--tls-key` serves
//! over TLS, and the CLI's clients verify it: with `--ca-cert` naming its
//! certificate they work, without it they fail with one line about the
//! certificate. The certificate is generated here (rcgen), no openssl.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::common::{REQUEST_TIMEOUT, TestApp, event, ndjson};

/// A self-signed certificate for 127.0.0.1 and localhost, and its key, as
/// PEM files in `dir`.
fn certificate(dir: &Path) -> (PathBuf, PathBuf) {
    let certified =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
            .expect("generating a certificate");
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert, certified.cert.pem()).expect("writing cert.pem");
    std::fs::write(&key, certified.signing_key.serialize_pem()).expect("writing key.pem");
    (cert, key)
}

/// Runs `logagg` with `args` to its end: success, stdout and stderr.
async fn logagg(args: &[&str]) -> (bool, String, String) {
    logagg_with_env(args, &[]).await
}

/// As [`logagg`], with extra environment variables.
async fn logagg_with_env(args: &[&str], env: &[(&str, &str)]) -> (bool, String, String) {
    let output = tokio::time::timeout(
        REQUEST_TIMEOUT,
        tokio::process::Command::new(env!("CARGO_BIN_EXE_logagg"))
            .args(args)
            .envs(env.iter().copied())
            .env_remove("LOGAGG_CA_CERT")
            .env_remove("RUST_LOG")
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("logagg finishes in time")
    .expect("running logagg");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test]
async fn https_serves_the_clients_that_trust_its_certificate_and_only_those() {
    let certs = tempfile::tempdir().expect("temp dir");
    let (cert, key) = certificate(certs.path());
    let app = TestApp::spawn_with(|config| {
        config.tls_cert = Some(cert.clone());
        config.tls_key = Some(key.clone());
    })
    .await;
    let url = format!("https://127.0.0.1:{}", app.addr.port());
    let ca = cert.to_str().expect("a UTF-8 path");

    let (ok, stdout, stderr) = logagg(&["health", "--url", &url, "--ca-cert", ca]).await;
    assert!(ok, "health with --ca-cert: {stdout}{stderr}");

    let input = certs.path().join("events.ndjson");
    std::fs::write(&input, ndjson(&[event("tls.a", "1"), event("tls.a", "2")])).expect("input");
    let input = input.to_str().expect("a UTF-8 path");
    let (ok, stdout, stderr) = logagg(&["publish", "--url", &url, "--ca-cert", ca, input]).await;
    assert!(ok, "publish with --ca-cert: {stdout}{stderr}");

    // A client trusting the certificate reads the events back over HTTPS.
    let trusted = reqwest::Client::builder()
        .add_root_certificate(
            reqwest::Certificate::from_pem(&std::fs::read(&cert).expect("cert"))
                .expect("a PEM certificate"),
        )
        .timeout(REQUEST_TIMEOUT)
        .build()
        .expect("a client");
    let page: Value = trusted
        .get(format!("{url}/events?topic=tls.a"))
        .send()
        .await
        .expect("GET /events over HTTPS")
        .json()
        .await
        .expect("a page");
    assert_eq!(page["events"].as_array().map(Vec::len), Some(2), "{page}");

    // Without the certificate: one line saying so, for each command.
    for args in [
        vec!["health", "--url", &url],
        vec!["publish", "--url", &url, input],
        vec!["subscribe", "--url", &url, "tls.>"],
    ] {
        let (ok, _, stderr) = logagg(&args).await;
        assert!(!ok, "{args:?} trusted an unknown certificate");
        let line = stderr.trim();
        assert!(
            line.contains("certificate is not trusted") && line.contains("--ca-cert"),
            "{args:?}: {stderr}"
        );
        assert_eq!(line.lines().count(), 1, "{args:?}: {stderr}");
    }
    // Plain HTTP to an HTTPS server gets no answer.
    assert!(
        reqwest::get(format!("http://127.0.0.1:{}/health", app.addr.port()))
            .await
            .is_err()
    );
}

#[tokio::test]
async fn a_certificate_without_its_key_is_a_one_line_configuration_error() {
    let certs = tempfile::tempdir().expect("temp dir");
    let (cert, _) = certificate(certs.path());
    let data = tempfile::tempdir().expect("temp dir");
    let (ok, _, stderr) = logagg(&[
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
        data.path().to_str().expect("UTF-8"),
        "--tls-cert",
        cert.to_str().expect("UTF-8"),
    ])
    .await;
    assert!(!ok);
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("--tls-cert and --tls-key go together"),
        "{stderr}"
    );
}

/// A system without root certificates, such as the `FROM scratch` image:
/// plain HTTP needs none, and HTTPS trusts `--ca-cert` alone.
#[tokio::test]
async fn without_system_roots_http_works_and_https_trusts_the_ca_cert_alone() {
    let certs = tempfile::tempdir().expect("temp dir");
    let (cert, key) = certificate(certs.path());
    let plain = TestApp::spawn().await;
    let tls = TestApp::spawn_with(|config| {
        config.tls_cert = Some(cert.clone());
        config.tls_key = Some(key.clone());
    })
    .await;
    let no_roots = [
        ("SSL_CERT_FILE", "/nonexistent/roots.pem"),
        ("SSL_CERT_DIR", "/nonexistent"),
    ];
    let plain_url = format!("http://127.0.0.1:{}", plain.addr.port());
    let (ok, stdout, stderr) = logagg_with_env(&["health", "--url", &plain_url], &no_roots).await;
    assert!(ok, "{stdout}{stderr}");
    let tls_url = format!("https://127.0.0.1:{}", tls.addr.port());
    let ca = cert.to_str().expect("a UTF-8 path");
    let (ok, stdout, stderr) =
        logagg_with_env(&["health", "--url", &tls_url, "--ca-cert", ca], &no_roots).await;
    assert!(ok, "{stdout}{stderr}");
}
