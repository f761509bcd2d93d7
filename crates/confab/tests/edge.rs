//! The Edge role across real processes: a Director and two Front Ends on PostgreSQL, and an Edge
//! (`confab up --fqdn edge01...`, no database) whose certificate `confab edge prepare` issued
//! from the deployment's CA. A remote baresip (an unmodified client) signs in over TLS at the
//! Access Edge, the Director authenticates it and proxies it to its home pool, and messages go
//! both ways through Edge and Director; a user whose remote access is switched off is refused
//! with the policy named; what the internet may not do at the Edge is refused with a reason.

mod common;

use std::process::Command;
use std::time::Duration;

use common::baresip::{command, Account, Baresip};
use common::deployment::Deployment;
use common::{Server, Sipp, TempDir};

/// The deployment with alice and bob on pool A, its Director and first Front End running, and
/// the Edge prepared and started.
struct WithEdge {
    d: Deployment,
    director: Server,
    fe: Server,
    _fe2: Server,
    edge: Server,
    /// The Access Edge, `ip:port`, and the CA its certificate chains to.
    access: String,
    ca: std::path::PathBuf,
}

impl WithEdge {
    fn start() -> Self {
        let d = Deployment::new();
        d.users("pool-a.example.com", &["alice", "bob"]);
        let director = d.start("dir01.example.com", "127.0.0.11");
        let fe = d.start("fe-a1.example.com", "127.0.0.12");
        // the Director spreads pool A's users over both its Front Ends
        let fe2 = d.start("fe-a2.example.com", "127.0.0.14");
        let dir = TempDir::new("edge01");
        let out = d.cli(&[
            "edge",
            "prepare",
            "--fqdn",
            "edge01.example.com",
            "--out",
            &dir.0.display().to_string(),
        ]);
        assert!(out.status.success(), "edge prepare: {out:?}");
        assert!(
            !dir.0.join("ca.key").exists(),
            "the CA's key stays inside the deployment"
        );
        let file = d.topology_file();
        let edge = Server::start_edge(
            dir,
            d.port,
            &[
                "--bind",
                "127.0.0.20",
                "--fqdn",
                "edge01.example.com",
                "--topology",
                &file,
            ],
        );
        let access = format!("127.0.0.21:{}", d.access_port);
        Self {
            d,
            director,
            fe,
            _fe2: fe2,
            access,
            ca: edge.dir.0.join("ca.pem"),
            edge,
        }
    }

    /// A remote baresip of `user` (password pw) signed in through the Access Edge.
    fn remote(&self, user: &str) -> Baresip {
        Baresip::run(&self.account(user))
    }

    /// `user` (password pw) outside, with the Access Edge as outbound proxy.
    fn account<'a>(&'a self, user: &'a str) -> Account<'a> {
        Account {
            user,
            domain: "example.com",
            password: "pw",
            proxy: &self.access,
            transport: "tls",
            ca: &self.ca,
            cons_port: None,
            watch: None,
        }
    }
}

#[test]
fn a_remote_user_signs_in_through_the_edge_and_messages_go_both_ways() {
    let w = WithEdge::start();
    // everything internal is archived (remote users are the deployment's)
    let set =
        w.d.cli_db(&["archive", "policy", "set", "global", "--internal", "on"]);
    assert!(set.status.success(), "{set:?}");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    for s in [&w.director, &w.fe, &w._fe2] {
        while !s.log_text().contains("policies=1") {
            assert!(
                std::time::Instant::now() < deadline,
                "every server reads the policy"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    // bob inside on pool A and alice outside watch each other's presence
    let (alice_cons, bob_cons) = (common::free_port(), common::free_port());
    let fe_addr = w.fe.addr();
    let bob = Baresip::run(&Account {
        user: "bob",
        proxy: &fe_addr,
        transport: "udp",
        cons_port: Some(bob_cons),
        watch: Some("alice"),
        ..w.account("bob")
    });
    let alice = Baresip::run(&Account {
        cons_port: Some(alice_cons),
        watch: Some("bob"),
        ..w.account("alice")
    });
    assert!(
        w.director.log_text().contains("register.proxied"),
        "the Director proxied the sign-in to the home pool"
    );
    let path =
        w.d.pg
            .sql("SELECT path FROM bindings WHERE aor = 'alice@example.com'");
    assert!(
        path.contains("127.0.0.11") && path.contains("127.0.0.20") && path.contains("flow="),
        "the registration goes back through the Director and the Edge to alice's connection: {path}"
    );

    // bob, inside on pool A, writes to alice outside
    let r = Sipp::new(&w.fe, "uac_message.xml")
        .args(["-s", "alice", "-key", "caller", "bob"])
        .auth("bob", "pw")
        .run();
    r.assert_success("MESSAGE bob -> remote alice");
    assert!(
        r.trace().contains("Server: baresip"),
        "alice's baresip answered through Director and Edge:\n{}",
        r.trace()
    );
    // presence both ways across the Edge, once each has subscribed to the other
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let logs = || [&w.director, &w.fe, &w._fe2].map(|s| s.log_text()).concat();
    while !(logs().contains("watcher=alice@example.com resource=User(\"bob@example.com\")")
        && logs().contains("watcher=bob@example.com resource=User(\"alice@example.com\")"))
    {
        assert!(
            std::time::Instant::now() < deadline,
            "no subscriptions:\n{}",
            logs()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    command(bob_cons, "presence_offline");
    alice.wait_for(
        "<sip:bob@example.com> changed status from Online to Offline",
        "alice outside sees bob go offline",
    );
    command(alice_cons, "presence_offline");
    bob.wait_for(
        "<sip:alice@example.com> changed status from Online to Offline",
        "bob inside sees remote alice go offline",
    );
    // bob's message to remote alice is archived once, as internal (by the Front End that
    // took it, not again by the Director it passed)
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let found = loop {
        let out =
            w.d.cli_db(&["archive", "search", "--user", "alice@example.com"]);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        if !text.is_empty() {
            break text;
        }
        assert!(std::time::Instant::now() < deadline, "archived: {out:?}");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(found.lines().count(), 1, "{found}");
    assert!(
        found.contains("internal  bob@example.com -> alice@example.com: Hello from bob"),
        "{found}"
    );
    drop(alice);
}

#[test]
fn a_user_without_remote_access_is_refused_with_the_policy_named() {
    let w = WithEdge::start();
    let out = Command::new(env!("CARGO_BIN_EXE_confab"))
        .args(["user", "set", "bob@example.com", "--remote-access", "off"])
        .args(["--database", &w.d.pg.url()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("remote access off"));
    std::thread::sleep(Duration::from_secs(3)); // a housekeeping period: the cache drops bob
    let bob = Baresip::spawn(&w.account("bob"));
    bob.wait_for(
        "403 Forbidden (remote access is not allowed for this user by policy)",
        "bob is refused from outside, the policy named",
    );
    assert!(w.director.log_text().contains("auth.remote_refused"));
    // alice still may
    drop(w.remote("alice"));
}

#[test]
fn the_internet_gets_only_what_the_edge_lets_through_with_the_reason() {
    let w = WithEdge::start();
    let ca = w.ca.clone();
    // relaying to a domain that is not ours
    let got = common::over_tls(
        &w.access,
        &ca,
        None,
        &common::sip_request(
            "MESSAGE",
            "sip:victim@elsewhere.test",
            "mallory@example.com",
            "",
        ),
    );
    assert!(
        got.contains(
            "403 Forbidden (relaying denied: elsewhere.test is not a domain of this organisation)"
        ),
        "{got}"
    );
    // a partner's request while federation is off
    let got = common::over_tls(
        &w.access,
        &ca,
        None,
        &common::sip_request("MESSAGE", "sip:bob@example.com", "eve@fabrikam.test", ""),
    );
    assert!(
        got.contains("403 Forbidden (federation is not enabled: fabrikam.test)"),
        "{got}"
    );
    // a forged mark from outside does not make the request an inside one: it reaches the
    // Director as remote and is challenged
    let got = common::over_tls(
        &w.access,
        &ca,
        None,
        &common::sip_request(
            "MESSAGE",
            "sip:bob@example.com",
            "alice@example.com",
            "Confab-Origin: federated;domain=example.com\r\n",
        ),
    );
    assert!(got.contains("407 Proxy Authentication Required"), "{got}");
    assert!(
        !w.fe.log_text().contains("federated;domain=example.com"),
        "the forged mark never reached the Front End"
    );
    let log = w.edge.log_text();
    assert!(
        log.contains("event=\"edge.refused\"") && log.contains("remote=127.0.0.1"),
        "each refusal is logged with who sent it:\n{log}"
    );
    // one internet address may hold 50 connections at the Access Edge; more are refused
    let held: Vec<std::net::TcpStream> = (0..55)
        .filter_map(|_| std::net::TcpStream::connect(&w.access).ok())
        .collect();
    assert_eq!(
        held.len(),
        55,
        "the kernel accepts them; the Edge closes what is over"
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !w.edge.log_text().contains("event=\"tcp.source_limit\"") {
        assert!(
            std::time::Instant::now() < deadline,
            "no connection refused:\n{}",
            w.edge.log_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(held);
    // the inside listener takes the deployment's servers only (a client certificate)
    let inside = format!("127.0.0.20:{}", w.d.port + 1);
    let got = common::over_tls(
        &inside,
        &ca,
        None,
        &common::sip_request("MESSAGE", "sip:bob@example.com", "alice@example.com", ""),
    );
    assert!(
        got.contains(
            "403 Forbidden (the Edge's inside takes requests from the deployment's servers only)"
        ),
        "{got}"
    );
}
