//! TLS termination through BoringSSL: one context per certificate, chosen by
//! SNI (exact name, then wildcard, then the default), ALPN offering h2 and
//! http/1.1, TLS 1.2 and 1.3 only.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use boring::asn1::Asn1Time;
use boring::bn::BigNum;
use boring::ec::{EcGroup, EcKey};
use boring::hash::MessageDigest;
use boring::nid::Nid;
use boring::pkey::{PKey, Private};
use boring::ssl::{
    AlpnError, NameType, SniError, SslAcceptor, SslContext, SslFiletype, SslMethod, SslVersion,
};
use boring::x509::extension::{BasicConstraints, ExtendedKeyUsage, SubjectAlternativeName};
use boring::x509::{X509, X509NameBuilder};

use crate::proxy::router::CertNames;

/// ALPN protocols in the server's order of preference, wire format.
const ALPN: &[u8] = b"\x02h2\x08http/1.1";

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: cannot load")]
    File {
        path: PathBuf,
        #[source]
        source: boring::error::ErrorStack,
    },
    #[error("{path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: not a PEM certificate")]
    NotPem {
        path: PathBuf,
        #[source]
        source: boring::error::ErrorStack,
    },
    #[error("{key}: does not match {cert}")]
    Mismatch {
        key: PathBuf,
        cert: PathBuf,
        #[source]
        source: boring::error::ErrorStack,
    },
    #[error("{0}")]
    Ssl(#[from] boring::error::ErrorStack),
    #[error("certificate {0} names no host (give `hosts` in the config)")]
    NoHosts(PathBuf),
}

/// A certificate to serve: PEM chain and key files, and the names it is for
/// (its subject alternative names when empty).
#[derive(Debug, Clone)]
pub struct CertFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub hosts: Vec<String>,
}

/// A TLS listener's acceptor and the names of its certificates.
pub struct Tls {
    pub acceptor: SslAcceptor,
    pub names: Arc<CertNames>,
    /// The certificates again, in the order `names` counts them, for
    /// QUIC handshakes: they set a connection's certificate themselves
    /// (see [`crate::front::h3`]).
    pub pairs: Vec<CertPair>,
}

/// One certificate chain and its key, parsed.
pub struct CertPair {
    pub leaf: X509,
    /// The intermediates, in the order the file gives them.
    pub chain: Vec<X509>,
    pub key: PKey<Private>,
}

/// Builds the acceptor for one TLS listener. The first certificate is the
/// default for clients whose SNI matches none.
pub fn acceptor(certs: &[CertFiles]) -> Result<Tls, TlsError> {
    let mut names = CertNames::default();
    let mut contexts = Vec::new();
    let mut pairs = Vec::new();
    for files in certs {
        let (context, hosts, pair) = context(files)?;
        pairs.push(pair);
        let index = contexts.len();
        for host in hosts {
            let host = host.to_ascii_lowercase();
            names.add(&host, index);
        }
        contexts.push(context);
    }
    let Some(default_files) = certs.first() else {
        return Err(TlsError::NoHosts(PathBuf::new()));
    };
    let mut builder = base_builder()?;
    load_pair(&mut builder, default_files)?;
    let names = Arc::new(names);
    let chooser = names.clone();
    builder.set_servername_callback(move |ssl, _alert| {
        let name = ssl.servername(NameType::HOST_NAME).map(str::to_owned);
        if let Some(index) = chooser.find(name.as_deref())
            && let Some(context) = contexts.get(index)
        {
            ssl.set_ssl_context(context)
                .map_err(|_| SniError::ALERT_FATAL)?;
        }
        Ok(())
    });
    Ok(Tls {
        acceptor: builder.build(),
        names,
        pairs,
    })
}

fn base_builder() -> Result<boring::ssl::SslAcceptorBuilder, TlsError> {
    let mut builder = SslAcceptor::mozilla_intermediate_v5(SslMethod::tls())?;
    builder.set_min_proto_version(Some(SslVersion::TLS1_2))?;
    builder.set_alpn_select_callback(|_, client| {
        boring::ssl::select_next_proto(ALPN, client).ok_or(AlpnError::NOACK)
    });
    Ok(builder)
}

fn load_pair(
    builder: &mut boring::ssl::SslAcceptorBuilder,
    files: &CertFiles,
) -> Result<(), TlsError> {
    let file_err = |path: &Path, source| TlsError::File {
        path: path.to_path_buf(),
        source,
    };
    builder
        .set_certificate_chain_file(&files.cert)
        .map_err(|e| file_err(&files.cert, e))?;
    builder
        .set_private_key_file(&files.key, SslFiletype::PEM)
        .map_err(|e| file_err(&files.key, e))?;
    builder
        .check_private_key()
        .map_err(|source| TlsError::Mismatch {
            key: files.key.clone(),
            cert: files.cert.clone(),
            source,
        })?;
    Ok(())
}

/// One context for one certificate, the names it serves, and the parsed
/// chain and key.
fn context(files: &CertFiles) -> Result<(SslContext, Vec<String>, CertPair), TlsError> {
    let read = |path: &PathBuf| {
        std::fs::read(path).map_err(|source| TlsError::Read {
            path: path.clone(),
            source,
        })
    };
    let pem = read(&files.cert)?;
    let not_pem = |source| TlsError::NotPem {
        path: files.cert.clone(),
        source,
    };
    let mut stack = X509::stack_from_pem(&pem).map_err(not_pem)?.into_iter();
    let leaf = match stack.next() {
        Some(leaf) => leaf,
        None => X509::from_pem(&pem).map_err(not_pem)?,
    };
    let names = if files.hosts.is_empty() {
        leaf.subject_alt_names()
            .map(|sans| {
                sans.iter()
                    .filter_map(|n| n.dnsname().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    } else {
        files.hosts.clone()
    };
    if names.is_empty() {
        return Err(TlsError::NoHosts(files.cert.clone()));
    }
    let mut builder = base_builder()?;
    load_pair(&mut builder, files)?;
    let key = PKey::private_key_from_pem(&read(&files.key)?).map_err(|source| TlsError::File {
        path: files.key.clone(),
        source,
    })?;
    let pair = CertPair {
        leaf,
        chain: stack.collect(),
        key,
    };
    Ok((builder.build().into_context(), names, pair))
}

/// A self-signed certificate for `hosts` (the first is the common name), as
/// PEM certificate and PEM private key. Used by the demo and by tests.
pub fn self_signed(hosts: &[&str]) -> Result<(String, String), TlsError> {
    let key = new_key()?;
    let cert = build_certificate(hosts, &key, None, false)?;
    pem_pair(&cert, &key)
}

/// A certificate authority for tests: PEM certificate and key.
pub fn certificate_authority(name: &str) -> Result<(String, String), TlsError> {
    let key = new_key()?;
    let cert = build_certificate(&[name], &key, None, true)?;
    pem_pair(&cert, &key)
}

/// A certificate for `hosts` signed by the authority in `ca_cert` / `ca_key` (PEM).
pub fn signed_certificate(
    hosts: &[&str],
    ca_cert: &str,
    ca_key: &str,
) -> Result<(String, String), TlsError> {
    let ca_cert = X509::from_pem(ca_cert.as_bytes())?;
    let ca_key = PKey::private_key_from_pem(ca_key.as_bytes())?;
    let key = new_key()?;
    let cert = build_certificate(hosts, &key, Some((&ca_cert, &ca_key)), false)?;
    pem_pair(&cert, &key)
}

fn new_key() -> Result<PKey<boring::pkey::Private>, TlsError> {
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1)?;
    Ok(PKey::from_ec_key(EcKey::generate(&group)?)?)
}

fn pem_pair(cert: &X509, key: &PKey<boring::pkey::Private>) -> Result<(String, String), TlsError> {
    let cert_pem = String::from_utf8_lossy(&cert.to_pem()?).into_owned();
    let key_pem = String::from_utf8_lossy(&key.private_key_to_pem_pkcs8()?).into_owned();
    Ok((cert_pem, key_pem))
}

/// A certificate for `hosts` (the first is the common name) over `key`,
/// signed by `issuer` or by itself; `ca` makes it a certificate authority.
fn build_certificate(
    hosts: &[&str],
    key: &PKey<boring::pkey::Private>,
    issuer: Option<(&X509, &PKey<boring::pkey::Private>)>,
    ca: bool,
) -> Result<X509, TlsError> {
    let mut name = X509NameBuilder::new()?;
    name.append_entry_by_text("CN", hosts.first().copied().unwrap_or("localhost"))?;
    let name = name.build();
    let mut cert = X509::builder()?;
    cert.set_version(2)?;
    let mut serial = [0u8; 8];
    boring::rand::rand_bytes(&mut serial)?;
    let serial = BigNum::from_slice(&serial)?.to_asn1_integer()?;
    cert.set_serial_number(&serial)?;
    cert.set_subject_name(&name)?;
    cert.set_issuer_name(issuer.map_or(&*name, |(c, _)| c.subject_name()))?;
    cert.set_pubkey(key)?;
    let not_before = Asn1Time::days_from_now(0)?;
    let not_after = Asn1Time::days_from_now(365)?;
    cert.set_not_before(&not_before)?;
    cert.set_not_after(&not_after)?;
    if ca {
        let constraints = BasicConstraints::new().critical().ca().build()?;
        cert.append_extension(&constraints)?;
    } else {
        let constraints = BasicConstraints::new().build()?;
        let usage = ExtendedKeyUsage::new()
            .server_auth()
            .client_auth()
            .build()?;
        cert.append_extension(&constraints)?;
        cert.append_extension(&usage)?;
        let mut sans = SubjectAlternativeName::new();
        for host in hosts {
            if host.parse::<std::net::IpAddr>().is_ok() {
                sans.ip(host);
            } else {
                sans.dns(host);
            }
        }
        let sans = sans.build(&cert.x509v3_context(issuer.map(|(c, _)| &**c), None))?;
        cert.append_extension(&sans)?;
    }
    cert.sign(issuer.map_or(key, |(_, k)| k), MessageDigest::sha256())?;
    Ok(cert.build())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn self_signed_certificates_load_into_an_acceptor() {
        let dir = tempfile::tempdir().unwrap();
        let mut certs = Vec::new();
        for (i, host) in ["a.test", "*.b.test"].iter().enumerate() {
            let (cert, key) = self_signed(&[host]).unwrap();
            let cert_path = dir.path().join(format!("{i}.pem"));
            let key_path = dir.path().join(format!("{i}.key"));
            std::fs::write(&cert_path, cert).unwrap();
            std::fs::write(&key_path, key).unwrap();
            certs.push(CertFiles {
                cert: cert_path,
                key: key_path,
                hosts: Vec::new(),
            });
        }
        acceptor(&certs).unwrap();
    }

    #[test]
    fn a_missing_file_is_named() {
        let files = CertFiles {
            cert: "/nonexistent/c.pem".into(),
            key: "/nonexistent/k.pem".into(),
            hosts: vec![],
        };
        let Err(err) = acceptor(&[files]) else {
            panic!("a missing file was accepted")
        };
        let err = err.to_string();
        assert!(err.starts_with("/nonexistent/c.pem"), "{err}");
    }
}
