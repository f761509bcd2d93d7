use confab_store::{SqliteStore, Store, Visibility};

use super::*;

const T0: i64 = 1_000_000;

fn store() -> SqliteStore {
    let s = SqliteStore::in_memory().unwrap();
    for u in ["alice", "bob", "carol", "mallory"] {
        s.add_user(&format!("{u}@example.com"), "pw", None).unwrap();
    }
    s
}

fn agent(s: &dyn Store) -> Presence {
    let mut p = Presence::new(PresenceConfig::default(), 42);
    p.restore(s, T0, HashMap::new());
    p
}

fn pidf_doc(activity: &str, basic: &str, note: &str) -> String {
    format!(
        r#"<?xml version="1.0"?><presence xmlns="urn:ietf:params:xml:ns:pidf" xmlns:dm="urn:ietf:params:xml:ns:pidf:data-model" xmlns:rpid="urn:ietf:params:xml:ns:pidf:rpid" entity="sip:x@example.com"><tuple id="t"><status><basic>{basic}</basic></status><note>{note}</note></tuple><dm:person id="p"><rpid:activities>{activity}</rpid:activities></dm:person></presence>"#
    )
}

fn publish(
    p: &mut Presence,
    s: &dyn Store,
    aor: &str,
    etag: Option<&str>,
    body: &str,
    device: Option<&str>,
) -> Result<(String, u32), Refusal> {
    p.publish(
        s,
        T0,
        aor,
        PublishRequest {
            etag,
            expires: Some(600),
            content_type: Some("application/pidf+xml"),
            body: body.as_bytes(),
            device: device.map(str::to_owned),
        },
    )
}

fn dialog(n: u32) -> Dialog {
    Dialog {
        call_id: format!("call-{n}"),
        local_tag: format!("ours-{n}"),
        remote_tag: format!("theirs-{n}"),
        local_uri: "sip:res@example.com".into(),
        remote_uri: "sip:watcher@example.com".into(),
        remote_target: "sip:watcher@127.0.0.1:5070".into(),
        route_set: Vec::new(),
        cseq: 0,
        remote_cseq: 1,
        event: "presence".into(),
        transport: "udp".into(),
        source: "127.0.0.1:5070".into(),
        flow: None,
    }
}

fn drain(p: &mut Presence) -> Vec<Notice> {
    std::iter::from_fn(|| p.poll_notice()).collect()
}

/// The availability a PIDF body (or the only PIDF part of a list body) states.
fn shown(body: &str) -> Availability {
    let start = body
        .find("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\r\n<presence")
        .unwrap();
    let end = body[start..].find("</presence>").unwrap() + start + "</presence>".len();
    pidf::parse(&body.as_bytes()[start..end])
        .unwrap()
        .availability()
}

#[test]
fn devices_merge_into_one_availability_by_precedence_keeping_each_note() {
    let s = store();
    let mut p = agent(&s);
    let bob = "bob@example.com";
    p.subscribe(
        &s,
        T0,
        "alice@example.com",
        Resource::User(bob.into()),
        dialog(1),
        None,
    )
    .unwrap();
    assert_eq!(
        shown(&drain(&mut p)[0].body),
        Availability::Offline,
        "nothing: Offline"
    );

    p.devices_changed(&s, T0, bob, vec!["phone".into(), "laptop".into()]);
    assert_eq!(shown(&drain(&mut p)[0].body), Availability::Available);

    publish(
        &mut p,
        &s,
        bob,
        None,
        &pidf_doc("<rpid:away/>", "open", "gone fishing"),
        Some("phone"),
    )
    .unwrap();
    // the laptop publishes nothing, so it still counts as Available (above Away); the phone's
    // tuple and note are shown
    let n = drain(&mut p);
    assert_eq!(shown(&n[0].body), Availability::Available);
    assert!(n[0].body.contains("gone fishing"));
    p.devices_changed(&s, T0, bob, vec!["phone".into(), "laptop".into()]);
    assert!(drain(&mut p).is_empty(), "no visible change, no NOTIFY");
    publish(
        &mut p,
        &s,
        bob,
        None,
        &pidf_doc("<rpid:busy/>", "open", "writing"),
        Some("laptop"),
    )
    .unwrap();
    let n = drain(&mut p);
    assert_eq!(shown(&n[0].body), Availability::Busy);
    assert!(
        n[0].body.contains("gone fishing") && n[0].body.contains("writing"),
        "{}",
        n[0].body
    );

    p.call_started(&s, T0, "c1", vec![bob.into()]);
    assert_eq!(shown(&drain(&mut p)[0].body), Availability::InACall);
    p.call_ended(&s, T0, "c1");
    assert_eq!(shown(&drain(&mut p)[0].body), Availability::Busy);

    // the laptop's registration ends: its publication drops out with it
    p.devices_changed(&s, T0, bob, vec!["phone".into()]);
    let n = drain(&mut p);
    assert_eq!(shown(&n[0].body), Availability::Away);
    assert!(!n[0].body.contains("writing"));
    assert_eq!(p.stats().publications, 1);

    // Do Not Disturb beats everything
    publish(
        &mut p,
        &s,
        bob,
        None,
        &pidf_doc("<rpid:other>Do Not Disturb</rpid:other>", "open", ""),
        None,
    )
    .unwrap();
    p.call_started(&s, T0, "c2", vec![bob.into()]);
    let n = drain(&mut p);
    assert_eq!(shown(&n.last().unwrap().body), Availability::DoNotDisturb);
}

#[test]
fn publication_lifecycle_follows_rfc_3903() {
    let s = store();
    let mut p = agent(&s);
    let bob = "bob@example.com";
    let (etag, granted) = publish(&mut p, &s, bob, None, &pidf_doc("", "open", ""), None).unwrap();
    assert_eq!(granted, 600);
    // refresh without a body keeps the document and gives a new tag
    let (etag2, _) = p
        .publish(
            &s,
            T0,
            bob,
            PublishRequest {
                etag: Some(&etag),
                expires: Some(600),
                content_type: None,
                body: b"",
                device: None,
            },
        )
        .unwrap();
    assert_ne!(etag, etag2);
    // the old tag is no longer valid
    let e = publish(
        &mut p,
        &s,
        bob,
        Some(&etag),
        &pidf_doc("", "open", ""),
        None,
    )
    .unwrap_err();
    assert_eq!(e.0, 412);
    // modify
    let (etag3, _) = publish(
        &mut p,
        &s,
        bob,
        Some(&etag2),
        &pidf_doc("<rpid:busy/>", "open", ""),
        None,
    )
    .unwrap();
    assert_eq!(p.full_view(bob).availability, Availability::Busy);
    // remove
    let r = p.publish(
        &s,
        T0,
        bob,
        PublishRequest {
            etag: Some(&etag3),
            expires: Some(0),
            content_type: None,
            body: b"",
            device: None,
        },
    );
    assert_eq!(r.unwrap().1, 0);
    assert_eq!(p.full_view(bob).availability, Availability::Offline);
    assert!(s.states("pub", T0, None).unwrap().is_empty());
}

#[test]
fn bad_publications_get_precise_refusals() {
    let s = store();
    let mut p = Presence::new(
        PresenceConfig {
            max_body: 300,
            ..PresenceConfig::default()
        },
        1,
    );
    let bob = "bob@example.com";
    let big = "x".repeat(301);
    /// Content-Type, Expires, body, expected status, words in the reason.
    type Case<'a> = (Option<&'a str>, Option<u32>, &'a [u8], u16, &'a str);
    let cases: Vec<Case<'_>> = vec![
        (
            Some("application/pidf+xml"),
            Some(600),
            big.as_bytes(),
            413,
            "over 300 bytes",
        ),
        (
            Some("text/plain"),
            Some(600),
            b"hi",
            415,
            "not application/pidf+xml",
        ),
        (
            Some("application/pidf+xml"),
            Some(600),
            b"<presence",
            400,
            "well-formed",
        ),
        (
            Some("application/pidf+xml"),
            Some(600),
            b"",
            400,
            "needs a presence document",
        ),
        (
            Some("application/pidf+xml"),
            Some(10),
            b"<x/>",
            423,
            "Too Brief",
        ),
    ];
    for (ct, expires, body, code, why) in cases {
        let e = p
            .publish(
                &s,
                T0,
                bob,
                PublishRequest {
                    etag: None,
                    expires,
                    content_type: ct,
                    body,
                    device: None,
                },
            )
            .unwrap_err();
        assert_eq!(e.0, code, "{why}: {e:?}");
        assert!(e.1.contains(why), "{why}: {e:?}");
    }
    assert!(p.stats().publications == 0);
}

#[test]
fn subscription_gets_current_state_changes_and_a_final_notify() {
    let s = store();
    let mut p = agent(&s);
    let bob = "bob@example.com";
    let (_, granted) = p
        .subscribe(
            &s,
            T0,
            "alice@example.com",
            Resource::User(bob.into()),
            dialog(1),
            Some(120),
        )
        .unwrap();
    assert_eq!(granted, 120);
    let n = drain(&mut p);
    assert_eq!(n.len(), 1);
    assert_eq!(n[0].state, SubState::Active { expires: 120 });
    assert_eq!(n[0].dialog.cseq, 1);
    publish(
        &mut p,
        &s,
        bob,
        None,
        &pidf_doc("<rpid:busy/>", "open", ""),
        None,
    )
    .unwrap();
    let n = drain(&mut p);
    assert_eq!((n.len(), n[0].dialog.cseq), (1, 2));
    // refresh, then unsubscribe
    let key = dialog_key("call-1", "ours-1", "theirs-1");
    assert_eq!(
        p.resubscribe(&s, T0 + 10, &key, 2, Some(300), None)
            .unwrap(),
        300
    );
    assert_eq!(drain(&mut p)[0].state, SubState::Active { expires: 300 });
    assert_eq!(
        p.resubscribe(&s, T0 + 20, &key, 2, Some(300), None)
            .unwrap_err()
            .0,
        500,
        "old CSeq"
    );
    assert_eq!(
        p.resubscribe(&s, T0 + 20, &key, 3, Some(0), None).unwrap(),
        0
    );
    let n = drain(&mut p);
    assert_eq!(n[0].state, SubState::Terminated("timeout"));
    assert_eq!(
        shown(&n[0].body),
        Availability::Busy,
        "final NOTIFY carries the state"
    );
    assert_eq!(
        p.resubscribe(&s, T0 + 30, &key, 4, Some(300), None)
            .unwrap_err()
            .0,
        481
    );
    assert_eq!(p.stats().subscriptions, 0);
    assert!(s.states("sub", T0, None).unwrap().is_empty());
}

#[test]
fn subscriptions_and_publications_expire_by_their_own_timers() {
    let s = store();
    let mut p = agent(&s);
    let bob = "bob@example.com";
    p.subscribe(
        &s,
        T0,
        "alice@example.com",
        Resource::User(bob.into()),
        dialog(1),
        Some(100),
    )
    .unwrap();
    publish(
        &mut p,
        &s,
        bob,
        None,
        &pidf_doc("<rpid:busy/>", "open", ""),
        None,
    )
    .unwrap();
    drain(&mut p);
    p.housekeeping(&s, T0 + 99);
    assert!(drain(&mut p).is_empty());
    p.housekeeping(&s, T0 + 100);
    let n = drain(&mut p);
    assert_eq!(n.last().unwrap().state, SubState::Terminated("timeout"));
    p.housekeeping(&s, T0 + 600);
    assert_eq!(p.stats().publications, 0);
    assert_eq!(p.full_view(bob).availability, Availability::Offline);
}

#[test]
fn blocked_watchers_see_offline_and_policy_changes_reject_politely() {
    let s = store();
    let mut p = agent(&s);
    let bob = "bob@example.com";
    publish(
        &mut p,
        &s,
        bob,
        None,
        &pidf_doc("<rpid:busy/>", "open", "secret plans"),
        None,
    )
    .unwrap();
    s.set_blocked(bob, "mallory@example.com", true).unwrap();
    p.subscribe(
        &s,
        T0,
        "mallory@example.com",
        Resource::User(bob.into()),
        dialog(1),
        None,
    )
    .unwrap();
    let n = drain(&mut p);
    assert_eq!(shown(&n[0].body), Availability::Offline);
    assert!(!n[0].body.contains("secret plans"));
    assert_eq!(
        n[0].state,
        SubState::Active { expires: 3600 },
        "no error: polite blocking"
    );

    // alice watches; bob then blocks her: she sees Offline, and her subscription stays
    p.subscribe(
        &s,
        T0,
        "alice@example.com",
        Resource::User(bob.into()),
        dialog(2),
        None,
    )
    .unwrap();
    assert_eq!(shown(&drain(&mut p)[0].body), Availability::Busy);
    s.set_blocked(bob, "alice@example.com", true).unwrap();
    p.housekeeping(&s, T0 + 1);
    let n = drain(&mut p);
    assert!(
        n.iter().all(|n| shown(&n.body) == Availability::Offline),
        "{n:?}"
    );
    s.set_blocked(bob, "alice@example.com", false).unwrap();
    p.housekeeping(&s, T0 + 2);
    let n: Vec<Notice> = drain(&mut p)
        .into_iter()
        .filter(|n| n.dialog.call_id == "call-2")
        .collect();
    assert_eq!(shown(&n[0].body), Availability::Busy);

    // carol watches; bob shows presence to contacts only (alice is one, carol is not)
    s.add_contact(bob, "alice@example.com", None).unwrap();
    p.subscribe(
        &s,
        T0,
        "carol@example.com",
        Resource::User(bob.into()),
        dialog(3),
        None,
    )
    .unwrap();
    drain(&mut p);
    s.set_visibility(bob, Visibility::Contacts).unwrap();
    p.housekeeping(&s, T0 + 3);
    let n = drain(&mut p);
    let carol: Vec<&Notice> = n.iter().filter(|n| n.dialog.call_id == "call-3").collect();
    assert_eq!(carol.len(), 1);
    assert_eq!(carol[0].state, SubState::Terminated("rejected"));
    assert_eq!(shown(&carol[0].body), Availability::Offline);
    assert!(n
        .iter()
        .filter(|n| n.dialog.call_id == "call-2")
        .all(|n| n.state != SubState::Terminated("rejected")));
    // a new subscription by a non-contact is accepted and sees Offline (policy not revealed)
    p.subscribe(
        &s,
        T0 + 4,
        "carol@example.com",
        Resource::User(bob.into()),
        dialog(4),
        None,
    )
    .unwrap();
    assert_eq!(shown(&drain(&mut p)[0].body), Availability::Offline);
}

#[test]
fn a_device_that_published_twice_is_in_the_state_it_set_last() {
    let s = store();
    let mut p = agent(&s);
    let bob = "bob@example.com";
    let open = pidf_doc("", "open", "");
    // a client that raced its own first PUBLISH holds two publications
    let (first, _) = publish(&mut p, &s, bob, None, &open, Some("dev1")).unwrap();
    let (second, _) = publish(&mut p, &s, bob, None, &open, Some("dev1")).unwrap();
    p.subscribe(
        &s,
        T0,
        "alice@example.com",
        Resource::User(bob.into()),
        dialog(1),
        None,
    )
    .unwrap();
    assert_eq!(shown(&drain(&mut p)[0].body), Availability::Available);
    // it goes offline through either of them: offline it is
    for etag in [&first, &second] {
        let (closed, _) = publish(
            &mut p,
            &s,
            bob,
            Some(etag),
            &pidf_doc("", "closed", ""),
            Some("dev1"),
        )
        .unwrap();
        let n = drain(&mut p);
        assert_eq!(shown(&n[0].body), Availability::Offline, "through {etag}");
        publish(&mut p, &s, bob, Some(&closed), &open, Some("dev1")).unwrap();
        drain(&mut p);
    }
}

#[test]
fn a_partners_user_sees_presence_only_from_the_contact_list() {
    let s = store();
    let mut p = Presence::new(
        PresenceConfig {
            domains: vec!["example.com".into()],
            ..PresenceConfig::default()
        },
        42,
    );
    let bob = "bob@example.com";
    publish(
        &mut p,
        &s,
        bob,
        None,
        &pidf_doc("<rpid:busy/>", "open", ""),
        None,
    )
    .unwrap();
    // visibility "everyone" is everyone in the organisation: a federated watcher sees Offline
    for (n, watcher) in ["carol@example.com", "eve@fabrikam.test"]
        .into_iter()
        .enumerate()
    {
        p.subscribe(
            &s,
            T0,
            watcher,
            Resource::User(bob.into()),
            dialog(n as u32 + 1),
            None,
        )
        .unwrap();
    }
    let n = drain(&mut p);
    let seen = |n: &[Notice], call: &str| {
        shown(
            &n.iter()
                .find(|x| x.dialog.call_id == call)
                .expect("a NOTIFY")
                .body,
        )
    };
    assert_eq!(
        seen(&n, "call-1"),
        Availability::Busy,
        "a colleague sees it"
    );
    assert_eq!(
        seen(&n, "call-2"),
        Availability::Offline,
        "a partner's user does not"
    );
    // on bob's list, the partner's user sees it
    s.add_contact(bob, "eve@fabrikam.test", None).unwrap();
    p.housekeeping(&s, T0 + 3);
    p.subscribe(
        &s,
        T0 + 4,
        "eve@fabrikam.test",
        Resource::User(bob.into()),
        dialog(3),
        None,
    )
    .unwrap();
    assert_eq!(seen(&drain(&mut p), "call-3"), Availability::Busy);
}

#[test]
fn contact_list_subscription_follows_the_stored_list() {
    let s = store();
    let mut p = agent(&s);
    let alice = "alice@example.com";
    s.add_contact(alice, "bob@example.com", Some("Team"))
        .unwrap();
    publish(
        &mut p,
        &s,
        "bob@example.com",
        None,
        &pidf_doc("<rpid:busy/>", "open", ""),
        None,
    )
    .unwrap();
    p.subscribe(&s, T0, alice, Resource::List(alice.into()), dialog(1), None)
        .unwrap();
    let n = drain(&mut p);
    assert!(n[0].content_type.starts_with("multipart/related"));
    assert!(n[0].body.contains("fullState=\"true\"") && n[0].body.contains("<name>Team</name>"));
    assert_eq!(shown(&n[0].body), Availability::Busy);

    // a contact's change: a partial notification about that contact only
    p.devices_changed(&s, T0, "carol@example.com", vec!["d".into()]);
    assert!(drain(&mut p).is_empty(), "carol is not on the list yet");
    publish(
        &mut p,
        &s,
        "bob@example.com",
        None,
        &pidf_doc("<rpid:on-the-phone/>", "open", ""),
        None,
    )
    .unwrap();
    let n = drain(&mut p);
    assert!(n[0].body.contains("fullState=\"false\"") && n[0].body.contains("version=\"2\""));

    // the list changes in the store (another device, or the CLI): full state to every device
    s.add_contact(alice, "carol@example.com", None).unwrap();
    p.housekeeping(&s, T0 + 1);
    let n = drain(&mut p);
    assert_eq!(n.len(), 1, "{n:?}");
    assert!(
        n[0].body.contains("fullState=\"true\"") && n[0].body.contains("sip:carol@example.com")
    );
    p.devices_changed(&s, T0 + 1, "carol@example.com", vec![]);
    let n = drain(&mut p);
    assert!(
        n[0].body.contains("sip:carol@example.com") && n[0].body.contains("<basic>closed</basic>")
    );
}

#[test]
fn watcher_information_lists_who_watches() {
    let s = store();
    let mut p = agent(&s);
    let bob = "bob@example.com";
    let mut d = dialog(1);
    d.event = "presence.winfo".into();
    p.subscribe(&s, T0, bob, Resource::Winfo(bob.into()), d, None)
        .unwrap();
    let n = drain(&mut p);
    assert_eq!(&*n[0].content_type, "application/watcherinfo+xml");
    assert!(!n[0].body.contains("<watcher "));
    let mut w = dialog(2);
    w.remote_uri = "sip:alice@example.com".into();
    p.subscribe(
        &s,
        T0,
        "alice@example.com",
        Resource::User(bob.into()),
        w,
        None,
    )
    .unwrap();
    let n = drain(&mut p);
    let winfo: Vec<&Notice> = n.iter().filter(|n| n.dialog.call_id == "call-1").collect();
    assert_eq!(winfo.len(), 1);
    assert!(
        winfo[0].body.contains(">sip:alice@example.com</watcher>"),
        "{}",
        winfo[0].body
    );
    assert!(winfo[0].body.contains("version=\"2\""));
}

#[test]
fn deleting_a_user_ends_subscriptions_with_noresource() {
    let s = store();
    let mut p = agent(&s);
    p.subscribe(
        &s,
        T0,
        "alice@example.com",
        Resource::User("bob@example.com".into()),
        dialog(1),
        None,
    )
    .unwrap();
    drain(&mut p);
    s.remove_user("bob@example.com").unwrap();
    p.housekeeping(&s, T0 + 1);
    let n = drain(&mut p);
    assert_eq!(n[0].state, SubState::Terminated("noresource"));
    assert_eq!(p.stats().subscriptions, 0);
}

#[test]
fn publications_and_subscriptions_survive_a_restart() {
    let s = store();
    let mut p = agent(&s);
    let bob = "bob@example.com";
    p.subscribe(
        &s,
        T0,
        "alice@example.com",
        Resource::User(bob.into()),
        dialog(1),
        None,
    )
    .unwrap();
    publish(
        &mut p,
        &s,
        bob,
        None,
        &pidf_doc("<rpid:busy/>", "open", ""),
        None,
    )
    .unwrap();
    let before = drain(&mut p).last().unwrap().dialog.cseq;
    drop(p);

    let mut p = agent(&s);
    assert_eq!((p.stats().publications, p.stats().subscriptions), (1, 1));
    assert_eq!(p.full_view(bob).availability, Availability::Busy);
    publish(
        &mut p,
        &s,
        bob,
        None,
        &pidf_doc("<rpid:away/>", "open", ""),
        None,
    )
    .unwrap();
    let n = drain(&mut p);
    assert_eq!(n.len(), 1);
    assert!(
        n[0].dialog.cseq > before,
        "CSeq keeps increasing across the restart"
    );
    assert_eq!(n[0].dialog.call_id, "call-1");
}

#[test]
fn one_user_cannot_flood_subscriptions() {
    let s = store();
    let mut p = Presence::new(
        PresenceConfig {
            max_subscriptions: 5,
            subscribe_rate: 1,
            subscribe_burst: 8,
            ..PresenceConfig::default()
        },
        1,
    );
    let mut codes = Vec::new();
    for i in 0..10 {
        let r = p.subscribe(
            &s,
            T0,
            "mallory@example.com",
            Resource::User("bob@example.com".into()),
            dialog(i),
            None,
        );
        codes.push(r.map(|_| 200).unwrap_or_else(|e| e.0));
    }
    assert_eq!(codes, [200, 200, 200, 200, 200, 403, 403, 403, 403, 403]);
    // the cap is per user: others are not affected
    assert!(p
        .subscribe(
            &s,
            T0,
            "alice@example.com",
            Resource::User("bob@example.com".into()),
            dialog(99),
            None
        )
        .is_ok());
    // and the rate: fetches (Expires: 0) hold nothing but still spend tokens
    let mut rate_limited = 0;
    for i in 0..20 {
        if let Err(e) = p.subscribe(
            &s,
            T0,
            "carol@example.com",
            Resource::User("bob@example.com".into()),
            dialog(100 + i),
            Some(0),
        ) {
            assert_eq!(e.0, 503);
            assert!(e.2.iter().any(|(h, _)| *h == "Retry-After"));
            rate_limited += 1;
        }
    }
    assert_eq!(rate_limited, 12);
}
