//! `confab meeting region` and `confab meeting access-number`: dial-in conferencing — regions
//! over dial plans, the access numbers of each region (the attendant's prompts spoken with
//! espeak-ng and stored when a number is added), and which region's numbers a meeting lists.

use anyhow::Context;
use clap::Subcommand;
use confab_meetings::{AccessNumber, Region};

use crate::cli::{DataDirArg, UsageError};
use crate::meetings::{change, current};

#[derive(Debug, Subcommand)]
pub(crate) enum RegionCommand {
    /// Add region NAME holding dial plans (a dial plan belongs to one region).
    Add {
        name: String,
        #[arg(long = "dial-plan", required = true)]
        dial_plans: Vec<String>,
        #[command(flatten)]
        data: DataDirArg,
    },
    /// List the regions with their dial plans.
    List {
        #[command(flatten)]
        data: DataDirArg,
    },
    /// Remove region NAME; refused while an access number names it.
    Remove {
        name: String,
        #[command(flatten)]
        data: DataDirArg,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum AccessNumberCommand {
    /// Add access number NUMBER (E.164) for REGIONs; the attendant's prompts are spoken and
    /// stored (needs espeak-ng) when none are yet.
    Add {
        number: String,
        /// As invitations show it: "+1 (425) 555-0199".
        #[arg(long)]
        display: String,
        /// The attendant's languages, the first its default (en-US when none).
        #[arg(long = "language")]
        languages: Vec<String>,
        #[arg(long = "region", required = true)]
        regions: Vec<String>,
        #[command(flatten)]
        data: DataDirArg,
    },
    /// Change NUMBER: what is given replaces what was.
    Set {
        number: String,
        #[arg(long)]
        display: Option<String>,
        #[arg(long = "language")]
        languages: Vec<String>,
        #[arg(long = "region")]
        regions: Vec<String>,
        #[command(flatten)]
        data: DataDirArg,
    },
    /// List the access numbers with their languages and regions.
    List {
        #[command(flatten)]
        data: DataDirArg,
    },
    /// Remove access number NUMBER.
    Remove {
        number: String,
        #[command(flatten)]
        data: DataDirArg,
    },
}

pub(crate) fn region(cmd: RegionCommand) -> anyhow::Result<()> {
    match cmd {
        RegionCommand::Add {
            name,
            dial_plans,
            data,
        } => {
            let store = crate::datadir::open_existing(&data)?;
            let voice = crate::voice::current(store.as_ref())?;
            for p in &dial_plans {
                if !voice.dial_plans.iter().any(|d| d.name == *p) {
                    return Err(UsageError(format!(
                        "dial plan {p:?} does not exist (see `confab voice export`)"
                    ))
                    .into());
                }
            }
            change(store.as_ref(), |all| {
                all.regions.push(Region {
                    name: name.clone(),
                    dial_plans,
                });
                Ok(())
            })?;
            println!("added region {name}");
        }
        RegionCommand::List { data } => {
            let store = crate::datadir::open_existing(&data)?;
            for r in current(store.as_ref())?.regions {
                println!("{}  dial plans: {}", r.name, r.dial_plans.join(", "));
            }
        }
        RegionCommand::Remove { name, data } => {
            let store = crate::datadir::open_existing(&data)?;
            change(store.as_ref(), |all| {
                let missing = format!("no region {name:?} (see `confab meeting region list`)");
                remove_one(&mut all.regions, |r| r.name == name, missing)
            })?;
            println!("removed region {name}");
        }
    }
    Ok(())
}

pub(crate) fn access_number(cmd: AccessNumberCommand) -> anyhow::Result<()> {
    match cmd {
        AccessNumberCommand::Add {
            number,
            display,
            languages,
            regions,
            data,
        } => {
            let store = crate::datadir::open_existing(&data)?;
            if let Some(owner) = store.number_owner(&number)? {
                return Err(UsageError(format!(
                    "{number} is user {owner}'s number; give the attendant its own"
                ))
                .into());
            }
            let languages = if languages.is_empty() {
                vec!["en-US".to_owned()]
            } else {
                languages
            };
            change(store.as_ref(), |all| {
                all.access_numbers.push(AccessNumber {
                    number: number.clone(),
                    display,
                    languages,
                    regions,
                });
                Ok(())
            })?;
            store_prompts(store.as_ref())?;
            println!("added access number {number}");
        }
        AccessNumberCommand::Set {
            number,
            display,
            languages,
            regions,
            data,
        } => {
            let store = crate::datadir::open_existing(&data)?;
            change(store.as_ref(), |all| {
                let Some(a) = all.access_numbers.iter_mut().find(|a| a.number == number) else {
                    return Err(format!(
                        "no access number {number} (see `confab meeting access-number list`)"
                    ));
                };
                if let Some(d) = display {
                    a.display = d;
                }
                if !languages.is_empty() {
                    a.languages = languages;
                }
                if !regions.is_empty() {
                    a.regions = regions;
                }
                Ok(())
            })?;
            println!("changed access number {number}");
        }
        AccessNumberCommand::List { data } => {
            let store = crate::datadir::open_existing(&data)?;
            for a in current(store.as_ref())?.access_numbers {
                println!(
                    "{}  {}  languages: {}  regions: {}",
                    a.number,
                    a.display,
                    a.languages.join(", "),
                    a.regions.join(", ")
                );
            }
        }
        AccessNumberCommand::Remove { number, data } => {
            let store = crate::datadir::open_existing(&data)?;
            change(store.as_ref(), |all| {
                let missing =
                    format!("no access number {number} (see `confab meeting access-number list`)");
                remove_one(&mut all.access_numbers, |a| a.number == number, missing)
            })?;
            println!("removed access number {number}");
        }
    }
    Ok(())
}

/// Speaks and stores the attendant's prompts that are not stored yet.
fn store_prompts(store: &dyn confab_store::Store) -> anyhow::Result<()> {
    use base64::Engine as _;
    for (name, text) in confab_meetings::PROMPTS {
        let setting = format!("{}{name}", confab_meetings::PROMPT_PREFIX);
        if store.settings(&setting)?.iter().any(|(n, _)| *n == setting) {
            continue;
        }
        let wav = crate::rgs_audio::speak(text).map_err(UsageError)?;
        let clip = confab_media::Clip::from_wav(&wav)
            .map_err(|e| anyhow::anyhow!("espeak-ng's prompt cannot be read: {e}"))?;
        let b64 = base64::engine::general_purpose::STANDARD.encode(clip.ulaw());
        store
            .set_setting(&setting, Some(&b64))
            .context("cannot store the attendant's prompt")?;
    }
    Ok(())
}

/// The dial plan whose region's numbers `aor`'s meetings list: assigned, else the plan of the
/// user's pool, else the global one.
pub(crate) fn dial_plan_of(
    store: &dyn confab_store::Store,
    aor: &str,
) -> anyhow::Result<Option<String>> {
    let Some(user) = store.user(aor)? else {
        return Ok(None);
    };
    if user.voice.dial_plan.is_some() {
        return Ok(user.voice.dial_plan);
    }
    let voice = crate::voice::current(store)?;
    let pool = user.pool.map(confab_voice::Scope::Pool);
    let plan = pool
        .and_then(|p| voice.dial_plans.iter().find(|d| d.scope == p))
        .or_else(|| {
            voice
                .dial_plans
                .iter()
                .find(|d| d.scope == confab_voice::Scope::Global)
        });
    Ok(plan.map(|d| d.name.clone()))
}

/// Removes the items `gone` picks; `missing` when there was none.
pub(crate) fn remove_one<T>(
    items: &mut Vec<T>,
    gone: impl Fn(&T) -> bool,
    missing: String,
) -> Result<(), String> {
    let before = items.len();
    items.retain(|x| !gone(x));
    if items.len() == before {
        return Err(missing);
    }
    Ok(())
}
