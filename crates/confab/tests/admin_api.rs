//! The administration API over real HTTPS: curl as the client, roles and versions, problem
//! documents for bad input, a client generated from the OpenAPI document, Prometheus scraping
//! `/metrics`.

mod common;

use common::https::{admin_token, request, Reply};
use common::{require, text, Server};

fn get(s: &Server, path: &str, token: &str) -> Reply {
    request(s, "GET", path, Some(token), None, &[], false)
}

fn users_count(s: &Server) -> usize {
    let o = s.cli(&["user", "list"]);
    assert!(o.status.success(), "{}", text(&o));
    String::from_utf8_lossy(&o.stdout).lines().count()
}

#[test]
fn curl_manages_users_over_https_within_each_roles_rights_and_every_change_is_audited() {
    require("curl");
    let s = Server::start();
    let root = admin_token(&s, "root", "administrator");
    let hd = admin_token(&s, "hd", "helpdesk");
    let viewer = admin_token(&s, "viewer", "view-only");

    let me = get(&s, "/api/v1/me", &hd);
    assert_eq!(me.status, 200, "{}", me.body);
    assert_eq!(me.json()["roles"][0], "helpdesk");

    // added over the API: the CLI sees it, its version comes back
    let body = r#"{"address":"dave@example.com","password":"dave-pw"}"#;
    let added = request(
        &s,
        "POST",
        "/api/v1/users",
        Some(&root),
        Some(body),
        &[],
        false,
    );
    assert_eq!(added.status, 201, "{}", added.body);
    assert_eq!(
        added.header("location").as_deref(),
        Some("/api/v1/users/dave@example.com")
    );
    let v1 = added.header("etag").expect("an ETag");
    assert!(String::from_utf8_lossy(&s.cli(&["user", "list"]).stdout).contains("dave@example.com"));
    let read = get(&s, "/api/v1/users/dave@example.com", &viewer);
    assert_eq!(read.status, 200);
    assert_eq!(read.header("etag").as_deref(), Some(v1.as_str()));
    assert_eq!(read.json()["federation"], "default");

    // an edit against the current version goes in; one against the old version is refused
    let off = r#"{"federation":"off"}"#;
    let changed = request(
        &s,
        "PUT",
        "/api/v1/users/dave@example.com",
        Some(&root),
        Some(off),
        &[&format!("If-Match: {v1}")],
        false,
    );
    assert_eq!(changed.status, 200, "{}", changed.body);
    assert_eq!(changed.json()["federation"], "off");
    let v2 = changed.header("etag").unwrap();
    assert_ne!(v1, v2);
    let again = request(
        &s,
        "PUT",
        "/api/v1/users/dave@example.com",
        Some(&root),
        Some(off),
        &[],
        false,
    );
    assert_eq!(
        again.header("etag").as_deref(),
        Some(v2.as_str()),
        "the same PUT twice: the same user"
    );
    let stale = request(
        &s,
        "PUT",
        "/api/v1/users/dave@example.com",
        Some(&root),
        Some(r#"{"remote_access":"on"}"#),
        &[&format!("If-Match: {v1}")],
        false,
    );
    stale.assert_problem(412, "was changed since");
    assert_eq!(
        get(&s, "/api/v1/users/dave@example.com", &root).json()["remote_access"],
        "default"
    );

    // rights: a viewer reads only, the helpdesk unlocks but adds nobody
    let refused = request(
        &s,
        "POST",
        "/api/v1/users",
        Some(&viewer),
        Some(r#"{"address":"eve@example.com","password":"x"}"#),
        &[],
        false,
    );
    refused.assert_problem(403, "viewer may not add");
    request(
        &s,
        "POST",
        "/api/v1/users/dave@example.com/unlock",
        Some(&viewer),
        None,
        &[],
        false,
    )
    .assert_problem(403, "may not unlock");
    let unlocked = request(
        &s,
        "POST",
        "/api/v1/users/dave@example.com/unlock",
        Some(&hd),
        None,
        &[],
        false,
    );
    assert_eq!(unlocked.status, 204, "{}", unlocked.body);
    get(&s, "/api/v1/audit", &hd).assert_problem(403, "read the audit log");
    let pw = request(
        &s,
        "PUT",
        "/api/v1/users/dave@example.com/password",
        Some(&root),
        Some(r#"{"password":"new-pw"}"#),
        &[],
        false,
    );
    assert_eq!(pw.status, 204, "{}", pw.body);

    // pages: every user once, in order
    let mut seen = Vec::new();
    let mut path = "/api/v1/users?limit=2".to_owned();
    loop {
        let page = get(&s, &path, &viewer).json();
        for u in page["items"].as_array().unwrap() {
            seen.push(u["address"].as_str().unwrap().to_owned());
        }
        match page["next"].as_str() {
            Some(n) => path = format!("/api/v1/users?limit=2&after={n}"),
            None => break,
        }
    }
    assert_eq!(seen.len(), users_count(&s), "{seen:?}");
    assert!(seen.windows(2).all(|w| w[0] < w[1]), "{seen:?}");
    let filtered = get(&s, "/api/v1/users?q=dave", &viewer).json();
    assert_eq!(filtered["items"].as_array().unwrap().len(), 1);

    let removed = request(
        &s,
        "DELETE",
        "/api/v1/users/dave@example.com",
        Some(&root),
        None,
        &[&format!("If-Match: {v2}")],
        false,
    );
    assert_eq!(removed.status, 204, "{}", removed.body);
    get(&s, "/api/v1/users/dave@example.com", &root)
        .assert_problem(404, "no such user: dave@example.com");

    // the audit log names who did what from where, read with the CLI and the API alike
    let log = text(&s.cli(&["admin", "audit", "--who", "root"]));
    for action in ["user.add", "user.change", "user.password", "user.remove"] {
        assert!(log.contains(action), "{action} missing:\n{log}");
    }
    assert!(log.contains("127.0.0.1:"), "the client's address:\n{log}");
    assert!(
        !log.contains("new-pw") && !log.contains(&root[7..]),
        "no secrets in the log"
    );
    let api_log = get(&s, "/api/v1/audit?who=hd", &root).json();
    assert_eq!(api_log[0]["action"], "user.unlock", "{api_log}");
    assert!(
        !s.log_text().contains(&root[7..]),
        "a token never reaches the server's log"
    );
}

#[test]
fn bad_requests_get_a_problem_document_and_change_nothing() {
    require("curl");
    let s = Server::start();
    let root = admin_token(&s, "root", "administrator");
    let before = users_count(&s);
    let post = |body: &str, headers: &[&str]| {
        request(
            &s,
            "POST",
            "/api/v1/users",
            Some(&root),
            Some(body),
            headers,
            false,
        )
    };
    post(r#"{"address":"x@example.com","password":"#, &[])
        .assert_problem(400, "not what this resource takes");
    post(
        r#"{"address":"x@example.com","password":"p","admin":true}"#,
        &[],
    )
    .assert_problem(400, "unknown field `admin`");
    post(r#"{"address":5,"password":"p"}"#, &[]).assert_problem(400, "invalid type");
    post(r#"{"address":"x@example.com","password":""}"#, &[])
        .assert_problem(400, "must not be empty");
    post(
        r#"{"address":"x@example.com","password":"p","pool":"nowhere.example.com"}"#,
        &[],
    )
    .assert_problem(400, "not a pool that hosts users");
    post(r#"{"address":"alice@example.com","password":"p"}"#, &[])
        .assert_problem(409, "already exists");
    post(r#"{"address":"meet-1234@example.com","password":"p"}"#, &[])
        .assert_problem(409, "meetings' addresses");
    let big = format!(
        r#"{{"address":"x@example.com","password":"{}"}}"#,
        "a".repeat(100_000)
    );
    // with Expect: 100-continue the refusal comes before the body is sent (without it the
    // server closes on a body it has not read, and the client may see the reset first)
    post(&big, &["Expect: 100-continue"]).assert_problem(413, "larger than");
    let no_type = request(
        &s,
        "POST",
        "/api/v1/users",
        Some(&root),
        None,
        &["Content-Type: text/plain"],
        false,
    );
    no_type.assert_problem(415, "Content-Type: application/json");

    // every parameter: traversal, injection, control characters
    for path in [
        "/api/v1/users/..%2F..%2Fetc%2Fpasswd",
        "/api/v1/users/alice'%20OR%20'1'='1@example.com",
        "/api/v1/users/%00@example.com",
        "/api/v1/users/alice@example.com%0d%0aX-Injected:%201",
    ] {
        let r = get(&s, path, &root);
        assert!(
            matches!(r.status, 400 | 404),
            "{path}: {} {}",
            r.status,
            r.body
        );
        assert_eq!(
            r.header("content-type").as_deref(),
            Some("application/problem+json"),
            "{path}"
        );
        assert!(r.header("x-injected").is_none());
    }
    get(&s, "/api/v1/users?limit=0", &root).assert_problem(400, "limit");
    get(&s, "/api/v1/users?limit=many", &root).assert_problem(400, "query string");
    get(&s, "/api/v1/users?sort=name", &root).assert_problem(400, "unknown field `sort`");
    get(&s, "/api/v1/nothing", &root).assert_problem(404, "openapi.json");
    get(&s, "/api/v1/", &root).assert_problem(404, "openapi.json");
    get(&s, "/api/v1/?sipuri&sipuri", &root).assert_problem(404, "openapi.json");
    get(&s, "/api/v2/users", &root).assert_problem(404, "openapi.json");
    request(&s, "PATCH", "/api/v1/users", Some(&root), None, &[], false)
        .assert_problem(405, "method");

    // tokens: none, wrong, revoked; and plain HTTP
    request(&s, "GET", "/api/v1/users", None, None, &[], false).assert_problem(401, "no token");
    let wrong = format!("{}x", &root[..root.len() - 1]);
    get(&s, "/api/v1/users", &wrong).assert_problem(401, "unknown, revoked or expired");
    let temp = admin_token(&s, "temp", "view-only");
    let id = temp["confab_".len()..]
        .split('.')
        .next()
        .unwrap()
        .to_owned();
    assert!(s.cli(&["admin", "revoke", &id]).status.success());
    get(&s, "/api/v1/users", &temp).assert_problem(401, "unknown, revoked or expired");
    request(&s, "GET", "/api/v1/users", Some(&root), None, &[], true)
        .assert_problem(403, "HTTPS only");
    let discover = request(
        &s,
        "GET",
        "/autodiscover/autodiscoverservice.svc/root?sipuri=sip:alice@example.com",
        None,
        None,
        &[],
        true,
    );
    assert_eq!(discover.status, 200, "autodiscover stays on plain HTTP");

    assert_eq!(users_count(&s), before, "nothing was added");
    let audit = text(&s.cli(&["admin", "audit"]));
    assert!(
        !audit.contains("user."),
        "nothing changed, nothing audited:\n{audit}"
    );
}

#[test]
fn a_client_that_sends_its_headers_slowly_is_cut_off_and_others_are_served_meanwhile() {
    use std::io::{Read, Write};
    let s = Server::start();
    let root = admin_token(&s, "root", "administrator");
    let addr = format!("127.0.0.1:{}", s.web_port);
    // one that connects and sends nothing, one that starts a request and never ends it
    let silent = std::net::TcpStream::connect(&addr).unwrap();
    let mut slow = std::net::TcpStream::connect(&addr).unwrap();
    slow.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    assert_eq!(
        get(&s, "/api/v1/me", &root).status,
        200,
        "served while they wait"
    );
    for (mut c, what) in [(silent, "silent"), (slow, "slow")] {
        c.set_read_timeout(Some(std::time::Duration::from_secs(30)))
            .unwrap();
        let mut buf = [0u8; 256];
        let n = loop {
            match c.read(&mut buf) {
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                other => break other.unwrap_or_else(|e| panic!("{what}: not closed: {e}")),
            }
        };
        let answer = String::from_utf8_lossy(&buf[..n]);
        assert!(
            n == 0 || answer.starts_with("HTTP/1.1 408"),
            "{what}: {answer}"
        );
    }
}

#[test]
fn every_operation_in_the_openapi_document_is_served_and_a_generated_client_works() {
    require("curl");
    let have = std::process::Command::new("python3")
        .args(["-c", "import openapi_python_client"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        have,
        "openapi-python-client is not installed: run ./scripts/test (it installs it from PyPI)"
    );
    let s = Server::start();
    let root = admin_token(&s, "gen-root", "administrator");
    let viewer = admin_token(&s, "gen-viewer", "view-only");
    let doc = request(&s, "GET", "/api/v1/openapi.json", None, None, &[], false);
    assert_eq!(doc.status, 200);
    let spec = doc.json();
    assert_eq!(spec["openapi"], "3.1.0");
    let paths = spec["paths"].as_object().expect("paths");
    let mut operations = 0;
    for (path, item) in paths {
        for (method, _) in item.as_object().unwrap() {
            // a documented route answers (without a token: 401), never 404 or 405
            let concrete = path.replace("{address}", "alice@example.com");
            let r = request(
                &s,
                &method.to_uppercase(),
                &format!("/api/v1{concrete}"),
                None,
                Some("{}"),
                &[],
                false,
            );
            r.assert_problem(401, "no token");
            operations += 1;
        }
    }
    assert!(operations >= 9, "{operations} operations: {paths:?}");

    let dir = common::TempDir::new("openapi-client");
    std::fs::write(dir.0.join("openapi.json"), &doc.body).unwrap();
    let gen = std::process::Command::new("python3")
        .args([
            "-m",
            "openapi_python_client",
            "generate",
            "--path",
            "openapi.json",
            "--meta",
            "none",
        ])
        .current_dir(&dir.0)
        .output()
        .unwrap();
    assert!(
        gen.status.success(),
        "the document does not generate a client: {}",
        text(&gen)
    );
    let script = common::repo_root().join("crates/confab/tests/admin_api/generated_client.py");
    let run = std::process::Command::new("python3")
        .arg(script)
        .arg(format!("https://127.0.0.1:{}/api/v1", s.web_port))
        .arg(s.dir.0.join("ca.pem"))
        .args([&root, &viewer])
        .env("PYTHONPATH", &dir.0)
        .output()
        .unwrap();
    assert!(run.status.success(), "{}", text(&run));
    assert!(
        text(&run).contains("generated client: ok"),
        "{}",
        text(&run)
    );
}

#[test]
fn prometheus_scrapes_metrics_over_https_and_counts_the_registrations() {
    require("prometheus");
    require("curl");
    let s = Server::start();
    for user in ["alice", "bob", "carol"] {
        common::register(&s, user, common::free_port(), "u1");
    }
    let dir = common::TempDir::new("prometheus");
    let prom_port = common::free_port();
    let config = format!(
        "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: confab\n    scheme: https\n    tls_config:\n      ca_file: {}\n    static_configs:\n      - targets: ['127.0.0.1:{}']\n",
        s.dir.0.join("ca.pem").display(),
        s.web_port
    );
    std::fs::write(dir.0.join("prometheus.yml"), config).unwrap();
    let log = std::fs::File::create(dir.0.join("prometheus.log")).unwrap();
    let mut prom = std::process::Command::new("prometheus")
        .arg(format!(
            "--config.file={}",
            dir.0.join("prometheus.yml").display()
        ))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.0.join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{prom_port}"))
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("start prometheus");
    let query = |q: &str| -> serde_json::Value {
        let o = std::process::Command::new("curl")
            .args([
                "-s",
                "--max-time",
                "5",
                "--get",
                "--data-urlencode",
                &format!("query={q}"),
            ])
            .arg(format!("http://127.0.0.1:{prom_port}/api/v1/query"))
            .output()
            .unwrap();
        serde_json::from_slice(&o.stdout).unwrap_or(serde_json::Value::Null)
    };
    // shards publish their figures about once a second and Prometheus scrapes every second:
    // poll until both have caught up with the three sign-ins
    let number = |v: &serde_json::Value| -> u64 {
        v["data"]["result"][0]["value"][1]
            .as_str()
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let (registrations, registers) = loop {
        let r = query("confab_registrations");
        let q = query("confab_sip_requests_total{method=\"REGISTER\"}");
        if (number(&r) == 3 && number(&q) >= 6) || std::time::Instant::now() > deadline {
            break (r, q);
        }
        std::thread::sleep(std::time::Duration::from_millis(500));
    };
    let up = query("up{job=\"confab\"}");
    let _ = prom.kill();
    let _ = prom.wait();
    let plog = std::fs::read_to_string(dir.0.join("prometheus.log")).unwrap_or_default();
    assert_eq!(
        number(&registrations),
        3,
        "Prometheus' answer: {registrations}\n{plog}"
    );
    let labels = &registrations["data"]["result"][0]["metric"];
    assert_eq!(labels["server"], "pool01.example.com", "{labels}");
    assert_eq!(labels["pool"], "pool01.example.com", "{labels}");
    assert_eq!(up["data"]["result"][0]["value"][1], "1", "{up}");
    assert!(
        number(&registers) >= 6,
        "each device's REGISTER and its challenge: {registers}"
    );
}

#[test]
fn the_command_line_works_through_a_servers_api_with_the_same_rights_and_errors() {
    let s = Server::start();
    let root = admin_token(&s, "root", "administrator");
    let viewer = admin_token(&s, "viewer", "view-only");
    let elsewhere = common::TempDir::new("remote-cli");
    let ca = s.dir.0.join("ca.pem");
    let remote = |token: &str, args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_confab"))
            .args(args)
            .arg("--ca")
            .arg(&ca)
            .env("CONFAB_SERVER", format!("https://127.0.0.1:{}", s.web_port))
            .env("CONFAB_TOKEN", token)
            .env("CONFAB_DATA_DIR", &elsewhere.0)
            .output()
            .unwrap()
    };
    let o = remote(
        &root,
        &["user", "add", "zoe@example.com", "--password", "zoe-pw"],
    );
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("added zoe@example.com (home pool pool01.example.com)"));
    let o = remote(
        &root,
        &["user", "set", "zoe@example.com", "--federation", "off"],
    );
    assert!(text(&o).contains("federation off"), "{}", text(&o));
    let listed = text(&remote(&viewer, &["user", "list"]));
    assert!(
        listed.contains("zoe@example.com") && listed.contains("alice@example.com"),
        "{listed}"
    );
    // the same refusal as over HTTP, as a usage error
    let o = remote(&viewer, &["user", "remove", "zoe@example.com"]);
    assert_eq!(o.status.code(), Some(64), "{}", text(&o));
    assert!(
        text(&o).contains("viewer may not add, change, move or remove users"),
        "{}",
        text(&o)
    );
    let o = remote(
        &root,
        &["user", "add", "zoe@example.com", "--password", "x"],
    );
    assert!(text(&o).contains("already exists"), "{}", text(&o));
    let o = remote(&root, &["user", "set", "zoe@example.com", "--pin", "1234"]);
    assert!(
        text(&o).contains("not served by the API yet"),
        "{}",
        text(&o)
    );
    // the database here was never touched: the change is on the server's, with who made it
    assert!(!elsewhere.0.join("confab.db").exists());
    let here = text(&s.cli(&["user", "list"]));
    assert!(here.contains("zoe@example.com"), "{here}");
    let audit = text(&s.cli(&["admin", "audit", "--who", "root"]));
    assert!(
        audit.contains("user.add") && audit.contains("user.change"),
        "{audit}"
    );
    let o = remote("confab_000000000000.nope", &["user", "list"]);
    assert!(
        text(&o).contains("unknown, revoked or expired"),
        "{}",
        text(&o)
    );
}

#[test]
fn contacts_privacy_topology_and_pools_over_the_api() {
    let s = Server::start();
    let root = admin_token(&s, "root", "administrator");
    let viewer = admin_token(&s, "viewer", "view-only");
    let ua = admin_token(&s, "ua", "user-administrator");
    let send =
        |m: &str, p: &str, t: &str, b: Option<&str>| request(&s, m, p, Some(t), b, &[], false);

    let added = send(
        "POST",
        "/api/v1/users/alice@example.com/contacts",
        &ua,
        Some(r#"{"address":"bob@example.com","group":"Team"}"#),
    );
    assert_eq!(added.status, 200, "{}", added.body);
    assert_eq!(added.json()["contacts"][0]["groups"][0], "Team");
    // the CLI reads what the API wrote
    let listed = text(&s.cli(&["contacts", "list", "alice@example.com"]));
    assert!(listed.contains("bob@example.com\tTeam"), "{listed}");
    send(
        "POST",
        "/api/v1/users/alice@example.com/contacts",
        &viewer,
        Some(r#"{"address":"carol@example.com"}"#),
    )
    .assert_problem(403, "may not");
    let p = send(
        "PUT",
        "/api/v1/users/alice@example.com/privacy",
        &ua,
        Some(r#"{"visibility":"contacts","block":["carol@example.com"]}"#),
    );
    assert_eq!(p.status, 200, "{}", p.body);
    assert_eq!(p.json()["blocked"][0], "carol@example.com");
    let shown = text(&s.cli(&["privacy", "show", "alice@example.com"]));
    assert!(
        shown.contains("visible to: contacts") && shown.contains("carol@example.com"),
        "{shown}"
    );
    send(
        "PUT",
        "/api/v1/users/alice@example.com/privacy",
        &ua,
        Some(r#"{"visibility":"friends"}"#),
    )
    .assert_problem(400, "unknown variant");
    assert_eq!(
        send(
            "DELETE",
            "/api/v1/users/alice@example.com/contacts/groups/Team",
            &ua,
            None
        )
        .status,
        204
    );
    send(
        "DELETE",
        "/api/v1/users/alice@example.com/contacts/groups/Team",
        &ua,
        None,
    )
    .assert_problem(404, "no group Team");
    assert_eq!(
        send(
            "DELETE",
            "/api/v1/users/alice@example.com/contacts/bob@example.com",
            &ua,
            None
        )
        .status,
        204
    );
    send(
        "GET",
        "/api/v1/users/nobody@example.com/contacts",
        &viewer,
        None,
    )
    .assert_problem(404, "no user");

    // the deployment: the same view as `confab topology show`, findings as the validator gives
    let t = send("GET", "/api/v1/topology", &viewer, None).json();
    assert_eq!(t["domains"][0]["name"], "example.com", "{t}");
    let shown = text(
        &std::process::Command::new(env!("CARGO_BIN_EXE_confab"))
            .args(["topology", "show"])
            .arg(s.dir.0.join("topology.toml"))
            .output()
            .unwrap(),
    );
    for r in t["dns_internal"].as_array().unwrap() {
        assert!(shown.contains(r.as_str().unwrap()), "{r} not in:\n{shown}");
    }
    let doc = std::fs::read_to_string(s.dir.0.join("topology.toml")).unwrap();
    let body = serde_json::json!({ "document": doc }).to_string();
    let v = send("POST", "/api/v1/topology/validate", &viewer, Some(&body));
    assert_eq!(v.status, 200, "{}", v.body);
    assert_eq!(v.json()["errors"], 0, "{}", v.body);
    let broken = serde_json::json!({ "document": "[deployment]\nnonsense = 1\n" }).to_string();
    send("POST", "/api/v1/topology/validate", &viewer, Some(&broken)).assert_problem(400, "");

    let pools = send("GET", "/api/v1/pools", &viewer, None).json();
    let server = pools[0]["servers"][0]["fqdn"].as_str().unwrap().to_owned();
    assert_eq!(pools[0]["servers"][0]["draining"], false);
    let path = format!("/api/v1/servers/{server}/draining");
    send("PUT", &path, &ua, Some(r#"{"draining":true}"#)).assert_problem(403, "drain servers");
    assert_eq!(
        send("PUT", &path, &root, Some(r#"{"draining":true}"#)).status,
        204
    );
    assert_eq!(
        send("GET", "/api/v1/pools", &viewer, None).json()[0]["servers"][0]["draining"],
        true
    );
    send(
        "PUT",
        "/api/v1/servers/nowhere.example.com/draining",
        &root,
        Some(r#"{"draining":true}"#),
    )
    .assert_problem(404, "not a server of the topology");
    assert_eq!(
        send("PUT", &path, &root, Some(r#"{"draining":false}"#)).status,
        204
    );
}
