//! One conformance suite for every [`Store`]: each check below runs against SQLite (a file in a
//! temporary directory) and against a real PostgreSQL (a fresh schema per test in the database
//! named by `CONFAB_TEST_DATABASE`, default `postgres://postgres@127.0.0.1:5432/test`).
//! PostgreSQL tests never skip: when no server answers they fail and say how to get one
//! (`scripts/test` starts a throwaway server where none runs).

use std::sync::atomic::{AtomicUsize, Ordering};

use confab_store::{
    Access, Binding, ContactEntry, PgStore, Privacy, SqliteStore, Store, StoreError, Telephony,
    Visibility,
};
use sip_auth::{ha1, Algorithm};

/// Where a check gets its stores: every `open` is another connection to the same database.
trait Fixture: Sync {
    fn open(&self) -> Box<dyn Store>;
}

static SERIAL: AtomicUsize = AtomicUsize::new(0);

fn unique(prefix: &str) -> String {
    format!(
        "{prefix}_{}_{}",
        std::process::id(),
        SERIAL.fetch_add(1, Ordering::Relaxed)
    )
}

struct Sqlite {
    dir: std::path::PathBuf,
}

impl Sqlite {
    fn new() -> Self {
        let dir = std::env::temp_dir().join(unique("confab_store"));
        std::fs::create_dir_all(&dir).unwrap();
        Self { dir }
    }
}

impl Fixture for Sqlite {
    fn open(&self) -> Box<dyn Store> {
        Box::new(SqliteStore::open(&self.dir.join("confab.db")).unwrap())
    }
}

impl Drop for Sqlite {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

struct Postgres {
    url: String,
    schema: String,
}

impl Postgres {
    fn base_url() -> String {
        std::env::var("CONFAB_TEST_DATABASE")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
    }

    fn admin() -> ::postgres::Client {
        let url = Self::base_url();
        ::postgres::Client::connect(&url, ::postgres::NoTls).unwrap_or_else(|e| {
            panic!(
                "no PostgreSQL answers at {url} ({e}): run `scripts/test`, which starts one, \
                 or set CONFAB_TEST_DATABASE to a database this test may create schemas in"
            )
        })
    }

    fn new() -> Self {
        let schema = unique("confab_test");
        Self::admin()
            .batch_execute(&format!("CREATE SCHEMA {schema}"))
            .unwrap();
        let base = Self::base_url();
        let sep = if base.contains('?') { '&' } else { '?' };
        Self {
            url: format!("{base}{sep}options=-c%20search_path%3D{schema}"),
            schema,
        }
    }
}

impl Fixture for Postgres {
    fn open(&self) -> Box<dyn Store> {
        Box::new(PgStore::open(&self.url).unwrap())
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = Self::admin().batch_execute(&format!("DROP SCHEMA {} CASCADE", self.schema));
    }
}

/// Runs every listed check against both stores.
macro_rules! conformance {
    ($($check:ident),* $(,)?) => {
        mod sqlite {
            $( #[test] fn $check() { super::$check(&super::Sqlite::new()) } )*
        }
        mod postgres {
            $( #[test] fn $check() { super::$check(&super::Postgres::new()) } )*
        }
    };
}

conformance!(
    users_keep_hashes_never_passwords,
    importing_users_is_all_or_nothing_and_keeps_existing_passwords,
    bindings_round_trip_and_expire,
    bindings_saved_in_a_batch_insert_and_update,
    contact_lists_groups_and_privacy_are_kept_and_logged,
    removing_a_user_removes_everything_of_it,
    soft_state_expires_and_keeps_its_order,
    data_survives_reopening,
    another_connection_sees_every_change,
    users_have_a_home_pool_and_move_without_leaving_anything_behind,
    one_users_bindings_and_the_shared_secret,
    servers_opening_a_new_database_at_once_all_start,
    external_access_is_kept_and_logged,
    a_line_uri_belongs_to_one_user_and_finds_its_owner,
);

fn a_line_uri_belongs_to_one_user_and_finds_its_owner(f: &dyn Fixture) {
    let s = f.open();
    s.add_user("alice@example.com", "pw", None).unwrap();
    s.add_user("bob@example.com", "pw", None).unwrap();
    let voice = |s: &dyn Store, aor: &str| s.user(aor).unwrap().unwrap().voice;
    assert_eq!(voice(s.as_ref(), "alice@example.com"), Telephony::default());
    let (rev, _) = s.changes_since(0).unwrap();
    let alice = Telephony {
        line_uri: Some("tel:+14255550101".into()),
        enabled: true,
        voice_policy: Some("Executives".into()),
        dial_plan: None,
        forwarding: Some("noanswer=tel:+14255550100,noanswer-after=15".into()),
    };
    s.set_telephony("alice@Example.com", &alice).unwrap();
    assert_eq!(voice(s.as_ref(), "alice@example.com"), alice);
    assert_eq!(
        s.number_owner("tel:+14255550101").unwrap().as_deref(),
        Some("alice@example.com")
    );
    assert_eq!(s.number_owner("tel:+14255550102").unwrap(), None);
    assert_eq!(s.changes_since(rev).unwrap().1, ["alice@example.com"]);
    // the number is alice's: refused for bob, naming her; setting it again for her is fine
    let taken = s.set_telephony("bob@example.com", &alice).unwrap_err();
    assert_eq!(
        taken.to_string(),
        "tel:+14255550101 is already the Line URI of alice@example.com"
    );
    assert_eq!(voice(s.as_ref(), "bob@example.com"), Telephony::default());
    s.set_telephony("alice@example.com", &alice).unwrap();
    // released, it is bob's to take
    s.set_telephony("alice@example.com", &Telephony::default())
        .unwrap();
    s.set_telephony("bob@example.com", &alice).unwrap();
    assert_eq!(
        s.number_owner("tel:+14255550101").unwrap().as_deref(),
        Some("bob@example.com")
    );
    assert!(matches!(
        s.set_telephony("nobody@example.com", &Telephony::default()),
        Err(StoreError::NoSuchUser(_))
    ));
}

fn external_access_is_kept_and_logged(f: &dyn Fixture) {
    let s = f.open();
    s.add_user("alice@example.com", "pw", None).unwrap();
    let access = |s: &dyn Store| s.user("alice@example.com").unwrap().unwrap().access;
    assert_eq!(
        access(s.as_ref()),
        Access::default(),
        "a new user follows the defaults"
    );
    let (rev, _) = s.changes_since(0).unwrap();
    s.set_access(
        "alice@example.com",
        Access {
            remote: Some(false),
            federation: None,
        },
    )
    .unwrap();
    assert_eq!(access(s.as_ref()).remote, Some(false));
    s.set_access(
        "alice@Example.com",
        Access {
            remote: None,
            federation: Some(true),
        },
    )
    .unwrap();
    assert_eq!(
        access(s.as_ref()),
        Access {
            remote: None,
            federation: Some(true)
        },
        "None is back to the default"
    );
    assert_eq!(
        s.changes_since(rev).unwrap().1,
        ["alice@example.com"],
        "running servers hear of it"
    );
    assert!(matches!(
        s.set_access("nobody@example.com", Access::default()),
        Err(StoreError::NoSuchUser(_))
    ));
}

fn binding(key: &str, expires_at: i64) -> Binding {
    Binding {
        aor: "alice@example.com".into(),
        key: key.into(),
        contact: format!("sip:alice@{key}"),
        params: ";q=0.5".into(),
        expires_at,
        call_id: "c".into(),
        cseq: u32::MAX,
        path: vec!["<sip:edge;lr>".into(), "<sip:dir;lr>".into()],
        transport: "udp".into(),
        source: "127.0.0.1:5062".into(),
        outbound: true,
        server: "127.0.0.12:5060".into(),
    }
}

fn users_keep_hashes_never_passwords(f: &dyn Fixture) {
    let s = f.open();
    s.add_user("alice@Example.COM", "s3cret", None).unwrap();
    let u = s.user("alice@example.com").unwrap().unwrap();
    assert_eq!(u.realm, "example.com");
    assert_eq!(
        u.ha1_md5,
        ha1(Algorithm::Md5, "alice", "example.com", "s3cret")
    );
    assert_eq!(
        u.ha1_sha256,
        ha1(Algorithm::Sha256, "alice", "example.com", "s3cret")
    );
    assert!(!u.ha1_md5.contains("s3cret") && !u.ha1_sha256.contains("s3cret"));
    assert!(matches!(
        s.add_user("alice@example.com", "x", None),
        Err(StoreError::UserExists(_))
    ));
    let (rev, _) = s.changes_since(0).unwrap();
    s.set_password("alice@example.com", "new").unwrap();
    assert_eq!(
        s.changes_since(rev).unwrap().1,
        ["alice@example.com"],
        "a password change is logged (servers drop the hashes they keep)"
    );
    assert_ne!(
        s.user("alice@example.com").unwrap().unwrap().ha1_md5,
        u.ha1_md5
    );
    assert!(matches!(
        s.set_password("nobody@example.com", "x"),
        Err(StoreError::NoSuchUser(_))
    ));
    s.add_user("bob@example.com", "b", None).unwrap();
    assert_eq!(
        s.list_users().unwrap(),
        ["alice@example.com", "bob@example.com"]
    );
    s.remove_user("alice@example.com").unwrap();
    assert!(s.user("alice@example.com").unwrap().is_none());
    assert!(matches!(
        s.remove_user("alice@example.com"),
        Err(StoreError::NoSuchUser(_))
    ));
    assert!(matches!(
        s.add_user("nodomain", "x", None),
        Err(StoreError::BadAddress(_))
    ));
}

fn importing_users_is_all_or_nothing_and_keeps_existing_passwords(f: &dyn Fixture) {
    let s = f.open();
    s.add_user("alice@example.com", "s3cret", None).unwrap();
    let u = s.user("alice@example.com").unwrap().unwrap();
    let batch = [("alice@example.com", "other"), ("bob@example.com", "b0b")]
        .map(|(a, p)| (a.to_owned(), p.to_owned()));
    assert_eq!(
        s.import_users(&batch, None).unwrap(),
        1,
        "alice existed already"
    );
    let alice = s.user("alice@example.com").unwrap().unwrap();
    assert_eq!(
        alice.ha1_md5, u.ha1_md5,
        "import keeps an existing password"
    );
    assert!(s.user("bob@example.com").unwrap().is_some());
    let bad =
        [("carol@example.com", "c"), ("no-domain", "x")].map(|(a, p)| (a.to_owned(), p.to_owned()));
    assert!(s.import_users(&bad, None).is_err());
    assert!(
        s.user("carol@example.com").unwrap().is_none(),
        "all or none"
    );
}

fn bindings_round_trip_and_expire(f: &dyn Fixture) {
    let s = f.open();
    s.save_binding(&binding("h1", 100)).unwrap();
    s.save_binding(&binding("h2", 200)).unwrap();
    assert_eq!(s.bindings(50, None).unwrap().len(), 2);
    assert_eq!(s.bindings(150, None).unwrap(), vec![binding("h2", 200)]);
    let mut refreshed = binding("h2", 300);
    refreshed.cseq = 7;
    refreshed.path.clear();
    refreshed.outbound = false;
    s.save_binding(&refreshed).unwrap();
    assert_eq!(
        s.bindings(150, None).unwrap(),
        vec![refreshed],
        "replaced, not added"
    );
    assert_eq!(s.purge_expired(150).unwrap(), 1);
    s.remove_binding("alice@example.com", "h2").unwrap();
    assert!(s.bindings(0, None).unwrap().is_empty());
}

fn bindings_saved_in_a_batch_insert_and_update(f: &dyn Fixture) {
    let s = f.open();
    s.save_binding(&binding("h1", 100)).unwrap();
    let mut refreshed = binding("h1", 500);
    refreshed.cseq = 9;
    s.save_bindings(&[refreshed.clone(), binding("h2", 400)])
        .unwrap();
    let mut got = s.bindings(0, None).unwrap();
    got.sort_by(|a, b| a.key.cmp(&b.key));
    assert_eq!(got, vec![refreshed, binding("h2", 400)]);
    s.save_bindings(&[]).unwrap();
    assert_eq!(
        s.bindings(0, None).unwrap().len(),
        2,
        "an empty batch changes nothing"
    );
}

fn contact_lists_groups_and_privacy_are_kept_and_logged(f: &dyn Fixture) {
    let s = f.open();
    let (rev0, _) = s.changes_since(0).unwrap();
    s.add_contact("alice@example.com", "bob@example.com", None)
        .unwrap();
    s.add_contact("alice@example.com", "carol@example.com", Some("Team"))
        .unwrap();
    s.add_contact("alice@example.com", "bob@example.com", Some("Friends"))
        .unwrap();
    s.add_contact("alice@example.com", "bob@example.com", Some("Team"))
        .unwrap();
    s.add_contact("alice@example.com", "bob@example.com", None)
        .unwrap();
    let list = s.contacts("alice@example.com").unwrap();
    assert_eq!(
        list,
        vec![
            ContactEntry {
                aor: "carol@example.com".into(),
                groups: vec!["Team".into()]
            },
            ContactEntry {
                aor: "bob@example.com".into(),
                groups: vec!["Friends".into(), "Team".into()]
            },
        ]
    );
    assert_eq!(s.groups("alice@example.com").unwrap(), ["Friends", "Team"]);
    assert!(s.remove_group("alice@example.com", "Team").unwrap());
    assert!(!s.remove_group("alice@example.com", "Team").unwrap());
    let list = s.contacts("alice@example.com").unwrap();
    assert_eq!(list.len(), 2, "{list:?}");
    assert!(list
        .iter()
        .any(|c| c.aor == "carol@example.com" && c.groups.is_empty()));
    assert!(matches!(
        s.add_contact("alice@example.com", "alice@example.com", None),
        Err(StoreError::Invalid(_))
    ));
    assert!(matches!(
        s.add_group("alice@example.com", " "),
        Err(StoreError::Invalid(_))
    ));
    assert!(s
        .remove_contact("alice@example.com", "bob@example.com")
        .unwrap());
    assert!(!s
        .remove_contact("alice@example.com", "bob@example.com")
        .unwrap());

    assert_eq!(s.privacy("bob@example.com").unwrap(), Privacy::default());
    s.set_visibility("bob@example.com", Visibility::Contacts)
        .unwrap();
    s.set_blocked("bob@example.com", "mallory@example.com", true)
        .unwrap();
    s.set_blocked("bob@example.com", "eve@example.com", true)
        .unwrap();
    let p = s.privacy("bob@example.com").unwrap();
    assert_eq!(p.visibility, Visibility::Contacts);
    assert_eq!(p.blocked, ["eve@example.com", "mallory@example.com"]);
    s.set_blocked("bob@example.com", "mallory@example.com", false)
        .unwrap();
    s.set_visibility("bob@example.com", Visibility::Everyone)
        .unwrap();
    let p = s.privacy("bob@example.com").unwrap();
    assert_eq!(p.blocked, ["eve@example.com"]);
    assert_eq!(p.visibility, Visibility::Everyone);

    let (rev, changed) = s.changes_since(rev0).unwrap();
    assert!(rev > rev0);
    assert_eq!(changed, ["alice@example.com", "bob@example.com"]);
    assert_eq!(s.changes_since(rev).unwrap(), (rev, Vec::new()));
}

fn removing_a_user_removes_everything_of_it(f: &dyn Fixture) {
    let s = f.open();
    s.add_user("alice@example.com", "pw", None).unwrap();
    s.add_contact("alice@example.com", "bob@example.com", Some("G"))
        .unwrap();
    s.set_blocked("alice@example.com", "eve@example.com", true)
        .unwrap();
    s.set_visibility("alice@example.com", Visibility::Contacts)
        .unwrap();
    s.save_state("pub", "e1", "alice@example.com", i64::MAX, "{}")
        .unwrap();
    s.save_binding(&binding("h1", i64::MAX)).unwrap();
    s.remove_user("alice@example.com").unwrap();
    assert!(s.contacts("alice@example.com").unwrap().is_empty());
    assert!(s.groups("alice@example.com").unwrap().is_empty());
    assert_eq!(s.privacy("alice@example.com").unwrap(), Privacy::default());
    assert!(s.states("pub", 0, None).unwrap().is_empty());
    assert!(s.bindings(0, None).unwrap().is_empty());
}

fn soft_state_expires_and_keeps_its_order(f: &dyn Fixture) {
    let s = f.open();
    s.save_state("sub", "1", "a@example.com", 100, "one")
        .unwrap();
    s.save_state("sub", "2", "a@example.com", 200, "two")
        .unwrap();
    s.save_state("sub", "3", "a@example.com", 200, "three")
        .unwrap();
    s.save_state("sub", "2", "a@example.com", 300, "two again")
        .unwrap();
    s.save_state("pub", "x", "a@example.com", 200, "p").unwrap();
    assert_eq!(
        s.states("sub", 150, None).unwrap(),
        [
            ("3".into(), "three".into()),
            ("2".into(), "two again".into())
        ],
        "a refreshed entry comes after older ones"
    );
    s.purge_expired(150).unwrap();
    assert_eq!(s.states("sub", 0, None).unwrap().len(), 2);
    s.remove_state("sub", "2").unwrap();
    s.remove_state("sub", "3").unwrap();
    assert!(s.states("sub", 0, None).unwrap().is_empty());
    assert_eq!(s.states("pub", 0, None).unwrap().len(), 1);
    s.save_state("pub", "y", "b@example.com", 200, "q").unwrap();
    assert_eq!(
        s.states("pub", 0, Some("b@example.com")).unwrap(),
        [("y".into(), "q".into())],
        "one user's"
    );
    let (rev, _) = s.changes_since(0).unwrap();
    s.note_change("b@example.com").unwrap();
    assert_eq!(s.changes_since(rev).unwrap().1, ["b@example.com"]);
}

fn data_survives_reopening(f: &dyn Fixture) {
    {
        let s = f.open();
        s.add_user("bob@example.com", "pw", None).unwrap();
        s.save_binding(&binding("h1", i64::MAX)).unwrap();
        s.add_contact("bob@example.com", "alice@example.com", Some("G"))
            .unwrap();
    }
    let s = f.open();
    assert!(s.user("bob@example.com").unwrap().is_some());
    assert_eq!(s.bindings(0, None).unwrap(), [binding("h1", i64::MAX)]);
    assert_eq!(s.groups("bob@example.com").unwrap(), ["G"]);
}

/// Servers of a pool start together, and `confab user import` may run beside a starting
/// `confab up`: every one of them opens the new database; one migrates it, the others wait.
fn servers_opening_a_new_database_at_once_all_start(f: &dyn Fixture) {
    let stores: Vec<Box<dyn Store>> = std::thread::scope(|s| {
        let opening: Vec<_> = (0..4).map(|_| s.spawn(|| f.open())).collect();
        opening.into_iter().map(|h| h.join().unwrap()).collect()
    });
    stores[0].add_user("erin@example.com", "pw", None).unwrap();
    assert!(stores[3].user("erin@example.com").unwrap().is_some());
}

/// What servers sharing one database rely on: a write through one connection is visible to
/// another at once, and shows in its change log.
fn another_connection_sees_every_change(f: &dyn Fixture) {
    let a = f.open();
    let b = f.open();
    let (rev0, _) = b.changes_since(0).unwrap();
    a.add_user("carol@example.com", "pw", None).unwrap();
    a.add_contact("dave@example.com", "carol@example.com", None)
        .unwrap();
    a.save_binding(&binding("h9", i64::MAX)).unwrap();
    assert!(b.user("carol@example.com").unwrap().is_some());
    assert_eq!(b.bindings(0, None).unwrap().len(), 1);
    let (rev, changed) = b.changes_since(rev0).unwrap();
    assert!(rev > rev0);
    assert_eq!(changed, ["carol@example.com", "dave@example.com"]);
    b.remove_user("carol@example.com").unwrap();
    assert!(a.user("carol@example.com").unwrap().is_none());
}

fn users_have_a_home_pool_and_move_without_leaving_anything_behind(f: &dyn Fixture) {
    let s = f.open();
    s.add_user("alice@example.com", "pw", Some("pool-a.example.com"))
        .unwrap();
    s.add_user("bob@example.com", "pw", None).unwrap();
    let batch = [("carol@example.com".to_owned(), "pw".to_owned())];
    s.import_users(&batch, Some("pool-b.example.com")).unwrap();
    let pool = |aor: &str| s.user(aor).unwrap().unwrap().pool;
    assert_eq!(
        pool("alice@example.com").as_deref(),
        Some("pool-a.example.com")
    );
    assert_eq!(pool("bob@example.com"), None, "no home pool yet");
    assert_eq!(
        pool("carol@example.com").as_deref(),
        Some("pool-b.example.com")
    );

    assert_eq!(s.home_unhomed("pool-a.example.com").unwrap(), 1);
    assert_eq!(
        s.users_in_pool("pool-a.example.com").unwrap(),
        ["alice@example.com", "bob@example.com"]
    );
    assert_eq!(
        pool("bob@example.com").as_deref(),
        Some("pool-a.example.com")
    );

    // alice, signed in and publishing on pool A, moves to pool B
    s.save_binding(&binding("h1", i64::MAX)).unwrap();
    s.save_state("pub", "e1", "alice@example.com", i64::MAX, "{}")
        .unwrap();
    s.add_contact("alice@example.com", "bob@example.com", Some("Team"))
        .unwrap();
    s.set_blocked("alice@example.com", "eve@example.com", true)
        .unwrap();
    let (rev, _) = s.changes_since(0).unwrap();
    s.set_home_pool("alice@example.com", "pool-b.example.com")
        .unwrap();
    assert_eq!(
        pool("alice@example.com").as_deref(),
        Some("pool-b.example.com")
    );
    assert!(
        s.bindings(0, None).unwrap().is_empty(),
        "registrations were at pool A"
    );
    assert!(
        s.states("pub", 0, None).unwrap().is_empty(),
        "publications too"
    );
    assert_eq!(
        s.contacts("alice@example.com").unwrap()[0].groups,
        ["Team"],
        "the contact list moves with her"
    );
    assert_eq!(
        s.privacy("alice@example.com").unwrap().blocked,
        ["eve@example.com"]
    );
    assert_eq!(
        s.changes_since(rev).unwrap().1,
        ["alice@example.com"],
        "servers hear of the move"
    );
    assert!(matches!(
        s.set_home_pool("nobody@example.com", "pool-b.example.com"),
        Err(StoreError::NoSuchUser(_))
    ));
}

fn one_users_bindings_and_the_shared_secret(f: &dyn Fixture) {
    let a = f.open();
    let b = f.open();
    a.save_binding(&binding("h1", i64::MAX)).unwrap();
    let mut bob = binding("h2", i64::MAX);
    bob.aor = "bob@example.com".into();
    bob.server = "127.0.0.13:5060".into();
    b.save_binding(&bob).unwrap();
    assert_eq!(a.bindings(0, Some("bob@example.com")).unwrap(), [bob]);
    assert_eq!(a.bindings(0, None).unwrap().len(), 2);
    assert!(a.bindings(0, Some("carol@example.com")).unwrap().is_empty());

    let secret = a.deployment_secret().unwrap();
    assert_ne!(secret, [0; 32]);
    assert_eq!(
        b.deployment_secret().unwrap(),
        secret,
        "every server gets the same"
    );
    drop((a, b));
    let s = f.open();
    assert_eq!(s.deployment_secret().unwrap(), secret, "and keeps it");

    s.set_setting("server:10.0.0.1:5060", Some("pool-a"))
        .unwrap();
    s.set_setting("server:10.0.0.2:5060", Some("pool-a"))
        .unwrap();
    s.set_setting("server:10.0.0.2:5060", Some("pool-b"))
        .unwrap();
    s.set_setting("drain:10.0.0.1:5060", Some("1")).unwrap();
    assert_eq!(
        s.settings("server:").unwrap(),
        [
            ("server:10.0.0.1:5060".into(), "pool-a".into()),
            ("server:10.0.0.2:5060".into(), "pool-b".into())
        ]
    );
    s.set_setting("drain:10.0.0.1:5060", None).unwrap();
    assert!(s.settings("drain:").unwrap().is_empty());
}
