//! Archiving in a running server (`confab up`): its options, the archive writer started with
//! the server, and the purge job that deletes what is past its retention.

use anyhow::Context;
use clap::Args;
use confab_archive::Db;

use crate::archive::policies;
use crate::cli::DataDirArg;

/// `confab up`'s archiving options.
#[derive(Debug, Args)]
pub(crate) struct UpArchiveArgs {
    /// A separate archive database for archived messages and call records:
    /// postgres://USER@HOST:PORT/DB (or an SQLite file). [default: the deployment's database]
    #[arg(long, env = "CONFAB_ARCHIVE_DATABASE", value_name = "URL")]
    pub(crate) archive_database: Option<String>,
    /// Seconds between purges of archived records past their retention.
    #[arg(long, default_value_t = 3600, value_name = "SECONDS")]
    pub(crate) archive_purge_every: u64,
}

/// Starts the archive writer (its local queue in `<dir>/archive-queue`) and the purge job,
/// for `confab up`.
pub(crate) fn start_for_up(
    data: &DataDirArg,
    up: &UpArchiveArgs,
    dir: &std::path::Path,
) -> anyhow::Result<std::sync::Arc<confab_archive::writer::Sink>> {
    let purge_every = std::time::Duration::from_secs(up.archive_purge_every.max(1));
    let spec = up
        .archive_database
        .clone()
        .or_else(|| data.database.clone())
        .unwrap_or_else(|| crate::datadir::db_path(dir).display().to_string());
    let sink = confab_archive::writer::start(&spec, &dir.join("archive-queue"))
        .map_err(|e| anyhow::anyhow!("cannot start archiving: {e}"))?;
    let (data, dir) = (
        DataDirArg {
            data_dir: Some(dir.to_owned()),
            database: data.database.clone(),
        },
        dir.to_owned(),
    );
    std::thread::Builder::new()
        .name("confab-purge".into())
        .spawn(move || loop {
            std::thread::sleep(purge_every);
            purge_round(&data, &dir, &spec);
        })
        .context("cannot start the archive's purge job")?;
    Ok(std::sync::Arc::new(sink))
}

/// One purge by the running server: what is past its retention, except legal holds.
fn purge_round(data: &DataDirArg, dir: &std::path::Path, spec: &str) {
    let result = (|| -> anyhow::Result<confab_archive::Purged> {
        let store = crate::datadir::open_store(data, dir)?;
        let holds: Vec<String> = policies(store.as_ref())?.holds.into_iter().collect();
        let mut db = Db::open(spec).map_err(|e| anyhow::anyhow!("{e}"))?;
        let now = confab_archive::time::now_ms() / 1000;
        db.purge(now, &holds, 1000, false)
            .map_err(|e| anyhow::anyhow!("{e}"))
    })();
    match result {
        Ok(p) if p.total() > 0 => {
            tracing::info!(
                event = "archive.purged",
                messages = p.messages,
                calls = p.calls,
                sign_ins = p.registrations,
                "records past their retention deleted"
            );
        }
        Ok(_) => {}
        Err(e) => {
            tracing::warn!(event = "archive.purge_failed", error = %e, "cannot purge the archive now; the next round tries again");
        }
    }
}
