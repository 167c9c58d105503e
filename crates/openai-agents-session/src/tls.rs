//! The TLS client setup the network backends share (Redis's `rediss://`, PostgreSQL's
//! `sslmode`): rustls with the ring provider, the trusted roots from a PEM file or the
//! system's, and the verifier that accepts any certificate (`tls_insecure=true`, and libpq's
//! `prefer` / `require`). Each backend's `tls.rs` only maps its own options onto these.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WantsClientCert;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, ConfigBuilder, DigitallySignedStruct, RootCertStore, SignatureScheme};

/// The ring provider and a builder on it with the safe default protocol versions.
pub(crate) fn builder() -> Result<
    (
        ConfigBuilder<ClientConfig, rustls::WantsVerifier>,
        Arc<CryptoProvider>,
    ),
    String,
> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup failed: {e}"))?;
    Ok((builder, provider))
}

/// A configuration that accepts any certificate (signatures are still checked, so the
/// handshake is a real one; the peer's identity is not).
pub(crate) fn accept_any(
    builder: ConfigBuilder<ClientConfig, rustls::WantsVerifier>,
    provider: Arc<CryptoProvider>,
) -> ConfigBuilder<ClientConfig, WantsClientCert> {
    builder
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAnything(provider)))
}

/// The trusted roots: the certificates of `ca_pem` when given (the file of option `option`,
/// named in the errors), else the system's.
pub(crate) fn roots(ca_pem: Option<&[u8]>, option: &str) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    match ca_pem {
        Some(pem) => {
            for cert in CertificateDer::pem_slice_iter(pem) {
                let cert =
                    cert.map_err(|e| format!("{option} holds no valid PEM certificate: {e}"))?;
                roots
                    .add(cert)
                    .map_err(|e| format!("{option} holds an unusable certificate: {e}"))?;
            }
            if roots.is_empty() {
                return Err(format!("{option} holds no certificate"));
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            for error in &found.errors {
                tracing::debug!(%error, "a system root certificate could not be loaded");
            }
            let (added, _) = roots.add_parsable_certificates(found.certs);
            if added == 0 {
                return Err(format!("no system root certificates found; set {option}"));
            }
        }
    }
    Ok(roots)
}

#[derive(Debug)]
struct AcceptAnything(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnything {
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
        rustls::crypto::verify_tls12_signature(
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
        rustls::crypto::verify_tls13_signature(
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
    fn a_file_without_certificates_is_named() {
        let err = roots(Some(b"not a certificate"), "sslrootcert").unwrap_err();
        assert_eq!(err, "sslrootcert holds no certificate");
        let err = roots(Some(b""), "tls_ca_file").unwrap_err();
        assert!(err.starts_with("tls_ca_file"), "{err}");
    }
}
