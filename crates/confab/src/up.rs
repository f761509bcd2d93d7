//! `confab up`: first-start setup (data dir, CA, demo users), then the server until Ctrl-C or
//! SIGTERM.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use confab_core::EngineConfig;
use confab_store::Store;
use sip_transport::Listeners;

use crate::cli::{UpArgs, UsageError};
use crate::{datadir, pki};

const DEMO_USERS: [&str; 3] = ["alice", "bob", "carol"];

pub(crate) fn run(mut args: UpArgs) -> anyhow::Result<()> {
    if args.sip_port == u16::MAX {
        return Err(
            UsageError("--sip-port must leave room for TLS on the next port".into()).into(),
        );
    }
    if args.domain.is_empty()
        || !args
            .domain
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
    {
        return Err(UsageError(format!("--domain '{}' is not a domain name", args.domain)).into());
    }
    args.domain = args.domain.to_ascii_lowercase();
    if args.fqdn.is_empty() {
        args.fqdn = format!("pool01.{}", args.domain);
    }
    args.fqdn = args.fqdn.to_ascii_lowercase();
    let dir = datadir::resolve(&args.data)?;
    std::fs::create_dir_all(&dir)
        .with_context(|| format!("cannot create the data directory {}", dir.display()))?;
    let (topology, topology_file) = topology_for(&args, &dir)?;
    if crate::edge::find(&topology, &args.fqdn).is_some() {
        return crate::edge::run(args, topology, &dir);
    }
    let store = datadir::open_store(&args.data, &dir)?;
    // The certificate carries the planned names; what must verify is what DNS points here.
    let server_names = confab_topology::names_pointing_at(&topology, &args.fqdn);
    let planned = confab_topology::cert_plan(&topology)
        .into_iter()
        .find(|p| p.server == args.fqdn)
        .map_or_else(|| server_names.clone(), |p| p.sans);
    let mut pki = pki::ensure(&dir, args.bind, &args.domain, &planned)
        .context("cannot create the CA and server certificate")?;
    if topology
        .pools
        .iter()
        .map(|p| p.servers.len())
        .sum::<usize>()
        + topology.edges.len()
        > 1
        && pki::adopt_shared_ca(store.as_ref(), &dir)?
    {
        tracing::info!(
            event = "tls.shared_ca",
            "adopted the deployment's CA from the database; server certificate reissued"
        );
        pki = pki::ensure(&dir, args.bind, &args.domain, &planned)
            .context("cannot issue the server certificate from the deployment's CA")?;
    }
    let uncovered = pki::uncovered(&pki, &server_names)?;
    if !uncovered.is_empty() {
        tracing::warn!(
            event = "tls.name_not_covered",
            names = %uncovered.join(", "),
            certificate = %pki.cert.display(),
            "DNS points these names at this server but its certificate does not cover them: TLS clients that use them will refuse to connect; issue a certificate with `confab certs issue` or put one under {}",
            pki.sni_dir.display()
        );
    }
    let (homing, local_pool) = homing(&topology, &args.fqdn)?;
    let director = topology
        .pool_of(&args.fqdn)
        .is_some_and(|p| !p.hosts_users());
    if let (None, Some(pool)) = (&homing, &local_pool) {
        // one pool for everyone: users from before home pools existed live here
        let n = store.home_unhomed(pool)?;
        if n > 0 {
            tracing::info!(event = "users.homed", count = n, pool = %pool, "users without a home pool homed on this pool");
        }
    }
    let demo = if args.no_demo_users {
        Vec::new()
    } else {
        ensure_demo_users(store.as_ref(), &dir, &args.domain, local_pool.as_deref())?
    };

    if topology.edges.iter().any(|e| e.av.is_some()) {
        crate::edge_av::ensure_secret(store.as_ref(), crate::edge_av::unix_now())?;
    }
    let shards = shard_count(&args);
    // one store handle per shard, all on the same connection (one outage, one recovery,
    // whichever shard asks; no SQLite writer waiting on another's file lock)
    let mut stores = vec![store];
    for _ in 1..shards {
        let handle = match stores[0].handle() {
            Some(h) => h,
            None => datadir::open_store(&args.data, &dir)?,
        };
        stores.push(handle);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(shards.max(2))
        .enable_all()
        .build()?;
    let site = Site {
        topology: std::sync::Arc::new(topology),
        topology_file,
        pki,
        demo,
        database: stores[0].describe(),
        director,
        homing,
    };
    runtime.block_on(serve(args, stores, site, &dir))
}

/// This server's pool (by `--fqdn`: the pool's name or one of its servers') and the home-pool
/// rules; no rules when one pool hosts every user and no Director takes sign-ins.
fn homing(
    topology: &confab_topology::Topology,
    fqdn: &str,
) -> anyhow::Result<(Option<confab_core::Homing>, Option<String>)> {
    let Some(mine) = topology.pool_of(fqdn) else {
        let names: Vec<&str> = topology.pools.iter().map(|p| p.fqdn.as_str()).collect();
        return Err(UsageError(format!(
            "--fqdn {fqdn} is neither a pool nor a server of the topology (pools: {})",
            names.join(", ")
        ))
        .into());
    };
    let local = mine.hosts_users().then(|| mine.fqdn.clone());
    if !topology.has_home_pools() {
        return Ok((None, local));
    }
    let pools = topology
        .user_pools()
        .map(|p| {
            let home = confab_core::HomePool {
                sip_port: p.sip_port.get(),
                tls_port: p.tls_port.get(),
                backup: p.backup.clone(),
                servers: p.servers.iter().map(|s| s.address.to_string()).collect(),
            };
            (p.fqdn.clone(), home)
        })
        .collect();
    let homing = confab_core::Homing {
        local_pool: local.clone(),
        pools,
        edges: topology
            .edges
            .iter()
            .flat_map(|e| &e.servers)
            .map(|s| s.address.to_string())
            .collect(),
    };
    Ok((Some(homing), local))
}

/// Engines to run: `--shards`, else one per core (at most 64).
pub(crate) fn shard_count(args: &UpArgs) -> usize {
    args.shards.map_or_else(
        || std::thread::available_parallelism().map_or(1, |n| n.get().min(64)),
        usize::from,
    )
}

/// Random per process (`EngineConfig::instance_seed`).
pub(crate) fn instance_seed() -> anyhow::Result<u64> {
    let mut seed = [0u8; 8];
    getrandom::getrandom(&mut seed).context("no randomness")?;
    Ok(u64::from_le_bytes(seed))
}

/// An address as a URI or Via host: IPv6 in brackets.
pub(crate) fn uri_host(ip: std::net::IpAddr) -> String {
    match ip {
        std::net::IpAddr::V6(v6) => format!("[{v6}]"),
        std::net::IpAddr::V4(v4) => v4.to_string(),
    }
}

/// What `confab up` serves besides SIP, decided before the runtime starts.
struct Site {
    topology: std::sync::Arc<confab_topology::Topology>,
    topology_file: std::path::PathBuf,
    pki: pki::Pki,
    demo: Vec<(String, String)>,
    /// Where the data is (for the banner).
    database: String,
    /// Home pools, in a deployment with more than one place for users.
    homing: Option<confab_core::Homing>,
    /// This server is a Director (hosts no users, takes the floods).
    director: bool,
}

/// The topology given with --topology, or the single-server one, written anew into the data
/// dir on every start so that it always matches the flags.
fn topology_for(
    args: &UpArgs,
    dir: &Path,
) -> anyhow::Result<(confab_topology::Topology, std::path::PathBuf)> {
    if let Some(file) = &args.topology {
        return Ok((crate::deployment::load(file)?, file.clone()));
    }
    let text = confab_topology::single_server_toml(
        &args.domain,
        &args.fqdn,
        args.bind,
        args.sip_port,
        args.sip_port + 1,
    );
    let file = dir.join("topology.toml");
    std::fs::write(&file, &text).with_context(|| format!("cannot write {}", file.display()))?;
    let topology = confab_topology::load(&text, &file.display().to_string())
        .map_err(|e| anyhow::anyhow!("the generated topology does not load (a bug): {e}"))?;
    Ok((topology, file))
}

async fn serve(
    args: UpArgs,
    stores: Vec<Box<dyn Store>>,
    site: Site,
    dir: &Path,
) -> anyhow::Result<()> {
    let pki = &site.pki;
    let sip = SocketAddr::new(args.bind, args.sip_port);
    let tls = SocketAddr::new(args.bind, args.sip_port + 1);
    let busy = |what: &str, addr: SocketAddr| {
        format!("cannot listen on {what} {addr} — is another SIP server running? Pick other ports with --sip-port")
    };
    let mut listeners = Listeners {
        udp: Vec::new(),
        tcp: Vec::new(),
        tls: Vec::new(),
        tls_server: Some(pki::server_config(pki)?),
        tls_client: Some(pki::client_config(pki)?),
        // TLS trunks: a gateway's certificate must chain to these and name its host
        partner_client: Some(pki::partner_client_config(
            pki,
            pki::roots_from(args.gateway_trust.as_deref().unwrap_or(&pki.ca))?,
        )?),
        ..Listeners::default()
    };
    let on = |t: &str| args.transports.iter().any(|x| x == t);
    for ip in std::iter::once(args.bind).chain(args.bind6) {
        let (sip, tls) = (
            SocketAddr::new(ip, args.sip_port),
            SocketAddr::new(ip, args.sip_port + 1),
        );
        if on("udp") {
            let socks =
                sip_transport::bind_udp(sip, stores.len()).with_context(|| busy("UDP", sip))?;
            listeners.udp.resize_with(socks.len(), Vec::new);
            for (shard, sock) in socks.into_iter().enumerate() {
                listeners.udp[shard].push(sock);
            }
        }
        if on("tcp") {
            listeners.tcp.push(
                tokio::net::TcpListener::bind(sip)
                    .await
                    .with_context(|| busy("TCP", sip))?,
            );
        }
        if on("tls") {
            listeners.tls.push(
                tokio::net::TcpListener::bind(tls)
                    .await
                    .with_context(|| busy("TLS", tls))?,
            );
        }
    }
    // the other servers of the deployment, by the addresses they put in Via
    let peers: Vec<String> = site
        .topology
        .pools
        .iter()
        .flat_map(|p| &p.servers)
        .map(|s| s.address)
        .filter(|a| *a != args.bind)
        .map(|a| a.to_string())
        .collect();
    let cfg = EngineConfig {
        domains: vec![args.domain.to_ascii_lowercase()],
        advertised_host: uri_host(args.bind),
        advertised_host6: args.bind6.map(uri_host),
        udp_port: on("udp").then_some(args.sip_port),
        tcp_port: on("tcp").then_some(args.sip_port),
        tls_port: on("tls").then_some(args.sip_port + 1),
        digest_over_plain: args.digest_over_plain,
        limits: sip_proto::Limits {
            max_message_size: args.max_message_size,
            ..Default::default()
        },
        min_expires: args.min_expires,
        digest_algorithms: args.digest_algorithms.clone(),
        lockout: sip_auth::Policy {
            failures: args.lockout_failures,
            ceiling: args.lockout_user_ceiling,
            window: Duration::from_secs(args.lockout_window),
            lock_for: Duration::from_secs(args.lockout_seconds),
            familiar_for: Duration::from_secs(args.lockout_familiar_days.saturating_mul(86_400)),
        },
        server_name: args.server_header.clone(),
        presence: confab_core::PresenceConfig {
            max_body: args.presence_max_body,
            min_expires: args.presence_min_expires,
            max_subscriptions: args.presence_max_subscriptions,
            subscribe_rate: args.presence_subscribe_rate,
            subscribe_burst: args.presence_subscribe_rate.saturating_mul(10),
            ..Default::default()
        },
        homing: site.homing.clone(),
        server_id: if peers.is_empty() {
            String::new()
        } else {
            sip.to_string()
        },
        peers,
        instance_seed: instance_seed()?,
        external_access: site.topology.external_access,
        edge_servers: (site.topology.edges.iter())
            .flat_map(|e| &e.servers)
            .map(|s| s.address)
            .collect(),
        media_relays: site
            .topology
            .media_relay(&args.domain)
            .map(|r| (args.domain.to_ascii_lowercase(), r))
            .into_iter()
            .collect(),
        federation_edges: if site.topology.federation.enabled() {
            site.topology
                .edges
                .iter()
                .flat_map(|e| {
                    e.servers
                        .iter()
                        .map(|s| SocketAddr::new(s.address, e.internal_port.get()))
                })
                .collect()
        } else {
            Vec::new()
        },
        pool_sites: (site.topology.pools.iter())
            .map(|p| (p.fqdn.clone(), p.site.clone()))
            .collect(),
        gateway_probe: Duration::from_secs(args.gateway_probe),
        media_address: args.media_address.unwrap_or(args.bind),
        media_ports: args.media_ports,
        ..EngineConfig::default()
    };
    let transport_cfg =
        sip_transport::Config {
            max_message_size: args.max_message_size,
            max_connections: args.max_connections,
            max_connections_per_source: args
                .max_connections_per_source
                .unwrap_or(if site.director { 50 } else { 0 }),
            idle_timeout: Duration::from_secs(args.idle_timeout),
            header_timeout: Duration::from_secs(args.header_timeout),
            per_source: match args
                .per_source_rate
                .unwrap_or(if site.director { 100 } else { 0 })
            {
                0 => None,
                rate => Some(confab_dns::ratelimit::Limits {
                    rate: f64::from(rate),
                    burst: 2.0 * f64::from(rate),
                    ..Default::default()
                }),
            },
            overload_per_source: match args.overload_per_source_rate {
                0 => None,
                rate => Some(confab_dns::ratelimit::Limits {
                    rate: f64::from(rate),
                    burst: 2.0 * f64::from(rate),
                    max_sources: 100_000,
                }),
            },
            ..Default::default()
        };
    // shared by every server of the deployment: a nonce from one is good at another, and a
    // request another server forwarded carries a seal this one can check
    let secret = stores[0]
        .deployment_secret()
        .context("cannot read the deployment secret from the database")?;

    let dns = match args.dns.0 {
        Some(addr) => {
            let zones = site.topology.zones(confab_topology::View::Internal);
            let server = confab_dns::server::start(&zones, addr, Default::default())
                .await
                .with_context(|| format!("cannot start the DNS server on {addr} — pick another with --dns ADDR:PORT, or --dns off"))?;
            Some(server)
        }
        None => None,
    };
    let pool = (site.topology.pools.iter())
        .find(|p| {
            p.servers
                .iter()
                .any(|s| s.fqdn.eq_ignore_ascii_case(&args.fqdn))
        })
        .map_or("", |p| p.fqdn.as_str());
    let metrics = std::sync::Arc::new(confab_core::metrics::Metrics::new(&args.fqdn, pool));
    let web = if args.web_port == 0 {
        None
    } else {
        let addr = SocketAddr::new(args.bind, args.web_port);
        let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| {
            format!("cannot listen for the web front-end on {addr} — pick another port with --web-port, or 0 for none")
        })?;
        let state = std::sync::Arc::new(confab_web::WebState {
            topology: site.topology.clone(),
            store: std::sync::Mutex::new(datadir::open_store(&args.data, dir)?),
            plain_api: site.topology.tls_offloaded(&args.fqdn),
            metrics: Some({
                let m = metrics.clone();
                std::sync::Arc::new(move || m.render())
            }),
        });
        let tls = pki::web_server_config(&site.pki)?;
        tokio::spawn(async move {
            if let Err(e) =
                confab_web::serve(listener, Some(tls), state, std::future::pending()).await
            {
                tracing::error!(error = %e, "web front-end stopped");
            }
        });
        Some(addr)
    };

    print_banner(
        &args,
        &site,
        dir,
        sip,
        tls,
        dns.as_ref().map(|d| d.local_addr),
        web,
    );
    tracing::info!(event = "server.ready", udp = %sip, tcp = %sip, tls = %tls, domain = %args.domain, "Confab is ready");
    // a task of the runtime, not the thread blocked on it: the socket readiness that wakes
    // the engine is then seen on the worker that runs it
    let archive = crate::archive_up::start_for_up(&args.data, &args.archive, dir)?;
    tokio::spawn(confab_core::server::run(
        cfg,
        stores,
        listeners,
        transport_cfg,
        secret,
        None,
        Some(archive),
        metrics,
        shutdown_signal(),
    ))
    .await
    .context("the SIP server stopped unexpectedly")??;
    Ok(())
}

pub(crate) async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {},
        () = term => {},
    }
    tracing::info!(event = "server.stopping", "shutting down");
}

/// On first start (no users yet) creates alice, bob and carol with random passwords and keeps
/// them in demo-users.txt (mode 0600) so that they can be read again.
fn ensure_demo_users(
    store: &dyn Store,
    dir: &Path,
    domain: &str,
    pool: Option<&str>,
) -> anyhow::Result<Vec<(String, String)>> {
    let file = dir.join("demo-users.txt");
    if store.list_users()?.is_empty() {
        let mut lines = String::new();
        for u in DEMO_USERS {
            let aor = format!("{u}@{domain}");
            let pw = random_password()?;
            store.add_user(&aor, &pw, pool)?;
            lines.push_str(&format!("{aor} {pw}\n"));
        }
        pki::write_private(&file, &lines)?;
    }
    let text = std::fs::read_to_string(&file).unwrap_or_default();
    Ok(text
        .lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(a, p)| (a.to_owned(), p.to_owned()))
        .collect())
}

fn random_password() -> anyhow::Result<String> {
    const ALPHABET: &[u8] = b"abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut raw = [0u8; 14];
    getrandom::getrandom(&mut raw).context("no randomness for passwords")?;
    Ok(raw
        .iter()
        .map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char)
        .collect())
}

fn print_banner(
    args: &UpArgs,
    site: &Site,
    dir: &Path,
    sip: SocketAddr,
    tls: SocketAddr,
    dns: Option<SocketAddr>,
    web: Option<SocketAddr>,
) {
    let (pki, demo) = (&site.pki, &site.demo);
    println!(
        "Confab is running for domain {} as {}",
        args.domain, args.fqdn
    );
    println!("  SIP       {sip} (UDP and TCP), {tls} (TLS)");
    if let Some(dns) = dns {
        println!(
            "  DNS       {dns} (try: dig @{} -p {} _sipinternaltls._tcp.{} SRV)",
            dns.ip(),
            dns.port(),
            args.domain
        );
    }
    if let Some(web) = web {
        println!("  Web       http://{web}/autodiscover/autodiscoverservice.svc/root?sipuri=sip:alice@{}", args.domain);
        println!("  API       https://{web}/api/v1/openapi.json (tokens: confab admin add NAME --role administrator; confab admin token NAME)");
    }
    println!("  Topology  {}", site.topology_file.display());
    println!(
        "  TLS CA    {}   (make TLS clients trust this file)",
        pki.ca.display()
    );
    println!("  Data      {}", dir.display());
    println!("  Database  {}", site.database);
    if !demo.is_empty() {
        println!("  Demo users (address, password):");
        for (a, p) in demo {
            println!("    {a:<28} {p}");
        }
    }
    println!("Sign in with any SIP client: user name and password above, domain {}, outbound proxy {sip}.", args.domain);
    println!(
        "Add users with: confab user add name@{} --password ... --data-dir {}",
        args.domain,
        dir.display()
    );
    println!("Press Ctrl-C to stop.");
}
