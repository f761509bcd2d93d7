//! The data directory: where it is, and opening the store (SQLite in it, or the PostgreSQL
//! database `--database` names).

use std::path::{Path, PathBuf};

use anyhow::Context;
use confab_store::{PgStore, SqliteStore, Store};

use crate::cli::DataDirArg;

/// The data directory asked for, or the user's default one.
pub(crate) fn resolve(arg: &DataDirArg) -> anyhow::Result<PathBuf> {
    if let Some(d) = &arg.data_dir {
        return Ok(d.clone());
    }
    if let Some(x) = std::env::var_os("XDG_DATA_HOME").filter(|x| !x.is_empty()) {
        return Ok(PathBuf::from(x).join("confab"));
    }
    let home =
        std::env::var_os("HOME").context("cannot find a data directory: set --data-dir or HOME")?;
    Ok(PathBuf::from(home).join(".local/share/confab"))
}

pub(crate) fn db_path(dir: &Path) -> PathBuf {
    dir.join("confab.db")
}

/// Opens the store for `confab up`: the PostgreSQL database when one is named (it must be
/// reachable now), else SQLite in `dir` (created when missing).
pub(crate) fn open_store(arg: &DataDirArg, dir: &Path) -> anyhow::Result<Box<dyn Store>> {
    if let Some(url) = &arg.database {
        return open_postgres(url);
    }
    let db = db_path(dir);
    let store = SqliteStore::open(&db)
        .with_context(|| format!("cannot open the database {}", db.display()))?;
    Ok(Box::new(store))
}

fn open_postgres(url: &str) -> anyhow::Result<Box<dyn Store>> {
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        return Err(crate::cli::UsageError(format!(
            "--database takes a postgres://USER@HOST:PORT/DATABASE URL, not '{url}' (leave it out to use SQLite in the data dir)"
        ))
        .into());
    }
    match PgStore::open(url) {
        Ok(s) => Ok(Box::new(s)),
        Err(e) if e.is_unavailable() => Err(anyhow::anyhow!(
            "{e}\nIs PostgreSQL running and does it accept connections from this host? Check --database / CONFAB_DATABASE."
        )),
        Err(e) => Err(crate::cli::UsageError(e.to_string()).into()),
    }
}

/// Opens the store of an existing deployment (for `confab user ...`): the PostgreSQL database
/// when one is named, else the data directory's SQLite file, which must exist.
pub(crate) fn open_existing(arg: &DataDirArg) -> anyhow::Result<Box<dyn Store>> {
    if let Some(url) = &arg.database {
        return open_postgres(url);
    }
    let dir = resolve(arg)?;
    let db = db_path(&dir);
    if !db.exists() {
        return Err(crate::cli::UsageError(format!(
            "no Confab data in {} — run `confab up` first, or pass the right --data-dir (or --database)",
            dir.display()
        ))
        .into());
    }
    let store = SqliteStore::open(&db).with_context(|| format!("cannot open {}", db.display()))?;
    Ok(Box::new(store))
}
