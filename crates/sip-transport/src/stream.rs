//! One TCP or TLS connection: a reader that frames messages and answers keep-alive pings, and a
//! writer fed by a queue. Both end when either side fails, the peer closes, or a timeout hits.

use std::sync::Arc;

use sip_proto::framing::{next_frame, Frame};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio::time::{timeout, Instant};

use crate::transports::Inner;
use crate::{Event, FlowId, Source, Stats};

/// Runs a connection (`source` says which: its flow, ends, whether the peer is verified) until
/// it ends, then removes it from the flow table.
pub(crate) async fn run<S>(
    inner: Arc<Inner>,
    stream: S,
    source: Source,
    mut rx: mpsc::Receiver<Vec<u8>>,
) where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let Source {
        transport,
        remote,
        flow,
        ..
    } = source;
    let flow: FlowId = flow.unwrap_or(0);
    let (mut rd, mut wr) = tokio::io::split(stream);
    let writer = tokio::spawn(async move {
        while let Some(bytes) = rx.recv().await {
            if wr.write_all(&bytes).await.is_err() {
                break;
            }
        }
        let _ = wr.shutdown().await;
    });
    let ended = read_loop(&inner, &mut rd, source).await;
    if ended == Ending::Unframeable {
        // The engine answers an unframeable message (400 naming the problem) on this flow:
        // stop reading, give the answer a moment to be queued, then let the writer drain the
        // queue and close. The flow table holds the queue's only sender, so removing the flow
        // ends the writer once it has written what was queued.
        tokio::time::sleep(UNFRAMEABLE_GRACE).await;
        inner.remove_flow(flow, transport, remote);
        let _ = timeout(UNFRAMEABLE_GRACE, writer).await;
    } else {
        writer.abort();
        inner.remove_flow(flow, transport, remote);
    }
    let _ = inner
        .events
        .send(Event::FlowClosed {
            flow,
            transport,
            remote,
        })
        .await;
}

/// Read buffer of a connection between messages; grows (doubling) for a message that needs more.
const IDLE_BUFFER: usize = 2048;

/// How long a connection that sent an unframeable message stays open for the answer.
const UNFRAMEABLE_GRACE: std::time::Duration = std::time::Duration::from_millis(500);

#[derive(Debug, PartialEq, Eq)]
enum Ending {
    /// The peer closed, a timeout hit, or reading failed.
    Closed,
    /// The peer sent bytes that cannot be cut into a message; it may get a 400 before closing.
    Unframeable,
}

async fn read_loop<R: AsyncRead + Unpin>(inner: &Inner, rd: &mut R, source: Source) -> Ending {
    let cfg = inner.config;
    // Read straight into `buf`; an idle connection keeps only a small buffer (memory per
    // connection is what bounds how many users one Front End holds).
    let mut buf: Vec<u8> = Vec::new();
    // when the first byte of the message now being read arrived
    let mut started: Option<Instant> = None;
    loop {
        // frame everything already buffered
        loop {
            match next_frame(&buf, cfg.max_message_size) {
                Ok(Frame::Ping) => {
                    buf.drain(..4);
                    inner.send_on_flow(source.flow.unwrap_or(0), b"\r\n".to_vec());
                }
                Ok(Frame::Skip) => {
                    buf.drain(..2);
                }
                Ok(Frame::Message(n)) => {
                    let bytes: Vec<u8> = buf.drain(..n).collect();
                    inner.deliver(bytes, source);
                }
                Ok(Frame::Incomplete) => break,
                Err(reason) => {
                    if reason == sip_proto::ParseError::TooLarge {
                        Stats::bump(&inner.stats.oversized);
                    } else {
                        Stats::bump(&inner.stats.unframeable);
                    }
                    tracing::warn!(event = "stream.unframeable", remote = %source.remote, %reason, "closing connection: message cannot be framed");
                    let bytes = std::mem::take(&mut buf);
                    let _ = inner.events.try_send(Event::Unframeable {
                        bytes,
                        source,
                        reason,
                    });
                    return Ending::Unframeable;
                }
            }
        }
        started = if buf.is_empty() {
            None
        } else {
            started.or(Some(Instant::now()))
        };
        let limit = match started {
            Some(t0) => (t0 + cfg.header_timeout).saturating_duration_since(Instant::now()),
            None => cfg.idle_timeout,
        };
        if buf.is_empty() && buf.capacity() > IDLE_BUFFER {
            buf = Vec::new(); // a large message has gone: give its room back
        }
        if buf.capacity() - buf.len() < IDLE_BUFFER / 4 {
            buf.reserve(if buf.is_empty() {
                IDLE_BUFFER
            } else {
                buf.len()
            });
        }
        match timeout(limit, rd.read_buf(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return Ending::Closed,
            Ok(Ok(_)) => {}
            Err(_) => {
                if started.is_some() {
                    Stats::bump(&inner.stats.header_timeouts);
                    tracing::warn!(event = "stream.slow_message", remote = %source.remote, "closing connection: message not complete within the header timeout");
                } else {
                    Stats::bump(&inner.stats.idle_closed);
                    tracing::debug!(event = "stream.idle", remote = %source.remote, "closing idle connection");
                }
                return Ending::Closed;
            }
        }
    }
}
