//! `confab user ...`: writes go straight to the store, which the running server reads at each
//! authentication, so a change takes effect at once.

use confab_store::Store;

use crate::cli::UserCommand;
use crate::datadir;

pub(crate) fn run(cmd: UserCommand) -> anyhow::Result<()> {
    match cmd {
        UserCommand::Add {
            address,
            password,
            data,
        } => {
            check_password(&password)?;
            let store = datadir::open_existing(&data)?;
            store.add_user(&address, &password).map_err(usage)?;
            println!("added {}", confab_store::normalize_aor(&address)?);
        }
        UserCommand::List { data } => {
            for u in datadir::open_existing(&data)?.list_users()? {
                println!("{u}");
            }
        }
        UserCommand::Remove { address, data } => {
            datadir::open_existing(&data)?
                .remove_user(&address)
                .map_err(usage)?;
            println!("removed {address}");
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

fn check_password(p: &str) -> anyhow::Result<()> {
    if p.is_empty() {
        return Err(crate::cli::UsageError("the password must not be empty".into()).into());
    }
    Ok(())
}

/// Store errors about what was asked (exists, missing, bad address) are usage errors.
fn usage(e: confab_store::StoreError) -> anyhow::Error {
    match e {
        confab_store::StoreError::Database(_) => e.into(),
        other => crate::cli::UsageError(other.to_string()).into(),
    }
}
