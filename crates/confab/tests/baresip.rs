//! baresip (Debian's baresip-core, an unmodified SIP client) signs in over UDP, TCP and TLS
//! (trusting the demo CA) and receives a MESSAGE sent through the server.

mod common;

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
        require("baresip");
        let dir = TempDir::new("baresip");
        let port = if transport == "tls" {
            server.port + 1
        } else {
            server.port
        };
        let config = format!(
            "sip_listen 127.0.0.1:{}\nsip_cafile {}\nmodule_path /usr/lib/baresip/modules\nmodule g711.so\nmodule_app account.so\nmodule_app menu.so\n",
            free_port(),
            server.dir.0.join("ca.pem").display()
        );
        std::fs::write(dir.0.join("config"), config).unwrap();
        let account = format!(
            "<sip:{user}@example.com;transport={transport}>;auth_pass={};outbound=\"sip:127.0.0.1:{port};transport={transport}\";regint=600\n",
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

    fn log(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(self.dir.0.join("baresip.log")).unwrap_or_default())
            .into_owned()
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
