//! The deployment as code, end to end with real tools: `dig` against the built-in DNS server,
//! `confab discover` walking real DNS and HTTP, `openssl s_client` against the TLS listener,
//! autodiscover answers compared with golden files, and the topology commands' exit codes.

mod common;

use std::net::{TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{free_port, reexec_in_netns, require, Server, TempDir};

fn confab(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_confab"))
        .args(args)
        .output()
        .expect("run confab")
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn topology_fixture(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/topologies")
        .join(rel)
}

fn crate_fixture(rel: &str) -> PathBuf {
    common::repo_root()
        .join("crates/confab-topology/tests/fixtures")
        .join(rel)
}

fn dig(port: u16, args: &[&str]) -> String {
    require("dig");
    let out = Command::new("dig")
        .args(["@127.0.0.1", "-p", &port.to_string(), "+time=2", "+tries=1"])
        .args(args)
        .output()
        .expect("run dig");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// One HTTP/1.1 GET; returns (status line, body).
fn http_get(port: u16, host: &str, path: &str, accept: &str) -> (String, String) {
    use std::io::{Read, Write};
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect to the web front-end");
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nAccept: {accept}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    s.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").expect("an HTTP response");
    (
        head.lines().next().unwrap_or_default().to_owned(),
        body.to_owned(),
    )
}

#[test]
fn dig_gets_the_sign_in_records_from_the_built_in_dns() {
    let server = Server::start();
    let tls = server.port + 1;
    let srv = dig(
        server.dns_port,
        &["+short", "_sipinternaltls._tcp.example.com", "SRV"],
    );
    assert_eq!(
        srv.trim(),
        format!("0 0 {tls} pool01.example.com."),
        "SRV answer"
    );
    for name in [
        "pool01.example.com",
        "lyncdiscoverinternal.example.com",
        "sipinternal.example.com",
    ] {
        assert_eq!(
            dig(server.dns_port, &["+short", name, "A"]).trim(),
            "127.0.0.1",
            "A {name}"
        );
    }
    // The same over TCP.
    let tcp = dig(
        server.dns_port,
        &["+tcp", "+short", "pool01.example.com", "A"],
    );
    assert_eq!(tcp.trim(), "127.0.0.1");
    // A name the zone does not hold: an authoritative NXDOMAIN, not silence.
    let missing = dig(server.dns_port, &["nosuchhost.example.com", "A"]);
    assert!(missing.contains("status: NXDOMAIN"), "{missing}");
    assert!(
        missing.contains(" aa"),
        "authoritative answer flag: {missing}"
    );
}

#[test]
fn autodiscover_answers_match_the_golden_files() {
    let server = Server::start();
    let path = "/Autodiscover/AutodiscoverService.svc/root?sipuri=sip:alice@example.com";
    let golden = |name: &str| {
        std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/golden")
                .join(name),
        )
        .unwrap()
        .replace("{TLS_PORT}", &(server.port + 1).to_string())
    };
    let (status, body) = http_get(
        server.web_port,
        "lyncdiscoverinternal.example.com",
        path,
        "application/json",
    );
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert_eq!(body, golden("autodiscover-internal.json"));
    let (status, body) = http_get(
        server.web_port,
        "lyncdiscover.example.com",
        path,
        "application/xml",
    );
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert_eq!(body, golden("autodiscover-external.xml"));
    let (status, body) = http_get(
        server.web_port,
        "lyncdiscover.example.com",
        "/autodiscover/autodiscoverservice.svc/root?sipuri=sip:bob@fabrikam.com",
        "application/json",
    );
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert_eq!(body, golden("autodiscover-redirect.json"));
    let (status, body) = http_get(
        server.web_port,
        "lyncdiscoverinternal.example.com",
        "/autodiscover/autodiscoverservice.svc/root?sipuri=sip:nobody@example.com",
        "application/json",
    );
    assert_eq!(status, "HTTP/1.1 404 Not Found", "{body}");
    assert!(body.contains("no user sip:nobody@example.com"), "{body}");
    let (status, body) = http_get(
        server.web_port,
        "lyncdiscoverinternal.example.com",
        "/autodiscover/autodiscoverservice.svc/root",
        "application/json",
    );
    assert_eq!(status, "HTTP/1.1 400 Bad Request", "{body}");
}

#[test]
fn discover_finds_confab_up_for_both_client_generations() {
    let server = Server::start();
    let dns = format!("127.0.0.1:{}", server.dns_port);
    let web = server.web_port.to_string();
    let tls = server.port + 1;
    let modern = confab(&[
        "discover",
        "alice@example.com",
        "--dns",
        &dns,
        "--web-port",
        &web,
    ]);
    let out = text(&modern);
    assert!(modern.status.success(), "{out}");
    assert!(
        out.contains("query lyncdiscoverinternal.example.com A: 127.0.0.1"),
        "{out}"
    );
    assert!(
        out.contains("Internal access: sign in at pool01.example.com"),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "sign in to pool01.example.com:{tls} (127.0.0.1), found through autodiscover"
        )),
        "{out}"
    );
    let legacy = confab(&[
        "discover",
        "alice@example.com",
        "--client",
        "legacy",
        "--dns",
        &dns,
    ]);
    let out = text(&legacy);
    assert!(legacy.status.success(), "{out}");
    assert!(
        !out.contains("lyncdiscover"),
        "legacy clients never ask for lyncdiscover: {out}"
    );
    assert!(
        out.contains(&format!(
            "sign in to pool01.example.com:{tls} (127.0.0.1), found through _sipinternaltls._tcp.example.com SRV"
        )),
        "{out}"
    );
}

/// `confab dns serve` for one view of a topology, on a free port; killed on drop.
struct DnsServe {
    child: Child,
    port: u16,
}

impl DnsServe {
    fn start(topology: &Path, view: &str) -> Self {
        let port = free_port();
        let child = Command::new(env!("CARGO_BIN_EXE_confab"))
            .args([
                "dns",
                "serve",
                "--view",
                view,
                "--listen",
                &format!("127.0.0.1:{port}"),
            ])
            .arg("--topology")
            .arg(topology)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start confab dns serve");
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "confab dns serve did not listen");
            std::thread::sleep(Duration::from_millis(20));
        }
        Self { child, port }
    }
}

impl Drop for DnsServe {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn discover_from_outside_reaches_the_edge_and_explains_failures() {
    let topology = topology_fixture("split-edge.toml");
    let external = DnsServe::start(&topology, "external");
    let internal = DnsServe::start(&topology, "internal");
    let ext = format!("127.0.0.1:{}", external.port);
    let int = format!("127.0.0.1:{}", internal.port);
    let closed_web = free_port().to_string();

    // From the internet a legacy client finds the Access Edge through _sip._tls.
    let out = confab(&[
        "discover",
        "bob@contoso.com",
        "--client",
        "legacy",
        "--network",
        "external",
        "--dns",
        &ext,
    ]);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(
        t.contains("query _sipinternaltls._tcp.contoso.com SRV: no such record"),
        "{t}"
    );
    assert!(
        t.contains(
            "sign in to sip.contoso.com:443 (127.0.0.21), found through _sip._tls.contoso.com SRV"
        ),
        "{t}"
    );

    // A modern client outside: lyncdiscover answers, its web service does not (nothing listens
    // in this test), so the client falls back to SRV exactly as real clients do.
    let out = confab(&[
        "discover",
        "bob@contoso.com",
        "--network",
        "external",
        "--dns",
        &ext,
        "--web-port",
        &closed_web,
        "--timeout",
        "1",
    ]);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(
        t.contains("query lyncdiscoverinternal.contoso.com A: no such record"),
        "{t}"
    );
    assert!(
        t.contains("query lyncdiscover.contoso.com A: 127.0.0.31"),
        "{t}"
    );
    assert!(t.contains("failed: cannot connect"), "{t}");
    assert!(t.contains("sign in to sip.contoso.com:443"), "{t}");

    // Inside, split DNS gives the pool itself.
    let out = confab(&[
        "discover",
        "bob@contoso.com",
        "--client",
        "legacy",
        "--dns",
        &int,
    ]);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(
        t.contains("sign in to pool01.contoso.com:5061 (127.0.0.11)"),
        "{t}"
    );

    // fabrikam.com publishes no SRV: legacy clients cannot find it, and are told why.
    let out = confab(&[
        "discover",
        "ann@fabrikam.com",
        "--client",
        "legacy",
        "--dns",
        &int,
    ]);
    let t = text(&out);
    assert!(!out.status.success(), "{t}");
    assert!(
        t.contains("SRV-only (legacy) clients inside the network cannot sign in to fabrikam.com"),
        "{t}"
    );
    assert!(
        t.contains("publish _sipinternaltls._tcp.fabrikam.com SRV"),
        "{t}"
    );

    // A DNS server that does not answer: the first lookup fails, and says so.
    let dead = format!("127.0.0.1:{}", free_port());
    let out = confab(&[
        "discover",
        "bob@contoso.com",
        "--dns",
        &dead,
        "--timeout",
        "1",
    ]);
    let t = text(&out);
    assert!(!out.status.success(), "{t}");
    assert!(
        t.contains("lookup of lyncdiscoverinternal.contoso.com A failed"),
        "{t}"
    );
    assert!(
        t.contains(&format!("the DNS server at {dead} is not answering")),
        "{t}"
    );
}

fn openssl_cert(port: u16, servername: Option<&str>, ca: &Path) -> String {
    require("openssl");
    let mut c = Command::new("openssl");
    c.args([
        "s_client",
        "-connect",
        &format!("127.0.0.1:{port}"),
        "-CAfile",
    ])
    .arg(ca);
    match servername {
        Some(n) => c.args(["-servername", n]),
        None => c.arg("-noservername"),
    };
    let out = c.stdin(Stdio::null()).output().expect("openssl s_client");
    let shown = String::from_utf8_lossy(&out.stdout).into_owned();
    let start = shown
        .find("-----BEGIN CERTIFICATE-----")
        .expect("a certificate");
    let end = shown
        .find("-----END CERTIFICATE-----")
        .expect("a certificate end")
        + 25;
    let mut x509 = Command::new("openssl")
        .args(["x509", "-noout", "-subject", "-ext", "subjectAltName"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    x509.stdin
        .take()
        .unwrap()
        .write_all(&shown.as_bytes()[start..end])
        .unwrap();
    let parsed = x509.wait_with_output().unwrap();
    format!("{}\n{}", String::from_utf8_lossy(&parsed.stdout), shown)
}

#[test]
fn tls_certificate_covers_what_dns_points_at_and_sni_picks_certificates() {
    // An extra certificate for another name, issued by `confab certs issue` into certs/.
    let dir = TempDir::new("sni");
    let other = dir.0.join("other.toml");
    std::fs::write(
        &other,
        confab_single_server_text("fabrikam.com", "pool01.fabrikam.com"),
    )
    .unwrap();
    let issue = confab(&[
        "certs",
        "issue",
        "--topology",
        other.to_str().unwrap(),
        "--out",
        dir.0.join("certs").to_str().unwrap(),
    ]);
    assert!(issue.status.success(), "{}", text(&issue));

    let server = Server::start_in(dir, &[]);
    let tls = server.port + 1;
    let ca = server.dir.0.join("ca.pem");
    let default = openssl_cert(tls, None, &ca);
    assert!(
        default.contains("subject=CN = pool01.example.com"),
        "{default}"
    );
    for name in [
        "pool01.example.com",
        "sip.example.com",
        "sipinternal.example.com",
        "lyncdiscoverinternal.example.com",
    ] {
        assert!(
            default.contains(&format!("DNS:{name}")),
            "SAN {name}: {default}"
        );
    }
    assert!(
        default.contains("Verify return code: 0 (ok)"),
        "chain to ca.pem: {default}"
    );

    let by_name = openssl_cert(tls, Some("pool01.fabrikam.com"), &ca);
    assert!(
        by_name.contains("subject=CN = pool01.fabrikam.com"),
        "SNI chooses the other certificate: {by_name}"
    );
    let same = openssl_cert(tls, Some("sip.example.com"), &ca);
    assert!(same.contains("subject=CN = pool01.example.com"), "{same}");
    let unknown = openssl_cert(tls, Some("unknown.example.net"), &ca);
    assert!(
        unknown.contains("subject=CN = pool01.example.com"),
        "unknown names fall back to the default: {unknown}"
    );
}

/// The single-server topology text, through the real binary (`confab up` writes it).
fn confab_single_server_text(domain: &str, fqdn: &str) -> String {
    let dir = TempDir::new("single");
    let server = Server::start_in(
        TempDir(dir.0.clone()),
        &["--domain", domain, "--fqdn", fqdn, "--no-demo-users"],
    );
    let text = std::fs::read_to_string(server.dir.0.join("topology.toml")).unwrap();
    drop(server);
    text
}

#[test]
fn a_server_warns_when_its_certificate_misses_a_name_dns_points_at_it() {
    let server = Server::start();
    assert!(
        !server.log_text().contains("tls.name_not_covered"),
        "{}",
        server.log_text()
    );
    let dir = server.stop();
    // The certificate stays; the server is now named differently in DNS.
    let server = Server::start_in(dir, &["--fqdn", "renamed.example.com"]);
    let log = server.log_text();
    assert!(log.contains("tls.name_not_covered"), "{log}");
    assert!(log.contains("renamed.example.com"), "{log}");
}

#[test]
fn topology_commands_validate_render_and_refuse_malformed_files() {
    let clean = crate_fixture("clean/ha-edge.toml");
    let out = confab(&["topology", "validate", clean.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("0 error(s)"), "{}", text(&out));

    let mistake = crate_fixture("mistakes/federation-zone.toml");
    let out = confab(&["topology", "validate", mistake.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let t = text(&out);
    assert!(t.contains("error[federation-zone]"), "{t}");
    assert!(t.contains("breaks:") && t.contains("fix:"), "{t}");

    let dir = TempDir::new("malformed");
    let bad = dir.0.join("bad.toml");
    std::fs::write(&bad, "[deployment]\nname = \"x\"\ncolour = \"blue\"\n").unwrap();
    let out = confab(&["topology", "validate", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(64), "{}", text(&out));
    let t = text(&out);
    assert!(t.contains("bad.toml:3:"), "names file and line: {t}");
    assert!(t.contains("colour"), "names the key: {t}");

    let zone = confab(&[
        "dns",
        "zone",
        "--view",
        "external",
        "--topology",
        clean.to_str().unwrap(),
    ]);
    let z = text(&zone);
    assert!(zone.status.success(), "{z}");
    assert!(z.contains("$ORIGIN vlab.com."), "{z}");
    assert!(z.contains("_sipfederationtls._tcp"), "{z}");

    let plan = confab(&["certs", "plan", "--topology", clean.to_str().unwrap()]);
    let p = text(&plan);
    assert!(plan.status.success(), "{p}");
    assert!(p.contains("SAN DNS:sip.vlab.com"), "{p}");
}

/// A DNS query for `name` A, by hand (RFC 1035 §4.1), with id `id`.
fn dns_query(id: u16, name: &str) -> Vec<u8> {
    let mut q = Vec::new();
    q.extend_from_slice(&id.to_be_bytes());
    q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.split('.') {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.extend_from_slice(&[0, 0, 1, 0, 1]);
    q
}

#[test]
fn a_dns_flood_from_one_source_does_not_starve_the_others() {
    if reexec_in_netns("a_dns_flood_from_one_source_does_not_starve_the_others") {
        return;
    }
    let server = Server::start();
    let dns = ("127.0.0.1", server.dns_port);
    // About 5,000 queries a second for over a second from 127.0.0.2: 25 times the per-source
    // rate. Answers are drained as they come so that none is lost in the flooder's own buffer.
    const FLOOD: u16 = 6_000;
    let flooder = std::thread::spawn(move || {
        let s = UdpSocket::bind("127.0.0.2:0").unwrap();
        s.set_nonblocking(true).unwrap();
        let mut answered = 0u32;
        let mut buf = [0u8; 512];
        let mut drain = |s: &UdpSocket| {
            while s.recv_from(&mut buf).is_ok() {
                answered += 1;
            }
        };
        for i in 0..FLOOD {
            let _ = s.send_to(&dns_query(i, "pool01.example.com"), dns);
            if i % 5 == 4 {
                drain(&s);
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        let until = Instant::now() + Duration::from_millis(500);
        while Instant::now() < until {
            drain(&s);
            std::thread::sleep(Duration::from_millis(5));
        }
        answered
    });
    std::thread::sleep(Duration::from_millis(100));
    let legit = UdpSocket::bind("127.0.0.1:0").unwrap();
    legit
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut ok = 0;
    for i in 0..20u16 {
        // A resolver's retries (dig tries three times): the flood may cost a datagram, never
        // the answer.
        for _attempt in 0..3 {
            legit
                .send_to(&dns_query(i, "pool01.example.com"), dns)
                .unwrap();
            let mut buf = [0u8; 512];
            if let Ok((n, _)) = legit.recv_from(&mut buf) {
                // Same id, NOERROR, one answer.
                if n > 12 && buf[..2] == i.to_be_bytes() && buf[3] & 0x0f == 0 && buf[7] == 1 {
                    ok += 1;
                    break;
                }
            }
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    let answered = flooder.join().unwrap();
    eprintln!(
        "DNS flood: {answered} of {FLOOD} flood queries answered, {ok} of 20 legitimate ones"
    );
    assert_eq!(ok, 20, "every legitimate query answered during the flood");
    assert!(
        answered < u32::from(FLOOD) / 4,
        "the flooding source was limited: {answered} of {FLOOD} answered"
    );
    assert!(answers_sip(&server), "SIP still answers");
}

fn answers_sip(server: &Server) -> bool {
    common::answers_options(server)
}
