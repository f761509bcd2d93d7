//! `confab discover`: the client's sign-in discovery, performed and narrated.

use std::time::Duration;

use confab_dns::discover::{self, Client, DiscoverError, Network, Options};

use crate::cli::{ClientArg, DiscoverArgs, UsageError, ViewArg};

pub(crate) fn run(args: DiscoverArgs) -> anyhow::Result<()> {
    let address = args
        .address
        .strip_prefix("sip:")
        .unwrap_or(&args.address)
        .to_ascii_lowercase();
    let Some((user, domain)) = address
        .split_once('@')
        .filter(|(u, d)| !u.is_empty() && d.contains('.'))
    else {
        return Err(UsageError(format!(
            "'{}' is not a SIP address: expected user@domain",
            args.address
        ))
        .into());
    };
    let opts = Options {
        client: match args.client {
            ClientArg::Legacy => Client::Legacy,
            ClientArg::Modern => Client::Modern,
        },
        network: match args.network {
            ViewArg::Internal => Network::Internal,
            ViewArg::External => Network::External,
        },
        dns: args.dns,
        allow_tcp: args.allow_tcp,
        web_port: args.web_port,
        timeout: Duration::from_secs(args.timeout.max(1)),
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let result = rt.block_on(discover::discover(user, domain, &opts, |step| {
        println!("{step}");
    }));
    match result {
        Ok(target) => {
            println!(
                "sign in to {}:{} ({}), found through {}",
                target.host, target.port, target.addr, target.via
            );
            Ok(())
        }
        Err(e @ DiscoverError::NotFound(_)) => {
            println!("{e}");
            Err(e.into())
        }
        Err(e) => Err(e.into()),
    }
}
