//! `confab contacts ...` and `confab privacy ...`: a user's list and who sees its presence
//! (the same `confab_admin::contacts` calls the API makes).

use confab_admin::contacts::{self, NewContact, PrivacyChange, Seen};
use confab_admin::Actor;

use crate::cli::{ContactsCommand, GroupCommand, PrivacyCommand, VisibilityArg};
use crate::datadir;
use crate::users::admin;

pub(crate) fn contacts(cmd: ContactsCommand) -> anyhow::Result<()> {
    let me = Actor::console();
    match cmd {
        ContactsCommand::Add {
            owner,
            contact,
            group,
            data,
        } => {
            let store = datadir::open_existing(&data)?;
            let new = NewContact {
                address: contact.clone(),
                group: group.clone(),
            };
            contacts::add(store.as_ref(), &me, &owner, &new).map_err(admin)?;
            match group {
                Some(g) => println!("{owner}: added {contact} to group {g}"),
                None => println!("{owner}: added {contact}"),
            }
        }
        ContactsCommand::List { owner, data } => {
            let store = datadir::open_existing(&data)?;
            for c in contacts::list(store.as_ref(), &me, &owner)
                .map_err(admin)?
                .contacts
            {
                if c.groups.is_empty() {
                    println!("{}", c.address);
                } else {
                    println!("{}\t{}", c.address, c.groups.join(", "));
                }
            }
        }
        ContactsCommand::Remove {
            owner,
            contact,
            data,
        } => {
            let store = datadir::open_existing(&data)?;
            contacts::remove(store.as_ref(), &me, &owner, &contact).map_err(admin)?;
            println!("{owner}: removed {contact}");
        }
        ContactsCommand::Group(GroupCommand::Add { owner, group, data }) => {
            let store = datadir::open_existing(&data)?;
            contacts::add_group(store.as_ref(), &me, &owner, &group).map_err(admin)?;
            println!("{owner}: group {group} created");
        }
        ContactsCommand::Group(GroupCommand::List { owner, data }) => {
            let store = datadir::open_existing(&data)?;
            for g in contacts::list(store.as_ref(), &me, &owner)
                .map_err(admin)?
                .groups
            {
                println!("{g}");
            }
        }
        ContactsCommand::Group(GroupCommand::Remove { owner, group, data }) => {
            let store = datadir::open_existing(&data)?;
            contacts::remove_group(store.as_ref(), &me, &owner, &group).map_err(admin)?;
            println!("{owner}: group {group} removed (its contacts stay on the list)");
        }
    }
    Ok(())
}

pub(crate) fn privacy(cmd: PrivacyCommand) -> anyhow::Result<()> {
    let me = Actor::console();
    let (user, change, data) = match cmd {
        PrivacyCommand::Show { user, data } => {
            let store = datadir::open_existing(&data)?;
            let p = contacts::privacy(store.as_ref(), &me, &user).map_err(admin)?;
            println!("visible to: {}", name(p.visibility));
            if p.blocked.is_empty() {
                println!("blocked: none");
            } else {
                println!("blocked: {}", p.blocked.join(", "));
            }
            return Ok(());
        }
        PrivacyCommand::Set {
            user,
            visibility,
            data,
        } => {
            let v = match visibility {
                VisibilityArg::Everyone => Seen::Everyone,
                VisibilityArg::Contacts => Seen::Contacts,
            };
            let change = PrivacyChange {
                visibility: Some(v),
                ..Default::default()
            };
            (user, change, data)
        }
        PrivacyCommand::Block {
            user,
            watcher,
            data,
        } => {
            let change = PrivacyChange {
                block: vec![watcher],
                ..Default::default()
            };
            (user, change, data)
        }
        PrivacyCommand::Unblock {
            user,
            watcher,
            data,
        } => {
            let change = PrivacyChange {
                unblock: vec![watcher],
                ..Default::default()
            };
            (user, change, data)
        }
    };
    let store = datadir::open_existing(&data)?;
    let aor = confab_store::normalize_aor(&user).map_err(crate::users::usage)?;
    contacts::set_privacy(store.as_ref(), &me, &aor, &change).map_err(admin)?;
    match (
        change.visibility,
        change.block.first(),
        change.unblock.first(),
    ) {
        (Some(v), _, _) => println!("{aor}: presence visible to {}", name(v)),
        (_, Some(w), _) => println!("{aor}: {w} blocked (sees {aor} as Offline)"),
        (_, _, Some(w)) => println!("{aor}: {w} unblocked"),
        _ => {}
    }
    Ok(())
}

fn name(v: Seen) -> &'static str {
    match v {
        Seen::Everyone => "everyone",
        Seen::Contacts => "contacts",
    }
}
