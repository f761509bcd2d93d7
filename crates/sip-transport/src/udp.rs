//! UDP: a socket per shard on the shared port, and the receiving side each shard's task reads
//! in batches.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::UdpSocket;

use crate::transports::Inner;
use crate::Event;

/// Binds one UDP socket per shard to `addr`, all on the same port with `SO_REUSEPORT`: the
/// kernel gives each source's datagrams to one of them. Fails as a plain bind would when
/// another program holds the port (it is tried without `SO_REUSEPORT` first, so that no
/// other server's port is silently shared). Call within the runtime that will read them.
pub fn bind_udp(addr: SocketAddr, shards: usize) -> std::io::Result<Vec<UdpSocket>> {
    use socket2::{Domain, Protocol, Socket, Type};
    if addr.port() != 0 {
        drop(std::net::UdpSocket::bind(addr)?);
    }
    let mut port = addr.port();
    (0..shards.max(1))
        .map(|_| {
            let s = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
            if addr.is_ipv6() {
                s.set_only_v6(true)?;
            }
            s.set_reuse_port(true)?;
            // room for bursts while the engine is busy: what overflows is dropped by the
            // kernel before anyone sees it (the kernel caps this at net.core.rmem_max)
            let _ = s.set_recv_buffer_size(RECV_BUFFER);
            s.set_nonblocking(true)?;
            s.bind(&SocketAddr::new(addr.ip(), port).into())?;
            let std: std::net::UdpSocket = s.into();
            port = std.local_addr()?.port();
            UdpSocket::from_std(std)
        })
        .collect()
}

/// Receive buffer asked for per UDP socket.
const RECV_BUFFER: usize = 8 << 20;

/// Datagrams the kernel dropped at the UDP sockets on `port` (every shard's, both address
/// families) because their receive buffers were full: what overload cost before the server
/// could see it. Read from /proc/net/udp and udp6 (Linux); `None` where they cannot be read.
pub fn kernel_udp_drops(port: u16) -> Option<u64> {
    let mut total = None;
    for table in ["/proc/net/udp", "/proc/net/udp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        *total.get_or_insert(0) += drops_on_port(&text, port);
    }
    total
}

/// Sums the `drops` column of the rows of a /proc/net/udp table whose local port is `port`.
fn drops_on_port(table: &str, port: u16) -> u64 {
    table
        .lines()
        .skip(1)
        .filter_map(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            let local_port = cols.get(1)?.rsplit(':').next()?;
            (u16::from_str_radix(local_port, 16).ok()? == port)
                .then(|| cols.last()?.parse::<u64>().ok())
                .flatten()
        })
        .sum()
}

/// Receives datagrams for the task that owns the engine ([`Transports::udp_receiver`]): UDP
/// never crosses a channel or a thread on its way in, and a busy socket is read in batches.
pub struct UdpReceiver {
    inner: Arc<Inner>,
    shard: usize,
    buf: Vec<u8>,
}

/// What one [`UdpReceiver::recv`] took.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Batch {
    /// Every waiting datagram.
    Drained,
    /// As many datagrams as asked for were read; more may be waiting.
    Full,
}

impl UdpReceiver {
    pub(crate) fn new(inner: Arc<Inner>, shard: usize) -> Self {
        Self {
            inner,
            shard,
            buf: vec![0u8; 65_535],
        }
    }

    /// Waits until a datagram arrives on any UDP socket, then reads what is waiting (at most
    /// `max` datagrams) and appends the messages to `into`. Keep-alives are skipped; datagrams over the size limit or over
    /// their source's rate are dropped and counted. Cancel-safe: nothing is taken off a socket
    /// but what lands in `into`. Never finishes when there is no UDP socket.
    pub async fn recv(&mut self, into: &mut Vec<Event>, max: usize) -> Batch {
        let Self { inner, shard, buf } = self;
        let socks = inner.udp.get(*shard).map_or(&[][..], Vec::as_slice);
        loop {
            std::future::poll_fn(|cx| {
                // readiness is registered on every socket, so whichever becomes readable wakes us
                let mut ready = false;
                for (s, _) in socks {
                    ready |= s.poll_recv_ready(cx).is_ready();
                }
                if ready {
                    std::task::Poll::Ready(())
                } else {
                    std::task::Poll::Pending
                }
            })
            .await;
            let before = into.len();
            // datagrams read, kept or dropped: a flood of dropped ones must not hold the task
            let mut read = 0;
            for (sock, local) in socks {
                loop {
                    if read >= max {
                        return Batch::Full;
                    }
                    match sock.try_recv_from(buf) {
                        Ok((n, remote)) => {
                            read += 1;
                            if let Some(ev) = inner.datagram(&buf[..n], remote, *local) {
                                into.push(ev);
                            }
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                        // ICMP errors surface here on Linux; they concern an earlier send
                        Err(e) => {
                            read += 1;
                            tracing::debug!(event = "udp.recv_error", error = %e);
                        }
                    }
                }
            }
            if into.len() > before {
                return Batch::Drained;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn shards_share_a_udp_port_but_never_another_programs() {
        let socks = bind_udp("127.0.0.1:0".parse().unwrap(), 2).unwrap();
        let port = socks[0].local_addr().unwrap().port();
        assert_eq!(socks[1].local_addr().unwrap().port(), port);
        let taken = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let err = bind_udp(taken.local_addr().unwrap(), 2).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::AddrInUse);
    }
}

#[cfg(test)]
mod proc_tests {
    #[test]
    fn drops_are_summed_for_the_port_only() {
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops
  1: 0100007F:13C4 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 1 2 0000000000000000 12
  2: 0100007F:13C4 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 3 2 0000000000000000 30
  3: 0100007F:13C5 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 4 2 0000000000000000 7
";
        assert_eq!(super::drops_on_port(table, 5060), 42);
        assert_eq!(super::drops_on_port(table, 5062), 0);
    }
}
