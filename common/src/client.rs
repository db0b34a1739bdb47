//! Connecting to a Berth server: the channel (plain or TLS) and the bearer token that
//! goes on every call. Used by the CLI, the worker and the tests.

use std::path::Path;

use tonic::metadata::MetadataValue;
use tonic::service::Interceptor;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};

/// Why a connection could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The server URL is not usable.
    #[error("invalid server URL {url:?}: {reason}")]
    BadUrl {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The CA certificate file cannot be read.
    #[error("cannot read CA certificate {path}: {source}")]
    CaCert {
        /// The file.
        path: String,
        /// The error.
        source: std::io::Error,
    },
    /// The TCP/TLS connection failed.
    #[error("cannot connect to {url}: {source}")]
    Transport {
        /// The URL.
        url: String,
        /// The error, with its causes.
        source: tonic::transport::Error,
    },
}

/// Builds an endpoint for `url` (`http://host:port` or `https://host:port`). With `ca_cert`,
/// the server's certificate is checked against that CA; `https` without one uses the
/// system's web PKI roots.
pub fn endpoint(url: &str, ca_cert: Option<&Path>) -> Result<Endpoint, ConnectError> {
    let bad = |reason: String| ConnectError::BadUrl {
        url: url.to_owned(),
        reason,
    };
    let uri: http::Uri = url.parse().map_err(|e| bad(format!("{e}")))?;
    let scheme = uri.scheme_str().unwrap_or("").to_owned();
    if scheme != "http" && scheme != "https" {
        return Err(bad("the scheme must be http:// or https://".into()));
    }
    if uri.host().is_none() {
        return Err(bad("no host".into()));
    }
    let mut endpoint = Endpoint::from(uri)
        .connect_timeout(std::time::Duration::from_secs(10))
        .tcp_nodelay(true)
        .http2_keep_alive_interval(std::time::Duration::from_secs(30))
        .keep_alive_while_idle(true);
    if scheme == "https" || ca_cert.is_some() {
        let mut tls = ClientTlsConfig::new().with_enabled_roots();
        if let Some(path) = ca_cert {
            let pem = std::fs::read(path).map_err(|source| ConnectError::CaCert {
                path: path.display().to_string(),
                source,
            })?;
            tls = tls.ca_certificate(Certificate::from_pem(pem));
        }
        endpoint = endpoint.tls_config(tls).map_err(|e| bad(e.to_string()))?;
    }
    Ok(endpoint)
}

/// Connects to `url` at once (so a wrong address fails here, with a clear message).
pub async fn connect(url: &str, ca_cert: Option<&Path>) -> Result<Channel, ConnectError> {
    endpoint(url, ca_cert)?
        .connect()
        .await
        .map_err(|source| ConnectError::Transport {
            url: url.to_owned(),
            source,
        })
}

/// Adds `authorization: Bearer <token>` to every call.
#[derive(Clone)]
pub struct BearerAuth {
    header: Option<MetadataValue<tonic::metadata::Ascii>>,
}

impl BearerAuth {
    /// A bearer for `token`; a token that cannot be a header value sends none, which the
    /// server refuses as UNAUTHENTICATED.
    pub fn new(token: &str) -> BearerAuth {
        let header = format!("Bearer {}", token.trim()).parse().ok();
        BearerAuth { header }
    }
}

impl std::fmt::Debug for BearerAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BearerAuth([REDACTED])")
    }
}

impl Interceptor for BearerAuth {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(header) = &self.header {
            request
                .metadata_mut()
                .insert("authorization", header.clone());
        }
        Ok(request)
    }
}

/// Renders a status as one line for people: the code and the server's message.
pub fn describe_status(status: &tonic::Status) -> String {
    let code = format!("{:?}", status.code());
    let mut line = String::new();
    for (i, c) in code.chars().enumerate() {
        if c.is_uppercase() && i > 0 {
            line.push('_');
        }
        line.push(c.to_ascii_uppercase());
    }
    if status.message().is_empty() {
        line
    } else {
        format!("{line}: {}", status.message())
    }
}
