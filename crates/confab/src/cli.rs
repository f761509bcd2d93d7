//! Command-line interface.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Confab: a self-hosted unified-communications server (SIP registrar, proxy and more).
#[derive(Debug, Parser)]
#[command(name = "confab", version, about, long_about = None)]
pub(crate) struct Cli {
    /// Log format: human-readable lines, or one JSON object per line for machines.
    #[arg(long, value_enum, default_value_t = LogFormat::Human, global = true)]
    pub(crate) log_format: LogFormat,
    /// More detail in the logs (-v debug, -vv trace). RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub(crate) verbose: u8,
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum LogFormat {
    Human,
    Json,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Run the all-in-one server (Front End) on this machine.
    Up(Box<UpArgs>),
    /// Manage users (works while the server runs).
    User(UserArgs),
    /// Read and check a topology file (the deployment described as code).
    #[command(subcommand)]
    Topology(TopologyCommand),
    /// DNS records the topology implies: zone files, or serve them.
    #[command(subcommand)]
    Dns(DnsCommand),
    /// Certificates the topology needs: which names, and issuing them.
    #[command(subcommand)]
    Certs(CertsCommand),
    /// The Edge server (remote users and federation): `confab up --fqdn <an Edge server>`
    /// runs one; these prepare it and manage its media relay.
    #[command(subcommand)]
    Edge(crate::edge::EdgeCommand),
    /// Manage users' contact lists and groups (works while the server runs: subscribed
    /// devices get the new list within seconds).
    #[command(subcommand)]
    Contacts(ContactsCommand),
    /// Who may see a user's presence: everyone or contacts only, and blocked watchers
    /// (who see the user as Offline).
    #[command(subcommand)]
    Privacy(PrivacyCommand),
    /// Pool-wide operations.
    #[command(subcommand)]
    Pool(PoolCommand),
    /// Walk the DNS lookups a client does to find where USER@DOMAIN signs in, and say where
    /// that is — or which record is missing and what that breaks.
    Discover(DiscoverArgs),
    /// Enterprise voice: dial plans, PSTN usages, voice policies, routes and trunks, applied
    /// from one file and tested without a call.
    #[command(subcommand)]
    Voice(crate::voice::VoiceCommand),
    /// Response groups: workflows (hunt groups and IVRs), queues, agent groups, agents'
    /// sign-in, export and import, moving a pool's response groups.
    #[command(subcommand)]
    Rgs(crate::rgs::RgsCommand),
    /// Meetings: create one for an organizer and get its join information, list, show,
    /// remove; conference directories, dial-in regions and access numbers, settings.
    #[command(subcommand)]
    Meeting(crate::meetings::MeetingCommand),
    /// Archiving: policies (what is kept, how long, critical mode, legal hold), search,
    /// export for legal discovery, purge, and who read the archive.
    #[command(subcommand)]
    Archive(crate::archive::ArchiveCommand),
    /// Call detail records: calls and sign-ins, searched and exported.
    #[command(subcommand)]
    Cdr(crate::records::CdrCommand),
    /// Summaries of the call records per day or per user.
    #[command(subcommand)]
    Report(crate::records::ReportCommand),
    /// Administrators of the HTTPS API: roles, tokens, and the audit log of every change.
    #[command(subcommand)]
    Admin(crate::admins::AdminCommand),
}

#[derive(Debug, Subcommand)]
pub(crate) enum PoolCommand {
    /// Add a Front End to a pool in the topology file (then start it with `confab up --fqdn
    /// FQDN`): the running servers of the pool share their registrations with it at once.
    AddServer {
        /// The pool (FQDN) the server joins.
        #[arg(long)]
        pool: String,
        /// The new server's FQDN.
        #[arg(long)]
        fqdn: String,
        /// The new server's address.
        #[arg(long)]
        address: IpAddr,
        /// The topology file to change.
        #[arg(long)]
        topology: PathBuf,
    },
    /// Stop new sign-ins on a server: its clients' next REGISTER is redirected (302) to the
    /// other servers of its pool, while calls and messages go on. `undrain` takes it back.
    Drain {
        /// The server's FQDN (as in the topology).
        server: String,
        #[command(flatten)]
        deployment: TopologyArg,
    },
    /// Let a drained server take sign-ins again.
    Undrain {
        server: String,
        #[command(flatten)]
        deployment: TopologyArg,
    },
    /// Home every user of pool FROM on pool TO (each user in a transaction of its own, as
    /// `confab user move` does), printing progress. Safe to run again after an interruption.
    MoveUsers {
        #[arg(long)]
        from: String,
        #[arg(long)]
        to: String,
        #[command(flatten)]
        deployment: TopologyArg,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum TopologyCommand {
    /// Print the deployment as Confab understands it: domains, pools, Edges, DNS names.
    Show {
        /// The topology file (TOML).
        file: PathBuf,
    },
    /// Check the topology for the mistakes that break sign-in, federation or pools.
    /// Exits 1 when a finding of severity error is reported, 64 when the file is malformed.
    Validate {
        /// The topology file (TOML).
        file: PathBuf,
    },
}

#[derive(Debug, Args)]
pub(crate) struct TopologyArg {
    /// The topology file [default: topology.toml in the data dir, as `confab up` writes it].
    #[arg(long)]
    pub(crate) topology: Option<PathBuf>,
    #[command(flatten)]
    pub(crate) data: DataDirArg,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum ViewArg {
    Internal,
    External,
}

#[derive(Debug, Subcommand)]
pub(crate) enum DnsCommand {
    /// Print BIND zone files, one per zone, for one view of the DNS.
    Zone {
        #[command(flatten)]
        topology: TopologyArg,
        /// Which view: what clients inside the network resolve, or what the internet resolves.
        #[arg(long, value_enum, default_value_t = ViewArg::Internal)]
        view: ViewArg,
        /// Only the zone of this domain.
        #[arg(long)]
        zone: Option<String>,
        /// Write one file per zone (<zone>.<view>.zone) into this directory instead of printing.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Serve the topology's records with the built-in authoritative DNS server until Ctrl-C.
    Serve {
        #[command(flatten)]
        topology: TopologyArg,
        #[arg(long, value_enum, default_value_t = ViewArg::Internal)]
        view: ViewArg,
        /// Address and port to answer on (UDP and TCP).
        #[arg(long, default_value = "127.0.0.1:5353")]
        listen: SocketAddr,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum CertsCommand {
    /// List, per server, the certificate subject and SAN names it needs.
    Plan {
        #[command(flatten)]
        topology: TopologyArg,
    },
    /// Issue the planned certificates from a private CA (made in OUT unless there), or write
    /// certificate signing requests for an enterprise CA with --csr.
    Issue {
        #[command(flatten)]
        topology: TopologyArg,
        /// Directory for ca.pem, <server>.pem, <server>.key (and <server>.csr).
        #[arg(long)]
        out: PathBuf,
        /// Write CSRs and keys instead of signing.
        #[arg(long)]
        csr: bool,
    },
}

/// A policy switch: on, off, or back to the deployment's default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Switch {
    On,
    Off,
    Default,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum ClientArg {
    /// SRV-only clients (Communicator 2007 R2, Lync 2010).
    Legacy,
    /// Autodiscover clients (Lync 2013 and later, mobile).
    Modern,
}

#[derive(Debug, Args)]
pub(crate) struct DiscoverArgs {
    /// The user's SIP address, user@domain (sip: prefix allowed).
    pub(crate) address: String,
    #[arg(long, value_enum, default_value_t = ClientArg::Modern)]
    pub(crate) client: ClientArg,
    /// Where the client is: inside the network or on the internet.
    #[arg(long, value_enum, default_value_t = ViewArg::Internal)]
    pub(crate) network: ViewArg,
    /// The DNS server to ask, ADDR:PORT [default: 127.0.0.1:5353, the one `confab up` runs].
    #[arg(long, default_value = "127.0.0.1:5353")]
    pub(crate) dns: SocketAddr,
    /// Port of the autodiscover web service behind lyncdiscover names (plain HTTP).
    #[arg(long, default_value_t = 8080)]
    pub(crate) web_port: u16,
    /// The client may sign in over plain TCP (queries _sipinternal._tcp).
    #[arg(long)]
    pub(crate) allow_tcp: bool,
    /// Seconds to wait for each answer.
    #[arg(long, default_value_t = 2)]
    pub(crate) timeout: u64,
}

#[derive(Debug, Args)]
pub(crate) struct DataDirArg {
    /// Where Confab keeps its database, CA and certificates.
    /// [default: $XDG_DATA_HOME/confab or ~/.local/share/confab]
    #[arg(long, env = "CONFAB_DATA_DIR")]
    pub(crate) data_dir: Option<PathBuf>,
    /// The shared PostgreSQL database of a pool, postgres://USER[:PASSWORD]@HOST[:PORT]/DB
    /// (prefer the environment variable for a password). [default: SQLite in the data dir]
    #[arg(long, env = "CONFAB_DATABASE", value_name = "URL")]
    pub(crate) database: Option<String>,
}

#[derive(Debug, Args)]
pub(crate) struct UpArgs {
    #[command(flatten)]
    pub(crate) data: DataDirArg,
    /// Address to listen on (and to put in Via / Record-Route).
    #[arg(long, default_value = "127.0.0.1")]
    pub(crate) bind: IpAddr,
    /// The SIP transports to listen on, of udp, tcp, tls (internet-facing roles: `tls`).
    #[arg(long, value_delimiter = ',', default_value = "udp,tcp,tls", value_parser = ["udp", "tcp", "tls"])]
    pub(crate) transports: Vec<String>,
    /// Challenge requests arriving over UDP or TCP (no: only TLS clients may authenticate;
    /// the others get 403 saying to sign in over TLS).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, value_name = "BOOL")]
    pub(crate) digest_over_plain: bool,
    /// A second address to listen on, of the other family (e.g. --bind6 ::1 beside an IPv4
    /// --bind): SIP on the same ports; peers reached over IPv6 see this one.
    #[arg(long, value_name = "ADDR")]
    pub(crate) bind6: Option<IpAddr>,
    /// SIP port for UDP and TCP; TLS listens on the next port.
    #[arg(long, default_value_t = 5060)]
    pub(crate) sip_port: u16,
    /// The SIP domain users' addresses live in (also the digest realm).
    #[arg(long, default_value = "example.com")]
    pub(crate) domain: String,
    /// This server's FQDN: the pool name DNS gives clients, and the certificate subject.
    /// [default: pool01.<domain>]
    #[arg(long, default_value = "")]
    pub(crate) fqdn: String,
    /// Do not create the demo users on first start.
    #[arg(long)]
    pub(crate) no_demo_users: bool,
    /// Failed authentications of a user from one address (that user is then refused from that
    /// address only), or of any users from one address (the address is then refused for users
    /// to which it is not familiar), before a lockout; 0 disables lockouts.
    #[arg(long, default_value_t = 10)]
    pub(crate) lockout_failures: u32,
    /// Failed authentications of a user from all its unfamiliar addresses together before
    /// those are refused too (a guess spread over many addresses is slowed; the user's
    /// familiar addresses keep working).
    #[arg(long, default_value_t = 50)]
    pub(crate) lockout_user_ceiling: u32,
    /// Days an address stays familiar to a user after a successful sign-in from it.
    #[arg(long, default_value_t = 30)]
    pub(crate) lockout_familiar_days: u64,
    /// Window in seconds in which failures are counted.
    #[arg(long, default_value_t = 60)]
    pub(crate) lockout_window: u64,
    /// How long a lockout lasts, in seconds (`confab user unlock` ends one sooner).
    #[arg(long, default_value_t = 60)]
    pub(crate) lockout_seconds: u64,
    /// Product named in the Server and User-Agent headers; the version is left out unless you
    /// add it (less for a scanner to fingerprint).
    #[arg(long, default_value = "Confab", value_parser = parse_header_value)]
    pub(crate) server_header: String,
    /// Digest algorithms to challenge with, in the order offered (md5, sha256). Clients that
    /// answer only the first challenge (SIPp) need md5 first; `sha256,md5` prefers SHA-256.
    #[arg(long, value_delimiter = ',', default_value = "md5,sha256", value_parser = parse_algorithm)]
    pub(crate) digest_algorithms: Vec<sip_auth::Algorithm>,
    /// Shortest registration accepted (seconds); shorter ones get 423 with Min-Expires.
    #[arg(long, default_value_t = 60)]
    pub(crate) min_expires: u32,
    /// Largest SIP message accepted, in bytes.
    #[arg(long, default_value_t = 65536)]
    pub(crate) max_message_size: usize,
    /// Largest presence document accepted in a PUBLISH, in bytes (larger: 413).
    #[arg(long, default_value_t = 65536)]
    pub(crate) presence_max_body: usize,
    /// Shortest presence publication or subscription accepted, in seconds (shorter: 423).
    #[arg(long, default_value_t = 60)]
    pub(crate) presence_min_expires: u32,
    /// Most presence subscriptions one user may hold at once (more: 403).
    #[arg(long, default_value_t = 1000)]
    pub(crate) presence_max_subscriptions: usize,
    /// New presence subscriptions per second one user may start, after a burst of 10 times
    /// this (more: 503 with Retry-After).
    #[arg(long, default_value_t = 20)]
    pub(crate) presence_subscribe_rate: u32,
    /// Seconds between OPTIONS probes of each trunk's gateway (one that does not answer is
    /// skipped until it does); 0: no probes, every gateway counts as up.
    #[arg(long, default_value_t = 30, value_name = "SECONDS")]
    pub(crate) gateway_probe: u64,
    /// The address callers' media reach response groups' streams at (default: --bind).
    #[arg(long, value_name = "ADDR")]
    pub(crate) media_address: Option<IpAddr>,
    /// The UDP ports of response groups' media streams, FIRST-LAST (one even port per
    /// caller hearing a prompt or music).
    #[arg(long, default_value = "20000-29999", value_parser = parse_port_range, value_name = "FIRST-LAST")]
    pub(crate) media_ports: (u16, u16),
    /// Address and port of the built-in DNS server (UDP and TCP); `off` runs none.
    #[arg(long, default_value = "127.0.0.1:5353", value_parser = parse_optional_addr)]
    pub(crate) dns: OptionalAddr,
    /// Port of the web front-end (autodiscover, health) on the bind address; 0 runs none.
    #[arg(long, default_value_t = 8080)]
    pub(crate) web_port: u16,
    /// Use this topology file instead of the single-server one `confab up` writes into the
    /// data dir.
    #[arg(long)]
    pub(crate) topology: Option<PathBuf>,
    /// Most simultaneous TCP/TLS connections.
    #[arg(long, default_value_t = 10000)]
    pub(crate) max_connections: usize,
    /// TCP/TLS connections one address may hold open at once; 0: no limit. [default: 50 on a
    /// Director, no limit on a Front End, where a NAT or load balancer may carry many users]
    #[arg(long, value_name = "N")]
    pub(crate) max_connections_per_source: Option<usize>,
    /// Close a connection idle for this many seconds.
    #[arg(long, default_value_t = 3900)]
    pub(crate) idle_timeout: u64,
    /// Close a connection whose message headers have not all arrived this many seconds after
    /// the message started.
    #[arg(long, default_value_t = 10)]
    pub(crate) header_timeout: u64,
    /// SIP messages per second one source address may send (bursts of twice that); more are
    /// dropped at the socket. 0 turns the limit off. [default: 100 on a Director, off on a
    /// Front End, where clients behind a NAT or load balancer share addresses]
    #[arg(long, value_name = "PER_SECOND")]
    pub(crate) per_source_rate: Option<u32>,
    /// While the server is overloaded (and for 5 s after), messages a second each address may
    /// send when no user has signed in from it; the rest are dropped before parsing. Addresses
    /// users signed in from are not limited. 0 turns this off.
    #[arg(long, value_name = "PER_SECOND", default_value_t = 50)]
    pub(crate) overload_per_source_rate: u32,
    /// Engines serving SIP, each on a core of its own with its own UDP socket and share of
    /// the connections (1 to 64). [default: the number of cores]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=64))]
    pub(crate) shards: Option<u16>,
    /// An Edge resolves partners' Access Edges with this DNS server (ADDR:PORT)
    /// [default: the system's resolvers].
    #[arg(long, value_name = "ADDR:PORT")]
    pub(crate) resolver: Option<SocketAddr>,
    /// An Edge trusts the CA certificates in this PEM file for partners' certificates
    /// (federation), besides none: without it no partner can connect or be reached.
    #[arg(long, value_name = "FILE")]
    pub(crate) federation_trust: Option<PathBuf>,
    /// Trunks over TLS: the CA certificates (PEM) gateways' certificates must chain to; each
    /// must also name its gateway's host as configured [default: the deployment's CA].
    #[arg(long, value_name = "FILE")]
    pub(crate) gateway_trust: Option<PathBuf>,
    /// On an Edge with an A/V service: coturn runs as a system service with the configuration
    /// from `confab edge turn-config`; do not start it, only keep its secrets database.
    #[arg(long)]
    pub(crate) av_external: bool,
    #[command(flatten)]
    pub(crate) archive: crate::archive_up::UpArchiveArgs,
}

/// `confab user`: the command, and where it goes.
#[derive(Debug, Args)]
pub(crate) struct UserArgs {
    #[command(flatten)]
    pub(crate) remote: crate::remote::RemoteArg,
    #[command(subcommand)]
    pub(crate) cmd: UserCommand,
}

#[derive(Debug, Subcommand)]
pub(crate) enum UserCommand {
    /// Add a user.
    Add {
        /// The user's address, user@domain.
        address: String,
        /// The user's password (only its digest hashes are stored).
        #[arg(long)]
        password: String,
        /// The pool the user is homed on (a pool FQDN of the topology) [default: the only pool
        /// that hosts users].
        #[arg(long)]
        pool: Option<String>,
        #[command(flatten)]
        deployment: TopologyArg,
    },
    /// Add many users at once from FILE (`-` reads standard input): one `ADDRESS PASSWORD` per
    /// line, blank lines and `#` comments ignored. All are added or none; users that already
    /// exist are left as they are.
    Import {
        file: PathBuf,
        /// The pool the new users are homed on [default: the only pool that hosts users].
        #[arg(long)]
        pool: Option<String>,
        #[command(flatten)]
        deployment: TopologyArg,
    },
    /// Home a user on another pool. Its registrations and presence state stay behind and are
    /// dropped (its devices sign in again and are redirected to the new pool); its contact
    /// list and privacy go with it. One transaction.
    Move {
        address: String,
        /// The new home pool (a pool FQDN of the topology).
        #[arg(long)]
        to: String,
        #[command(flatten)]
        deployment: TopologyArg,
    },
    /// List users with their home pools.
    List {
        #[command(flatten)]
        data: DataDirArg,
    },
    /// Lift a user's lockout after failed sign-ins, at every address, on the running servers
    /// (within a housekeeping period, 2 s).
    Unlock {
        address: String,
        #[command(flatten)]
        data: DataDirArg,
    },
    /// Remove a user and its registrations.
    Remove {
        address: String,
        #[command(flatten)]
        data: DataDirArg,
    },
    /// Set a user's external access policy (whether it may sign in from outside through an
    /// Edge, and talk to users of federated organisations), enterprise voice settings
    /// (number, voice, policy, dial plan) and dial-in PIN. What is not given stays as it was;
    /// `default` follows the deployment's. Running servers apply it at the user's next request.
    Set {
        address: String,
        #[arg(long, value_name = "on|off|default")]
        remote_access: Option<Switch>,
        #[arg(long, value_name = "on|off|default")]
        federation: Option<Switch>,
        /// The user's dial-in PIN (4 to 12 digits): entered by phone to lead a meeting that
        /// needs one. Kept as a salted hash.
        #[arg(long)]
        pin: Option<String>,
        #[command(flatten)]
        voice: crate::voice::UserVoiceArgs,
        #[command(flatten)]
        data: DataDirArg,
    },
    /// Change a user's password.
    SetPassword {
        address: String,
        #[arg(long)]
        password: String,
        #[command(flatten)]
        data: DataDirArg,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum ContactsCommand {
    /// Add CONTACT to OWNER's list (in GROUP when given; the group is created).
    Add {
        owner: String,
        contact: String,
        #[arg(long)]
        group: Option<String>,
        #[command(flatten)]
        data: DataDirArg,
    },
    /// Print OWNER's list: one contact per line with its groups.
    List {
        owner: String,
        #[command(flatten)]
        data: DataDirArg,
    },
    /// Remove CONTACT from OWNER's list (from every group).
    Remove {
        owner: String,
        contact: String,
        #[command(flatten)]
        data: DataDirArg,
    },
    /// Manage OWNER's groups.
    #[command(subcommand)]
    Group(GroupCommand),
}

#[derive(Debug, Subcommand)]
pub(crate) enum GroupCommand {
    /// Create a group.
    Add {
        owner: String,
        group: String,
        #[command(flatten)]
        data: DataDirArg,
    },
    /// List the groups.
    List {
        owner: String,
        #[command(flatten)]
        data: DataDirArg,
    },
    /// Delete a group; its contacts stay on the list.
    Remove {
        owner: String,
        group: String,
        #[command(flatten)]
        data: DataDirArg,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum VisibilityArg {
    /// Every user of the organisation.
    Everyone,
    /// Only users on the owner's contact list.
    Contacts,
}

#[derive(Debug, Subcommand)]
pub(crate) enum PrivacyCommand {
    /// Print who may see USER's presence and who is blocked.
    Show {
        user: String,
        #[command(flatten)]
        data: DataDirArg,
    },
    /// Set who may see USER's presence. Watchers no longer permitted get their subscription
    /// ended (reason "rejected").
    Set {
        user: String,
        #[arg(value_enum)]
        visibility: VisibilityArg,
        #[command(flatten)]
        data: DataDirArg,
    },
    /// Block WATCHER: it sees USER as Offline, never an error.
    Block {
        user: String,
        watcher: String,
        #[command(flatten)]
        data: DataDirArg,
    },
    /// Unblock WATCHER.
    Unblock {
        user: String,
        watcher: String,
        #[command(flatten)]
        data: DataDirArg,
    },
}

fn parse_algorithm(s: &str) -> Result<sip_auth::Algorithm, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        "md5" => Ok(sip_auth::Algorithm::Md5),
        "sha256" | "sha-256" => Ok(sip_auth::Algorithm::Sha256),
        other => Err(format!(
            "unknown digest algorithm '{other}' (use md5, sha256)"
        )),
    }
}

/// A Server/User-Agent value: printable text on one line (RFC 3261 `server-val`s).
fn parse_header_value(s: &str) -> Result<String, String> {
    let s = s.trim();
    if s.is_empty() || s.chars().any(|c| c.is_control()) {
        return Err("give a product name on one line, such as 'Confab' or 'Confab/1.0'".into());
    }
    Ok(s.to_owned())
}

/// An address, or none (`off`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct OptionalAddr(pub(crate) Option<SocketAddr>);

fn parse_optional_addr(s: &str) -> Result<OptionalAddr, String> {
    if s.eq_ignore_ascii_case("off") {
        return Ok(OptionalAddr(None));
    }
    s.parse()
        .map(|a| OptionalAddr(Some(a)))
        .map_err(|_| format!("'{s}' is not ADDR:PORT (e.g. 127.0.0.1:5353) or `off`"))
}

/// An error the user can fix by asking differently (exit code 64).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct UsageError(pub(crate) String);

pub(crate) fn init_logging(format: LogFormat, verbose: u8) {
    use tracing_subscriber::EnvFilter;
    let default = match verbose {
        0 => "info",
        1 => "debug",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    match format {
        LogFormat::Human => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}

/// `20000-29999`: a range of at least two ports, first below last.
fn parse_port_range(s: &str) -> Result<(u16, u16), String> {
    let (a, b) = s
        .split_once('-')
        .ok_or_else(|| format!("{s:?} is not a port range like 20000-29999"))?;
    let (a, b): (u16, u16) = (
        a.trim()
            .parse()
            .map_err(|_| format!("{a:?} is not a port"))?,
        b.trim()
            .parse()
            .map_err(|_| format!("{b:?} is not a port"))?,
    );
    if a == 0 || b <= a {
        return Err(format!(
            "{s:?}: the first port must be above 0 and below the last"
        ));
    }
    Ok((a, b))
}
