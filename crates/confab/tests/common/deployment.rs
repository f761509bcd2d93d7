//! A deployment across real processes on one PostgreSQL: a Director (127.0.0.11), pool A
//! (Front Ends 127.0.0.12 and 127.0.0.14, backed up by B), pool B (127.0.0.13) and an Edge
//! (inside 127.0.0.20, Access Edge 127.0.0.21), each server its own `confab up`.

use std::process::Command;

use super::{free_port, Postgres, Server, TempDir};

pub(crate) struct Deployment {
    pub(crate) pg: Postgres,
    pub(crate) topology: TempDir,
    pub(crate) port: u16,
    /// The Access Edge's port (on 127.0.0.21).
    pub(crate) access_port: u16,
}

impl Deployment {
    pub(crate) fn new() -> Self {
        let pg = Postgres::start();
        let topology = TempDir::new("pools-topology");
        let port = free_port();
        let tls = port + 1;
        let access_port = free_port();
        let text = format!(
            r#"[deployment]
name = "pools"

[[site]]
name = "hq"

[[domain]]
name = "example.com"
sign_in = ["dir.example.com"]

[[pool]]
fqdn = "dir.example.com"
site = "hq"
role = "director"
sip_port = {port}
tls_port = {tls}
[[pool.server]]
fqdn = "dir01.example.com"
address = "127.0.0.11"

[[pool]]
fqdn = "pool-a.example.com"
site = "hq"
backup = "pool-b.example.com"
sip_port = {port}
tls_port = {tls}
[[pool.server]]
fqdn = "fe-a1.example.com"
address = "127.0.0.12"
[[pool.server]]
fqdn = "fe-a2.example.com"
address = "127.0.0.14"

[[pool]]
fqdn = "pool-b.example.com"
site = "hq"
sip_port = {port}
tls_port = {tls}
[[pool.server]]
fqdn = "fe-b1.example.com"
address = "127.0.0.13"

[[edge]]
fqdn = "edgepool.example.com"
site = "hq"
next_hop = "dir.example.com"
access = {{ fqdn = "access.example.com", address = "127.0.0.21", port = {access_port} }}
internal_port = {tls}
federation_port = {access_port}
[[edge.server]]
fqdn = "edge01.example.com"
address = "127.0.0.20"
"#
        );
        std::fs::write(topology.0.join("topology.toml"), text).unwrap();
        Self {
            pg,
            topology,
            port,
            access_port,
        }
    }

    pub(crate) fn topology_file(&self) -> String {
        self.topology.0.join("topology.toml").display().to_string()
    }

    /// `confab up` as `server` (an FQDN of the topology) on `address`.
    pub(crate) fn start(&self, server: &str, address: &str) -> Server {
        let (file, url) = (self.topology_file(), self.pg.url());
        Server::start_on(
            TempDir::new(server),
            self.port,
            &[
                "--bind",
                address,
                "--fqdn",
                server,
                "--topology",
                &file,
                "--database",
                &url,
                "--no-demo-users",
            ],
        )
    }

    /// `confab ARGS --database URL`, for commands that need no topology.
    pub(crate) fn cli_db(&self, args: &[&str]) -> std::process::Output {
        Command::new(env!("CARGO_BIN_EXE_confab"))
            .args(args)
            .args(["--database", &self.pg.url()])
            .output()
            .unwrap()
    }

    /// `confab ARGS --database URL --topology FILE`.
    pub(crate) fn cli(&self, args: &[&str]) -> std::process::Output {
        Command::new(env!("CARGO_BIN_EXE_confab"))
            .args(args)
            .args([
                "--database",
                &self.pg.url(),
                "--topology",
                &self.topology_file(),
            ])
            .output()
            .unwrap()
    }
}

impl Deployment {
    /// alice and bob on pool A, carol on pool B; pool A's two Front Ends and pool B's running.
    pub(crate) fn front_ends() -> (Self, [Server; 3]) {
        let d = Self::new();
        d.users("pool-a.example.com", &["alice", "bob"]);
        d.users("pool-b.example.com", &["carol"]);
        let servers = [
            d.start("fe-a1.example.com", "127.0.0.12"),
            d.start("fe-a2.example.com", "127.0.0.14"),
            d.start("fe-b1.example.com", "127.0.0.13"),
        ];
        (d, servers)
    }

    /// Imports the users of `file` (`confab user import`) onto pool A.
    pub(crate) fn import(&self, file: &std::path::Path) {
        let out = self.cli(&[
            "user",
            "import",
            &file.display().to_string(),
            "--pool",
            "pool-a.example.com",
        ]);
        assert!(out.status.success(), "{out:?}");
    }

    /// Adds users homed on `pool`, password `pw`.
    pub(crate) fn users(&self, pool: &str, users: &[&str]) {
        for user in users {
            let aor = format!("{user}@example.com");
            let out = self.cli(&["user", "add", &aor, "--password", "pw", "--pool", pool]);
            assert!(out.status.success(), "{out:?}");
        }
    }
}
