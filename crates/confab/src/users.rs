//! `confab user ...`: writes go straight to the store, which the running server reads at each
//! authentication, so a change takes effect at once.

use confab_store::Store;

use confab_store::Visibility;

use crate::cli::{
    ContactsCommand, GroupCommand, PoolCommand, PrivacyCommand, Switch, TopologyArg, UsageError,
    UserCommand, VisibilityArg,
};
use crate::datadir;

pub(crate) fn run(cmd: UserCommand) -> anyhow::Result<()> {
    match cmd {
        UserCommand::Add {
            address,
            password,
            pool,
            deployment,
        } => {
            check_password(&password)?;
            let pool = home_pool(pool.as_deref(), &deployment)?;
            let store = datadir::open_existing(&deployment.data)?;
            crate::rgs::refuse_workflow_name(store.as_ref(), &address)?;
            store
                .add_user(&address, &password, pool.as_deref())
                .map_err(usage)?;
            let aor = confab_store::normalize_aor(&address)?;
            match pool {
                Some(p) => println!("added {aor} (home pool {p})"),
                None => println!("added {aor} (homed on the server's pool at its next start)"),
            }
        }
        UserCommand::Import {
            file,
            pool,
            deployment,
        } => {
            let users = read_import(&file)?;
            let pool = home_pool(pool.as_deref(), &deployment)?;
            let store = datadir::open_existing(&deployment.data)?;
            for (address, _) in &users {
                crate::rgs::refuse_workflow_name(store.as_ref(), address)?;
            }
            let added = store.import_users(&users, pool.as_deref()).map_err(usage)?;
            println!(
                "imported {added} users ({} already existed)",
                users.len() - added
            );
        }
        UserCommand::Move {
            address,
            to,
            deployment,
        } => {
            let pool = home_pool(Some(&to), &deployment)?.unwrap_or(to);
            let store = datadir::open_existing(&deployment.data)?;
            store.set_home_pool(&address, &pool).map_err(usage)?;
            println!("moved {address} to {pool}; its devices sign in again there");
        }
        UserCommand::List { data } => {
            let store = datadir::open_existing(&data)?;
            for u in store.list_users()? {
                let pool = store.user(&u)?.and_then(|u| u.pool);
                println!("{u}\t{}", pool.as_deref().unwrap_or("(no home pool)"));
            }
        }
        UserCommand::Unlock { address, data } => {
            let store = datadir::open_existing(&data)?;
            if store.user(&address)?.is_none() {
                anyhow::bail!("no such user: {address} (see `confab user list`)");
            }
            store.note_change(&format!("{}{address}", confab_core::UNLOCK_CHANGE))?;
            println!("{address} unlocked: running servers lift its lockout within 2 s (its familiar addresses stay familiar)");
        }
        UserCommand::Remove { address, data } => {
            datadir::open_existing(&data)?
                .remove_user(&address)
                .map_err(usage)?;
            println!("removed {address}");
        }
        UserCommand::Set {
            address,
            remote_access,
            federation,
            pin,
            voice,
            data,
        } => {
            if remote_access.is_none() && federation.is_none() && pin.is_none() && voice.is_empty()
            {
                return Err(UsageError(
                    "nothing to set: give --remote-access, --federation (on, off or default), --pin, --line-uri, --voice, --voice-policy or --dial-plan"
                        .into(),
                )
                .into());
            }
            let store = datadir::open_existing(&data)?;
            let Some(user) = store.user(&address)? else {
                anyhow::bail!("no such user: {address} (see `confab user list`)");
            };
            if remote_access.is_some() || federation.is_some() {
                set_access(store.as_ref(), &user, remote_access, federation)?;
            }
            if !voice.is_empty() {
                crate::voice::set_user(store.as_ref(), &user, &voice)?;
            }
            if let Some(pin) = pin {
                set_pin(store.as_ref(), &user.aor, &pin)?;
            }
        }
        UserCommand::SetPassword {
            address,
            password,
            data,
        } => {
            check_password(&password)?;
            datadir::open_existing(&data)?
                .set_password(&address, &password)
                .map_err(usage)?;
            println!("password changed for {address}");
        }
    }
    Ok(())
}

fn set_access(
    store: &dyn Store,
    user: &confab_store::User,
    remote_access: Option<Switch>,
    federation: Option<Switch>,
) -> anyhow::Result<()> {
    let pick = |s: Option<Switch>, old| match s {
        None => old,
        Some(Switch::On) => Some(true),
        Some(Switch::Off) => Some(false),
        Some(Switch::Default) => None,
    };
    let access = confab_store::Access {
        remote: pick(remote_access, user.access.remote),
        federation: pick(federation, user.access.federation),
    };
    store.set_access(&user.aor, access).map_err(usage)?;
    let show = |v: Option<bool>| match v {
        Some(true) => "on",
        Some(false) => "off",
        None => "default",
    };
    println!(
        "{}: remote access {}, federation {} (running servers apply it at the user's next request)",
        user.aor,
        show(access.remote),
        show(access.federation)
    );
    Ok(())
}

/// `confab pool ...`
pub(crate) fn pool(cmd: PoolCommand) -> anyhow::Result<()> {
    match cmd {
        PoolCommand::AddServer {
            pool,
            fqdn,
            address,
            topology,
        } => {
            crate::deployment::add_server(&topology, &pool, &fqdn, address)?;
            println!("{fqdn} ({address}) added to {pool} in {}; start it with: confab up --topology {} --fqdn {fqdn} --bind {address}", topology.display(), topology.display());
        }
        PoolCommand::Drain { server, deployment } => {
            let id = server_id(&server, &deployment)?;
            let store = datadir::open_existing(&deployment.data)?;
            store.set_setting(&format!("{}{id}", confab_core::DRAIN_SETTING), Some("1"))?;
            println!("{server} ({id}) is draining: its clients sign in at the other servers of the pool from their next REGISTER");
        }
        PoolCommand::Undrain { server, deployment } => {
            let id = server_id(&server, &deployment)?;
            let store = datadir::open_existing(&deployment.data)?;
            store.set_setting(&format!("{}{id}", confab_core::DRAIN_SETTING), None)?;
            println!("{server} ({id}) takes sign-ins again");
        }
        PoolCommand::MoveUsers {
            from,
            to,
            deployment,
        } => {
            let to = home_pool(Some(&to), &deployment)?.unwrap_or(to);
            let from = from.trim_end_matches('.').to_ascii_lowercase();
            if from == to {
                return Err(UsageError(format!("--from and --to are both {to}")).into());
            }
            let store = datadir::open_existing(&deployment.data)?;
            let users = store.users_in_pool(&from)?;
            if users.is_empty() {
                println!("no users are homed on {from}");
                return Ok(());
            }
            let total = users.len();
            let step = (total / 20).max(1);
            for (i, aor) in users.iter().enumerate() {
                store.set_home_pool(aor, &to).map_err(usage)?;
                if (i + 1) % step == 0 || i + 1 == total {
                    println!("moved {}/{total} users from {from} to {to}", i + 1);
                }
            }
        }
    }
    Ok(())
}

/// `confab contacts ...`
pub(crate) fn contacts(cmd: ContactsCommand) -> anyhow::Result<()> {
    match cmd {
        ContactsCommand::Add {
            owner,
            contact,
            group,
            data,
        } => {
            let (store, owner) = open_for(&data, &owner)?;
            store
                .add_contact(&owner, &contact, group.as_deref())
                .map_err(usage)?;
            match group {
                Some(g) => println!("{owner}: added {contact} to group {g}"),
                None => println!("{owner}: added {contact}"),
            }
        }
        ContactsCommand::List { owner, data } => {
            let (store, owner) = open_for(&data, &owner)?;
            for c in store.contacts(&owner)? {
                if c.groups.is_empty() {
                    println!("{}", c.aor);
                } else {
                    println!("{}\t{}", c.aor, c.groups.join(", "));
                }
            }
        }
        ContactsCommand::Remove {
            owner,
            contact,
            data,
        } => {
            let (store, owner) = open_for(&data, &owner)?;
            if !store.remove_contact(&owner, &contact).map_err(usage)? {
                return Err(UsageError(format!("{contact} is not on {owner}'s list")).into());
            }
            println!("{owner}: removed {contact}");
        }
        ContactsCommand::Group(GroupCommand::Add { owner, group, data }) => {
            let (store, owner) = open_for(&data, &owner)?;
            store.add_group(&owner, &group).map_err(usage)?;
            println!("{owner}: group {group} created");
        }
        ContactsCommand::Group(GroupCommand::List { owner, data }) => {
            let (store, owner) = open_for(&data, &owner)?;
            for g in store.groups(&owner)? {
                println!("{g}");
            }
        }
        ContactsCommand::Group(GroupCommand::Remove { owner, group, data }) => {
            let (store, owner) = open_for(&data, &owner)?;
            if !store.remove_group(&owner, &group).map_err(usage)? {
                return Err(UsageError(format!("{owner} has no group {group}")).into());
            }
            println!("{owner}: group {group} removed (its contacts stay on the list)");
        }
    }
    Ok(())
}

/// `confab privacy ...`
pub(crate) fn privacy(cmd: PrivacyCommand) -> anyhow::Result<()> {
    match cmd {
        PrivacyCommand::Show { user, data } => {
            let (store, user) = open_for(&data, &user)?;
            let p = store.privacy(&user)?;
            println!("visible to: {}", p.visibility.name());
            if p.blocked.is_empty() {
                println!("blocked: none");
            } else {
                println!("blocked: {}", p.blocked.join(", "));
            }
        }
        PrivacyCommand::Set {
            user,
            visibility,
            data,
        } => {
            let (store, user) = open_for(&data, &user)?;
            let v = match visibility {
                VisibilityArg::Everyone => Visibility::Everyone,
                VisibilityArg::Contacts => Visibility::Contacts,
            };
            store.set_visibility(&user, v).map_err(usage)?;
            println!("{user}: presence visible to {}", v.name());
        }
        PrivacyCommand::Block {
            user,
            watcher,
            data,
        } => {
            let (store, user) = open_for(&data, &user)?;
            store.set_blocked(&user, &watcher, true).map_err(usage)?;
            println!("{user}: {watcher} blocked (sees {user} as Offline)");
        }
        PrivacyCommand::Unblock {
            user,
            watcher,
            data,
        } => {
            let (store, user) = open_for(&data, &user)?;
            store.set_blocked(&user, &watcher, false).map_err(usage)?;
            println!("{user}: {watcher} unblocked");
        }
    }
    Ok(())
}

/// The store, and the normalised address of an existing user (or a usage error saying how to
/// add it).
fn open_for(
    data: &crate::cli::DataDirArg,
    address: &str,
) -> anyhow::Result<(Box<dyn Store>, String)> {
    let store = datadir::open_existing(data)?;
    let aor = confab_store::normalize_aor(address).map_err(usage)?;
    if store.user(&aor)?.is_none() {
        return Err(UsageError(format!(
            "no user {aor} (add it with: confab user add {aor} --password ...)"
        ))
        .into());
    }
    Ok((store, aor))
}

/// Reads `ADDRESS PASSWORD` lines; a malformed line is an error naming the file and line.
fn read_import(file: &std::path::Path) -> anyhow::Result<Vec<(String, String)>> {
    let text = if file.as_os_str() == "-" {
        std::io::read_to_string(std::io::stdin())?
    } else {
        std::fs::read_to_string(file)
            .map_err(|e| UsageError(format!("cannot read {}: {e}", file.display())))?
    };
    let mut users = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut fields = line.split_whitespace();
        match (fields.next(), fields.next(), fields.next()) {
            (Some(address), Some(password), None) => {
                users.push((address.to_owned(), password.to_owned()));
            }
            _ => {
                return Err(UsageError(format!(
                    "{}:{}: expected `ADDRESS PASSWORD` (two fields separated by spaces)",
                    file.display(),
                    n + 1
                ))
                .into())
            }
        }
    }
    Ok(users)
}

fn check_password(p: &str) -> anyhow::Result<()> {
    if p.is_empty() {
        return Err(UsageError("the password must not be empty".into()).into());
    }
    Ok(())
}

/// Store errors about what was asked (exists, missing, bad address) are usage errors.
pub(crate) fn usage(e: confab_store::StoreError) -> anyhow::Error {
    match e {
        confab_store::StoreError::Database(_) | confab_store::StoreError::Unavailable(_) => {
            e.into()
        }
        other => UsageError(other.to_string()).into(),
    }
}

/// The home pool for new or moved users: `asked` when the topology has it as a pool that hosts
/// users, else the only such pool. Without a topology file (no `confab up` yet, no --topology)
/// the name is taken as given, or left for the server to fill in.
pub(crate) fn home_pool(
    asked: Option<&str>,
    deployment: &TopologyArg,
) -> anyhow::Result<Option<String>> {
    let Some(topology) = crate::deployment::load_if_any(deployment)? else {
        return Ok(asked.map(str::to_ascii_lowercase));
    };
    let pools: Vec<&str> = topology.user_pools().map(|p| p.fqdn.as_str()).collect();
    match asked {
        Some(p) => {
            let p = p.trim_end_matches('.').to_ascii_lowercase();
            if pools.contains(&p.as_str()) {
                Ok(Some(p))
            } else {
                Err(UsageError(format!(
                    "{p} is not a pool that hosts users in the topology; choose one of: {}",
                    pools.join(", ")
                ))
                .into())
            }
        }
        None if pools.len() == 1 => Ok(pools.first().map(|p| (*p).to_owned())),
        None => Err(UsageError(format!(
            "this deployment has several pools for users: say which with --pool ({})",
            pools.join(", ")
        ))
        .into()),
    }
}

/// `ip:port` of a server of the topology: its address and its pool's SIP port.
fn server_id(fqdn: &str, deployment: &TopologyArg) -> anyhow::Result<String> {
    let Some(topology) = crate::deployment::load_if_any(deployment)? else {
        return Err(UsageError("no topology: pass --topology FILE".into()).into());
    };
    let fqdn = fqdn.trim_end_matches('.').to_ascii_lowercase();
    topology
        .pools
        .iter()
        .find_map(|p| {
            p.servers
                .iter()
                .find(|s| s.fqdn == fqdn)
                .map(|s| std::net::SocketAddr::new(s.address, p.sip_port.get()).to_string())
        })
        .ok_or_else(|| {
            UsageError(format!(
                "{fqdn} is not a server of the topology (see `confab topology show`)"
            ))
            .into()
        })
}

/// Stores `aor`'s dial-in PIN as a salted hash.
fn set_pin(store: &dyn Store, aor: &str, pin: &str) -> anyhow::Result<()> {
    if !(4..=12).contains(&pin.len()) || !pin.bytes().all(|b| b.is_ascii_digit()) {
        return Err(UsageError(
            "a PIN is 4 to 12 digits (it is entered on a phone's keypad)".into(),
        )
        .into());
    }
    let mut salt = [0u8; 16];
    getrandom::getrandom(&mut salt)
        .map_err(|e| anyhow::anyhow!("no randomness for the PIN's salt: {e}"))?;
    let setting = format!("{}{aor}", confab_meetings::PIN_PREFIX);
    store.set_setting(&setting, Some(&confab_meetings::pin_hash(pin, &salt)))?;
    println!("dial-in PIN set for {aor}");
    Ok(())
}
