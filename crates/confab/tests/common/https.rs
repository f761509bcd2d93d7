//! The administration API driven with curl over HTTPS, trusting the server's CA.

use std::process::Command;

use super::Server;

/// One answer: status, headers (lower-case names) and body.
pub(crate) struct Reply {
    pub(crate) status: u16,
    pub(crate) headers: String,
    pub(crate) body: String,
}

impl Reply {
    /// A header's value.
    pub(crate) fn header(&self, name: &str) -> Option<String> {
        self.headers.lines().find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_owned())
        })
    }

    pub(crate) fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }

    /// Asserts a problem document with `status` whose detail contains `says`.
    pub(crate) fn assert_problem(&self, status: u16, says: &str) {
        assert_eq!(self.status, status, "{}", self.body);
        assert_eq!(
            self.header("content-type").as_deref(),
            Some("application/problem+json"),
            "{}",
            self.body
        );
        let p = self.json();
        assert_eq!(p["status"], status, "{}", self.body);
        let detail = p["detail"].as_str().unwrap_or_default();
        assert!(detail.contains(says), "{detail:?} should say {says:?}");
    }
}

/// `curl` against the server's web port: `https://` unless `plain`.
pub(crate) fn request(
    s: &Server,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
    headers: &[&str],
    plain: bool,
) -> Reply {
    let dir = super::TempDir::new("curl");
    let (head, out) = (dir.0.join("head"), dir.0.join("body"));
    let scheme = if plain { "http" } else { "https" };
    let mut c = Command::new("curl");
    c.args(["-s", "-X", method, "--max-time", "20"])
        .arg("--cacert")
        .arg(s.dir.0.join("ca.pem"))
        .arg("-D")
        .arg(&head)
        .arg("-o")
        .arg(&out)
        .args(["-w", "%{http_code}"]);
    if let Some(t) = token {
        c.args(["-H", &format!("Authorization: Bearer {t}")]);
    }
    if let Some(b) = body {
        c.args(["-H", "Content-Type: application/json", "--data-binary", b]);
    }
    for h in headers {
        c.args(["-H", h]);
    }
    c.arg(format!("{scheme}://127.0.0.1:{}{path}", s.web_port));
    let o = c.output().expect("run curl");
    let code = String::from_utf8_lossy(&o.stdout).trim().to_owned();
    Reply {
        status: code.parse().unwrap_or_else(|_| {
            panic!(
                "curl gave no status ({code}): {}",
                String::from_utf8_lossy(&o.stderr)
            )
        }),
        headers: std::fs::read_to_string(&head).unwrap_or_default(),
        body: std::fs::read_to_string(&out).unwrap_or_default(),
    }
}

/// An administrator with `role` and a token of theirs.
pub(crate) fn admin_token(s: &Server, name: &str, role: &str) -> String {
    let o = s.cli(&["admin", "add", name, "--role", role]);
    assert!(o.status.success(), "{}", super::text(&o));
    let o = s.cli(&["admin", "token", name]);
    assert!(o.status.success(), "{}", super::text(&o));
    String::from_utf8_lossy(&o.stdout).trim().to_owned()
}
