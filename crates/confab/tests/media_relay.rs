//! The A/V Edge across real processes, each test in a private network namespace: a Front End
//! issues media relay credentials over SIP; the Edge (`confab up --fqdn edge01...`) starts
//! coturn (Debian's `coturn`) from the topology and gives it the deployment's secrets; coturn's
//! own client (`turnutils_uclient`) relays with Confab's credentials and is refused with forged,
//! expired and revoked ones and towards the inside; two PJSIP clients in namespaces with no
//! route between them call each other with ICE over the relay.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::relay::{
    ask_credentials, ip, stun_over_tls, topology_text, uclient, Peer, RelaySite, AV,
};
use common::{reexec_in_netns, require, text, TempDir};

const PUBLIC_PEER: &str = "198.51.100.77";
const INSIDE_HOST: &str = "10.1.0.50";

#[test]
fn the_relay_takes_confab_credentials_and_refuses_forged_expired_revoked_and_inside_ones() {
    if reexec_in_netns(
        "the_relay_takes_confab_credentials_and_refuses_forged_expired_revoked_and_inside_ones",
    ) {
        return;
    }
    require("turnutils_uclient");
    for a in [AV, PUBLIC_PEER, INSIDE_HOST] {
        ip(&["addr", "add", &format!("{a}/32"), "dev", "lo"]);
    }
    let site = RelaySite::start("127.0.0.12");
    let _peers = [
        Peer::start(PUBLIC_PEER),
        Peer::start(INSIDE_HOST),
        Peer::start("127.0.0.12"),
    ];
    std::thread::sleep(Duration::from_millis(300));
    let password = site.fe.password("alice");

    // over SIP, for the signed-in user, with the relay's addresses
    let got = ask_credentials(&site.fe, "alice", &password, "sip:alice@example.com");
    assert_eq!(got.status, "SIP/2.0 200 OK", "{}", got.body);
    let (user, pass) = (got.field("username"), got.field("password"));
    assert!(user.ends_with(":alice@example.com"), "{user}");
    let expires: i64 = user.split(':').next().unwrap().parse().unwrap();
    let now = unix_now();
    assert!(
        (now + 8 * 3600 - 5..=now + 8 * 3600 + 5).contains(&expires),
        "8 hours: {user}"
    );
    for (field, value) in [
        ("hostName", "av.example.com"),
        ("udpPort", "3478"),
        ("tcpPort", "3478"),
        ("tlsPort", "443"),
    ] {
        assert_eq!(got.field(field), value, "{}", got.body);
    }
    let other = ask_credentials(&site.fe, "alice", &password, "sip:bob@example.com");
    assert!(
        other.status.starts_with("SIP/2.0 403") && other.status.contains("not bob@example.com"),
        "{}",
        other.status
    );

    // coturn relays with them over UDP, TCP and DTLS, to a public address, and answers over
    // TLS with the Edge's certificate for the A/V name
    for transport in ["udp", "tcp", "dtls"] {
        let r = uclient(transport, &user, &pass, PUBLIC_PEER);
        assert!(r.relayed_all(), "{transport}: {}", r.output);
    }
    stun_over_tls(&site.edge.dir.0.join("ca.pem")).expect("TURN's TLS port answers");
    let mut refusals = Vec::new();
    // forged: another password, or alice's password under bob's name
    let forged = [
        (user.clone(), "Zm9yZ2VkIHBhc3N3b3Jk".to_owned()),
        (user.replace("alice@", "bob@"), pass.clone()),
    ];
    // expired: made with the relay's own secret, valid until 10 s ago
    let secret = site.relay_secrets().pop().expect("the relay has a secret");
    let old = confab_core::media_relay::credentials(
        &secret,
        "alice@example.com",
        now - 8 * 3600 - 10,
        8 * 3600,
    );
    for (what, (u, p)) in [
        ("forged password", forged[0].clone()),
        ("another user's name", forged[1].clone()),
        ("expired", (old.username, old.password)),
    ] {
        let r = uclient("udp", &u, &p, PUBLIC_PEER);
        assert!(
            r.refused("Cannot complete Allocation"),
            "{what}: {}",
            r.output
        );
        refusals.push(what);
    }
    // valid credentials reach no inside host: a private address, a deployment server
    for inside in [INSIDE_HOST, "127.0.0.12"] {
        let r = uclient("udp", &user, &pass, inside);
        assert!(r.refused("Forbidden IP"), "towards {inside}: {}", r.output);
        refusals.push("an inside peer");
    }

    // a rotation keeps what was issued valid (calls in progress go on) ...
    let out = site.cli(&["edge", "rotate-secret"]);
    assert!(out.status.success(), "{out:?}");
    site.wait_log("event=\"av.secrets\" count=2", 1);
    assert!(
        uclient("udp", &user, &pass, PUBLIC_PEER).relayed_all(),
        "within the grace period"
    );
    // ... a revocation does not: the old credentials are refused, new ones work
    let out = site.cli(&["edge", "rotate-secret", "--revoke"]);
    assert!(out.status.success(), "{out:?}");
    site.wait_log("event=\"av.secrets\" count=1", 2);
    let r = uclient("udp", &user, &pass, PUBLIC_PEER);
    assert!(
        r.refused("Cannot complete Allocation"),
        "revoked: {}",
        r.output
    );
    refusals.push("revoked");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let again = ask_credentials(&site.fe, "alice", &password, "sip:alice@example.com");
        let r = uclient(
            "udp",
            &again.field("username"),
            &again.field("password"),
            PUBLIC_PEER,
        );
        if r.relayed_all() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "new credentials never worked: {}",
            r.output
        );
        std::thread::sleep(Duration::from_secs(1));
    }

    // coturn killed: the Edge reports it and starts it again
    let pid = std::fs::read_to_string(site.edge.dir.0.join("turn/turnserver.pid")).unwrap();
    let kill = Command::new("kill")
        .args(["-9", pid.trim()])
        .status()
        .unwrap();
    assert!(kill.success());
    site.wait_log("event=\"av.exited\"", 1);
    site.wait_log("event=\"av.started\"", 2);
    let deadline = Instant::now() + Duration::from_secs(20);
    let fresh = ask_credentials(&site.fe, "alice", &password, "sip:alice@example.com");
    while !uclient(
        "udp",
        &fresh.field("username"),
        &fresh.field("password"),
        PUBLIC_PEER,
    )
    .relayed_all()
    {
        assert!(
            Instant::now() < deadline,
            "coturn never came back:\n{}",
            site.edge.log_text()
        );
        std::thread::sleep(Duration::from_millis(500));
    }

    // autodiscover lists the relay's three addresses, and `confab discover` shows them
    let out = Command::new(env!("CARGO_BIN_EXE_confab"))
        .args([
            "discover",
            "alice@example.com",
            "--dns",
            &format!("127.0.0.1:{}", site.fe.dns_port),
        ])
        .args(["--web-port", &site.fe.web_port.to_string()])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(
            "media relay udp av.example.com:3478, tcp av.example.com:3478, tls av.example.com:443"
        ),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!(
        "media relay: relayed over udp, tcp, dtls (STUN over tls); refused: {}",
        refusals.join(", ")
    );
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// A process holding a network namespace of its own (`unshare -n`), joined to the test's
/// namespace by a veth pair: `addr`/24 on its side, the test's side `.1`, default route there.
struct Side {
    holder: Child,
}

impl Side {
    fn new(name: &str, addr: &str) -> Self {
        let holder = Command::new("unshare")
            .args(["-n", "sleep", "600"])
            .stdin(Stdio::null())
            .spawn()
            .expect("unshare");
        let pid = holder.id().to_string();
        std::thread::sleep(Duration::from_millis(200));
        let net = addr.rsplit_once('.').unwrap().0;
        ip(&[
            "link", "add", name, "type", "veth", "peer", "name", "eth0", "netns", &pid,
        ]);
        ip(&["addr", "add", &format!("{net}.1/24"), "dev", name]);
        ip(&["link", "set", name, "up"]);
        let side = Self { holder };
        side.run(&format!("ip link set lo up && ip addr add {addr}/24 dev eth0 && ip link set eth0 up && ip route add default via {net}.1"));
        side
    }

    fn nsenter(&self) -> Command {
        let mut c = Command::new("nsenter");
        c.args(["-t", &self.holder.id().to_string(), "-n", "--"]);
        c
    }

    fn run(&self, script: &str) {
        let out = self.nsenter().args(["sh", "-c", script]).output().unwrap();
        assert!(
            out.status.success(),
            "{script}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for Side {
    fn drop(&mut self) {
        let _ = self.holder.kill();
        let _ = self.holder.wait();
    }
}

#[test]
fn two_clients_with_no_route_between_them_call_through_the_relay() {
    if reexec_in_netns("two_clients_with_no_route_between_them_call_through_the_relay") {
        return;
    }
    require("nsenter");
    require("python3");
    ip(&["addr", "add", &format!("{AV}/32"), "dev", "lo"]);
    // alice inside (10.1.0.2), bob outside (10.2.0.2); this namespace (the Edge's, and the
    // Front End's at 10.1.0.1) forwards nothing between them
    let inside = Side::new("veth-in", "10.1.0.2");
    let outside = Side::new("veth-out", "10.2.0.2");
    let forward = std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap();
    assert_eq!(forward.trim(), "0", "the middle must not route");
    let site = RelaySite::start("10.1.0.1");
    // a datagram from bob's side to alice's address never arrives
    let listen = inside
        .nsenter()
        .args(["python3", "-c", "import socket\ns=socket.socket(2,2)\ns.bind(('10.1.0.2',9999))\ns.settimeout(2)\ntry:\n  s.recv(9); print('arrived')\nexcept OSError: print('nothing')"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    outside.run("python3 -c \"import socket; socket.socket(2,2).sendto(b'x',('10.1.0.2',9999))\"");
    let listen = listen.wait_with_output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&listen.stdout).trim(),
        "nothing",
        "a route between the sides"
    );

    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/pjsua/relayed.py");
    let proxy = site.fe.addr();
    let start = |side: &Side, bind: &str, user: &str, role: &[&str]| {
        let password = site.fe.password(user);
        let creds = ask_credentials(
            &site.fe,
            user,
            &password,
            &format!("sip:{user}@example.com"),
        );
        assert_eq!(creds.status, "SIP/2.0 200 OK", "{}", creds.body);
        let log = site.topology.0.join(format!("{user}.log"));
        let child = side
            .nsenter()
            .args([
                "python3",
                script,
                "--bind",
                bind,
                "--proxy",
                &proxy,
                "--user",
                user,
                "--password",
                &password,
                "--domain",
                "example.com",
            ])
            .args([
                "--turn",
                &format!("{AV}:3478"),
                "--turn-user",
                &creds.field("username"),
                "--turn-password",
                &creds.field("password"),
            ])
            .args(role)
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        (child, log)
    };
    let (mut alice, alice_log) = start(&inside, "10.1.0.2", "alice", &["--answer"]);
    wait_file(&alice_log, "registered");
    let (mut bob, bob_log) = start(
        &outside,
        "10.2.0.2",
        "bob",
        &["--call", "sip:alice@example.com", "--seconds", "4"],
    );
    let bob_status = wait_child(&mut bob, 60);
    let alice_status = wait_child(&mut alice, 20);
    let (a, b) = (read(&alice_log), read(&bob_log));
    assert!(
        bob_status && alice_status,
        "alice:\n{a}\nbob:\n{b}\nEdge:\n{}",
        site.edge.log_text()
    );
    for (who, text) in [("alice", &a), ("bob", &b)] {
        let stats = text
            .lines()
            .find(|l| l.starts_with("stats "))
            .unwrap_or_default();
        let rx: u64 = stats
            .split("rx=")
            .nth(1)
            .and_then(|r| r.split(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        assert!(
            rx >= 100,
            "{who} received {rx} RTP packets (4 s of 20 ms frames is 200): {text}"
        );
        assert!(
            stats.contains(&format!("remote={AV}:")),
            "{who}'s media came from the relay: {stats}"
        );
        eprintln!("relayed call: {who} {stats}");
    }
}

fn read(path: &std::path::Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

fn wait_file(path: &std::path::Path, needle: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !read(path).contains(needle) {
        assert!(
            Instant::now() < deadline,
            "{needle} never in {}: {}",
            path.display(),
            read(path)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Waits for `child` to exit (killing it after `secs`); true when it succeeded.
fn wait_child(child: &mut Child, secs: u64) -> bool {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return status.success();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn confab(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_confab"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn the_edge_commands_print_the_relay_configuration_and_rotate_secrets_or_say_what_to_fix() {
    let dir = TempDir::new("relay-cli");
    let topology = dir.0.join("topology.toml");
    std::fs::write(&topology, topology_text("127.0.0.12", 5060, 5070)).unwrap();
    let no_av = dir.0.join("no-av.toml");
    let text_no_av = topology_text("127.0.0.12", 5060, 5070).replace("av = {", "# av = {");
    std::fs::write(&no_av, text_no_av).unwrap();
    let d = dir.0.display().to_string();
    let turn_config = |fqdn: &str, file: &std::path::Path| {
        let file = file.display().to_string();
        confab(&[
            "edge",
            "turn-config",
            "--fqdn",
            fqdn,
            "--topology",
            &file,
            "--data-dir",
            &d,
        ])
    };
    let fails = |o: std::process::Output, why: &str| {
        assert!(
            !o.status.success() && text(&o).contains(why),
            "{why}: {}",
            text(&o)
        );
    };
    let o = turn_config("edge01.example.com", &topology);
    assert!(o.status.success(), "{}", text(&o));
    let config = text(&o);
    for line in [
        "relay-ip=203.0.113.11",
        "listening-ip=127.0.0.20",
        "use-auth-secret",
        "denied-peer-ip=127.0.0.12",
        "realm=example.com",
    ] {
        assert!(config.lines().any(|l| l == line), "{line}:\n{config}");
    }
    assert!(
        config.contains(&format!("userdb={d}/turn/secrets.db")),
        "{config}"
    );
    fails(
        turn_config("fe01.example.com", &topology),
        "fe01.example.com is not an Edge server",
    );
    let o = confab(&["topology", "show", &topology.display().to_string()]);
    let shown = "media relay: av.example.com at 203.0.113.11 (TURN UDP and TCP 3478, TLS 443)";
    assert!(
        o.status.success() && text(&o).contains(shown),
        "{}",
        text(&o)
    );
    fails(
        turn_config("edge01.example.com", &no_av),
        "has no A/V service: add `av = ",
    );

    // rotation works on the deployment's database, and says what to do without one
    let none = dir.0.join("none").display().to_string();
    fails(
        confab(&["edge", "rotate-secret", "--data-dir", &none]),
        "run `confab up` first",
    );
    // a deployment's database (as `confab up` makes it)
    let store = confab_store::SqliteStore::open(&dir.0.join("confab.db")).unwrap();
    let o = confab(&["edge", "rotate-secret", "--data-dir", &d]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("credentials issued before stay valid 8 h"),
        "{}",
        text(&o)
    );
    let both = [
        "edge",
        "rotate-secret",
        "--revoke",
        "--grace-hours",
        "1",
        "--data-dir",
        &d,
    ];
    fails(confab(&both), "cannot be used with");
    let o = confab(&["edge", "rotate-secret", "--revoke", "--data-dir", &d]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("every credential issued before is revoked"),
        "{}",
        text(&o)
    );
    use confab_store::Store;
    let stored = store.settings("relay-secrets").unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!(
        stored[0].1.lines().count(),
        1,
        "revoked: one secret left: {stored:?}"
    );
}
