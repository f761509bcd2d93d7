//! The `confab` command line: help, user management, and errors that say what to do.

mod common;

use std::process::Command;

use common::{text, TempDir};

fn confab(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_confab"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn every_command_has_help() {
    for args in [
        &["--help"][..],
        &["up", "--help"],
        &["user", "--help"],
        &["user", "add", "--help"],
        &["user", "set-password", "--help"],
        &["archive", "export", "--help"],
        &["cdr", "search", "--help"],
        &["report", "calls", "--help"],
    ] {
        let o = confab(args);
        assert!(o.status.success(), "{args:?}: {}", text(&o));
        assert!(text(&o).contains("Usage:"), "{args:?}");
    }
    assert!(text(&confab(&["up", "--help"])).contains("--sip-port"));
}

#[test]
fn user_commands_before_first_start_say_what_to_do() {
    let dir = TempDir::new("cli");
    let o = confab(&[
        "user",
        "list",
        "--data-dir",
        dir.0.join("nothing").to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(64));
    assert!(text(&o).contains("run `confab up` first"), "{}", text(&o));
}

#[test]
fn users_are_added_listed_changed_and_removed() {
    let server = common::Server::start();
    let ok = |args: &[&str]| {
        let o = server.cli(args);
        assert!(o.status.success(), "{args:?}: {}", text(&o));
        text(&o)
    };
    ok(&["user", "add", "Erin@Example.com", "--password", "pw1"]);
    assert!(ok(&["user", "list"]).contains("Erin@example.com"));
    ok(&[
        "user",
        "set-password",
        "Erin@example.com",
        "--password",
        "pw2",
    ]);
    let dup = server.cli(&["user", "add", "Erin@example.com", "--password", "x"]);
    assert_eq!(dup.status.code(), Some(64));
    assert!(text(&dup).contains("already exists"));
    let bad = server.cli(&["user", "add", "no-domain", "--password", "x"]);
    assert_eq!(bad.status.code(), Some(64));
    assert!(text(&bad).contains("user@domain"));
    ok(&["user", "remove", "Erin@example.com"]);
    assert!(!ok(&["user", "list"]).contains("Erin@"));
    let gone = server.cli(&["user", "remove", "Erin@example.com"]);
    assert_eq!(gone.status.code(), Some(64));

    let file = server.dir.0.join("import.txt");
    std::fs::write(
        &file,
        "# migrated\nfay@example.com  f4y\n\ngus@example.com g\n",
    )
    .unwrap();
    let f = file.to_str().unwrap();
    assert!(ok(&["user", "import", f]).contains("imported 2 users (0 already existed)"));
    assert!(ok(&["user", "import", f]).contains("imported 0 users (2 already existed)"));
    let users = ok(&["user", "list"]);
    assert!(users.contains("fay@example.com") && users.contains("gus@example.com"));
    std::fs::write(&file, "hal@example.com h\nivy@example.com\n").unwrap();
    let bad = server.cli(&["user", "import", f]);
    assert_eq!(bad.status.code(), Some(64));
    assert!(
        text(&bad).contains("import.txt:2: expected `ADDRESS PASSWORD`"),
        "{}",
        text(&bad)
    );
    assert!(
        !ok(&["user", "list"]).contains("hal@"),
        "a bad file adds nobody"
    );
}

#[test]
fn a_port_in_use_is_reported_with_a_remedy() {
    let server = common::Server::start();
    let dir = TempDir::new("cli-busy");
    let o = confab(&[
        "up",
        "--data-dir",
        dir.0.to_str().unwrap(),
        "--sip-port",
        &server.port.to_string(),
    ]);
    assert!(!o.status.success());
    assert!(text(&o).contains("--sip-port"), "{}", text(&o));
}

#[test]
fn json_logs_are_one_object_per_line() {
    let server = common::Server::start_with(&["--log-format", "json"]);
    let log = server.log_text();
    let ready = log
        .lines()
        .find(|l| l.contains("server.ready"))
        .unwrap_or_else(|| panic!("{log}"));
    assert!(ready.starts_with('{') && ready.ends_with('}'), "{ready}");
    assert!(ready.contains("\"event\":\"server.ready\""), "{ready}");
}

#[test]
fn output_into_a_reader_that_stopped_ends_quietly() {
    // `confab dns zone | head -0`: the pipe's reader is gone before anything is printed
    let topology = common::repo_root().join("crates/confab/tests/topologies/split-edge.toml");
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let out = Command::new(env!("CARGO_BIN_EXE_confab"))
        .args(["dns", "zone", "--topology"])
        .arg(&topology)
        .stdout(writer)
        .stderr(std::process::Stdio::piped())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(141),
        "as if killed by SIGPIPE: {err}"
    );
    assert!(!err.contains("panicked"), "{err}");
}
