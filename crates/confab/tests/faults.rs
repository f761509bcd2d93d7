//! Faults of the machine under a running server: the SQLite data directory on a full disk.
//! (PostgreSQL lost and regained, and a Front End killed, are in postgres.rs and pools.rs.)

mod common;

use std::io::Write;
use std::process::Command;

use common::{reexec_in_mount_ns, Server, Sipp, TempDir};

/// Writes zeroes into `path` until the file system is full.
fn fill(path: &std::path::Path) {
    let mut f = std::fs::File::create(path).unwrap();
    let chunk = vec![0u8; 64 * 1024];
    while f.write_all(&chunk).is_ok() {}
    let _ = f.sync_all();
}

#[test]
fn a_full_disk_is_a_clear_error_and_corrupts_nothing() {
    if reexec_in_mount_ns("a_full_disk_is_a_clear_error_and_corrupts_nothing") {
        return;
    }
    // the data dir is a 4 MiB tmpfs of this test's own mount namespace
    let dir = TempDir::new("full-disk");
    let ok = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=4m", "tmpfs"])
        .arg(&dir.0)
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "cannot mount a tmpfs (the test needs root)");
    let server = Server::start_in(dir, &[]);
    common::register(&server, "alice", 5999, "u1");

    let filler = server.dir.0.join("filler");
    fill(&filler);
    let r = Sipp::new(&server, "register_refused.xml")
        .args(["-s", "bob", "-key", "contact_port", "5998"])
        .auth("bob", &server.password("bob"))
        .run();
    let trace = r.trace();
    assert!(
        trace.contains("SIP/2.0 503 Service Unavailable (registration database unreachable)")
            && trace.contains("Retry-After: 5"),
        "a REGISTER that cannot be stored is refused, not acknowledged:\n{trace}"
    );
    let log = server.log_text();
    assert!(
        log.contains("database or disk is full"),
        "the log says why:\n{log}"
    );

    // space comes back: service resumes without a restart, and the database is sound
    std::fs::remove_file(&filler).unwrap();
    common::register(&server, "bob", 5998, "u1");
    let dir = server.stop();
    let db = rusqlite::Connection::open(dir.0.join("confab.db")).unwrap();
    let check: String = db
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(check, "ok");
    let bindings: i64 = db
        .query_row("SELECT count(*) FROM bindings", [], |r| r.get(0))
        .unwrap();
    assert_eq!(
        bindings, 2,
        "alice's from before the disk filled, bob's from after"
    );
    drop(db);
    let _ = Command::new("umount").arg(&dir.0).status();
}
