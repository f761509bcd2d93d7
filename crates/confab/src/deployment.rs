//! `confab topology`, `confab dns` and `confab certs`: the deployment described by the
//! topology file, checked, rendered as DNS zones and certificate plans, and served.

use std::path::{Path, PathBuf};

use anyhow::Context;
use confab_topology::{Topology, View};

use crate::cli::{CertsCommand, DnsCommand, TopologyArg, TopologyCommand, UsageError, ViewArg};
use crate::{datadir, pki};

/// Reads and strictly parses a topology file. A malformed file is a usage error (exit 64)
/// whose message names file, line and key.
pub(crate) fn load(path: &Path) -> anyhow::Result<Topology> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| UsageError(format!("cannot read topology file {}: {e}", path.display())))?;
    confab_topology::load(&text, &path.display().to_string())
        .map_err(|e| UsageError(format!("invalid topology: {e}")).into())
}

pub(crate) fn topology_path(arg: &TopologyArg) -> anyhow::Result<PathBuf> {
    match &arg.topology {
        Some(p) => Ok(p.clone()),
        None => {
            let path = datadir::resolve(&arg.data)?.join("topology.toml");
            if !path.exists() {
                return Err(UsageError(format!(
                    "no topology at {} — pass --topology FILE, or run `confab up` once to write the single-server one",
                    path.display()
                ))
                .into());
            }
            Ok(path)
        }
    }
}

/// The topology `--topology` names, else the data dir's when `confab up` wrote one, else none.
pub(crate) fn load_if_any(arg: &TopologyArg) -> anyhow::Result<Option<Topology>> {
    if arg.topology.is_none() {
        let in_data = datadir::resolve(&arg.data)?.join("topology.toml");
        if !in_data.exists() {
            return Ok(None);
        }
    }
    load(&topology_path(arg)?).map(Some)
}

/// Adds `[[pool.server]]` FQDN/ADDRESS to POOL in the topology file, keeping the rest of the
/// file as written; refuses what would make it invalid (unknown pool, a name or address in
/// use). The file is replaced in one rename.
pub(crate) fn add_server(
    file: &Path,
    pool: &str,
    fqdn: &str,
    address: std::net::IpAddr,
) -> anyhow::Result<()> {
    let topology = load(file)?;
    let pool = pool.trim_end_matches('.').to_ascii_lowercase();
    let fqdn = fqdn.trim_end_matches('.').to_ascii_lowercase();
    if topology.pool(&pool).is_none() {
        return Err(UsageError(format!("no pool {pool} in {}", file.display())).into());
    }
    let servers = topology.pools.iter().flat_map(|p| &p.servers);
    if let Some(s) = servers
        .clone()
        .find(|s| s.fqdn == fqdn || s.address == address)
    {
        return Err(UsageError(format!(
            "{} ({}) is already a server of the topology",
            s.fqdn, s.address
        ))
        .into());
    }
    let text = std::fs::read_to_string(file)?;
    let lines: Vec<&str> = text.lines().collect();
    // the pool's section: from its [[pool]] header to the next header outside it
    let mut table = "";
    let mut in_pool = false;
    let mut end = None;
    for (i, line) in lines.iter().enumerate() {
        let t = line.trim();
        if t.starts_with('[') {
            table = t.trim_matches(['[', ']']).trim();
            if in_pool && !table.starts_with("pool.") {
                end = Some(i);
                break;
            }
        } else if table == "pool" && !in_pool {
            let value = t.strip_prefix("fqdn").map(|v| v.trim_start());
            in_pool = value
                .and_then(|v| v.strip_prefix('='))
                .is_some_and(|v| v.trim().trim_matches('"').eq_ignore_ascii_case(&pool));
        }
    }
    let end = end.unwrap_or(lines.len());
    let mut out: Vec<String> = lines[..end].iter().map(|l| (*l).to_owned()).collect();
    while out.last().is_some_and(|l| l.trim().is_empty()) {
        out.pop();
    }
    out.push("[[pool.server]]".into());
    out.push(format!("fqdn = \"{fqdn}\""));
    out.push(format!("address = \"{address}\""));
    out.push(String::new());
    out.extend(lines[end..].iter().map(|l| (*l).to_owned()));
    let new_text = out.join("\n") + "\n";
    let checked = confab_topology::load(&new_text, &file.display().to_string())
        .map_err(|e| anyhow::anyhow!("the changed topology would not load (a bug): {e}"))?;
    let added = checked
        .pool(&pool)
        .is_some_and(|p| p.servers.iter().any(|s| s.fqdn == fqdn));
    anyhow::ensure!(added, "the server did not land in {pool} (a bug)");
    let tmp = file.with_extension("toml.new");
    std::fs::write(&tmp, new_text).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, file).with_context(|| format!("cannot replace {}", file.display()))?;
    Ok(())
}

fn view(v: ViewArg) -> View {
    match v {
        ViewArg::Internal => View::Internal,
        ViewArg::External => View::External,
    }
}

pub(crate) fn topology(cmd: TopologyCommand) -> anyhow::Result<()> {
    match cmd {
        TopologyCommand::Show { file } => {
            let t = load(&file)?;
            print!("{}", confab_admin::deployment::view(&t).to_text());
            Ok(())
        }
        TopologyCommand::Validate { file } => {
            let text = std::fs::read_to_string(&file)
                .map_err(|e| UsageError(format!("cannot read {}: {e}", file.display())))?;
            let v = confab_admin::deployment::validate(&text, &file.display().to_string())
                .map_err(crate::users::admin)?;
            for f in &v.findings {
                println!("{}[{}] {}: {}", f.severity, f.rule, f.subject, f.what);
                println!("    breaks: {}", f.breaks);
                println!("    fix:    {}", f.fix);
            }
            println!(
                "{}: {} error(s), {} warning(s)",
                file.display(),
                v.errors,
                v.warnings
            );
            if v.errors > 0 {
                anyhow::bail!(
                    "{} does not validate: {} error(s)",
                    file.display(),
                    v.errors
                );
            }
            Ok(())
        }
    }
}

pub(crate) fn dns(cmd: DnsCommand) -> anyhow::Result<()> {
    match cmd {
        DnsCommand::Zone {
            topology,
            view: v,
            zone,
            out,
        } => {
            let t = load(&topology_path(&topology)?)?;
            let serial = 1;
            let zones: Vec<_> = t
                .zones(view(v))
                .into_iter()
                .filter(|z| {
                    zone.as_deref()
                        .is_none_or(|want| z.origin.eq_ignore_ascii_case(want))
                })
                .collect();
            if zones.is_empty() {
                return Err(UsageError(match zone {
                    Some(z) => format!("the topology has no zone {z}"),
                    None => "the topology implies no DNS records".into(),
                })
                .into());
            }
            let label = match v {
                ViewArg::Internal => "internal",
                ViewArg::External => "external",
            };
            if t.dns.name_servers.is_empty() {
                eprintln!("warning: the topology names no DNS servers ([dns] name_servers): each zone's NS ns1.<zone> has no address record, and BIND refuses to load such a zone; add the addresses of the servers that will publish it");
            }
            for z in zones {
                let text = z.to_bind(serial);
                match &out {
                    Some(dir) => {
                        std::fs::create_dir_all(dir)
                            .with_context(|| format!("cannot create {}", dir.display()))?;
                        let path = dir.join(format!("{}.{label}.zone", z.origin));
                        std::fs::write(&path, text)
                            .with_context(|| format!("cannot write {}", path.display()))?;
                        println!("wrote {}", path.display());
                    }
                    None => print!("{text}"),
                }
            }
            Ok(())
        }
        DnsCommand::Serve {
            topology,
            view: v,
            listen,
        } => {
            let t = load(&topology_path(&topology)?)?;
            let zones = t.zones(view(v));
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            rt.block_on(async {
                let server = confab_dns::server::start(&zones, listen, Default::default()).await?;
                println!(
                    "DNS for {} zone(s) on {} (UDP and TCP); Ctrl-C stops it",
                    zones.len(),
                    server.local_addr
                );
                tokio::signal::ctrl_c().await?;
                drop(server);
                Ok(())
            })
        }
    }
}

pub(crate) fn certs(cmd: CertsCommand) -> anyhow::Result<()> {
    match cmd {
        CertsCommand::Plan { topology } => {
            let t = load(&topology_path(&topology)?)?;
            for plan in confab_topology::cert_plan(&t) {
                println!("{} ({}, pool {})", plan.server, plan.role, plan.pool);
                println!("  subject CN={}", plan.subject);
                for san in &plan.sans {
                    println!("  SAN DNS:{san}");
                }
            }
            Ok(())
        }
        CertsCommand::Issue { topology, out, csr } => {
            let t = load(&topology_path(&topology)?)?;
            std::fs::create_dir_all(&out)
                .with_context(|| format!("cannot create {}", out.display()))?;
            let plans = confab_topology::cert_plan(&t);
            if csr {
                for plan in &plans {
                    let files = pki::write_csr(&out, &plan.server, &plan.subject, &plan.sans)?;
                    println!("{}: {files}", plan.server);
                }
                println!("send the .csr files to your CA; keep the .key files on their servers");
            } else {
                let ca = pki::Authority::open_or_create(&out, "Confab private CA")?;
                for plan in &plans {
                    let files = ca.issue(&out, &plan.server, &plan.subject, &plan.sans)?;
                    println!("{}: {files}", plan.server);
                }
                println!(
                    "clients and servers must trust {}",
                    out.join("ca.pem").display()
                );
            }
            Ok(())
        }
    }
}
