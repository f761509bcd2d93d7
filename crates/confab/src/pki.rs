//! Certificates: the deployment's private CA, the server certificate `confab up` makes on
//! first start, the ones `confab certs issue` makes for a topology, and the TLS configuration
//! that picks a certificate by SNI.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};

pub(crate) struct Pki {
    pub(crate) ca: PathBuf,
    pub(crate) cert: PathBuf,
    pub(crate) key: PathBuf,
    /// Further certificates (`<name>.pem` with `<name>.key`) offered by SNI.
    pub(crate) sni_dir: PathBuf,
}

/// A private CA kept as `ca.pem`, `ca.key` (0600) and `ca.subject` in a directory. rcgen can
/// sign only with an issuer described by parameters, so the subject is kept beside the key
/// and the issuer rebuilt from the two; certificates chain to `ca.pem` by that name and key.
pub(crate) struct Authority {
    issuer: Issuer<'static, KeyPair>,
    pem: String,
}

impl Authority {
    pub(crate) fn open_or_create(dir: &Path, common_name: &str) -> anyhow::Result<Self> {
        let (pem_path, key_path, subject_path) = (
            dir.join("ca.pem"),
            dir.join("ca.key"),
            dir.join("ca.subject"),
        );
        if pem_path.exists() && key_path.exists() && subject_path.exists() {
            let pem = std::fs::read_to_string(&pem_path)?;
            let key = KeyPair::from_pem(&std::fs::read_to_string(&key_path)?)
                .with_context(|| format!("cannot read the CA key {}", key_path.display()))?;
            let subject = std::fs::read_to_string(&subject_path)?;
            return Ok(Self {
                issuer: Issuer::new(ca_params(subject.trim())?, key),
                pem,
            });
        }
        let key = KeyPair::generate()?;
        let cert = ca_params(common_name)?.self_signed(&key)?;
        let pem = cert.pem();
        std::fs::write(&pem_path, &pem)?;
        write_private(&key_path, &key.serialize_pem())?;
        std::fs::write(&subject_path, format!("{common_name}\n"))?;
        Ok(Self {
            issuer: Issuer::new(ca_params(common_name)?, key),
            pem,
        })
    }

    /// Signs a server certificate for `sans` (DNS names; IP addresses in `ips`) and writes
    /// `<file>.pem` (with the CA appended) and `<file>.key`. Returns the files written.
    pub(crate) fn issue_to(
        &self,
        pem_path: &Path,
        key_path: &Path,
        subject: &str,
        sans: &[String],
        ips: &[IpAddr],
    ) -> anyhow::Result<()> {
        let mut params = CertificateParams::new(sans.to_vec())?;
        params.distinguished_name.push(DnType::CommonName, subject);
        params
            .subject_alt_names
            .extend(ips.iter().map(|ip| SanType::IpAddress(*ip)));
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer)?;
        std::fs::write(pem_path, cert.pem() + &self.pem)?;
        write_private(key_path, &key.serialize_pem())?;
        Ok(())
    }

    pub(crate) fn issue(
        &self,
        dir: &Path,
        server: &str,
        subject: &str,
        sans: &[String],
    ) -> anyhow::Result<String> {
        let (pem, key) = (
            dir.join(format!("{server}.pem")),
            dir.join(format!("{server}.key")),
        );
        self.issue_to(&pem, &key, subject, sans, &[])?;
        Ok(format!("{} {}", pem.display(), key.display()))
    }
}

fn ca_params(common_name: &str) -> anyhow::Result<CertificateParams> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    Ok(params)
}

/// Writes `<server>.csr` and its `<server>.key` for an enterprise CA to sign.
pub(crate) fn write_csr(
    dir: &Path,
    server: &str,
    subject: &str,
    sans: &[String],
) -> anyhow::Result<String> {
    let mut params = CertificateParams::new(sans.to_vec())?;
    params.distinguished_name.push(DnType::CommonName, subject);
    let key = KeyPair::generate()?;
    let csr = params.serialize_request(&key)?;
    let (csr_path, key_path) = (
        dir.join(format!("{server}.csr")),
        dir.join(format!("{server}.key")),
    );
    std::fs::write(&csr_path, csr.pem()?)?;
    write_private(&key_path, &key.serialize_pem())?;
    Ok(format!("{} {}", csr_path.display(), key_path.display()))
}

/// Makes the CA and server certificate unless they exist. The server certificate names
/// `names` (what DNS points at this server, from the topology), localhost and the listen
/// address.
pub(crate) fn ensure(
    dir: &Path,
    bind: IpAddr,
    domain: &str,
    names: &[String],
) -> anyhow::Result<Pki> {
    let pki = Pki {
        ca: dir.join("ca.pem"),
        cert: dir.join("server.pem"),
        key: dir.join("server.key"),
        sni_dir: dir.join("certs"),
    };
    if pki.ca.exists() && pki.cert.exists() && pki.key.exists() {
        return Ok(pki);
    }
    let ca = Authority::open_or_create(dir, &format!("Confab private CA for {domain}"))?;
    let mut sans = names.to_vec();
    sans.push("localhost".to_owned());
    sans.dedup();
    let mut ips = vec![bind];
    if !bind.is_loopback() {
        ips.push(IpAddr::from([127, 0, 0, 1]));
    }
    let subject = names.first().map_or("localhost", String::as_str);
    ca.issue_to(&pki.cert, &pki.key, subject, &sans, &ips)?;
    Ok(pki)
}

pub(crate) fn write_private(path: &Path, contents: &str) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    f.write_all(contents.as_bytes())?;
    Ok(())
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn certified_key(cert: &Path, key: &Path) -> anyhow::Result<Arc<CertifiedKey>> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .with_context(|| format!("cannot read {}", cert.display()))?
        .collect::<Result<_, _>>()
        .with_context(|| format!("{} is not a PEM certificate chain", cert.display()))?;
    let key = PrivateKeyDer::from_pem_file(key)
        .with_context(|| format!("cannot read the private key {}", key.display()))?;
    let signing = provider()
        .key_provider
        .load_private_key(key)
        .with_context(|| format!("unusable private key for {}", cert.display()))?;
    Ok(Arc::new(CertifiedKey::new(certs, signing)))
}

/// Whether the leaf of `key` is valid for `name` (a DNS name or an IP address).
fn covers(key: &CertifiedKey, name: &ServerName<'_>) -> bool {
    let Some(leaf) = key.cert.first() else {
        return false;
    };
    webpki::EndEntityCert::try_from(leaf)
        .map(|ee| ee.verify_is_valid_for_subject_name(name).is_ok())
        .unwrap_or(false)
}

/// The names among `names` that the server certificate does not cover.
pub(crate) fn uncovered(pki: &Pki, names: &[String]) -> anyhow::Result<Vec<String>> {
    let key = certified_key(&pki.cert, &pki.key)?;
    Ok(names
        .iter()
        .filter(|n| {
            ServerName::try_from(n.as_str())
                .map(|sn| !covers(&key, &sn))
                .unwrap_or(true)
        })
        .cloned()
        .collect())
}

/// Chooses the certificate by the name the client asked for (SNI): the default one when it
/// covers the name or the client sent none, else the first SNI certificate that covers it,
/// else the default (the client then reports the mismatch itself).
#[derive(Debug)]
struct BySni {
    default: Arc<CertifiedKey>,
    others: Vec<Arc<CertifiedKey>>,
}

impl ResolvesServerCert for BySni {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let Some(name) = hello
            .server_name()
            .and_then(|n| ServerName::try_from(n.to_owned()).ok())
        else {
            return Some(self.default.clone());
        };
        if covers(&self.default, &name) {
            return Some(self.default.clone());
        }
        let chosen = self.others.iter().find(|k| covers(k, &name));
        Some(chosen.unwrap_or(&self.default).clone())
    }
}

/// The SNI certificates in `dir`: every `<name>.pem` with a `<name>.key` beside it, but the
/// CA's own (`ca.pem`), which `confab certs issue` may have written there too.
fn sni_certificates(dir: &Path) -> anyhow::Result<Vec<Arc<CertifiedKey>>> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(Vec::new());
    };
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.extension().is_some_and(|x| x == "pem")
                && p.file_stem().is_some_and(|s| s != "ca")
                && p.with_extension("key").exists()
        })
        .collect();
    paths.sort();
    paths
        .iter()
        .map(|p| certified_key(p, &p.with_extension("key")))
        .collect()
}

/// TLS 1.2 and 1.3 server configuration: the data dir's certificate by default, others by SNI.
pub(crate) fn server_config(pki: &Pki) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    server_config_trusting(pki, ca_roots(pki)?)
}

/// The TLS server configuration of a listener that faces partner organisations: a client
/// certificate, when presented, must chain to one of the partners' `roots`.
pub(crate) fn partner_server_config(
    pki: &Pki,
    roots: rustls::RootCertStore,
) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    server_config_trusting(pki, roots)
}

/// Client configuration toward partners: their certificate must chain to `roots` (and be
/// valid for the name DNS led to); Confab presents its own.
pub(crate) fn partner_client_config(
    pki: &Pki,
    roots: rustls::RootCertStore,
) -> anyhow::Result<Arc<rustls::ClientConfig>> {
    client_config_trusting(pki, roots)
}

/// The CA certificates in the PEM file `path` (partners' roots for federation).
pub(crate) fn roots_from(path: &Path) -> anyhow::Result<rustls::RootCertStore> {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(path)
        .with_context(|| format!("cannot read the certificates in {}", path.display()))?
    {
        roots.add(c.with_context(|| format!("{} holds a damaged certificate", path.display()))?)?;
    }
    Ok(roots)
}

fn server_config_trusting(
    pki: &Pki,
    roots: rustls::RootCertStore,
) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    let resolver = BySni {
        default: certified_key(&pki.cert, &pki.key)?,
        others: sni_certificates(&pki.sni_dir)?,
    };
    if !resolver.others.is_empty() {
        tracing::info!(count = resolver.others.len(), dir = %pki.sni_dir.display(), "TLS certificates chosen by SNI loaded");
    }
    // a client certificate is optional (users' clients have none); one that is presented must
    // chain to the deployment's CA: that is how another server of the deployment proves itself
    let verifier =
        rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
            .allow_unauthenticated()
            .build()
            .context("cannot build the client certificate verifier")?;
    let cfg = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(Arc::new(resolver));
    Ok(Arc::new(cfg))
}

/// TLS for the web port (HTTPS: autodiscover, the administration API, metrics): the same
/// certificates by SNI, no client certificate, HTTP/1.1.
pub(crate) fn web_server_config(pki: &Pki) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    let resolver = BySni {
        default: certified_key(&pki.cert, &pki.key)?,
        others: sni_certificates(&pki.sni_dir)?,
    };
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(resolver));
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

fn ca_roots(pki: &Pki) -> anyhow::Result<rustls::RootCertStore> {
    roots_from(&pki.ca)
}

/// Client configuration for connections Confab opens: the other end must present a
/// certificate of the deployment's CA valid for its address, and Confab presents its own
/// server certificate (mutual TLS between the servers of a deployment).
pub(crate) fn client_config(pki: &Pki) -> anyhow::Result<Arc<rustls::ClientConfig>> {
    client_config_trusting(pki, ca_roots(pki)?)
}

fn client_config_trusting(
    pki: &Pki,
    roots: rustls::RootCertStore,
) -> anyhow::Result<Arc<rustls::ClientConfig>> {
    let own = certified_key(&pki.cert, &pki.key)?;
    let key = PrivateKeyDer::from_pem_file(&pki.key)
        .with_context(|| format!("cannot read the private key {}", pki.key.display()))?;
    let cfg = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_root_certificates(roots)
        .with_client_auth_cert(own.cert.clone(), key)
        .context("the server certificate cannot serve as a client certificate")?;
    Ok(Arc::new(cfg))
}

/// In a deployment of several servers, one CA signs every server's certificate, so that each
/// verifies the others: the first server to start stores its CA in the shared database, the
/// others adopt it (and reissue their own certificate from it). Returns whether this data
/// dir's CA was replaced.
pub(crate) fn adopt_shared_ca(store: &dyn confab_store::Store, dir: &Path) -> anyhow::Result<bool> {
    let files = ["ca.pem", "ca.key", "ca.subject"];
    let read = |f: &str| std::fs::read_to_string(dir.join(f));
    let local = files
        .iter()
        .map(|f| read(f))
        .collect::<std::io::Result<Vec<String>>>()
        .context("cannot read this server's CA")?
        .join(CA_SEPARATOR);
    let shared = store
        .shared_setting("ca", &local)
        .context("cannot read the deployment's CA from the database")?;
    if shared == local {
        return Ok(false);
    }
    let parts: Vec<&str> = shared.split(CA_SEPARATOR).collect();
    let [pem, key, subject] = parts[..] else {
        anyhow::bail!("the deployment's CA in the database is damaged");
    };
    std::fs::write(dir.join("ca.pem"), pem)?;
    write_private(&dir.join("ca.key"), key)?;
    std::fs::write(dir.join("ca.subject"), subject)?;
    // the server certificate came from the old CA: the next `ensure` issues a new one
    for f in ["server.pem", "server.key"] {
        let _ = std::fs::remove_file(dir.join(f));
    }
    Ok(true)
}

/// Separates the CA's files in the stored setting (text no PEM file contains).
const CA_SEPARATOR: &str = "\n%%confab-ca%%\n";
