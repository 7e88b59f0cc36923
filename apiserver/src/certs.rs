//! The API server's certificates. By default it is its own cluster CA: on first start it
//! generates the CA and a serving certificate under `<data-dir>/pki/` (`ca.crt`, `ca.key`,
//! `apiserver.crt`, `apiserver.key`; keys 0600), keeps them across restarts, and issues the
//! serving certificate again when it nears its end, lacks a name it must carry, or was signed by
//! another CA. The CA also signs the client certificates of people and components (the
//! kubeconfig's administrator, `ringrift up`'s controllers and agents).
//!
//! kube-apiserver's flags bring one's own instead: `--tls-cert-file` and
//! `--tls-private-key-file` (served as given, read again when the files change) and
//! `--client-ca-file` (client certificates it signed authenticate too).

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use ringrift_tls::pki::{self, Ca, CertInfo, LEAF_VALIDITY, Pem};

/// The common name of the CA this server generates, before `@<unix time>-<random>` (each CA a
/// name of its own, as k3s names its CAs: a client of another cluster then hears "unknown
/// authority", not "bad signature").
pub const CA_NAME: &str = "ringrift-ca";

/// How the server's TLS is set up.
#[derive(Debug, Clone)]
pub struct TlsOptions {
    /// `--tls-cert-file`: a serving certificate (chain) of one's own.
    pub cert_file: Option<PathBuf>,
    /// `--tls-private-key-file`: its key.
    pub key_file: Option<PathBuf>,
    /// `--client-ca-file`: CAs whose client certificates authenticate, besides this server's.
    pub client_ca_file: Option<PathBuf>,
    /// `--tls-san`: more names (DNS names or IP addresses) the serving certificate carries.
    pub sans: Vec<String>,
    /// How long an issued serving certificate is valid.
    pub serving_validity: Duration,
    /// How often the serving certificate is checked for renewal (or its files for changes).
    pub renew_check: Duration,
    /// How long the client certificate of an agent that joins (or renews) is valid.
    pub agent_certificate_validity: Duration,
}

impl Default for TlsOptions {
    fn default() -> Self {
        Self {
            cert_file: None,
            key_file: None,
            client_ca_file: None,
            sans: Vec::new(),
            serving_validity: Duration::from_secs(LEAF_VALIDITY.unsigned_abs()),
            renew_check: Duration::from_secs(3600),
            agent_certificate_validity: Duration::from_secs(
                crate::bootstrap::AGENT_CERT_VALIDITY.unsigned_abs(),
            ),
        }
    }
}

/// A certificate that cannot be set up.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    /// A file could not be read or written.
    #[error(transparent)]
    File(#[from] ringrift_tls::files::FileError),
    /// A certificate or key is unusable.
    #[error(transparent)]
    Pki(#[from] pki::PkiError),
    /// Only one half of a pair was given.
    #[error("{0}")]
    Incomplete(String),
}

fn read(path: &Path) -> Result<String, CertError> {
    Ok(ringrift_tls::files::read(path)?)
}

fn write(path: &Path, text: &str, private: bool) -> Result<(), CertError> {
    Ok(ringrift_tls::files::store(path, text, private)?)
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// This host's name, when it is one a certificate can carry.
/// This host's name, when it is one a certificate can carry (it always is in the serving
/// certificate's names).
pub fn host_name() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_lowercase())
        .filter(|h| pki::valid_dns_name(h))
}

/// The names the serving certificate carries: localhost, 127.0.0.1, ::1, the host name, the
/// address listened on (unless it is every address), the advertised address and `sans`.
pub fn serving_names(listen: SocketAddr, advertise: Option<IpAddr>, sans: &[String]) -> BTreeSet<String> {
    let mut names: BTreeSet<String> = ["localhost", "127.0.0.1", "::1"]
        .into_iter()
        .map(str::to_owned)
        .collect();
    names.extend(host_name());
    if !listen.ip().is_unspecified() {
        names.insert(listen.ip().to_string());
    }
    names.extend(advertise.map(|a| a.to_string()));
    names.extend(sans.iter().map(|s| s.trim().to_owned()).filter(|s| !s.is_empty()));
    names
}

enum Source {
    /// Issued by the cluster CA, kept in `dir` (or only in memory).
    Issued {
        dir: Option<PathBuf>,
        current: CertInfo,
        validity: i64,
    },
    /// The operator's files, as last read.
    Files {
        cert: PathBuf,
        key: PathBuf,
        read_at: (Option<SystemTime>, Option<SystemTime>),
    },
}

/// The server's CA and serving certificate, and how to keep the latter current.
pub struct Certs {
    ca: Ca,
    client_ca: Option<(PathBuf, String)>,
    names: BTreeSet<String>,
    source: Source,
}

impl std::fmt::Debug for Certs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Certs")
            .field("ca", &self.ca)
            .field("names", &self.names)
            .finish_non_exhaustive()
    }
}

fn pki_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("pki")
}

/// The cluster CA from `dir` (created there the first time), or a new one in memory.
fn cluster_ca(dir: Option<&Path>, now: i64) -> Result<Ca, CertError> {
    // A name of its own: the time it was made and a random part (two made in one second differ).
    let name = format!(
        "{CA_NAME}@{now}-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    let Some(dir) = dir else {
        return Ok(Ca::generate(&name, now)?);
    };
    let (cert, key) = (dir.join("ca.crt"), dir.join("ca.key"));
    match (cert.exists(), key.exists()) {
        (true, true) => Ok(Ca::from_pem(
            &read(&cert)?,
            &read(&key)?,
            &cert.display().to_string(),
        )?),
        (false, false) => {
            let ca = Ca::generate(&name, now)?;
            write(&key, ca.key_pem(), true)?;
            write(&cert, ca.cert_pem(), false)?;
            tracing::info!(cert = %cert.display(), hash = %ca.hash(), "generated the cluster CA");
            Ok(ca)
        }
        (true, false) => Err(CertError::Incomplete(format!(
            "{} exists but {} does not: restore the CA's key or remove both to start a new CA (every credential it signed stops working)",
            cert.display(),
            key.display()
        ))),
        (false, true) => Err(CertError::Incomplete(format!(
            "{} exists but {} does not: restore the CA certificate or remove both",
            key.display(),
            cert.display()
        ))),
    }
}

impl Certs {
    /// Sets up the CA and the serving certificate for `names`: read from `<data_dir>/pki`, made
    /// there (or in memory without a data directory) when missing or due, or the operator's
    /// files. Returns the serving certificate too.
    ///
    /// # Errors
    /// [`CertError`] naming the file at fault.
    pub fn open(
        data_dir: Option<&Path>,
        options: &TlsOptions,
        names: BTreeSet<String>,
        now: i64,
    ) -> Result<(Self, Pem), CertError> {
        let dir = data_dir.map(pki_dir);
        let ca = cluster_ca(dir.as_deref(), now)?;
        let client_ca = match &options.client_ca_file {
            Some(path) => {
                let text = read(path)?;
                pki::certificates(text.as_bytes(), &path.display().to_string())?;
                Some((path.clone(), text))
            }
            None => None,
        };
        let validity = i64::try_from(options.serving_validity.as_secs()).unwrap_or(LEAF_VALIDITY);
        let (source, serving) = match (&options.cert_file, &options.key_file) {
            (Some(cert), Some(key)) => {
                let pem = Pem {
                    cert: read(cert)?,
                    key: read(key)?,
                };
                pem.private_key()?;
                let info = CertInfo::from_pem(pem.cert.as_bytes(), &cert.display().to_string())?;
                if let Some(why) = info.invalid_at(now) {
                    tracing::warn!(cert = %cert.display(), "the serving certificate given is not valid now: {why}");
                }
                let source = Source::Files {
                    cert: cert.clone(),
                    key: key.clone(),
                    read_at: (modified(cert), modified(key)),
                };
                (source, pem)
            }
            (None, None) => {
                let (pem, info) = issued_serving(dir.as_deref(), &ca, &names, now, validity)?;
                let source = Source::Issued {
                    dir: dir.clone(),
                    current: info,
                    validity,
                };
                (source, pem)
            }
            _ => {
                return Err(CertError::Incomplete(
                    "--tls-cert-file and --tls-private-key-file go together".into(),
                ));
            }
        };
        Ok((
            Self {
                ca,
                client_ca,
                names,
                source,
            },
            serving,
        ))
    }

    /// The cluster CA: signs client credentials.
    pub fn ca(&self) -> &Ca {
        &self.ca
    }

    /// The CA bundle clients trust this server by: the cluster CA when it signed the serving
    /// certificate; none when the serving certificate is the operator's own.
    pub fn serving_ca_pem(&self) -> Option<&str> {
        matches!(self.source, Source::Issued { .. }).then(|| self.ca.cert_pem())
    }

    /// A second handle on the cluster CA, key included: what signs joining agents' requests.
    ///
    /// # Errors
    /// When the CA's own PEM does not read back (it always should).
    pub fn signer(&self) -> Result<Ca, ringrift_tls::pki::PkiError> {
        Ca::from_pem(self.ca.cert_pem(), self.ca.key_pem(), "the cluster CA")
    }

    /// The CAs whose client certificates authenticate: the cluster CA and `--client-ca-file`.
    ///
    /// # Errors
    /// When rustls refuses one.
    pub fn client_roots(&self) -> Result<rustls::RootCertStore, ringrift_tls::serve::ServeError> {
        let own = (self.ca.cert_pem().as_bytes(), "the cluster CA");
        let extra = self
            .client_ca
            .as_ref()
            .map(|(path, text)| (text.as_bytes(), path.to_str().unwrap_or("--client-ca-file")));
        ringrift_tls::serve::roots(std::iter::once(own).chain(extra))
    }

    /// The serving certificate to use from now on, when it changed: renewed because it was due,
    /// or the operator's files changed. With why.
    ///
    /// # Errors
    /// When a new certificate cannot be issued or the files read (the current one stays).
    pub fn refresh(&mut self, now: i64) -> Result<Option<(Pem, String)>, CertError> {
        match &mut self.source {
            Source::Issued {
                dir,
                current,
                validity,
            } => {
                let Some(why) = pki::renewal(current, &self.names, Some(self.ca.common_name()), now) else {
                    return Ok(None);
                };
                let pem = self
                    .ca
                    .serving("ringrift-apiserver", &names_list(&self.names), now, *validity)?;
                if let Some(dir) = dir.as_deref() {
                    store_serving(dir, &pem)?;
                }
                *current = pem.info()?;
                Ok(Some((pem, why)))
            }
            Source::Files { cert, key, read_at } => {
                let now_at = (modified(cert), modified(key));
                if now_at == *read_at {
                    return Ok(None);
                }
                let pem = Pem {
                    cert: read(cert)?,
                    key: read(key)?,
                };
                pem.private_key()?;
                CertInfo::from_pem(pem.cert.as_bytes(), &cert.display().to_string())?;
                *read_at = now_at;
                Ok(Some((pem, format!("{} changed", cert.display()))))
            }
        }
    }
}

fn names_list(names: &BTreeSet<String>) -> Vec<String> {
    names.iter().cloned().collect()
}

fn store_serving(dir: &Path, pem: &Pem) -> Result<(), CertError> {
    write(&dir.join("apiserver.key"), &pem.key, true)?;
    write(&dir.join("apiserver.crt"), &pem.cert, false)
}

/// The stored serving certificate when it is still good for `names`; else a new one (stored).
fn issued_serving(
    dir: Option<&Path>,
    ca: &Ca,
    names: &BTreeSet<String>,
    now: i64,
    validity: i64,
) -> Result<(Pem, CertInfo), CertError> {
    if let Some(dir) = dir {
        let (cert, key) = (dir.join("apiserver.crt"), dir.join("apiserver.key"));
        if cert.exists() && key.exists() {
            let pem = Pem {
                cert: read(&cert)?,
                key: read(&key)?,
            };
            match CertInfo::from_pem(pem.cert.as_bytes(), &cert.display().to_string()) {
                Ok(info) => match pki::renewal(&info, names, Some(ca.common_name()), now) {
                    None => return Ok((pem, info)),
                    Some(why) => {
                        tracing::info!(cert = %cert.display(), "issuing a new serving certificate: {why}");
                    }
                },
                Err(e) => {
                    tracing::warn!(error = %e, "the stored serving certificate is unreadable; issuing a new one");
                }
            }
        }
    }
    let pem = ca.serving("ringrift-apiserver", &names_list(names), now, validity)?;
    if let Some(dir) = dir {
        store_serving(dir, &pem)?;
    }
    let info = pem.info()?;
    Ok((pem, info))
}

#[cfg(test)]
mod tests;
