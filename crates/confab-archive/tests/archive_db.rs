//! The archive database's behaviour, the same on SQLite and on a real PostgreSQL
//! (`CONFAB_TEST_DATABASE`, default `postgres://postgres@127.0.0.1:5432/test`, a fresh schema
//! per test; never skipped: without a server the PostgreSQL checks fail and say so).

use std::sync::atomic::{AtomicUsize, Ordering};

use confab_archive::{Call, Db, Direction, Message, Query, Record, Registration};

static SERIAL: AtomicUsize = AtomicUsize::new(0);

fn unique(prefix: &str) -> String {
    format!(
        "{prefix}_{}_{}",
        std::process::id(),
        SERIAL.fetch_add(1, Ordering::Relaxed)
    )
}

/// A database for one check, removed afterwards.
enum Fixture {
    Sqlite(std::path::PathBuf),
    Postgres { url: String, schema: String },
}

fn pg_base() -> String {
    std::env::var("CONFAB_TEST_DATABASE")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

fn pg_admin() -> ::postgres::Client {
    let url = pg_base();
    ::postgres::Client::connect(&url, ::postgres::NoTls).unwrap_or_else(|e| {
        panic!("no PostgreSQL answers at {url} ({e}): run `scripts/test`, which starts one, or set CONFAB_TEST_DATABASE")
    })
}

impl Fixture {
    fn sqlite() -> Self {
        let p = std::env::temp_dir().join(format!("{}.db", unique("confab_archive")));
        Self::Sqlite(p)
    }

    fn postgres() -> Self {
        let schema = unique("confab_archive");
        pg_admin()
            .batch_execute(&format!("CREATE SCHEMA {schema}"))
            .unwrap();
        let base = pg_base();
        let sep = if base.contains('?') { '&' } else { '?' };
        Self::Postgres {
            url: format!("{base}{sep}options=-c%20search_path%3D{schema}"),
            schema,
        }
    }

    fn open(&self) -> Db {
        match self {
            Self::Sqlite(p) => Db::open(p.to_str().unwrap()).unwrap(),
            Self::Postgres { url, .. } => Db::open(url).unwrap(),
        }
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        match self {
            Self::Sqlite(p) => {
                for suffix in ["", "-wal", "-shm"] {
                    let _ = std::fs::remove_file(format!("{}{suffix}", p.display()));
                }
            }
            Self::Postgres { schema, .. } => {
                let _ = pg_admin().batch_execute(&format!("DROP SCHEMA {schema} CASCADE"));
            }
        }
    }
}

fn message(n: i64, from: &str, to: &str, body: &[u8], keep_until: i64) -> Record {
    Record::Message(Message {
        id: format!("t-{n:06}"),
        at_ms: 1_000 * n,
        sender: from.into(),
        recipients: vec![to.into()],
        conversation: format!("pair:{from} {to}"),
        direction: Direction::Internal,
        content_type: "text/plain;charset=UTF-8".into(),
        body: body.to_vec(),
        server: "fe1".into(),
        keep_until,
    })
}

fn all() -> Query {
    Query::new(None, None, None, None, None).unwrap()
}

fn of(user: &str, with: Option<&str>, text: Option<&str>) -> Query {
    Query::new(Some(user), with, None, None, text).unwrap()
}

fn found(db: &mut Db, q: &Query) -> Vec<Message> {
    let mut out = vec![];
    db.messages(q, &mut |m| {
        out.push(m);
        true
    })
    .unwrap();
    out
}

fn stored_once_searched_by_party_date_and_words(f: &Fixture) {
    let mut db = f.open();
    let binary: Vec<u8> = (0..=255u8).collect();
    let records = vec![
        message(1, "alice@example.com", "bob@example.com", b"Hello Bob", 100),
        message(
            2,
            "bob@example.com",
            "alice@example.com",
            b"hello again alice",
            100,
        ),
        message(3, "alice@example.com", "carol@example.com", &binary, 100),
        message(
            4,
            "carol@example.com",
            "dave@example.com",
            "ça va? ☃".as_bytes(),
            100,
        ),
    ];
    db.insert(&records).unwrap();
    // a queue replayed after a crash: the same records again are kept once
    db.insert(&records[..2]).unwrap();
    let every = found(&mut db, &all());
    assert_eq!(every.len(), 4);
    assert_eq!(
        every[2].body, binary,
        "a binary body comes back byte for byte"
    );
    assert_eq!(every[3].body, "ça va? ☃".as_bytes());
    assert_eq!(
        found(&mut db, &of("alice@example.com", None, None)).len(),
        3
    );
    let with_bob = of("alice@example.com", Some("bob@example.com"), None);
    let ids: Vec<_> = found(&mut db, &with_bob)
        .into_iter()
        .map(|m| m.id)
        .collect();
    assert_eq!(ids, ["t-000001", "t-000002"]);
    let words = of("alice@example.com", None, Some("HELLO again"));
    assert_eq!(found(&mut db, &words).len(), 1);
    let mut dated = of("alice@example.com", None, None);
    dated.from_ms = 2_000;
    dated.to_ms = 3_000;
    assert_eq!(
        found(&mut db, &dated).len(),
        1,
        "from inclusive, to exclusive"
    );
}

fn purged_in_batches_except_what_is_on_hold(f: &Fixture) {
    let mut db = f.open();
    let mut records: Vec<Record> = (1..=25)
        .map(|n| message(n, "alice@example.com", "bob@example.com", b"old", 50))
        .collect();
    records.push(message(
        26,
        "carol@example.com",
        "dave@example.com",
        b"old",
        50,
    ));
    records.push(message(
        27,
        "alice@example.com",
        "bob@example.com",
        b"new",
        500,
    ));
    records.push(Record::Call(Call {
        id: "c-1".into(),
        call_id: "call-1".into(),
        caller: "carol@example.com".into(),
        callee: "erin@example.com".into(),
        start_ms: 1_000,
        answer_ms: Some(2_000),
        end_ms: 62_000,
        status: 200,
        reason: "OK".into(),
        ended_by: "caller".into(),
        route: None,
        trunk: None,
        servers: vec!["fe1".into()],
        keep_until: 50,
    }));
    records.push(Record::Registration(Registration {
        id: "r-1".into(),
        at_ms: 1_000,
        user: "alice@example.com".into(),
        event: "sign-in".into(),
        client: "baresip".into(),
        address: "127.0.0.1:5062".into(),
        server: "fe1".into(),
        keep_until: 50,
    }));
    db.insert(&records).unwrap();
    let holds = vec!["carol@example.com".to_owned()];
    let dry = db.purge(100, &holds, 10, true).unwrap();
    assert_eq!((dry.messages, dry.calls, dry.registrations), (25, 0, 1));
    assert_eq!(
        found(&mut db, &all()).len(),
        27,
        "a dry run deletes nothing"
    );
    let purged = db.purge(100, &holds, 10, false).unwrap();
    assert_eq!(
        (purged.messages, purged.calls, purged.registrations),
        (25, 0, 1)
    );
    let left: Vec<_> = found(&mut db, &all()).into_iter().map(|m| m.id).collect();
    assert_eq!(
        left,
        ["t-000026", "t-000027"],
        "carol's (on hold) and the unexpired one stay"
    );
    let mut calls = 0;
    db.calls(&all(), &mut |c| {
        calls += 1;
        assert_eq!(c.duration_s(), 60);
        true
    })
    .unwrap();
    assert_eq!(calls, 1, "carol's call is on hold too");
    // nothing of a purged message is left to find by party
    assert_eq!(found(&mut db, &of("bob@example.com", None, None)).len(), 1);
}

fn every_search_is_logged(f: &Fixture) {
    let mut db = f.open();
    db.log_access("root", "archive search", "user=alice@example.com", 3)
        .unwrap();
    let mut lines = vec![];
    db.access_log(&mut |_, who, action, filter, n| lines.push((who, action, filter, n)))
        .unwrap();
    assert_eq!(
        lines,
        vec![(
            "root".to_owned(),
            "archive search".to_owned(),
            "user=alice@example.com".to_owned(),
            3
        )]
    );
}

macro_rules! both {
    ($($check:ident),* $(,)?) => {
        mod sqlite {
            $( #[test] fn $check() { super::$check(&super::Fixture::sqlite()) } )*
        }
        mod postgres {
            $( #[test] fn $check() { super::$check(&super::Fixture::postgres()) } )*
        }
    };
}

both!(
    stored_once_searched_by_party_date_and_words,
    purged_in_batches_except_what_is_on_hold,
    every_search_is_logged,
);
