//! Black-box harness: start the real `confab` binary on free loopback ports with its own data
//! dir, wait until it answers OPTIONS (a readiness probe, not a sleep), drive it with real peers.

#![allow(dead_code)]

pub(crate) mod baresip;
pub(crate) mod deployment;
pub(crate) mod https;
pub(crate) mod kamailio;
pub(crate) mod meetings;
pub(crate) mod named;
pub(crate) mod relay;
pub(crate) mod rgs;

use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// A temporary directory removed on drop.
pub(crate) struct TempDir(pub(crate) PathBuf);

impl TempDir {
    pub(crate) fn new(tag: &str) -> Self {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let p = std::env::temp_dir().join(format!("confab-test-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        Self(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::env::var_os("CONFAB_KEEP_TEST_DIRS").is_none() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// Ports this test process handed out: a port is free when asked for but bound only later
/// (by a server or a SIPp starting), so without this two tests running side by side could be
/// given the same one.
static HANDED_OUT: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());

/// Records `ports` as handed out; false when one of them already was.
fn hand_out(ports: &[u16]) -> bool {
    let mut handed = HANDED_OUT
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if ports.iter().any(|p| handed.contains(p)) {
        return false;
    }
    handed.extend_from_slice(ports);
    true
}

/// A loopback port free for UDP and TCP, with the next port free for TCP (TLS).
pub(crate) fn free_sip_port() -> u16 {
    for _ in 0..200 {
        let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
        let p = udp.local_addr().unwrap().port();
        if p >= 65_000 {
            continue;
        }
        if TcpListener::bind(("127.0.0.1", p)).is_ok()
            && TcpListener::bind(("127.0.0.1", p + 1)).is_ok()
            && hand_out(&[p, p + 1])
        {
            return p;
        }
    }
    panic!("no free port pair on 127.0.0.1");
}

/// Waits until something (a SIPp UAS) has bound UDP `port` on loopback: a readiness probe, since
/// SIPp prints nothing when it starts listening.
pub(crate) fn wait_udp_bound(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(10);
    // bound on either loopback address (a SIPp on ::1 leaves 127.0.0.1's port free)
    while UdpSocket::bind(("127.0.0.1", port)).is_ok() && UdpSocket::bind(("::1", port)).is_ok() {
        assert!(
            Instant::now() < deadline,
            "nothing bound UDP port {port} within 10 s"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Waits until something bound UDP `ip:port` (a SIPp told to listen there).
pub(crate) fn wait_udp_bound_on(ip: &str, port: u16) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while UdpSocket::bind((ip, port)).is_ok() {
        assert!(
            Instant::now() < deadline,
            "nothing bound UDP {ip}:{port} within 10 s"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A free UDP+TCP port for a peer.
pub(crate) fn free_port() -> u16 {
    free_port_except(&[])
}

/// A free port (UDP and TCP) that is none of `taken`.
pub(crate) fn free_port_except(taken: &[u16]) -> u16 {
    loop {
        let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
        let p = udp.local_addr().unwrap().port();
        if !taken.contains(&p) && TcpListener::bind(("127.0.0.1", p)).is_ok() && hand_out(&[p]) {
            return p;
        }
    }
}

/// `n` consecutive UDP ports from an even one, free on loopback now and handed out to no
/// other test (a server's media port range).
pub(crate) fn free_udp_range(n: u16) -> (u16, u16) {
    for _ in 0..500 {
        let start = free_port() & !1;
        if start > 60_000 {
            continue;
        }
        let ports: Vec<u16> = (start..start + n).collect();
        if ports
            .iter()
            .all(|p| UdpSocket::bind(("127.0.0.1", *p)).is_ok())
            && hand_out(&ports[1..])
        {
            return (start, start + n - 1);
        }
    }
    panic!("no {n} free consecutive UDP ports on loopback");
}

/// A command's stdout then stderr, as text.
pub(crate) fn text(o: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

pub(crate) fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// A running server.
pub(crate) struct Server {
    /// The address it listens on (`--bind`, default 127.0.0.1).
    pub(crate) host: String,
    pub(crate) port: u16,
    /// The built-in DNS server's port (UDP and TCP), unless the test passed its own --dns.
    pub(crate) dns_port: u16,
    /// The web front-end's port, unless the test passed its own --web-port.
    pub(crate) web_port: u16,
    pub(crate) dir: TempDir,
    child: Option<Child>,
    pub(crate) log: PathBuf,
}

impl Server {
    pub(crate) fn start() -> Self {
        Self::start_with(&[])
    }

    pub(crate) fn start_with(extra: &[&str]) -> Self {
        let dir = TempDir::new("server");
        Self::start_in(dir, extra)
    }

    /// Starts (or restarts) a server on an existing data dir.
    pub(crate) fn start_in(dir: TempDir, extra: &[&str]) -> Self {
        let port = free_sip_port();
        Self::start_on(dir, port, extra)
    }

    pub(crate) fn start_on(dir: TempDir, port: u16, extra: &[&str]) -> Self {
        let mut s = Self::spawn(dir, port, extra);
        s.wait_ready();
        s
    }

    /// `confab up` as an Edge (`extra` names it with --fqdn): it answers nobody's OPTIONS
    /// over UDP, so it is ready when it says so.
    pub(crate) fn start_edge(dir: TempDir, port: u16, extra: &[&str]) -> Self {
        let mut s = Self::spawn(dir, port, extra);
        let deadline = Instant::now() + Duration::from_secs(30);
        while !s.log_text().contains("event=\"server.ready\"") {
            if let Some(Ok(Some(status))) = s.child.as_mut().map(Child::try_wait) {
                panic!(
                    "the Edge exited during start-up ({status}):\n{}",
                    s.log_text()
                );
            }
            assert!(
                Instant::now() < deadline,
                "the Edge did not start:\n{}",
                s.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        s
    }

    fn spawn(dir: TempDir, port: u16, extra: &[&str]) -> Self {
        let log = dir.0.join(format!("server-{port}.log"));
        let out = std::fs::File::create(&log).unwrap();
        // Every server gets its own DNS and web ports so that tests run side by side. A port
        // just released can be handed out again at once: the two must differ from each other
        // and from the SIP pair.
        let dns_port = free_port_except(&[port, port + 1]);
        let web_port = free_port_except(&[port, port + 1, dns_port]);
        let mut own = Vec::new();
        if !extra.contains(&"--dns") {
            own.extend(["--dns".to_owned(), format!("127.0.0.1:{dns_port}")]);
        }
        if !extra.contains(&"--web-port") {
            own.extend(["--web-port".to_owned(), web_port.to_string()]);
        }
        if !extra.contains(&"--shards") {
            // the suite runs with two engines whatever the machine: every behaviour must be
            // the same as with one
            own.extend(["--shards".to_owned(), "2".to_owned()]);
        }
        let child = Command::new(env!("CARGO_BIN_EXE_confab"))
            .args(["up", "--data-dir"])
            .arg(&dir.0)
            .args(["--sip-port", &port.to_string()])
            .args(&own)
            .args(extra)
            .env("RUST_LOG", "debug")
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("start confab");
        let host = extra
            .iter()
            .position(|a| *a == "--bind")
            .and_then(|i| extra.get(i + 1))
            .map_or_else(|| "127.0.0.1".to_owned(), |h| (*h).to_owned());
        Self {
            host,
            port,
            dns_port,
            web_port,
            dir,
            child: Some(child),
            log,
        }
    }

    fn wait_ready(&mut self) {
        let sock = UdpSocket::bind(if self.host.contains(':') {
            "[::1]:0"
        } else {
            "127.0.0.1:0"
        })
        .unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut buf = [0u8; 2048];
        let mut n = 0;
        while Instant::now() < deadline {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                panic!(
                    "confab exited during start-up ({status}):\n{}",
                    self.log_text()
                );
            }
            n += 1;
            let probe = options_probe(&self.addr(), sock.local_addr().unwrap(), n);
            let _ = sock.send_to(probe.as_bytes(), self.addr());
            if let Ok((len, _)) = sock.recv_from(&mut buf) {
                if buf[..len].starts_with(b"SIP/2.0 200") {
                    return;
                }
            }
        }
        panic!(
            "confab did not answer OPTIONS within 30 s:\n{}",
            self.log_text()
        );
    }

    pub(crate) fn addr(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// The demo users' passwords, from the data dir.
    pub(crate) fn password(&self, user: &str) -> String {
        let text = std::fs::read_to_string(self.dir.0.join("demo-users.txt")).unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{user}@example.com ")))
            .unwrap_or_else(|| panic!("no demo user {user}"))
            .to_owned()
    }

    /// Kills the server outright (SIGKILL): no shutdown, no flush.
    pub(crate) fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// The server's resident memory (VmRSS) in KiB.
    pub(crate) fn rss_kib(&self) -> u64 {
        let pid = self.child.as_ref().map_or(0, Child::id);
        std::fs::read_to_string(format!("/proc/{pid}/status"))
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or_else(|| panic!("no VmRSS for confab (pid {pid})"))
    }

    /// The server process's id (while it runs).
    pub(crate) fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    pub(crate) fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Runs `confab` with the server's data dir.
    pub(crate) fn cli(&self, args: &[&str]) -> std::process::Output {
        Command::new(env!("CARGO_BIN_EXE_confab"))
            .args(args)
            .arg("--data-dir")
            .arg(&self.dir.0)
            .output()
            .unwrap()
    }

    /// Sends SIGTERM and returns at once (see `stop` to wait).
    pub(crate) fn sigterm(&self) {
        if let Some(c) = &self.child {
            let _ = Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .status();
        }
    }

    /// Whether the process has exited.
    pub(crate) fn exited(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(Some(_))))
    }

    /// Stops with SIGTERM and waits; returns the data dir for a restart.
    pub(crate) fn stop(mut self) -> TempDir {
        self.terminate();
        let dir = std::mem::replace(&mut self.dir, TempDir(PathBuf::new()));
        std::mem::forget(self);
        dir
    }

    fn terminate(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.terminate();
        if std::thread::panicking() {
            eprintln!("---- confab log ----\n{}", self.log_text());
        }
    }
}

/// An OPTIONS to `server` (`host:port`, IPv6 in brackets) from the socket at `local`.
fn options_probe(server: &str, local: SocketAddr, n: u32) -> String {
    let port = local.port();
    format!(
        "OPTIONS sip:{server} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bKprobe{n};rport\r\nFrom: <sip:probe@example.com>;tag=p{n}\r\nTo: <sip:{server}>\r\nCall-ID: probe-{n}-{port}\r\nCSeq: {n} OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    )
}

/// A TLS client to `server`'s TLS port: openssl s_client with TLS `version` (or none: the
/// highest both speak), verifying the server's certificate against the data dir's CA; what
/// goes into its stdin is sent, what the server answers comes out of its stdout.
pub(crate) fn tls_client(server: &Server, version: Option<&str>) -> Child {
    require("openssl");
    Command::new("openssl")
        .args(["s_client", "-quiet", "-verify_return_error"])
        .args(version)
        .arg("-connect")
        .arg(format!("127.0.0.1:{}", server.port + 1))
        .arg("-CAfile")
        .arg(server.dir.0.join("ca.pem"))
        .args(["-verify_ip", "127.0.0.1"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("run openssl s_client")
}

/// Fails loudly when a peer program is missing: the test command installs them.
pub(crate) fn require(program: &str) {
    let ok = Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "{program} is not installed: run ./scripts/test (it installs the SIP peers), or apt-get install it");
}

/// One SIPp run.
pub(crate) struct Sipp {
    pub(crate) dir: TempDir,
    args: Vec<String>,
    domain: String,
    caller_domain: String,
}

impl Sipp {
    /// SIPp with `scenario` (a file in tests/sipp) against `server`, one call.
    pub(crate) fn new(server: &Server, scenario: &str) -> Self {
        Self::with_file(server, &repo_root().join("tests/sipp").join(scenario))
    }

    /// SIPp with the scenario file `sf` against `server`, one call.
    pub(crate) fn with_file(server: &Server, sf: &Path) -> Self {
        Self::at(&server.addr(), server.host.contains(':'), sf)
    }

    /// SIPp with `scenario` (a file in tests/sipp) against another program at `addr`.
    pub(crate) fn toward(addr: &str, scenario: &str) -> Self {
        Self::at(addr, false, &repo_root().join("tests/sipp").join(scenario))
    }

    fn at(addr: &str, ipv6: bool, sf: &Path) -> Self {
        require("sipp");
        let dir = TempDir::new("sipp");
        assert!(sf.exists(), "missing scenario {}", sf.display());
        let args = vec![
            "-sf".into(),
            sf.display().to_string(),
            addr.to_owned(),
            "-i".into(),
            // the loopback address of the server's family
            if ipv6 { "::1" } else { "127.0.0.1" }.into(),
            "-p".into(),
            free_port().to_string(),
            "-m".into(),
            "1".into(),
            "-nostdin".into(),
            "-trace_msg".into(),
            "-trace_err".into(),
            "-timeout".into(),
            "30s".into(),
            "-timeout_error".into(),
        ];
        Self {
            dir,
            args,
            domain: "example.com".into(),
            caller_domain: "example.com".into(),
        }
    }

    pub(crate) fn arg(mut self, a: impl Into<String>) -> Self {
        self.args.push(a.into());
        self
    }

    pub(crate) fn args<I: IntoIterator<Item = S>, S: Into<String>>(mut self, a: I) -> Self {
        self.args.extend(a.into_iter().map(Into::into));
        self
    }

    /// The domain the scenario's `[domain]` keyword names (default example.com).
    pub(crate) fn domain(mut self, d: &str) -> Self {
        self.domain = d.into();
        self
    }

    /// The domain of the scenario's caller, `[caller_domain]` (default example.com).
    pub(crate) fn caller_domain(mut self, d: &str) -> Self {
        self.caller_domain = d.into();
        self
    }

    /// Sends from `ip` (a loopback address other than 127.0.0.1) instead.
    pub(crate) fn source_ip(mut self, ip: &str) -> Self {
        let i = self.args.iter().position(|a| a == "-i").expect("-i set") + 1;
        self.args[i] = ip.into();
        self
    }

    /// Listens on `port` instead of a free port of its choosing (a UAS others are told of).
    pub(crate) fn local_port(mut self, port: u16) -> Self {
        let i = self.args.iter().position(|a| a == "-p").expect("-p set") + 1;
        self.args[i] = port.to_string();
        self
    }

    /// Credentials for digest challenges.
    pub(crate) fn auth(self, user: &str, password: &str) -> Self {
        self.args(["-au", user, "-ap", password])
    }

    fn command(&self) -> Command {
        let mut c = Command::new("sipp");
        c.args(&self.args)
            .args(["-key", "domain", &self.domain])
            .args(["-key", "caller_domain", &self.caller_domain])
            .current_dir(&self.dir.0)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        c
    }

    /// Runs to completion.
    pub(crate) fn run(self) -> SippResult {
        let status = self.command().status().expect("run sipp");
        SippResult {
            status,
            dir: self.dir,
        }
    }

    /// Starts in the background (a UAS).
    pub(crate) fn spawn(self) -> SippChild {
        let child = self.command().spawn().expect("run sipp");
        SippChild {
            child: Some(child),
            dir: self.dir,
        }
    }
}

pub(crate) struct SippResult {
    pub(crate) status: ExitStatus,
    pub(crate) dir: TempDir,
}

impl SippResult {
    /// Every message SIPp logged.
    pub(crate) fn trace(&self) -> String {
        trace_of(&self.dir.0)
    }

    /// Asserts SIPp succeeded, printing its trace otherwise.
    pub(crate) fn assert_success(&self, what: &str) {
        assert!(
            self.status.success(),
            "{what}: sipp failed ({})\n{}",
            self.status,
            self.trace()
        );
    }
}

fn trace_of(dir: &Path) -> String {
    let mut out = String::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.ends_with("_messages.log") || name.ends_with("_errors.log") {
                out.push_str(&format!(
                    "==== {name}\n{}\n",
                    std::fs::read_to_string(e.path()).unwrap_or_default()
                ));
            }
        }
    }
    out
}

/// A SIPp running in the background.
pub(crate) struct SippChild {
    child: Option<Child>,
    pub(crate) dir: TempDir,
}

impl SippChild {
    /// Waits until the trace shows `needle` (e.g. the 200 to its REGISTER).
    pub(crate) fn wait_for(&mut self, needle: &str, what: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if trace_of(&self.dir.0).contains(needle) {
                return;
            }
            if let Some(Ok(Some(st))) = self.child.as_mut().map(Child::try_wait) {
                panic!(
                    "{what}: sipp exited early ({st})\n{}",
                    trace_of(&self.dir.0)
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!(
            "{what}: '{needle}' never appeared\n{}",
            trace_of(&self.dir.0)
        );
    }

    /// Waits for SIPp to finish and asserts success; gives its trace.
    pub(crate) fn assert_success(mut self, what: &str) -> String {
        let st = self.finish(what);
        let trace = trace_of(&self.dir.0);
        assert!(st.success(), "{what}: sipp failed ({st})\n{trace}");
        trace
    }

    /// Waits for SIPp to finish, whatever its verdict (a load that expects failures), and
    /// returns its trace.
    pub(crate) fn wait(mut self) -> String {
        self.finish("SIPp load");
        trace_of(&self.dir.0)
    }

    fn finish(&mut self, what: &str) -> ExitStatus {
        let mut c = self.child.take().unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(Some(st)) = c.try_wait() {
                return st;
            }
            if Instant::now() > deadline {
                let _ = c.kill();
                panic!("{what}: sipp did not finish\n{}", trace_of(&self.dir.0));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub(crate) fn trace(&self) -> String {
        trace_of(&self.dir.0)
    }
}

impl Drop for SippChild {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Runs the calling test again inside a private network namespace with only loopback up
/// (`unshare -n`), so that crafted SIP and anything a confused server sends cannot leave the
/// machine. Returns true in the outer process (the test body must then return), false inside.
pub(crate) fn reexec_in_netns(test_name: &str) -> bool {
    reexec_in_namespaces(test_name, &["-n"])
}

/// As `reexec_in_netns`, with a private mount namespace too (`unshare -n -m`), where the test
/// may mount file systems (a small tmpfs to fill) that nobody else sees.
pub(crate) fn reexec_in_mount_ns(test_name: &str) -> bool {
    reexec_in_namespaces(test_name, &["-n", "-m", "--propagation", "private"])
}

fn reexec_in_namespaces(test_name: &str, unshare: &[&str]) -> bool {
    if std::env::var_os("CONFAB_IN_NETNS").is_some() {
        return false;
    }
    require("unshare");
    let exe = std::env::current_exe().unwrap();
    let out = Command::new("unshare")
        .args(unshare)
        .args(["--", "sh", "-c", "ip link set lo up && exec \"$0\" \"$@\""])
        .arg(&exe)
        .args([test_name, "--exact", "--nocapture", "--test-threads=1"])
        .env("CONFAB_IN_NETNS", "1")
        .output()
        .expect("run unshare");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // what the test printed inside (figures), shown with --nocapture
    eprint!("{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        out.status.success(),
        "{test_name} inside a private network namespace failed (unshare needs root):\n{text}"
    );
    assert!(
        text.contains("1 passed"),
        "{test_name} did not run inside the namespace:\n{text}"
    );
    true
}

/// A UDP socket for sending crafted messages, with a receive timeout.
pub(crate) fn udp_client() -> UdpSocket {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(Duration::from_millis(1500)))
        .unwrap();
    s
}

/// Sends `msg` and returns the first answer, if any.
pub(crate) fn udp_exchange(sock: &UdpSocket, server: &Server, msg: &[u8]) -> Option<String> {
    sock.send_to(msg, server.addr()).unwrap();
    let mut buf = vec![0u8; 65_536];
    sock.recv_from(&mut buf)
        .ok()
        .map(|(n, _)| String::from_utf8_lossy(&buf[..n]).into_owned())
}

/// True when the server still answers an OPTIONS health probe.
pub(crate) fn answers_options(server: &Server) -> bool {
    let s = udp_client();
    let p = options_probe(&server.addr(), s.local_addr().unwrap(), 9999);
    udp_exchange(&s, server, p.as_bytes()).is_some_and(|r| r.starts_with("SIP/2.0 200"))
}

/// Registers `user` (a demo user) with a Contact on `contact_port`, over SIPp's `transport`
/// (`u1`, `t1`).
pub(crate) fn register(server: &Server, user: &str, contact_port: u16, transport: &str) {
    register_with(
        server,
        user,
        &server.password(user),
        contact_port,
        transport,
    );
}

/// As `register`, for a user whose password is `password`.
pub(crate) fn register_with(
    server: &Server,
    user: &str,
    password: &str,
    contact_port: u16,
    transport: &str,
) {
    Sipp::new(server, "register.xml")
        .args([
            "-s",
            user,
            "-key",
            "contact_port",
            &contact_port.to_string(),
            "-t",
            transport,
        ])
        .auth(user, password)
        .run()
        .assert_success(&format!("REGISTER {user} over {transport}"));
}

/// Starts a SIPp device for `user` running `scenario` on its own port and registers it.
pub(crate) fn device(server: &Server, user: &str, scenario: &str) -> SippChild {
    let port = free_port();
    let uas = Sipp::new(server, scenario)
        .args(["-s", user, "-p", &port.to_string()])
        .spawn();
    wait_udp_bound(port);
    register(server, user, port, "u1");
    uas
}

/// `from` sends a MESSAGE to `to` (both demo users); returns SIPp's trace.
pub(crate) fn message(server: &Server, from: &str, to: &str) -> String {
    let r = Sipp::new(server, "uac_message.xml")
        .args(["-s", to, "-key", "caller", from])
        .auth(from, &server.password(from))
        .run();
    r.assert_success("MESSAGE");
    r.trace()
}

/// `count` users `u0@example.com` ... with password `load-pw`, for loads: the lines for
/// `confab user import`, and a SIPp injection file (`-inf`) for `bench/sipp/register.xml`.
pub(crate) fn load_users(count: usize, dir: &TempDir) -> (PathBuf, PathBuf) {
    let (import, csv) = (dir.0.join("users.txt"), dir.0.join("users.csv"));
    let mut lines = String::new();
    let mut rows = String::from("SEQUENTIAL\n");
    for i in 0..count {
        lines.push_str(&format!("u{i}@example.com load-pw\n"));
        rows.push_str(&format!(
            "u{i};[authentication username=u{i} password=load-pw]\n"
        ));
    }
    std::fs::write(&import, lines).unwrap();
    std::fs::write(&csv, rows).unwrap();
    (import, csv)
}

/// SIPp registering each user of `csv` (from `load_users`) once at `server`, `rate` a second,
/// in the background, tracing every message.
pub(crate) fn register_load(server: &Server, csv: &Path, count: usize, rate: u32) -> SippChild {
    Sipp::with_file(server, &repo_root().join("bench/sipp/register.xml"))
        .args(["-inf", &csv.display().to_string()])
        .args(["-m", &count.to_string(), "-r", &rate.to_string()])
        .args(["-recv_timeout", "3000"]) // a server that died does not hold the load for long
        .spawn()
}

/// The users a SIPp trace shows answered 200 to a REGISTER: what the server acknowledged.
pub(crate) fn acknowledged(trace: &str) -> std::collections::BTreeSet<String> {
    trace
        .split("message received")
        .filter(|m| m.contains("\nSIP/2.0 200 OK") && m.contains("REGISTER"))
        .filter_map(|m| {
            let to = m.lines().find(|l| l.starts_with("To:"))?;
            let user = to.split("sip:").nth(1)?.split('@').next()?;
            Some(user.to_owned())
        })
        .collect()
}

/// A PostgreSQL server of the test's own (initdb into a temporary directory, a free loopback
/// port), for tests that stop and start the database under a running Confab. Needs Debian's
/// `postgresql` package, which scripts/test installs; as root the server runs as `postgres`.
pub(crate) struct Postgres {
    pub(crate) port: u16,
    dir: TempDir,
    bin: PathBuf,
}

impl Postgres {
    pub(crate) fn start() -> Self {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .into_iter()
            .flatten()
            .filter_map(Result::ok)
            .map(|e| e.path().join("bin"))
            .filter(|b| b.join("pg_ctl").exists())
            .max()
            .expect("PostgreSQL server binaries are not installed: run ./scripts/test (it installs Debian's postgresql package)");
        let dir = TempDir::new("postgres");
        let pg = Self {
            port: free_port(),
            dir,
            bin,
        };
        if is_root() {
            let ok = Command::new("chown")
                .args(["-R", "postgres"])
                .arg(&pg.dir.0)
                .status()
                .is_ok_and(|s| s.success());
            assert!(
                ok,
                "cannot hand {} to the postgres user",
                pg.dir.0.display()
            );
        }
        pg.run(
            "initdb",
            &["-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-sync"],
        );
        pg.resume();
        pg
    }

    /// Where the server's data lives.
    fn data(&self) -> String {
        self.dir.0.join("data").display().to_string()
    }

    /// `program -D DATA`, as the postgres user when we are root (the server refuses root).
    fn command(&self, program: &str) -> Command {
        let exe = self.bin.join(program);
        let mut c = if is_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&exe);
            c
        } else {
            Command::new(&exe)
        };
        c.args(["-D", &self.data()]);
        c
    }

    fn run(&self, program: &str, args: &[&str]) {
        let out = self
            .command(program)
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
        assert!(
            out.status.success(),
            "{program} {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// `postgres://postgres@127.0.0.1:PORT/postgres`.
    pub(crate) fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Stops the server (fast shutdown: connections are cut).
    pub(crate) fn stop(&self) {
        self.run("pg_ctl", &["stop", "-m", "fast", "-w"]);
    }

    /// Starts the server (again) and waits until it accepts connections.
    pub(crate) fn resume(&self) {
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            self.port,
            self.dir.0.display()
        );
        let log = self.dir.0.join("postgres.log").display().to_string();
        self.run("pg_ctl", &["start", "-w", "-o", &opts, "-l", &log]);
    }

    /// Freezes every process of the server (SIGSTOP): connections stay open and nothing
    /// answers, as with a database that hangs.
    pub(crate) fn freeze(&self) {
        self.signal("STOP");
    }

    /// Undoes [`Self::freeze`].
    pub(crate) fn thaw(&self) {
        self.signal("CONT");
    }

    fn signal(&self, sig: &str) {
        let pid_file = std::fs::read_to_string(self.dir.0.join("data/postmaster.pid"))
            .expect("PostgreSQL is running (postmaster.pid)");
        let pid = pid_file
            .lines()
            .next()
            .unwrap_or_default()
            .trim()
            .to_owned();
        for cmd in [
            format!("pkill -{sig} -P {pid}"),
            format!("kill -{sig} {pid}"),
        ] {
            // pkill exits 1 when the postmaster has no children: that is fine
            let _ = Command::new("sh").args(["-c", &cmd]).status();
        }
    }

    /// Fails naming every user in `acknowledged` (from `acknowledged`) without a stored
    /// registration.
    pub(crate) fn assert_none_lost(&self, acknowledged: &std::collections::BTreeSet<String>) {
        let stored: std::collections::BTreeSet<String> = self
            .sql("SELECT aor FROM bindings")
            .lines()
            .map(|a| a.trim_end_matches("@example.com").to_owned())
            .collect();
        let lost: Vec<&String> = acknowledged.difference(&stored).collect();
        assert!(lost.is_empty(), "acknowledged but not stored: {lost:?}");
    }

    /// Runs SQL with psql and returns its unaligned output.
    pub(crate) fn sql(&self, query: &str) -> String {
        let out = Command::new("psql")
            .args([
                "-X",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                &self.url(),
                "-c",
                query,
            ])
            .output()
            .expect("run psql");
        assert!(
            out.status.success(),
            "psql {query}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = self
            .command("pg_ctl")
            .args(["stop", "-m", "immediate"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0\n"))
}

/// What `openssl s_client` gets back within 1.5 s for `request` sent over TLS to `addr`
/// (trusting `ca`; presenting `cert` = (certificate, key) when given).
pub(crate) fn over_tls(
    addr: &str,
    ca: &Path,
    cert: Option<(&Path, &Path)>,
    request: &str,
) -> String {
    use std::io::Write;
    let mut cmd = Command::new("openssl");
    cmd.args(["s_client", "-quiet", "-connect", addr, "-CAfile"])
        .arg(ca);
    if let Some((pem, key)) = cert {
        cmd.arg("-cert").arg(pem).arg("-key").arg(key);
    }
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("openssl");
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(request.as_bytes()).unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    drop(stdin);
    let _ = child.kill();
    let out = child.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A request as a hand-made client writes it over TLS: `extra` is more header lines.
pub(crate) fn sip_request(method: &str, uri: &str, from: &str, extra: &str) -> String {
    format!(
        "{method} {uri} SIP/2.0\r\nVia: SIP/2.0/TLS 127.0.0.1:5999;branch=z9hG4bK-{}\r\nMax-Forwards: 70\r\nFrom: <sip:{from}>;tag=f1\r\nTo: <{uri}>\r\nCall-ID: hand-{}@test\r\nCSeq: 1 {method}\r\n{extra}Content-Length: 0\r\n\r\n",
        free_port(),
        free_port()
    )
}
