//! `confab cdr` (call detail records: calls and sign-ins, searched and exported, and whether
//! they are kept) and `confab report` (their summaries per day or per user).

use std::path::PathBuf;

use anyhow::Context;
use clap::Subcommand;
use confab_archive::export::{Exporter, Format};
use confab_archive::report::{self, By};
use confab_archive::time::format_ms;

use crate::archive::{open, policies, who, ArchiveDbArg, Filter, Progress};
use crate::cli::{DataDirArg, UsageError};

#[derive(Debug, Subcommand)]
pub(crate) enum CdrCommand {
    /// Call records (or with --sign-ins, sign-in records), oldest first.
    Search {
        #[command(flatten)]
        filter: Filter,
        /// Sign-ins and sign-outs instead of calls.
        #[arg(long)]
        sign_ins: bool,
        /// At most this many.
        #[arg(long, default_value_t = 100)]
        limit: usize,
        #[command(flatten)]
        db: ArchiveDbArg,
    },
    /// Call (or sign-in) records to a file.
    Export {
        #[command(flatten)]
        filter: Filter,
        /// Sign-ins and sign-outs instead of calls.
        #[arg(long)]
        sign_ins: bool,
        /// jsonl or csv.
        #[arg(long, default_value = "jsonl")]
        format: Format,
        /// The file to create.
        #[arg(long)]
        output: PathBuf,
        #[command(flatten)]
        db: ArchiveDbArg,
    },
    /// Whether call records are kept, and for how long.
    Settings {
        /// Keep call and sign-in records.
        #[arg(long, value_parser = ["on", "off"])]
        keep: Option<String>,
        /// Keep them this many days.
        #[arg(long)]
        retention_days: Option<u32>,
        #[command(flatten)]
        data: DataDirArg,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum ReportCommand {
    /// Calls: count, answered, minutes, failures by response code.
    Calls {
        /// Lines per day (UTC), or per user (calls: their caller).
        #[arg(long, default_value = "day")]
        by: By,
        #[command(flatten)]
        filter: Filter,
        #[command(flatten)]
        db: ArchiveDbArg,
    },
    /// Sign-ins, sign-outs, expiries and clients.
    SignIns {
        /// Lines per day (UTC), or per user (calls: their caller).
        #[arg(long, default_value = "day")]
        by: By,
        #[command(flatten)]
        filter: Filter,
        #[command(flatten)]
        db: ArchiveDbArg,
    },
}

pub(crate) fn cdr(cmd: CdrCommand) -> anyhow::Result<()> {
    match cmd {
        CdrCommand::Search {
            filter,
            sign_ins,
            limit,
            db,
        } => {
            let mut q = filter.query()?;
            q.limit = Some(limit);
            let mut archive = open(&db)?;
            let mut n = 0u64;
            let r = if sign_ins {
                archive.registrations(&q, &mut |r| {
                    n += 1;
                    println!(
                        "{}  {:<9} {} from {} ({}) at {}",
                        format_ms(r.at_ms),
                        r.event,
                        r.user,
                        r.address,
                        r.client,
                        r.server
                    );
                    true
                })
            } else {
                archive.calls(&q, &mut |c| {
                    n += 1;
                    let route = c.trunk.as_ref().map_or(String::new(), |t| {
                        format!(
                            " via trunk {t} (route {})",
                            c.route.as_deref().unwrap_or("?")
                        )
                    });
                    println!(
                        "{}  {} -> {}  {} {}  {} s, ended by {}{route}",
                        format_ms(c.start_ms),
                        c.caller,
                        c.callee,
                        c.status,
                        c.reason,
                        c.duration_s(),
                        c.ended_by
                    );
                    true
                })
            };
            r.map_err(|e| anyhow::anyhow!("{e}"))?;
            let action = if sign_ins {
                "cdr search sign-ins"
            } else {
                "cdr search calls"
            };
            archive
                .log_access(&who(), action, &q.describe(), n)
                .map_err(|e| anyhow::anyhow!("cannot log this search: {e}"))
        }
        CdrCommand::Export {
            filter,
            sign_ins,
            format,
            output,
            db,
        } => {
            if format == Format::Eml {
                return Err(UsageError(
                    "call records export as jsonl or csv (eml is for messages)".into(),
                )
                .into());
            }
            let q = filter.query()?;
            let mut archive = open(&db)?;
            let mut out = Exporter::create(format, &output).map_err(UsageError)?;
            let mut progress = Progress::new("records");
            let mut failed = None;
            let mut keep = |r: std::io::Result<()>| match r {
                Ok(()) => {
                    progress.tick();
                    true
                }
                Err(e) => {
                    failed = Some(e);
                    false
                }
            };
            let r = if sign_ins {
                archive.registrations(&q, &mut |r| keep(out.registration(&r)))
            } else {
                archive.calls(&q, &mut |c| keep(out.call(&c)))
            };
            r.map_err(|e| anyhow::anyhow!("{e}"))?;
            if let Some(e) = failed {
                return Err(anyhow::anyhow!("writing {} failed: {e}", output.display()));
            }
            let n = out
                .finish()
                .with_context(|| format!("cannot finish {}", output.display()))?;
            archive
                .log_access(&who(), "cdr export", &q.describe(), n)
                .map_err(|e| anyhow::anyhow!("cannot log this export: {e}"))?;
            progress.done(&output);
            Ok(())
        }
        CdrCommand::Settings {
            keep,
            retention_days,
            data,
        } => {
            let store = crate::datadir::open_existing(&data)?;
            let mut p = policies(store.as_ref())?;
            if let Some(k) = keep {
                p.cdr = k == "on";
            }
            if let Some(d) = retention_days {
                p.cdr_retention_days = d;
            }
            p.check().map_err(UsageError)?;
            store
                .set_setting(confab_archive::policy::SETTING, Some(&p.render()))
                .context("cannot store the archiving policies")?;
            println!(
                "call records: {}, kept {} days",
                if p.cdr { "on" } else { "off" },
                p.cdr_retention_days
            );
            Ok(())
        }
    }
}

pub(crate) fn report(cmd: ReportCommand) -> anyhow::Result<()> {
    let (calls, by, filter, db) = match cmd {
        ReportCommand::Calls { by, filter, db } => (true, by, filter, db),
        ReportCommand::SignIns { by, filter, db } => (false, by, filter, db),
    };
    let q = filter.query()?;
    let mut archive = open(&db)?;
    let fail = |e: confab_archive::ArchiveError| anyhow::anyhow!("{e}");
    let (text, lines) = if calls {
        let r = report::calls(&mut archive, &q, by).map_err(fail)?;
        (report::render_calls(by, &r), r.len())
    } else {
        let r = report::sign_ins(&mut archive, &q, by).map_err(fail)?;
        (report::render_sign_ins(by, &r), r.len())
    };
    print!("{text}");
    let action = if calls {
        "report calls"
    } else {
        "report sign-ins"
    };
    archive
        .log_access(&who(), action, &q.describe(), lines as u64)
        .map_err(|e| anyhow::anyhow!("cannot log this report: {e}"))
}
