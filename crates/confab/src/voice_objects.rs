//! `confab voice add|list|show|remove`: one object of the voice configuration at a time, as
//! the Skype for Business cmdlets do (New-CsVoiceRoute, New-CsPstnUsage, Get-CsDialPlan,
//! Remove-CsVoicePolicy, ...). Each change is the stored document edited and checked whole,
//! so an object cannot be left pointing at nothing (a route without a trunk, a policy naming a
//! usage that is gone): the same path as `confab voice apply`.

use clap::{Args, Subcommand, ValueEnum};
use confab_voice::{
    CallerId, DialPlan, Gateway, NormalizationRule, Route, Scope, Transport, Trunk, VoiceConfig,
    VoicePolicy,
};

use crate::cli::{DataDirArg, UsageError};
use crate::voice::{checked, current, save};

/// The kinds of objects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Kind {
    /// Dial plans (New-CsDialPlan).
    Dialplan,
    /// Normalization rules of dial plans and trunks (New-CsVoiceNormalizationRule).
    Rule,
    /// PSTN usages (Set-CsPstnUsage).
    Usage,
    /// Voice policies (New-CsVoicePolicy).
    Policy,
    /// Voice routes (New-CsVoiceRoute).
    Route,
    /// Trunks and their gateways (New-CsTrunkConfiguration).
    Trunk,
}

/// One object to add, with the settings its cmdlet takes.
#[derive(Debug, Subcommand)]
pub(crate) enum NewObject {
    /// A dial plan (its rules are added with `add rule --dial-plan`).
    Dialplan {
        name: String,
        /// global, site:NAME, pool:FQDN, or user (assigned with confab user set --dial-plan).
        #[arg(long, default_value = "user")]
        scope: Scope,
        #[command(flatten)]
        common: Common,
    },
    /// A normalization rule, at the end of a dial plan's rules (or of a trunk's).
    Rule {
        name: String,
        /// The dial plan it belongs to.
        #[arg(long, required_unless_present = "trunk", conflicts_with = "trunk")]
        dial_plan: Option<String>,
        /// Or the trunk (its rules for the called number on the way out).
        #[arg(long)]
        trunk: Option<String>,
        /// A regular expression over what is dialled: `^(\d{4})$`.
        #[arg(long)]
        pattern: String,
        /// The result, with $1.. for the pattern's groups: `+1425555$1`.
        #[arg(long)]
        translation: String,
        /// The result is an internal extension (never sent to the phone network).
        #[arg(long)]
        internal_extension: bool,
        #[command(flatten)]
        common: Common,
    },
    /// A PSTN usage, added at the end of the usages of the voice policies named (a usage no
    /// policy lists is refused: it would route nobody's calls).
    Usage {
        name: String,
        /// Comma-separated voice policies that list it from now on.
        #[arg(long = "policy", value_delimiter = ',', required = true)]
        policies: Vec<String>,
        #[command(flatten)]
        common: Common,
    },
    /// A voice policy: the PSTN usages its users may call through, in order (those that do
    /// not exist yet are added).
    Policy {
        name: String,
        #[arg(long, default_value = "user")]
        scope: Scope,
        /// Comma-separated, in order.
        #[arg(long, value_delimiter = ',', required = true)]
        usages: Vec<String>,
        #[command(flatten)]
        common: Common,
    },
    /// A route (after the others): numbers it matches, the usages it serves, its trunks.
    Route {
        name: String,
        /// A regular expression over E.164 numbers: `^\+1425\d{7}$`.
        #[arg(long)]
        pattern: String,
        #[arg(long, value_delimiter = ',', required = true)]
        usages: Vec<String>,
        /// Comma-separated, in the order they are failed over.
        #[arg(long, value_delimiter = ',', required = true)]
        trunks: Vec<String>,
        /// keep (the caller's Line URI), suppress, or the number shown instead (tel:+1...).
        #[arg(long, default_value = "keep")]
        caller_id: String,
        #[command(flatten)]
        common: Common,
    },
    /// A trunk to a gateway (an IP-PBX, SBC or carrier).
    Trunk {
        name: String,
        /// The gateway's address or FQDN, optionally :PORT (default 5060).
        #[arg(long)]
        gateway: String,
        #[arg(long, value_enum, default_value = "tcp")]
        transport: TransportArg,
        /// Seconds the gateway may stay silent before the next trunk is tried.
        #[arg(long, default_value_t = 10)]
        failover_after: u32,
        /// The caller's number goes in From too (else only in P-Asserted-Identity).
        #[arg(long)]
        caller_in_from: bool,
        #[command(flatten)]
        common: Common,
    },
}

/// What every `add` takes.
#[derive(Debug, Args)]
pub(crate) struct Common {
    /// Report the change without making it.
    #[arg(long)]
    dry_run: bool,
    #[command(flatten)]
    data: DataDirArg,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum TransportArg {
    Udp,
    Tcp,
    Tls,
}

pub(crate) fn add(object: NewObject) -> anyhow::Result<()> {
    let (common, label) = match &object {
        NewObject::Dialplan { common, name, .. } => (common, format!("dial plan {name:?}")),
        NewObject::Rule { common, name, .. } => (common, format!("rule {name:?}")),
        NewObject::Usage { common, name, .. } => (common, format!("PSTN usage {name:?}")),
        NewObject::Policy { common, name, .. } => (common, format!("voice policy {name:?}")),
        NewObject::Route { common, name, .. } => (common, format!("route {name:?}")),
        NewObject::Trunk { common, name, .. } => (common, format!("trunk {name:?}")),
    };
    let store = crate::datadir::open_existing(&common.data)?;
    let mut cfg = current(store.as_ref())?;
    let dry_run = common.dry_run;
    insert(&mut cfg, object)?;
    let new = checked(cfg, &format!("the configuration with {label}"))?;
    save(store.as_ref(), &new, dry_run, "that")
}

/// Adds `object` to `cfg` (a name taken is refused here; everything else by the checks).
fn insert(cfg: &mut VoiceConfig, object: NewObject) -> anyhow::Result<()> {
    let taken = |kind: &str, name: &str| -> anyhow::Result<()> {
        Err(UsageError(format!(
            "there is a {kind} {name:?} already (confab voice remove it first, or pick another name)"
        ))
        .into())
    };
    match object {
        NewObject::Dialplan { name, scope, .. } => {
            if cfg.dial_plans.iter().any(|p| p.name == name) {
                return taken("dial plan", &name);
            }
            cfg.dial_plans.push(DialPlan {
                name,
                scope,
                rules: Vec::new(),
            });
        }
        NewObject::Rule {
            name,
            dial_plan,
            trunk,
            pattern,
            translation,
            internal_extension,
            ..
        } => {
            let rule = NormalizationRule {
                name,
                pattern,
                translation,
                internal_extension,
            };
            let rules = match (&dial_plan, &trunk) {
                (Some(p), _) => cfg
                    .dial_plans
                    .iter_mut()
                    .find(|d| &d.name == p)
                    .map(|d| &mut d.rules),
                (None, Some(t)) => cfg
                    .trunks
                    .iter_mut()
                    .find(|x| &x.name == t)
                    .map(|x| &mut x.called),
                (None, None) => None,
            };
            let Some(rules) = rules else {
                let owner = dial_plan.map_or_else(
                    || format!("trunk {:?}", trunk.unwrap_or_default()),
                    |p| format!("dial plan {p:?}"),
                );
                return Err(UsageError(format!(
                    "there is no {owner} (confab voice list shows what there is)"
                ))
                .into());
            };
            if rules.iter().any(|r| r.name == rule.name) {
                return taken("rule", &rule.name);
            }
            rules.push(rule);
        }
        NewObject::Usage { name, policies, .. } => {
            if cfg.usages.contains(&name) {
                return taken("PSTN usage", &name);
            }
            for p in &policies {
                let Some(policy) = cfg.policies.iter_mut().find(|x| &x.name == p) else {
                    return Err(UsageError(format!(
                        "there is no voice policy {p:?} (confab voice list policy shows what there is)"
                    ))
                    .into());
                };
                policy.usages.push(name.clone());
            }
            cfg.usages.push(name);
        }
        NewObject::Policy {
            name,
            scope,
            usages,
            ..
        } => {
            if cfg.policies.iter().any(|p| p.name == name) {
                return taken("voice policy", &name);
            }
            for u in &usages {
                if !cfg.usages.contains(u) {
                    cfg.usages.push(u.clone());
                }
            }
            cfg.policies.push(VoicePolicy {
                name,
                scope,
                usages,
            });
        }
        NewObject::Route {
            name,
            pattern,
            usages,
            trunks,
            caller_id,
            ..
        } => {
            if cfg.routes.iter().any(|r| r.name == name) {
                return taken("route", &name);
            }
            let caller_id = match caller_id.as_str() {
                "keep" => CallerId::Keep,
                "suppress" => CallerId::Suppress,
                number => CallerId::Replace(number.to_owned()),
            };
            cfg.routes.push(Route {
                name,
                pattern,
                usages,
                trunks,
                caller_id,
            });
        }
        NewObject::Trunk {
            name,
            gateway,
            transport,
            failover_after,
            caller_in_from,
            ..
        } => {
            if cfg.trunks.iter().any(|t| t.name == name) {
                return taken("trunk", &name);
            }
            let (host, port) = host_port(&gateway)?;
            cfg.trunks.push(Trunk {
                name,
                gateway: Gateway {
                    host,
                    port,
                    transport: match transport {
                        TransportArg::Udp => Transport::Udp,
                        TransportArg::Tcp => Transport::Tcp,
                        TransportArg::Tls => Transport::Tls,
                    },
                },
                failover_after,
                caller_in_from,
                called: Vec::new(),
                calling: Vec::new(),
                inbound: Vec::new(),
            });
        }
    }
    Ok(())
}

/// `host`, `host:port`, `[v6]:port`.
fn host_port(text: &str) -> anyhow::Result<(String, u16)> {
    let bad = || UsageError(format!("--gateway {text:?}: write HOST or HOST:PORT"));
    match text.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') || h.ends_with(']') => {
            Ok((h.to_owned(), p.parse().map_err(|_| bad())?))
        }
        _ if !text.is_empty() => Ok((text.to_owned(), 5060)),
        _ => Err(bad().into()),
    }
}

/// The names of each kind's objects, in order.
fn names(cfg: &VoiceConfig, kind: Kind) -> Vec<String> {
    match kind {
        Kind::Dialplan => cfg.dial_plans.iter().map(|p| p.name.clone()).collect(),
        Kind::Rule => (cfg
            .dial_plans
            .iter()
            .map(|p| ("dial plan", &p.name, &p.rules)))
        .chain(cfg.trunks.iter().map(|t| ("trunk", &t.name, &t.called)))
        .flat_map(|(what, owner, rules)| {
            rules
                .iter()
                .map(move |r| format!("{} (of {what} {owner})", r.name))
        })
        .collect(),
        Kind::Usage => cfg.usages.clone(),
        Kind::Policy => cfg.policies.iter().map(|p| p.name.clone()).collect(),
        Kind::Route => cfg.routes.iter().map(|r| r.name.clone()).collect(),
        Kind::Trunk => cfg.trunks.iter().map(|t| t.name.clone()).collect(),
    }
}

pub(crate) fn list(kind: Option<Kind>, data: &DataDirArg) -> anyhow::Result<()> {
    let store = crate::datadir::open_existing(data)?;
    let cfg = current(store.as_ref())?;
    let kinds = kind.map_or_else(|| Kind::value_variants().to_vec(), |k| vec![k]);
    for k in kinds {
        let all = names(&cfg, k);
        let title = k.to_possible_value().map(|v| v.get_name().to_owned());
        println!("{} ({})", title.unwrap_or_default(), all.len());
        for n in all {
            println!("  {n}");
        }
    }
    Ok(())
}

pub(crate) fn show(kind: Kind, name: &str, data: &DataDirArg) -> anyhow::Result<()> {
    let store = crate::datadir::open_existing(data)?;
    let cfg = current(store.as_ref())?;
    let mut one = VoiceConfig::default();
    let found = match kind {
        Kind::Dialplan => pick(&cfg.dial_plans, |p| p.name == name, &mut one.dial_plans),
        Kind::Policy => pick(&cfg.policies, |p| p.name == name, &mut one.policies),
        Kind::Route => pick(&cfg.routes, |r| r.name == name, &mut one.routes),
        Kind::Trunk => pick(&cfg.trunks, |t| t.name == name, &mut one.trunks),
        Kind::Usage => pick(&cfg.usages, |u| u == name, &mut one.usages),
        Kind::Rule => {
            for p in &cfg.dial_plans {
                if let Some(r) = p.rules.iter().find(|r| r.name == name) {
                    one.dial_plans.push(DialPlan {
                        rules: vec![r.clone()],
                        ..p.clone()
                    });
                }
            }
            !one.dial_plans.is_empty()
        }
    };
    if !found {
        return Err(not_found(kind, name).into());
    }
    print!("{}", one.to_toml());
    Ok(())
}

fn pick<T: Clone>(all: &[T], is: impl Fn(&T) -> bool, into: &mut Vec<T>) -> bool {
    into.extend(all.iter().filter(|x| is(x)).cloned());
    !into.is_empty()
}

fn not_found(kind: Kind, name: &str) -> UsageError {
    let k = kind.to_possible_value().map(|v| v.get_name().to_owned());
    UsageError(format!(
        "there is no {} {name:?} (confab voice list {0} shows what there is)",
        k.unwrap_or_default()
    ))
}

pub(crate) fn remove(
    kind: Kind,
    name: &str,
    of: Option<&str>,
    dry_run: bool,
    data: &DataDirArg,
) -> anyhow::Result<()> {
    let store = crate::datadir::open_existing(data)?;
    let mut cfg = current(store.as_ref())?;
    let before = cfg.clone();
    match kind {
        Kind::Dialplan => cfg.dial_plans.retain(|p| p.name != name),
        Kind::Policy => cfg.policies.retain(|p| p.name != name),
        Kind::Route => cfg.routes.retain(|r| r.name != name),
        Kind::Trunk => cfg.trunks.retain(|t| t.name != name),
        Kind::Usage => cfg.usages.retain(|u| u != name),
        Kind::Rule => {
            let mine = |owner: &str| of.is_none_or(|o| o == owner);
            for p in cfg.dial_plans.iter_mut().filter(|p| mine(&p.name)) {
                p.rules.retain(|r| r.name != name);
            }
            for t in cfg.trunks.iter_mut().filter(|t| mine(&t.name)) {
                t.called.retain(|r| r.name != name);
            }
        }
    }
    if cfg == before {
        return Err(not_found(kind, name).into());
    }
    let new = checked(cfg, &format!("the configuration without {name:?}"))?;
    save(store.as_ref(), &new, dry_run, "that")
}
