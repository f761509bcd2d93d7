//! `confab admin ...`: administrators of the API, their roles and tokens, and the audit log
//! of every change made through the API or the command line.

use clap::{Args, Subcommand};
use confab_admin::{audit, tokens, Actor, Role};

use crate::cli::{DataDirArg, UsageError};
use crate::datadir;
use crate::users::admin;

#[derive(Debug, Subcommand)]
pub(crate) enum AdminCommand {
    /// Adds an administrator (or sets the roles of one): roles are administrator,
    /// user-administrator, voice-administrator, helpdesk, view-only.
    Add {
        /// A name: letters, digits and - _ . @
        name: String,
        /// A role (repeat for several).
        #[arg(long = "role", required = true, value_parser = parse_role)]
        roles: Vec<Role>,
        #[command(flatten)]
        data: DataDirArg,
    },
    /// Makes an API token for an administrator; it is shown once (only its hash is kept).
    Token {
        name: String,
        /// How long it is valid, in days.
        #[arg(long, default_value_t = 90)]
        days: u32,
        #[command(flatten)]
        data: DataDirArg,
    },
    /// Revokes one token, by its id (see `confab admin list`).
    Revoke {
        id: String,
        #[command(flatten)]
        data: DataDirArg,
    },
    /// Removes an administrator and every token of theirs.
    Remove {
        name: String,
        #[command(flatten)]
        data: DataDirArg,
    },
    /// The administrators, their roles and their tokens (ids and expiry, never the tokens).
    List {
        #[command(flatten)]
        data: DataDirArg,
    },
    /// Every change made through the API or the command line: when, who, from where, what.
    Audit(AuditArgs),
}

#[derive(Debug, Args)]
pub(crate) struct AuditArgs {
    /// Only this administrator's changes (`cli:<login>` for the command line).
    #[arg(long)]
    who: Option<String>,
    /// As JSON lines.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    data: DataDirArg,
}

fn parse_role(s: &str) -> Result<Role, String> {
    Role::parse(s).ok_or_else(|| {
        let names: Vec<&str> = Role::ALL.iter().map(|r| r.name()).collect();
        format!("no role {s:?}: choose one of {}", names.join(", "))
    })
}

pub(crate) fn run(cmd: AdminCommand) -> anyhow::Result<()> {
    let me = Actor::console();
    match cmd {
        AdminCommand::Add { name, roles, data } => {
            let store = datadir::open_existing(&data)?;
            let a = tokens::add(store.as_ref(), &me, &name, &roles).map_err(admin)?;
            let roles: Vec<&str> = a.roles.iter().map(|r| r.name()).collect();
            println!(
                "administrator {} ({}); make a token with: confab admin token {}",
                a.name,
                roles.join(", "),
                a.name
            );
        }
        AdminCommand::Token { name, days, data } => {
            let store = datadir::open_existing(&data)?;
            let (token, rec) = tokens::issue(store.as_ref(), &me, &name, days).map_err(admin)?;
            println!("{token}");
            eprintln!(
                "token {} for {name}, valid {days} days: keep it secret, it is not shown again (send it as `Authorization: Bearer <token>`)",
                rec.id
            );
        }
        AdminCommand::Revoke { id, data } => {
            let store = datadir::open_existing(&data)?;
            tokens::revoke(store.as_ref(), &me, &id).map_err(admin)?;
            println!("token {id} revoked");
        }
        AdminCommand::Remove { name, data } => {
            let store = datadir::open_existing(&data)?;
            let n = tokens::remove(store.as_ref(), &me, &name).map_err(admin)?;
            println!("administrator {name} removed ({n} tokens revoked)");
        }
        AdminCommand::List { data } => {
            let store = datadir::open_existing(&data)?;
            let all = tokens::tokens(store.as_ref()).map_err(admin)?;
            for a in tokens::admins(store.as_ref()).map_err(admin)? {
                let roles: Vec<&str> = a.roles.iter().map(|r| r.name()).collect();
                println!("{}\t{}", a.name, roles.join(","));
                for t in all.iter().filter(|t| t.admin == a.name) {
                    println!(
                        "  token {}\texpires {}",
                        t.id,
                        confab_archive::time::format_ms(t.expires * 1000)
                    );
                }
            }
        }
        AdminCommand::Audit(args) => {
            let store = datadir::open_existing(&args.data)?;
            let entries =
                audit::entries(store.as_ref(), &me, args.who.as_deref()).map_err(admin)?;
            if entries.is_empty() && args.who.is_some() {
                return Err(UsageError("no changes by that administrator".into()).into());
            }
            for e in entries {
                if args.json {
                    println!("{}", serde_json::to_string(&e)?);
                } else {
                    println!(
                        "{}\t{}\t{}\t{}\t{}\t{}",
                        confab_archive::time::format_ms(e.at),
                        e.who,
                        e.from,
                        e.action,
                        e.target,
                        e.detail
                    );
                }
            }
        }
    }
    Ok(())
}
