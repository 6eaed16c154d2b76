//! TLS for the client port and the peer links (rustls, ring provider): certificates read
//! from PEM files and reloaded when the files change, so a renewed certificate is served
//! without a restart; server configs with optional client-certificate checks; the client
//! config peers dial each other with.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use rustls::client::ResolvesClientCert;
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, RootCertStore, ServerConfig, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// How often the certificate files are checked for a change.
pub const RELOAD_EVERY: Duration = Duration::from_secs(1);

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A file holds no usable PEM item of the kind asked for.
    #[error("{path}: {what}")]
    Pem {
        /// The file.
        path: PathBuf,
        /// What is missing or malformed.
        what: String,
    },
    /// rustls refused the material (a key that does not match its certificate, an
    /// unsupported key type, an empty CA).
    #[error("{0}")]
    Rustls(String),
}

fn rustls_error(error: impl std::fmt::Display) -> TlsError {
    TlsError::Rustls(error.to_string())
}

/// The crypto provider every config here uses.
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A certificate chain and key from two PEM files, kept current: [`CertStore::reload_if_changed`]
/// (run every [`RELOAD_EVERY`] by [`CertStore::watch`]) swaps in new files once they load
/// and match; a half-written or mismatched pair is logged and the old one kept.
#[derive(Debug)]
pub struct CertStore {
    cert_path: PathBuf,
    key_path: PathBuf,
    current: RwLock<Loaded>,
}

#[derive(Debug, Clone)]
struct Loaded {
    key: Arc<CertifiedKey>,
    stamp: (FileStamp, FileStamp),
}

/// What tells a changed file from an unchanged one without reading it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct FileStamp {
    modified: Option<SystemTime>,
    len: u64,
    inode: u64,
}

fn stamp(path: &Path) -> Result<FileStamp, TlsError> {
    let meta = fs::metadata(path).map_err(|source| TlsError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    #[cfg(unix)]
    let inode = std::os::unix::fs::MetadataExt::ino(&meta);
    #[cfg(not(unix))]
    let inode = 0;
    Ok(FileStamp {
        modified: meta.modified().ok(),
        len: meta.len(),
        inode,
    })
}

impl CertStore {
    /// Loads the pair; fails when either file is missing, malformed or they do not match.
    pub fn load(cert_path: &Path, key_path: &Path) -> Result<Arc<CertStore>, TlsError> {
        let loaded = load_pair(cert_path, key_path)?;
        Ok(Arc::new(CertStore {
            cert_path: cert_path.to_path_buf(),
            key_path: key_path.to_path_buf(),
            current: RwLock::new(loaded),
        }))
    }

    /// The pair served now.
    pub fn current(&self) -> Arc<CertifiedKey> {
        self.read().key.clone()
    }

    fn read(&self) -> Loaded {
        match self.current.read() {
            Ok(loaded) => loaded.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Loads the files again when either changed. `Ok(true)`: a new pair is served.
    pub fn reload_if_changed(&self) -> Result<bool, TlsError> {
        let now = (stamp(&self.cert_path)?, stamp(&self.key_path)?);
        if now == self.read().stamp {
            return Ok(false);
        }
        let loaded = load_pair(&self.cert_path, &self.key_path)?;
        match self.current.write() {
            Ok(mut current) => *current = loaded,
            Err(poisoned) => *poisoned.into_inner() = loaded,
        }
        Ok(true)
    }

    /// Checks the files every [`RELOAD_EVERY`] for as long as the store is in use.
    pub fn watch(self: &Arc<Self>, what: &'static str) {
        let store = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut last_error = String::new();
            loop {
                tokio::time::sleep(RELOAD_EVERY).await;
                let Some(store) = store.upgrade() else { return };
                match store.reload_if_changed() {
                    Ok(true) => {
                        last_error.clear();
                        tracing::info!(what, cert = %store.cert_path.display(), "TLS certificate reloaded");
                    }
                    Ok(false) => {}
                    // Said once per distinct problem: a renewal in progress is retried quietly.
                    Err(e) if e.to_string() != last_error => {
                        last_error = e.to_string();
                        tracing::warn!(what, error = %e, "TLS certificate files changed but cannot be loaded; still serving the previous certificate");
                    }
                    Err(_) => {}
                }
            }
        });
    }
}

fn load_pair(cert_path: &Path, key_path: &Path) -> Result<Loaded, TlsError> {
    // Stamps first: a file replaced while we read it is read again at the next check.
    let stamp = (stamp(cert_path)?, stamp(key_path)?);
    let certs = load_certs(cert_path)?;
    let key = load_key(key_path)?;
    let signing_key = provider()
        .key_provider
        .load_private_key(key)
        .map_err(|e| TlsError::Pem {
            path: key_path.to_path_buf(),
            what: format!("unusable private key: {e}"),
        })?;
    let key = CertifiedKey::new(certs, signing_key);
    key.keys_match().map_err(|e| TlsError::Pem {
        path: key_path.to_path_buf(),
        what: format!(
            "the key does not match the certificate in {}: {e}",
            cert_path.display()
        ),
    })?;
    Ok(Loaded {
        key: Arc::new(key),
        stamp,
    })
}

fn read_file(path: &Path) -> Result<Vec<u8>, TlsError> {
    fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// Every certificate in a PEM file, in order (leaf first for a chain).
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bytes = read_file(path)?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Pem {
            path: path.to_path_buf(),
            what: format!("malformed PEM: {e}"),
        })?;
    if certs.is_empty() {
        return Err(TlsError::Pem {
            path: path.to_path_buf(),
            what: "no CERTIFICATE in the file".into(),
        });
    }
    Ok(certs)
}

fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let bytes = read_file(path)?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| TlsError::Pem {
        path: path.to_path_buf(),
        what: format!("no usable PRIVATE KEY: {e}"),
    })
}

/// The certificates of a CA file as trust roots.
pub fn load_roots(path: &Path) -> Result<Arc<RootCertStore>, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in load_certs(path)? {
        roots.add(cert).map_err(|e| TlsError::Pem {
            path: path.to_path_buf(),
            what: format!("not a usable CA certificate: {e}"),
        })?;
    }
    Ok(Arc::new(roots))
}

/// Who may connect, as far as certificates go.
#[derive(Debug, Clone)]
pub enum ClientCerts {
    /// No client certificate asked for.
    NotAsked,
    /// A certificate signed by these roots is required to connect.
    Required(Arc<RootCertStore>),
    /// A certificate is asked for and, when given, must be signed by these roots; a client
    /// without one connects too (the peer port: `licensectl` has none, nodes have one).
    Optional(Arc<RootCertStore>),
}

/// A server config that serves the store's current certificate (HTTP/2 and HTTP/1.1).
pub fn server_config(
    store: Arc<CertStore>,
    clients: ClientCerts,
) -> Result<Arc<ServerConfig>, TlsError> {
    let builder = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(rustls_error)?;
    let builder = match clients {
        ClientCerts::NotAsked => builder.with_no_client_auth(),
        ClientCerts::Required(roots) => builder.with_client_cert_verifier(
            WebPkiClientVerifier::builder_with_provider(roots, provider())
                .build()
                .map_err(rustls_error)?,
        ),
        ClientCerts::Optional(roots) => builder.with_client_cert_verifier(
            WebPkiClientVerifier::builder_with_provider(roots, provider())
                .allow_unauthenticated()
                .build()
                .map_err(rustls_error)?,
        ),
    };
    let mut config = builder.with_cert_resolver(Arc::new(Resolver(store)));
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// A client config trusting `roots`, presenting the store's certificate when it is given.
pub fn client_config(
    roots: Arc<RootCertStore>,
    identity: Option<Arc<CertStore>>,
) -> Result<ClientConfig, TlsError> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(rustls_error)?
        .with_root_certificates(roots);
    let mut config = match identity {
        Some(store) => builder.with_client_cert_resolver(Arc::new(Resolver(store))),
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// Hands rustls the store's current pair at every handshake.
#[derive(Debug)]
struct Resolver(Arc<CertStore>);

impl ResolvesServerCert for Resolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.current())
    }
}

impl ResolvesClientCert for Resolver {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        Some(self.0.current())
    }

    fn has_certs(&self) -> bool {
        true
    }
}
