//! Pools across real processes on one PostgreSQL: a Director (127.0.0.11) and two pools, A
//! (Front Ends 127.0.0.12 and 127.0.0.14, backed up by B) and B (127.0.0.13), each server its
//! own `confab up`. Users are homed with the CLI; SIPp signs in at the Director, is redirected
//! with both q-values, finds the home pool with a DNS query to Confab's own DNS server and
//! registers there; a user moved with `confab user move` is redirected to its new pool; a user
//! without a home pool gets 404. Messages and calls reach devices connected to another Front
//! End of the pool, and to another pool, through the server that holds the registration; a
//! watcher on one server sees what its contact publishes on another. (Sign-ins through an
//! Edge: `edge.rs`.)

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::deployment::Deployment;
use common::{free_port, Server, Sipp, SippChild, TempDir};

/// A REGISTER of `user` (password `pw`) at `server` that is refused; returns the final response.
fn refused(server: &Server, user: &str) -> String {
    let r = Sipp::new(server, "register_refused.xml")
        .args(["-s", user, "-key", "contact_port", "5999"])
        .auth(user, "pw")
        .run();
    r.assert_success(&format!("REGISTER {user} at {}", server.addr()));
    let trace = r.trace();
    let at = trace.rfind("SIP/2.0 ").expect("a response");
    trace[at..]
        .split("\n\n")
        .next()
        .unwrap_or_default()
        .to_owned()
}

fn registers(server: &Server, user: &str) {
    Sipp::new(server, "register.xml")
        .args(["-s", user, "-key", "contact_port", "5998"])
        .auth(user, "pw")
        .run()
        .assert_success(&format!("REGISTER {user} at {}", server.addr()));
}

/// The address Confab's DNS server (of `server`) gives for `name`.
fn resolve(server: &Server, name: &str) -> String {
    let out = Command::new("dig")
        .args([
            "@127.0.0.1",
            "-p",
            &server.dns_port.to_string(),
            "+short",
            name,
            "A",
        ])
        .output()
        .expect("run dig");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

#[test]
fn sign_ins_are_redirected_to_the_home_pool_and_follow_a_move() {
    common::require("dig");
    let d = Deployment::new();
    for (user, pool) in [
        ("alice", "pool-a.example.com"),
        ("bob", "pool-b.example.com"),
    ] {
        let out = d.cli(&[
            "user",
            "add",
            &format!("{user}@example.com"),
            "--password",
            "pw",
            "--pool",
            pool,
        ]);
        assert!(out.status.success(), "{out:?}");
    }
    let out = d.cli(&["user", "add", "x@example.com", "--password", "pw"]);
    assert_eq!(out.status.code(), Some(64), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("say which with --pool"),
        "{out:?}"
    );
    let out = d.cli(&[
        "user",
        "add",
        "x@example.com",
        "--password",
        "pw",
        "--pool",
        "dir.example.com",
    ]);
    assert_eq!(
        out.status.code(),
        Some(64),
        "a Director hosts no users: {out:?}"
    );

    let director = d.start("dir01.example.com", "127.0.0.11");
    let fe_a = d.start("fe-a1.example.com", "127.0.0.12");
    let fe_b = d.start("fe-b1.example.com", "127.0.0.13");
    let port = d.port;

    // the Director authenticates, then redirects to the home pool and its backup
    let answer = refused(&director, "alice");
    assert!(
        answer.starts_with("SIP/2.0 301 Moved Permanently (home pool pool-a.example.com)"),
        "{answer}"
    );
    assert!(
        answer.contains(&format!("Contact: <sip:pool-a.example.com:{port}>;q=0.7"))
            && answer.contains(&format!("Contact: <sip:pool-b.example.com:{port}>;q=0.3")),
        "home pool at q=0.7, backup at q=0.3:\n{answer}"
    );
    // the client resolves the home pool and signs in there
    let addresses = resolve(&director, "pool-a.example.com");
    let mut addresses: Vec<&str> = addresses.lines().collect();
    addresses.sort_unstable();
    assert_eq!(
        addresses,
        ["127.0.0.12", "127.0.0.14"],
        "pool A's Front Ends"
    );
    registers(&fe_a, "alice");

    // a pool that is not the user's home redirects too; its own users register
    let answer = refused(&fe_b, "alice");
    assert!(answer.starts_with("SIP/2.0 301"), "{answer}");
    registers(&fe_b, "bob");

    // alice moves to pool B: pool A drops her registration and redirects her
    let out = d.cli(&[
        "user",
        "move",
        "alice@example.com",
        "--to",
        "pool-b.example.com",
    ]);
    assert!(out.status.success(), "{out:?}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !fe_a.log_text().contains("registrar.user_left") {
        assert!(
            Instant::now() < deadline,
            "pool A did not drop the moved user:\n{}",
            fe_a.log_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let answer = refused(&fe_a, "alice");
    assert!(
        answer.contains(&format!("Contact: <sip:pool-b.example.com:{port}>;q=0.7")),
        "{answer}"
    );
    registers(&fe_b, "alice");
    assert_eq!(
        d.pg.sql("SELECT count(*) FROM bindings WHERE aor = 'alice@example.com'"),
        "1",
        "only the new pool's registration"
    );
    let list = Command::new(env!("CARGO_BIN_EXE_confab"))
        .args(["user", "list", "--database", &d.pg.url()])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&list.stdout).contains("alice@example.com\tpool-b.example.com"),
        "{list:?}"
    );

    // pool B is emptied into pool A: everyone moves, with progress shown
    let out = d.cli(&[
        "pool",
        "move-users",
        "--from",
        "pool-b.example.com",
        "--to",
        "pool-a.example.com",
    ]);
    assert!(out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .contains("moved 2/2 users from pool-b.example.com to pool-a.example.com"),
        "{out:?}"
    );
    assert_eq!(
        d.pg.sql("SELECT count(*) FROM users WHERE pool = 'pool-b.example.com'"),
        "0"
    );
    assert_eq!(
        d.pg.sql("SELECT count(*) FROM bindings"),
        "0",
        "pool B kept nothing"
    );
    let answer = refused(&fe_b, "bob");
    assert!(
        answer.starts_with("SIP/2.0 301 Moved Permanently (home pool pool-a.example.com)"),
        "{answer}"
    );

    // a user without a home pool (added without a topology) is refused with the reason
    let out = Command::new(env!("CARGO_BIN_EXE_confab"))
        .args(["user", "add", "dave@example.com", "--password", "pw"])
        .args(["--database", &d.pg.url(), "--data-dir"])
        .arg(&TempDir::new("no-topology").0)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let answer = refused(&director, "dave");
    assert!(
        answer.starts_with("SIP/2.0 404 Not Found (user has no home pool)"),
        "{answer}"
    );
    assert!(
        director.log_text().contains("register.no_home")
            && director.log_text().contains("dave@example.com"),
        "logged with the user:\n{}",
        director.log_text()
    );
}

/// A SIPp device of `user` running `scenario`, registered at `server` over `transport`.
fn device_at(server: &Server, user: &str, scenario: &str, transport: &str) -> SippChild {
    let port = free_port();
    let uas = Sipp::new(server, scenario)
        .args(["-s", user, "-p", &port.to_string(), "-t", transport])
        .spawn();
    if transport == "u1" {
        common::wait_udp_bound(port);
    } else {
        std::thread::sleep(Duration::from_millis(300));
    }
    common::register_with(server, user, "pw", port, transport);
    uas
}

/// `from` sends `scenario` (a UAC) to `to` through `server`; returns SIPp's trace.
fn send(server: &Server, from: &str, to: &str, scenario: &str) -> String {
    let r = Sipp::new(server, scenario)
        .args(["-s", to, "-key", "caller", from])
        .auth(from, "pw")
        .run();
    r.assert_success(&format!("{scenario} {from} -> {to} via {}", server.addr()));
    r.trace()
}

#[test]
fn requests_reach_devices_through_the_server_that_holds_them() {
    let (d, [fe_a1, fe_a2, fe_b1]) = Deployment::front_ends();

    // bob's device is connected to FE1 over TCP; alice's MESSAGE enters at FE2
    let bob = device_at(&fe_a1, "bob", "uas_message.xml", "t1");
    assert_eq!(
        d.pg.sql("SELECT server FROM bindings WHERE aor = 'bob@example.com'"),
        format!("127.0.0.12:{}", d.port),
        "the registration records which server holds the connection"
    );
    let trace = send(&fe_a2, "alice", "bob", "uac_message.xml");
    assert!(trace.contains("SIP/2.0 200 OK"), "{trace}");
    bob.assert_success("bob's device got the MESSAGE through FE1");

    // a call from pool B's Front End to bob on pool A's FE1: both servers stay on the path
    let bob = device_at(&fe_a1, "bob", "uas_call.xml", "t1");
    let trace = send(&fe_b1, "carol", "bob", "uac_call.xml");
    let rr = trace
        .lines()
        .find(|l| l.starts_with("Record-Route:"))
        .unwrap_or_default();
    assert!(
        rr.contains(&format!("<sip:127.0.0.12:{};", d.port))
            && rr.contains(&format!("<sip:127.0.0.13:{};", d.port)),
        "Record-Route keeps both servers on the dialog:\n{trace}"
    );
    assert!(
        rr.contains(&format!(
            "<sip:127.0.0.12:{};transport=tls;lr;seal=",
            d.port + 1
        )) && rr.contains(&format!(
            "<sip:127.0.0.13:{};transport=tls;lr;seal=",
            d.port + 1
        )),
        "the servers talk TLS to each other:\n{trace}"
    );
    bob.assert_success("bob answered, got ACK and BYE through FE1");

    // and across pools the other way, carol's device on pool B over UDP
    let carol = device_at(&fe_b1, "carol", "uas_message.xml", "u1");
    send(&fe_a2, "alice", "carol", "uac_message.xml");
    carol.assert_success("carol's device got the MESSAGE through pool B");
}

fn pidf(user: &str, activity: &str) -> String {
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?><presence xmlns="urn:ietf:params:xml:ns:pidf" xmlns:dm="urn:ietf:params:xml:ns:pidf:data-model" xmlns:rpid="urn:ietf:params:xml:ns:pidf:rpid" entity="sip:{user}@example.com"><tuple id="t"><status><basic>open</basic></status><note>{activity} note of {user}</note></tuple><dm:person id="p"><rpid:activities><rpid:{activity}/></rpid:activities></dm:person></presence>"#
    )
}

fn publish(server: &Server, user: &str, activity: &str) {
    Sipp::new(server, "publish.xml")
        .args(["-s", user, "-key", "caller", user])
        .args([
            "-key",
            "event",
            "presence",
            "-key",
            "ctype",
            "application/pidf+xml",
        ])
        .args(["-key", "body", &pidf(user, activity)])
        .auth(user, "pw")
        .run()
        .assert_success(&format!("PUBLISH by {user} at {}", server.addr()));
}

fn watch(server: &Server, watcher: &str, user: &str) -> SippChild {
    Sipp::new(server, "subscribe.xml")
        .args(["-s", user, "-key", "caller", watcher])
        .args(["-key", "event", "presence", "-key", "expires", "600"])
        .auth(watcher, "pw")
        .spawn()
}

#[test]
fn presence_crosses_front_ends_and_pools() {
    let (_deployment, [fe_a1, fe_a2, fe_b1]) = Deployment::front_ends();

    // bob published on FE1 before anyone watched
    publish(&fe_a1, "bob", "away");
    // alice watches bob from FE2, carol from pool B
    let mut alice = watch(&fe_a2, "alice", "bob");
    alice.wait_for(
        "away note of bob",
        "the first NOTIFY at FE2 shows what bob published at FE1",
    );
    let mut carol = watch(&fe_b1, "carol", "bob");
    carol.wait_for("away note of bob", "and at pool B");

    // bob changes on FE1: both watchers hear it from their own servers
    publish(&fe_a1, "bob", "busy");
    alice.wait_for("busy note of bob", "FE2 notified of a publication at FE1");
    carol.wait_for(
        "busy note of bob",
        "pool B notified of a publication at pool A",
    );

    // a device of bob registering at FE2 is one of bob's devices everywhere
    let _device = device_at(&fe_a2, "bob", "uas_message.xml", "u1");
    publish(&fe_a2, "bob", "vacation");
    carol.wait_for(
        "vacation note of bob",
        "pool B notified of a publication at FE2",
    );
}

#[test]
fn a_killed_front_end_loses_nothing_and_its_users_sign_in_at_the_other() {
    let d = Deployment::new();
    let dir = TempDir::new("kill-load");
    let (import, csv) = common::load_users(120, &dir);
    d.import(&import);
    let mut fe_a1 = d.start("fe-a1.example.com", "127.0.0.12");
    let fe_a2 = d.start("fe-a2.example.com", "127.0.0.14");

    // 120 sign-ins at FE1, 40 a second; FE1 is killed (SIGKILL) after about a second
    let load = common::register_load(&fe_a1, &csv, 120, 40);
    std::thread::sleep(Duration::from_millis(1200));
    fe_a1.kill9();
    let acked = common::acknowledged(&load.wait());
    assert!(
        !acked.is_empty(),
        "some sign-ins were acknowledged before the kill"
    );

    // what FE1 acknowledged is in the database
    d.pg.assert_none_lost(&acked);
    assert_eq!(
        d.pg.sql("SELECT count(*) FROM users"),
        "120",
        "no user lost"
    );

    // every user signs in again at the survivor
    let again = common::register_load(&fe_a2, &csv, 120, 60);
    let acked_again = common::acknowledged(&again.wait());
    assert_eq!(acked_again.len(), 120, "all 120 signed in at FE2");
    assert_eq!(
        d.pg.sql(&format!(
            "SELECT count(*) FROM bindings WHERE server = '127.0.0.14:{}'",
            d.port
        )),
        "120",
        "their registrations now name FE2"
    );
    eprintln!(
        "kill -9 of FE1: {} sign-ins acknowledged before the kill, 0 lost; 120/120 at FE2",
        acked.len()
    );
}

#[test]
fn a_pool_grows_and_drains_under_load_without_a_failed_registration() {
    let d = Deployment::new();
    // pool A starts with FE1 only: take FE2 out of the file, then add it back with the CLI
    let file = d.topology_file();
    let text = std::fs::read_to_string(&file).unwrap();
    let fe2 = "[[pool.server]]\nfqdn = \"fe-a2.example.com\"\naddress = \"127.0.0.14\"\n";
    assert!(text.contains(fe2));
    std::fs::write(&file, text.replace(fe2, "")).unwrap();
    let dir = TempDir::new("drain-load");
    let (import, csv) = common::load_users(60, &dir);
    d.import(&import);
    let fe_a1 = d.start("fe-a1.example.com", "127.0.0.12");

    let add_server = |fqdn: &str| {
        Command::new(env!("CARGO_BIN_EXE_confab"))
            .args([
                "pool",
                "add-server",
                "--pool",
                "pool-a.example.com",
                "--fqdn",
                fqdn,
            ])
            .args(["--address", "127.0.0.14", "--topology", &file])
            .output()
            .unwrap()
    };
    let add = add_server("fe-a2.example.com");
    assert!(add.status.success(), "{add:?}");
    let again = add_server("fe-a3.example.com");
    assert_eq!(
        again.status.code(),
        Some(64),
        "an address in use is refused: {again:?}"
    );
    let fe_a2 = d.start("fe-a2.example.com", "127.0.0.14");

    // 150 sign-ins at FE1, 15 a second, by a client that follows redirects; FE1 is drained
    // two seconds in
    let load = Sipp::with_file(
        &fe_a1,
        &common::repo_root().join("tests/sipp/register_follow.xml"),
    )
    .args(["-inf", &csv.display().to_string(), "-m", "150", "-r", "15"])
    .spawn();
    std::thread::sleep(Duration::from_secs(2));
    let out = d.cli(&["pool", "drain", "fe-a1.example.com"]);
    assert!(out.status.success(), "{out:?}");
    let trace = load.wait();
    let failed = trace.matches("SIP/2.0 4").count() - trace.matches("SIP/2.0 401").count();
    assert_eq!(failed, 0, "no sign-in refused:\n{}", fe_a1.log_text());
    assert_eq!(
        trace.matches("SIP/2.0 200 OK").count(),
        150,
        "all 150 sign-ins ended in 200"
    );
    assert_eq!(
        common::acknowledged(&trace).len(),
        60,
        "every user signed in"
    );
    assert!(
        trace.contains("SIP/2.0 302 Moved Temporarily (server draining)"),
        "FE1 sent clients on once drained"
    );
    let at_fe2 = d.pg.sql(&format!(
        "SELECT count(*) FROM bindings WHERE server = '127.0.0.14:{}'",
        d.port
    ));
    assert_ne!(at_fe2, "0", "the added server took the sign-ins");
    assert!(fe_a2.log_text().contains("registrar.registered"));
    assert!(fe_a1.log_text().contains("server.pool_drain"));
}

/// Signs `user` (password `pw`) in over a TCP connection of its own, as a desktop client does
/// (MD5 digest), and returns the connection, still open.
fn tcp_sign_in(server: &Server, user: &str) -> std::net::TcpStream {
    use std::io::{Read, Write};
    let mut c = std::net::TcpStream::connect(server.addr()).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let local = c.local_addr().unwrap();
    let register = |cseq: u32, auth: &str| {
        format!(
            "REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/TCP {local};branch=z9hG4bKtcp{cseq};rport\r\nFrom: <sip:{user}@example.com>;tag=t{cseq}\r\nTo: <sip:{user}@example.com>\r\nCall-ID: tcp-{user}\r\nCSeq: {cseq} REGISTER\r\nContact: <sip:{user}@{local};transport=tcp>\r\n{auth}Max-Forwards: 70\r\nExpires: 3600\r\nContent-Length: 0\r\n\r\n"
        )
    };
    let read = |c: &mut std::net::TcpStream| {
        let mut buf = vec![0u8; 8192];
        let n = c.read(&mut buf).unwrap();
        String::from_utf8_lossy(&buf[..n]).into_owned()
    };
    c.write_all(register(1, "").as_bytes()).unwrap();
    let challenge = read(&mut c);
    assert!(challenge.starts_with("SIP/2.0 401"), "{challenge}");
    let nonce = challenge
        .split("nonce=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .unwrap()
        .to_owned();
    let ha1 = sip_auth::ha1(sip_auth::Algorithm::Md5, user, "example.com", "pw");
    let response = sip_auth::client_response(
        sip_auth::Algorithm::Md5,
        &ha1,
        "REGISTER",
        "sip:example.com",
        &nonce,
        "00000001",
        "c0ffee",
    );
    let auth = format!("Authorization: Digest username=\"{user}\", realm=\"example.com\", nonce=\"{nonce}\", uri=\"sip:example.com\", response=\"{response}\", algorithm=MD5, cnonce=\"c0ffee\", qop=auth, nc=00000001\r\n");
    c.write_all(register(2, &auth).as_bytes()).unwrap();
    let ok = read(&mut c);
    assert!(ok.starts_with("SIP/2.0 200"), "{ok}");
    c
}

#[test]
fn a_moved_users_connected_device_is_made_to_sign_in_again() {
    use std::io::Read;
    let d = Deployment::new();
    d.users("pool-a.example.com", &["alice"]);
    let fe_a1 = d.start("fe-a1.example.com", "127.0.0.12");
    let mut device = tcp_sign_in(&fe_a1, "alice");
    let out = d.cli(&[
        "user",
        "move",
        "alice@example.com",
        "--to",
        "pool-b.example.com",
    ]);
    assert!(out.status.success(), "{out:?}");
    // within a housekeeping period pool A closes the device's connection: the client
    // reconnects, signs in again and is redirected to pool B
    device
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut buf = [0u8; 512];
    let n = device
        .read(&mut buf)
        .expect("the connection ends, not times out");
    assert_eq!(
        n,
        0,
        "closed by the server: {:?}",
        String::from_utf8_lossy(&buf[..n])
    );
    let answer = refused(&fe_a1, "alice");
    assert!(answer.contains("pool-b.example.com"), "{answer}");
}

/// Response groups in a pool of two Front Ends: the pool's queues live on one of them (the
/// first by address, FE1); a call to the workflow entering at FE2 is passed there, and the
/// agent offered the call is reached at FE2, where it signed in.
#[test]
fn a_pools_response_groups_run_on_one_front_end_and_reach_agents_signed_in_at_any() {
    use common::rgs::{agent, agent_answering_xml, caller_xml, scenario, sipp, Ear, End};
    let (d, [fe_a1, fe_a2, _fe_b1]) = Deployment::front_ends();
    let dir = TempDir::new("pool-rgs");
    let doc = dir.0.join("rgs.toml");
    std::fs::write(
        &doc,
        r#"[[group]]
name = "Desk"
pool = "pool-a.example.com"
agents = ["bob@example.com"]
[[queue]]
name = "Desk"
pool = "pool-a.example.com"
groups = ["Desk"]
[[workflow]]
name = "Help Desk"
pool = "pool-a.example.com"
address = "sip:helpdesk@example.com"
queue = "Desk"
"#,
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_confab"))
        .args([
            "rgs",
            "import",
            doc.to_str().unwrap(),
            "--database",
            &d.pg.url(),
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", common::text(&out));
    for fe in [&fe_a1, &fe_a2] {
        common::rgs::wait_log_count(fe, "event=\"rgs.config\"", 1);
    }
    let bob = agent(
        &fe_a2,
        "bob",
        "pw",
        &scenario(&dir, "bob.xml", &agent_answering_xml(300)),
    );
    let ear = Ear::new();
    let sf = scenario(
        &dir,
        "alice.xml",
        &caller_xml(&[], 0, End::Connected { talk_ms: 1000 }),
    );
    sipp(&fe_a2, &sf)
        .args(["-s", "helpdesk", "-key", "caller", "alice"])
        .args(["-key", "rtp_port", &ear.port.to_string()])
        .auth("alice", "pw")
        .run()
        .assert_success("alice called the help desk at FE2");
    bob.assert_success("bob, signed in at FE2, answered the call FE1 offered him");
    assert!(
        fe_a1.log_text().contains("event=\"rgs.call\""),
        "FE1 runs the pool's queues"
    );
    assert!(
        !fe_a2.log_text().contains("event=\"rgs.call\""),
        "FE2 passed the call on"
    );
    let music: Vec<_> = ear
        .heard()
        .into_iter()
        .filter(|h| h.from.ip().to_string() == "127.0.0.12")
        .collect();
    assert!(!music.is_empty(), "the music came from FE1's media engine");
}

/// `user` (password `pw`) joins meeting `id` entering at `server`, stays a moment, leaves.
fn join_meeting_at(server: &Server, id: &str, user: &str, dir: &TempDir) {
    let sf = common::rgs::scenario(
        dir,
        &format!("{user}-{}.xml", server.port),
        &common::meetings::participant_xml(&[common::meetings::Step::Pause(500)]),
    );
    let ear = common::rgs::Ear::new();
    common::rgs::sipp(server, &sf)
        .args(["-s", &format!("meet-{id}"), "-key", "caller", user])
        .args(["-key", "rtp_port", &ear.port.to_string()])
        .auth(user, "pw")
        .run()
        .assert_success(&format!("{user} joins meeting {id} at {}", server.addr()));
}

fn joined(server: &Server) -> usize {
    server
        .log_text()
        .matches("event=\"meeting.joined\"")
        .count()
}

#[test]
fn a_meeting_is_hosted_by_its_directorys_pool_wherever_participants_enter() {
    let (d, [fe_a1, fe_a2, fe_b1]) = Deployment::front_ends();
    let out = d.cli(&[
        "meeting",
        "directory",
        "add",
        "--pool",
        "pool-a.example.com",
    ]);
    assert!(out.status.success(), "{}", common::text(&out));
    let out = d.cli_db(&["meeting", "create", "--organizer", "alice@example.com"]);
    let text = common::text(&out);
    let id = text
        .lines()
        .find_map(|l| l.strip_prefix("created meeting "))
        .unwrap_or_else(|| panic!("{text}"))
        .trim()
        .to_owned();
    assert!(
        text.contains("directory:      1 (pool pool-a.example.com)"),
        "{text}"
    );
    for fe in [&fe_a1, &fe_a2, &fe_b1] {
        common::rgs::wait_log_count(fe, "meetings=1 ", 1);
    }
    // carol enters at pool B's server, bob at pool A's other one: both are hosted at fe-a1
    let dir = TempDir::new("pool-meeting");
    join_meeting_at(&fe_b1, &id, "carol", &dir);
    join_meeting_at(&fe_a2, &id, "bob", &dir);
    assert_eq!(
        (joined(&fe_a1), joined(&fe_a2), joined(&fe_b1)),
        (2, 0, 0),
        "the directory's pool hosts the meeting"
    );
    // the directory moves to pool B, meeting and all: the next participant is hosted there
    let before = fe_a2
        .log_text()
        .matches("event=\"meetings.config\"")
        .count();
    let out = d.cli(&[
        "meeting",
        "directory",
        "move",
        "1",
        "--to",
        "pool-b.example.com",
    ]);
    assert!(
        common::text(&out).contains("and its 1 meeting(s) now belong to pool-b.example.com"),
        "{}",
        common::text(&out)
    );
    common::rgs::wait_log_count(&fe_a2, "event=\"meetings.config\"", before + 1);
    join_meeting_at(&fe_a2, &id, "bob", &dir);
    assert_eq!(joined(&fe_b1), 1, "hosted by pool B now");
}
