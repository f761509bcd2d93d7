//! `confab rgs`: response groups (agent groups, queues, workflows, holiday sets) kept as one
//! document in the deployment's database, changed object by object or imported whole; every
//! change is checked with the whole document, against the users' numbers and addresses, and
//! written in one piece (so a pool move is one transaction and never leaves an object without
//! its owner). Agents sign in and out of formal groups; running servers pick up every change
//! within seconds.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Subcommand;
use confab_rgs::{RgsConfig, RGS_SETTING, SIGNED_IN_SETTING};

use crate::cli::{DataDirArg, UsageError};
use crate::rgs_objects::{GroupArgs, Kind, QueueArgs, WorkflowArgs};

#[derive(Debug, Subcommand)]
pub(crate) enum RgsCommand {
    /// Workflows: the addresses and numbers callers reach (hunt groups and IVRs).
    #[command(subcommand)]
    Workflow(Box<ObjectCommand<WorkflowArgs>>),
    /// Queues: where callers wait for the agents of their groups.
    #[command(subcommand)]
    Queue(ObjectCommand<QueueArgs>),
    /// Agent groups: members, participation, alert time and routing method.
    #[command(subcommand)]
    Group(ObjectCommand<GroupArgs>),
    /// Agents of formal groups sign in and out.
    #[command(subcommand)]
    Agent(AgentCommand),
    /// Write every response-group object to FILE (`-` or nothing: standard output).
    Export {
        file: Option<PathBuf>,
        #[command(flatten)]
        data: DataDirArg,
    },
    /// Make FILE the deployment's response groups: checked whole (with the users' numbers
    /// and addresses), prompts given as text spoken and stored, then written in one piece.
    Import {
        file: PathBuf,
        /// Check and report without changing anything.
        #[arg(long)]
        dry_run: bool,
        #[command(flatten)]
        data: DataDirArg,
    },
    /// Hand every response-group object of pool FROM to pool TO, in one transaction: names,
    /// numbers and addresses stay, and nothing is left without an owner.
    Move {
        #[arg(long)]
        from: String,
        #[arg(long)]
        to: String,
        #[command(flatten)]
        data: DataDirArg,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum ObjectCommand<A: clap::Args> {
    /// Create one (the whole configuration is checked with it).
    Add {
        name: String,
        #[command(flatten)]
        args: A,
        #[command(flatten)]
        data: DataDirArg,
    },
    /// Change one: what is not given stays.
    Set {
        name: String,
        #[command(flatten)]
        args: A,
        #[command(flatten)]
        data: DataDirArg,
    },
    /// List them with their owner pool.
    List {
        #[command(flatten)]
        data: DataDirArg,
    },
    /// Show one as the configuration document writes it.
    Show {
        name: String,
        #[command(flatten)]
        data: DataDirArg,
    },
    /// Remove one; refused, naming what still uses it.
    Remove {
        name: String,
        #[command(flatten)]
        data: DataDirArg,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum AgentCommand {
    /// USER takes calls from formal group GROUP.
    SignIn {
        #[arg(long)]
        group: String,
        user: String,
        #[command(flatten)]
        data: DataDirArg,
    },
    /// USER stops taking calls from formal group GROUP.
    SignOut {
        #[arg(long)]
        group: String,
        user: String,
        #[command(flatten)]
        data: DataDirArg,
    },
}

pub(crate) fn run(cmd: RgsCommand) -> anyhow::Result<()> {
    match cmd {
        RgsCommand::Workflow(c) => crate::rgs_objects::object(Kind::Workflow, *c),
        RgsCommand::Queue(c) => crate::rgs_objects::object(Kind::Queue, c),
        RgsCommand::Group(c) => crate::rgs_objects::object(Kind::Group, c),
        RgsCommand::Agent(AgentCommand::SignIn { group, user, data }) => {
            sign(&group, &user, true, &data)
        }
        RgsCommand::Agent(AgentCommand::SignOut { group, user, data }) => {
            sign(&group, &user, false, &data)
        }
        RgsCommand::Export { file, data } => {
            let store = crate::datadir::open_existing(&data)?;
            let text = current(store.as_ref())?.to_toml();
            match file.filter(|f| f.as_os_str() != "-") {
                Some(f) => std::fs::write(&f, text)
                    .map_err(|e| UsageError(format!("cannot write {}: {e}", f.display())))?,
                None => print!("{text}"),
            }
            Ok(())
        }
        RgsCommand::Import {
            file,
            dry_run,
            data,
        } => import(&file, dry_run, &data),
        RgsCommand::Move { from, to, data } => move_pool(&from, &to, &data),
    }
}

fn import(file: &Path, dry_run: bool, data: &DataDirArg) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| UsageError(format!("cannot read {}: {e}", file.display())))?;
    let mut config =
        RgsConfig::from_toml(&text).map_err(|e| UsageError(format!("{}: {e}", file.display())))?;
    let store = crate::datadir::open_existing(data)?;
    check(store.as_ref(), &config, &file.display().to_string())?;
    let (w, q, g) = (
        config.workflows.len(),
        config.queues.len(),
        config.groups.len(),
    );
    if dry_run {
        println!("{}: {w} workflow(s), {q} queue(s), {g} group(s): no problem found; nothing changed (--dry-run)", file.display());
        return Ok(());
    }
    let base = file.parent().unwrap_or(Path::new("."));
    let prompts = crate::rgs_audio::store_prompts(store.as_ref(), &mut config, base)?;
    save(store.as_ref(), &config)?;
    println!("imported {w} workflow(s), {q} queue(s), {g} group(s) ({prompts} prompt(s) stored); running servers use them within seconds");
    Ok(())
}

fn move_pool(from: &str, to: &str, data: &DataDirArg) -> anyhow::Result<()> {
    if to.trim().is_empty() {
        return Err(UsageError(
            "--to is empty: name the pool (its FQDN) that takes the response groups".into(),
        )
        .into());
    }
    let store = crate::datadir::open_existing(data)?;
    let mut config = current(store.as_ref())?;
    let moved = config.move_pool(from, to);
    if moved == 0 {
        return Err(UsageError(format!(
            "no response-group object belongs to pool {from} (see `confab rgs workflow list`)"
        ))
        .into());
    }
    check(store.as_ref(), &config, "the moved configuration")?;
    save(store.as_ref(), &config)?;
    println!("moved {moved} object(s) from {from} to {to} in one transaction; numbers and addresses kept");
    Ok(())
}

fn sign(group: &str, user: &str, signed_in: bool, data: &DataDirArg) -> anyhow::Result<()> {
    let store = crate::datadir::open_existing(data)?;
    let config = current(store.as_ref())?;
    let user = user.trim_start_matches("sip:").to_ascii_lowercase();
    let Some(g) = config.group(group) else {
        return Err(UsageError(format!(
            "there is no agent group {group:?} (see `confab rgs group list`)"
        ))
        .into());
    };
    if !g.agents.iter().any(|a| a.eq_ignore_ascii_case(&user)) {
        return Err(UsageError(format!("{user} is not an agent of group {group:?}; add them with `confab rgs group set {group:?} --agents ...`")).into());
    }
    if g.participation == confab_rgs::Participation::Informal {
        println!("note: group {group:?} is informal: its agents take calls without signing in");
    }
    let text = setting(store.as_ref(), SIGNED_IN_SETTING)?;
    let line = format!("{group}\t{user}");
    let mut lines: Vec<String> = text
        .lines()
        .filter(|l| *l != line)
        .map(str::to_owned)
        .collect();
    if signed_in {
        lines.push(line);
    }
    lines.sort();
    store
        .set_setting(SIGNED_IN_SETTING, Some(&lines.join("\n")))
        .context("cannot store the sign-in")?;
    let state = if signed_in {
        "signed in to"
    } else {
        "signed out of"
    };
    println!("{user} {state} {group}");
    Ok(())
}

fn setting(store: &dyn confab_store::Store, name: &str) -> anyhow::Result<String> {
    Ok(store.setting(name)?.unwrap_or_default())
}

/// The deployment's response groups (empty when none).
pub(crate) fn current(store: &dyn confab_store::Store) -> anyhow::Result<RgsConfig> {
    RgsConfig::from_toml(&setting(store, RGS_SETTING)?)
        .map_err(|e| anyhow::anyhow!("the stored response-group configuration cannot be read: {e}"))
}

/// Every problem of `config`, with the deployment's users, named; `origin` says what it is.
pub(crate) fn check(
    store: &dyn confab_store::Store,
    config: &RgsConfig,
    origin: &str,
) -> anyhow::Result<()> {
    let mut problems: Vec<String> = config.check().iter().map(ToString::to_string).collect();
    for w in &config.workflows {
        if let Some(n) = &w.number {
            if let Some(owner) = store.number_owner(n.split(';').next().unwrap_or(n))? {
                problems.push(format!("workflow \"{}\": number {n} is user {owner}'s; give the workflow its own number", w.name));
            }
        }
        let aor = w.address.trim_start_matches("sip:");
        if store.user(aor)?.is_some() {
            problems.push(format!(
                "workflow \"{}\": address {} is a user's; choose another",
                w.name, w.address
            ));
        }
    }
    for g in &config.groups {
        for a in &g.agents {
            if a.contains('@') && store.user(a)?.is_none() {
                problems.push(format!(
                    "group \"{}\": agent {a} is not a user (see `confab user list`)",
                    g.name
                ));
            }
        }
    }
    if problems.is_empty() {
        return Ok(());
    }
    let list: Vec<String> = problems.iter().map(|p| format!("  {p}")).collect();
    Err(UsageError(format!(
        "{origin} has {} problem(s); nothing was changed:\n{}",
        problems.len(),
        list.join("\n")
    ))
    .into())
}

/// Writes the document in one piece.
pub(crate) fn save(store: &dyn confab_store::Store, config: &RgsConfig) -> anyhow::Result<()> {
    store
        .set_setting(RGS_SETTING, Some(&config.to_toml()))
        .context("cannot store the response-group configuration")
}
