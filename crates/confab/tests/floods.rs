//! Floods (issue: hardening): unauthenticated REGISTERs from several addresses at many times
//! the legitimate rate, while a legitimate user keeps signing in. Runs inside a private network
//! namespace (crafted traffic at full speed must not leave the machine).

mod common;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{free_port, reexec_in_netns, repo_root, Server, Sipp, TempDir};

/// SIPp sending `flood_register.xml` from `address` at `rate` per second, `count` in all.
fn flood(server: &Server, address: &str, rate: u32, count: u32, dir: &TempDir) -> Child {
    Command::new("sipp")
        .arg("-sf")
        .arg(repo_root().join("tests/sipp/flood_register.xml"))
        .arg(server.addr())
        .args(["-i", address, "-p", &free_port().to_string()])
        .args([
            "-s",
            "alice",
            "-r",
            &rate.to_string(),
            "-m",
            &count.to_string(),
        ])
        .args(["-nostdin", "-timeout", "60s"])
        .current_dir(&dir.0)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("run sipp")
}

/// "Successful call" and "Failed call" totals from a SIPp screen log.
fn totals(screen: &str) -> (u64, u64) {
    let count = |label: &str| {
        screen
            .lines()
            .rfind(|l| l.trim_start().starts_with(label))
            .and_then(|l| l.rsplit('|').next()?.trim().parse().ok())
            .unwrap_or(0)
    };
    (count("Successful call"), count("Failed call"))
}

#[test]
fn legitimate_sign_ins_get_through_a_register_flood() {
    if reexec_in_netns("legitimate_sign_ins_get_through_a_register_flood") {
        return;
    }
    common::require("sipp");
    let server = Server::start_with(&["--per-source-rate", "200"]);
    let rss_before = server.rss_kib();

    // four flooding addresses, 2,000 REGISTERs a second each for 5 s: 40,000 in all
    let dirs: Vec<TempDir> = (0..4).map(|_| TempDir::new("flood")).collect();
    let mut floods: Vec<Child> = dirs
        .iter()
        .enumerate()
        .map(|(i, d)| flood(&server, &format!("127.0.0.{}", 21 + i), 2_000, 10_000, d))
        .collect();
    std::thread::sleep(Duration::from_millis(500));

    // meanwhile alice signs in 200 times (20 a second) from her own address
    let legit = Sipp::new(&server, "register.xml")
        .args(["-key", "contact_port", "5999", "-s", "alice"])
        .args(["-m", "200", "-r", "20", "-trace_screen"])
        .auth("alice", &server.password("alice"))
        .run();
    let screen = std::fs::read_dir(&legit.dir.0)
        .unwrap()
        .filter_map(Result::ok)
        .find(|e| e.file_name().to_string_lossy().ends_with("_screen.log"))
        .map(|e| std::fs::read_to_string(e.path()).unwrap())
        .expect("SIPp screen log");
    for f in &mut floods {
        let _ = f.wait();
    }
    let (ok, failed) = totals(&screen);
    assert_eq!(ok + failed, 200, "every sign-in was tried:\n{screen}");
    assert!(
        ok * 100 >= 200 * 99,
        "at least 99% of legitimate sign-ins succeed under the flood: {ok} of 200\n{screen}"
    );
    let log = server.log_text();
    assert!(
        log.contains("sip.rate_limited"),
        "the flood was cut at the per-source limit:\n{log}"
    );
    let rss_after = server.rss_kib();
    assert!(
        rss_after < rss_before + 64 * 1024,
        "memory stays bounded: {rss_before} KiB before, {rss_after} KiB after 40,000 flood REGISTERs"
    );
    assert!(common::answers_options(&server), "still serving");
    eprintln!(
        "flood: 40,000 REGISTERs from 4 addresses; legitimate sign-ins {ok}/200; RSS {rss_before} -> {rss_after} KiB"
    );
}
