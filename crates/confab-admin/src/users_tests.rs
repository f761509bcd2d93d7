//! Users: pages, versions, rights, audit and bad input.
use super::*;
use crate::Role;

fn new(address: &str) -> NewUser {
    NewUser {
        address: address.into(),
        password: "pw".into(),
        pool: Some("pool1.example.com".into()),
    }
}

#[test]
fn pages_follow_each_other_without_gaps_or_repeats() {
    let s = crate::test_store();
    let root = Actor::console();
    for i in 0..25 {
        add(
            s.as_ref(),
            None,
            &root,
            &new(&format!("u{i:02}@example.com")),
        )
        .unwrap();
    }
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let f = UserFilter {
            after: after.clone(),
            limit: Some(10),
            ..Default::default()
        };
        let page = list(s.as_ref(), &root, &f).unwrap();
        seen.extend(page.items.iter().map(|u| u.address.clone()));
        match page.next {
            Some(n) => after = Some(n),
            None => break,
        }
    }
    assert_eq!(seen.len(), 25);
    assert!(seen.windows(2).all(|w| w[0] < w[1]));
    let f = UserFilter {
        q: Some("u1".into()),
        ..Default::default()
    };
    assert_eq!(list(s.as_ref(), &root, &f).unwrap().items.len(), 10);
    let f = UserFilter {
        limit: Some(0),
        ..Default::default()
    };
    assert_eq!(list(s.as_ref(), &root, &f).unwrap_err().kind, Kind::Invalid);
}

#[test]
fn an_edit_against_an_old_version_is_refused_and_changes_nothing() {
    let s = crate::test_store();
    let root = Actor::console();
    let v1 = add(s.as_ref(), None, &root, &new("alice@example.com")).unwrap();
    let off = UserChange {
        federation: Some(Switch::Off),
        ..Default::default()
    };
    let v2 = change(
        s.as_ref(),
        None,
        &root,
        "alice@example.com",
        &off,
        Some(&v1.etag()),
    )
    .unwrap();
    assert_ne!(v1.etag(), v2.etag());
    assert_eq!(v2.federation, Switch::Off);
    // the same change again: the same user (idempotent), the same version
    let again = change(s.as_ref(), None, &root, "alice@example.com", &off, None).unwrap();
    assert_eq!(again.etag(), v2.etag());
    let on = UserChange {
        remote_access: Some(Switch::On),
        ..Default::default()
    };
    let err = change(
        s.as_ref(),
        None,
        &root,
        "alice@example.com",
        &on,
        Some(&v1.etag()),
    )
    .unwrap_err();
    assert_eq!(err.kind, Kind::Stale);
    assert_eq!(get(s.as_ref(), &root, "alice@example.com").unwrap(), v2);
    let err = remove(s.as_ref(), &root, "alice@example.com", Some(&v1.etag())).unwrap_err();
    assert_eq!(err.kind, Kind::Stale);
    remove(s.as_ref(), &root, "alice@example.com", Some(&v2.etag())).unwrap();
    assert_eq!(
        get(s.as_ref(), &root, "alice@example.com")
            .unwrap_err()
            .kind,
        Kind::NotFound
    );
}

#[test]
fn roles_limit_what_each_may_do_and_every_change_is_audited() {
    let s = crate::test_store();
    let root = Actor::console();
    add(s.as_ref(), None, &root, &new("bob@example.com")).unwrap();
    let viewer = Actor {
        name: "viewer".into(),
        from: "127.0.0.1:5".into(),
        roles: vec![Role::ViewOnly],
    };
    assert!(get(s.as_ref(), &viewer, "bob@example.com").is_ok());
    let err = add(s.as_ref(), None, &viewer, &new("eve@example.com")).unwrap_err();
    assert_eq!(err.kind, Kind::Forbidden);
    assert!(
        err.detail.contains("administrator, user-administrator"),
        "{}",
        err.detail
    );
    assert_eq!(
        set_password(s.as_ref(), &viewer, "bob@example.com", "x")
            .unwrap_err()
            .kind,
        Kind::Forbidden
    );
    assert!(
        get(s.as_ref(), &root, "eve@example.com").is_err(),
        "nothing added"
    );
    set_password(s.as_ref(), &root, "bob@example.com", "new").unwrap();
    let log = audit::entries(s.as_ref(), &root, None).unwrap();
    let actions: Vec<&str> = log.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(actions, ["user.add", "user.password"]);
    assert!(
        log.iter().all(|e| !e.detail.contains("new")),
        "no password in the log"
    );
}

#[test]
fn bad_input_is_refused_with_what_to_fix() {
    let s = crate::test_store();
    let root = Actor::console();
    let mut u = new("not-an-address");
    assert_eq!(
        add(s.as_ref(), None, &root, &u).unwrap_err().kind,
        Kind::Invalid
    );
    u = new("carol@example.com");
    u.password.clear();
    assert_eq!(
        add(s.as_ref(), None, &root, &u).unwrap_err().kind,
        Kind::Invalid
    );
    let e = add(s.as_ref(), None, &root, &new("meet-1234567@example.com")).unwrap_err();
    assert_eq!(e.kind, Kind::Conflict);
    add(s.as_ref(), None, &root, &new("dave@example.com")).unwrap();
    let e = add(s.as_ref(), None, &root, &new("dave@EXAMPLE.com")).unwrap_err();
    assert_eq!(e.kind, Kind::Conflict, "{}", e.detail);
}
