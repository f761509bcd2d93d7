//! Sign-in storm (run by `bench/signin` and `bench/edge`): our own load generator, for what
//! SIPp cannot do — thousands of users over TCP or TLS, each on its own connection, with MD5 or
//! SHA-256 digest, each then subscribed to a colleague's presence and kept connected, as a
//! Front End (or an Edge) sees a Monday morning; with --message each then writes to the next
//! user, who answers. Reports the rates and, with --pid, the resident memory per signed-in
//! user of the server; with --pids (all processes of a server, such as Kamailio's), their CPU
//! time per sign-in and per message and their PSS per user.
//!
//!   signin --server ADDR:PORT --users N [--digest md5|sha256] [--concurrency C]
//!          [--sources S] [--pid PID] [--pids P,P,...] [--hold SECONDS] [--prefix u]
//!          [--password PW] [--tls CA.pem] [--message]
//!
//! Users are PREFIX0 .. PREFIX(N-1)@DOMAIN (example.com unless --domain); user i watches user
//! i+1, and with --message writes to user i+1 at --to-domain (another organisation's users,
//! signed in there by another run, reached through the federation). Connections come
//! from S loopback addresses (127.0.0.2 ...), since one source address has only ~28,000
//! ephemeral ports towards one server port.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use confab_bench::{authorization_in, cpu_ticks, pss_kib, rss_kib};
use sip_auth::{ha1, Algorithm};
use sip_proto::framing::{next_frame, Frame};
use sip_proto::{Limits, Message, Writer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::{Mutex, Semaphore};

struct Args {
    server: SocketAddr,
    users: usize,
    digest: Algorithm,
    concurrency: usize,
    sources: u8,
    pid: Option<u32>,
    hold: u64,
    prefix: String,
    password: String,
    /// Connect over TLS, trusting this CA.
    tls: Option<std::path::PathBuf>,
    /// After signing in, each user sends a MESSAGE to the next.
    message: bool,
    /// Processes whose CPU time and PSS are accounted.
    pids: Vec<u32>,
    /// The users' domain (also the digest realm).
    domain: String,
    /// Where the messages go (the users' own domain unless given).
    to_domain: Option<String>,
}

const USAGE: &str = "usage: signin --server ADDR:PORT --users N [--digest md5|sha256] \
[--concurrency C] [--sources S] [--pid PID] [--pids P,P,...] [--hold SECONDS] [--prefix u] \
[--password PW] [--tls CA.pem] [--message] [--domain D] [--to-domain D]";

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        server: "127.0.0.1:5060".parse().expect("literal"),
        users: 1000,
        digest: Algorithm::Md5,
        concurrency: 200,
        sources: 8,
        pid: None,
        hold: 0,
        prefix: "u".into(),
        password: "bench-secret".into(),
        tls: None,
        message: false,
        pids: Vec::new(),
        domain: "example.com".into(),
        to_domain: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        let bad = |v: &str| format!("{flag}: cannot use {v:?}");
        match flag.as_str() {
            "--server" => {
                let v = value()?;
                a.server = v.parse().map_err(|_| bad(&v))?;
            }
            "--users" => {
                let v = value()?;
                a.users = v.parse().map_err(|_| bad(&v))?;
            }
            "--digest" => {
                let v = value()?;
                a.digest = match v.as_str() {
                    "md5" => Algorithm::Md5,
                    "sha256" => Algorithm::Sha256,
                    _ => return Err(bad(&v)),
                };
            }
            "--concurrency" => {
                let v = value()?;
                a.concurrency = v.parse().map_err(|_| bad(&v))?;
            }
            "--sources" => {
                let v = value()?;
                a.sources = v.parse().ok().filter(|&s| s > 0).ok_or(bad(&v))?;
            }
            "--pid" => {
                let v = value()?;
                a.pid = Some(v.parse().map_err(|_| bad(&v))?);
            }
            "--hold" => {
                let v = value()?;
                a.hold = v.parse().map_err(|_| bad(&v))?;
            }
            "--pids" => {
                let v = value()?;
                a.pids = v
                    .split(',')
                    .map(|p| p.trim().parse().map_err(|_| bad(&v)))
                    .collect::<Result<_, _>>()?;
            }
            "--tls" => a.tls = Some(value()?.into()),
            "--message" => a.message = true,
            "--prefix" => a.prefix = value()?,
            "--password" => a.password = value()?,
            "--domain" => a.domain = value()?,
            "--to-domain" => a.to_domain = Some(value()?),
            "--help" | "-h" => return Err(String::new()),
            _ => return Err(format!("unknown option {flag}")),
        }
    }
    Ok(a)
}

fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("signin: {e}");
            }
            eprintln!("{USAGE}");
            std::process::exit(64);
        }
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("tokio runtime");
    std::process::exit(rt.block_on(run(args)));
}

/// Why one user's sign-in failed, counted by kind.
type Failures = Arc<Mutex<BTreeMap<String, usize>>>;

async fn run(args: Args) -> i32 {
    let args = Arc::new(args);
    let tls = match &args.tls {
        Some(ca) => match tls_connector(ca) {
            Ok(c) => Some(Arc::new(c)),
            Err(e) => {
                eprintln!("signin: {e}");
                return 66;
            }
        },
        None => None,
    };
    let rss0 = args.pid.map(|p| rss_kib(&p.to_string()));
    let (cpu0, pss0) = (cpu_ticks(&args.pids), pss_kib(&args.pids));
    let gate = Arc::new(Semaphore::new(args.concurrency));
    let failures: Failures = Arc::default();
    let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel::<bool>();
    let (sent_tx, mut sent_rx) = tokio::sync::mpsc::unbounded_channel::<Result<(), String>>();
    let (go_tx, go_rx) = tokio::sync::watch::channel(false);
    let start = Instant::now();
    let hold_until = Arc::new(tokio::sync::Notify::new());
    for i in 0..args.users {
        let permit = gate.clone().acquire_owned().await.expect("semaphore");
        let (args, failures, done, hold, tls, sent, mut go) = (
            args.clone(),
            failures.clone(),
            done_tx.clone(),
            hold_until.clone(),
            tls.clone(),
            sent_tx.clone(),
            go_rx.clone(),
        );
        tokio::spawn(async move {
            let conn = match sign_in(&args, tls.as_deref(), i).await {
                Ok(c) => Some(c),
                Err(why) => {
                    *failures.lock().await.entry(why).or_default() += 1;
                    None
                }
            };
            drop(permit);
            let _ = done.send(conn.is_some());
            let Some(mut c) = conn else { return };
            if args.message {
                // answer what comes until every user is in, then write to the next one
                if !c.serve_until(go.wait_for(|g| *g)).await {
                    return;
                }
                let _ = sent.send(c.message(&args, i).await);
            }
            // stay signed in, answering NOTIFYs and messages, until told to leave
            c.serve_until(hold.notified()).await;
        });
    }
    drop((done_tx, sent_tx));
    let mut ok = 0usize;
    for _ in 0..args.users {
        if done_rx.recv().await == Some(true) {
            ok += 1;
        }
    }
    let elapsed = start.elapsed();
    tokio::time::sleep(Duration::from_secs(2)).await; // let NOTIFYs settle
    let (cpu1, pss1) = (cpu_ticks(&args.pids), pss_kib(&args.pids));
    let rss1 = args.pid.map(|p| rss_kib(&p.to_string()));
    let transport = if args.tls.is_some() { "TLS" } else { "TCP" };
    println!("sign-in storm over {transport}, one connection per user");
    println!("users                      {}", args.users);
    println!("digest                     {}", args.digest.name());
    println!("signed in and subscribed   {ok}");
    println!("failed                     {}", args.users - ok);
    for (why, n) in failures.lock().await.iter() {
        println!("  {n:>8}  {why}");
    }
    println!("time                       {:.2} s", elapsed.as_secs_f64());
    println!(
        "sign-ins per second        {:.0}",
        ok as f64 / elapsed.as_secs_f64().max(1e-9)
    );
    if let (Some(a), Some(b)) = (rss0, rss1) {
        println!("server RSS before          {a} KiB");
        println!("server RSS after           {b} KiB");
        println!(
            "server memory per user     {:.0} bytes (RSS growth / users signed in)",
            (b.saturating_sub(a) * 1024) as f64 / ok.max(1) as f64
        );
    }
    if !args.pids.is_empty() {
        let ms = |ticks: u64| ticks as f64 * 1000.0 / clock_ticks() as f64;
        println!(
            "processes' CPU per sign-in {:.3} ms (REGISTER x2, SUBSCRIBE x2, NOTIFY)",
            ms(cpu1.saturating_sub(cpu0)) / ok.max(1) as f64
        );
        println!("processes' PSS before      {pss0} KiB");
        println!("processes' PSS signed in   {pss1} KiB");
        println!(
            "PSS per signed-in user     {:.0} bytes",
            (pss1.saturating_sub(pss0) * 1024) as f64 / ok.max(1) as f64
        );
    }
    if args.message && ok > 0 {
        let t = Instant::now();
        let _ = go_tx.send(true);
        let (mut delivered, mut why) = (0usize, BTreeMap::<String, usize>::new());
        // one answer from each signed-in user (they keep the channel open while they hold)
        for _ in 0..ok {
            match tokio::time::timeout(Duration::from_secs(60), sent_rx.recv()).await {
                Ok(Some(Ok(()))) => delivered += 1,
                Ok(Some(Err(e))) => *why.entry(e).or_default() += 1,
                Ok(None) => break,
                Err(_) => {
                    *why.entry("no answer within 60 s".into()).or_default() += 1;
                    break;
                }
            }
        }
        let took = t.elapsed().as_secs_f64().max(1e-9);
        let cpu2 = cpu_ticks(&args.pids);
        println!("messages answered 200      {delivered} of {ok}");
        for (w, n) in &why {
            println!("  {n:>8}  {w}");
        }
        println!("messages per second        {:.0}", delivered as f64 / took);
        if !args.pids.is_empty() {
            println!(
                "processes' CPU per message {:.3} ms (MESSAGE x2 in, relayed out, 200s)",
                cpu2.saturating_sub(cpu1) as f64 * 1000.0
                    / clock_ticks() as f64
                    / delivered.max(1) as f64
            );
        }
    }
    if args.hold > 0 {
        println!("holding the connections for {} s", args.hold);
        tokio::time::sleep(Duration::from_secs(args.hold)).await;
    }
    hold_until.notify_waiters();
    i32::from(ok != args.users)
}

/// Clock ticks per second (USER_HZ), as /proc counts CPU time: 100 on Linux.
fn clock_ticks() -> u64 {
    100
}

/// A TLS client trusting the CA certificates in `ca` (PEM).
fn tls_connector(ca: &std::path::Path) -> Result<tokio_rustls::TlsConnector, String> {
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pki_types::CertificateDer::pem_file_iter(ca)
        .map_err(|e| format!("cannot read {}: {e}", ca.display()))?
    {
        let c = c.map_err(|e| format!("{}: {e}", ca.display()))?;
        roots.add(c).map_err(|e| format!("{}: {e}", ca.display()))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(tokio_rustls::TlsConnector::from(Arc::new(cfg)))
}

/// A connection: TCP, or TLS over it.
trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Io for T {}

struct Conn {
    stream: Box<dyn Io>,
    buf: Vec<u8>,
    local: SocketAddr,
    transport: &'static str,
}

impl Conn {
    /// The next message on the connection.
    async fn next(&mut self) -> Result<Message, String> {
        loop {
            match next_frame(&self.buf, 65_536) {
                Ok(Frame::Message(n)) => {
                    let bytes: Vec<u8> = self.buf.drain(..n).collect();
                    return Message::parse(bytes, &Limits::default())
                        .map_err(|e| format!("unparsable message from the server: {e}"));
                }
                Ok(Frame::Ping) => drop(self.buf.drain(..4)),
                Ok(Frame::Skip) => drop(self.buf.drain(..2)),
                Ok(Frame::Incomplete) => {
                    let mut chunk = [0u8; 8192];
                    match self.stream.read(&mut chunk).await {
                        Ok(0) => return Err("connection closed by the server".into()),
                        Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                        Err(e) => return Err(format!("read: {}", e.kind())),
                    }
                }
                Err(e) => return Err(format!("unframeable stream: {e}")),
            }
        }
    }

    /// Answers a request from the server (NOTIFY) with 200 OK.
    async fn answer(&mut self, req: &Message) -> Result<(), String> {
        let ok = Writer::response_to(req, 200, "OK", "").finish(b"");
        self.stream
            .write_all(&ok)
            .await
            .map_err(|e| format!("write: {}", e.kind()))
    }

    /// Sends `req` and returns the final response to it, answering NOTIFYs meanwhile.
    async fn transact(&mut self, req: &str) -> Result<Message, String> {
        self.stream
            .write_all(req.as_bytes())
            .await
            .map_err(|e| format!("write: {}", e.kind()))?;
        loop {
            let m = self.next().await?;
            if m.is_request() {
                self.answer(&m).await?;
            } else if m.status() >= 200 {
                return Ok(m);
            }
        }
    }

    /// Writes to the next user: MESSAGE, 407, MESSAGE with credentials, 200 from that user.
    async fn message(&mut self, args: &Args, i: usize) -> Result<(), String> {
        let user = format!("{}{i}", args.prefix);
        let (domain, to_domain) = (
            &args.domain,
            args.to_domain.as_ref().unwrap_or(&args.domain),
        );
        let to = format!("sip:{}{}@{to_domain}", args.prefix, (i + 1) % args.users);
        let (local, transport) = (self.local, self.transport);
        let h = ha1(args.digest, &user, domain, &args.password);
        let body = "Hello through the Edge";
        let request = |seq: u32, extra: &str| {
            format!(
                "MESSAGE {to} SIP/2.0\r\nVia: SIP/2.0/{transport} {local};branch=z9hG4bK{user}m{seq};rport\r\nFrom: <sip:{user}@{domain}>;tag=m{user}\r\nTo: <{to}>\r\nCall-ID: MESSAGE-{user}@bench\r\nCSeq: {seq} MESSAGE\r\nMax-Forwards: 70\r\nContent-Type: text/plain\r\n{extra}Content-Length: {}\r\n\r\n{body}",
                body.len()
            )
        };
        let r = self.transact(&request(1, "")).await?;
        if r.status() != 407 {
            return Err(format!("first MESSAGE: {} {}", r.status(), r.reason()));
        }
        let nonce = nonce_for(&r, args.digest).ok_or("407 without a usable challenge")?;
        let auth = authorization_in(
            args.digest,
            "Proxy-Authorization",
            &h,
            &format!("{user}@{domain}"),
            "MESSAGE",
            &to,
            &nonce,
            1,
        );
        let r = self.transact(&request(2, &auth)).await?;
        if r.status() == 200 {
            Ok(())
        } else {
            Err(format!(
                "MESSAGE with credentials: {} {}",
                r.status(),
                r.reason()
            ))
        }
    }

    /// Answers whatever the server sends until `stop` completes (true) or the connection
    /// closes (false). Only the wait for the next message is interrupted, never an answer
    /// half written.
    async fn serve_until(&mut self, stop: impl std::future::Future) -> bool {
        tokio::pin!(stop);
        loop {
            let m = tokio::select! {
                _ = &mut stop => return true,
                m = self.next() => m,
            };
            match m {
                Ok(m) if m.is_request() => {
                    if self.answer(&m).await.is_err() {
                        return false;
                    }
                }
                Ok(_) => {}
                Err(_) => return false,
            }
        }
    }
}

async fn connect(
    args: &Args,
    tls: Option<&tokio_rustls::TlsConnector>,
    i: usize,
) -> Result<Conn, String> {
    let source = IpAddr::V4(Ipv4Addr::new(
        127,
        0,
        0,
        2 + (i % args.sources as usize) as u8,
    ));
    let sock = TcpSocket::new_v4().map_err(|e| format!("socket: {}", e.kind()))?;
    sock.bind(SocketAddr::new(source, 0))
        .map_err(|e| format!("bind: {}", e.kind()))?;
    let stream: TcpStream = sock
        .connect(args.server)
        .await
        .map_err(|e| format!("connect: {}", e.kind()))?;
    let local = stream
        .local_addr()
        .map_err(|e| format!("local address: {}", e.kind()))?;
    let stream: Box<dyn Io> = match tls {
        Some(tls) => {
            let name = rustls_pki_types::ServerName::IpAddress(args.server.ip().into());
            Box::new(
                tls.connect(name, stream)
                    .await
                    .map_err(|e| format!("TLS: {e}"))?,
            )
        }
        None => Box::new(stream),
    };
    Ok(Conn {
        stream,
        buf: Vec::with_capacity(4096),
        local,
        transport: if tls.is_some() { "TLS" } else { "TCP" },
    })
}

/// The nonce of the challenge for `alg` in `resp`'s WWW-/Proxy-Authenticate headers.
fn nonce_for(resp: &Message, alg: Algorithm) -> Option<String> {
    let text = String::from_utf8_lossy(&resp.to_bytes()).into_owned();
    text.lines()
        .filter(|l| {
            let l = l.to_ascii_lowercase();
            l.starts_with("www-authenticate:") || l.starts_with("proxy-authenticate:")
        })
        .find(|l| match alg {
            Algorithm::Sha256 => l.contains("SHA-256"),
            _ => !l.contains("SHA-256"),
        })
        .and_then(|l| {
            let i = l.find("nonce=\"")? + 7;
            Some(l[i..].split('"').next()?.to_owned())
        })
}

/// One user: connect, REGISTER with digest, SUBSCRIBE to the next user's presence.
async fn sign_in(
    args: &Args,
    tls: Option<&tokio_rustls::TlsConnector>,
    i: usize,
) -> Result<Conn, String> {
    let mut c = connect(args, tls, i).await?;
    let transport = c.transport;
    let user = format!("{}{i}", args.prefix);
    let domain = &args.domain;
    let watched = format!("sip:{}{}@{domain}", args.prefix, (i + 1) % args.users);
    let local = c.local;
    let h = ha1(args.digest, &user, domain, &args.password);
    let user_in_realm = format!("{user}@{domain}");
    let request = |method: &str, uri: &str, to: &str, seq: u32, extra: &str| {
        format!(
            "{method} {uri} SIP/2.0\r\nVia: SIP/2.0/{transport} {local};branch=z9hG4bK{user}s{seq};rport\r\nFrom: <sip:{user}@{domain}>;tag=f{user}\r\nTo: <{to}>\r\nCall-ID: {method}-{user}@bench\r\nCSeq: {seq} {method}\r\nMax-Forwards: 70\r\nContact: <sip:{user}@{local};transport={transport}>\r\nExpires: 3600\r\n{extra}Content-Length: 0\r\n\r\n"
        )
    };
    let aor = format!("sip:{user}@{domain}");
    let registrar = format!("sip:{domain}");
    let expect = |m: &Message, code: u16, what: &str| {
        if m.status() == code {
            Ok(())
        } else {
            Err(format!("{what}: {} {}", m.status(), m.reason()))
        }
    };

    let r = c
        .transact(&request("REGISTER", &registrar, &aor, 1, ""))
        .await?;
    expect(&r, 401, "first REGISTER")?;
    let nonce = nonce_for(&r, args.digest).ok_or("401 without a usable challenge")?;
    let auth = authorization_in(
        args.digest,
        "Authorization",
        &h,
        &user_in_realm,
        "REGISTER",
        &registrar,
        &nonce,
        1,
    );
    let r = c
        .transact(&request("REGISTER", &registrar, &aor, 2, &auth))
        .await?;
    expect(&r, 200, "REGISTER with credentials")?;

    let sub = "Event: presence\r\nAccept: application/pidf+xml\r\n";
    let r = c
        .transact(&request("SUBSCRIBE", &watched, &watched, 1, sub))
        .await?;
    expect(&r, 407, "first SUBSCRIBE")?;
    let nonce = nonce_for(&r, args.digest).ok_or("407 without a usable challenge")?;
    let auth = authorization_in(
        args.digest,
        "Proxy-Authorization",
        &h,
        &user_in_realm,
        "SUBSCRIBE",
        &watched,
        &nonce,
        1,
    );
    let r = c
        .transact(&request(
            "SUBSCRIBE",
            &watched,
            &watched,
            2,
            &format!("{sub}{auth}"),
        ))
        .await?;
    expect(&r, 200, "SUBSCRIBE with credentials")?;
    Ok(c)
}
