//! Federation between two organisations, each its own Confab deployment with its own CA: a
//! Front End and an Edge for example.com (127.0.0.31–33) and for fabrikam.test
//! (127.0.0.41–43). BIND (`named`) serves both external zones as `confab dns zone --view
//! external` writes them, and each Edge finds the other's Access Edge through it
//! (`_sipfederationtls._tcp` SRV, in the partner's zone, then its address) and trusts the
//! other's CA for federation only. Unmodified baresip clients are the users; SIPp sends the
//! messages and places the call across. Then what must be refused is refused, with the reason:
//! a blocked domain, a partner not on the allowed list, an SRV target outside its zone, a
//! certificate that does not name the partner's Access Edge, a From the connection does not
//! prove. Kamailio is also the hosting provider of hosted.test for fabrikam.test, one that does
//! not vouch for its users.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::baresip::{command, Account, Baresip};
use common::kamailio::KamailioOrg;
use common::named::Named;
use common::{free_port, Server, Sipp, TempDir};

/// One organisation: its topology, Front End and Edge.
struct Org {
    domain: &'static str,
    topology: TempDir,
    fe: Server,
    /// The Edge's data dir, `confab edge prepare` made (taken when the Edge starts).
    edge_dir: Option<TempDir>,
    /// The Access Edge's federation port (on .3 of the organisation's addresses).
    federation_port: u16,
}

impl Org {
    fn topology_file(&self) -> PathBuf {
        self.topology.0.join("topology.toml")
    }

    fn password(&self, user: &str) -> String {
        let text = std::fs::read_to_string(self.fe.dir.0.join("demo-users.txt")).unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{user}@{} ", self.domain)))
            .unwrap_or_else(|| panic!("no demo user {user}"))
            .to_owned()
    }

    fn ca(&self) -> PathBuf {
        self.fe.dir.0.join("ca.pem")
    }

    /// `user` signed in at the Front End with baresip, answering calls at once, publishing
    /// its presence and watching `watch`'s; commands go to its console at `cons_port`.
    fn user(&self, user: &str, watch: &str, cons_port: u16) -> Baresip {
        Baresip::run(&Account {
            user,
            domain: self.domain,
            password: &self.password(user),
            proxy: &self.fe.addr(),
            transport: "udp",
            ca: &self.ca(),
            cons_port: Some(cons_port),
            watch: Some(watch),
        })
    }

    /// `confab dns zone --view external` for this organisation's zone, into `dir`.
    fn zone_into(&self, dir: &Path) {
        let out = Command::new(env!("CARGO_BIN_EXE_confab"))
            .args(["dns", "zone", "--view", "external", "--zone", self.domain])
            .arg("--topology")
            .arg(self.topology_file())
            .arg("--out")
            .arg(dir)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
    }
}

/// Starts an organisation's Front End (its CA and demo users) on 127.0.0.<net>1, with the
/// Edge's inside on .2 and the Access Edge on .3; federation as `federation` (TOML).
fn front_end(domain: &'static str, net: u8, federation: &str) -> Org {
    let topology = TempDir::new(&format!("topology-{domain}"));
    let (port, access, federation_port) = (free_port(), free_port(), free_port());
    let text = format!(
        r#"[deployment]
name = "{domain}"

[dns]
name_servers = ["127.0.0.1"]

[[site]]
name = "hq"

[[domain]]
name = "{domain}"
sign_in = ["pool01.{domain}"]

[[pool]]
fqdn = "pool01.{domain}"
site = "hq"
sip_port = {port}
tls_port = {tls}
[[pool.server]]
fqdn = "fe01.{domain}"
address = "127.0.0.{net}1"

[[edge]]
fqdn = "edgepool.{domain}"
site = "hq"
next_hop = "pool01.{domain}"
internal_port = {tls}
federation_port = {federation_port}
access = {{ fqdn = "access.{domain}", address = "127.0.0.{net}3", port = {access} }}
[[edge.server]]
fqdn = "edge01.{domain}"
address = "127.0.0.{net}2"

{federation}
"#,
        tls = port + 1
    );
    std::fs::write(topology.0.join("topology.toml"), text).unwrap();
    let file = topology.0.join("topology.toml").display().to_string();
    let fe = Server::start_on(
        TempDir::new(&format!("fe-{domain}")),
        port,
        &[
            "--bind",
            &format!("127.0.0.{net}1"),
            "--fqdn",
            &format!("fe01.{domain}"),
            "--domain",
            domain,
            "--topology",
            &file,
        ],
    );
    let edge_dir = TempDir::new(&format!("edge-{domain}"));
    let out = Command::new(env!("CARGO_BIN_EXE_confab"))
        .args(["edge", "prepare", "--fqdn", &format!("edge01.{domain}")])
        .arg("--out")
        .arg(&edge_dir.0)
        .arg("--data-dir")
        .arg(&fe.dir.0)
        .args(["--topology", &file])
        .output()
        .unwrap();
    assert!(out.status.success(), "edge prepare: {out:?}");
    Org {
        domain,
        topology,
        fe,
        edge_dir: Some(edge_dir),
        federation_port,
    }
}

/// Starts the organisation's Edge: partners found with `dns`, `trust` its CAs for them.
fn edge(org: &mut Org, net: u8, dns: &str, trust: &Path) -> Server {
    let file = org.topology_file().display().to_string();
    let dir = org.edge_dir.take().expect("the Edge starts once");
    Server::start_edge(
        dir,
        org.fe.port,
        &[
            "--bind",
            &format!("127.0.0.{net}2"),
            "--fqdn",
            &format!("edge01.{}", org.domain),
            "--topology",
            &file,
            "--resolver",
            dns,
            "--federation-trust",
            &trust.display().to_string(),
        ],
    )
}

/// A zone of its own for a domain outside the two deployments (Kamailio's, and ones whose
/// records are wrong in the ways federation must catch).
fn hostile_zone(dir: &Path, zone: &str, records: &str) {
    std::fs::write(
        dir.join(format!("{zone}.external.zone")),
        format!("$TTL 60\n@ IN SOA ns.{zone}. hostmaster.{zone}. 1 60 60 600 60\n@ IN NS ns.{zone}.\nns IN A 127.0.0.1\n{records}"),
    )
    .unwrap();
}

struct Federation {
    contoso: Org,
    fabrikam: Org,
    kamailio: KamailioOrg,
    _contoso_edge: Server,
    _fabrikam_edge: Server,
    _named: Named,
}

fn federation() -> Federation {
    let contoso = front_end(
        "example.com",
        3,
        "[federation]\nmode = \"open\"\nblocked = [\"blocked.test\"]\n",
    );
    let fabrikam = front_end(
        "fabrikam.test",
        4,
        "[federation]\nmode = \"allowed\"\n[[federation.partner]]\ndomain = \"example.com\"\n\
         [[federation.provider]]\nname = \"kamailio\"\nfqdn = \"sip.kamailio.test\"\n\
         verification = \"always-unverifiable\"\ndomains = [\"hosted.test\"]\n",
    );
    let zones = TempDir::new("zones");
    contoso.zone_into(&zones.0);
    fabrikam.zone_into(&zones.0);
    // an SRV target outside the partner's zone; an address whose certificate names another
    hostile_zone(
        &zones.0,
        "badzone.test",
        &format!(
            "_sipfederationtls._tcp IN SRV 0 0 {} sip.fabrikam.test.\n",
            fabrikam.federation_port
        ),
    );
    hostile_zone(
        &zones.0,
        "impostor.test",
        &format!(
            "_sipfederationtls._tcp IN SRV 0 0 {} sip.impostor.test.\nsip IN A 127.0.0.43\n",
            fabrikam.federation_port
        ),
    );
    let kamailio = KamailioOrg::certificates();
    hostile_zone(&zones.0, "kamailio.test", &kamailio.zone_records());
    let named = Named::start(
        zones,
        &[
            "example.com",
            "badzone.test",
            "impostor.test",
            "kamailio.test",
            "fabrikam.test",
        ],
    );
    let (mut contoso, mut fabrikam) = (contoso, fabrikam);
    // each trusts the other two organisations' CAs; which domains it federates with is its
    // topology's [federation] (fabrikam.test: example.com only)
    let trust = |org: &Org, others: [PathBuf; 2]| {
        let file = org.topology.0.join("partners.pem");
        let pems = others.map(|p| std::fs::read_to_string(p).unwrap());
        std::fs::write(&file, pems.concat()).unwrap();
        file
    };
    let contoso_trust = trust(&contoso, [fabrikam.ca(), kamailio.ca()]);
    let fabrikam_trust = trust(&fabrikam, [contoso.ca(), kamailio.ca()]);
    let contoso_edge = edge(&mut contoso, 3, &named.addr, &contoso_trust);
    let fabrikam_edge = edge(&mut fabrikam, 4, &named.addr, &fabrikam_trust);
    Federation {
        contoso,
        fabrikam,
        kamailio,
        _contoso_edge: contoso_edge,
        _fabrikam_edge: fabrikam_edge,
        _named: named,
    }
}

/// `from` at `org` sends a MESSAGE to `to` (user@domain); the final response's status line.
fn message(org: &Org, from: &str, to: &str) -> (String, String) {
    let (user, domain) = to.split_once('@').unwrap();
    let r = Sipp::new(&org.fe, "uac_message.xml")
        .domain(domain)
        .caller_domain(org.domain)
        .args(["-s", user, "-key", "caller", from])
        .auth(from, &org.password(from))
        .run();
    r.assert_success(&format!("MESSAGE {from}@{} -> {to}", org.domain));
    let trace = r.trace();
    let at = trace.rfind("SIP/2.0 ").expect("a final response");
    let line = trace[at..].lines().next().unwrap_or_default().to_owned();
    (line, trace)
}

#[test]
fn two_organisations_exchange_messages_and_a_call_and_the_wrong_partners_are_refused() {
    let f = federation();
    // bob lets alice (outside his organisation) see his presence; alice has no such list
    let out = Command::new(env!("CARGO_BIN_EXE_confab"))
        .args(["contacts", "add", "bob@fabrikam.test", "alice@example.com"])
        .arg("--data-dir")
        .arg(&f.fabrikam.fe.dir.0)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let (bob_cons, alice_cons) = (free_port(), free_port());
    let bob = f.fabrikam.user("bob", "alice@example.com", bob_cons);
    let alice = f.contoso.user("alice", "bob@fabrikam.test", alice_cons);
    // each subscribes to the other across the federation; bob goes offline, alice sees it
    let deadline = Instant::now() + Duration::from_secs(20);
    while !(f
        .fabrikam
        .fe
        .log_text()
        .contains("watcher=alice@example.com resource=User(\"bob@fabrikam.test\")")
        && f.contoso
            .fe
            .log_text()
            .contains("watcher=bob@fabrikam.test resource=User(\"alice@example.com\")"))
    {
        assert!(
            Instant::now() < deadline,
            "no subscription across:\n{}",
            f.fabrikam.fe.log_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    command(bob_cons, "presence_offline");
    alice.wait_for(
        "<sip:bob@fabrikam.test> changed status from Online to Offline",
        "alice sees bob go offline across the federation",
    );
    command(bob_cons, "presence_online");
    alice.wait_for(
        "<sip:bob@fabrikam.test> changed status from Offline to Online",
        "alice sees bob back",
    );

    // example.com -> fabrikam.test, found by SRV, proved by certificates both ways
    let (status, trace) = message(&f.contoso, "alice", "bob@fabrikam.test");
    assert_eq!(status, "SIP/2.0 200 OK", "{trace}");
    assert!(
        trace.contains("Server: baresip"),
        "bob's baresip answered:\n{trace}"
    );
    // and back
    let (status, trace) = message(&f.fabrikam, "bob", "alice@example.com");
    assert_eq!(status, "SIP/2.0 200 OK", "{trace}");

    // a call across: alice (SIPp) calls bob (baresip answers), ACK and BYE follow the route
    let r = Sipp::new(&f.contoso.fe, "uac_call.xml")
        .domain("fabrikam.test")
        .caller_domain("example.com")
        .args(["-s", "bob", "-key", "caller", "alice"])
        .auth("alice", &f.contoso.password("alice"))
        .run();
    r.assert_success("call alice@example.com -> bob@fabrikam.test");
    drop(alice);
    drop(bob);

    // what must be refused, with the reason
    for (org, from, to, want) in [
        (
            &f.contoso,
            "alice",
            "eve@blocked.test",
            "403 Forbidden (partner domain is blocked: blocked.test)",
        ),
        (
            &f.fabrikam,
            "bob",
            "carol@litware.test",
            "403 Forbidden (partner domain is not on the allowed list: litware.test)",
        ),
        (
            &f.contoso,
            "alice",
            "eve@badzone.test",
            "403 Forbidden (cannot reach badzone.test: partner's _sipfederationtls._tcp.badzone.test SRV points at sip.fabrikam.test, outside the badzone.test zone)",
        ),
    ] {
        let (status, trace) = message(org, from, to);
        assert_eq!(status, format!("SIP/2.0 {want}"), "{trace}");
    }
    // each user's own federation policy, set while the servers run
    let set = |org: &Org, user: &str| {
        let out = Command::new(env!("CARGO_BIN_EXE_confab"))
            .args([
                "user",
                "set",
                &format!("{user}@{}", org.domain),
                "--federation",
                "off",
            ])
            .arg("--data-dir")
            .arg(&org.fe.dir.0)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
    };
    set(&f.fabrikam, "carol");
    set(&f.contoso, "bob");
    std::thread::sleep(Duration::from_secs(3)); // a housekeeping period: caches drop them
    let (status, trace) = message(&f.contoso, "alice", "carol@fabrikam.test");
    assert_eq!(
        status, "SIP/2.0 403 Forbidden (the user does not take federated communications by policy)",
        "{trace}"
    );
    let (status, trace) = message(&f.contoso, "bob", "bob@fabrikam.test");
    assert_eq!(
        status, "SIP/2.0 403 Forbidden (federation is not allowed for this user by policy)",
        "{trace}"
    );

    // at the Access Edge, a From the partner's connection does not prove
    let fab_edge = &f._fabrikam_edge.dir.0;
    let (pem, key) = (fab_edge.join("server.pem"), fab_edge.join("server.key"));
    let contoso_fed = format!("127.0.0.33:{}", f.contoso.federation_port);
    let spoofed = |from: &str, cert: Option<(&Path, &Path)>| {
        common::over_tls(
            &contoso_fed,
            &f.contoso.ca(),
            cert,
            &common::sip_request("MESSAGE", "sip:alice@example.com", from, ""),
        )
    };
    let got = spoofed("eve@impostor.test", Some((&pem, &key)));
    assert!(
        got.contains("403 Forbidden (the connection does not prove impostor.test: its certificate does not name sip.impostor.test, the Access Edge DNS gives for impostor.test)"),
        "{got}"
    );
    let got = spoofed("bob@fabrikam.test", None);
    assert!(
        got.contains(
            "403 Forbidden (the connection does not prove fabrikam.test: it showed no certificate)"
        ),
        "{got}"
    );
    // a partner whose certificate does not name the Access Edge DNS gives: no TLS, no message
    let (status, trace) = message(&f.contoso, "alice", "eve@impostor.test");
    assert!(!status.contains("200"), "{trace}");
    assert!(
        f._contoso_edge.log_text().contains("tls.partner_refused"),
        "{}",
        f._contoso_edge.log_text()
    );
}

#[test]
fn kamailio_as_a_third_organisations_proxy_exchanges_messages_and_is_refused_where_not_allowed() {
    let f = federation();
    let edge =
        |net: u8, org: &Org| format!("sip:127.0.0.{net}3:{};transport=tls", org.federation_port);
    let kamailio = f.kamailio.start(
        &[f.contoso.ca(), f.fabrikam.ca()],
        &edge(3, &f.contoso),
        &edge(4, &f.fabrikam),
    );
    let kam_addr = format!("127.0.0.63:{}", f.kamailio.udp_port);
    let kam = |scenario: &str| Sipp::toward(&kam_addr, scenario).source_ip("127.0.0.61");
    // carol of kamailio.test signs in at Kamailio and takes messages
    let port = free_port();
    let carol = kam("uas_message.xml")
        .domain("kamailio.test")
        .args(["-s", "carol", "-p", &port.to_string()])
        .spawn();
    common::wait_udp_bound_on("127.0.0.61", port);
    let r = kam("register.xml")
        .domain("kamailio.test")
        .args(["-s", "carol", "-key", "contact_port", &port.to_string()])
        .auth("carol", KamailioOrg::PASSWORD)
        .run();
    r.assert_success("carol registers at Kamailio");
    let alice = f.contoso.user("alice", "bob@fabrikam.test", free_port());

    // example.com -> kamailio.test, found by SRV, Kamailio's certificate checked for its name
    let (status, trace) = message(&f.contoso, "alice", "carol@kamailio.test");
    assert_eq!(status, "SIP/2.0 200 OK", "{trace}\n{}", kamailio.log());
    carol.assert_success("carol got alice's message through Kamailio");
    // carol (of `from`, a domain Kamailio serves) writes to `to`: SIPp's trace
    let carol_to = |from: &str, to: &str| {
        let (user, domain) = to.split_once('@').unwrap();
        let r = kam("uac_message.xml")
            .domain(domain)
            .caller_domain(from)
            .args(["-s", user, "-key", "caller", "carol"])
            .auth("carol", KamailioOrg::PASSWORD)
            .run();
        r.assert_success(&format!("MESSAGE carol@{from} -> {to}"));
        r.trace()
    };
    // kamailio.test -> example.com: Kamailio's client certificate proves kamailio.test
    let trace = carol_to("kamailio.test", "alice@example.com");
    assert!(
        trace.contains("SIP/2.0 200 OK") && trace.contains("Server: baresip"),
        "{trace}"
    );
    drop(alice);
    // fabrikam.test federates with example.com only
    let trace = carol_to("kamailio.test", "bob@fabrikam.test");
    assert!(
        trace.contains(
            "SIP/2.0 403 Forbidden (partner domain is not on the allowed list: kamailio.test)"
        ),
        "{trace}"
    );
    // ... but has Kamailio as the hosting provider of hosted.test, one that does not vouch
    // for its users: their requests reach only users who have the sender as a contact
    let trace = carol_to("hosted.test", "bob@fabrikam.test");
    assert!(
        trace.contains("SIP/2.0 403 Forbidden (an unverified sender: carol@hosted.test came through a hosting provider that does not vouch for it, and is not in the user's contacts)"),
        "{trace}"
    );
    let out = Command::new(env!("CARGO_BIN_EXE_confab"))
        .args(["contacts", "add", "bob@fabrikam.test", "carol@hosted.test"])
        .arg("--data-dir")
        .arg(&f.fabrikam.fe.dir.0)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    // now it reaches bob's devices: he has none signed in
    let trace = carol_to("hosted.test", "bob@fabrikam.test");
    assert!(
        trace.contains("SIP/2.0 480 Temporarily Unavailable"),
        "{trace}"
    );
}
