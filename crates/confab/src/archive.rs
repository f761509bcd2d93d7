//! `confab archive`: archiving policies (what is kept, for how long, critical mode, legal
//! holds), and the archive itself: search, export for legal discovery, purge, and the log of
//! who searched what. Policies live in the deployment's database (running servers pick them
//! up within seconds); the archive in the deployment's database or a separate one
//! (`--archive-database`). Reading the archive takes that database's credentials, and every
//! search and export is logged in it.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};
use confab_archive::export::{body_text, Exporter, Format};
use confab_archive::policy::{Policies, Policy, GLOBAL, SETTING};
use confab_archive::time::format_ms;
use confab_archive::{Db, Query};

use crate::cli::{DataDirArg, UsageError};

#[derive(Debug, Args)]
pub(crate) struct ArchiveDbArg {
    #[command(flatten)]
    pub(crate) data: DataDirArg,
    /// A separate archive database: postgres://USER@HOST:PORT/DB (or an SQLite file).
    /// [default: the deployment's database]
    #[arg(long, env = "CONFAB_ARCHIVE_DATABASE", value_name = "URL")]
    pub(crate) archive_database: Option<String>,
}

/// Which records a search or an export takes.
#[derive(Debug, Args)]
pub(crate) struct Filter {
    /// Records this user took part in (user@domain). [default: everyone's]
    #[arg(long)]
    pub(crate) user: Option<String>,
    /// ... together with this one.
    #[arg(long)]
    pub(crate) with: Option<String>,
    /// From this day (YYYY-MM-DD, UTC) or time (YYYY-MM-DDTHH:MM:SSZ), inclusive.
    #[arg(long)]
    pub(crate) from: Option<String>,
    /// To this day (inclusive) or time (exclusive).
    #[arg(long)]
    pub(crate) to: Option<String>,
    /// Words every message found contains (case-insensitive).
    #[arg(long)]
    pub(crate) text: Option<String>,
}

impl Filter {
    pub(crate) fn query(&self) -> anyhow::Result<Query> {
        Query::new(
            self.user.as_deref(),
            self.with.as_deref(),
            self.from.as_deref(),
            self.to.as_deref(),
            self.text.as_deref(),
        )
        .map_err(|e| UsageError(e.to_string()).into())
    }
}

#[derive(Debug, Subcommand)]
pub(crate) enum ArchiveCommand {
    /// Archiving policies: what is kept and for how long.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Critical mode: `on` refuses (503) a message the archive cannot take; `off` delivers it
    /// and archives it when the archive is back (from the local queue).
    Critical {
        #[arg(value_parser = ["on", "off"])]
        mode: String,
        #[command(flatten)]
        data: DataDirArg,
    },
    /// Legal hold: nothing a user on hold took part in is purged.
    #[command(subcommand)]
    Hold(HoldCommand),
    /// Archived messages, oldest first.
    Search {
        #[command(flatten)]
        filter: Filter,
        /// At most this many.
        #[arg(long, default_value_t = 100)]
        limit: usize,
        #[command(flatten)]
        db: ArchiveDbArg,
    },
    /// Archived messages to a file for legal discovery (streamed: any size).
    Export {
        #[command(flatten)]
        filter: Filter,
        /// jsonl, csv, or eml (a new directory, one RFC 5322 message per file).
        #[arg(long, default_value = "jsonl")]
        format: Format,
        /// The file (or for eml the directory) to create.
        #[arg(long)]
        output: PathBuf,
        #[command(flatten)]
        db: ArchiveDbArg,
    },
    /// Delete what is past its retention now (servers also do it every hour).
    Purge {
        /// Count what would go, delete nothing.
        #[arg(long)]
        dry_run: bool,
        /// With --dry-run: what a purge on this day (YYYY-MM-DD) would delete.
        #[arg(long, requires = "dry_run")]
        as_of: Option<String>,
        #[command(flatten)]
        db: ArchiveDbArg,
    },
    /// Who searched and exported what, and when.
    AccessLog {
        #[command(flatten)]
        db: ArchiveDbArg,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum PolicyCommand {
    /// The policies, their assignments, critical mode and holds.
    Show {
        #[command(flatten)]
        data: DataDirArg,
    },
    /// Create or change policy NAME (`global` applies to everybody without another).
    Set {
        name: String,
        /// Archive conversations between the deployment's users.
        #[arg(long, value_parser = ["on", "off"])]
        internal: Option<String>,
        /// Archive conversations with federated partners' users.
        #[arg(long, value_parser = ["on", "off"])]
        external: Option<String>,
        /// Keep what it archives this many days.
        #[arg(long)]
        retention_days: Option<u32>,
        #[command(flatten)]
        data: DataDirArg,
    },
    /// Give a site or a user policy NAME.
    Assign {
        name: String,
        #[arg(long, conflicts_with = "user", required_unless_present = "user")]
        site: Option<String>,
        #[arg(long)]
        user: Option<String>,
        #[command(flatten)]
        data: DataDirArg,
    },
    /// Take a site's or a user's own policy away (the site's or the global one applies).
    Unassign {
        #[arg(long, conflicts_with = "user", required_unless_present = "user")]
        site: Option<String>,
        #[arg(long)]
        user: Option<String>,
        #[command(flatten)]
        data: DataDirArg,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum HoldCommand {
    /// Put USER on legal hold.
    Add {
        user: String,
        #[command(flatten)]
        data: DataDirArg,
    },
    /// Take USER off legal hold (retention applies again).
    Remove {
        user: String,
        #[command(flatten)]
        data: DataDirArg,
    },
    /// The users on legal hold.
    List {
        #[command(flatten)]
        data: DataDirArg,
    },
}

/// The archive database `arg` names: its own, or the deployment's.
pub(crate) fn spec(arg: &ArchiveDbArg) -> anyhow::Result<String> {
    if let Some(a) = &arg.archive_database {
        return Ok(a.clone());
    }
    if let Some(d) = &arg.data.database {
        return Ok(d.clone());
    }
    let dir = crate::datadir::resolve(&arg.data)?;
    let db = crate::datadir::db_path(&dir);
    if !db.exists() {
        return Err(UsageError(format!(
            "no Confab data in {} — pass the right --data-dir, --database or --archive-database",
            dir.display()
        ))
        .into());
    }
    Ok(db.display().to_string())
}

pub(crate) fn open(arg: &ArchiveDbArg) -> anyhow::Result<Db> {
    let spec = spec(arg)?;
    let mut db = Db::open(&spec).map_err(|e| anyhow::anyhow!("{e}"))?;
    // a PostgreSQL archive away now opens anyway (servers wait for it); a command cannot
    db.ensure_schema().map_err(|e| {
        anyhow::anyhow!(
            "{e}\nIs the archive database running? Check --archive-database / --database."
        )
    })?;
    Ok(db)
}

/// Who runs this command, for the access log.
pub(crate) fn who() -> String {
    std::env::var("SUDO_USER")
        .or_else(|_| std::env::var("USER"))
        .unwrap_or_else(|_| "unknown".into())
}

/// The stored policies.
pub(crate) fn policies(store: &dyn confab_store::Store) -> anyhow::Result<Policies> {
    let text = store.setting(SETTING)?.unwrap_or_default();
    Policies::parse(&text).map_err(|e| anyhow::anyhow!("{e}"))
}

/// Changes the stored policies with `edit`, checked whole before they are written.
fn edit_policies(
    data: &DataDirArg,
    edit: impl FnOnce(&mut Policies) -> anyhow::Result<()>,
) -> anyhow::Result<Policies> {
    let store = crate::datadir::open_existing(data)?;
    let mut p = policies(store.as_ref())?;
    edit(&mut p)?;
    p.check().map_err(UsageError)?;
    store
        .set_setting(SETTING, Some(&p.render()))
        .context("cannot store the archiving policies")?;
    Ok(p)
}

fn on(v: &str) -> bool {
    v == "on"
}

fn address(a: &str) -> anyhow::Result<String> {
    Ok(confab_store::normalize_aor(a)?)
}

pub(crate) fn run(cmd: ArchiveCommand) -> anyhow::Result<()> {
    match cmd {
        ArchiveCommand::Policy(cmd) => policy(cmd),
        ArchiveCommand::Critical { mode, data } => {
            edit_policies(&data, |p| {
                p.critical = on(&mode);
                Ok(())
            })?;
            println!(
                "critical archiving {mode}: {}",
                if on(&mode) {
                    "a message the archive cannot take now is refused with 503"
                } else {
                    "messages are delivered, and archived from the local queue when the archive is back"
                }
            );
            Ok(())
        }
        ArchiveCommand::Hold(cmd) => hold(cmd),
        ArchiveCommand::Search { filter, limit, db } => search(&filter, limit, &db),
        ArchiveCommand::Export {
            filter,
            format,
            output,
            db,
        } => export(&filter, format, &output, &db),
        ArchiveCommand::Purge { dry_run, as_of, db } => purge(dry_run, as_of.as_deref(), &db),
        ArchiveCommand::AccessLog { db } => {
            let mut archive = open(&db)?;
            println!(
                "{:<25} {:<12} {:<18} {:>7}  filter",
                "time", "who", "action", "records"
            );
            archive
                .access_log(&mut |at, who, action, filter, n| {
                    println!(
                        "{:<25} {who:<12} {action:<18} {n:>7}  {filter}",
                        format_ms(at)
                    );
                })
                .map_err(|e| anyhow::anyhow!("{e}"))
        }
    }
}

fn policy(cmd: PolicyCommand) -> anyhow::Result<()> {
    let p = match cmd {
        PolicyCommand::Show { data } => {
            let store = crate::datadir::open_existing(&data)?;
            policies(store.as_ref())?
        }
        PolicyCommand::Set {
            name,
            internal,
            external,
            retention_days,
            data,
        } => edit_policies(&data, |p| {
            let mut policy = p.policies.get(&name).copied().unwrap_or(Policy::default());
            if let Some(v) = internal {
                policy.internal = on(&v);
            }
            if let Some(v) = external {
                policy.external = on(&v);
            }
            if let Some(d) = retention_days {
                policy.retention_days = d;
            }
            p.policies.insert(name, policy);
            Ok(())
        })?,
        PolicyCommand::Assign {
            name,
            site,
            user,
            data,
        } => edit_policies(&data, |p| {
            if name != GLOBAL && !p.policies.contains_key(&name) {
                return Err(UsageError(format!(
                    "there is no policy '{name}': create it with `confab archive policy set {name} --internal on ...`"
                ))
                .into());
            }
            match (site, user) {
                (Some(s), _) => p.sites.insert(s, name),
                (_, Some(u)) => p.users.insert(address(&u)?, name),
                _ => None,
            };
            Ok(())
        })?,
        PolicyCommand::Unassign { site, user, data } => edit_policies(&data, |p| {
            match (site, user) {
                (Some(s), _) => p.sites.remove(&s),
                (_, Some(u)) => p.users.remove(&address(&u)?),
                _ => None,
            };
            Ok(())
        })?,
    };
    print_policies(&p);
    Ok(())
}

fn print_policies(p: &Policies) {
    println!("critical mode: {}", if p.critical { "on" } else { "off" });
    let mut names: Vec<&String> = p.policies.keys().collect();
    if !p.policies.contains_key(GLOBAL) {
        println!(
            "{GLOBAL:<16} internal off  external off  keep {} days (default)",
            Policy::default().retention_days
        );
    }
    names.sort();
    for n in names {
        let x = p.policies[n];
        let o = |b| if b { "on " } else { "off" };
        println!(
            "{n:<16} internal {}  external {}  keep {} days",
            o(x.internal),
            o(x.external),
            x.retention_days
        );
    }
    for (s, n) in &p.sites {
        println!("site {s}: {n}");
    }
    for (u, n) in &p.users {
        println!("user {u}: {n}");
    }
    println!(
        "call records: {}, kept {} days",
        if p.cdr { "on" } else { "off" },
        p.cdr_retention_days
    );
    if !p.holds.is_empty() {
        let holds: Vec<&str> = p.holds.iter().map(String::as_str).collect();
        println!("legal hold: {}", holds.join(", "));
    }
}

fn hold(cmd: HoldCommand) -> anyhow::Result<()> {
    let p = match cmd {
        HoldCommand::Add { user, data } => edit_policies(&data, |p| {
            p.holds.insert(address(&user)?);
            Ok(())
        })?,
        HoldCommand::Remove { user, data } => edit_policies(&data, |p| {
            let u = address(&user)?;
            if !p.holds.remove(&u) {
                return Err(UsageError(format!("{u} is not on legal hold")).into());
            }
            Ok(())
        })?,
        HoldCommand::List { data } => {
            let store = crate::datadir::open_existing(&data)?;
            policies(store.as_ref())?
        }
    };
    for u in &p.holds {
        println!("{u}");
    }
    Ok(())
}

fn search(filter: &Filter, limit: usize, arg: &ArchiveDbArg) -> anyhow::Result<()> {
    let mut q = filter.query()?;
    q.limit = Some(limit);
    let mut db = open(arg)?;
    let mut n = 0u64;
    db.messages(&q, &mut |m| {
        n += 1;
        let body = match body_text(&m.content_type, &m.body) {
            Some(t) => t.replace('\n', "\\n"),
            None => format!("[{} bytes of {}]", m.body.len(), m.content_type),
        };
        println!(
            "{}  {:<9} {} -> {}: {body}",
            format_ms(m.at_ms),
            m.direction.as_str(),
            m.sender,
            m.recipients.join(", ")
        );
        true
    })
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    db.log_access(&who(), "archive search", &q.describe(), n)
        .map_err(|e| anyhow::anyhow!("cannot log this search: {e}"))?;
    if n as usize == limit {
        eprintln!("(the first {limit}; --limit for more, or `confab archive export`)");
    }
    Ok(())
}

/// Shows progress on standard error every so many records.
pub(crate) struct Progress {
    what: &'static str,
    n: u64,
}

impl Progress {
    pub(crate) fn new(what: &'static str) -> Self {
        Self { what, n: 0 }
    }

    pub(crate) fn tick(&mut self) {
        self.n += 1;
        if self.n.is_multiple_of(10_000) {
            eprint!("\r{} {}...", self.n, self.what);
        }
    }

    pub(crate) fn done(&self, to: &std::path::Path) {
        eprintln!("\r{} {} exported to {}", self.n, self.what, to.display());
    }
}

fn export(
    filter: &Filter,
    format: Format,
    output: &std::path::Path,
    arg: &ArchiveDbArg,
) -> anyhow::Result<()> {
    let q = filter.query()?;
    let mut db = open(arg)?;
    let mut out = Exporter::create(format, output).map_err(UsageError)?;
    let mut progress = Progress::new("messages");
    let mut failed = None;
    db.messages(&q, &mut |m| match out.message(&m) {
        Ok(()) => {
            progress.tick();
            true
        }
        Err(e) => {
            failed = Some(e);
            false
        }
    })
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    if let Some(e) = failed {
        return Err(anyhow::anyhow!("writing {} failed: {e}", output.display()));
    }
    let n = out
        .finish()
        .with_context(|| format!("cannot finish {}", output.display()))?;
    db.log_access(
        &who(),
        &format!("archive export {format:?}").to_lowercase(),
        &q.describe(),
        n,
    )
    .map_err(|e| anyhow::anyhow!("cannot log this export: {e}"))?;
    progress.done(output);
    Ok(())
}

fn purge(dry_run: bool, as_of: Option<&str>, arg: &ArchiveDbArg) -> anyhow::Result<()> {
    let now = match as_of {
        Some(day) => {
            Query::new(None, None, Some(day), None, None)
                .map_err(|e| UsageError(e.to_string().replace("--from", "--as-of")))?
                .from_ms
                / 1000
        }
        None => confab_archive::time::now_ms() / 1000,
    };
    let store = crate::datadir::open_existing(&arg.data)?;
    let p = policies(store.as_ref())?;
    let holds: Vec<String> = p.holds.into_iter().collect();
    let mut db = open(arg)?;
    let purged = db
        .purge(now, &holds, 1000, dry_run)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    println!(
        "{} {} messages, {} call records, {} sign-in records past their retention{}",
        if dry_run { "would delete" } else { "deleted" },
        purged.messages,
        purged.calls,
        purged.registrations,
        if holds.is_empty() {
            String::new()
        } else {
            format!(
                " (kept: what {} users on legal hold took part in)",
                holds.len()
            )
        }
    );
    Ok(())
}
