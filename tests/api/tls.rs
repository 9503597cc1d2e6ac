//! HTTPS end to end: a CA and server certificates made in the test, the
//! real binary serving them, the operator CLI and the official Python SDK
//! verifying them, and SIGHUP swapping the certificate under live
//! connections.

use crate::common::{announce_skip, Backend, Deadline, ServerProcess, Storage, BIN};
use crate::rawhttp::{exchange, get};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

struct Pki {
    ca: CertifiedIssuer<'static, KeyPair>,
    dir: PathBuf,
}

/// A server certificate: PEM chain, PEM key, DER of the leaf.
struct Leaf {
    cert_pem: String,
    key_pem: String,
    der: Vec<u8>,
}

impl Pki {
    fn new(dir: &Path, name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, format!("Tessera test CA {name}"));
        let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        let pki = Self {
            ca,
            dir: dir.to_owned(),
        };
        std::fs::write(pki.ca_file(), pki.ca.pem()).unwrap();
        pki
    }

    fn ca_file(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    fn leaf(&self, cn: &str) -> Leaf {
        let mut params =
            CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
        params.distinguished_name.push(DnType::CommonName, cn);
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.ca).unwrap();
        Leaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            der: cert.der().to_vec(),
        }
    }
}

/// Writes a certificate and key where the server reads them (by rename, as
/// a certificate manager would).
fn install(leaf: &Leaf, cert: &Path, key: &Path) {
    let tmp = cert.with_extension("tmp");
    std::fs::write(&tmp, &leaf.cert_pem).unwrap();
    std::fs::rename(&tmp, cert).unwrap();
    std::fs::write(&tmp, &leaf.key_pem).unwrap();
    std::fs::rename(&tmp, key).unwrap();
}

struct TlsServer {
    server: ServerProcess,
    https: String,
    key: String,
    cert_file: PathBuf,
    key_file: PathBuf,
    _storage: Storage,
}

async fn serve_tls(pki: &Pki, leaf: &Leaf) -> TlsServer {
    let storage = Storage::new(Backend::Sqlite).await.unwrap();
    let data = storage.dir.path().join("data");
    let cert_file = pki.dir.join("server.pem");
    let key_file = pki.dir.join("server.key");
    install(leaf, &cert_file, &key_file);
    let (cmd, log) = ServerProcess::command(
        &data,
        &[
            "--tls-cert",
            cert_file.to_str().unwrap(),
            "--tls-key",
            key_file.to_str().unwrap(),
            "--header-read-timeout",
            "60s",
        ],
        &[],
    );
    let server = ServerProcess::launch(cmd, log).expect("server starts");
    let https = format!("https://localhost:{}", server.addr().port());
    let http = verifying_client(&pki.ca_file());
    let deadline = Deadline::new("ready over TLS");
    loop {
        if let Ok(r) = http.get(format!("{https}/readyz")).send().await {
            if r.status() == 200 {
                break;
            }
        }
        deadline.tick_showing(server.log_text()).await;
    }
    let key = std::fs::read_to_string(data.join("admin.key"))
        .unwrap()
        .trim()
        .to_owned();
    TlsServer {
        server,
        https,
        key,
        cert_file,
        key_file,
        _storage: storage,
    }
}

fn verifying_client(ca: &Path) -> reqwest::Client {
    tessera::cli::remote::http_client(Some(ca)).unwrap()
}

/// `tessera ARGS` against the server, with nothing in the environment that
/// would add trust behind the test's back.
fn cli(args: &[&str], envs: &[(&str, &str)]) -> std::process::Output {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .env_remove("SSL_CERT_FILE")
        .env_remove("SSL_CERT_DIR")
        .env_remove("TESSERA_CA_FILE")
        .env("TESSERA_LOG", "warn");
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_end_to_end_with_the_operator_cli_and_the_python_sdk() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path(), "one");
    let s = serve_tls(&pki, &pki.leaf("server-1")).await;
    let ca = pki.ca_file();
    let ca = ca.to_str().unwrap();
    let env = [("TESSERA_API_KEY", s.key.as_str())];

    // The operator CLI with --ca-file, and with TESSERA_CA_FILE.
    let out = cli(&["teams", "list", "--url", &s.https, "--ca-file", ca], &env);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("default"), "{stdout}");
    let out = cli(
        &["teams", "list", "--url", &s.https],
        &[env[0], ("TESSERA_CA_FILE", ca)],
    );
    assert!(out.status.success());

    // Without the CA the certificate does not verify: the CLI refuses.
    let out = cli(&["teams", "list", "--url", &s.https], &env);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.to_lowercase().contains("certificate"), "{err}");
    // Nor with another CA.
    let other_dir = tempfile::tempdir().unwrap();
    let other = Pki::new(other_dir.path(), "other");
    let out = cli(
        &[
            "teams",
            "list",
            "--url",
            &s.https,
            "--ca-file",
            other.ca_file().to_str().unwrap(),
        ],
        &env,
    );
    assert!(!out.status.success());

    // The official Python SDK over HTTPS, trusting the CA through the
    // variables httpx and requests read.
    match std::env::var("TESSERA_SDK_PYTHON") {
        Ok(python) if !python.is_empty() => {
            let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/sdk/sdk_compat.py");
            let out = Command::new(python)
                .arg(script)
                .env("TESSERA_URL", &s.https)
                .env("TESSERA_API_KEY", &s.key)
                .env("SSL_CERT_FILE", ca)
                .env("REQUESTS_CA_BUNDLE", ca)
                .output()
                .expect("run python");
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert!(
                out.status.success() && stdout.contains(" passed, 0 failed"),
                "SDK over HTTPS failed:\n{stdout}\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        _ => {
            assert!(
                std::env::var("CI").is_err(),
                "TESSERA_SDK_PYTHON is not set under CI: run the tests with scripts/test"
            );
            announce_skip(
                "tls::https_end_to_end_with_the_operator_cli_and_the_python_sdk (SDK part)",
                "TESSERA_SDK_PYTHON is not set",
            );
        }
    }
    assert!(!s.server.log_text().contains("PLAIN HTTP"));
}

fn tls_connector(ca: &Path) -> TlsConnector {
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pki_types::CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    // Full handshakes only: a resumed session would show the certificate of
    // the session it resumes.
    config.resumption = rustls::client::Resumption::disabled();
    TlsConnector::from(Arc::new(config))
}

type Tls = tokio_rustls::client::TlsStream<TcpStream>;

async fn connect(connector: &TlsConnector, port: u16) -> Tls {
    let tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    connector
        .connect("localhost".try_into().unwrap(), tcp)
        .await
        .unwrap()
}

fn peer_cert(s: &Tls) -> Vec<u8> {
    s.get_ref().1.peer_certificates().unwrap()[0].to_vec()
}

fn wait_for_log(server: &ServerProcess, needle: &str, times: usize) {
    let deadline = Deadline::new(format!("`{needle}` {times} time(s) in the log"));
    while server.log_text().matches(needle).count() < times {
        deadline.tick_blocking();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_swaps_the_certificate_while_connections_stay_up() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path(), "one");
    let first = pki.leaf("server-1");
    let s = serve_tls(&pki, &first).await;
    let port = s.server.addr().port();
    let connector = tls_connector(&pki.ca_file());

    let mut kept = connect(&connector, port).await;
    assert_eq!(peer_cert(&kept), first.der);
    assert_eq!(
        exchange(&mut kept, &get("/healthz")).await.unwrap().status,
        200
    );

    let second = pki.leaf("server-2");
    install(&second, &s.cert_file, &s.key_file);
    s.server.signal("HUP");
    wait_for_log(&s.server, "TLS certificate reloaded", 1);

    // The kept-alive connection is still up and keeps working.
    for _ in 0..3 {
        let r = exchange(&mut kept, &get("/healthz")).await.unwrap();
        assert_eq!(r.status, 200);
        assert!(!r.closes());
    }
    // New connections get the new certificate.
    let fresh = connect(&connector, port).await;
    assert_eq!(peer_cert(&fresh), second.der);

    // A broken reload keeps the certificate in use.
    std::fs::write(&s.key_file, "not a key").unwrap();
    s.server.signal("HUP");
    wait_for_log(&s.server, "TLS certificate reload failed", 1);
    let mut after = connect(&connector, port).await;
    assert_eq!(peer_cert(&after), second.der);
    assert_eq!(
        exchange(&mut after, &get("/healthz")).await.unwrap().status,
        200
    );
    assert_eq!(
        exchange(&mut kept, &get("/healthz")).await.unwrap().status,
        200
    );
    // A key that belongs to another certificate is refused too.
    let third = pki.leaf("server-3");
    std::fs::write(&s.cert_file, &third.cert_pem).unwrap();
    std::fs::write(&s.key_file, &second.key_pem).unwrap();
    s.server.signal("HUP");
    wait_for_log(&s.server, "TLS certificate reload failed", 2);
    let again = connect(&connector, port).await;
    assert_eq!(peer_cert(&again), second.der);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_on_a_non_loopback_address_is_warned_about() {
    let storage = Storage::new(Backend::Sqlite).await.unwrap();
    let data = storage.dir.path().join("data");
    let log = storage.dir.path().join("plain.log");
    let mut cmd = Command::new(BIN);
    cmd.args(["serve", "--listen", "0.0.0.0:0", "--data-dir"])
        .arg(&data)
        .env_remove("TESSERA_MASTER_KEY")
        .env_remove("TESSERA_DATABASE_URL")
        .env("TESSERA_LOG", "info")
        .stdout(std::process::Stdio::null());
    let server = ServerProcess::launch(cmd, log).unwrap();
    wait_for_log(&server, "PLAIN HTTP ON A NON-LOOPBACK ADDRESS", 1);
    // Loopback (every other test) is not warned about.
    let (_s2, loopback) = {
        let s2 = Storage::new(Backend::Sqlite).await.unwrap();
        let d2 = s2.dir.path().join("data");
        let p = ServerProcess::start(&d2, &[], &[]).unwrap();
        (s2, p)
    };
    assert!(!loopback.log_text().contains("PLAIN HTTP"));
}

#[test]
fn a_bad_certificate_stops_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let cert = dir.path().join("c.pem");
    let key = dir.path().join("k.pem");
    std::fs::write(&cert, "nothing").unwrap();
    std::fs::write(&key, "nothing").unwrap();
    let data = dir.path().join("data");
    let out = crate::common::run_cli(
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            data.to_str().unwrap(),
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ],
        &[],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("TLS certificate") || err.contains("no certificate"),
        "{err}"
    );
}

/// A WORKSPACE_READ_SECRETS key for the default team, over HTTPS.
async fn reader_key(s: &TlsServer, http: &reqwest::Client) -> String {
    let teams: serde_json::Value = http
        .get(format!("{}/v1/teams", s.https))
        .bearer_auth(&s.key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let team = teams["teams"][0]["id"].as_str().unwrap();
    let created: serde_json::Value = http
        .post(format!("{}/v1/teams/{team}/api_keys", s.https))
        .bearer_auth(&s.key)
        .json(&serde_json::json!({"type": "WORKSPACE_READ_SECRETS", "name": "tls-reader"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    created["api_key"].as_str().unwrap().to_owned()
}

async fn put(s: &TlsServer, http: &reqwest::Client, name: &str, value: &str) {
    let r = http
        .post(format!("{}/v1/secrets", s.https))
        .bearer_auth(&s.key)
        .json(&serde_json::json!({"name": name, "value": value}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_verifies_the_server_and_works_over_https() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path(), "one");
    let s = serve_tls(&pki, &pki.leaf("server-1")).await;
    let http = verifying_client(&pki.ca_file());
    let reader = reader_key(&s, &http).await;
    let value = crate::common::canary("over-tls");
    put(&s, &http, "tls-secret", &value).await;
    let out_dir = dir.path().join("secrets");
    let env = [("TESSERA_API_KEY", reader.as_str())];
    let ca = pki.ca_file();

    // With the CA: the files are written.
    let out = cli(
        &[
            "agent",
            "--once",
            "--dir",
            out_dir.to_str().unwrap(),
            "--url",
            &s.https,
            "--ca-file",
            ca.to_str().unwrap(),
        ],
        &env,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        std::fs::read_to_string(out_dir.join("tls-secret")).unwrap(),
        value
    );

    // Without it, or with another CA, the agent refuses the server and
    // writes nothing.
    let other_dir = tempfile::tempdir().unwrap();
    let other = Pki::new(other_dir.path(), "other");
    for extra in [vec![], vec!["--ca-file", other.ca_file().to_str().unwrap()]] {
        let empty = dir.path().join(format!("refused-{}", extra.len()));
        let mut args = vec![
            "agent",
            "--once",
            "--dir",
            empty.to_str().unwrap(),
            "--url",
            &s.https,
        ];
        args.extend(extra.iter().copied());
        let out = cli(&args, &env);
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr).to_lowercase();
        assert!(err.contains("certificate"), "{err}");
        assert!(!empty.join("tls-secret").exists());
        assert!(!err.contains(&value));
    }

    // `tessera run` too.
    let out = cli(
        &[
            "run",
            "--url",
            &s.https,
            "--ca-file",
            ca.to_str().unwrap(),
            "--",
            "sh",
            "-c",
            "test \"$TRUSS_SECRET_tls_secret\" = \"$WANT\"",
        ],
        &[env[0], ("WANT", value.as_str())],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_swaps_the_certificate_while_a_long_poll_stays_connected() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path(), "one");
    let s = serve_tls(&pki, &pki.leaf("server-1")).await;
    let http = verifying_client(&pki.ca_file());
    let reader = reader_key(&s, &http).await;
    put(&s, &http, "rotating", "before").await;
    let first = http
        .get(format!("{}/runtime/v1/secrets", s.https))
        .bearer_auth(&reader)
        .send()
        .await
        .unwrap();
    let etag = first.headers()["etag"].to_str().unwrap().to_owned();

    // A long poll in flight across the reload.
    let poll = {
        let (http, url, reader) = (
            http.clone(),
            format!("{}/runtime/v1/secrets?wait=30", s.https),
            reader.clone(),
        );
        tokio::spawn(async move {
            let r = http
                .get(url)
                .bearer_auth(reader)
                .header("If-None-Match", etag)
                .send()
                .await
                .unwrap();
            let status = r.status();
            (status, r.text().await.unwrap())
        })
    };
    s.server.wait_for_long_polls(1).await;
    let second = pki.leaf("server-2");
    install(&second, &s.cert_file, &s.key_file);
    s.server.signal("HUP");
    wait_for_log(&s.server, "TLS certificate reloaded", 1);
    assert!(!poll.is_finished(), "the long poll ended with the reload");

    // A write after the reload answers the waiting poll on its connection.
    put(&s, &http, "rotating", "after").await;
    let (status, body) = tokio::time::timeout(Duration::from_secs(10), poll)
        .await
        .expect("the long poll was answered")
        .unwrap();
    assert_eq!(status, 200);
    assert!(body.contains("\"after\""), "{body}");
    // And new connections see the new certificate.
    let fresh = connect(&tls_connector(&pki.ca_file()), s.server.addr().port()).await;
    assert_eq!(peer_cert(&fresh), second.der);
}

/// Makes a self-signed certificate for localhost with `openssl req -x509`
/// (as docs/operations.md shows), with `extra` arguments; `None` when there
/// is no `openssl` on this machine.
fn openssl_self_signed(dir: &Path, name: &str, extra: &[&str]) -> Option<(PathBuf, PathBuf)> {
    let (cert, key) = (
        dir.join(format!("{name}.pem")),
        dir.join(format!("{name}.key")),
    );
    let mut cmd = Command::new("openssl");
    cmd.args([
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-days",
        "30",
        "-subj",
        "/CN=localhost",
        "-addext",
        "subjectAltName=DNS:localhost,IP:127.0.0.1",
    ])
    .args(extra)
    .arg("-keyout")
    .arg(&key)
    .arg("-out")
    .arg(&cert);
    let out = cmd.output().ok()?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some((cert, key))
}

/// Issue 24, finding 15: a certificate from `openssl req -x509` is a CA
/// certificate (CA:TRUE), which clients refuse as a server's own even with
/// `--ca-file`. The error says what to do; doing it (a leaf certificate)
/// works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ca_certificate_served_as_the_server_s_own_is_explained() {
    let storage = Storage::new(Backend::Sqlite).await.unwrap();
    let dir = storage.dir.path().to_owned();
    let Some((ca_cert, ca_key)) = openssl_self_signed(&dir, "ca-as-leaf", &[]) else {
        announce_skip(
            "tls::a_ca_certificate_served_as_the_server_s_own_is_explained",
            "no openssl command",
        );
        return;
    };
    let start = |cert: &Path, key: &Path| {
        let data = dir.join("data");
        let (cmd, log) = ServerProcess::command(
            &data,
            &[
                "--tls-cert",
                cert.to_str().unwrap(),
                "--tls-key",
                key.to_str().unwrap(),
            ],
            &[],
        );
        let server = ServerProcess::launch(cmd, log).expect("server starts");
        let admin = std::fs::read_to_string(data.join("admin.key"))
            .unwrap()
            .trim()
            .to_owned();
        (server, admin)
    };
    let list = |server: &ServerProcess, admin: &str, ca: &Path| {
        let url = format!("https://localhost:{}", server.addr().port());
        cli(
            &["teams", "list", "--ca-file", ca.to_str().unwrap()],
            &[("TESSERA_URL", url.as_str()), ("TESSERA_API_KEY", admin)],
        )
    };

    let (server, admin) = start(&ca_cert, &ca_key);
    let out = list(&server, &admin, &ca_cert);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("CaUsedAsEndEntity"), "{stderr}");
    for advice in [
        "leaf certificate",
        "CA:FALSE",
        "--ca-file",
        "docs/operations.md",
    ] {
        assert!(stderr.contains(advice), "no {advice:?} in: {stderr}");
    }
    drop(server);

    // What the message says: a leaf certificate (here self-signed with
    // CA:FALSE, trusted as itself).
    let (leaf_cert, leaf_key) = openssl_self_signed(
        &dir,
        "leaf",
        &["-addext", "basicConstraints=critical,CA:FALSE"],
    )
    .unwrap();
    let (server, admin) = start(&leaf_cert, &leaf_key);
    let out = list(&server, &admin, &leaf_cert);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    drop(server);
}
