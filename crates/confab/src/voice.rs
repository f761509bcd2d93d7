//! `confab voice`: the enterprise voice configuration (dial plans, PSTN usages, voice
//! policies, routes, trunks) as one document kept in the deployment's database: apply it from
//! a file (checked, all or nothing), export it, and test what a number normalizes to and how a
//! call to it would be routed — without a running server.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};
use confab_voice::{Placement, Voice, VoiceConfig};

use crate::cli::{DataDirArg, UsageError};

/// The setting the document is kept under (where running servers read it again).
const SETTING: &str = confab_core::VOICE_SETTING;

#[derive(Debug, Subcommand)]
pub(crate) enum VoiceCommand {
    /// Check FILE and make it the deployment's voice configuration: every problem is reported
    /// and nothing changes unless all is right. Prints each change.
    Apply {
        file: PathBuf,
        /// Report the changes without making them.
        #[arg(long)]
        dry_run: bool,
        #[command(flatten)]
        data: DataDirArg,
    },
    /// Print the deployment's voice configuration (the document `apply` reads).
    Export {
        #[command(flatten)]
        data: DataDirArg,
    },
    /// Check FILE without applying it.
    Check { file: PathBuf },
    /// Add one object (New-CsVoiceRoute, New-CsPstnUsage, ...): the whole configuration is
    /// checked with it, and nothing changes unless all is right.
    Add {
        #[command(subcommand)]
        object: crate::voice_objects::NewObject,
    },
    /// List the objects of a kind (or of every kind), in order.
    List {
        kind: Option<crate::voice_objects::Kind>,
        #[command(flatten)]
        data: DataDirArg,
    },
    /// Show one object as it is written in the configuration document.
    Show {
        kind: crate::voice_objects::Kind,
        name: String,
        #[command(flatten)]
        data: DataDirArg,
    },
    /// Remove one object; refused, naming what still uses it, when the rest would not pass
    /// the checks (a usage a policy lists, a trunk a route names).
    Remove {
        kind: crate::voice_objects::Kind,
        name: String,
        /// For a rule: the dial plan or trunk it belongs to.
        #[arg(long)]
        of: Option<String>,
        /// Report the change without making it.
        #[arg(long)]
        dry_run: bool,
        #[command(flatten)]
        data: DataDirArg,
    },
    /// What NUMBER normalizes to with a dial plan, and by which rule (Test-CsVoiceNormalizationRule).
    TestNumber {
        /// The dial plan (default: the one that applies to the placement given).
        #[arg(long)]
        dial_plan: Option<String>,
        number: String,
        #[command(flatten)]
        source: Source,
    },
    /// How a call to NUMBER would be routed: the normalized number, the voice policy, the
    /// usage, the routes and their trunks in the order tried, or exactly why there is no
    /// route (Test-CsVoiceRoute).
    TestRoute {
        /// The caller: their voice policy, dial plan and pool, and whether they have voice.
        #[arg(long, value_name = "ADDRESS", conflicts_with_all = ["policy", "dial_plan", "file"])]
        user: Option<String>,
        /// The caller's voice policy (default: the one for the caller's pool, site, or global).
        #[arg(long)]
        policy: Option<String>,
        /// The caller's dial plan (default: the one for the caller's pool, site, or global).
        #[arg(long)]
        dial_plan: Option<String>,
        number: String,
        #[command(flatten)]
        source: Source,
    },
}

/// A user's enterprise voice settings, for `confab user set`.
#[derive(Debug, Args)]
pub(crate) struct UserVoiceArgs {
    /// The user's number: tel:+14255550101 (optionally ;ext=101); `none` removes it. A number
    /// another user has is refused, naming that user.
    #[arg(long, value_name = "tel:+NUMBER|none")]
    line_uri: Option<String>,
    /// Enabled for enterprise voice: calls to and from the phone network.
    #[arg(long, value_name = "on|off")]
    voice: Option<OnOff>,
    /// The voice policy assigned to the user; `default`: the pool's, site's or global one.
    #[arg(long, value_name = "NAME|default")]
    voice_policy: Option<String>,
    /// The dial plan assigned to the user; `default`: the pool's, site's or global one.
    #[arg(long, value_name = "NAME|default")]
    dial_plan: Option<String>,
    /// Call forwarding and simultaneous ring, comma-separated: immediate=TARGET,
    /// simring=TARGET, noanswer=TARGET, noanswer-after=SECONDS (default 20), busy=TARGET,
    /// offline=TARGET; a TARGET is a user (sip:bob@example.com) or a number
    /// (tel:+14255550100); `none` removes them all.
    #[arg(long, value_name = "SETTINGS|none")]
    call_forwarding: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum OnOff {
    On,
    Off,
}

impl UserVoiceArgs {
    pub(crate) fn is_empty(&self) -> bool {
        self.line_uri.is_none()
            && self.voice.is_none()
            && self.voice_policy.is_none()
            && self.dial_plan.is_none()
            && self.call_forwarding.is_none()
    }
}

/// Applies `args` to `user`: what is not given stays; a policy or dial plan must exist in the
/// deployment's voice configuration.
pub(crate) fn set_user(
    store: &dyn confab_store::Store,
    user: &confab_store::User,
    args: &UserVoiceArgs,
) -> anyhow::Result<()> {
    let mut v = user.voice.clone();
    if let Some(uri) = &args.line_uri {
        v.line_uri = match uri.as_str() {
            "none" => None,
            text => Some(confab_voice::line_uri(text).map_err(UsageError)?),
        };
        let number = v
            .line_uri
            .as_deref()
            .map(|l| l.split(';').next().unwrap_or(l));
        let rgs = crate::rgs::current(store)?;
        if let Some(w) = rgs.workflows.iter().find(|w| {
            w.number
                .as_deref()
                .map(|n| n.split(';').next().unwrap_or(n))
                == number
                && number.is_some()
        }) {
            return Err(UsageError(format!(
                "{} is the number of response-group workflow {:?}; give the user another",
                number.unwrap_or_default(),
                w.name
            ))
            .into());
        }
    }
    if let Some(on) = args.voice {
        v.enabled = on == OnOff::On;
    }
    let config = current(store)?;
    let assigned = |name: &Option<String>, kind: &str, exists: &dyn Fn(&str) -> bool| {
        match name.as_deref() {
            None => Ok(None),
            Some("default") => Ok(Some(None)),
            Some(n) if exists(n) => Ok(Some(Some(n.to_owned()))),
            Some(n) => Err(UsageError(format!(
                "there is no {kind} {n:?} in the deployment's voice configuration (see `confab voice export`)"
            ))),
        }
    };
    if let Some(p) = assigned(&args.voice_policy, "voice policy", &|n| {
        config.policies.iter().any(|p| p.name == n)
    })? {
        v.voice_policy = p;
    }
    if let Some(p) = assigned(&args.dial_plan, "dial plan", &|n| {
        config.dial_plans.iter().any(|p| p.name == n)
    })? {
        v.dial_plan = p;
    }
    if let Some(text) = &args.call_forwarding {
        v.forwarding = match text.as_str() {
            "none" => None,
            text => {
                let f = confab_voice::Forwarding::parse(text)
                    .map_err(|e| UsageError(format!("--call-forwarding: {e}")))?;
                (!f.is_empty()).then(|| f.to_string())
            }
        };
    }
    if v.enabled && v.line_uri.is_none() {
        return Err(UsageError(format!(
            "{} has no Line URI: enterprise voice needs one (--line-uri tel:+NUMBER)",
            user.aor
        ))
        .into());
    }
    store
        .set_telephony(&user.aor, &v)
        .map_err(crate::users::usage)?;
    let or_default = |o: &Option<String>| o.clone().unwrap_or_else(|| "default".into());
    println!(
        "{}: line {}, enterprise voice {}, voice policy {}, dial plan {}, call forwarding {}",
        user.aor,
        v.line_uri.as_deref().unwrap_or("none"),
        if v.enabled { "on" } else { "off" },
        or_default(&v.voice_policy),
        or_default(&v.dial_plan),
        v.forwarding.as_deref().unwrap_or("none")
    );
    Ok(())
}

/// Where the configuration comes from, and where the caller sits.
#[derive(Debug, Args)]
pub(crate) struct Source {
    /// Read the configuration from this file instead of the database.
    #[arg(long)]
    file: Option<PathBuf>,
    /// The caller's site (for site-scoped dial plans, policies and emergency numbers).
    #[arg(long)]
    site: Option<String>,
    /// The caller's pool (FQDN; for pool-scoped dial plans and policies).
    #[arg(long)]
    pool: Option<String>,
    #[command(flatten)]
    data: DataDirArg,
}

pub(crate) fn run(cmd: VoiceCommand) -> anyhow::Result<()> {
    match cmd {
        VoiceCommand::Apply {
            file,
            dry_run,
            data,
        } => apply(&file, dry_run, &data),
        VoiceCommand::Add { object } => crate::voice_objects::add(object),
        VoiceCommand::List { kind, data } => crate::voice_objects::list(kind, &data),
        VoiceCommand::Show { kind, name, data } => crate::voice_objects::show(kind, &name, &data),
        VoiceCommand::Remove {
            kind,
            name,
            of,
            dry_run,
            data,
        } => crate::voice_objects::remove(kind, &name, of.as_deref(), dry_run, &data),
        VoiceCommand::Export { data } => {
            print!("{}", stored(&data)?.to_toml());
            Ok(())
        }
        VoiceCommand::Check { file } => {
            let v = checked(read(&file)?, &file.display().to_string())?;
            let c = v.config();
            println!(
                "{}: {} dial plans, {} PSTN usages, {} voice policies, {} routes, {} trunks: no problem found",
                file.display(),
                c.dial_plans.len(),
                c.usages.len(),
                c.policies.len(),
                c.routes.len(),
                c.trunks.len()
            );
            Ok(())
        }
        VoiceCommand::TestNumber {
            dial_plan,
            number,
            source,
        } => {
            let (voice, at) = source.load(dial_plan, None)?;
            let plan = voice.dial_plan_for(&at).map(|p| p.name.clone());
            let n = voice
                .normalize_with(plan.as_deref(), &number)
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            print_normalized(&number, &n);
            Ok(())
        }
        VoiceCommand::TestRoute {
            user,
            policy,
            dial_plan,
            number,
            source,
        } => match user {
            None => {
                let (voice, at) = source.load(dial_plan, policy)?;
                test_route(&voice, &at, &number, None)
            }
            Some(address) => {
                let store = crate::datadir::open_existing(&source.data)?;
                let Some(caller) = store.user(&address)? else {
                    return Err(UsageError(format!(
                        "no such user: {address} (see `confab user list`)"
                    ))
                    .into());
                };
                let (voice, mut at) = source.load(
                    caller.voice.dial_plan.clone(),
                    caller.voice.voice_policy.clone(),
                )?;
                at.pool = at.pool.or(caller.pool.clone());
                test_route(&voice, &at, &number, Some((store.as_ref(), &caller)))
            }
        },
    }
}

impl Source {
    fn load(
        &self,
        dial_plan: Option<String>,
        voice_policy: Option<String>,
    ) -> anyhow::Result<(Voice, Placement)> {
        let (config, origin) = match &self.file {
            Some(f) => (read(f)?, f.display().to_string()),
            None => (
                stored(&self.data)?,
                "the deployment's voice configuration".into(),
            ),
        };
        let voice = checked(config, &origin)?;
        let at = Placement {
            dial_plan,
            voice_policy,
            pool: self.pool.clone(),
            site: self.site.clone(),
        };
        if let Some(p) = &at.dial_plan {
            if !voice.config().dial_plans.iter().any(|d| &d.name == p) {
                return Err(UsageError(format!("there is no dial plan {p:?} in {origin}")).into());
            }
        }
        Ok((voice, at))
    }
}

fn print_normalized(dialled: &str, n: &confab_voice::Normalized) {
    println!("dialled       {dialled}");
    match (&n.plan, &n.rule) {
        (Some(p), Some(r)) => println!("dial plan     {p}, rule {r:?}"),
        (Some(p), None) => println!("dial plan     {p}: no rule needed, already E.164"),
        (None, _) => println!("dial plan     none applies: already E.164"),
    }
    let kind = if n.internal_extension {
        " (an internal extension)"
    } else {
        ""
    };
    println!("number        {}{kind}", n.number);
}

/// With `caller` (a user, and the store holding everyone's numbers): a number a colleague has
/// stays inside, and a caller without enterprise voice reaches only emergency numbers.
fn test_route(
    voice: &Voice,
    at: &Placement,
    dialled: &str,
    caller: Option<(&dyn confab_store::Store, &confab_store::User)>,
) -> anyhow::Result<()> {
    let (number, routing) = match voice.emergency(at, dialled) {
        Some((number, routing)) => {
            println!("dialled       {dialled}");
            println!("emergency     {number}: routed whatever the caller's voice policy");
            (number, routing)
        }
        None => {
            let n = voice
                .normalize(at, dialled)
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            print_normalized(dialled, &n);
            if let Some((store, _)) = caller {
                if let Some(owner) = store.number_owner(&format!("tel:{}", n.number))? {
                    println!("owner         {owner}: the call stays inside, no route needed");
                    return Ok(());
                }
            }
            if n.internal_extension {
                println!("route         none needed: an internal extension stays inside");
                return Ok(());
            }
            if let Some((_, user)) = caller.filter(|(_, u)| !u.voice.enabled) {
                anyhow::bail!(
                    "{} is not enabled for enterprise voice: only emergency numbers and colleagues are reachable",
                    user.aor
                );
            }
            let policy = voice.policy_for(at).map_err(|e| anyhow::anyhow!("{e}"))?;
            println!(
                "voice policy  {} (PSTN usages in order: {})",
                policy.name,
                policy.usages.join(", ")
            );
            let routing = voice
                .routes_for(at, &n.number)
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            (n.number, routing)
        }
    };
    if routing.candidates.is_empty() {
        anyhow::bail!("no route serves {number}");
    }
    for (i, c) in routing.candidates.iter().enumerate() {
        println!("{}. route {:?} (usage {})", i + 1, c.route, c.usage);
        for t in &c.trunks {
            let trunk = voice.config().trunks.iter().find(|x| &x.name == t);
            let gw = trunk.map_or(String::new(), |t| {
                format!(
                    "{}:{} {:?}",
                    t.gateway.host, t.gateway.port, t.gateway.transport
                )
                .to_lowercase()
            });
            println!(
                "   trunk {t:<14} gateway {gw:<28} called {}",
                voice.on_trunk(t, &number, false)
            );
        }
    }
    Ok(())
}

fn apply(file: &std::path::Path, dry_run: bool, data: &DataDirArg) -> anyhow::Result<()> {
    let new = checked(read(file)?, &file.display().to_string())?;
    let store = crate::datadir::open_existing(data)?;
    save(store.as_ref(), &new, dry_run, &file.display().to_string())
}

/// Makes `new` (checked) the deployment's voice configuration, printing each change (only
/// printing them with `dry_run`); running servers read it within seconds. `what` names it.
pub(crate) fn save(
    store: &dyn confab_store::Store,
    new: &Voice,
    dry_run: bool,
    what: &str,
) -> anyhow::Result<()> {
    let old = current(store)?;
    let changes = confab_voice::changes(&old, new.config());
    if changes.is_empty() {
        println!("no change: the deployment's voice configuration is already {what}");
        return Ok(());
    }
    for c in &changes {
        println!("{c}");
    }
    if dry_run {
        println!("{} change(s) not applied (--dry-run)", changes.len());
        return Ok(());
    }
    store
        .set_setting(SETTING, Some(&new.config().to_toml()))
        .context("cannot store the voice configuration")?;
    println!(
        "{} change(s) applied; running servers use them within seconds",
        changes.len()
    );
    Ok(())
}

/// The deployment's voice configuration (empty when none was applied).
fn stored(data: &DataDirArg) -> anyhow::Result<VoiceConfig> {
    let store = crate::datadir::open_existing(data)?;
    current(store.as_ref())
}

pub(crate) fn current(store: &dyn confab_store::Store) -> anyhow::Result<VoiceConfig> {
    let text = store.setting(SETTING)?.unwrap_or_default();
    VoiceConfig::from_toml(&text)
        .map_err(|e| anyhow::anyhow!("the stored voice configuration cannot be read: {e}"))
}

fn read(file: &std::path::Path) -> anyhow::Result<VoiceConfig> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| UsageError(format!("cannot read {}: {e}", file.display())))?;
    VoiceConfig::from_toml(&text).map_err(|e| UsageError(format!("{}: {e}", file.display())).into())
}

/// `config` checked; every problem listed, naming `origin`, when it is not right.
pub(crate) fn checked(config: VoiceConfig, origin: &str) -> anyhow::Result<Voice> {
    Voice::compile(config).map_err(|problems| {
        let list: Vec<String> = problems.iter().map(|p| format!("  {p}")).collect();
        UsageError(format!(
            "{origin} has {} problem(s); nothing was changed:\n{}",
            problems.len(),
            list.join("\n")
        ))
        .into()
    })
}
