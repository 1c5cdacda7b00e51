//! TLS on the S3 listener: a rustls server config (TLS 1.2 and 1.3, ALPN h2 and
//! http/1.1, ring) whose certificate comes from PEM files that are re-read every
//! few seconds, so a renewed certificate (cert-manager, a Secret volume's symlink
//! swap) reaches new connections without a restart. Also the peers' side: the
//! client config that verifies other nodes against the cluster CA, and the
//! checks that refuse a node whose transport does not match its cluster's.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

/// How often the certificate files are re-read.
pub const DEFAULT_RELOAD_INTERVAL: Duration = Duration::from_secs(2);

/// Where the listener's certificate chain and private key live (PEM, as
/// cert-manager writes `tls.crt` and `tls.key`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub reload_interval: Duration,
}

impl TlsFiles {
    pub fn new(cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Self {
        Self {
            cert: cert.into(),
            key: key.into(),
            reload_interval: DEFAULT_RELOAD_INTERVAL,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} holds no PEM certificate")]
    NoCertificate { path: PathBuf },
    #[error("{path} is not a PEM certificate chain: {message}")]
    BadCertificate { path: PathBuf, message: String },
    #[error("{path} holds no usable PEM private key (PKCS#8, RSA or EC): {message}")]
    BadKey { path: PathBuf, message: String },
    #[error("{path} holds no usable PEM CA certificate: {message}")]
    BadCa { path: PathBuf, message: String },
    #[error("the key in {key} does not belong to the certificate in {cert}: {message}")]
    KeyMismatch {
        cert: PathBuf,
        key: PathBuf,
        message: String,
    },
}

/// The ring provider: one crypto backend for the whole binary, no aws-lc, no OpenSSL.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The raw bytes of both files; reloading compares them, so a symlink swap,
/// an in-place rewrite or a rename all count as a change.
#[derive(Clone, PartialEq, Eq)]
struct Pair {
    cert: Vec<u8>,
    key: Vec<u8>,
}

fn read_pair(files: &TlsFiles) -> Result<Pair, TlsError> {
    let read = |path: &Path| {
        std::fs::read(path).map_err(|source| TlsError::Read {
            path: path.to_owned(),
            source,
        })
    };
    Ok(Pair {
        cert: read(&files.cert)?,
        key: read(&files.key)?,
    })
}

fn certified_key(files: &TlsFiles, pair: &Pair) -> Result<CertifiedKey, TlsError> {
    let chain = CertificateDer::pem_slice_iter(&pair.cert)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::BadCertificate {
            path: files.cert.clone(),
            message: e.to_string(),
        })?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate {
            path: files.cert.clone(),
        });
    }
    let key = PrivateKeyDer::from_pem_slice(&pair.key).map_err(|e| TlsError::BadKey {
        path: files.key.clone(),
        message: e.to_string(),
    })?;
    let signing = provider()
        .key_provider
        .load_private_key(key)
        .map_err(|e| TlsError::BadKey {
            path: files.key.clone(),
            message: e.to_string(),
        })?;
    let certified = CertifiedKey::new(chain, signing);
    // A half-written certificate parses as a shorter chain, and a renewal caught
    // between its two files pairs a new key with the old certificate: both are
    // caught here, by comparing the key with the leaf's public key.
    match certified.keys_match() {
        Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {
            Ok(certified)
        }
        Err(e) => Err(TlsError::KeyMismatch {
            cert: files.cert.clone(),
            key: files.key.clone(),
            message: e.to_string(),
        }),
    }
}

/// The certificate new handshakes get; swapped by [`CertificateReloader`].
pub struct CurrentCertificate {
    current: RwLock<Arc<CertifiedKey>>,
}

impl fmt::Debug for CurrentCertificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CurrentCertificate")
    }
}

impl CurrentCertificate {
    fn get(&self) -> Arc<CertifiedKey> {
        match self.current.read() {
            Ok(guard) => guard.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    fn set(&self, key: CertifiedKey) {
        match self.current.write() {
            Ok(mut guard) => *guard = Arc::new(key),
            Err(poisoned) => *poisoned.into_inner() = Arc::new(key),
        }
    }
}

impl ResolvesServerCert for CurrentCertificate {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.get())
    }
}

/// What one look at the certificate files did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reload {
    /// Same bytes as the certificate in use, or as a pair already refused.
    Unchanged,
    /// A new, good pair now serves new handshakes.
    Installed,
    /// A new pair that does not load; reported (once) and ignored.
    Refused,
}

/// Loads the files once (a broken pair at start is an error) and then keeps
/// re-reading them.
pub struct CertificateReloader {
    files: TlsFiles,
    loaded: Pair,
    /// The last pair that failed, so a broken file is reported once, not on every poll.
    failed: Option<Pair>,
    certificate: Arc<CurrentCertificate>,
}

impl CertificateReloader {
    pub fn load(files: TlsFiles) -> Result<Self, TlsError> {
        let pair = read_pair(&files)?;
        let key = certified_key(&files, &pair)?;
        Ok(Self {
            files,
            loaded: pair,
            failed: None,
            certificate: Arc::new(CurrentCertificate {
                current: RwLock::new(Arc::new(key)),
            }),
        })
    }

    /// A server config that takes the current certificate at every handshake.
    pub fn server_config(&self) -> Arc<rustls::ServerConfig> {
        let builder = rustls::ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12]);
        let mut config = match builder {
            Ok(builder) => builder
                .with_no_client_auth()
                .with_cert_resolver(self.certificate.clone()),
            // The ring provider supports both versions; this cannot happen.
            Err(e) => unreachable!("ring supports TLS 1.2 and 1.3: {e}"),
        };
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Arc::new(config)
    }

    /// Re-reads the files; swaps the certificate when they changed and are good.
    pub fn reload(&mut self) -> Reload {
        let pair = match read_pair(&self.files) {
            Ok(pair) => pair,
            Err(e) => {
                // A Secret volume swaps its symlink atomically, so a missing file
                // is a real problem; still, report it once until it changes.
                let marker = Pair {
                    cert: e.to_string().into_bytes(),
                    key: Vec::new(),
                };
                if self.failed.as_ref() == Some(&marker) {
                    return Reload::Unchanged;
                }
                tracing::error!(error = %e, "cannot reload the TLS certificate; serving the previous one");
                self.failed = Some(marker);
                return Reload::Refused;
            }
        };
        if pair == self.loaded || self.failed.as_ref() == Some(&pair) {
            return Reload::Unchanged;
        }
        match certified_key(&self.files, &pair) {
            Ok(key) => {
                self.certificate.set(key);
                self.loaded = pair;
                self.failed = None;
                tracing::info!(cert = %self.files.cert.display(), "TLS certificate reloaded");
                Reload::Installed
            }
            Err(e) => {
                tracing::error!(error = %e, "new TLS certificate refused; serving the previous one");
                self.failed = Some(pair);
                Reload::Refused
            }
        }
    }

    /// Polls the files until the returned task is aborted.
    pub fn spawn(mut self) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(self.files.reload_interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tick.tick().await;
                self.reload();
            }
        })
    }
}

/// The first byte of every TLS connection: a handshake record.
const TLS_HANDSHAKE_RECORD: u8 = 0x16;

/// Whether a connection to the TLS port starts with a TLS handshake. Anything
/// else (a plain `GET /`) gets a short plain-text 400 and is closed, so a
/// client pointed at `http://` learns why at once instead of waiting.
pub async fn starts_with_tls(stream: &mut TcpStream) -> std::io::Result<bool> {
    let mut first = [0u8; 1];
    let n = stream.peek(&mut first).await?;
    if n == 0 {
        return Ok(false);
    }
    if first[0] == TLS_HANDSHAKE_RECORD {
        return Ok(true);
    }
    let body = "This port serves HTTPS: use https:// in the endpoint URL.\n";
    let response = format!(
        "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.shutdown().await;
    // Closing with the request unread would reset the connection, and the
    // client could lose the answer; read a little of it first (briefly).
    let mut sink = [0u8; 4096];
    let drain = async {
        let mut total = 0;
        while total < 64 * 1024 {
            match stream.read(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(n) => total += n,
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_millis(200), drain).await;
    Ok(false)
}

/// The cluster CA's certificates (`--peer-ca`).
fn peer_roots(ca: &Path) -> Result<rustls::RootCertStore, TlsError> {
    let bad = |message: String| TlsError::BadCa {
        path: ca.to_owned(),
        message,
    };
    let pem = std::fs::read(ca).map_err(|source| TlsError::Read {
        path: ca.to_owned(),
        source,
    })?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        let cert = cert.map_err(|e| bad(e.to_string()))?;
        roots.add(cert).map_err(|e| bad(e.to_string()))?;
    }
    if roots.is_empty() {
        return Err(bad("no certificate in the file".to_owned()));
    }
    Ok(roots)
}

/// The TLS client config peers use to reach each other: only certificates
/// issued by the cluster CA in `ca` are trusted (never the system roots).
pub fn peer_client_config(ca: &Path) -> Result<rustls::ClientConfig, TlsError> {
    let roots = peer_roots(ca)?;
    let config = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| TlsError::BadCa {
            path: ca.to_owned(),
            message: e.to_string(),
        })?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(config)
}

/// Whether this node's own certificate would be accepted by its peers: issued
/// by the cluster CA and naming the host of its advertise URL. Checked at start,
/// so a node with a certificate from another CA is refused with a clear message
/// instead of joining and failing every replication to it.
pub fn check_own_certificate(
    files: &TlsFiles,
    ca: &Path,
    advertise_url: &str,
) -> anyhow::Result<()> {
    let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
        Arc::new(peer_roots(ca)?),
        provider(),
    )
    .build()?;
    let pair = read_pair(files)?;
    let key = certified_key(files, &pair)?;
    let (leaf, intermediates) = key
        .cert
        .split_first()
        .ok_or_else(|| TlsError::NoCertificate {
            path: files.cert.clone(),
        })?;
    let host = url_host(advertise_url)
        .ok_or_else(|| anyhow::anyhow!("--advertise-url {advertise_url} names no host"))?;
    let name = rustls::pki_types::ServerName::try_from(host.to_owned())
        .map_err(|e| anyhow::anyhow!("--advertise-url host {host}: {e}"))?;
    use rustls::client::danger::ServerCertVerifier as _;
    verifier
        .verify_server_cert(
            leaf,
            intermediates,
            &name,
            &[],
            rustls::pki_types::UnixTime::now(),
        )
        .map_err(|e| {
            anyhow::anyhow!(
                "this node's certificate {} would be refused by its peers for {host}: {e}; \
                 it must be issued by the cluster CA (--peer-ca) and name the host of \
                 --advertise-url",
                files.cert.display()
            )
        })?;
    Ok(())
}

/// The host of `scheme://host[:port][/...]`, without IPv6 brackets.
fn url_host(url: &str) -> Option<&str> {
    let rest = url.split_once("://")?.1;
    let authority = rest.split(['/', '?']).next()?;
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next()?,
        None => authority.rsplit_once(':').map_or(authority, |(h, _)| h),
    };
    (!host.is_empty()).then_some(host)
}

/// The scheme of a node URL, as peers will speak to it.
pub fn url_is_https(url: &str) -> bool {
    url.get(..8)
        .is_some_and(|s| s.eq_ignore_ascii_case("https://"))
}

/// Refuses to join a cluster whose live members speak another transport (a
/// TLS node among plain ones, or the reverse): peers would either fail every
/// request or, worse, fall back to clear text. Then asks every live peer for
/// its health over TLS: a certificate the cluster CA does not vouch for (or
/// a `--peer-ca` that is not the cluster's) refuses the start.
pub async fn check_peers(
    view: &crate::cluster::View,
    config: &crate::cluster::ClusterConfig,
    peer_tls: Option<&rustls::ClientConfig>,
) -> anyhow::Result<()> {
    let me_tls = url_is_https(&config.advertise_url);
    let alive: Vec<_> = view
        .nodes
        .iter()
        .filter(|n| n.id != config.node_id)
        .filter(|n| view.liveness(n, config.dead_after) != crate::cluster::Liveness::Dead)
        .collect();
    for node in &alive {
        if url_is_https(&node.url) != me_tls {
            let (mine, theirs) = if me_tls {
                ("TLS", "plain HTTP")
            } else {
                ("plain HTTP", "TLS")
            };
            anyhow::bail!(
                "node {} ({}) serves {theirs} but this node ({}) serves {mine}: a cluster is \
                 all TLS or all plain HTTP; give every node --tls-cert/--tls-key and --peer-ca \
                 (or none), then restart them",
                node.id,
                node.url,
                config.advertise_url
            );
        }
    }
    let Some(tls) = peer_tls else { return Ok(()) };
    let client = reqwest::Client::builder()
        .use_preconfigured_tls(tls.clone())
        .connect_timeout(Duration::from_secs(2))
        .timeout(Duration::from_secs(5))
        .build()?;
    for node in alive {
        let url = format!("{}/health/live", node.url.trim_end_matches('/'));
        if let Err(e) = client.get(&url).send().await
            && let Some(tls_error) = rustls_error(&e)
        {
            anyhow::bail!(
                "peer {} at {} failed TLS verification against --peer-ca: {tls_error}; \
                 every node needs a certificate from the cluster CA and the same --peer-ca",
                node.id,
                node.url
            );
        }
        // Other errors (a peer restarting) are the healer's business, not a
        // reason to refuse the start.
    }
    Ok(())
}

/// The TLS verification failure somewhere in an error's source chain, as text.
/// The chain runs through reqwest, hyper-util and an io::Error whose payload
/// may be boxed again, so the rustls error is matched by type where it can be
/// and by its message ("invalid peer certificate") where it cannot.
fn rustls_error(error: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = current {
        if let Some(found) = e.downcast_ref::<rustls::Error>() {
            return Some(found.to_string());
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>()
            && let Some(found) = io.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>())
        {
            return Some(found.to_string());
        }
        let text = e.to_string();
        if text.contains("invalid peer certificate") {
            return Some(text);
        }
        current = e.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(name: &str) -> (String, String, Vec<u8>) {
        let key = rcgen::KeyPair::generate().expect("key");
        let params = rcgen::CertificateParams::new(vec![name.to_owned()]).expect("params");
        let cert = params.self_signed(&key).expect("cert");
        (cert.pem(), key.serialize_pem(), cert.der().to_vec())
    }

    /// The leaf new handshakes get.
    fn serving(reloader: &CertificateReloader) -> Vec<u8> {
        reloader.certificate.get().cert[0].to_vec()
    }

    #[test]
    fn a_bad_pair_is_refused_once_and_a_good_one_installed() {
        let dir =
            std::env::temp_dir().join(format!("coffer-tls-unit-{:016x}", rand::random::<u64>()));
        std::fs::create_dir_all(&dir).expect("dir");
        let files = TlsFiles::new(dir.join("tls.crt"), dir.join("tls.key"));
        let write = |cert: &str, key: &str| {
            std::fs::write(&files.cert, cert).expect("cert");
            std::fs::write(&files.key, key).expect("key");
        };
        let (cert_a, key_a, der_a) = pair("a.example");
        let (cert_b, key_b, der_b) = pair("b.example");
        write(&cert_a, &key_a);
        let mut reloader = CertificateReloader::load(files.clone()).expect("load");
        assert_eq!(reloader.reload(), Reload::Unchanged);

        // A key of another certificate: refused, reported on the first look only.
        write(&cert_b, &key_a);
        assert_eq!(reloader.reload(), Reload::Refused);
        assert_eq!(reloader.reload(), Reload::Unchanged);
        // Half a certificate: a different bad pair, reported once too.
        write(&cert_b[..cert_b.len() / 2], &key_b);
        assert_eq!(reloader.reload(), Reload::Refused);
        assert_eq!(reloader.reload(), Reload::Unchanged);
        // A missing file.
        std::fs::remove_file(&files.key).expect("rm");
        assert_eq!(reloader.reload(), Reload::Refused);
        assert_eq!(reloader.reload(), Reload::Unchanged);
        // Through all of it the first certificate served; then a good pair.
        assert_eq!(serving(&reloader), der_a);
        write(&cert_b, &key_b);
        assert_eq!(reloader.reload(), Reload::Installed);
        assert_eq!(reloader.reload(), Reload::Unchanged);
        assert_eq!(serving(&reloader), der_b);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn url_host_reads_names_ips_and_ports() {
        assert_eq!(url_host("https://a.b.svc:9000"), Some("a.b.svc"));
        assert_eq!(url_host("https://127.0.0.1:9000/x"), Some("127.0.0.1"));
        assert_eq!(url_host("https://[::1]:9000"), Some("::1"));
        assert_eq!(url_host("https://host"), Some("host"));
        assert_eq!(url_host("nonsense"), None);
    }
}
