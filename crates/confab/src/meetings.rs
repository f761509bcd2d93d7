//! `confab meeting`: meetings created for an organizer, listed, shown with their join
//! information and removed; dial-in regions and access numbers (the conferencing attendant's
//! prompts are spoken with espeak-ng and stored when a number is added). All of it is one
//! document in the deployment's database, checked whole before it is written; running servers
//! pick up every change within seconds.

use anyhow::Context;
use clap::Subcommand;
use confab_meetings::{Meeting, Meetings, MEETINGS_SETTING};

use crate::cli::{DataDirArg, TopologyArg, UsageError};

#[derive(Debug, Subcommand)]
pub(crate) enum MeetingCommand {
    /// Create a meeting for ORGANIZER and print how to join it.
    Create {
        /// The user who owns the meeting (user@domain): its address is in their domain.
        #[arg(long)]
        organizer: String,
        #[arg(long)]
        subject: Option<String>,
        /// Callers by phone must enter a PIN.
        #[arg(long)]
        pin_required: bool,
        #[command(flatten)]
        data: DataDirArg,
    },
    /// List the meetings: conference ID, organizer, subject.
    List {
        #[command(flatten)]
        data: DataDirArg,
    },
    /// Show how to join meeting ID.
    Show {
        id: String,
        #[command(flatten)]
        data: DataDirArg,
    },
    /// Remove meeting ID (participants in it now stay until they leave).
    Remove {
        id: String,
        #[command(flatten)]
        data: DataDirArg,
    },
    /// Show or change what holds for every meeting.
    Settings {
        /// The most participants one meeting admits.
        #[arg(long)]
        participant_limit: Option<usize>,
        /// Seconds without RTP from a participant after which they are taken for gone.
        #[arg(long)]
        media_timeout: Option<u64>,
        #[command(flatten)]
        data: DataDirArg,
    },
    /// Conference directories: ranges of conference IDs owned by a pool (new meetings of its
    /// users take their IDs there); moved whole with their meetings.
    #[command(subcommand)]
    Directory(DirectoryCommand),
    /// Dial-in regions: which dial plans' users get which access numbers in their meetings.
    #[command(subcommand)]
    Region(crate::meetings_dialin::RegionCommand),
    /// Dial-in access numbers: phone numbers the conferencing attendant answers.
    #[command(subcommand)]
    AccessNumber(crate::meetings_dialin::AccessNumberCommand),
}

#[derive(Debug, Subcommand)]
pub(crate) enum DirectoryCommand {
    /// Add a directory owned by POOL (the next free number; its range is printed).
    Add {
        #[arg(long)]
        pool: String,
        #[command(flatten)]
        deployment: TopologyArg,
    },
    /// List the directories: number, owner pool, range, meetings.
    List {
        #[command(flatten)]
        data: DataDirArg,
    },
    /// Give directory ID, with all its meetings, to pool TO: IDs and addresses stay.
    Move {
        id: u32,
        #[arg(long)]
        to: String,
        #[command(flatten)]
        deployment: TopologyArg,
    },
    /// Remove directory ID; refused while meetings are in it.
    Remove {
        id: u32,
        #[command(flatten)]
        data: DataDirArg,
    },
}

pub(crate) fn run(cmd: MeetingCommand) -> anyhow::Result<()> {
    match cmd {
        MeetingCommand::Create {
            organizer,
            subject,
            pin_required,
            data,
        } => {
            let store = crate::datadir::open_existing(&data)?;
            let organizer = confab_store::normalize_aor(&organizer)?;
            let Some(user) = store.user(&organizer)? else {
                return Err(UsageError(format!(
                    "organizer {organizer} is not a user (see `confab user list`)"
                ))
                .into());
            };
            let mut all = current(store.as_ref())?;
            let mut seed = [0u8; 8];
            getrandom::getrandom(&mut seed).context("no randomness for a conference ID")?;
            // in the directory of the organizer's pool, when directories are used
            let directory = user
                .pool
                .as_deref()
                .and_then(|p| all.directory_of(p))
                .cloned();
            let Some(id) = all.free_id(u64::from_le_bytes(seed), directory.as_ref()) else {
                return Err(UsageError(format!(
                    "conference directory {} is full; add another for the pool with `confab meeting directory add`",
                    directory.map_or(0, |d| d.id)
                ))
                .into());
            };
            let meeting = Meeting {
                id,
                organizer,
                subject,
                pin_required,
                directory: directory.map(|d| d.id),
            };
            all.add(meeting.clone()).map_err(UsageError)?;
            save(store.as_ref(), &all)?;
            println!("created meeting {}", meeting.id);
            print_join(store.as_ref(), &all, &meeting)?;
        }
        MeetingCommand::List { data } => {
            let store = crate::datadir::open_existing(&data)?;
            let all = current(store.as_ref())?;
            if all.meetings.is_empty() {
                println!("no meetings (create one with `confab meeting create --organizer USER`)");
            }
            for m in &all.meetings {
                println!(
                    "{}  {}  {}",
                    m.id,
                    m.organizer,
                    m.subject.as_deref().unwrap_or("(no subject)")
                );
            }
        }
        MeetingCommand::Show { id, data } => {
            let store = crate::datadir::open_existing(&data)?;
            let all = current(store.as_ref())?;
            print_join(store.as_ref(), &all, find(&all, &id)?)?;
        }
        MeetingCommand::Remove { id, data } => {
            let store = crate::datadir::open_existing(&data)?;
            let mut all = current(store.as_ref())?;
            find(&all, &id)?;
            all.remove(&id);
            save(store.as_ref(), &all)?;
            println!("removed meeting {id}");
        }
        MeetingCommand::Settings {
            participant_limit,
            media_timeout,
            data,
        } => {
            let store = crate::datadir::open_existing(&data)?;
            if participant_limit.is_some() || media_timeout.is_some() {
                change(store.as_ref(), |all| {
                    if let Some(n) = participant_limit {
                        if n == 0 {
                            return Err("--participant-limit must be at least 1".into());
                        }
                        all.settings.participant_limit = n;
                    }
                    if let Some(t) = media_timeout {
                        if t == 0 {
                            return Err("--media-timeout must be at least 1 second".into());
                        }
                        all.settings.media_timeout = t;
                    }
                    Ok(())
                })?;
            }
            let s = current(store.as_ref())?.settings;
            println!("participant limit: {}", s.participant_limit);
            println!("media time-out:    {} s", s.media_timeout);
        }
        MeetingCommand::Directory(cmd) => directory(cmd)?,
        MeetingCommand::Region(cmd) => crate::meetings_dialin::region(cmd)?,
        MeetingCommand::AccessNumber(cmd) => crate::meetings_dialin::access_number(cmd)?,
    }
    Ok(())
}

fn directory(cmd: DirectoryCommand) -> anyhow::Result<()> {
    match cmd {
        DirectoryCommand::Add { pool, deployment } => {
            let pool = crate::users::home_pool(Some(&pool), &deployment)?.unwrap_or(pool);
            let store = crate::datadir::open_existing(&deployment.data)?;
            let mut added = None;
            change(store.as_ref(), |all| {
                let id = (1..=confab_meetings::MAX_DIRECTORIES)
                    .find(|n| !all.directories.iter().any(|d| d.id == *n))
                    .ok_or("every directory number is taken")?;
                let d = confab_meetings::Directory {
                    id,
                    pool: pool.clone(),
                };
                added = Some(d.range());
                all.directories.push(d);
                Ok(())
            })?;
            if let Some((first, last)) = added {
                println!("added a directory for {pool}: conference IDs {first} to {last}");
            }
        }
        DirectoryCommand::List { data } => {
            let store = crate::datadir::open_existing(&data)?;
            let all = current(store.as_ref())?;
            for d in &all.directories {
                let (first, last) = d.range();
                let n = all
                    .meetings
                    .iter()
                    .filter(|m| m.directory == Some(d.id))
                    .count();
                println!("{}  {}  {first}-{last}  {n} meeting(s)", d.id, d.pool);
            }
        }
        DirectoryCommand::Move { id, to, deployment } => {
            let to = crate::users::home_pool(Some(&to), &deployment)?.unwrap_or(to);
            let store = crate::datadir::open_existing(&deployment.data)?;
            let mut moved = 0;
            change(store.as_ref(), |all| {
                let Some(d) = all.directories.iter_mut().find(|d| d.id == id) else {
                    return Err(format!(
                        "no directory {id} (see `confab meeting directory list`)"
                    ));
                };
                d.pool = to.clone();
                moved = all
                    .meetings
                    .iter()
                    .filter(|m| m.directory == Some(id))
                    .count();
                Ok(())
            })?;
            println!("directory {id} and its {moved} meeting(s) now belong to {to}");
        }
        DirectoryCommand::Remove { id, data } => {
            let store = crate::datadir::open_existing(&data)?;
            change(store.as_ref(), |all| {
                let used = all
                    .meetings
                    .iter()
                    .filter(|m| m.directory == Some(id))
                    .count();
                if used > 0 {
                    return Err(format!("directory {id} holds {used} meeting(s); move it instead, or remove them first"));
                }
                let missing = format!("no directory {id} (see `confab meeting directory list`)");
                crate::meetings_dialin::remove_one(&mut all.directories, |d| d.id == id, missing)
            })?;
            println!("removed directory {id}");
        }
    }
    Ok(())
}

/// Applies `edit` to the stored document, checks the result whole and writes it; nothing is
/// written when the edit or the check fails.
pub(crate) fn change(
    store: &dyn confab_store::Store,
    edit: impl FnOnce(&mut Meetings) -> Result<(), String>,
) -> anyhow::Result<()> {
    let mut all = current(store)?;
    edit(&mut all).map_err(UsageError)?;
    let problems = all.check();
    if !problems.is_empty() {
        let list: Vec<String> = problems.iter().map(|p| format!("  {p}")).collect();
        return Err(UsageError(format!(
            "{} problem(s); nothing was changed:\n{}",
            problems.len(),
            list.join("\n")
        ))
        .into());
    }
    save(store, &all)
}

fn find<'a>(all: &'a Meetings, id: &str) -> anyhow::Result<&'a Meeting> {
    all.get(id)
        .ok_or_else(|| UsageError(format!("no meeting {id} (see `confab meeting list`)")).into())
}

fn print_join(store: &dyn confab_store::Store, all: &Meetings, m: &Meeting) -> anyhow::Result<()> {
    println!("  organizer:      {}", m.organizer);
    if let Some(s) = &m.subject {
        println!("  subject:        {s}");
    }
    println!("  join (SIP):     {}", m.uri());
    println!("  conference ID:  {}", m.id);
    if let Some(d) = m
        .directory
        .and_then(|id| all.directories.iter().find(|d| d.id == id))
    {
        println!("  directory:      {} (pool {})", d.id, d.pool);
    }
    let numbers = match crate::meetings_dialin::dial_plan_of(store, &m.organizer)? {
        Some(plan) => all.numbers_for(&plan),
        None => Vec::new(),
    };
    if numbers.is_empty() {
        println!("  dial-in:        none for the organizer's region (`confab meeting access-number add`)");
    }
    for a in numbers {
        println!(
            "  dial-in:        {} ({})",
            a.display,
            a.languages.join(", ")
        );
    }
    println!(
        "  PIN by phone:   {}",
        if m.pin_required {
            "the organizer's (`confab user set --pin`)"
        } else {
            "not required"
        }
    );
    Ok(())
}

/// The deployment's meetings (none when nothing is stored).
pub(crate) fn current(store: &dyn confab_store::Store) -> anyhow::Result<Meetings> {
    let text = store.setting(MEETINGS_SETTING)?.unwrap_or_default();
    Meetings::from_toml(&text)
        .map_err(|e| anyhow::anyhow!("the stored meetings cannot be read: {e}"))
}

fn save(store: &dyn confab_store::Store, all: &Meetings) -> anyhow::Result<()> {
    store
        .set_setting(MEETINGS_SETTING, Some(&all.to_toml()))
        .context("cannot store the meetings")
}
