//! BIND (`named`, Debian's bind9) serving zone files, as the DNS of the internet in tests.

use std::process::{Child, Command};
use std::time::{Duration, Instant};

use super::{free_port, require, TempDir};

/// BIND serving the zone files in `dir` on 127.0.0.1 (named listens only on addresses an
/// interface has).
pub(crate) struct Named {
    child: Child,
    pub(crate) addr: String,
    _dir: TempDir,
}

impl Named {
    /// Serves `zones` (`<zone>.external.zone` files in `dir`).
    pub(crate) fn start(dir: TempDir, zones: &[&str]) -> Self {
        require("named");
        let port = free_port();
        let mut conf = format!(
            "options {{\n  directory \"{}\";\n  listen-on port {port} {{ 127.0.0.1; }};\n  listen-on-v6 {{ none; }};\n  recursion no;\n  pid-file none;\n  dnssec-validation no;\n}};\n",
            dir.0.display()
        );
        for z in zones {
            conf.push_str(&format!(
                "zone \"{z}\" {{ type primary; file \"{z}.external.zone\"; }};\n"
            ));
        }
        let conf_file = dir.0.join("named.conf");
        std::fs::write(&conf_file, conf).unwrap();
        let log = std::fs::File::create(dir.0.join("named.log")).unwrap();
        let child = Command::new("named")
            .args(["-g", "-4", "-c"])
            .arg(&conf_file)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start named");
        let addr = format!("127.0.0.1:{port}");
        let n = Self {
            child,
            addr,
            _dir: dir,
        };
        // ready when it answers for the last zone
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let out = Command::new("dig")
                .args(["@127.0.0.1", "-p", &port.to_string(), "+short", "SOA"])
                .arg(zones[zones.len() - 1])
                .output()
                .unwrap();
            if String::from_utf8_lossy(&out.stdout).contains("hostmaster.") {
                return n;
            }
            assert!(
                Instant::now() < deadline,
                "named did not serve the zones:\n{}",
                std::fs::read_to_string(n._dir.0.join("named.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Named {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
