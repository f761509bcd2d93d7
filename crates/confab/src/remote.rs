//! A running server's administration API as the command line uses it (`--server URL`): one
//! HTTPS request per call, the server's CA trusted (`--ca`, else the data dir's), the token
//! from `--token` or `CONFAB_TOKEN`. Problem documents come back as `AdminError`s, so the
//! commands print the same errors either way.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::Args;
use confab_admin::{AdminError, Kind};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::header;

use crate::cli::UsageError;

/// Where administration goes when not to the database here.
#[derive(Debug, Clone, Args)]
pub(crate) struct RemoteArg {
    /// Work through this server's administration API instead of the database
    /// (https://HOST:PORT, the web port of a Front End).
    #[arg(long, global = true, env = "CONFAB_SERVER", value_name = "URL")]
    pub(crate) server: Option<String>,
    /// The API token (`confab admin token NAME` on a server); prefer the environment variable.
    #[arg(long, global = true, env = "CONFAB_TOKEN", hide_env_values = true)]
    pub(crate) token: Option<String>,
    /// The CA that issued the server's certificate [default: ca.pem in the data dir].
    #[arg(long, global = true, env = "CONFAB_CA", value_name = "FILE")]
    pub(crate) ca: Option<PathBuf>,
}

/// A server's API.
pub(crate) struct Api {
    host: String,
    port: u16,
    token: String,
    tls: Arc<rustls::ClientConfig>,
    runtime: tokio::runtime::Runtime,
}

/// An answer: status and body.
pub(crate) struct Answer {
    pub(crate) status: u16,
    pub(crate) body: Bytes,
}

impl Api {
    /// The API `remote` names, if it names one; `default_ca` is the data dir's CA.
    pub(crate) fn from_arg(
        remote: &RemoteArg,
        default_ca: impl FnOnce() -> Option<PathBuf>,
    ) -> anyhow::Result<Option<Self>> {
        let Some(url) = remote.server.as_deref() else {
            return Ok(None);
        };
        let rest = url.strip_prefix("https://").ok_or_else(|| {
            UsageError(format!(
                "--server {url}: give an https:// address (the API is served over HTTPS)"
            ))
        })?;
        let authority = rest.split('/').next().unwrap_or_default();
        let (host, port) = match authority.strip_prefix('[') {
            Some(v6) => {
                let (h, after) = v6.split_once(']').unwrap_or((v6, ""));
                (h, after.strip_prefix(':'))
            }
            None => match authority.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (authority, None),
            },
        };
        let port = match port {
            Some(p) => p
                .parse::<u16>()
                .map_err(|_| UsageError(format!("--server {url}: {p:?} is not a port")))?,
            None => 443,
        };
        let host = host.to_owned();
        let token = remote.token.clone().ok_or_else(|| {
            UsageError("--server needs a token: set CONFAB_TOKEN (or --token) to one made with `confab admin token NAME`".into())
        })?;
        let ca = remote.ca.clone().or_else(default_ca).ok_or_else(|| {
            UsageError("--server needs the CA that issued the server's certificate: give --ca FILE (ca.pem from the server's data dir)".into())
        })?;
        let roots = crate::pki::roots_from(&ca)?;
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("cannot start the HTTP client")?;
        Ok(Some(Self {
            host,
            port,
            token,
            tls: Arc::new(tls),
            runtime,
        }))
    }

    /// Sends `method path` with `body` (JSON); errors are the API's problems.
    pub(crate) fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<Answer, AdminError> {
        let answer = self
            .runtime
            .block_on(self.send(method, path, body))
            .map_err(|e| {
                AdminError::new(
                    Kind::Unavailable,
                    format!("cannot reach https://{}:{}: {e:#}", self.host, self.port),
                )
            })?;
        if answer.status >= 400 {
            let detail = serde_json::from_slice::<serde_json::Value>(&answer.body)
                .ok()
                .and_then(|p| p["detail"].as_str().map(str::to_owned))
                .unwrap_or_else(|| String::from_utf8_lossy(&answer.body).into_owned());
            let kind = match answer.status {
                400 | 405 | 413 | 415 => Kind::Invalid,
                401 => Kind::Unauthorized,
                403 => Kind::Forbidden,
                404 => Kind::NotFound,
                409 => Kind::Conflict,
                412 => Kind::Stale,
                503 => Kind::Unavailable,
                _ => Kind::Internal,
            };
            return Err(AdminError::new(kind, detail));
        }
        Ok(answer)
    }

    /// [`Api::call`] with a JSON answer.
    pub(crate) fn json<T: serde::de::DeserializeOwned>(
        &self,
        method: &str,
        path: &str,
        body: Option<&impl serde::Serialize>,
    ) -> Result<T, AdminError> {
        let body = body.map(|b| serde_json::to_vec(b).unwrap_or_default());
        let answer = self.call(method, path, body)?;
        serde_json::from_slice(&answer.body).map_err(|e| {
            AdminError::new(
                Kind::Internal,
                format!("the server's answer cannot be read: {e}"),
            )
        })
    }

    async fn send(
        &self,
        method: &str,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> anyhow::Result<Answer> {
        let tcp = tokio::net::TcpStream::connect((self.host.as_str(), self.port)).await?;
        let name = rustls::pki_types::ServerName::try_from(self.host.clone())?;
        let tls = tokio_rustls::TlsConnector::from(self.tls.clone())
            .connect(name, tcp)
            .await?;
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls)).await?;
        tokio::spawn(conn);
        let mut req = hyper::Request::builder()
            .method(method)
            .uri(format!("/api/v1{path}"))
            .header(header::HOST, format!("{}:{}", self.host, self.port))
            .header(header::AUTHORIZATION, format!("Bearer {}", self.token));
        if body.is_some() {
            req = req.header(header::CONTENT_TYPE, "application/json");
        }
        let req = req.body(Full::new(Bytes::from(body.unwrap_or_default())))?;
        let resp =
            tokio::time::timeout(std::time::Duration::from_secs(30), sender.send_request(req))
                .await
                .context("no answer in 30 s")??;
        let status = resp.status().as_u16();
        let body = resp.into_body().collect().await?.to_bytes();
        Ok(Answer { status, body })
    }
}

/// Percent-encodes a path segment or query value.
pub(crate) fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~@".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
