//! The SIEM export's transport: TLS to the collector (RFC 5425), with rustls and the
//! `ring` provider like the HTTPS listener, so no OpenSSL.
//!
//! Only the CA file given for the collector is trusted, never the system's roots: an audit
//! trail sent to whoever can get a certificate from a public CA for the collector's name
//! would leak who accessed which patient. A client certificate, when given, answers a
//! collector that asks for one (mutual TLS, as IHE ATNA's secure node requires). The files
//! are read once at start-up, so a bad file stops Haven before it serves anything.

use std::sync::Arc;

use anyhow::Context;
use haven_app::siem::{CollectorConnector, CollectorStream, SyslogHostname};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::net::TcpStream;

use crate::config::SiemSettings;

/// Connects to one collector over TLS.
pub(crate) struct TlsCollector {
    address: String,
    host: String,
    port: u16,
    server_name: ServerName<'static>,
    connector: tokio_rustls::TlsConnector,
}

/// The TLS configuration holds the client's private key: show where, never what.
impl std::fmt::Debug for TlsCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsCollector")
            .field("address", &self.address)
            .field("server_name", &self.server_name)
            .finish_non_exhaustive()
    }
}

impl TlsCollector {
    /// Reads the CA and client files and builds the TLS client; errors name the setting.
    pub(crate) fn new(settings: &SiemSettings) -> anyhow::Result<Self> {
        let mut roots = rustls::RootCertStore::empty();
        let ca_path = &settings.ca_cert;
        let cas = CertificateDer::pem_file_iter(ca_path)
            .with_context(|| format!("siem_ca_cert: cannot read {}", ca_path.display()))?
            .collect::<Result<Vec<_>, _>>()
            .with_context(|| format!("siem_ca_cert: cannot parse {}", ca_path.display()))?;
        anyhow::ensure!(
            !cas.is_empty(),
            "siem_ca_cert: no certificate found in {}",
            ca_path.display()
        );
        for ca in cas {
            roots.add(ca).with_context(|| {
                format!(
                    "siem_ca_cert: {} holds a certificate that cannot be a trust anchor",
                    ca_path.display()
                )
            })?;
        }

        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .context("TLS protocol versions")?
            .with_root_certificates(roots);
        let config = match &settings.client {
            None => builder.with_no_client_auth(),
            Some(files) => {
                let chain = CertificateDer::pem_file_iter(&files.cert)
                    .with_context(|| {
                        format!("siem_client_cert: cannot read {}", files.cert.display())
                    })?
                    .collect::<Result<Vec<_>, _>>()
                    .with_context(|| {
                        format!("siem_client_cert: cannot parse {}", files.cert.display())
                    })?;
                anyhow::ensure!(
                    !chain.is_empty(),
                    "siem_client_cert: no certificate found in {}",
                    files.cert.display()
                );
                // The error says which file, never what is in it.
                let key = PrivateKeyDer::from_pem_file(&files.key).with_context(|| {
                    format!(
                        "siem_client_key: cannot read a private key from {}",
                        files.key.display()
                    )
                })?;
                builder.with_client_auth_cert(chain, key).context(
                    "siem_client_cert and siem_client_key do not match or are unsupported",
                )?
            }
        };
        let server_name = ServerName::try_from(settings.server_name.clone())
            .context("siem_server_name: not a DNS name or an IP address")?;
        Ok(Self {
            address: settings.address(),
            host: settings.host.clone(),
            port: settings.port,
            server_name,
            connector: tokio_rustls::TlsConnector::from(Arc::new(config)),
        })
    }
}

#[async_trait::async_trait]
impl CollectorConnector for TlsCollector {
    fn name(&self) -> &str {
        &self.address
    }

    async fn connect(&self) -> std::io::Result<Box<dyn CollectorStream>> {
        let tcp = TcpStream::connect((self.host.as_str(), self.port)).await?;
        // Pages are written whole and flushed; waiting to coalesce only adds latency.
        tcp.set_nodelay(true)?;
        let tls = self
            .connector
            .connect(self.server_name.clone(), tcp)
            .await?;
        Ok(Box::new(tls))
    }
}

/// Where the kernel keeps the machine's name (Linux), then the conventional file.
const HOSTNAME_FILES: [&str; 2] = ["/proc/sys/kernel/hostname", "/etc/hostname"];

/// The syslog HOSTNAME: the configured one, else the machine's name if it is a valid
/// syslog hostname, else NILVALUE (`-`), which RFC 5424 allows when the name is unknown.
pub(crate) fn syslog_hostname(settings: &SiemSettings) -> SyslogHostname {
    if let Some(configured) = &settings.hostname {
        return configured.clone();
    }
    HOSTNAME_FILES
        .iter()
        .filter_map(|file| std::fs::read_to_string(file).ok())
        .find_map(|text| SyslogHostname::parse(text.trim()).ok())
        .unwrap_or_else(SyslogHostname::unknown)
}
