//! The data directory: where it is, and opening the store in it.

use std::path::{Path, PathBuf};

use anyhow::Context;
use confab_store::SqliteStore;

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

/// Opens the store of an existing data directory (for `confab user ...`).
pub(crate) fn open_existing(arg: &DataDirArg) -> anyhow::Result<SqliteStore> {
    let dir = resolve(arg)?;
    let db = db_path(&dir);
    if !db.exists() {
        return Err(crate::cli::UsageError(format!(
            "no Confab data in {} — run `confab up` first, or pass the right --data-dir",
            dir.display()
        ))
        .into());
    }
    SqliteStore::open(&db).with_context(|| format!("cannot open {}", db.display()))
}
