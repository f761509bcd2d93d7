//! `confab user ...`: writes go straight to the store, which the running server reads at each
//! authentication, so a change takes effect at once.

use confab_admin::{users, Actor, Kind};

use crate::remote::{Api, RemoteArg};
use crate::user_admin::Users;
use confab_store::Store;

use crate::cli::{PoolCommand, Switch, TopologyArg, UsageError, UserArgs, UserCommand};
use crate::datadir;

pub(crate) fn run(args: UserArgs) -> anyhow::Result<()> {
    let remote = &args.remote;
    match args.cmd {
        UserCommand::Add {
            address,
            password,
            pool,
            deployment,
        } => {
            let users = target(remote, &deployment.data, Some(&deployment))?;
            let new = users::NewUser {
                address,
                password,
                pool,
            };
            let u = users.add(&new).map_err(admin)?;
            match u.pool {
                Some(p) => println!("added {} (home pool {p})", u.address),
                None => println!(
                    "added {} (homed on the server's pool at its next start)",
                    u.address
                ),
            }
        }
        UserCommand::Import {
            file,
            pool,
            deployment,
        } => {
            let list = read_import(&file)?;
            let users = target(remote, &deployment.data, Some(&deployment))?;
            let import = users::Import {
                users: list
                    .into_iter()
                    .map(|(address, password)| users::ImportedUser { address, password })
                    .collect(),
                pool,
            };
            let done = users.import(&import).map_err(admin)?;
            println!(
                "imported {} users ({} already existed)",
                done.added, done.existing
            );
        }
        UserCommand::Move {
            address,
            to,
            deployment,
        } => {
            let users = target(remote, &deployment.data, Some(&deployment))?;
            let change = users::UserChange {
                pool: Some(to),
                ..Default::default()
            };
            let u = users.change(&address, &change).map_err(admin)?;
            let pool = u.pool.unwrap_or_default();
            println!(
                "moved {} to {pool}; its devices sign in again there",
                u.address
            );
        }
        UserCommand::List { data } => {
            let users = target(remote, &data, None)?;
            let mut filter = users::UserFilter {
                limit: Some(1000),
                ..Default::default()
            };
            loop {
                let page = users.list(&filter).map_err(admin)?;
                for u in &page.items {
                    println!(
                        "{}\t{}",
                        u.address,
                        u.pool.as_deref().unwrap_or("(no home pool)")
                    );
                }
                match page.next {
                    Some(next) => filter.after = Some(next),
                    None => break,
                }
            }
        }
        UserCommand::Unlock { address, data } => {
            target(remote, &data, None)?
                .unlock(&address)
                .map_err(admin)?;
            println!("{address} unlocked: running servers lift its lockout within 2 s (its familiar addresses stay familiar)");
        }
        UserCommand::Remove { address, data } => {
            target(remote, &data, None)?
                .remove(&address)
                .map_err(admin)?;
            println!("removed {address}");
        }
        UserCommand::Set {
            address,
            remote_access,
            federation,
            pin,
            voice,
            data,
        } => set(
            remote,
            address,
            remote_access,
            federation,
            pin,
            voice,
            &data,
        )?,
        UserCommand::SetPassword {
            address,
            password,
            data,
        } => {
            target(remote, &data, None)?
                .set_password(&address, &password)
                .map_err(admin)?;
            println!("password changed for {address}");
        }
    }
    Ok(())
}

/// The database here, or the server `remote` names.
fn target(
    remote: &RemoteArg,
    data: &crate::cli::DataDirArg,
    deployment: Option<&TopologyArg>,
) -> anyhow::Result<Users> {
    let local_ca = || {
        datadir::resolve(data)
            .ok()
            .map(|d| d.join("ca.pem"))
            .filter(|p| p.exists())
    };
    if let Some(api) = Api::from_arg(remote, local_ca)? {
        return Ok(Users::There(api));
    }
    let topology = match deployment {
        Some(t) => crate::deployment::load_if_any(t)?.map(Box::new),
        None => None,
    };
    Ok(Users::Here {
        store: datadir::open_existing(data)?,
        topology,
        me: Actor::console(),
    })
}

/// `confab user set`: access through either way; voice and PIN on the database here.
fn set(
    remote: &RemoteArg,
    address: String,
    remote_access: Option<Switch>,
    federation: Option<Switch>,
    pin: Option<String>,
    voice: crate::voice::UserVoiceArgs,
    data: &crate::cli::DataDirArg,
) -> anyhow::Result<()> {
    if remote_access.is_none() && federation.is_none() && pin.is_none() && voice.is_empty() {
        return Err(UsageError(
            "nothing to set: give --remote-access, --federation (on, off or default), --pin, --line-uri, --voice, --voice-policy or --dial-plan"
                .into(),
        )
        .into());
    }
    if remote.server.is_some() && (pin.is_some() || !voice.is_empty()) {
        return Err(UsageError(
            "voice settings and PINs are not served by the API yet: run this on a server of the deployment, without --server".into(),
        )
        .into());
    }
    if remote_access.is_some() || federation.is_some() {
        let change = users::UserChange {
            remote_access: remote_access.map(switch),
            federation: federation.map(switch),
            ..Default::default()
        };
        let u = target(remote, data, None)?
            .change(&address, &change)
            .map_err(admin)?;
        println!(
            "{}: remote access {}, federation {} (running servers apply it at the user's next request)",
            u.address,
            u.remote_access.name(),
            u.federation.name()
        );
    }
    if pin.is_some() || !voice.is_empty() {
        let store = datadir::open_existing(data)?;
        let Some(user) = store.user(&address)? else {
            anyhow::bail!("no such user: {address} (see `confab user list`)");
        };
        if !voice.is_empty() {
            crate::voice::set_user(store.as_ref(), &user, &voice)?;
        }
        if let Some(pin) = pin {
            set_pin(store.as_ref(), &user.aor, &pin)?;
        }
    }
    Ok(())
}

fn switch(s: Switch) -> users::Switch {
    match s {
        Switch::On => users::Switch::On,
        Switch::Off => users::Switch::Off,
        Switch::Default => users::Switch::Default,
    }
}

/// An administrative operation's error: what was asked is wrong (a usage error, exit 2) or
/// the database failed.
pub(crate) fn admin(e: confab_admin::AdminError) -> anyhow::Error {
    match e.kind {
        Kind::Unavailable | Kind::Internal => anyhow::anyhow!(e.detail),
        _ => UsageError(e.detail).into(),
    }
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
            drain(&server, &deployment, true)?;
            println!("{server} is draining: its clients sign in at the other servers of the pool from their next REGISTER");
        }
        PoolCommand::Undrain { server, deployment } => {
            drain(&server, &deployment, false)?;
            println!("{server} takes sign-ins again");
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

/// Store errors about what was asked (exists, missing, bad address) are usage errors.
pub(crate) fn usage(e: confab_store::StoreError) -> anyhow::Error {
    match e {
        confab_store::StoreError::Database(_) | confab_store::StoreError::Unavailable(_) => {
            e.into()
        }
        other => UsageError(other.to_string()).into(),
    }
}

/// The home pool for new or moved users (see [`confab_admin::users::home_pool`]).
pub(crate) fn home_pool(
    asked: Option<&str>,
    deployment: &TopologyArg,
) -> anyhow::Result<Option<String>> {
    let topology = crate::deployment::load_if_any(deployment)?;
    users::home_pool(topology.as_ref(), asked).map_err(admin)
}

/// Drains server `fqdn` of its pool (`on`), or takes it back.
fn drain(fqdn: &str, deployment: &TopologyArg, on: bool) -> anyhow::Result<()> {
    let Some(topology) = crate::deployment::load_if_any(deployment)? else {
        return Err(UsageError("no topology: pass --topology FILE".into()).into());
    };
    let store = datadir::open_existing(&deployment.data)?;
    confab_admin::deployment::drain(store.as_ref(), &topology, &Actor::console(), fqdn, on)
        .map_err(admin)
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
