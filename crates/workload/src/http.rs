//! The HTTP client every command that talks to a server uses: the
//! operators' commands (`tessera teams …`) and the workload's (`agent`,
//! `run`). It lives with the workload so that the workload binary needs
//! nothing from the server's side.

use anyhow::{bail, Context};
use std::path::Path;

/// The HTTP client every command that talks to a server uses (operator
/// commands here; the agent and `run` too). HTTPS servers are verified
/// against the system's trust store (read by `rustls-native-certs`, which
/// also honours `SSL_CERT_FILE` and `SSL_CERT_DIR`) plus the CA certificates
/// in `ca_file`. There is deliberately no way to skip verification.
///
/// reqwest is built without roots of its own (`rustls-tls-manual-roots`):
/// the trust this function sets up is the only trust there is.
pub fn http_client(ca_file: Option<&Path>) -> anyhow::Result<reqwest::Client> {
    http_client_with(ca_file, Some(std::time::Duration::from_secs(30)))
}

/// [`http_client`] with a chosen overall timeout per request (`None` for
/// long polls, which bound each request themselves).
pub fn http_client_with(
    ca_file: Option<&Path>,
    timeout: Option<std::time::Duration>,
) -> anyhow::Result<reqwest::Client> {
    let mut builder =
        reqwest::Client::builder().connect_timeout(std::time::Duration::from_secs(10));
    if let Some(t) = timeout {
        builder = builder.timeout(t);
    }
    let native = rustls_native_certs::load_native_certs();
    let mut roots = 0usize;
    for der in native.certs {
        // A system certificate reqwest cannot use is skipped, as curl does.
        if let Ok(cert) = reqwest::Certificate::from_der(der.as_ref()) {
            builder = builder.add_root_certificate(cert);
            roots += 1;
        }
    }
    if let Some(path) = ca_file {
        let pem = std::fs::read(path)
            .with_context(|| format!("reading the CA file {}", path.display()))?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem)
            .with_context(|| format!("no PEM certificate in the CA file {}", path.display()))?;
        if certs.is_empty() {
            bail!("no PEM certificate in the CA file {}", path.display());
        }
        for cert in certs {
            builder = builder.add_root_certificate(cert);
            roots += 1;
        }
    }
    if roots == 0 {
        tracing::warn!(
            "no trusted CA certificates (empty system store and no --ca-file): \
             https:// servers cannot be verified"
        );
    }
    Ok(builder.build()?)
}

/// What to do about a TLS failure whose cause the error chain names only
/// by rustls's identifier.
pub fn tls_hint(chain: &str) -> Option<&'static str> {
    if chain.contains("CaUsedAsEndEntity") {
        // `openssl req -x509` makes a CA certificate (basicConstraints
        // CA:TRUE); TLS clients refuse one as a server's own certificate,
        // even when it is the very certificate they were told to trust.
        return Some(
            "The server presents a CA certificate (basicConstraints CA:TRUE, as `openssl req -x509` \
             makes by default) as its own: clients refuse that even with --ca-file. Serve a leaf \
             certificate instead: either one made with `-addext basicConstraints=critical,CA:FALSE` \
             (and trust that file with --ca-file), or a CA that signs a leaf (serve the leaf, trust the \
             CA with --ca-file). See docs/operations.md, TLS",
        );
    }
    None
}
