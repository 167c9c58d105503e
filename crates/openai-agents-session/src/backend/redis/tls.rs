//! The TLS client configuration of `rediss://` stores: the CA from `tls_ca_file` or the
//! system's roots, and (with `tls_insecure=true`) a verifier that accepts any certificate;
//! the rustls setup is the crate's shared one (`src/tls.rs`).

use rustls::ClientConfig;

use crate::tls;

/// Builds the configuration; `ca_pem` replaces the system's roots when given.
pub(super) fn client_config(ca_pem: Option<&[u8]>, insecure: bool) -> Result<ClientConfig, String> {
    let (builder, provider) = tls::builder()?;
    if insecure {
        return Ok(tls::accept_any(builder, provider).with_no_client_auth());
    }
    let roots = tls::roots(ca_pem, "tls_ca_file")?;
    Ok(builder.with_root_certificates(roots).with_no_client_auth())
}
