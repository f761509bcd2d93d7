//! The A/V Edge service: coturn (Debian's `coturn`, the TURN server) configured from the
//! topology, started and supervised by `confab up` on an Edge server, and kept supplied with
//! the secrets the Front Ends issue credentials with (asked of the next hop every
//! `EDGE_POLL` seconds over the inside's mutual TLS, written to coturn's SQLite database, which
//! it reads at every authentication: a rotation needs no restart and drops no call). Also
//! `confab edge turn-config` and `confab edge rotate-secret`.

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use confab_core::media_relay::{Secrets, EDGE_POLL, SECRETS_SETTING, SECRETS_TYPE};
use confab_topology::{Edge, Server, Topology};

use clap::Args;

use crate::cli::{DataDirArg, TopologyArg, UsageError};
use crate::pki::Pki;

/// The files coturn runs with, under the Edge's data dir.
pub(crate) struct Files {
    pub(crate) config: PathBuf,
    pub(crate) secrets_db: PathBuf,
    pub(crate) log: PathBuf,
    pid: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

impl Files {
    pub(crate) fn under(dir: &Path) -> Self {
        let turn = dir.join("turn");
        Self {
            config: turn.join("turnserver.conf"),
            secrets_db: turn.join("secrets.db"),
            log: turn.join("turnserver.log"),
            pid: turn.join("turnserver.pid"),
            cert: dir.join("server.pem"),
            key: dir.join("server.key"),
        }
    }

    fn config_text(&self, t: &Topology, edge: &Edge, server: &Server) -> anyhow::Result<String> {
        let files = confab_topology::TurnFiles {
            cert: &self.cert,
            key: &self.key,
            secrets_db: &self.secrets_db,
            log: &self.log,
            pid: &self.pid,
        };
        confab_topology::coturn_config(t, edge, server, &files).map_err(|e| UsageError(e).into())
    }
}

/// The running A/V service; dropping it stops coturn.
pub(crate) struct AvEdge {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for AvEdge {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// What the supervisor needs.
struct Supervisor {
    files: Files,
    realm: String,
    /// The next hop's servers: where the secrets are asked for (address, TLS name).
    hop: Vec<(SocketAddr, String)>,
    tls: Arc<rustls::ClientConfig>,
    via: SocketAddr,
    /// Where coturn answers STUN (the health probe).
    probe: SocketAddr,
    /// Start coturn (else an admin runs it as a system service).
    managed: bool,
}

/// Starts the A/V service of `edge` on `server` when the topology gives it one: writes
/// coturn's configuration, prepares its secrets database, starts coturn (unless `external`),
/// and supervises it. A missing coturn is an error with the install command.
pub(crate) fn start(
    topology: &Topology,
    edge: &Edge,
    server: &Server,
    pki: &Pki,
    dir: &Path,
    external: bool,
) -> anyhow::Result<Option<AvEdge>> {
    let Some(relay) = edge.media_relay() else {
        return Ok(None);
    };
    let files = Files::under(dir);
    let text = files.config_text(topology, edge, server)?;
    if !external && !on_path("turnserver") {
        return Err(UsageError(format!(
            "the A/V Edge ({}) needs coturn, the TURN server, and `turnserver` is not installed: run `apt-get install coturn` (or start with --av-external when coturn runs as a system service with `confab edge turn-config`)",
            relay.host
        ))
        .into());
    }
    let turn_dir = files.config.parent().unwrap_or(dir);
    std::fs::create_dir_all(turn_dir)
        .with_context(|| format!("cannot create {}", turn_dir.display()))?;
    std::fs::write(&files.config, text)
        .with_context(|| format!("cannot write {}", files.config.display()))?;
    secrets_table(&files.secrets_db)?;
    let hop = (edge.next_hop.as_deref())
        .and_then(|h| topology.pool(h))
        .map(|p| {
            p.servers
                .iter()
                .map(|s| (SocketAddr::new(s.address, p.tls_port.get()), s.fqdn.clone()))
                .collect()
        })
        .unwrap_or_default();
    let sup = Supervisor {
        files,
        realm: topology
            .domains()
            .next()
            .unwrap_or("localdomain")
            .to_owned(),
        hop,
        tls: crate::pki::client_config(pki)?,
        via: SocketAddr::new(server.address, edge.internal_port.get()),
        probe: SocketAddr::new(relay.address, relay.udp_port),
        managed: !external,
    };
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let thread = std::thread::Builder::new()
        .name("av-edge".into())
        .spawn(move || sup.run(&flag))?;
    println!(
        "  A/V Edge     {} at {} (TURN UDP/TCP {}, TLS {}), coturn {}",
        relay.host,
        relay.address,
        relay.udp_port,
        relay.tls_port,
        if external {
            "run by the system (--av-external)"
        } else {
            "started and supervised here"
        }
    );
    Ok(Some(AvEdge {
        stop,
        thread: Some(thread),
    }))
}

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|p| p.join(program).is_file()))
}

/// coturn's `turn_secret` table, created when missing.
fn secrets_table(db: &Path) -> anyhow::Result<rusqlite::Connection> {
    let c = rusqlite::Connection::open(db)
        .with_context(|| format!("cannot open coturn's secrets database {}", db.display()))?;
    c.execute_batch(
        "CREATE TABLE IF NOT EXISTS turn_secret (realm varchar(127) default '', value varchar(256), primary key (realm, value));",
    )?;
    Ok(c)
}

/// What the supervisor knows between its rounds.
struct Watch {
    child: Option<Child>,
    restart_at: Instant,
    backoff: Duration,
    started: Instant,
    /// The secrets last written to coturn's database.
    known: Option<Vec<String>>,
    reachable: bool,
    healthy: Option<bool>,
}

impl Supervisor {
    /// Every 200 ms until `stop`: the secrets every `EDGE_POLL` s, coturn kept running, a STUN
    /// probe every 10 s; then coturn stopped.
    fn run(self, stop: &AtomicBool) {
        let now = Instant::now();
        let mut w = Watch {
            child: None,
            restart_at: now,
            backoff: Duration::from_secs(1),
            started: now,
            known: None,
            reachable: true,
            healthy: None,
        };
        let (mut next_poll, mut next_probe) = (now, now + Duration::from_secs(2));
        while !stop.load(Ordering::Relaxed) {
            let now = Instant::now();
            if now >= next_poll {
                next_poll = now + Duration::from_secs(EDGE_POLL);
                self.sync_secrets(&mut w);
            }
            if self.managed {
                self.supervise(&mut w);
            }
            if now >= next_probe {
                next_probe = now + Duration::from_secs(10);
                self.probe(&mut w);
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        if let Some(mut c) = w.child {
            let _ = c.kill();
            let _ = c.wait();
            tracing::info!(event = "av.stopped", "coturn stopped");
        }
    }

    /// The next hop's secrets written to coturn's database when they changed.
    fn sync_secrets(&self, w: &mut Watch) {
        let secrets = match self.fetch_secrets() {
            Ok(s) => s,
            Err(e) => {
                if w.reachable {
                    tracing::warn!(event = "av.secrets_unreachable", error = %e, "cannot ask the next hop for the relay secrets; the relay keeps those it has");
                }
                w.reachable = false;
                return;
            }
        };
        w.reachable = true;
        if w.known.as_ref() == Some(&secrets) {
            return;
        }
        match self.store_secrets(&secrets) {
            Ok(()) => {
                tracing::info!(
                    event = "av.secrets",
                    count = secrets.len(),
                    "the relay accepts the deployment's current secrets"
                );
                w.known = Some(secrets);
            }
            Err(e) => {
                tracing::error!(event = "av.secrets_unwritable", error = %format!("{e:#}"), "cannot give coturn the secrets");
            }
        }
    }

    /// A STUN Binding to the relay; a change of health is logged.
    fn probe(&self, w: &mut Watch) {
        let ok = stun_probe(self.probe);
        if w.healthy == Some(ok) {
            return;
        }
        if ok {
            tracing::info!(event = "av.healthy", relay = %self.probe, "the relay answers STUN");
        } else {
            tracing::error!(event = "av.unhealthy", relay = %self.probe, log = %self.files.log.display(), "the relay does not answer STUN");
        }
        w.healthy = Some(ok);
    }

    /// Starts coturn when it is not running, again after it exits (1 s, then doubling to 30 s
    /// while it keeps failing within a minute of starting).
    fn supervise(&self, w: &mut Watch) {
        if let Some(c) = &mut w.child {
            let status = match c.try_wait() {
                Ok(None) => return,
                Ok(Some(status)) => status.to_string(),
                Err(e) => e.to_string(),
            };
            w.child = None;
            w.backoff = if w.started.elapsed() > Duration::from_secs(60) {
                Duration::from_secs(1)
            } else {
                (w.backoff * 2).min(Duration::from_secs(30))
            };
            w.restart_at = Instant::now() + w.backoff;
            tracing::error!(event = "av.exited", %status, log = %self.files.log.display(), last = %last_line(&self.files.log), "coturn exited; restarting it in {} s", w.backoff.as_secs());
        }
        if Instant::now() < w.restart_at {
            return;
        }
        match Command::new("turnserver")
            .arg("-c")
            .arg(&self.files.config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
        {
            Ok(c) => {
                tracing::info!(event = "av.started", pid = c.id(), config = %self.files.config.display(), "coturn started");
                w.started = Instant::now();
                w.child = Some(c);
            }
            Err(e) => {
                tracing::error!(event = "av.start_failed", error = %e, "cannot start coturn (`apt-get install coturn`)");
                w.restart_at = Instant::now() + Duration::from_secs(30);
            }
        }
    }

    /// The secrets the next hop says the relay accepts (the first server that answers).
    fn fetch_secrets(&self) -> Result<Vec<String>, String> {
        let mut why = String::from("the Edge has no next hop");
        for (addr, name) in &self.hop {
            match self.ask(*addr, name) {
                Ok(s) => return Ok(s),
                Err(e) => why = format!("{name} ({addr}): {e}"),
            }
        }
        Err(why)
    }

    fn ask(&self, addr: SocketAddr, name: &str) -> Result<Vec<String>, String> {
        let server_name =
            rustls_pki_types::ServerName::try_from(name.to_owned()).map_err(|e| e.to_string())?;
        let conn = rustls::ClientConnection::new(self.tls.clone(), server_name)
            .map_err(|e| e.to_string())?;
        let tcp = connect_from(self.via.ip(), addr).map_err(|e| e.to_string())?;
        tcp.set_read_timeout(Some(Duration::from_secs(3)))
            .map_err(|e| e.to_string())?;
        let mut tls = rustls::StreamOwned::new(conn, tcp);
        let mut id = [0u8; 8];
        getrandom::getrandom(&mut id).map_err(|e| e.to_string())?;
        let id: String = id.iter().map(|b| format!("{b:02x}")).collect();
        let req = format!(
            "SERVICE sip:{name};transport=tls SIP/2.0\r\nVia: SIP/2.0/TLS {};branch=z9hG4bK-av{id}\r\nMax-Forwards: 1\r\nFrom: <sip:{}>;tag={id}\r\nTo: <sip:{name}>\r\nCall-ID: av-{id}\r\nCSeq: 1 SERVICE\r\nContent-Type: {SECRETS_TYPE}\r\nContent-Length: 0\r\n\r\n",
            self.via,
            self.via.ip()
        );
        tls.write_all(req.as_bytes()).map_err(|e| e.to_string())?;
        let response = read_response(&mut tls)?;
        let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
        let status = head.lines().next().unwrap_or_default();
        if !status.starts_with("SIP/2.0 200") {
            return Err(format!("answered {status}"));
        }
        Ok(body
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && l.bytes().all(|b| b.is_ascii_hexdigit()))
            .map(str::to_owned)
            .collect())
    }

    /// Makes `secrets` the relay's (one transaction: coturn sees the old set or the new).
    fn store_secrets(&self, secrets: &[String]) -> anyhow::Result<()> {
        let mut c = secrets_table(&self.files.secrets_db)?;
        let tx = c.transaction()?;
        tx.execute("DELETE FROM turn_secret", [])?;
        for s in secrets {
            tx.execute(
                "INSERT OR IGNORE INTO turn_secret (realm, value) VALUES (?1, ?2)",
                [&self.realm, s],
            )?;
        }
        tx.commit()?;
        Ok(())
    }
}

/// A TCP connection to `to` from the Edge's inside address `from` (the Front End gives the
/// secrets to the Edge servers' addresses only, whatever route the kernel would pick).
fn connect_from(from: IpAddr, to: SocketAddr) -> std::io::Result<TcpStream> {
    let domain = socket2::Domain::for_address(to);
    let sock = socket2::Socket::new(domain, socket2::Type::STREAM, Some(socket2::Protocol::TCP))?;
    sock.bind(&SocketAddr::new(from, 0).into())?;
    sock.connect_timeout(&to.into(), Duration::from_secs(2))?;
    Ok(sock.into())
}

/// One SIP response off a stream (its head and the body its Content-Length gives), skipping
/// provisional ones.
fn read_response(r: &mut impl Read) -> Result<String, String> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        while let Some(len) = message_len(&buf) {
            let message = String::from_utf8_lossy(&buf[..len]).into_owned();
            if !message.starts_with("SIP/2.0 1") {
                return Ok(message);
            }
            buf.drain(..len);
        }
        let n = r.read(&mut chunk).map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("the connection closed before an answer".into());
        }
        buf.extend_from_slice(&chunk[..n]);
        if buf.len() > 65_536 {
            return Err("the answer is too large".into());
        }
    }
}

/// The length of the first whole message in `buf` (head and Content-Length body), if there is
/// one yet.
fn message_len(buf: &[u8]) -> Option<usize> {
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&buf[..end]);
    let length = head
        .lines()
        .find_map(|l| {
            let (n, v) = l.split_once(':')?;
            (n.trim().eq_ignore_ascii_case("content-length") || n.trim() == "l")
                .then(|| v.trim().parse::<usize>().ok())?
        })
        .unwrap_or(0);
    let len = end + 4 + length;
    (buf.len() >= len).then_some(len)
}

/// Whether a STUN Binding request to `addr` is answered (RFC 8489 §6: a success response).
fn stun_probe(addr: SocketAddr) -> bool {
    let local: SocketAddr = match addr.ip() {
        IpAddr::V4(_) => "0.0.0.0:0",
        IpAddr::V6(_) => "[::]:0",
    }
    .parse()
    .unwrap_or(addr);
    let Ok(sock) = UdpSocket::bind(local) else {
        return false;
    };
    let _ = sock.set_read_timeout(Some(Duration::from_secs(2)));
    let mut req = [0u8; 20];
    req[..2].copy_from_slice(&0x0001u16.to_be_bytes());
    req[4..8].copy_from_slice(&0x2112_A442u32.to_be_bytes());
    if getrandom::getrandom(&mut req[8..]).is_err() || sock.send_to(&req, addr).is_err() {
        return false;
    }
    let mut buf = [0u8; 512];
    matches!(sock.recv_from(&mut buf), Ok((n, _)) if n >= 20 && buf[..2] == [0x01, 0x01] && buf[8..20] == req[8..20])
}

fn last_line(log: &Path) -> String {
    std::fs::read_to_string(log)
        .ok()
        .and_then(|t| {
            t.lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .map(str::to_owned)
        })
        .unwrap_or_default()
}

/// Makes the first secret when a deployment with an A/V Edge has none (a Front End's start).
pub(crate) fn ensure_secret(store: &dyn confab_store::Store, now: i64) -> anyhow::Result<()> {
    if store.setting(SECRETS_SETTING)?.is_some() {
        return Ok(());
    }
    let mut secrets = Secrets::default();
    // the first secret is issued at once: no Edge accepts an older one
    secrets.rotate(confab_core::media_relay::new_secret()?, now, None);
    store.set_setting(SECRETS_SETTING, Some(&secrets.render()))?;
    tracing::info!(
        event = "relay.secret_made",
        "made the media relay's first secret"
    );
    Ok(())
}

/// `confab edge rotate-secret`.
pub(crate) fn rotate_secret(args: RotateSecretArgs) -> anyhow::Result<()> {
    let store = crate::datadir::open_existing(&args.data)?;
    let now = unix_now();
    let text = store.setting(SECRETS_SETTING)?.unwrap_or_default();
    let mut secrets = Secrets::parse(&text)
        .map_err(|e| {
            UsageError(format!(
            "{e}; start again with `confab edge rotate-secret --revoke`, which replaces them all"
        ))
        })
        .or_else(|e| {
            if args.revoke {
                Ok(Secrets::default())
            } else {
                Err(e)
            }
        })?;
    let grace = (!args.revoke).then_some(args.grace_hours.saturating_mul(3600));
    secrets.rotate(confab_core::media_relay::new_secret()?, now, grace);
    store.set_setting(SECRETS_SETTING, Some(&secrets.render()))?;
    if args.revoke {
        println!("New media relay secret in use now; every credential issued before is revoked (Edges apply it within {EDGE_POLL} s).");
    } else {
        println!(
            "New media relay secret: Front Ends issue with it from {} s from now (once every Edge has it); credentials issued before stay valid {} h after that.",
            confab_core::media_relay::PROPAGATION,
            args.grace_hours
        );
    }
    Ok(())
}

/// `confab edge turn-config`: coturn's configuration for an Edge server, for coturn run as a
/// system service (`confab up --av-external` on the Edge keeps its secrets database).
pub(crate) fn turn_config(args: TurnConfigArgs) -> anyhow::Result<()> {
    let file = crate::deployment::topology_path(&args.deployment)?;
    let topology = crate::deployment::load(&file)?;
    let Some((edge, server)) = crate::edge::find(&topology, &args.fqdn) else {
        return Err(UsageError(format!(
            "{} is not an Edge server of {}",
            args.fqdn,
            file.display()
        ))
        .into());
    };
    let dir = crate::datadir::resolve(&args.deployment.data)?;
    let files = Files::under(&dir);
    print!("{}", files.config_text(&topology, edge, server)?);
    Ok(())
}

pub(crate) fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

#[derive(Debug, Args)]
pub(crate) struct TurnConfigArgs {
    /// The Edge server's FQDN (a `[[edge.server]]` of the topology).
    #[arg(long)]
    pub(crate) fqdn: String,
    /// --data-dir: the Edge's data dir (its certificate, and coturn's secrets database under
    /// turn/).
    #[command(flatten)]
    pub(crate) deployment: TopologyArg,
}

#[derive(Debug, Args)]
pub(crate) struct RotateSecretArgs {
    /// Hours the old secrets stay valid after the new one is in use (credentials last 8 h).
    #[arg(long, value_name = "HOURS", default_value_t = 8)]
    pub(crate) grace_hours: u64,
    /// Revoke every credential issued so far, at once (calls relayed now lose their media at
    /// their next refresh).
    #[arg(long, conflicts_with = "grace_hours")]
    pub(crate) revoke: bool,
    #[command(flatten)]
    pub(crate) data: DataDirArg,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_response_is_read_whole_after_provisionals() {
        let text =
            b"SIP/2.0 100 Trying\r\nContent-Length: 0\r\n\r\nSIP/2.0 200 OK\r\nl: 4\r\n\r\nab\ncd";
        let got = read_response(&mut &text[..]).unwrap();
        assert!(got.starts_with("SIP/2.0 200"), "{got}");
        assert!(got.ends_with("ab\nc"), "{got}");
        let e = read_response(&mut &b"SIP/2.0 200 OK\r\n"[..]).unwrap_err();
        assert!(e.contains("closed"), "{e}");
    }
}
