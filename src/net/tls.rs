//! TLS for QUIC push/pull: rustls (ring provider) configs from the cluster CA and node certificates,
//! with Consul's `verify_incoming` / `verify_outgoing` / `verify_server_hostname`; and the CA and node
//! certificate generation behind `murmur tls`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};

/// ALPN protocol of murmur's push/pull.
pub const ALPN: &[u8] = b"murmur-pp/1";

/// TLS settings of an agent (all optional, as in Consul).
#[derive(Debug, Clone, Default)]
pub struct TlsSettings {
    /// Cluster CA certificate (PEM).
    pub ca_file: Option<PathBuf>,
    /// This node's certificate (PEM).
    pub cert_file: Option<PathBuf>,
    /// This node's key (PEM).
    pub key_file: Option<PathBuf>,
    /// Require peers to present a certificate from the CA.
    pub verify_incoming: bool,
    /// Check peers' certificates against the CA.
    pub verify_outgoing: bool,
    /// Also require the peer's certificate to name `server.<dc>.<domain>`.
    pub verify_server_hostname: bool,
}

impl TlsSettings {
    /// True when peers are authenticated in both directions.
    pub fn mutual(&self) -> bool {
        self.verify_incoming && self.verify_outgoing
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs: Result<Vec<_>, _> = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("{}: {e}", path.display()))?
        .collect();
    let certs = certs.map_err(|e| format!("{}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no certificate found", path.display()));
    }
    Ok(certs)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| format!("{}: {e}", path.display()))
}

/// Builds the QUIC server and client configurations.
pub fn quic_configs(s: &TlsSettings) -> Result<QuicConfigs, String> {
    let provider = provider();
    let (chain, key) = match (&s.cert_file, &s.key_file) {
        (Some(c), Some(k)) => (read_certs(c)?, read_key(k)?),
        (None, None) => {
            // No certificate: the stream is still encrypted, but nobody is authenticated.
            let ck = rcgen::generate_simple_self_signed(vec!["murmur".to_string()])
                .map_err(|e| format!("self-signed certificate: {e}"))?;
            let key = PrivateKeyDer::try_from(ck.signing_key.serialize_der())
                .map_err(|e| format!("self-signed key: {e}"))?;
            (vec![ck.cert.der().clone()], key)
        }
        _ => return Err("cert_file and key_file must be given together".into()),
    };
    let roots = match &s.ca_file {
        Some(ca) => {
            let mut r = RootCertStore::empty();
            for c in read_certs(ca)? {
                r.add(c).map_err(|e| format!("{}: {e}", ca.display()))?;
            }
            Some(Arc::new(r))
        }
        None => None,
    };
    if (s.verify_incoming || s.verify_outgoing) && roots.is_none() {
        return Err("verify_incoming/verify_outgoing need ca_file".into());
    }
    if s.verify_incoming && s.cert_file.is_none() {
        return Err("verify_incoming needs cert_file and key_file".into());
    }

    let server_builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| e.to_string())?;
    let server_builder = match (&roots, s.verify_incoming) {
        (Some(r), true) => {
            let v = WebPkiClientVerifier::builder_with_provider(r.clone(), provider.clone())
                .build()
                .map_err(|e| e.to_string())?;
            server_builder.with_client_cert_verifier(v)
        }
        _ => server_builder.with_no_client_auth(),
    };
    let mut server = server_builder
        .with_single_cert(chain.clone(), key.clone_key())
        .map_err(|e| format!("node certificate: {e}"))?;
    server.alpn_protocols = vec![ALPN.to_vec()];

    let server =
        quinn::crypto::rustls::QuicServerConfig::try_from(server).map_err(|e| e.to_string())?;
    let mut transport = quinn::TransportConfig::default();
    transport.max_idle_timeout(Some(
        Duration::from_secs(10).try_into().expect("small timeout"),
    ));
    let transport = Arc::new(transport);
    let mut sc = quinn::ServerConfig::with_crypto(Arc::new(server));
    sc.transport_config(transport.clone());
    let client = |check_name: bool| -> Result<quinn::ClientConfig, String> {
        let verifier: Arc<dyn ServerCertVerifier> = match (&roots, s.verify_outgoing) {
            (Some(r), true) => Arc::new(CaVerifier {
                inner: rustls::client::WebPkiServerVerifier::builder_with_provider(
                    r.clone(),
                    provider.clone(),
                )
                .build()
                .map_err(|e| e.to_string())?,
                check_name,
            }),
            _ => Arc::new(AnyCert {
                provider: provider.clone(),
            }),
        };
        let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| e.to_string())?
            .dangerous()
            .with_custom_certificate_verifier(verifier);
        let mut client = if s.cert_file.is_some() {
            builder
                .with_client_auth_cert(chain.clone(), key.clone_key())
                .map_err(|e| format!("node certificate: {e}"))?
        } else {
            builder.with_no_client_auth()
        };
        client.alpn_protocols = vec![ALPN.to_vec()];
        let client =
            quinn::crypto::rustls::QuicClientConfig::try_from(client).map_err(|e| e.to_string())?;
        let mut cc = quinn::ClientConfig::new(Arc::new(client));
        cc.transport_config(transport.clone());
        Ok(cc)
    };
    Ok(QuicConfigs {
        server: sc,
        join: client(s.verify_server_hostname)?,
        member: client(false)?,
    })
}

/// The QUIC configurations of an agent.
pub struct QuicConfigs {
    /// Answering push/pulls.
    pub server: quinn::ServerConfig,
    /// Joining through an address an operator named: with `verify_server_hostname`, the peer must be a
    /// server (`server.<dc>.murmur`).
    pub join: quinn::ClientConfig,
    /// Periodic and reconnect exchanges with members gossip chose: any certificate from the CA, since
    /// clients answer push/pull as much as servers do (Consul checks no host name in gossip either).
    pub member: quinn::ClientConfig,
}

/// Chain verification against the CA; the host name only with `verify_server_hostname`, since every
/// member (client or server) answers push/pull.
#[derive(Debug)]
struct CaVerifier {
    inner: Arc<rustls::client::WebPkiServerVerifier>,
    check_name: bool,
}

impl ServerCertVerifier for CaVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .inner
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) if !self.check_name => Ok(ServerCertVerified::assertion()),
            r => r,
        }
    }
    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(m, c, d)
    }
    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(m, c, d)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// Accepts any certificate (signatures still checked): `verify_outgoing = false`, as in Consul.
#[derive(Debug)]
struct AnyCert {
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl ServerCertVerifier for AnyCert {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            m,
            c,
            d,
            &self.provider.signature_verification_algorithms,
        )
    }
    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            m,
            c,
            d,
            &self.provider.signature_verification_algorithms,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// File names `murmur tls` writes, in the current directory like Consul's.
pub fn ca_file_names(domain: &str) -> (String, String) {
    (
        format!("{domain}-agent-ca.pem"),
        format!("{domain}-agent-ca-key.pem"),
    )
}

/// Valid from an hour ago (clock skew between nodes) for `days` days.
fn validity(p: &mut CertificateParams, days: u32) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    if let Ok(t) = time::OffsetDateTime::from_unix_timestamp(now - 3600) {
        p.not_before = t;
    }
    p.not_after = p.not_before + Duration::from_secs(u64::from(days) * 86_400 + 3600);
}

fn ca_params(domain: &str, days: u32) -> CertificateParams {
    let mut p = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    // A fixed subject lets `tls cert create` rebuild the issuer from the CA key alone.
    dn.push(DnType::CommonName, format!("{domain} Agent CA"));
    p.distinguished_name = dn;
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    validity(&mut p, days);
    p
}

/// Creates a CA; returns (certificate PEM, key PEM).
pub fn create_ca(domain: &str, days: u32) -> Result<(String, String), String> {
    let key = KeyPair::generate().map_err(|e| e.to_string())?;
    let cert = ca_params(domain, days)
        .self_signed(&key)
        .map_err(|e| e.to_string())?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// Creates a node certificate signed by the CA key; usable as TLS server and client (both EKUs).
pub fn create_cert(
    ca_key_pem: &str,
    domain: &str,
    role: &str,
    dc: &str,
    days: u32,
    extra_dns: &[String],
    extra_ips: &[std::net::IpAddr],
) -> Result<(String, String), String> {
    let ca_key = KeyPair::from_pem(ca_key_pem).map_err(|e| format!("CA key: {e}"))?;
    let issuer = Issuer::new(ca_params(domain, days), ca_key);
    let name = format!("{role}.{dc}.{domain}");
    let mut p = CertificateParams::new(vec![name.clone(), "localhost".to_string()])
        .map_err(|e| e.to_string())?;
    for d in extra_dns {
        p.subject_alt_names.push(SanType::DnsName(
            d.clone()
                .try_into()
                .map_err(|_| format!("bad DNS name {d:?}"))?,
        ));
    }
    p.subject_alt_names
        .push(SanType::IpAddress(std::net::Ipv4Addr::LOCALHOST.into()));
    for ip in extra_ips {
        p.subject_alt_names.push(SanType::IpAddress(*ip));
    }
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, name);
    p.distinguished_name = dn;
    p.is_ca = IsCa::ExplicitNoCa;
    p.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    p.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    validity(&mut p, days);
    let key = KeyPair::generate().map_err(|e| e.to_string())?;
    let cert = p.signed_by(&key, &issuer).map_err(|e| e.to_string())?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// The system's trusted roots, read once (health checks of https endpoints verify against them).
fn system_roots() -> Arc<rustls::RootCertStore> {
    static ROOTS: std::sync::OnceLock<Arc<rustls::RootCertStore>> = std::sync::OnceLock::new();
    ROOTS
        .get_or_init(|| {
            let mut store = rustls::RootCertStore::empty();
            let found = rustls_native_certs::load_native_certs();
            let (added, _) = store.add_parsable_certificates(found.certs);
            if added == 0 {
                tracing::warn!("no system root certificates found: https checks cannot verify");
            }
            Arc::new(store)
        })
        .clone()
}

/// Client TLS for HTTPS and gRPC health checks: the system's roots, or with `skip_verify` any
/// certificate (Consul's `tls_skip_verify`); `alpn` names the protocols offered.
pub fn check_client(
    skip_verify: bool,
    alpn: &[&[u8]],
) -> Result<Arc<rustls::ClientConfig>, String> {
    let p = provider();
    let builder = rustls::ClientConfig::builder_with_provider(p.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let mut cfg = if skip_verify {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCert { provider: p }))
            .with_no_client_auth()
    } else {
        builder
            .with_root_certificates(system_roots())
            .with_no_client_auth()
    };
    cfg.alpn_protocols = alpn.iter().map(|a| a.to_vec()).collect();
    Ok(Arc::new(cfg))
}
