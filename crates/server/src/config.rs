//! Configuration: defaults, then an optional TOML file, then `HAVEN_*` environment
//! variables, then command-line flags, each overriding the one before.
//!
//! Everything is validated at start-up, and an error names the exact setting and where it
//! came from (`HAVEN_LISTEN`, `--listen`, or `listen in haven.toml`), so an operator never
//! has to guess which of four places holds the typo.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};

use haven_app::siem::{SYSLOG_TLS_PORT_DEFAULT, SyslogHostname};

/// Validated settings for `haven serve` and the CLI.
#[derive(Clone, PartialEq, Eq)]
pub struct Config {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    /// `None`: the embedded SQLite database in the data directory.
    pub database_url: Option<String>,
    /// The address people use to reach Haven (`https://clinic.example.org`): the origin
    /// and relying-party id of passkeys. Unset on a loopback address, `http(s)://localhost:PORT`.
    pub public_url: Option<String>,
    pub tls: Option<TlsFiles>,
    /// A TLS-terminating proxy sits in front, so plain HTTP on a non-loopback address is
    /// acceptable (and HSTS is still sent).
    pub behind_tls_proxy: bool,
    pub body_bytes_max: usize,
    pub request_timeout_secs: u64,
    pub connections_max: usize,
    pub shutdown_grace_secs: u64,
    pub log_format: LogFormat,
    /// `None`: no SIEM export (the default).
    pub siem: Option<SiemSettings>,
    /// `None`: attachments' sealed chunks are kept in the database (the default); a
    /// directory keeps them as files instead.
    pub attachments_dir: Option<PathBuf>,
    /// `None`: no media relay (browsers on one network still connect directly).
    pub turn: Option<TurnConfig>,
}

/// coturn as the visits' media relay, with `use-auth-secret`: Haven hands browsers
/// credentials made from the secret they share, which expire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TurnConfig {
    /// `turn:`, `turns:` or `stun:` URLs, given to browsers as they are.
    pub urls: Vec<String>,
    /// A file holding coturn's `static-auth-secret` (a file, so the secret is in no
    /// environment or process list).
    pub secret_file: PathBuf,
}

/// The database URL may hold a password: never print it.
impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("listen", &self.listen)
            .field("data_dir", &self.data_dir)
            .field(
                "database",
                &if self.database_url.is_some() {
                    "postgres (url redacted)"
                } else {
                    "embedded sqlite"
                },
            )
            .field("tls", &self.tls)
            .field("behind_tls_proxy", &self.behind_tls_proxy)
            .field("body_bytes_max", &self.body_bytes_max)
            .field("request_timeout_secs", &self.request_timeout_secs)
            .field("connections_max", &self.connections_max)
            .field("siem", &self.siem)
            .field("attachments_dir", &self.attachments_dir)
            .field("turn", &self.turn)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Where and how the audit log is exported: RFC 5424 syslog over TLS (RFC 5425) to one
/// collector. Holds paths, never key material.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SiemSettings {
    /// The collector's host name or IP address.
    pub host: String,
    pub port: u16,
    /// PEM file of the CA certificate(s) that may have signed the collector's certificate.
    /// Only these are trusted for the collector, never the system's roots.
    pub ca_cert: PathBuf,
    /// A client certificate and key, for collectors that require mutual TLS (as IHE ATNA
    /// does).
    pub client: Option<TlsFiles>,
    /// The name the collector's certificate must be valid for; the host unless set.
    pub server_name: String,
    /// The syslog HOSTNAME; `None`: the machine's own name.
    pub hostname: Option<SyslogHostname>,
}

impl SiemSettings {
    /// `host:port`, with an IPv6 address in brackets: names the collector in logs and its
    /// export cursor.
    pub fn address(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// A setting was wrong; `setting` says which and where it came from.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid setting {setting}: {message}")]
pub struct ConfigError {
    pub setting: String,
    pub message: String,
}

/// Where a raw value came from, to name it in errors.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Source {
    Default,
    File(PathBuf),
    Env,
    Flag,
}

/// Every setting: its key in the TOML file; the environment variable is `HAVEN_` + upper
/// case, the flag `--` + kebab case.
const KEYS: &[&str] = &[
    "listen",
    "data_dir",
    "database_url",
    "public_url",
    "tls_cert",
    "tls_key",
    "behind_tls_proxy",
    "body_bytes_max",
    "request_timeout_secs",
    "connections_max",
    "shutdown_grace_secs",
    "log_format",
    "attachments_dir",
    "siem_collector",
    "siem_ca_cert",
    "siem_client_cert",
    "siem_client_key",
    "siem_server_name",
    "siem_hostname",
    "turn_urls",
    "turn_secret_file",
];

/// Settings grouped in a TOML table: `[siem]` with `collector = …` is the setting
/// `siem_collector` (`HAVEN_SIEM_COLLECTOR`, `--siem-collector`).
const SECTIONS: &[&str] = &["siem", "turn"];

/// The section a key belongs to and its name inside it (`siem_collector` → `siem`,
/// `collector`).
fn section_of(key: &str) -> Option<(&'static str, &str)> {
    SECTIONS.iter().find_map(|section| {
        key.strip_prefix(section)
            .and_then(|rest| rest.strip_prefix('_'))
            .map(|name| (*section, name))
    })
}

pub const BODY_BYTES_MAX_LIMIT: usize = 64 * 1024 * 1024;

fn describe(key: &str, source: &Source) -> String {
    match source {
        Source::Default => format!("{key} (default)"),
        Source::File(path) => match section_of(key) {
            Some((section, name)) => format!("{section}.{name} in {}", path.display()),
            None => format!("{key} in {}", path.display()),
        },
        Source::Env => format!("HAVEN_{}", key.to_uppercase()),
        Source::Flag => format!("--{}", key.replace('_', "-")),
    }
}

/// Settings given on the command line (each optional).
#[derive(Debug, Clone, Default)]
pub struct Flags {
    pub config: Option<PathBuf>,
    pub values: BTreeMap<&'static str, String>,
}

#[derive(Debug, Default)]
struct Raw(BTreeMap<&'static str, (String, Source)>);

impl Raw {
    fn set(&mut self, key: &'static str, value: String, source: Source) {
        self.0.insert(key, (value, source));
    }

    fn parse<T>(
        &self,
        key: &str,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Result<Option<T>, ConfigError> {
        match self.0.get(key) {
            Some((value, source)) => parse(value).map(Some).map_err(|message| ConfigError {
                setting: describe(key, source),
                message,
            }),
            None => Ok(None),
        }
    }

    fn source(&self, key: &str) -> String {
        self.0
            .get(key)
            .map(|(_, source)| describe(key, source))
            .unwrap_or_else(|| describe(key, &Source::Default))
    }
}

/// Loads configuration from all sources. `env` is passed in (not read here) so tests can
/// give any environment.
pub fn load(flags: &Flags, env: &BTreeMap<String, String>) -> Result<Config, ConfigError> {
    let mut raw = Raw::default();

    let config_file = flags.config.clone().map(|p| (p, Source::Flag)).or_else(|| {
        env.get("HAVEN_CONFIG")
            .map(|p| (PathBuf::from(p), Source::Env))
    });
    if let Some((path, source)) = config_file {
        read_file(&path, &source, &mut raw)?;
    }
    for key in KEYS {
        if let Some(value) = env.get(&format!("HAVEN_{}", key.to_uppercase())) {
            raw.set(key, value.clone(), Source::Env);
        }
    }
    for (key, value) in &flags.values {
        raw.set(key, value.clone(), Source::Flag);
    }
    build(&raw)
}

fn read_file(path: &Path, source: &Source, raw: &mut Raw) -> Result<(), ConfigError> {
    let setting = match source {
        Source::Env => "HAVEN_CONFIG".to_owned(),
        _ => "--config".to_owned(),
    };
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
        setting: setting.clone(),
        message: format!("cannot read {}: {e}", path.display()),
    })?;
    let table: toml::Table = text.parse().map_err(|e: toml::de::Error| ConfigError {
        setting: format!("{setting} ({})", path.display()),
        message: format!("not valid TOML: {}", e.message()),
    })?;
    for (key, value) in table {
        if let (Some(section), toml::Value::Table(entries)) =
            (SECTIONS.iter().find(|s| **s == key), &value)
        {
            for (name, value) in entries {
                let full = format!("{section}_{name}");
                let Some(&known) = KEYS.iter().find(|k| **k == full) else {
                    let names: Vec<&str> = KEYS
                        .iter()
                        .filter_map(|k| section_of(k).filter(|(s, _)| s == section))
                        .map(|(_, name)| name)
                        .collect();
                    return Err(ConfigError {
                        setting: format!("{section}.{name} in {}", path.display()),
                        message: format!(
                            "unknown setting; known [{section}] settings are: {}",
                            names.join(", ")
                        ),
                    });
                };
                let text = scalar(value, &describe(known, &Source::File(path.to_owned())))?;
                raw.set(known, text, Source::File(path.to_owned()));
            }
            continue;
        }
        let Some(&known) = KEYS.iter().find(|k| **k == key && section_of(k).is_none()) else {
            let top_level: Vec<String> = KEYS
                .iter()
                .filter(|k| section_of(k).is_none())
                .map(|k| (*k).to_owned())
                .chain(SECTIONS.iter().map(|s| format!("[{s}]")))
                .collect();
            return Err(ConfigError {
                setting: format!("{key} in {}", path.display()),
                message: format!(
                    "unknown setting; known settings are: {}",
                    top_level.join(", ")
                ),
            });
        };
        let text = scalar(&value, &format!("{key} in {}", path.display()))?;
        raw.set(known, text, Source::File(path.to_owned()));
    }
    Ok(())
}

/// A TOML value as the text the other sources would give.
fn scalar(value: &toml::Value, setting: &str) -> Result<String, ConfigError> {
    match value {
        toml::Value::String(s) => Ok(s.clone()),
        toml::Value::Integer(i) => Ok(i.to_string()),
        toml::Value::Boolean(b) => Ok(b.to_string()),
        other => Err(ConfigError {
            setting: setting.to_owned(),
            message: format!(
                "expected a string, integer or boolean, found {}",
                other.type_str()
            ),
        }),
    }
}

fn parse_bool(text: &str) -> Result<bool, String> {
    match text.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        _ => Err(format!("`{text}` is not a boolean (use true or false)")),
    }
}

fn parse_number<T>(min: T, max: T) -> impl FnOnce(&str) -> Result<T, String>
where
    T: std::str::FromStr + PartialOrd + fmt::Display + Copy,
{
    move |text| {
        let value: T = text
            .trim()
            .parse()
            .map_err(|_| format!("`{text}` is not a whole number"))?;
        if value < min || value > max {
            return Err(format!(
                "{value} is outside the allowed range {min}..={max}"
            ));
        }
        Ok(value)
    }
}

fn build(raw: &Raw) -> Result<Config, ConfigError> {
    let listen = raw
        .parse("listen", |t| {
            t.trim().parse::<SocketAddr>().map_err(|_| {
                format!("`{t}` is not a socket address such as 127.0.0.1:8080 or [::1]:8080")
            })
        })?
        .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 8080)));
    let data_dir = raw
        .parse("data_dir", |t| {
            if t.trim().is_empty() {
                Err("must not be empty".to_owned())
            } else {
                Ok(PathBuf::from(t))
            }
        })?
        .unwrap_or_else(|| PathBuf::from("haven-data"));
    let database_url = raw.parse("database_url", |t| {
        let t = t.trim();
        if t.starts_with("postgres://") || t.starts_with("postgresql://") {
            Ok(t.to_owned())
        } else {
            Err("must be a PostgreSQL URL (postgres://user@host:5432/database); leave it unset for the embedded database".to_owned())
        }
    })?;
    let public_url = raw.parse("public_url", |t| {
        let t = t.trim().trim_end_matches('/');
        let host = t
            .strip_prefix("https://")
            .or_else(|| t.strip_prefix("http://localhost").map(|_| "localhost"));
        match host {
            Some(host) if !host.is_empty() && !host.contains('/') => Ok(t.to_owned()),
            _ => Err("must be an https:// origin such as https://clinic.example.org (http only for localhost), with no path".to_owned()),
        }
    })?;
    let path = |t: &str| {
        if t.trim().is_empty() {
            Err("must not be empty".to_owned())
        } else {
            Ok(PathBuf::from(t))
        }
    };
    let tls_cert = raw.parse("tls_cert", path)?;
    let tls_key = raw.parse("tls_key", path)?;
    let tls = match (tls_cert, tls_key) {
        (Some(cert), Some(key)) => Some(TlsFiles { cert, key }),
        (None, None) => None,
        (Some(_), None) => {
            return Err(ConfigError {
                setting: raw.source("tls_cert"),
                message: "a TLS certificate needs its private key too (tls_key / --tls-key)".into(),
            });
        }
        (None, Some(_)) => {
            return Err(ConfigError {
                setting: raw.source("tls_key"),
                message: "a TLS key needs its certificate too (tls_cert / --tls-cert)".into(),
            });
        }
    };
    let behind_tls_proxy = raw.parse("behind_tls_proxy", parse_bool)?.unwrap_or(false);
    let body_bytes_max = raw
        .parse(
            "body_bytes_max",
            parse_number(1024usize, BODY_BYTES_MAX_LIMIT),
        )?
        .unwrap_or(1024 * 1024);
    let request_timeout_secs = raw
        .parse("request_timeout_secs", parse_number(1u64, 3600))?
        .unwrap_or(30);
    let connections_max = raw
        .parse("connections_max", parse_number(1usize, 100_000))?
        .unwrap_or(1024);
    let shutdown_grace_secs = raw
        .parse("shutdown_grace_secs", parse_number(0u64, 3600))?
        .unwrap_or(30);
    let log_format = raw
        .parse("log_format", |t| match t.trim() {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            other => Err(format!("`{other}` is not a log format (text or json)")),
        })?
        .unwrap_or(LogFormat::Text);

    let siem = siem(raw, path)?;
    let attachments_dir = raw.parse("attachments_dir", path)?;
    let turn = turn(raw, path)?;

    if tls.is_none() && !behind_tls_proxy && !listen.ip().is_loopback() {
        return Err(ConfigError {
            setting: raw.source("listen"),
            message: format!(
                "refusing to listen on {listen} without TLS: health data would cross the network in plain text. \
                 Give a certificate with --tls-cert and --tls-key, or set HAVEN_BEHIND_TLS_PROXY=true if a \
                 TLS-terminating proxy sits in front of Haven"
            ),
        });
    }

    Ok(Config {
        listen,
        data_dir,
        database_url,
        public_url,
        tls,
        behind_tls_proxy,
        body_bytes_max,
        request_timeout_secs,
        connections_max,
        shutdown_grace_secs,
        log_format,
        siem,
        attachments_dir,
        turn,
    })
}

/// The media relay: both settings or neither.
fn turn(
    raw: &Raw,
    path: impl Fn(&str) -> Result<PathBuf, String> + Copy,
) -> Result<Option<TurnConfig>, ConfigError> {
    let urls = raw.parse("turn_urls", parse_turn_urls)?;
    let secret_file = raw.parse("turn_secret_file", path)?;
    match (urls, secret_file) {
        (Some(urls), Some(secret_file)) => Ok(Some(TurnConfig { urls, secret_file })),
        (None, None) => Ok(None),
        (Some(_), None) => Err(ConfigError {
            setting: raw.source("turn_urls"),
            message: "the media relay needs turn_secret_file (HAVEN_TURN_SECRET_FILE): the \
                      file holding coturn's static-auth-secret"
                .to_owned(),
        }),
        (None, Some(_)) => Err(ConfigError {
            setting: raw.source("turn_secret_file"),
            message: "has no effect without turn_urls (HAVEN_TURN_URLS), the relay's URLs"
                .to_owned(),
        }),
    }
}

/// A comma-separated list of `turn:`, `turns:` or `stun:` URLs.
fn parse_turn_urls(text: &str) -> Result<Vec<String>, String> {
    let urls: Vec<String> = text
        .split(',')
        .map(str::trim)
        .filter(|url| !url.is_empty())
        .map(str::to_owned)
        .collect();
    if urls.is_empty() {
        return Err("give one or more URLs such as turn:turn.example.org:3478".to_owned());
    }
    for url in &urls {
        let scheme_ok = ["turn:", "turns:", "stun:"]
            .iter()
            .any(|scheme| url.starts_with(scheme));
        if !scheme_ok || url.len() > 256 || url.chars().any(char::is_whitespace) {
            return Err(format!(
                "`{url}` is not a relay URL: expected turn:host:port, turns:host:port or stun:host:port"
            ));
        }
    }
    Ok(urls)
}

/// Parses `host`, `host:port`, `[v6]` or `[v6]:port`; the port defaults to 6514.
fn parse_collector(text: &str) -> Result<(String, u16), String> {
    let text = text.trim();
    let example = "such as siem.example.org:6514 or [2001:db8::1]:6514";
    if text.is_empty() {
        return Err("must not be empty".to_owned());
    }
    if text.contains("://") {
        return Err(format!("give host:port without a scheme, {example}"));
    }
    let (host, port) = if let Some(rest) = text.strip_prefix('[') {
        let (host, after) = rest
            .split_once(']')
            .ok_or_else(|| format!("`{text}` lacks the closing `]` of its IPv6 address"))?;
        host.parse::<Ipv6Addr>()
            .map_err(|_| format!("`{host}` is not an IPv6 address"))?;
        match after {
            "" => (host, None),
            _ => match after.strip_prefix(':') {
                Some(port) => (host, Some(port)),
                None => return Err(format!("`{text}` is not host:port, {example}")),
            },
        }
    } else {
        match text.rsplit_once(':') {
            Some((host, _)) if host.contains(':') => {
                return Err(format!(
                    "an IPv6 address goes in brackets with its port, {example}"
                ));
            }
            Some((host, port)) => (host, Some(port)),
            None => (text, None),
        }
    };
    if host.is_empty() || host.chars().any(|c| c.is_whitespace() || c == '/') {
        return Err(format!("`{text}` is not host:port, {example}"));
    }
    let port = match port {
        None => SYSLOG_TLS_PORT_DEFAULT,
        Some(port) => port
            .parse::<u16>()
            .ok()
            .filter(|port| *port != 0)
            .ok_or_else(|| format!("`{port}` is not a port (1 to 65535)"))?,
    };
    Ok((host.to_owned(), port))
}

/// A name the collector's certificate can be checked against: a DNS name or an IP address.
fn parse_server_name(text: &str) -> Result<String, String> {
    let text = text.trim();
    rustls_pki_types::ServerName::try_from(text)
        .map(|_| text.to_owned())
        .map_err(|_| format!("`{text}` is neither a DNS name nor an IP address"))
}

/// The SIEM export's settings: all or nothing, named in every error.
fn siem(
    raw: &Raw,
    path: impl Fn(&str) -> Result<PathBuf, String> + Copy,
) -> Result<Option<SiemSettings>, ConfigError> {
    let collector = raw.parse("siem_collector", parse_collector)?;
    let ca_cert = raw.parse("siem_ca_cert", path)?;
    let client_cert = raw.parse("siem_client_cert", path)?;
    let client_key = raw.parse("siem_client_key", path)?;
    let server_name = raw.parse("siem_server_name", parse_server_name)?;
    let hostname = raw.parse("siem_hostname", |t| SyslogHostname::parse(t.trim()))?;

    let Some((host, port)) = collector else {
        let stray = [
            "siem_ca_cert",
            "siem_client_cert",
            "siem_client_key",
            "siem_server_name",
            "siem_hostname",
        ]
        .into_iter()
        .find(|key| raw.0.contains_key(key));
        return match stray {
            Some(key) => Err(ConfigError {
                setting: raw.source(key),
                message: "has no effect without siem_collector (HAVEN_SIEM_COLLECTOR), \
                          which turns the SIEM export on"
                    .to_owned(),
            }),
            None => Ok(None),
        };
    };
    let Some(ca_cert) = ca_cert else {
        return Err(ConfigError {
            setting: raw.source("siem_collector"),
            message: "the SIEM export needs siem_ca_cert (HAVEN_SIEM_CA_CERT): the PEM file \
                      of the CA that signed the collector's certificate"
                .to_owned(),
        });
    };
    let client = match (client_cert, client_key) {
        (Some(cert), Some(key)) => Some(TlsFiles { cert, key }),
        (None, None) => None,
        (Some(_), None) => {
            return Err(ConfigError {
                setting: raw.source("siem_client_cert"),
                message: "a client certificate needs its private key too (siem_client_key)".into(),
            });
        }
        (None, Some(_)) => {
            return Err(ConfigError {
                setting: raw.source("siem_client_key"),
                message: "a client key needs its certificate too (siem_client_cert)".into(),
            });
        }
    };
    let server_name = match server_name {
        Some(name) => name,
        None => parse_server_name(&host).map_err(|message| ConfigError {
            setting: raw.source("siem_collector"),
            message: format!("{message}; set siem_server_name to the name in its certificate"),
        })?,
    };
    Ok(Some(SiemSettings {
        host,
        port,
        ca_cert,
        client,
        server_name,
        hostname,
    }))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn zero_configuration_is_loopback_and_local_data() {
        let config = load(&Flags::default(), &env(&[])).unwrap();
        assert_eq!(config.listen, SocketAddr::from(([127, 0, 0, 1], 8080)));
        assert_eq!(config.data_dir, PathBuf::from("haven-data"));
        assert_eq!(config.database_url, None);
    }

    #[test]
    fn environment_overrides_file_and_flags_override_environment() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("haven.toml");
        std::fs::write(
            &file,
            "listen = \"127.0.0.1:9000\"\nbody_bytes_max = 4096\n",
        )
        .unwrap();
        let mut flags = Flags {
            config: Some(file.clone()),
            ..Flags::default()
        };
        let config = load(&flags, &env(&[])).unwrap();
        assert_eq!(config.listen.port(), 9000);
        assert_eq!(config.body_bytes_max, 4096);

        let config = load(&flags, &env(&[("HAVEN_LISTEN", "127.0.0.1:9001")])).unwrap();
        assert_eq!(config.listen.port(), 9001);

        flags.values.insert("listen", "127.0.0.1:9002".into());
        let config = load(&flags, &env(&[("HAVEN_LISTEN", "127.0.0.1:9001")])).unwrap();
        assert_eq!(config.listen.port(), 9002);
    }

    #[test]
    fn errors_name_the_setting_and_its_source() {
        let error = load(&Flags::default(), &env(&[("HAVEN_LISTEN", "nonsense")])).unwrap_err();
        assert_eq!(error.setting, "HAVEN_LISTEN");

        let error = load(&Flags::default(), &env(&[("HAVEN_BODY_BYTES_MAX", "lots")])).unwrap_err();
        assert_eq!(error.setting, "HAVEN_BODY_BYTES_MAX");

        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("haven.toml");
        std::fs::write(&file, "lisen = \"127.0.0.1:9000\"\n").unwrap();
        let flags = Flags {
            config: Some(file),
            ..Flags::default()
        };
        let error = load(&flags, &env(&[])).unwrap_err();
        assert!(error.setting.starts_with("lisen in "), "{error}");
    }

    #[test]
    fn refuses_plain_http_beyond_loopback() {
        let error = load(&Flags::default(), &env(&[("HAVEN_LISTEN", "0.0.0.0:8080")])).unwrap_err();
        assert!(error.message.contains("without TLS"), "{error}");
        let behind_proxy = load(
            &Flags::default(),
            &env(&[
                ("HAVEN_LISTEN", "0.0.0.0:8080"),
                ("HAVEN_BEHIND_TLS_PROXY", "true"),
            ]),
        )
        .unwrap();
        assert!(behind_proxy.behind_tls_proxy);
    }

    #[test]
    fn tls_needs_both_files() {
        let error = load(&Flags::default(), &env(&[("HAVEN_TLS_CERT", "cert.pem")])).unwrap_err();
        assert_eq!(error.setting, "HAVEN_TLS_CERT");
    }

    #[test]
    fn the_siem_export_is_off_by_default() {
        let config = load(&Flags::default(), &env(&[])).unwrap();
        assert_eq!(config.siem, None);
    }

    #[test]
    fn the_siem_collector_port_defaults_to_6514_and_the_server_name_to_its_host() {
        let config = load(
            &Flags::default(),
            &env(&[
                ("HAVEN_SIEM_COLLECTOR", "siem.example.org"),
                ("HAVEN_SIEM_CA_CERT", "/etc/haven/siem-ca.pem"),
            ]),
        )
        .unwrap();
        let siem = config.siem.unwrap();
        assert_eq!((siem.host.as_str(), siem.port), ("siem.example.org", 6514));
        assert_eq!(siem.server_name, "siem.example.org");
        assert_eq!(siem.ca_cert, PathBuf::from("/etc/haven/siem-ca.pem"));
        assert_eq!((siem.client.as_ref(), siem.hostname.as_ref()), (None, None));
        assert_eq!(siem.address(), "siem.example.org:6514");

        for (given, host, port, address) in [
            ("10.0.0.5:1514", "10.0.0.5", 1514, "10.0.0.5:1514"),
            ("[2001:db8::1]", "2001:db8::1", 6514, "[2001:db8::1]:6514"),
            (
                "[2001:db8::1]:7514",
                "2001:db8::1",
                7514,
                "[2001:db8::1]:7514",
            ),
        ] {
            let config = load(
                &Flags::default(),
                &env(&[
                    ("HAVEN_SIEM_COLLECTOR", given),
                    ("HAVEN_SIEM_CA_CERT", "ca.pem"),
                ]),
            )
            .unwrap();
            let siem = config.siem.unwrap();
            assert_eq!((siem.host.as_str(), siem.port), (host, port), "{given}");
            assert_eq!(siem.server_name, host);
            assert_eq!(siem.address(), address);
        }
    }

    #[test]
    fn siem_settings_come_from_a_toml_table_and_the_environment_overrides_them() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("haven.toml");
        std::fs::write(
            &file,
            "[siem]\ncollector = \"10.0.0.5:6514\"\nca_cert = \"ca.pem\"\n\
             client_cert = \"client.pem\"\nclient_key = \"client.key\"\n\
             server_name = \"siem.example.org\"\nhostname = \"clinic-01\"\n",
        )
        .unwrap();
        let flags = Flags {
            config: Some(file.clone()),
            ..Flags::default()
        };
        let siem = load(&flags, &env(&[])).unwrap().siem.unwrap();
        assert_eq!(siem.server_name, "siem.example.org");
        assert_eq!(
            siem.client,
            Some(TlsFiles {
                cert: "client.pem".into(),
                key: "client.key".into()
            })
        );
        assert_eq!(siem.hostname.unwrap().as_str(), "clinic-01");

        let siem = load(&flags, &env(&[("HAVEN_SIEM_HOSTNAME", "clinic-02")]))
            .unwrap()
            .siem
            .unwrap();
        assert_eq!(siem.hostname.unwrap().as_str(), "clinic-02");

        // Errors name the key as it is written in the file.
        std::fs::write(
            &file,
            "[siem]\ncollector = \"a:b:c\"\nca_cert = \"ca.pem\"\n",
        )
        .unwrap();
        let error = load(&flags, &env(&[])).unwrap_err();
        assert!(error.setting.starts_with("siem.collector in "), "{error}");
        std::fs::write(&file, "[siem]\ncolector = \"siem:6514\"\n").unwrap();
        let error = load(&flags, &env(&[])).unwrap_err();
        assert!(error.setting.starts_with("siem.colector in "), "{error}");
        assert!(error.message.contains("collector, ca_cert"), "{error}");
        // Only inside the table: a top-level `siem_collector` is not a setting.
        std::fs::write(&file, "siem_collector = \"siem:6514\"\n").unwrap();
        let error = load(&flags, &env(&[])).unwrap_err();
        assert!(error.setting.starts_with("siem_collector in "), "{error}");
    }

    #[test]
    fn a_siem_collector_needs_a_ca_certificate() {
        let error = load(
            &Flags::default(),
            &env(&[("HAVEN_SIEM_COLLECTOR", "siem.example.org:6514")]),
        )
        .unwrap_err();
        assert_eq!(error.setting, "HAVEN_SIEM_COLLECTOR");
        assert!(error.message.contains("siem_ca_cert"), "{error}");
    }

    #[test]
    fn a_siem_client_certificate_needs_its_key() {
        let base = [
            ("HAVEN_SIEM_COLLECTOR", "siem.example.org"),
            ("HAVEN_SIEM_CA_CERT", "ca.pem"),
        ];
        let error = load(
            &Flags::default(),
            &env(&[base[0], base[1], ("HAVEN_SIEM_CLIENT_CERT", "client.pem")]),
        )
        .unwrap_err();
        assert_eq!(error.setting, "HAVEN_SIEM_CLIENT_CERT");
        let error = load(
            &Flags::default(),
            &env(&[base[0], base[1], ("HAVEN_SIEM_CLIENT_KEY", "client.key")]),
        )
        .unwrap_err();
        assert_eq!(error.setting, "HAVEN_SIEM_CLIENT_KEY");
    }

    #[test]
    fn siem_settings_without_a_collector_are_refused() {
        let error = load(&Flags::default(), &env(&[("HAVEN_SIEM_CA_CERT", "ca.pem")])).unwrap_err();
        assert_eq!(error.setting, "HAVEN_SIEM_CA_CERT");
        assert!(error.message.contains("siem_collector"), "{error}");
    }

    #[test]
    fn malformed_siem_settings_are_named() {
        for (key, value) in [
            ("HAVEN_SIEM_COLLECTOR", "tls://siem.example.org:6514"),
            ("HAVEN_SIEM_COLLECTOR", "siem.example.org:0"),
            ("HAVEN_SIEM_COLLECTOR", "siem.example.org:70000"),
            ("HAVEN_SIEM_COLLECTOR", "2001:db8::1:6514"),
            ("HAVEN_SIEM_COLLECTOR", "[2001:db8::1"),
            ("HAVEN_SIEM_COLLECTOR", ":6514"),
            ("HAVEN_SIEM_SERVER_NAME", "not a name"),
            ("HAVEN_SIEM_HOSTNAME", "two words"),
            ("HAVEN_SIEM_CA_CERT", " "),
        ] {
            let mut settings = vec![
                ("HAVEN_SIEM_COLLECTOR", "siem.example.org"),
                ("HAVEN_SIEM_CA_CERT", "ca.pem"),
            ];
            settings.retain(|(k, _)| *k != key);
            settings.push((key, value));
            let error = load(&Flags::default(), &env(&settings)).unwrap_err();
            assert_eq!(error.setting, key, "{value}: {error}");
        }
    }

    #[test]
    fn the_public_url_is_an_https_origin_or_localhost() {
        for good in [
            "https://clinic.example.org",
            "https://clinic.example.org:8443/",
            "http://localhost:8080",
        ] {
            let config = load(&Flags::default(), &env(&[("HAVEN_PUBLIC_URL", good)])).unwrap();
            assert_eq!(
                config.public_url.as_deref(),
                Some(good.trim_end_matches('/'))
            );
        }
        for bad in [
            "http://clinic.example.org",
            "clinic.example.org",
            "https://",
            "https://clinic.example.org/portal",
            "ftp://x",
        ] {
            let error = load(&Flags::default(), &env(&[("HAVEN_PUBLIC_URL", bad)])).unwrap_err();
            assert_eq!(error.setting, "HAVEN_PUBLIC_URL", "{bad}: {error}");
        }
        assert_eq!(load(&Flags::default(), &env(&[])).unwrap().public_url, None);
    }

    #[test]
    fn debug_never_prints_the_database_url() {
        let config = load(
            &Flags::default(),
            &env(&[("HAVEN_DATABASE_URL", "postgres://haven:s3cret@db/haven")]),
        )
        .unwrap();
        assert!(!format!("{config:?}").contains("s3cret"));
    }
}
