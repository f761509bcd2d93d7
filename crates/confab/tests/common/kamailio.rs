//! Kamailio (Debian's kamailio and kamailio-tls-modules) as a third organisation's federation
//! proxy, kamailio.test, with a CA and certificate of its own made with openssl
//! (`tests/kamailio/federation.cfg`), and as a carrier's SBC in front of a PSTN gateway
//! (`tests/kamailio/carrier-sbc.cfg`).

use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use super::{free_port, repo_root, require, TempDir};

/// The third organisation, kamailio.test: Kamailio (Debian) as its federation proxy on
/// 127.0.0.63, with a CA and certificate of its own made with openssl.
pub(crate) struct KamailioOrg {
    dir: TempDir,
    pub(crate) udp_port: u16,
    pub(crate) tls_port: u16,
}

impl KamailioOrg {
    pub(crate) const PASSWORD: &'static str = "kam-secret";

    /// Its CA and its Access Edge's certificate (sip.kamailio.test, server and client use).
    pub(crate) fn certificates() -> Self {
        let dir = TempDir::new("kamailio");
        issue_certificates(&dir, "kamailio.test", "DNS:sip.kamailio.test");
        Self {
            dir,
            udp_port: free_port(),
            tls_port: free_port(),
        }
    }

    pub(crate) fn ca(&self) -> PathBuf {
        self.dir.0.join("ca.pem")
    }

    /// Its zone's records: `_sipfederationtls._tcp` to sip.kamailio.test, its TLS listener.
    pub(crate) fn zone_records(&self) -> String {
        format!(
            "_sipfederationtls._tcp IN SRV 0 0 {} sip.kamailio.test.\nsip IN A 127.0.0.63\n",
            self.tls_port
        )
    }

    /// Starts Kamailio, trusting the CAs `partner_cas` and sending requests for example.com
    /// and fabrikam.test to those Access Edges (`sip:ADDR:PORT;transport=tls`).
    pub(crate) fn start(
        &self,
        partner_cas: &[PathBuf],
        example_edge: &str,
        fabrikam_edge: &str,
    ) -> Kamailio {
        require("kamailio");
        let bundle = self.dir.0.join("partners.pem");
        let pems: Vec<String> = partner_cas
            .iter()
            .map(|ca| std::fs::read_to_string(ca).unwrap())
            .collect();
        std::fs::write(&bundle, pems.concat()).unwrap();
        let d = self.dir.0.display();
        let profile = |side: &str| {
            format!("[{side}:default]\nmethod = TLSv1.2+\nverify_certificate = yes\nrequire_certificate = no\ncertificate = {d}/kam.pem\nprivate_key = {d}/kam.key\nca_list = {d}/partners.pem\n\n")
        };
        std::fs::write(
            self.dir.0.join("tls.cfg"),
            profile("server") + &profile("client"),
        )
        .unwrap();
        let log = std::fs::File::create(self.dir.0.join("kamailio.log")).unwrap();
        let child = Command::new("kamailio")
            .args(["-DD", "-E", "-m", "64", "-M", "8", "-f"])
            .arg(repo_root().join("tests/kamailio/federation.cfg"))
            .arg("-P")
            .arg(self.dir.0.join("kamailio.pid"))
            .args([
                "-A",
                &format!("LISTEN_UDP=udp:127.0.0.63:{}", self.udp_port),
            ])
            .args([
                "-A",
                &format!("LISTEN_TLS=tls:127.0.0.63:{}", self.tls_port),
            ])
            .args(["-A", &format!("EXAMPLE_EDGE=\"{example_edge}\"")])
            .args(["-A", &format!("FABRIKAM_EDGE=\"{fabrikam_edge}\"")])
            .args(["-A", &format!("TLS_CFG=\"{d}/tls.cfg\"")])
            .args(["-A", &format!("PASSWORD=\"{}\"", Self::PASSWORD)])
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start kamailio");
        let k = Kamailio {
            child,
            log: self.dir.0.join("kamailio.log"),
            _dir: None,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.63", self.tls_port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "kamailio did not start:\n{}",
                k.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        k
    }
}

pub(crate) struct Kamailio {
    child: Child,
    log: PathBuf,
    /// Its own directory, when it has one (the carrier SBC's).
    _dir: Option<TempDir>,
}

impl Kamailio {
    /// A carrier's SBC at `ip:port` (TCP and UDP): calls from the enterprise to `gateway`
    /// (`ip:port`, UDP), calls from the gateway to `enterprise` (`ip:port`, TCP). With
    /// `tls_port`, also TLS there, with a certificate for its address from a CA of its own
    /// (`Kamailio::ca`).
    pub(crate) fn carrier_sbc(
        ip: &str,
        port: u16,
        gateway: &str,
        enterprise: &str,
        tls_port: Option<u16>,
    ) -> Self {
        require("kamailio");
        let dir = TempDir::new("kamailio-sbc");
        let mut tls_args = Vec::new();
        if let Some(tls) = tls_port {
            issue_certificates(&dir, "carrier.test", &format!("IP:{ip}"));
            let d = dir.0.display();
            std::fs::write(
                dir.0.join("tls.cfg"),
                format!("[server:default]\nmethod = TLSv1.2+\nverify_certificate = no\nrequire_certificate = no\ncertificate = {d}/kam.pem\nprivate_key = {d}/kam.key\n"),
            )
            .unwrap();
            tls_args = vec![
                "-A".to_owned(),
                "WITH_TLS".to_owned(),
                "-A".to_owned(),
                format!("LISTEN_TLS=tls:{ip}:{tls}"),
                "-A".to_owned(),
                format!("TLS_CFG=\"{d}/tls.cfg\""),
            ];
        }
        let log_path = dir.0.join("kamailio.log");
        let log = std::fs::File::create(&log_path).unwrap();
        let gateway_ip = gateway.split(':').next().unwrap_or_default();
        let child = Command::new("kamailio")
            .args(["-DD", "-E", "-m", "64", "-M", "8", "-f"])
            .arg(repo_root().join("tests/kamailio/carrier-sbc.cfg"))
            .arg("-P")
            .arg(dir.0.join("kamailio.pid"))
            .args(["-A", &format!("LISTEN_TCP=tcp:{ip}:{port}")])
            .args(["-A", &format!("LISTEN_UDP=udp:{ip}:{port}")])
            .args(["-A", &format!("GATEWAY=\"sip:{gateway}\"")])
            .args(["-A", &format!("GATEWAY_IP=\"{gateway_ip}\"")])
            .args([
                "-A",
                &format!("ENTERPRISE=\"sip:{enterprise};transport=tcp\""),
            ])
            .args(["-A", &format!("ENTERPRISE_HOSTPORT=\"{enterprise}\"")])
            .args(&tls_args)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start kamailio");
        let k = Self {
            child,
            log: log_path,
            _dir: Some(dir),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect((ip, port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "kamailio did not start:\n{}",
                k.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        k
    }
}

impl Kamailio {
    /// The CA its TLS certificate chains to (a carrier SBC started with TLS).
    pub(crate) fn ca(&self) -> PathBuf {
        self._dir
            .as_ref()
            .map(|d| d.0.join("ca.pem"))
            .unwrap_or_default()
    }

    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Kamailio {
    fn drop(&mut self) {
        // SIGTERM: the main process stops its workers (SIGKILL would leave them running)
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("---- kamailio log ----\n{}", self.log());
        }
    }
}

/// A CA of `org`'s own (`ca.pem`, `ca.key`) and a certificate it signed for `san`
/// (`DNS:name` or `IP:address`; `kam.pem`, `kam.key`, server and client use), made with
/// openssl in `dir`.
pub(crate) fn issue_certificates(dir: &TempDir, org: &str, san: &str) {
    require("openssl");
    let openssl = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(&dir.0)
            .output()
            .unwrap();
        assert!(out.status.success(), "openssl {args:?}: {out:?}");
    };
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        &format!("/CN={org} CA"),
    ]);
    openssl(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "kam.key",
        "-out",
        "kam.csr",
        "-subj",
        &format!("/CN={org} gateway"),
    ]);
    std::fs::write(
        dir.0.join("ext.cnf"),
        format!("subjectAltName={san}\nextendedKeyUsage=serverAuth,clientAuth\n"),
    )
    .unwrap();
    openssl(&[
        "x509",
        "-req",
        "-in",
        "kam.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "kam.pem",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
    ]);
}
