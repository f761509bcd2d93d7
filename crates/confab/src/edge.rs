//! The Edge server: `confab up --fqdn <an Edge server>` runs the Access Edge (TLS for remote
//! users and partners on the topology's access address) and the inside listener (mutual TLS
//! with the deployment's CA), with no database and no users; `confab edge prepare` makes its
//! certificates on a server of the deployment, where the CA is.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use confab_core::{EdgeConfig, EngineConfig};
use confab_topology::Topology;
use sip_transport::Listeners;

use clap::{Args, Subcommand};

use crate::cli::{TopologyArg, UpArgs, UsageError};
use crate::up::uri_host;
use crate::{datadir, pki};

/// The Edge pool and server of the topology that `fqdn` names (a server's name, or the pool's
/// when it has a single server).
pub(crate) fn find<'t>(
    topology: &'t Topology,
    fqdn: &str,
) -> Option<(&'t confab_topology::Edge, &'t confab_topology::Server)> {
    topology.edges.iter().find_map(|e| {
        let server = e
            .servers
            .iter()
            .find(|s| s.fqdn == fqdn)
            .or_else(|| (e.fqdn == fqdn && e.servers.len() == 1).then(|| &e.servers[0]))?;
        Some((e, server))
    })
}

/// The Edge's certificate files in `dir` (made by `confab edge prepare`), checked.
fn certificates(dir: &Path, fqdn: &str) -> anyhow::Result<pki::Pki> {
    let pki = pki::Pki {
        ca: dir.join("ca.pem"),
        cert: dir.join("server.pem"),
        key: dir.join("server.key"),
        sni_dir: dir.join("certs"),
    };
    if !(pki.ca.exists() && pki.cert.exists() && pki.key.exists()) {
        return Err(UsageError(format!(
            "the Edge has no certificates in {}: on a server of the deployment run `confab edge prepare --fqdn {fqdn} --out DIR` (with its --database or --data-dir and --topology), copy DIR here and start again with --data-dir DIR",
            dir.display()
        ))
        .into());
    }
    Ok(pki)
}

/// `confab up` on an Edge server.
pub(crate) fn run(args: UpArgs, topology: Topology, dir: &Path) -> anyhow::Result<()> {
    let Some((edge, server)) = find(&topology, &args.fqdn) else {
        return Err(UsageError(format!("--fqdn {} is not an Edge server", args.fqdn)).into());
    };
    let Some(hop) = edge.next_hop.as_deref().and_then(|h| topology.pool(h)) else {
        return Err(UsageError(format!(
            "Edge {} has no next hop among the topology's pools: set next_hop to its Director or pool (see `confab topology validate`)",
            edge.fqdn
        ))
        .into());
    };
    if args.bind != server.address {
        return Err(UsageError(format!(
            "--bind {} is not the address of {} in the topology ({}): the inside reaches the Edge there",
            args.bind, server.fqdn, server.address
        ))
        .into());
    }
    let pki = certificates(dir, &server.fqdn)?;
    let access = SocketAddr::new(edge.access.address, edge.access.port.get());
    let federation = SocketAddr::new(edge.access.address, edge.federation_port.get());
    let inside = SocketAddr::new(server.address, edge.internal_port.get());
    // partners' certificates chain to the CAs the admin trusts for federation (by default
    // only the deployment's own)
    let trust = args
        .federation_trust
        .clone()
        .unwrap_or_else(|| pki.ca.clone());
    let partner_roots = move || pki::roots_from(&trust);
    let edge_cfg = EdgeConfig {
        access: vec![access, federation],
        access_host: uri_host(edge.access.address),
        access_port: edge.access.port.get(),
        federation_port: edge.federation_port.get(),
        next_hop: hop
            .servers
            .iter()
            .map(|s| SocketAddr::new(s.address, hop.tls_port.get()))
            .collect(),
        federation: topology.federation.clone(),
    };
    let cfg = EngineConfig {
        domains: topology.domains().map(str::to_owned).collect(),
        advertised_host: uri_host(server.address),
        udp_port: None,
        tcp_port: None,
        tls_port: Some(inside.port()),
        limits: sip_proto::Limits {
            max_message_size: args.max_message_size,
            ..Default::default()
        },
        server_name: args.server_header.clone(),
        peers: topology
            .pools
            .iter()
            .flat_map(|p| &p.servers)
            .map(|s| s.address.to_string())
            .collect(),
        instance_seed: crate::up::instance_seed()?,
        external_access: topology.external_access,
        edge: Some(edge_cfg),
        ..EngineConfig::default()
    };
    // the internet is on the other side: every address is limited, as at a Director
    let transport_cfg = sip_transport::Config {
        max_message_size: args.max_message_size,
        max_connections: args.max_connections,
        max_connections_per_source: args.max_connections_per_source.unwrap_or(50),
        idle_timeout: Duration::from_secs(args.idle_timeout),
        header_timeout: Duration::from_secs(args.header_timeout),
        per_source: Some(confab_dns::ratelimit::Limits {
            rate: f64::from(args.per_source_rate.unwrap_or(100)),
            burst: 2.0 * f64::from(args.per_source_rate.unwrap_or(100)),
            ..Default::default()
        }),
        ..Default::default()
    };
    let shards = crate::up::shard_count(&args);
    // no database: the engine's store is an empty one in memory (the Edge keeps no users,
    // registrations or presence)
    let stores = (0..shards)
        .map(|_| {
            confab_store::SqliteStore::in_memory()
                .map(|s| Box::new(s) as Box<dyn confab_store::Store>)
        })
        .collect::<Result<Vec<_>, _>>()?;
    let secret = edge_secret(dir)?;
    // the media relay (coturn) first: a missing coturn stops the start, nothing half-runs
    let av = crate::edge_av::start(&topology, edge, server, &pki, dir, args.av_external)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(shards.max(2))
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let bind = |addr: SocketAddr, side: &'static str| async move {
            tokio::net::TcpListener::bind(addr).await.with_context(|| {
                format!("cannot listen for the {side} on {addr} (TLS) — is another server using it, and is the address on this machine?")
            })
        };
        let listeners = Listeners {
            tls: vec![bind(inside, "inside").await?],
            tls_server: Some(pki::server_config(&pki)?),
            tls_client: Some(pki::client_config(&pki)?),
            tls_partner: if federation == access {
                vec![bind(access, "Access Edge").await?]
            } else {
                vec![
                    bind(access, "Access Edge").await?,
                    bind(federation, "Access Edge's federation port").await?,
                ]
            },
            partner_server: Some(pki::partner_server_config(&pki, partner_roots()?)?),
            partner_client: Some(pki::partner_client_config(&pki, partner_roots()?)?),
            ..Listeners::default()
        };
        let resolver = DnsPartners(confab_dns::federation::Finder::new(
            args.resolver,
            Duration::from_secs(3),
        ));
        println!("Confab Edge {} is running", server.fqdn);
        println!("  Access Edge  {access} (TLS) as {}, for remote users; {federation} for partners", edge.access.fqdn);
        println!("  Inside       {inside} (mutual TLS with the deployment's CA)");
        println!("  Next hop     {} ({})", hop.fqdn, cfg.edge.as_ref().map(|e| e.next_hop.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")).unwrap_or_default());
        println!(
            "  Federation   {:?}, partners found with {}",
            topology.federation.mode,
            args.resolver.map_or("the system's resolvers".to_owned(), |r| format!("DNS at {r}"))
        );
        tracing::info!(event = "server.ready", role = "edge", access = %access, inside = %inside, "Confab Edge is ready");
        tokio::spawn(confab_core::server::run(
            cfg,
            stores,
            listeners,
            transport_cfg,
            secret,
            Some(std::sync::Arc::new(resolver)),
            None,
            std::sync::Arc::new(confab_core::metrics::Metrics::new(&args.fqdn, "edge")),
            crate::up::shutdown_signal(),
        ))
        .await
        .context("the Edge stopped unexpectedly")??;
        drop(av);
        Ok(())
    })
}

/// `confab edge prepare`: the Edge's certificate (its inside name and address, the Access
/// Edge's names and address), issued by the deployment's CA, with that CA's certificate (not
/// its key) — what an Edge needs in its data dir.
pub(crate) fn prepare(args: EdgePrepareArgs) -> anyhow::Result<()> {
    let file = &crate::deployment::topology_path(&args.deployment)?;
    let topology = crate::deployment::load(file)?;
    let Some((edge, server)) = find(&topology, &args.fqdn) else {
        let names: Vec<&str> = topology
            .edges
            .iter()
            .flat_map(|e| &e.servers)
            .map(|s| s.fqdn.as_str())
            .collect();
        return Err(UsageError(format!(
            "{} is not an Edge server of {} (Edge servers: {})",
            args.fqdn,
            file.display(),
            if names.is_empty() {
                "none".into()
            } else {
                names.join(", ")
            }
        ))
        .into());
    };
    let store = datadir::open_existing(&args.deployment.data)?;
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create {}", args.out.display()))?;
    // the deployment's CA: the one the servers share in the database, else this data dir's
    let ca_dir = args.out.join(".ca");
    std::fs::create_dir_all(&ca_dir)?;
    let data_dir = datadir::resolve(&args.deployment.data)?;
    for f in ["ca.pem", "ca.key", "ca.subject"] {
        if data_dir.join(f).exists() {
            std::fs::copy(data_dir.join(f), ca_dir.join(f))?;
        }
    }
    let domain = topology
        .domains()
        .next()
        .unwrap_or("example.com")
        .to_owned();
    let result = (|| {
        pki::Authority::open_or_create(&ca_dir, &format!("Confab private CA for {domain}"))?;
        pki::adopt_shared_ca(store.as_ref(), &ca_dir)?;
        let ca = pki::Authority::open_or_create(&ca_dir, "unused")?;
        let mut names = confab_topology::names_pointing_at(&topology, &server.fqdn);
        let av = edge.av.as_ref().map(|a| &a.fqdn);
        for n in [&server.fqdn, &edge.fqdn, &edge.access.fqdn]
            .into_iter()
            .chain(av)
        {
            if !names.contains(n) {
                names.push(n.clone());
            }
        }
        let mut ips: Vec<IpAddr> = vec![server.address, edge.access.address];
        ips.extend(edge.av.as_ref().map(|a| a.address));
        ca.issue_to(
            &args.out.join("server.pem"),
            &args.out.join("server.key"),
            &server.fqdn,
            &names,
            &ips,
        )?;
        std::fs::copy(ca_dir.join("ca.pem"), args.out.join("ca.pem"))?;
        anyhow::Ok(names)
    })();
    let _ = std::fs::remove_dir_all(&ca_dir);
    let names = result?;
    println!(
        "{}: server.pem, server.key and ca.pem written to {} (names: {}; addresses {} and {})",
        server.fqdn,
        args.out.display(),
        names.join(", "),
        server.address,
        edge.access.address
    );
    println!(
        "Copy the directory to the Edge and run: confab up --fqdn {} --topology {} --bind {} --data-dir DIR",
        server.fqdn,
        file.display(),
        server.address
    );
    Ok(())
}

/// The Edge's own secret (its Record-Route seals, nonces it never issues), kept in the data
/// dir so that dialogs through the Edge survive its restart; made on first start.
fn edge_secret(dir: &Path) -> anyhow::Result<[u8; 32]> {
    let file = dir.join("edge-secret");
    if let Ok(text) = std::fs::read_to_string(&file) {
        let bytes: Vec<u8> = (0..text.trim().len() / 2)
            .filter_map(|i| u8::from_str_radix(text.trim().get(2 * i..2 * i + 2)?, 16).ok())
            .collect();
        if let Ok(secret) = <[u8; 32]>::try_from(bytes) {
            return Ok(secret);
        }
        anyhow::bail!(
            "{} is damaged: remove it to make a new one (dialogs in progress through this Edge end)",
            file.display()
        );
    }
    let mut secret = [0u8; 32];
    getrandom::getrandom(&mut secret).context("no randomness")?;
    let hex: String = secret.iter().map(|b| format!("{b:02x}")).collect();
    pki::write_private(&file, &hex)?;
    Ok(secret)
}

/// Partners' Access Edges found with DNS (`confab_dns::federation`).
struct DnsPartners(confab_dns::federation::Finder);

impl confab_core::PartnerResolver for DnsPartners {
    fn find(
        &self,
        domain: String,
        edge: Option<String>,
    ) -> std::pin::Pin<
        Box<
            dyn std::future::Future<
                    Output = Result<confab_core::PartnerEdge, confab_core::PartnerError>,
                > + Send,
        >,
    > {
        use confab_dns::federation::FindError;
        let finder = self.0.clone();
        Box::pin(async move {
            let found = finder.find(&domain, edge.as_deref()).await.map_err(|e| {
                let status = match e {
                    FindError::Refused(_) => 403,
                    FindError::NotFound(_) => 404,
                    FindError::Unanswered(_) => 504,
                };
                confab_core::PartnerError {
                    status,
                    reason: e.to_string(),
                }
            })?;
            tracing::info!(event = "edge.partner_found", partner = %domain, edge = %found.fqdn, addr = %found.addr, via = %found.via, "partner's Access Edge found");
            Ok(confab_core::PartnerEdge {
                fqdn: found.fqdn,
                addr: found.addr,
            })
        })
    }
}

#[derive(Debug, Subcommand)]
pub(crate) enum EdgeCommand {
    /// On a server of the deployment (where its CA is): issue an Edge server's certificate
    /// from the deployment's CA and write it with the CA's certificate (never its key) to OUT,
    /// the data dir to give that Edge.
    Prepare(EdgePrepareArgs),
    /// Print coturn's configuration for an Edge server's A/V service, for coturn run as a
    /// system service (then start the Edge with `confab up --av-external`).
    TurnConfig(crate::edge_av::TurnConfigArgs),
    /// Make a new media relay secret. Front Ends issue credentials with it once the Edges have
    /// it; credentials issued with the old one stay valid for the grace period (calls in
    /// progress go on), or are revoked at once with --revoke.
    RotateSecret(crate::edge_av::RotateSecretArgs),
}

#[derive(Debug, Args)]
pub(crate) struct EdgePrepareArgs {
    /// The Edge server's FQDN (a `[[edge.server]]` of the topology).
    #[arg(long)]
    pub(crate) fqdn: String,
    /// The directory to write server.pem, server.key and ca.pem to.
    #[arg(long)]
    pub(crate) out: PathBuf,
    #[command(flatten)]
    pub(crate) deployment: TopologyArg,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_edge_secret_is_made_once_and_kept() {
        let dir = std::env::temp_dir().join(format!("confab-edge-secret-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let first = edge_secret(&dir).unwrap();
        assert_eq!(edge_secret(&dir).unwrap(), first, "a restart keeps it");
        std::fs::write(dir.join("edge-secret"), "zz").unwrap();
        let err = edge_secret(&dir).unwrap_err().to_string();
        assert!(err.contains("is damaged: remove it"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
