//! HTTP load for the administration API and metrics (run by `bench/api`): C connections, each
//! sending its share of N requests one after another on a kept-alive connection (HTTPS with
//! --ca, else plain HTTP). Prints requests per second, p50 and p99 latency, the statuses seen,
//! and with --pid the server's CPU time per request.
//!
//!   api-load --url https://127.0.0.1:8080/api/v1/users/u1@example.com --requests N
//!            [--connections C] [--ca CA.pem] [--token T] [--create DOMAIN] [--pid PID]
//!
//! --create DOMAIN makes every request a POST of a new user (load<c>-<i>@DOMAIN) to --url.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use confab_bench::cpu_ticks;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;

struct Args {
    url: String,
    requests: usize,
    connections: usize,
    ca: Option<String>,
    token: Option<String>,
    create: Option<String>,
    pid: Option<u32>,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        url: String::new(),
        requests: 1000,
        connections: 8,
        ca: None,
        token: None,
        create: None,
        pid: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--url" => a.url = value()?,
            "--requests" => {
                a.requests = value()?.parse().map_err(|e| format!("--requests: {e}"))?
            }
            "--connections" => {
                a.connections = value()?
                    .parse()
                    .map_err(|e| format!("--connections: {e}"))?
            }
            "--ca" => a.ca = Some(value()?),
            "--token" => a.token = Some(value()?),
            "--create" => a.create = Some(value()?),
            "--pid" => a.pid = Some(value()?.parse().map_err(|e| format!("--pid: {e}"))?),
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if a.url.is_empty() {
        return Err("--url is required".into());
    }
    Ok(a)
}

/// `(tls, host, port, path)` of a URL.
fn split(url: &str) -> Result<(bool, String, u16, String), String> {
    let (tls, rest) = match url.split_once("://") {
        Some(("https", r)) => (true, r),
        Some(("http", r)) => (false, r),
        _ => return Err(format!("{url}: not an http(s) URL")),
    };
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let (host, port) = authority
        .rsplit_once(':')
        .ok_or(format!("{url}: give the port"))?;
    let port = port.parse().map_err(|_| format!("{url}: bad port"))?;
    Ok((tls, host.to_owned(), port, format!("/{path}")))
}

type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

async fn connect(
    tls: Option<&tokio_rustls::TlsConnector>,
    host: &str,
    port: u16,
) -> Result<Sender, String> {
    let tcp = tokio::net::TcpStream::connect((host, port))
        .await
        .map_err(|e| e.to_string())?;
    tcp.set_nodelay(true).map_err(|e| e.to_string())?;
    let (sender, conn) = match tls {
        Some(c) => {
            let name = rustls_pki_types::ServerName::try_from(host.to_owned())
                .map_err(|e| e.to_string())?;
            let s = c.connect(name, tcp).await.map_err(|e| e.to_string())?;
            let (sender, conn) =
                hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(s))
                    .await
                    .map_err(|e| e.to_string())?;
            tokio::spawn(conn);
            return Ok(sender);
        }
        None => hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp))
            .await
            .map_err(|e| e.to_string())?,
    };
    tokio::spawn(conn);
    Ok(sender)
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("api-load: {e}");
            std::process::exit(64);
        }
    };
    let (tls, host, port, path) = split(&args.url).unwrap_or_else(|e| {
        eprintln!("api-load: {e}");
        std::process::exit(64)
    });
    let connector = if tls {
        let mut roots = rustls::RootCertStore::empty();
        let ca = args.ca.clone().unwrap_or_default();
        for c in rustls_pki_types::pem::PemObject::pem_file_iter(&ca).expect("--ca: a PEM file") {
            roots
                .add(c.expect("a certificate"))
                .expect("a CA certificate");
        }
        let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
        Some(tokio_rustls::TlsConnector::from(Arc::new(cfg)))
    } else {
        None
    };
    let per = args.requests.div_ceil(args.connections);
    let cpu_before = args.pid.map(|p| cpu_ticks(&[p]));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..args.connections {
        let (connector, host, path) = (connector.clone(), host.clone(), path.clone());
        let (token, create) = (args.token.clone(), args.create.clone());
        let count = per.min(args.requests.saturating_sub(c * per));
        tasks.push(tokio::spawn(async move {
            let mut sender = connect(connector.as_ref(), &host, port).await?;
            let mut out = (Vec::with_capacity(count), BTreeMap::<u16, usize>::new());
            for i in 0..count {
                let mut req = hyper::Request::builder()
                    .uri(path.as_str())
                    .header("host", format!("{host}:{port}"));
                if let Some(t) = &token {
                    req = req.header("authorization", format!("Bearer {t}"));
                }
                let body = match &create {
                    Some(domain) => {
                        req = req
                            .method("POST")
                            .header("content-type", "application/json");
                        format!(r#"{{"address":"load{c}-{i}@{domain}","password":"load-pw"}}"#)
                    }
                    None => String::new(),
                };
                let req = req
                    .body(Full::new(Bytes::from(body)))
                    .map_err(|e| e.to_string())?;
                let t = Instant::now();
                sender.ready().await.map_err(|e| e.to_string())?;
                let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
                let status = resp.status().as_u16();
                resp.into_body()
                    .collect()
                    .await
                    .map_err(|e| e.to_string())?;
                out.0.push(t.elapsed());
                *out.1.entry(status).or_default() += 1;
            }
            Ok::<_, String>(out)
        }));
    }
    let mut latencies: Vec<Duration> = Vec::new();
    let mut statuses = BTreeMap::<u16, usize>::new();
    for t in tasks {
        match t.await {
            Ok(Ok((l, s))) => {
                latencies.extend(l);
                for (k, v) in s {
                    *statuses.entry(k).or_default() += v;
                }
            }
            Ok(Err(e)) => eprintln!("api-load: a connection failed: {e}"),
            Err(e) => eprintln!("api-load: a task failed: {e}"),
        }
    }
    let took = started.elapsed();
    latencies.sort();
    let pct = |q: f64| {
        latencies
            .get(((latencies.len() as f64 * q) as usize).min(latencies.len().saturating_sub(1)))
            .map_or(0.0, |d| d.as_secs_f64() * 1e3)
    };
    let done = latencies.len();
    let cpu = match (cpu_before, args.pid.map(|p| cpu_ticks(&[p]))) {
        (Some(a), Some(b)) if done > 0 => {
            format!(
                " cpu_us_per_request={:.1}",
                (b - a) as f64 * 1e4 / done as f64
            )
        }
        _ => String::new(),
    };
    let statuses: Vec<String> = statuses.iter().map(|(k, v)| format!("{k}:{v}")).collect();
    println!(
        "requests={done} seconds={:.2} per_second={:.0} p50_ms={:.2} p99_ms={:.2} statuses={}{cpu}",
        took.as_secs_f64(),
        done as f64 / took.as_secs_f64(),
        pct(0.5),
        pct(0.99),
        statuses.join(",")
    );
}
