//! The web port's listener: HTTPS, and plain HTTP on the same port for what clients fetch
//! before they trust anything (autodiscover, health). The first byte tells them apart (a TLS
//! handshake starts with 0x16, an HTTP request with a letter). Each connection's first byte
//! and TLS handshake are awaited on a task of its own with a deadline, so a client that
//! connects and sends nothing holds one task for [`HANDSHAKE_TIMEOUT`], never the listener.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Semaphore};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

/// How long a new connection may take to send its first byte and finish its TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections being set up at once; more wait in the kernel's backlog.
const PENDING: usize = 256;

/// Where a request came from and how.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer {
    pub addr: SocketAddr,
    /// Over TLS (HTTPS).
    pub tls: bool,
}

/// A connection, over TLS or not.
pub enum Conn {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

/// The web port: TLS when given a configuration, plain HTTP as well.
pub struct WebListener {
    local: SocketAddr,
    ready: mpsc::Receiver<(Conn, Peer)>,
}

impl WebListener {
    /// Starts accepting on `listener`; `tls` is the server's HTTPS configuration (none: plain
    /// HTTP only).
    pub fn new(listener: TcpListener, tls: Option<Arc<rustls::ServerConfig>>) -> io::Result<Self> {
        let local = listener.local_addr()?;
        let (tx, ready) = mpsc::channel(64);
        let acceptor = tls.map(TlsAcceptor::from);
        tokio::spawn(accept_loop(listener, acceptor, tx));
        Ok(Self { local, ready })
    }
}

async fn accept_loop(
    listener: TcpListener,
    acceptor: Option<TlsAcceptor>,
    tx: mpsc::Sender<(Conn, Peer)>,
) {
    let pending = Arc::new(Semaphore::new(PENDING));
    loop {
        let Ok(permit) = pending.clone().acquire_owned().await else {
            return;
        };
        let (stream, addr) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "web front-end: accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let acceptor = acceptor.clone();
        let tx = tx.clone();
        tokio::spawn(async move {
            let setup = tokio::time::timeout(HANDSHAKE_TIMEOUT, set_up(stream, acceptor)).await;
            drop(permit);
            match setup {
                Ok(Ok((conn, tls))) => {
                    let _ = tx.send((conn, Peer { addr, tls })).await;
                }
                Ok(Err(e)) => {
                    tracing::debug!(%addr, error = %e, event = "web.handshake_failed", "web front-end: connection not set up");
                }
                Err(_) => {
                    tracing::debug!(%addr, event = "web.handshake_timeout", "web front-end: connection sent nothing in time");
                }
            }
        });
    }
}

async fn set_up(stream: TcpStream, acceptor: Option<TlsAcceptor>) -> io::Result<(Conn, bool)> {
    let mut first = [0u8; 1];
    let n = stream.peek(&mut first).await?;
    if n == 0 {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "closed before a byte",
        ));
    }
    match acceptor {
        Some(acceptor) if first[0] == 0x16 => {
            let tls = acceptor.accept(stream).await?;
            Ok((Conn::Tls(Box::new(tls)), true))
        }
        _ => Ok((Conn::Plain(stream), false)),
    }
}

impl WebListener {
    /// The next connection set up.
    pub async fn next(&mut self) -> Option<(Conn, Peer)> {
        self.ready.recv().await
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_flush(cx),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}
