//! baresip (Debian's baresip-core, an unmodified SIP client) signs in over UDP, TCP and TLS
//! (trusting the demo CA) and receives a MESSAGE sent through the server; two baresips with
//! each other as contacts see each other's presence change (baresip's presence module); two
//! baresips call, hold and resume (re-INVITEs), and the callee hangs up.

mod common;

use std::net::UdpSocket;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{free_port, require, Server, Sipp, TempDir};

/// A baresip user agent with its own config dir.
struct Baresip {
    child: Child,
    dir: TempDir,
}

impl Baresip {
    /// Starts baresip for `user` over `transport` and waits until it is registered.
    fn sign_in(server: &Server, user: &str, transport: &str) -> Self {
        Self::start(server, user, transport, None, None)
    }

    /// Starts baresip for `user` taking commands on a UDP console (`cons_port`) and answering
    /// calls at once.
    fn answering(server: &Server, user: &str, cons_port: u16) -> Self {
        Self::start(server, user, "udp", Some(cons_port), None)
    }

    /// Starts baresip for `user` with its presence module: it publishes its own state, watches
    /// `contact`, and takes commands on a UDP console (`cons_port`).
    fn with_presence(server: &Server, user: &str, contact: &str, cons_port: u16) -> Self {
        Self::start(server, user, "udp", Some(cons_port), Some(contact))
    }

    fn start(
        server: &Server,
        user: &str,
        transport: &str,
        cons_port: Option<u16>,
        watch: Option<&str>,
    ) -> Self {
        require("baresip");
        let dir = TempDir::new("baresip");
        let port = if transport == "tls" {
            server.port + 1
        } else {
            server.port
        };
        // baresip listens for TLS on the port after its sip_listen port: both must be free
        let config = format!(
            "sip_listen 127.0.0.1:{}\nsip_cafile {}\nmodule_path /usr/lib/baresip/modules\nmodule g711.so\nmodule_app account.so\nmodule_app menu.so\n",
            common::free_sip_port(),
            server.dir.0.join("ca.pem").display()
        );
        let mut config = config;
        let mut params = String::new();
        if let Some(cons_port) = cons_port {
            config.push_str(&format!(
                "module cons.so\ncons_listen 127.0.0.1:{cons_port}\n"
            ));
            params.push_str(";answermode=auto");
        }
        if let Some(contact) = watch {
            config.push_str("module_app contact.so\nmodule_app presence.so\n");
            std::fs::write(
                dir.0.join("contacts"),
                format!("\"{contact}\" <sip:{contact}@example.com>;presence=p2p\n"),
            )
            .unwrap();
            params.push_str(";pubint=60");
        }
        std::fs::write(dir.0.join("config"), config).unwrap();
        let account = format!(
            "<sip:{user}@example.com;transport={transport}>;auth_pass={};outbound=\"sip:127.0.0.1:{port};transport={transport}\";regint=600{params}\n",
            server.password(user)
        );
        std::fs::write(dir.0.join("accounts"), account).unwrap();
        let log = std::fs::File::create(dir.0.join("baresip.log")).unwrap();
        let child = Command::new("baresip")
            .arg("-f")
            .arg(&dir.0)
            .args(["-t", "60"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start baresip");
        let b = Self { child, dir };
        let want = format!(
            "{user}@example.com: {{0/{}/v4}} 200 OK (Confab",
            transport.to_ascii_uppercase()
        );
        let deadline = Instant::now() + Duration::from_secs(20);
        while !b.log().contains(&want) {
            assert!(
                Instant::now() < deadline,
                "baresip did not register over {transport}:\n{}",
                b.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        b
    }

    /// Waits until the log shows `needle`.
    fn wait_for(&self, needle: &str, what: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !self.log().contains(needle) {
            assert!(
                Instant::now() < deadline,
                "{what}: '{needle}' never appeared:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// baresip's output without its colour escapes.
    fn log(&self) -> String {
        let raw = std::fs::read(self.dir.0.join("baresip.log")).unwrap_or_default();
        let text = String::from_utf8_lossy(&raw);
        let mut out = String::with_capacity(text.len());
        let mut rest = text.as_ref();
        while let Some(i) = rest.find("\x1b[") {
            out.push_str(&rest[..i]);
            rest = &rest[i..];
            rest = rest.find('m').map_or("", |m| &rest[m + 1..]);
        }
        out.push_str(rest);
        out
    }
}

impl Drop for Baresip {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("---- baresip log ----\n{}", self.log());
        }
    }
}

fn baresip_receives_a_message_over(transport: &str) {
    let server = Server::start();
    let alice = Baresip::sign_in(&server, "alice", transport);
    let r = Sipp::new(&server, "uac_message.xml")
        .args(["-s", "alice", "-key", "caller", "bob"])
        .auth("bob", &server.password("bob"))
        .run();
    r.assert_success("MESSAGE bob -> alice (baresip)");
    let trace = r.trace();
    // the 200 OK was written by baresip itself and came back through the proxy
    assert!(
        trace.contains("SIP/2.0 200 OK") && trace.contains("Server: baresip"),
        "{trace}"
    );
    drop(alice);
}

#[test]
fn baresip_signs_in_over_udp_and_receives_a_message() {
    baresip_receives_a_message_over("udp");
}

#[test]
fn baresip_signs_in_over_tcp_and_receives_a_message() {
    baresip_receives_a_message_over("tcp");
}

#[test]
fn baresip_signs_in_over_tls_trusting_the_demo_ca_and_receives_a_message() {
    baresip_receives_a_message_over("tls");
}

/// Sends a command to a baresip UDP console.
fn command(cons_port: u16, cmd: &str) {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.send_to(format!("/{cmd}\n").as_bytes(), ("127.0.0.1", cons_port))
        .unwrap();
}

#[test]
fn two_baresips_see_each_others_presence_change() {
    let server = Server::start();
    let alice_cons = free_port();
    let bob_cons = common::free_port_except(&[alice_cons]);
    let alice = Baresip::with_presence(&server, "alice", "bob", alice_cons);
    let bob = Baresip::with_presence(&server, "bob", "alice", bob_cons);
    // each subscribes to the other through the server (both already published "open", so
    // baresip's first status is open and it logs nothing until a change)
    let deadline = Instant::now() + Duration::from_secs(20);
    while server.log_text().matches("presence.subscribed").count() < 2 {
        assert!(
            Instant::now() < deadline,
            "baresips did not subscribe:\n{}",
            server.log_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // bob goes offline: his device publishes "closed", and the server tells alice
    command(bob_cons, "presence_offline");
    alice.wait_for(
        "<sip:bob@example.com> changed status from Online to Offline",
        "alice sees bob offline",
    );
    command(bob_cons, "presence_online");
    alice.wait_for(
        "<sip:bob@example.com> changed status from Offline to Online",
        "alice sees bob back",
    );
    command(alice_cons, "presence_offline");
    bob.wait_for(
        "<sip:alice@example.com> changed status from Online to Offline",
        "bob sees alice offline",
    );
}

#[test]
fn two_baresips_call_hold_and_the_callee_hangs_up() {
    let server = Server::start();
    let alice_cons = free_port();
    let bob_cons = common::free_port_except(&[alice_cons]);
    let alice = Baresip::answering(&server, "alice", alice_cons);
    let bob = Baresip::answering(&server, "bob", bob_cons);
    command(alice_cons, "dial sip:bob@example.com");
    bob.wait_for("Call established", "bob answered alice's call");
    alice.wait_for("Call established", "alice hears bob's answer");
    // a re-INVITE (hold) and back, within the dialog through the server
    command(alice_cons, "hold");
    command(alice_cons, "resume");
    let deadline = Instant::now() + Duration::from_secs(20);
    while bob.log().matches("got re-INVITE").count() < 2 {
        assert!(
            Instant::now() < deadline,
            "bob got alice's hold and resume re-INVITEs:\n{}",
            bob.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // the callee hangs up: his BYE follows the route the server sealed
    command(bob_cons, "hangup");
    alice.wait_for("session closed", "alice hears bob hang up");
    assert!(
        !server.log_text().contains("relay.unsealed"),
        "nothing in the call was refused as unsealed:\n{}",
        server.log_text()
    );
}
