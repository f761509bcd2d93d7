//! `confab meeting`: meetings created for an organizer, listed, shown with their join
//! information and removed. They are one document in the deployment's database; running
//! servers pick up every change within seconds.

use anyhow::Context;
use clap::Subcommand;
use confab_meetings::{Meeting, Meetings, MEETINGS_SETTING};

use crate::cli::{DataDirArg, UsageError};

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
            if store.user(&organizer)?.is_none() {
                return Err(UsageError(format!(
                    "organizer {organizer} is not a user (see `confab user list`)"
                ))
                .into());
            }
            let mut all = current(store.as_ref())?;
            let mut seed = [0u8; 8];
            getrandom::getrandom(&mut seed).context("no randomness for a conference ID")?;
            let meeting = Meeting {
                id: all.free_id(u64::from_le_bytes(seed)),
                organizer,
                subject,
                pin_required,
            };
            all.add(meeting.clone()).map_err(UsageError)?;
            save(store.as_ref(), &all)?;
            println!("created meeting {}", meeting.id);
            print_join(&meeting);
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
            print_join(find(&all, &id)?);
        }
        MeetingCommand::Remove { id, data } => {
            let store = crate::datadir::open_existing(&data)?;
            let mut all = current(store.as_ref())?;
            find(&all, &id)?;
            all.remove(&id);
            save(store.as_ref(), &all)?;
            println!("removed meeting {id}");
        }
    }
    Ok(())
}

fn find<'a>(all: &'a Meetings, id: &str) -> anyhow::Result<&'a Meeting> {
    all.get(id)
        .ok_or_else(|| UsageError(format!("no meeting {id} (see `confab meeting list`)")).into())
}

fn print_join(m: &Meeting) {
    println!("  organizer:      {}", m.organizer);
    if let Some(s) = &m.subject {
        println!("  subject:        {s}");
    }
    println!("  join (SIP):     {}", m.uri());
    println!("  conference ID:  {}", m.id);
    println!(
        "  PIN by phone:   {}",
        if m.pin_required {
            "required"
        } else {
            "not required"
        }
    );
}

/// The deployment's meetings (none when nothing is stored).
pub(crate) fn current(store: &dyn confab_store::Store) -> anyhow::Result<Meetings> {
    let text = store
        .settings(MEETINGS_SETTING)?
        .into_iter()
        .find(|(n, _)| n == MEETINGS_SETTING)
        .map(|(_, v)| v)
        .unwrap_or_default();
    Meetings::from_toml(&text)
        .map_err(|e| anyhow::anyhow!("the stored meetings cannot be read: {e}"))
}

fn save(store: &dyn confab_store::Store, all: &Meetings) -> anyhow::Result<()> {
    store
        .set_setting(MEETINGS_SETTING, Some(&all.to_toml()))
        .context("cannot store the meetings")
}
