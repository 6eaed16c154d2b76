//! `licensectl certs`: a private CA and certificates signed by it, for a trial or a private
//! deployment — the client port's certificate, each node's peer certificate, client
//! certificates for `--tls-client-ca`.
//!
//! The CA (`DIR/ca.pem`, `DIR/ca-key.pem`) is made on the first call and reused after. Each
//! call writes `DIR/NAME.pem` and `DIR/NAME-key.pem` (mode 600), valid for every HOST given
//! as a DNS name or IP address, for TLS servers and clients both (a node's peer certificate
//! is both). Keys are ECDSA P-256.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use chrono::{Datelike, Days, Utc};
use clap::Args;
use rcgen::{
    date_time_ymd, BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};

/// The CA's subject: a CA made here is found again by it (its key is read back from
/// `ca-key.pem`, its name is this).
const CA_COMMON_NAME: &str = "licensed private CA";
/// How long the CA is valid, in days.
const CA_DAYS: u64 = 3650;

/// `licensectl certs DIR NAME HOST...`
#[derive(Debug, Args)]
pub struct CertsArgs {
    /// Directory for the CA and the certificates (created if missing).
    pub dir: PathBuf,
    /// File name of the certificate: DIR/NAME.pem and DIR/NAME-key.pem.
    pub name: String,
    /// DNS names and IP addresses the certificate is valid for.
    #[arg(required = true)]
    pub hosts: Vec<String>,
    /// Validity of the certificate, in days.
    #[arg(long, default_value_t = 825)]
    pub days: u64,
}

/// What one call wrote.
#[derive(Debug)]
pub struct Written {
    /// The certificate.
    pub cert: PathBuf,
    /// Its private key.
    pub key: PathBuf,
    /// The CA that signed it (made by this call or an earlier one).
    pub ca: PathBuf,
    /// Whether this call made the CA.
    pub ca_created: bool,
}

/// Makes the CA if `args.dir` has none, then a certificate signed by it.
pub fn make(args: &CertsArgs) -> anyhow::Result<Written> {
    if args.name.is_empty() || args.name.contains(['/', '\\']) || args.name.starts_with('.') {
        bail!("NAME must be a plain file name, got {:?}", args.name);
    }
    if args.name == "ca" {
        bail!("NAME \"ca\" is the CA's own file; choose another");
    }
    fs::create_dir_all(&args.dir)
        .with_context(|| format!("cannot create {}", args.dir.display()))?;
    let ca_path = args.dir.join("ca.pem");
    let ca_key_path = args.dir.join("ca-key.pem");

    let ca_params = ca_params()?;
    let ca_created = !ca_key_path.exists();
    let ca_key = if ca_created {
        if ca_path.exists() {
            bail!(
                "{} exists without {}: move it away or give another DIR",
                ca_path.display(),
                ca_key_path.display()
            );
        }
        let key = KeyPair::generate().context("cannot generate the CA key")?;
        let cert = ca_params
            .self_signed(&key)
            .context("cannot sign the CA certificate")?;
        write_file(&ca_key_path, key.serialize_pem().as_bytes(), true)?;
        write_file(&ca_path, cert.pem().as_bytes(), false)?;
        key
    } else {
        let pem = fs::read_to_string(&ca_key_path)
            .with_context(|| format!("cannot read {}", ca_key_path.display()))?;
        KeyPair::from_pem(&pem)
            .with_context(|| format!("{} holds no private key", ca_key_path.display()))?
    };
    let issuer = Issuer::new(ca_params, ca_key);

    for host in &args.hosts {
        let dns_like = !host.is_empty()
            && host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '*' | '_'));
        if !dns_like && host.parse::<std::net::IpAddr>().is_err() {
            bail!("HOST {host:?} is neither a DNS name nor an IP address");
        }
    }
    let mut params = CertificateParams::new(args.hosts.clone())
        .context("a HOST is neither a DNS name nor an IP address")?;
    params
        .distinguished_name
        .push(DnType::CommonName, args.name.as_str());
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.use_authority_key_identifier_extension = true;
    set_validity(&mut params, args.days)?;
    let key = KeyPair::generate().context("cannot generate the key")?;
    let cert = params
        .signed_by(&key, &issuer)
        .context("cannot sign the certificate")?;

    let cert_path = args.dir.join(format!("{}.pem", args.name));
    let key_path = args.dir.join(format!("{}-key.pem", args.name));
    // Key first: a node watching the pair never sees a new certificate with the old key.
    write_file(&key_path, key.serialize_pem().as_bytes(), true)?;
    write_file(&cert_path, cert.pem().as_bytes(), false)?;
    Ok(Written {
        cert: cert_path,
        key: key_path,
        ca: ca_path,
        ca_created,
    })
}

/// The CA's parameters; the same on every call, so a leaf made later names the CA that
/// `ca.pem` holds.
fn ca_params() -> anyhow::Result<CertificateParams> {
    let mut params = CertificateParams::default();
    params
        .distinguished_name
        .push(DnType::CommonName, CA_COMMON_NAME);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    set_validity(&mut params, CA_DAYS)?;
    Ok(params)
}

/// Valid from yesterday (clocks of other machines may lag) for `days` days.
fn set_validity(params: &mut CertificateParams, days: u64) -> anyhow::Result<()> {
    let today = Utc::now().date_naive();
    let from = today - Days::new(1);
    let until = today
        .checked_add_days(Days::new(days))
        .context("--days is too large")?;
    let ymd = |d: chrono::NaiveDate| date_time_ymd(d.year(), d.month() as u8, d.day() as u8);
    params.not_before = ymd(from);
    params.not_after = ymd(until);
    Ok(())
}

/// Writes through a temporary file renamed into place, so a reader never sees half a file;
/// keys are readable by their owner only.
fn write_file(path: &Path, bytes: &[u8], private: bool) -> anyhow::Result<()> {
    let tmp = path.with_extension("pem.tmp");
    let mut options = fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(if private { 0o600 } else { 0o644 });
    }
    #[cfg(not(unix))]
    let _ = private;
    let mut file = options
        .open(&tmp)
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(dir: &Path, name: &str, hosts: &[&str]) -> CertsArgs {
        CertsArgs {
            dir: dir.to_path_buf(),
            name: name.to_string(),
            hosts: hosts.iter().map(|h| h.to_string()).collect(),
            days: 30,
        }
    }

    #[test]
    fn the_ca_is_made_once_and_signs_every_later_certificate() {
        let dir = tempfile::tempdir().unwrap();
        let first = make(&args(dir.path(), "server", &["localhost", "127.0.0.1"])).unwrap();
        assert!(first.ca_created);
        let ca_before = fs::read(&first.ca).unwrap();
        let second = make(&args(dir.path(), "node-1", &["10.0.0.1"])).unwrap();
        assert!(!second.ca_created);
        assert_eq!(
            fs::read(&second.ca).unwrap(),
            ca_before,
            "the CA was replaced"
        );
        for written in [&first, &second] {
            let cert = fs::read_to_string(&written.cert).unwrap();
            let key = fs::read_to_string(&written.key).unwrap();
            assert!(cert.starts_with("-----BEGIN CERTIFICATE-----"), "{cert}");
            assert!(key.contains("PRIVATE KEY-----"), "{key}");
        }
    }

    #[cfg(unix)]
    #[test]
    fn keys_are_readable_by_their_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let written = make(&args(dir.path(), "server", &["localhost"])).unwrap();
        for key in [&written.key, &dir.path().join("ca-key.pem")] {
            let mode = fs::metadata(key).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{}", key.display());
        }
    }

    #[test]
    fn names_that_are_not_plain_file_names_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["", "../x", "a/b", ".hidden", "ca"] {
            assert!(
                make(&args(dir.path(), name, &["localhost"])).is_err(),
                "{name:?} was accepted"
            );
        }
    }

    #[test]
    fn a_host_that_is_no_dns_name_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let error = make(&args(dir.path(), "server", &["not a host"])).unwrap_err();
        assert!(format!("{error:#}").contains("HOST"), "{error:#}");
    }
}
