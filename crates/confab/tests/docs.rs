//! The documents say what the code does: every structured event is in docs/events.md (and
//! nothing there is gone from the code), and the README's role table is the one the code
//! enforces.

mod common;

use std::collections::BTreeSet;
use std::path::Path;

fn sources(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            if p.file_name().is_some_and(|n| n != "tests" && n != "target") {
                sources(&p, out);
            }
        } else if p.extension().is_some_and(|x| x == "rs")
            && !p.to_string_lossy().ends_with("tests.rs")
        {
            out.push(p);
        }
    }
}

#[test]
fn events_are_documented() {
    let root = common::repo_root();
    let mut files = Vec::new();
    sources(&root.join("crates"), &mut files);
    let mut in_code = BTreeSet::new();
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        for part in text.split("event = \"").skip(1) {
            let name: String = part
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "_.".contains(*c))
                .collect();
            if part[name.len()..].starts_with('"') && name.contains('.') {
                in_code.insert(name);
            }
        }
    }
    let doc = std::fs::read_to_string(root.join("docs/events.md")).unwrap();
    let in_doc: BTreeSet<String> = doc
        .lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split('`').next())
        .map(str::to_owned)
        .collect();
    let missing: Vec<_> = in_code.difference(&in_doc).collect();
    let gone: Vec<_> = in_doc.difference(&in_code).collect();
    assert!(
        missing.is_empty() && gone.is_empty(),
        "docs/events.md is out of date (run scripts/events-doc): missing {missing:?}, no longer logged {gone:?}"
    );
    assert!(in_code.len() > 100, "{} events found", in_code.len());
}

#[test]
fn the_readme_role_table_is_the_one_enforced() {
    let readme = std::fs::read_to_string(common::repo_root().join("README.md")).unwrap();
    let table = confab_admin::roles::table();
    assert!(
        readme.contains(&table),
        "README.md's role table differs from the code's; put this in its place:\n{table}"
    );
}
