//! TLS inside the cluster. A cluster whose scheduler is addressed as `https://host:port` speaks
//! TLS on every connection: the server to the scheduler and to the executors (result
//! partitions), the executors to the scheduler and to each other (shuffles). Every client checks
//! the certificate it is shown against one CA, the one that signed the scheduler's and the
//! executors' certificates.
//!
//! Ballista 55 has the client side only: `ballista.client.use_tls` makes its clients dial
//! `https://`, and an endpoint override may add a CA. The executor dials the scheduler at an
//! `http://` address it builds itself, so the override also turns such an address into
//! `https://` (tonic speaks TLS only to `https` addresses).

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use ballista_core::extension::{BallistaConfigGrpcEndpoint, EndpointOverrideFn};
use ballista_core::utils::{GrpcClientConfig, create_grpc_client_endpoint};
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint};

/// The session setting that makes Ballista's clients (shuffle reads between executors) dial
/// `https://`.
pub const USE_TLS_SETTING: &str = "ballista.client.use_tls";

/// How a client inside the cluster checks the certificates it is shown.
#[derive(Clone, PartialEq, Eq)]
pub struct ClusterTls {
    /// The CA certificate(s), PEM.
    ca: Vec<u8>,
}

impl fmt::Debug for ClusterTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClusterTls")
            .field("ca_bytes", &self.ca.len())
            .finish()
    }
}

impl ClusterTls {
    /// Trusts the CA certificates of the PEM file at `path`, or says why it cannot.
    pub fn from_pem_file(path: &Path) -> Result<Self, String> {
        let ca = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        if !String::from_utf8_lossy(&ca).contains("-----BEGIN CERTIFICATE-----") {
            return Err(format!("{} holds no PEM certificate", path.display()));
        }
        Ok(Self { ca })
    }

    /// tonic's client TLS settings: trust the CA.
    pub fn client_config(&self) -> ClientTlsConfig {
        ClientTlsConfig::new().ca_certificate(Certificate::from_pem(&self.ca))
    }

    /// An endpoint to `address` (`https://host:port`) that speaks TLS.
    pub fn endpoint(&self, address: &str) -> Result<Endpoint, tonic::transport::Error> {
        Endpoint::from_shared(address.to_owned())?.tls_config(self.client_config())
    }

    /// Ballista's endpoint override: TLS on every connection it makes, `http://` addresses dialled
    /// as `https://` with Ballista's client settings.
    pub fn endpoint_override(&self) -> EndpointOverrideFn {
        let tls = self.client_config();
        Arc::new(move |endpoint: Endpoint| {
            let endpoint = match endpoint.uri().scheme_str() {
                Some("http") => {
                    let uri = endpoint.uri();
                    let authority = uri.authority().map(|a| a.as_str()).unwrap_or_default();
                    create_grpc_client_endpoint(
                        format!("https://{authority}"),
                        Some(&GrpcClientConfig::default()),
                    )?
                }
                _ => endpoint,
            };
            Ok(endpoint.tls_config(tls.clone())?)
        })
    }

    /// [`Self::endpoint_override`] as Ballista's clients take it.
    pub fn ballista_endpoint(&self) -> Arc<BallistaConfigGrpcEndpoint> {
        Arc::new(BallistaConfigGrpcEndpoint::new(self.endpoint_override()))
    }
}
