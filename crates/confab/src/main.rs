//! `confab`: run a Front End (`confab up`), manage its users, and plan, check and serve the
//! deployment described by its topology file.

#![forbid(unsafe_code)]

mod admins;
mod archive;
mod archive_up;
mod cli;
mod contacts;
mod datadir;
mod deployment;
mod discover;
mod edge;
mod edge_av;
mod meetings;
mod meetings_dialin;
mod pki;
mod records;
mod remote;
mod rgs;
mod rgs_audio;
mod rgs_objects;
mod rgs_workflow;
mod up;
mod user_admin;
mod users;
mod voice;
mod voice_objects;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    quiet_on_closed_pipe();
    let cli = cli::Cli::parse();
    cli::init_logging(cli.log_format, cli.verbose);
    let result = match cli.command {
        cli::Command::Up(args) => up::run(*args),
        cli::Command::User(cmd) => users::run(cmd),
        cli::Command::Contacts(cmd) => contacts::contacts(cmd),
        cli::Command::Privacy(cmd) => contacts::privacy(cmd),
        cli::Command::Topology(cmd) => deployment::topology(cmd),
        cli::Command::Dns(cmd) => deployment::dns(cmd),
        cli::Command::Certs(cmd) => deployment::certs(cmd),
        cli::Command::Edge(edge::EdgeCommand::Prepare(args)) => edge::prepare(args),
        cli::Command::Edge(edge::EdgeCommand::TurnConfig(args)) => edge_av::turn_config(args),
        cli::Command::Edge(edge::EdgeCommand::RotateSecret(args)) => edge_av::rotate_secret(args),
        cli::Command::Discover(args) => discover::run(args),
        cli::Command::Pool(cmd) => users::pool(cmd),
        cli::Command::Voice(cmd) => voice::run(cmd),
        cli::Command::Rgs(cmd) => rgs::run(cmd),
        cli::Command::Meeting(cmd) => meetings::run(cmd),
        cli::Command::Archive(cmd) => archive::run(cmd),
        cli::Command::Cdr(cmd) => records::cdr(cmd),
        cli::Command::Report(cmd) => records::report(cmd),
        cli::Command::Admin(cmd) => admins::run(cmd),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("confab: error: {e:#}");
            // 64 (EX_USAGE) for anything the user can fix in what they asked for
            ExitCode::from(if e.downcast_ref::<cli::UsageError>().is_some() {
                64
            } else {
                1
            })
        }
    }
}

/// Output piped into a reader that stopped early (`confab dns zone | head`) ends the command
/// quietly with 141, the status of a process killed by SIGPIPE that shells expect, instead of
/// a panic: Rust ignores SIGPIPE, so printing to the closed pipe panics.
fn quiet_on_closed_pipe() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let text = payload
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| payload.downcast_ref::<&str>().copied())
            .unwrap_or_default();
        if text.contains("failed printing to stdout") && text.contains("Broken pipe") {
            std::process::exit(141);
        }
        default(info);
    }));
}
