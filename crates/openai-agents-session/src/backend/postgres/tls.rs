//! The TLS client configuration of each `sslmode`, through rustls (ring): `prefer` and
//! `require` encrypt without checking the certificate (as libpq does), `verify-ca` checks the
//! chain against `sslrootcert` (or the system's roots), `verify-full` the chain and the host.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, SignatureScheme};

use super::config::SslMode;
use crate::tls;

/// Builds the configuration for `mode`; `ca_pem` replaces the system's roots when given. The
/// rustls setup (provider, roots, the verifier that accepts any certificate) is the crate's
/// shared one (`src/tls.rs`); only `verify-ca`'s chain-only check is PostgreSQL's own.
pub(super) fn client_config(mode: SslMode, ca_pem: Option<&[u8]>) -> Result<ClientConfig, String> {
    let (builder, provider) = tls::builder()?;
    if matches!(mode, SslMode::Disable | SslMode::Prefer | SslMode::Require) {
        // As libpq: encrypted, the certificate not checked.
        return Ok(tls::accept_any(builder, provider).with_no_client_auth());
    }
    let roots = Arc::new(tls::roots(ca_pem, "sslrootcert")?);
    if mode == SslMode::VerifyFull {
        return Ok(builder.with_root_certificates(roots).with_no_client_auth());
    }
    let inner = WebPkiServerVerifier::builder_with_provider(roots, provider)
        .build()
        .map_err(|e| format!("TLS setup failed: {e}"))?;
    Ok(builder
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(ChainOnly(inner)))
        .with_no_client_auth())
}

/// `verify-ca`: the chain is checked, the host name is not.
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}
