//! A baresip user agent (Debian's baresip-core, an unmodified SIP client) with its own config
//! dir, signed in through a proxy and waited for until registered.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{free_sip_port, require, Server, TempDir};

/// Who baresip signs in as, and where.
#[derive(Clone, Copy)]
pub(crate) struct Account<'a> {
    pub(crate) user: &'a str,
    pub(crate) domain: &'a str,
    pub(crate) password: &'a str,
    /// The outbound proxy, `host:port`.
    pub(crate) proxy: &'a str,
    pub(crate) transport: &'a str,
    /// The CA certificate baresip trusts for TLS.
    pub(crate) ca: &'a Path,
    /// A UDP console port for commands (and calls answered at once).
    pub(crate) cons_port: Option<u16>,
    /// A contact whose presence it watches (and its own published): a user of its domain, or
    /// user@domain.
    pub(crate) watch: Option<&'a str>,
}

/// A baresip user agent with its own config dir.
pub(crate) struct Baresip {
    child: Child,
    dir: TempDir,
}

impl Baresip {
    /// Starts baresip for `user` over `transport` and waits until it is registered.
    pub(crate) fn sign_in(server: &Server, user: &str, transport: &str) -> Self {
        Self::start(server, user, transport, None, None)
    }

    /// Starts baresip for `user` taking commands on a UDP console (`cons_port`) and answering
    /// calls at once.
    pub(crate) fn answering(server: &Server, user: &str, cons_port: u16) -> Self {
        Self::start(server, user, "udp", Some(cons_port), None)
    }

    /// Starts baresip for `user` with its presence module: it publishes its own state, watches
    /// `contact`, and takes commands on a UDP console (`cons_port`).
    pub(crate) fn with_presence(
        server: &Server,
        user: &str,
        contact: &str,
        cons_port: u16,
    ) -> Self {
        Self::start(server, user, "udp", Some(cons_port), Some(contact))
    }

    /// Starts baresip for `user` over UDP taking commands on `cons_port`, playing the 8 kHz
    /// WAV `source` into its calls (a call ends when the file does) and recording what it
    /// hears as WAV files in `record` (baresip's sndfile module: `dump-*-dec.wav`).
    pub(crate) fn with_audio(
        server: &Server,
        user: &str,
        cons_port: u16,
        source: &Path,
        record: &Path,
    ) -> Self {
        // aubridge: a player device that drains what is decoded, so that it is recorded
        let extra = format!(
            "module aufile.so\nmodule aubridge.so\nmodule sndfile.so\naudio_source aufile,{}\naudio_player aubridge,{user}\nsnd_path {}\n",
            source.display(),
            record.display()
        );
        Self::run_with(
            &Account {
                user,
                domain: "example.com",
                password: &server.password(user),
                proxy: &format!("127.0.0.1:{}", server.port),
                transport: "udp",
                ca: &server.dir.0.join("ca.pem"),
                cons_port: Some(cons_port),
                watch: None,
            },
            &extra,
        )
    }

    fn start(
        server: &Server,
        user: &str,
        transport: &str,
        cons_port: Option<u16>,
        watch: Option<&str>,
    ) -> Self {
        let port = if transport == "tls" {
            server.port + 1
        } else {
            server.port
        };
        Self::run(&Account {
            user,
            domain: "example.com",
            password: &server.password(user),
            proxy: &format!("127.0.0.1:{port}"),
            transport,
            ca: &server.dir.0.join("ca.pem"),
            cons_port,
            watch,
        })
    }

    /// Starts baresip for `account`; it signs in on its own (see its log).
    pub(crate) fn spawn(account: &Account<'_>) -> Self {
        Self::spawn_with(account, "")
    }

    /// [`Baresip::spawn`] with more lines for its config file (audio modules and devices).
    pub(crate) fn spawn_with(account: &Account<'_>, extra_config: &str) -> Self {
        let Account {
            user,
            domain,
            password,
            proxy,
            transport,
            ca,
            cons_port,
            watch,
        } = *account;
        require("baresip");
        let dir = TempDir::new("baresip");
        // baresip listens for TLS on the port after its sip_listen port: both must be free
        let config = format!(
            "sip_listen 127.0.0.1:{}\nsip_cafile {}\nmodule_path /usr/lib/baresip/modules\nmodule g711.so\nmodule_app account.so\nmodule_app menu.so\n",
            free_sip_port(),
            ca.display()
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
                if contact.contains('@') {
                    format!("\"{contact}\" <sip:{contact}>;presence=p2p\n")
                } else {
                    format!("\"{contact}\" <sip:{contact}@{domain}>;presence=p2p\n")
                },
            )
            .unwrap();
            params.push_str(";pubint=60");
        }
        config.push_str(extra_config);
        std::fs::write(dir.0.join("config"), config).unwrap();
        let account = format!(
            "<sip:{user}@{domain};transport={transport}>;auth_pass={password};outbound=\"sip:{proxy};transport={transport}\";regint=600{params}\n"
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
        Self { child, dir }
    }

    /// Starts baresip for `account` and waits until it is registered.
    pub(crate) fn run(account: &Account<'_>) -> Self {
        Self::run_with(account, "")
    }

    /// [`Baresip::run`] with more lines for its config file.
    pub(crate) fn run_with(account: &Account<'_>, extra_config: &str) -> Self {
        let b = Self::spawn_with(account, extra_config);
        let want = format!(
            "{}@{}: {{0/{}/v4}} 200 OK (Confab",
            account.user,
            account.domain,
            account.transport.to_ascii_uppercase()
        );
        b.wait_for(
            &want,
            &format!("baresip registers over {}", account.transport),
        );
        b
    }

    /// Waits until the log shows `needle`.
    pub(crate) fn wait_for(&self, needle: &str, what: &str) {
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
    pub(crate) fn log(&self) -> String {
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

/// Sends a command to the baresip whose UDP console is `cons_port`.
pub(crate) fn command(cons_port: u16, cmd: &str) {
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.send_to(format!("/{cmd}\n").as_bytes(), ("127.0.0.1", cons_port))
        .unwrap();
}
