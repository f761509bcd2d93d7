//! Table-driven tests over the fixture folders: the clean seed deployment validates with no
//! finding, every mistake file yields exactly the rule its name gives, every malformed file is
//! refused at the line and key its `.expected` file gives.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use confab_topology::{cert_plan, load, validate, Topology, View, RULES};

fn dir(sub: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(sub)
}

fn files(sub: &str, ext: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir(sub))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == ext))
        .collect();
    v.sort();
    v
}

fn load_file(path: &Path) -> Topology {
    let text = std::fs::read_to_string(path).unwrap();
    load(&text, &path.display().to_string()).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn the_seed_ha_edge_deployment_validates_clean() {
    let t = load_file(&dir("clean").join("ha-edge.toml"));
    assert_eq!(validate(&t), Vec::new());
}

#[test]
fn every_mistake_fixture_yields_exactly_its_rule() {
    let fixtures = files("mistakes", "toml");
    let covered: BTreeSet<String> = fixtures
        .iter()
        .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
        .collect();
    let rules: BTreeSet<String> = RULES.iter().map(|(id, _)| (*id).to_owned()).collect();
    assert_eq!(covered, rules, "one fixture per rule ID, no more, no less");
    for path in fixtures {
        let expected = path.file_stem().unwrap().to_string_lossy().into_owned();
        let findings = validate(&load_file(&path));
        let got: BTreeSet<&str> = findings.iter().map(|f| f.rule).collect();
        assert_eq!(
            got,
            BTreeSet::from([expected.as_str()]),
            "{}: {findings:#?}",
            path.display()
        );
        for f in &findings {
            assert!(!f.what.is_empty() && !f.breaks.is_empty() && !f.fix.is_empty());
        }
    }
}

#[test]
fn malformed_files_are_refused_naming_line_and_key() {
    let fixtures = files("malformed", "toml");
    assert!(fixtures.len() >= 6);
    for path in fixtures {
        let text = std::fs::read_to_string(&path).unwrap();
        let expected = std::fs::read_to_string(path.with_extension("expected")).unwrap();
        let (line, key) = expected.trim().split_once(' ').unwrap();
        let err = load(&text, "f.toml").expect_err(&path.display().to_string());
        assert_eq!(
            (err.line.to_string().as_str(), err.key.as_str()),
            (line, key),
            "{}: {err}",
            path.display()
        );
        assert!(
            err.to_string().starts_with(&format!("f.toml:{line}:")),
            "{err}"
        );
    }
}

fn lines(t: &Topology, view: View) -> Vec<String> {
    t.records(view).iter().map(ToString::to_string).collect()
}

#[test]
fn records_of_the_seed_deployment() {
    let t = load_file(&dir("clean").join("ha-edge.toml"));
    let internal = lines(&t, View::Internal);
    // No split DNS: one namespace.
    assert_eq!(internal, lines(&t, View::External));
    for want in [
        "_sipinternaltls._tcp.vlab.com SRV 0 0 5061 ocs-pool.contoso.com",
        "_sip._tls.vlab.com SRV 0 0 443 sip.vlab.com",
        "_sipfederationtls._tcp.nwtraders.com SRV 0 0 5061 sip.nwtraders.com",
        "sip.vlab.com A 100.100.231.68",
        "ocs-pool.contoso.com A 100.100.230.21",
        "ocs-pool.contoso.com A 100.100.230.22",
        "lyncdiscoverinternal.contoso.com A 100.100.230.20",
        "lyncdiscover.contoso.com A 100.100.231.70",
    ] {
        assert!(
            internal.iter().any(|l| l == want),
            "missing {want}: {internal:#?}"
        );
    }
    // sip.<domain> has its external meaning only (the Edge), never also the pool.
    assert!(!internal
        .iter()
        .any(|l| l.starts_with("sip.vlab.com A 100.100.230")));
}

#[test]
fn split_dns_separates_the_views() {
    let text = std::fs::read_to_string(dir("clean").join("ha-edge.toml"))
        .unwrap()
        .replace("split_dns = false", "split_dns = true");
    let t = load(&text, "split.toml").unwrap();
    let internal = lines(&t, View::Internal);
    let external = lines(&t, View::External);
    assert!(
        internal
            .iter()
            .any(|l| l == "sip.vlab.com A 100.100.230.21"),
        "{internal:#?}"
    );
    assert!(!internal.iter().any(|l| l.starts_with("_sip._tls.")));
    assert!(external
        .iter()
        .any(|l| l == "sip.vlab.com A 100.100.231.68"));
    assert!(!external.iter().any(|l| l.starts_with("_sipinternaltls.")));
    assert!(
        !external.iter().any(|l| l.starts_with("ocs-fe1.")),
        "internal names stay inside"
    );
}

#[test]
fn the_zone_file_matches_the_golden_one() {
    let t = load_file(&dir("clean").join("ha-edge.toml"));
    let zone = t
        .zones(View::Internal)
        .into_iter()
        .find(|z| z.origin == "vlab.com")
        .unwrap();
    let golden = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/vlab.com.zone");
    let text = zone.to_bind(2026112201);
    if std::env::var_os("CONFAB_BLESS").is_some() {
        std::fs::write(&golden, &text).unwrap();
    }
    assert_eq!(text, std::fs::read_to_string(golden).unwrap());
}

#[test]
fn the_certificate_plan_names_what_dns_points_at() {
    let t = load_file(&dir("clean").join("ha-edge.toml"));
    let plans = cert_plan(&t);
    let fe1 = plans
        .iter()
        .find(|p| p.server == "ocs-fe1.contoso.com")
        .unwrap();
    assert_eq!(fe1.subject, "ocs-pool.contoso.com");
    assert_eq!(fe1.sans[0], "ocs-pool.contoso.com");
    for name in [
        "ocs-fe1.contoso.com",
        "sip.vlab.com",
        "lyncdiscoverinternal.nwtraders.com",
        "ocs-web.contoso.com",
    ] {
        assert!(fe1.sans.iter().any(|s| s == name), "{name}: {:?}", fe1.sans);
    }
    let edge = plans
        .iter()
        .find(|p| p.server == "ocs-edge2.contoso.com")
        .unwrap();
    assert_eq!(edge.subject, "ocs-access.contoso.com");
    for name in [
        "sip.contoso.com",
        "sip.vlab.com",
        "sip.nwtraders.com",
        "ocs-webconf.contoso.com",
    ] {
        assert!(
            edge.sans.iter().any(|s| s == name),
            "{name}: {:?}",
            edge.sans
        );
    }
    assert!(
        edge.sans.iter().any(|s| s == "ocs-av.contoso.com"),
        "the relay serves TURN over TLS under its A/V name"
    );
}
