//! TLS for https endpoints: a rustls client configuration (ring provider) built from
//! `tls_config`, with Alloy's trust rules: the system roots, or only the configured CA when
//! one is given; optional client certificate; `server_name`; `insecure_skip_verify`;
//! `min_version`.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

use crate::config::{Secret, Tls, TlsVersion};

/// Which `tls_config` attribute a problem is about (so the config loader can point at it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsField {
    Ca,
    Cert,
    Key,
    ServerName,
    /// The system trust store.
    SystemRoots,
}

/// Why a TLS setup could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct TlsError {
    pub field: TlsField,
    pub message: String,
}

fn err(field: TlsField, message: impl Into<String>) -> TlsError {
    TlsError {
        field,
        message: message.into(),
    }
}

fn read(s: &Secret, field: TlsField, what: &str) -> Result<Vec<u8>, TlsError> {
    s.bytes().map_err(|e| {
        let file = s
            .file()
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        err(field, format!("reading {what} {file:?}: {e}"))
    })
}

fn certs(
    pem: &[u8],
    field: TlsField,
    what: &str,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| err(field, format!("{what}: invalid PEM: {e}")))?;
    if certs.is_empty() {
        return Err(err(field, format!("{what}: no PEM certificate found")));
    }
    Ok(certs)
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The trust roots: the configured CA only, or the system's (like Go's `x509.SystemCertPool`).
fn roots(tls: &Tls) -> Result<RootCertStore, TlsError> {
    let mut store = RootCertStore::empty();
    match &tls.ca {
        Some(ca) => {
            let pem = read(ca, TlsField::Ca, "CA")?;
            for c in certs(&pem, TlsField::Ca, "CA")? {
                store
                    .add(c)
                    .map_err(|e| err(TlsField::Ca, format!("CA certificate: {e}")))?;
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            // Unparsable entries in the system store are skipped, as Go does.
            let (added, _) = store.add_parsable_certificates(found.certs);
            if added == 0 {
                let why = found
                    .errors
                    .first()
                    .map(|e| format!(": {e}"))
                    .unwrap_or_default();
                return Err(err(
                    TlsField::SystemRoots,
                    format!(
                        "no system CA certificates found{why}; set tls_config.ca_file or ca_pem"
                    ),
                ));
            }
        }
    }
    Ok(store)
}

/// Builds the rustls client configuration (files are read now).
pub fn client_config(tls: &Tls) -> Result<ClientConfig, TlsError> {
    let versions: &[&rustls::SupportedProtocolVersion] = match tls.min_version {
        TlsVersion::Tls12 => &[&rustls::version::TLS13, &rustls::version::TLS12],
        TlsVersion::Tls13 => &[&rustls::version::TLS13],
    };
    let provider = provider();
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(versions)
        .map_err(|e| err(TlsField::Ca, format!("TLS setup: {e}")))?;
    let builder = if tls.insecure_skip_verify {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyCert(provider)))
    } else {
        builder.with_root_certificates(roots(tls)?)
    };
    let config = match (&tls.cert, &tls.key) {
        (Some(cert), Some(key)) => {
            let chain = certs(&read(cert, TlsField::Cert, "client certificate")?, TlsField::Cert, "client certificate")?;
            let key_pem = read(key, TlsField::Key, "client key")?;
            let key = PrivateKeyDer::from_pem_slice(&key_pem)
                .map_err(|e| err(TlsField::Key, format!("client key: invalid PEM private key: {e}")))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| err(TlsField::Key, format!("client certificate and key: {e}")))?
        }
        (Some(_), None) => {
            return Err(err(
                TlsField::Cert,
                "exactly one of key_pem or key_file must be configured when a client certificate is configured",
            ))
        }
        (None, Some(_)) => {
            return Err(err(
                TlsField::Key,
                "exactly one of cert_pem or cert_file must be configured when a client key is configured",
            ))
        }
        (None, None) => builder.with_no_client_auth(),
    };
    // ALPN is set by the connector: http/1.1 only, as Alloy's loki.write disables HTTP/2.
    Ok(config)
}

/// `server_name` as a rustls name.
pub fn server_name(name: &str) -> Result<ServerName<'static>, TlsError> {
    let trimmed = name
        .strip_prefix('[')
        .and_then(|n| n.strip_suffix(']'))
        .unwrap_or(name);
    ServerName::try_from(trimmed.to_string())
        .map_err(|e| err(TlsField::ServerName, format!("server_name {name:?}: {e}")))
}

/// `insecure_skip_verify`: any certificate is accepted, but the handshake signatures are
/// still checked so the connection is encrypted with the key the server holds.
#[derive(Debug)]
struct AcceptAnyCert(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_pem_and_missing_files_name_their_field() {
        let tls = Tls {
            ca: Some(Secret::Inline("not a certificate".into())),
            ..Tls::default()
        };
        assert_eq!(client_config(&tls).unwrap_err().field, TlsField::Ca);
        let tls = Tls {
            ca: Some(Secret::File("/nonexistent/ca.pem".into())),
            ..Tls::default()
        };
        let e = client_config(&tls).unwrap_err();
        assert_eq!(e.field, TlsField::Ca);
        assert!(e.message.contains("/nonexistent/ca.pem"), "{e}");
        let tls = Tls {
            insecure_skip_verify: true,
            cert: Some(Secret::Inline("x".into())),
            ..Tls::default()
        };
        assert_eq!(client_config(&tls).unwrap_err().field, TlsField::Cert);
    }

    #[test]
    fn server_names_accept_dns_names_and_ips() {
        assert!(server_name("loki.example").is_ok());
        assert!(server_name("127.0.0.1").is_ok());
        assert!(server_name("[::1]").is_ok());
        assert_eq!(
            server_name("bad name!").unwrap_err().field,
            TlsField::ServerName
        );
    }
}
