//! `confab`: run a Front End (`confab up`) and manage its users.

#![forbid(unsafe_code)]

mod cli;
mod datadir;
mod pki;
mod up;
mod users;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    cli::init_logging(cli.log_format, cli.verbose);
    let result = match cli.command {
        cli::Command::Up(args) => up::run(args),
        cli::Command::User(cmd) => users::run(cmd),
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
