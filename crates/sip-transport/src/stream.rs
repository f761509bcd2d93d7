//! One TCP or TLS connection, on one task: it frames what arrives (answering keep-alive pings)
//! and writes what is queued for it, until either side fails, the peer closes, or a timeout
//! hits.
//!
//! Memory per connection is what bounds how many users one Front End holds, so an idle
//! connection keeps no read buffer: reads land in a scratch buffer of the thread, borrowed only
//! while a read completes, and bytes are kept only while a message is incomplete.

use std::cell::RefCell;
use std::future::poll_fn;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;

use sip_proto::framing::{next_frame, Frame};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::time::{timeout, Instant};

use crate::flow_queue::FlowQueue;
use crate::transports::Inner;
use crate::{Event, FlowId, Source, Stats};

/// How long a connection that sent an unframeable message stays open for the answer.
const UNFRAMEABLE_GRACE: std::time::Duration = std::time::Duration::from_millis(500);

/// Bytes one read may bring.
const SCRATCH: usize = 16 * 1024;

thread_local! {
    /// The read buffer every connection on this thread shares, one read at a time.
    static SCRATCH_BUF: RefCell<Vec<u8>> = RefCell::new(vec![0; SCRATCH]);
}

/// Runs a connection (`source` says which: its flow, ends, whether the peer is verified) until
/// it ends, then removes it from the flow table.
pub(crate) async fn run<S>(inner: Arc<Inner>, stream: S, source: Source, queue: Arc<FlowQueue>)
where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let Source {
        transport,
        remote,
        flow,
        ..
    } = source;
    let flow: FlowId = flow.unwrap_or(0);
    let mut stream = stream;
    let mut conn = Reading::default();
    let ended = loop {
        let limit = conn.deadline(&inner);
        tokio::select! {
            read = timeout(limit, read_some(&mut stream, &mut conn.buf)) => {
                match read {
                    Ok(Ok(0)) | Ok(Err(_)) => break Ending::Closed,
                    Ok(Ok(_)) => {
                        if let Some(end) = conn.frame(&inner, source) {
                            break end;
                        }
                    }
                    Err(_) => break conn.timed_out(&inner, source),
                }
            }
            out = queue.pop() => match out {
                Some(bytes) => {
                    if stream.write_all(&bytes).await.is_err() {
                        break Ending::Closed;
                    }
                }
                None => break Ending::Closed, // closed by the engine, all written
            },
        }
    };
    if ended == Ending::Unframeable {
        // The engine answers an unframeable message (400 naming the problem) on this flow:
        // stop reading, give the answer a moment to be queued, write what was, then close.
        tokio::time::sleep(UNFRAMEABLE_GRACE).await;
        inner.remove_flow(flow, transport, remote);
        let _ = timeout(UNFRAMEABLE_GRACE, async {
            while let Some(bytes) = queue.pop().await {
                if stream.write_all(&bytes).await.is_err() {
                    break;
                }
            }
        })
        .await;
    } else {
        inner.remove_flow(flow, transport, remote);
    }
    let _ = timeout(UNFRAMEABLE_GRACE, stream.shutdown()).await;
    let _ = inner
        .events_for(flow)
        .send(Event::FlowClosed {
            flow,
            transport,
            remote,
        })
        .await;
}

/// Reads what is there into the thread's scratch buffer and appends it to `buf`; the number of
/// bytes, 0 at the end of the stream. Nothing is held while it waits.
async fn read_some<R: AsyncRead + Unpin>(rd: &mut R, buf: &mut Vec<u8>) -> std::io::Result<usize> {
    poll_fn(|cx| {
        SCRATCH_BUF.with(|scratch| {
            let mut scratch = scratch.borrow_mut();
            let mut rb = ReadBuf::new(&mut scratch[..]);
            match Pin::new(&mut *rd).poll_read(cx, &mut rb) {
                Poll::Ready(Ok(())) => {
                    buf.extend_from_slice(rb.filled());
                    Poll::Ready(Ok(rb.filled().len()))
                }
                Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
                Poll::Pending => Poll::Pending,
            }
        })
    })
    .await
}

#[derive(Debug, PartialEq, Eq)]
enum Ending {
    /// The peer closed, a timeout hit, or reading or writing failed.
    Closed,
    /// The peer sent bytes that cannot be cut into a message; it may get a 400 before closing.
    Unframeable,
}

/// What a connection has read of a message not complete yet.
#[derive(Default)]
struct Reading {
    buf: Vec<u8>,
    /// When the first byte of the message now being read arrived.
    started: Option<Instant>,
}

impl Reading {
    /// How long the next read may wait: the header timeout while a message is incomplete,
    /// the idle timeout between messages.
    fn deadline(&self, inner: &Inner) -> std::time::Duration {
        match self.started {
            Some(t0) => {
                (t0 + inner.config.header_timeout).saturating_duration_since(Instant::now())
            }
            None => inner.config.idle_timeout,
        }
    }

    /// Delivers every complete message read so far; `Some` when the connection must end.
    fn frame(&mut self, inner: &Inner, source: Source) -> Option<Ending> {
        let mut at = 0;
        loop {
            match next_frame(&self.buf[at..], inner.config.max_message_size) {
                Ok(Frame::Ping) => {
                    at += 4;
                    let _ = inner.send_on_flow(source.flow.unwrap_or(0), b"\r\n".to_vec());
                }
                Ok(Frame::Skip) => at += 2,
                Ok(Frame::Message(n)) if at == 0 && n == self.buf.len() => {
                    // the common case, one whole message: handed over, not copied
                    inner.deliver(std::mem::take(&mut self.buf), source);
                    break;
                }
                Ok(Frame::Message(n)) => {
                    inner.deliver(self.buf[at..at + n].to_vec(), source);
                    at += n;
                }
                Ok(Frame::Incomplete) => break,
                Err(reason) => {
                    if reason == sip_proto::ParseError::TooLarge {
                        Stats::bump(&inner.stats.oversized);
                    } else {
                        Stats::bump(&inner.stats.unframeable);
                    }
                    tracing::warn!(event = "stream.unframeable", remote = %source.remote, %reason, "closing connection: message cannot be framed");
                    let bytes = std::mem::take(&mut self.buf);
                    let _ =
                        inner
                            .events_for(source.flow.unwrap_or(0))
                            .try_send(Event::Unframeable {
                                bytes,
                                source,
                                reason,
                            });
                    return Some(Ending::Unframeable);
                }
            }
        }
        if at == self.buf.len() {
            // nothing pending: an idle connection keeps no buffer
            self.buf = Vec::new();
            self.started = None;
        } else {
            self.buf.drain(..at);
            self.started = self.started.or(Some(Instant::now()));
        }
        None
    }

    fn timed_out(&self, inner: &Inner, source: Source) -> Ending {
        if self.started.is_some() {
            Stats::bump(&inner.stats.header_timeouts);
            tracing::warn!(event = "stream.slow_message", remote = %source.remote, "closing connection: message not complete within the header timeout");
        } else {
            Stats::bump(&inner.stats.idle_closed);
            tracing::debug!(event = "stream.idle", remote = %source.remote, "closing idle connection");
        }
        Ending::Closed
    }
}
