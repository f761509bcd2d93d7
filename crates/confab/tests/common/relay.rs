//! A Front End and an Edge with an A/V service (coturn, started by the Edge) for the media
//! relay tests; relay credentials asked for over SIP as a client would; coturn's own test
//! client (`turnutils_uclient`) and peer (`turnutils_peer`).

use std::net::UdpSocket;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{free_port, require, Server, TempDir};

/// The A/V Edge service's (public) address, added to the test namespace's loopback.
pub(crate) const AV: &str = "203.0.113.11";

/// The topology: Front End `fe01` at `fe` on SIP `port` (TLS the next), Edge `edge01` whose
/// Access Edge listens on `access_port` and whose A/V service is [`AV`].
pub(crate) fn topology_text(fe: &str, port: u16, access_port: u16) -> String {
    let tls = port + 1;
    format!(
        r#"[deployment]
name = "relay"
[[site]]
name = "hq"
[[domain]]
name = "example.com"
sign_in = ["pool.example.com"]
[[pool]]
fqdn = "pool.example.com"
site = "hq"
sip_port = {port}
tls_port = {tls}
[[pool.server]]
fqdn = "fe01.example.com"
address = "{fe}"
[[edge]]
fqdn = "edgepool.example.com"
site = "hq"
next_hop = "pool.example.com"
access = {{ fqdn = "access.example.com", address = "127.0.0.21", port = {access_port} }}
av = {{ fqdn = "av.example.com", address = "{AV}" }}
internal_port = {tls}
federation_port = {access_port}
[[edge.server]]
fqdn = "edge01.example.com"
address = "127.0.0.20"
"#
    )
}

/// The deployment: Front End `fe01` at `fe` (pool `pool.example.com`) and Edge `edge01`
/// (inside 127.0.0.20, Access Edge 127.0.0.21) whose A/V service is [`AV`].
pub(crate) struct RelaySite {
    pub(crate) topology: TempDir,
    pub(crate) fe: Server,
    pub(crate) edge: Server,
}

impl RelaySite {
    /// Starts the Front End at `fe` and the Edge (with coturn); waits until the relay has the
    /// deployment's secret and answers STUN.
    pub(crate) fn start(fe: &str) -> Self {
        require("turnserver");
        let topology = TempDir::new("relay-topology");
        let port = free_port();
        let access_port = free_port();
        std::fs::write(
            topology.0.join("topology.toml"),
            topology_text(fe, port, access_port),
        )
        .unwrap();
        let file = topology.0.join("topology.toml").display().to_string();
        let fe = Server::start_on(
            TempDir::new("relay-fe"),
            port,
            &[
                "--bind",
                fe,
                "--fqdn",
                "fe01.example.com",
                "--topology",
                &file,
            ],
        );
        let dir = TempDir::new("relay-edge");
        let out = Self::cli_on(
            &fe,
            &file,
            &[
                "edge",
                "prepare",
                "--fqdn",
                "edge01.example.com",
                "--out",
                &dir.0.display().to_string(),
            ],
        );
        assert!(out.status.success(), "edge prepare: {out:?}");
        let edge_args = [
            "--bind",
            "127.0.0.20",
            "--fqdn",
            "edge01.example.com",
            "--topology",
            &file,
        ];
        // without coturn installed the Edge refuses to start, saying how to install it
        let missing = Command::new(env!("CARGO_BIN_EXE_confab"))
            .args(["up", "--data-dir", &dir.0.display().to_string()])
            .args(edge_args)
            .env("PATH", "/nonexistent")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&missing.stderr).into_owned();
        assert!(!missing.status.success(), "an Edge without coturn started");
        assert!(text.contains("apt-get install coturn"), "{text}");
        let edge = Server::start_edge(dir, port, &edge_args);
        let site = Self { topology, fe, edge };
        site.wait_log("event=\"av.healthy\"", 1);
        site.wait_log("event=\"av.secrets\" count=1", 1);
        site
    }

    /// `confab ARGS` on the Front End's data dir and the topology.
    fn cli_on(fe: &Server, topology: &str, args: &[&str]) -> std::process::Output {
        Command::new(env!("CARGO_BIN_EXE_confab"))
            .args(args)
            .args([
                "--data-dir",
                &fe.dir.0.display().to_string(),
                "--topology",
                topology,
            ])
            .output()
            .unwrap()
    }

    /// `confab ARGS --data-dir <the Front End's>`.
    pub(crate) fn cli(&self, args: &[&str]) -> std::process::Output {
        Command::new(env!("CARGO_BIN_EXE_confab"))
            .args(args)
            .args(["--data-dir", &self.fe.dir.0.display().to_string()])
            .output()
            .unwrap()
    }

    /// Waits until the Edge's log holds `needle` at least `times` times.
    pub(crate) fn wait_log(&self, needle: &str, times: usize) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.edge.log_text().matches(needle).count() < times {
            assert!(
                Instant::now() < deadline,
                "the Edge never logged {needle} {times} times:\n{}",
                self.edge.log_text()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The secrets coturn accepts now (its database, as the Edge wrote it).
    pub(crate) fn relay_secrets(&self) -> Vec<String> {
        let db = rusqlite::Connection::open(self.edge.dir.0.join("turn/secrets.db")).unwrap();
        let mut q = db.prepare("SELECT value FROM turn_secret").unwrap();
        let rows = q.query_map([], |r| r.get::<_, String>(0)).unwrap();
        rows.map(Result::unwrap).collect()
    }
}

/// A credentials request's answer: status line and body.
pub(crate) struct Answer {
    pub(crate) status: String,
    pub(crate) body: String,
}

impl Answer {
    /// The text of element `name` in the body.
    pub(crate) fn field(&self, name: &str) -> String {
        self.body
            .split(&format!("<{name}>"))
            .nth(1)
            .and_then(|r| r.split('<').next())
            .unwrap_or_else(|| panic!("no {name} in {}", self.body))
            .to_owned()
    }
}

/// Asks `server` over UDP, as `user` with `password`, for media relay credentials for
/// `identity`, answering the digest challenge (MD5) like a client.
pub(crate) fn ask_credentials(
    server: &Server,
    user: &str,
    password: &str,
    identity: &str,
) -> Answer {
    let sock = UdpSocket::bind(format!("{}:0", server.host)).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let local = sock.local_addr().unwrap();
    let body = format!("<request requestID=\"1\" version=\"1.0\" from=\"sip:{user}@example.com\" xmlns=\"http://schemas.microsoft.com/2006/09/sip/mrasp\"><credentialsRequest credentialsRequestID=\"1\"><identity>{identity}</identity><location>internet</location><duration>480</duration></credentialsRequest></request>");
    let mut n: u32 = rand_u32();
    let request = |n: u32, auth: &str| {
        format!(
            "SERVICE sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bKmras{n};rport\r\nMax-Forwards: 70\r\nFrom: <sip:{user}@example.com>;tag=m{n}\r\nTo: <sip:example.com>\r\nCall-ID: mras-{n}\r\nCSeq: {n} SERVICE\r\n{auth}Content-Type: application/msrtc-media-relay-auth+xml\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
    };
    let exchange = |msg: String| -> String {
        sock.send_to(msg.as_bytes(), server.addr()).unwrap();
        let mut buf = vec![0u8; 65_536];
        loop {
            let (len, _) = sock.recv_from(&mut buf).expect("an answer to SERVICE");
            let text = String::from_utf8_lossy(&buf[..len]).into_owned();
            if !text.starts_with("SIP/2.0 1") {
                return text;
            }
        }
    };
    let challenge = exchange(request(n, ""));
    assert!(challenge.starts_with("SIP/2.0 407"), "{challenge}");
    let nonce = challenge
        .split("nonce=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .expect("a nonce")
        .to_owned();
    let alg = sip_auth::Algorithm::Md5;
    let ha1 = sip_auth::ha1(alg, user, "example.com", password);
    let uri = "sip:example.com";
    let response = sip_auth::client_response(alg, &ha1, "SERVICE", uri, &nonce, "00000001", "c0");
    let auth = format!("Proxy-Authorization: Digest username=\"{user}\", realm=\"example.com\", nonce=\"{nonce}\", uri=\"{uri}\", response=\"{response}\", algorithm=MD5, qop=auth, nc=00000001, cnonce=\"c0\"\r\n");
    n = n.wrapping_add(1);
    let answer = exchange(request(n, &auth));
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    Answer {
        status: head.lines().next().unwrap_or_default().to_owned(),
        body: body.to_owned(),
    }
}

fn rand_u32() -> u32 {
    let mut b = [0u8; 4];
    getrandom::getrandom(&mut b).unwrap();
    u32::from_le_bytes(b) >> 1
}

/// How coturn's test client fared.
pub(crate) struct Relayed {
    pub(crate) sent: u64,
    pub(crate) received: u64,
    pub(crate) output: String,
}

impl Relayed {
    /// It allocated and every message came back through the relay.
    pub(crate) fn relayed_all(&self) -> bool {
        self.sent > 0 && self.received == self.sent
    }

    /// Nothing was relayed, and coturn's client says why (`needle`).
    pub(crate) fn refused(&self, needle: &str) -> bool {
        self.received == 0 && self.output.contains(needle)
    }
}

/// `turnutils_uclient` allocating at the A/V Edge over `transport` (`udp`, `tcp`, `dtls`) with
/// `user`/`password`, sending 20 G.711-sized messages to `peer` (a `turnutils_peer`, which
/// echoes them back through the relay).
pub(crate) fn uclient(transport: &str, user: &str, password: &str, peer: &str) -> Relayed {
    let mut args: Vec<String> = [
        "-n", "20", "-m", "1", "-l", "172", "-e", peer, "-r", "3480", "-u", user, "-w", password,
    ]
    .iter()
    .map(ToString::to_string)
    .collect();
    match transport {
        "tcp" => args.push("-t".into()),
        "dtls" => args.extend(["-S".into(), "-p".into(), "443".into()]),
        _ => {}
    }
    args.push(AV.into());
    let out = Command::new("timeout")
        .arg("25")
        .arg("turnutils_uclient")
        .args(&args)
        .output()
        .expect("run turnutils_uclient");
    let output = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let count = |key: &str| {
        output
            .lines()
            .filter_map(|l| l.split(key).nth(1))
            .filter_map(|r| {
                r.split(|c: char| !c.is_ascii_digit())
                    .next()?
                    .parse::<u64>()
                    .ok()
            })
            .max()
            .unwrap_or(0)
    };
    Relayed {
        sent: count("tot_send_msgs="),
        received: count("tot_recv_msgs="),
        output,
    }
}

/// `turnutils_peer` echoing on `addr`:3480 until dropped.
pub(crate) struct Peer(Child);

impl Peer {
    pub(crate) fn start(addr: &str) -> Self {
        let child = Command::new("turnutils_peer")
            .args(["-L", addr, "-p", "3480"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start turnutils_peer");
        Self(child)
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs `ip ARGS` (in the test's namespace), which must succeed.
pub(crate) fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Whether the relay answers a STUN Binding request over TLS on its TLS port, with a
/// certificate for `av.example.com` from the deployment's CA (`ca`): Python's own TLS.
pub(crate) fn stun_over_tls(ca: &std::path::Path) -> Result<(), String> {
    let script = format!(
        "import os, socket, ssl, struct\nctx = ssl.create_default_context(cafile={ca:?})\ns = ctx.wrap_socket(socket.create_connection(('{AV}', 443), timeout=5), server_hostname='av.example.com')\ntid = os.urandom(12)\ns.sendall(struct.pack('!HHI', 1, 0, 0x2112A442) + tid)\nd = s.recv(512)\nprint('binding success' if d[:2] == b'\\x01\\x01' and d[8:20] == tid else 'bad answer')\n",
        ca = ca.display().to_string()
    );
    let out = Command::new("python3")
        .args(["-c", &script])
        .output()
        .map_err(|e| e.to_string())?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if text.contains("binding success") {
        Ok(())
    } else {
        Err(text)
    }
}
