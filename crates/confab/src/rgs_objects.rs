//! `confab rgs workflow|queue|group add|set|list|show|remove`: one object changed, the whole
//! document checked with it and written in one piece (see `rgs.rs`).

use clap::Args;
use confab_rgs::{
    Candidate, Group, Overflow, Participation, Queue, RgsConfig, Routing, Then, Timeout,
};

use crate::cli::{DataDirArg, UsageError};
use crate::rgs::ObjectCommand;
pub(crate) use crate::rgs_workflow::WorkflowArgs;

#[derive(Debug, Clone, Copy)]
pub(crate) enum Kind {
    Workflow,
    Queue,
    Group,
}

impl Kind {
    fn word(self) -> &'static str {
        match self {
            Self::Workflow => "workflow",
            Self::Queue => "queue",
            Self::Group => "group",
        }
    }
}

/// Flags that create or change one kind of object.
pub(crate) trait ObjectArgs: Args {
    /// Applies the flags to object `name` of `cfg` (created when `new`).
    fn apply(&self, cfg: &mut RgsConfig, name: &str, new: bool) -> Result<(), UsageError>;
}

pub(crate) fn object<A: ObjectArgs>(kind: Kind, cmd: ObjectCommand<A>) -> anyhow::Result<()> {
    match cmd {
        ObjectCommand::Add { name, args, data } => change(kind, &name, &data, |cfg| {
            if names(cfg, kind)
                .iter()
                .any(|n| n.eq_ignore_ascii_case(&name))
            {
                return Err(UsageError(format!(
                    "there is already a {} {name:?}; change it with `set`",
                    kind.word()
                )));
            }
            args.apply(cfg, &name, true)
        }),
        ObjectCommand::Set { name, args, data } => change(kind, &name, &data, |cfg| {
            if !names(cfg, kind).contains(&name) {
                return Err(not_found(kind, &name));
            }
            args.apply(cfg, &name, false)
        }),
        ObjectCommand::Remove { name, data } => change(kind, &name, &data, |cfg| {
            let before = names(cfg, kind).len();
            match kind {
                Kind::Workflow => cfg.workflows.retain(|w| w.name != name),
                Kind::Queue => cfg.queues.retain(|q| q.name != name),
                Kind::Group => cfg.groups.retain(|g| g.name != name),
            }
            if names(cfg, kind).len() == before {
                return Err(not_found(kind, &name));
            }
            Ok(())
        }),
        ObjectCommand::List { data } => {
            let store = crate::datadir::open_existing(&data)?;
            let cfg = crate::rgs::current(store.as_ref())?;
            for line in list(&cfg, kind) {
                println!("{line}");
            }
            Ok(())
        }
        ObjectCommand::Show { name, data } => {
            let store = crate::datadir::open_existing(&data)?;
            let cfg = crate::rgs::current(store.as_ref())?;
            let mut one = RgsConfig::default();
            match kind {
                Kind::Workflow => one.workflows.extend(cfg.workflow(&name).cloned()),
                Kind::Queue => one.queues.extend(cfg.queue(&name).cloned()),
                Kind::Group => one.groups.extend(cfg.group(&name).cloned()),
            }
            if names(&one, kind).is_empty() {
                return Err(not_found(kind, &name).into());
            }
            print!("{}", one.to_toml());
            Ok(())
        }
    }
}

/// Reads, edits, checks, stores prompts and writes the document.
fn change(
    kind: Kind,
    name: &str,
    data: &DataDirArg,
    edit: impl FnOnce(&mut RgsConfig) -> Result<(), UsageError>,
) -> anyhow::Result<()> {
    let store = crate::datadir::open_existing(data)?;
    let mut cfg = crate::rgs::current(store.as_ref())?;
    edit(&mut cfg)?;
    crate::rgs::check(store.as_ref(), &cfg, &format!("{} {name:?}", kind.word()))?;
    crate::rgs_audio::store_prompts(store.as_ref(), &mut cfg, std::path::Path::new("."))?;
    crate::rgs::save(store.as_ref(), &cfg)?;
    println!(
        "{} {name:?} saved; running servers use it within seconds",
        kind.word()
    );
    Ok(())
}

fn names(cfg: &RgsConfig, kind: Kind) -> Vec<String> {
    match kind {
        Kind::Workflow => cfg.workflows.iter().map(|w| w.name.clone()).collect(),
        Kind::Queue => cfg.queues.iter().map(|q| q.name.clone()).collect(),
        Kind::Group => cfg.groups.iter().map(|g| g.name.clone()).collect(),
    }
}

fn list(cfg: &RgsConfig, kind: Kind) -> Vec<String> {
    match kind {
        Kind::Workflow => cfg
            .workflows
            .iter()
            .map(|w| {
                let how = match (&w.queue, &w.ivr) {
                    (Some(q), _) => format!("hunt group → {q}"),
                    _ => "interactive".to_owned(),
                };
                format!(
                    "{}\t{}\t{}\t{}\t{how}",
                    w.name,
                    w.pool,
                    w.address,
                    w.number.as_deref().unwrap_or("-")
                )
            })
            .collect(),
        Kind::Queue => cfg
            .queues
            .iter()
            .map(|q| format!("{}\t{}\tgroups: {}", q.name, q.pool, q.groups.join(", ")))
            .collect(),
        Kind::Group => cfg
            .groups
            .iter()
            .map(|g| {
                format!(
                    "{}\t{}\t{}\t{} agent(s)",
                    g.name,
                    g.pool,
                    g.routing.label(),
                    g.agents.len()
                )
            })
            .collect(),
    }
}

fn not_found(kind: Kind, name: &str) -> UsageError {
    UsageError(format!(
        "there is no {} {name:?} (see `confab rgs {} list`)",
        kind.word(),
        kind.word()
    ))
}

pub(crate) fn need<T: Clone>(v: &Option<T>, flag: &str, kind: &str) -> Result<T, UsageError> {
    v.clone()
        .ok_or_else(|| UsageError(format!("a new {kind} needs {flag}")))
}

pub(crate) fn list_arg(s: &str) -> Vec<String> {
    s.split(',')
        .map(str::trim)
        .filter(|x| !x.is_empty())
        .map(str::to_owned)
        .collect()
}

pub(crate) fn then(s: &str) -> Result<Then, UsageError> {
    s.parse().map_err(UsageError)
}

#[derive(Debug, Args)]
pub(crate) struct GroupArgs {
    /// The owner pool (FQDN); required for a new group.
    #[arg(long)]
    pool: Option<String>,
    /// Members, comma-separated user@domain, in order.
    #[arg(long, value_name = "USER,...")]
    agents: Option<String>,
    #[arg(long, value_enum)]
    routing: Option<RoutingArg>,
    #[arg(long, value_enum)]
    participation: Option<ParticipationArg>,
    /// Seconds an agent rings before the call moves on (default 20).
    #[arg(long, value_name = "SECONDS")]
    alert_time: Option<u32>,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum RoutingArg {
    Serial,
    RoundRobin,
    LongestIdle,
    Parallel,
    Attendant,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum ParticipationArg {
    Informal,
    Formal,
}

impl ObjectArgs for GroupArgs {
    fn apply(&self, cfg: &mut RgsConfig, name: &str, new: bool) -> Result<(), UsageError> {
        if new {
            cfg.groups.push(Group {
                name: name.to_owned(),
                pool: need(&self.pool, "--pool", "group")?,
                routing: Routing::default(),
                participation: Participation::default(),
                alert_time: 20,
                agents: Vec::new(),
            });
        }
        let g = cfg
            .groups
            .iter_mut()
            .find(|g| g.name == name)
            .ok_or_else(|| UsageError(format!("there is no {name:?} to change")))?;
        if let Some(p) = &self.pool {
            g.pool.clone_from(p);
        }
        if let Some(a) = &self.agents {
            g.agents = list_arg(a)
                .into_iter()
                .map(|a| a.trim_start_matches("sip:").to_ascii_lowercase())
                .collect();
        }
        if let Some(r) = self.routing {
            g.routing = match r {
                RoutingArg::Serial => Routing::Serial,
                RoutingArg::RoundRobin => Routing::RoundRobin,
                RoutingArg::LongestIdle => Routing::LongestIdle,
                RoutingArg::Parallel => Routing::Parallel,
                RoutingArg::Attendant => Routing::Attendant,
            };
        }
        if let Some(p) = self.participation {
            g.participation = match p {
                ParticipationArg::Informal => Participation::Informal,
                ParticipationArg::Formal => Participation::Formal,
            };
        }
        if let Some(t) = self.alert_time {
            g.alert_time = t;
        }
        Ok(())
    }
}

#[derive(Debug, Args)]
pub(crate) struct QueueArgs {
    /// The owner pool (FQDN); required for a new queue.
    #[arg(long)]
    pool: Option<String>,
    /// Agent groups, comma-separated, in the order they are offered calls.
    #[arg(long, value_name = "GROUP,...")]
    groups: Option<String>,
    /// Seconds a caller waits before the time-out action; `none`: no time-out.
    #[arg(long, value_name = "SECONDS|none")]
    timeout: Option<String>,
    /// The time-out action: disconnect, forward:sip:USER@DOMAIN, forward:tel:+NUMBER,
    /// queue:NAME.
    #[arg(long, value_name = "ACTION")]
    timeout_then: Option<String>,
    /// Waiting callers at which the overflow action applies; `none`: no overflow.
    #[arg(long, value_name = "CALLERS|none")]
    overflow: Option<String>,
    /// Which caller overflows: the one arriving (newest) or the one waiting longest.
    #[arg(long, value_enum)]
    overflow_candidate: Option<CandidateArg>,
    /// The overflow action (as --timeout-then).
    #[arg(long, value_name = "ACTION")]
    overflow_then: Option<String>,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum CandidateArg {
    Newest,
    Oldest,
}

fn number_or_none(s: &str, flag: &str) -> Result<Option<u32>, UsageError> {
    if s == "none" {
        return Ok(None);
    }
    s.parse()
        .map(Some)
        .map_err(|_| UsageError(format!("{flag} {s:?}: give a number or none")))
}

impl ObjectArgs for QueueArgs {
    fn apply(&self, cfg: &mut RgsConfig, name: &str, new: bool) -> Result<(), UsageError> {
        if new {
            cfg.queues.push(Queue {
                name: name.to_owned(),
                pool: need(&self.pool, "--pool", "queue")?,
                groups: Vec::new(),
                timeout: None,
                overflow: None,
            });
        }
        let q = cfg
            .queues
            .iter_mut()
            .find(|q| q.name == name)
            .ok_or_else(|| UsageError(format!("there is no {name:?} to change")))?;
        if let Some(p) = &self.pool {
            q.pool.clone_from(p);
        }
        if let Some(g) = &self.groups {
            q.groups = list_arg(g);
        }
        if let Some(t) = &self.timeout {
            q.timeout = number_or_none(t, "--timeout")?.map(|after| Timeout {
                after,
                then: Then::Disconnect,
            });
        }
        if let Some(t) = &self.timeout_then {
            let t = then(t)?;
            match q.timeout.as_mut() {
                Some(timeout) => timeout.then = t,
                None => {
                    return Err(UsageError(
                        "--timeout-then needs a time-out: give --timeout SECONDS".into(),
                    ))
                }
            }
        }
        if let Some(o) = &self.overflow {
            q.overflow = number_or_none(o, "--overflow")?.map(|callers| Overflow {
                callers,
                candidate: Candidate::Newest,
                then: Then::Disconnect,
            });
        }
        if self.overflow_candidate.is_some() || self.overflow_then.is_some() {
            let Some(o) = q.overflow.as_mut() else {
                return Err(UsageError("--overflow-then and --overflow-candidate need an overflow: give --overflow CALLERS".into()));
            };
            if let Some(c) = self.overflow_candidate {
                o.candidate = match c {
                    CandidateArg::Newest => Candidate::Newest,
                    CandidateArg::Oldest => Candidate::Oldest,
                };
            }
            if let Some(t) = &self.overflow_then {
                o.then = then(t)?;
            }
        }
        Ok(())
    }
}
