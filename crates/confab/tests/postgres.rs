//! Confab on PostgreSQL, the back end a pool shares, with real servers: a database that cannot
//! be reached at start, users and registrations kept in PostgreSQL, and the database lost and
//! regained under a running server. Each test runs a PostgreSQL of its own (it stops it).

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{device, free_port, free_sip_port, register, Postgres, Server, Sipp, TempDir};

#[test]
fn an_unreachable_database_stops_start_up_with_a_reason() {
    let dir = TempDir::new("no-database");
    let port = free_port(); // nothing listens there
    let out = Command::new(env!("CARGO_BIN_EXE_confab"))
        .args(["up", "--data-dir"])
        .arg(&dir.0)
        .args(["--sip-port", &free_sip_port().to_string()])
        .args(["--dns", "off", "--web-port", "0", "--database"])
        .arg(format!("postgres://confab:hunter2@127.0.0.1:{port}/confab"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!(
            "cannot connect to PostgreSQL at 127.0.0.1:{port}/confab"
        )),
        "names the database: {err}"
    );
    assert!(
        err.contains("Is PostgreSQL running"),
        "says what to check: {err}"
    );
    assert!(!err.contains("hunter2"), "never prints the password: {err}");

    let out = Command::new(env!("CARGO_BIN_EXE_confab"))
        .args(["user", "list", "--database", "mysql://db/confab"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(64), "a usage error: {err}");
    assert!(err.contains("postgres://USER@HOST:PORT/DATABASE"), "{err}");
}

#[test]
fn registrations_live_in_postgres_and_outlast_a_database_outage() {
    let pg = Postgres::start();
    let url = pg.url();
    let server = Server::start_with(&["--database", &url]);
    assert!(
        server.log_text().contains(&format!(
            "Database  PostgreSQL at 127.0.0.1:{}/postgres",
            pg.port
        )),
        "the banner names the database:\n{}",
        server.log_text()
    );
    assert_eq!(
        pg.sql("SELECT count(*) FROM users"),
        "3",
        "demo users in PostgreSQL"
    );

    // a user added with the CLI against the same database signs in at once
    let out = server.cli(&[
        "user",
        "add",
        "dave@example.com",
        "--password",
        "d4ve-pw",
        "--database",
        &url,
    ]);
    assert!(out.status.success(), "{out:?}");
    Sipp::new(&server, "register.xml")
        .args(["-s", "dave", "-key", "contact_port", "5999"])
        .auth("dave", "d4ve-pw")
        .run()
        .assert_success("REGISTER of a user added through PostgreSQL");

    // bob's device is registered; its binding row is in PostgreSQL
    let bob = device(&server, "bob", "uas_message.xml");
    let bob_port = pg
        .sql("SELECT contact FROM bindings WHERE aor = 'bob@example.com'")
        .rsplit(':')
        .next()
        .and_then(|p| p.split(';').next())
        .unwrap()
        .to_owned();

    pg.stop();
    // bob registers the same contact from another address while the database is down: his
    // hashes are in memory, but a binding that moved must be stored before the 200, so it
    // is refused with 503 and Retry-After
    let r = Sipp::new(&server, "register_refused.xml")
        .args(["-s", "bob", "-key", "contact_port", &bob_port])
        .auth("bob", &server.password("bob"))
        .run();
    r.assert_success("REGISTER while PostgreSQL is down");
    let trace = r.trace();
    assert!(
        trace.contains("SIP/2.0 503 Service Unavailable (registration database unreachable)")
            && trace.contains("Retry-After: 5"),
        "503 with Retry-After:\n{trace}"
    );
    assert!(
        server.log_text().contains("database unavailable"),
        "the outage is logged:\n{}",
        server.log_text()
    );

    pg.resume();
    // service resumes by itself: carol signs in without a restart of Confab
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let r = Sipp::new(&server, "register.xml")
            .args(["-s", "carol", "-key", "contact_port", "5998"])
            .auth("carol", &server.password("carol"))
            .run();
        if r.status.success() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no REGISTER succeeded within 20 s of PostgreSQL's return:\n{}",
            server.log_text()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    assert_eq!(
        pg.sql("SELECT count(*) FROM bindings"),
        "3",
        "dave, bob and carol"
    );
    // bob's binding outlived the refused refresh: a MESSAGE still reaches his device
    common::message(&server, "alice", "bob");
    bob.assert_success("bob's device reached after the outage");
    register(&server, "alice", 5997, "t1");
}

#[test]
fn nothing_acknowledged_is_lost_when_postgres_restarts_under_load() {
    let pg = Postgres::start();
    let url = pg.url();
    let server = Server::start_with(&["--database", &url, "--no-demo-users"]);
    let dir = TempDir::new("restart-load");
    let (import, csv) = common::load_users(300, &dir);
    let out = server.cli(&[
        "user",
        "import",
        &import.display().to_string(),
        "--database",
        &url,
    ]);
    assert!(out.status.success(), "{out:?}");

    // 300 sign-ins at 30 a second; PostgreSQL goes away for 2 s in the middle
    let load = common::register_load(&server, &csv, 300, 30);
    std::thread::sleep(Duration::from_secs(3));
    pg.stop();
    std::thread::sleep(Duration::from_secs(2));
    pg.resume();
    let trace = load.wait();
    let acked = common::acknowledged(&trace);
    let refused = trace.matches("SIP/2.0 503 Service Unavailable").count();
    assert!(
        refused > 0,
        "the outage was seen (503s):\n{}",
        server.log_text()
    );
    // every registration the server acknowledged is in the database
    pg.assert_none_lost(&acked);
    // and service came back by itself: the last 50 sign-ins (after the restart) all succeeded
    let last: Vec<String> = (250..300).map(|i| format!("u{i}")).collect();
    let missing: Vec<&String> = last.iter().filter(|u| !acked.contains(*u)).collect();
    assert!(
        missing.is_empty(),
        "not signed in after the restart: {missing:?}"
    );
    eprintln!(
        "postgres restart under load: {} of 300 acknowledged, {refused} answered 503, 0 lost",
        acked.len()
    );
}

/// The second attempt of a REGISTER for `user`, answering the 401 `challenge` (MD5).
fn authorized_register(
    server: &Server,
    local: std::net::SocketAddr,
    user: &str,
    challenge: &str,
) -> String {
    let nonce = challenge
        .split("nonce=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .expect("a nonce in the challenge");
    let uri = "sip:example.com";
    let alg = sip_auth::Algorithm::Md5;
    let ha1 = sip_auth::ha1(alg, user, "example.com", &server.password(user));
    let response = sip_auth::client_response(alg, &ha1, "REGISTER", uri, nonce, "00000001", "c0");
    format!(
        "REGISTER {uri} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bKfrozen2;rport\r\nFrom: <sip:{user}@example.com>;tag=f1\r\nTo: <sip:{user}@example.com>\r\nCall-ID: frozen-{user}\r\nCSeq: 2 REGISTER\r\nContact: <sip:{user}@{local}>\r\nAuthorization: Digest username=\"{user}\", realm=\"example.com\", nonce=\"{nonce}\", uri=\"{uri}\", response=\"{response}\", algorithm=MD5, qop=auth, nc=00000001, cnonce=\"c0\"\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    )
}

#[test]
fn a_hung_database_delays_only_the_requests_that_need_it() {
    let pg = Postgres::start();
    let server = Server::start_with(&["--database", &pg.url()]);
    let signer = common::udp_client();
    let local = signer.local_addr().unwrap();
    let first = format!(
        "REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bKfrozen1;rport\r\nFrom: <sip:alice@example.com>;tag=f1\r\nTo: <sip:alice@example.com>\r\nCall-ID: frozen-alice\r\nCSeq: 1 REGISTER\r\nContact: <sip:alice@{local}>\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    );
    let challenge = common::udp_exchange(&signer, &server, first.as_bytes()).expect("a 401");
    assert!(challenge.starts_with("SIP/2.0 401"), "{challenge}");

    pg.freeze();
    // alice's record must be read (the server has not seen her yet): this sign-in waits for
    // the database; a health probe sent after it needs none and is answered first
    signer
        .send_to(
            authorized_register(&server, local, "alice", &challenge).as_bytes(),
            server.addr(),
        )
        .unwrap();
    let probe = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    probe
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let options = format!(
        "OPTIONS sip:{0} SIP/2.0\r\nVia: SIP/2.0/UDP {1};branch=z9hG4bKhung;rport\r\nFrom: <sip:probe@example.com>;tag=h1\r\nTo: <sip:{0}>\r\nCall-ID: hung-probe\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
        server.addr(),
        probe.local_addr().unwrap()
    );
    let pong = common::udp_exchange(&probe, &server, options.as_bytes());
    assert!(
        pong.as_deref()
            .is_some_and(|p| p.starts_with("SIP/2.0 200")),
        "OPTIONS answered while the database hangs: {pong:?}"
    );
    signer.set_nonblocking(true).unwrap();
    let mut buf = vec![0u8; 65_536];
    let early = signer
        .recv_from(&mut buf)
        .map(|(n, _)| String::from_utf8_lossy(&buf[..n]).into_owned());
    assert!(
        early.is_err(),
        "the sign-in was answered before the probe, so the engine waited for the database: {early:?}"
    );
    signer.set_nonblocking(false).unwrap();
    signer
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let (n, _) = signer
        .recv_from(&mut buf)
        .expect("the sign-in is answered in the end");
    let answer = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(
        answer.starts_with("SIP/2.0 503 Service Unavailable (user database unreachable)")
            && answer.contains("Retry-After:"),
        "a database that does not answer is a 503 with Retry-After:\n{answer}"
    );
    pg.thaw();
    // and service resumes by itself
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = Sipp::new(&server, "register.xml")
            .args(["-s", "alice", "-key", "contact_port", "5996"])
            .auth("alice", &server.password("alice"))
            .run();
        if r.status.success() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "alice could not sign in after the database came back:\n{}",
            server.log_text()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}
