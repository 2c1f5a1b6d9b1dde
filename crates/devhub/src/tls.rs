//! TLS: a local CA and a server certificate for localhost, 127.0.0.1 and ::1 (and the hub
//! name), created in `--tls-dir` on first use; HTTPS/WSS and MQTT-over-TLS listeners.
//!
//! Clients trust `DIR/ca.pem` (the official SDKs take a CA file; browsers do not accept a
//! self-signed CA, so browser tests use plain `ws://`).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, KeyPair, KeyUsagePurpose,
    SanType,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::ServerConfig;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

use crate::net::{serve_stream, Shared};

/// Paths of the generated files.
pub struct TlsFiles {
    /// The CA certificate clients trust.
    pub ca: PathBuf,
    /// The server certificate.
    pub cert: PathBuf,
    /// The server key.
    pub key: PathBuf,
}

/// Creates the CA and server certificate in `dir` unless they are there already.
pub fn ensure_files(dir: &Path, hub_name: &str) -> Result<TlsFiles, String> {
    let files = TlsFiles {
        ca: dir.join("ca.pem"),
        cert: dir.join("server.pem"),
        key: dir.join("server-key.pem"),
    };
    if files.ca.is_file() && files.cert.is_file() && files.key.is_file() {
        return Ok(files);
    }
    std::fs::create_dir_all(dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
    let err = |e: rcgen::Error| format!("certificate generation: {e}");

    let ca_key = KeyPair::generate().map_err(err)?;
    let mut ca_params = CertificateParams::default();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "twinscope devhub local CA");
    ca_params.distinguished_name = dn;
    let ca = ca_params.self_signed(&ca_key).map_err(err)?;

    let mut names = vec!["localhost".to_string()];
    if hub_name != "localhost" && hub_name.parse::<IpAddr>().is_err() {
        names.push(hub_name.to_string());
    }
    let mut params = CertificateParams::new(names).map_err(err)?;
    params
        .subject_alt_names
        .push(SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)));
    params
        .subject_alt_names
        .push(SanType::IpAddress(IpAddr::V6(Ipv6Addr::LOCALHOST)));
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "localhost");
    params.distinguished_name = dn;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    let key = KeyPair::generate().map_err(err)?;
    let cert = params.signed_by(&key, &ca, &ca_key).map_err(err)?;

    let write = |p: &Path, s: String| {
        std::fs::write(p, s).map_err(|e| format!("write {}: {e}", p.display()))
    };
    write(&files.ca, ca.pem())?;
    write(&files.cert, cert.pem())?;
    write(&files.key, key.serialize_pem())?;
    Ok(files)
}

/// A rustls server configuration from the files, offering `alpn`.
pub fn server_config(files: &TlsFiles, alpn: &[&[u8]]) -> Result<Arc<ServerConfig>, String> {
    let read = |p: &Path| std::fs::read(p).map_err(|e| format!("read {}: {e}", p.display()));
    let certs: Vec<CertificateDer<'static>> = rustls_pemfile::certs(&mut &read(&files.cert)?[..])
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{}: {e}", files.cert.display()))?;
    let key: PrivateKeyDer<'static> = rustls_pemfile::private_key(&mut &read(&files.key)?[..])
        .map_err(|e| format!("{}: {e}", files.key.display()))?
        .ok_or_else(|| format!("{} holds no private key", files.key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| format!("server certificate: {e}"))?;
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(cfg))
}

/// Accepts the next TCP connection. Accept errors (file descriptors used up, say) are
/// logged and retried after a pause, as axum's own serve loop does, instead of spinning.
async fn accept(listener: &TcpListener) -> TcpStream {
    loop {
        match listener.accept().await {
            Ok((tcp, _)) => {
                // No Nagle delay: a device waits on each small answer.
                let _ = tcp.set_nodelay(true);
                return tcp;
            }
            Err(e) => {
                eprintln!("devhub: accept failed ({e}); retrying in 1 s");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

/// The TLS handshake, given at most the handshake timeout.
async fn handshake(
    shared: &Shared,
    acceptor: &TlsAcceptor,
    tcp: TcpStream,
) -> Option<tokio_rustls::server::TlsStream<TcpStream>> {
    match tokio::time::timeout(shared.limits.tls_handshake_timeout, acceptor.accept(tcp)).await {
        Ok(Ok(tls)) => Some(tls),
        Ok(Err(e)) => {
            if shared.verbose {
                eprintln!("devhub: TLS handshake failed: {e}");
            }
            None
        }
        Err(_) => {
            if shared.verbose {
                eprintln!(
                    "devhub: TLS handshake not finished within {:?}; closed",
                    shared.limits.tls_handshake_timeout
                );
            }
            None
        }
    }
}

/// Serves the HTTP router (REST and WSS) over TLS.
pub async fn serve_https(
    listener: TcpListener,
    cfg: Arc<ServerConfig>,
    app: axum::Router,
    shared: Arc<Shared>,
) {
    let acceptor = TlsAcceptor::from(cfg);
    loop {
        let tcp = accept(&listener).await;
        let Some(slot) = shared.tls_slot() else {
            continue;
        };
        let (acceptor, app, shared) = (acceptor.clone(), app.clone(), shared.clone());
        tokio::spawn(async move {
            let _slot = slot;
            let Some(tls) = handshake(&shared, &acceptor, tcp).await else {
                return;
            };
            let io = hyper_util::rt::TokioIo::new(tls);
            let svc = hyper_util::service::TowerToHyperService::new(app);
            let _ =
                hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new())
                    .serve_connection_with_upgrades(io, svc)
                    .await;
        });
    }
}

/// Serves MQTT over TLS (the hub's port 8883).
pub async fn serve_mqtt_tls(listener: TcpListener, cfg: Arc<ServerConfig>, shared: Arc<Shared>) {
    let acceptor = TlsAcceptor::from(cfg);
    loop {
        let tcp = accept(&listener).await;
        let Some(slot) = shared.device_slot() else {
            continue;
        };
        let (acceptor, shared) = (acceptor.clone(), shared.clone());
        tokio::spawn(async move {
            if let Some(tls) = handshake(&shared, &acceptor, tcp).await {
                serve_stream(shared, tls, slot).await;
            }
        });
    }
}
