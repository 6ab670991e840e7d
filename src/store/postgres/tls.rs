//! TLS for PostgreSQL connections, through rustls (the `ring` provider), following libpq's
//! `sslmode`:
//! - `disable`: no TLS;
//! - `prefer` (the default) and `require`: TLS (`prefer` falls back to none when the server
//!   does not offer it), the server's certificate not checked, as libpq does; with an
//!   explicit `sslrootcert`, `require` checks the chain like `verify-ca` (libpq too);
//! - `verify-ca`: the chain must lead to a trusted root; the host name is not checked;
//! - `verify-full`: the chain and the host name are checked.
//!
//! The trusted roots are the PEM file named by `sslrootcert`, or else the system's store
//! (`rustls-native-certs`). Unix-socket connections never use TLS (as libpq). The pool and
//! the change listener connect with the same settings.

use std::sync::Arc;

use postgres::{Client, Config, NoTls};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use tokio_postgres_rustls::MakeRustlsConnect;

use super::params::{Params, SslMode};
use crate::error::{Error, Result};

/// How connections are made: plain, or through rustls.
#[derive(Clone)]
pub(super) enum Tls {
    Off,
    Rustls(MakeRustlsConnect),
}

/// Connect with `config` through `tls`.
pub(super) fn connect(config: &Config, tls: &Tls) -> std::result::Result<Client, postgres::Error> {
    match tls {
        Tls::Off => config.connect(NoTls),
        Tls::Rustls(make) => config.connect(make.clone()),
    }
}

/// The connector for the URL's `sslmode` and `sslrootcert`.
pub(super) fn connector(params: &Params) -> Result<Tls> {
    // `ring`, not rustls' default aws-lc-rs, whose C build needs cmake; the deprecation
    // only notes that ring offers no post-quantum key exchange.
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mode = match (params.ssl, &params.root_cert) {
        (SslMode::Disable, _) => return Ok(Tls::Off),
        (SslMode::Require, Some(_)) => SslMode::VerifyCa,
        (mode, _) => mode,
    };
    let verifier: Arc<dyn ServerCertVerifier> = match mode {
        SslMode::Prefer | SslMode::Require => Arc::new(Unchecked(provider.clone())),
        _ => {
            let webpki = WebPkiServerVerifier::builder_with_provider(
                Arc::new(roots(params)?),
                provider.clone(),
            )
            .build()
            .map_err(|e| Error::invalid(format!("PostgreSQL TLS roots: {e}")))?;
            if mode == SslMode::VerifyCa {
                Arc::new(ChainOnly(webpki))
            } else {
                webpki
            }
        }
    };
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Storage(format!("PostgreSQL TLS: {e}")))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    Ok(Tls::Rustls(MakeRustlsConnect::new(config)))
}

/// The trusted roots: the `sslrootcert` file, or the system's store.
fn roots(params: &Params) -> Result<RootCertStore> {
    let mut store = RootCertStore::empty();
    match &params.root_cert {
        Some(path) => {
            let shown = path.display();
            let certs = CertificateDer::pem_file_iter(path)
                .and_then(|it| it.collect::<std::result::Result<Vec<_>, _>>())
                .map_err(|e| {
                    Error::invalid(format!(
                        "sslrootcert {shown}: cannot read PEM certificates: {e}"
                    ))
                })?;
            let (added, _) = store.add_parsable_certificates(certs);
            if added == 0 {
                return Err(Error::invalid(format!(
                    "sslrootcert {shown}: no usable certificate in the file"
                )));
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            store.add_parsable_certificates(found.certs);
            if store.is_empty() {
                return Err(Error::invalid(
                    "sslmode verify-ca/verify-full: no sslrootcert given and the system has no \
                     trusted roots",
                ));
            }
        }
    }
    Ok(store)
}

/// `prefer` and `require`: encryption without checking who answers (libpq's semantics).
/// Handshake signatures are still verified.
#[derive(Debug)]
struct Unchecked(Arc<CryptoProvider>);

impl ServerCertVerifier for Unchecked {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
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
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
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

/// `verify-ca`: the full check, except that a certificate for another name is accepted
/// (the chain is checked before the name, so this never accepts an untrusted chain).
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
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
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
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}
