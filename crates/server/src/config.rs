//! Configuration: defaults, then an optional TOML file, then `HAVEN_*` environment
//! variables, then command-line flags, each overriding the one before.
//!
//! Everything is validated at start-up, and an error names the exact setting and where it
//! came from (`HAVEN_LISTEN`, `--listen`, or `listen in haven.toml`), so an operator never
//! has to guess which of four places holds the typo.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// Validated settings for `haven serve` and the CLI.
#[derive(Clone, PartialEq, Eq)]
pub struct Config {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    /// `None`: the embedded SQLite database in the data directory.
    pub database_url: Option<String>,
    pub tls: Option<TlsFiles>,
    /// A TLS-terminating proxy sits in front, so plain HTTP on a non-loopback address is
    /// acceptable (and HSTS is still sent).
    pub behind_tls_proxy: bool,
    pub body_bytes_max: usize,
    pub request_timeout_secs: u64,
    pub connections_max: usize,
    pub shutdown_grace_secs: u64,
    pub log_format: LogFormat,
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
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
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
    "tls_cert",
    "tls_key",
    "behind_tls_proxy",
    "body_bytes_max",
    "request_timeout_secs",
    "connections_max",
    "shutdown_grace_secs",
    "log_format",
];

pub const BODY_BYTES_MAX_LIMIT: usize = 64 * 1024 * 1024;

fn describe(key: &str, source: &Source) -> String {
    match source {
        Source::Default => format!("{key} (default)"),
        Source::File(path) => format!("{key} in {}", path.display()),
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
        let Some(&known) = KEYS.iter().find(|k| **k == key) else {
            return Err(ConfigError {
                setting: format!("{key} in {}", path.display()),
                message: format!("unknown setting; known settings are: {}", KEYS.join(", ")),
            });
        };
        let text = match value {
            toml::Value::String(s) => s,
            toml::Value::Integer(i) => i.to_string(),
            toml::Value::Boolean(b) => b.to_string(),
            other => {
                return Err(ConfigError {
                    setting: format!("{key} in {}", path.display()),
                    message: format!(
                        "expected a string, integer or boolean, found {}",
                        other.type_str()
                    ),
                });
            }
        };
        raw.set(known, text, Source::File(path.to_owned()));
    }
    Ok(())
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
        tls,
        behind_tls_proxy,
        body_bytes_max,
        request_timeout_secs,
        connections_max,
        shutdown_grace_secs,
        log_format,
    })
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
    fn debug_never_prints_the_database_url() {
        let config = load(
            &Flags::default(),
            &env(&[("HAVEN_DATABASE_URL", "postgres://haven:s3cret@db/haven")]),
        )
        .unwrap();
        assert!(!format!("{config:?}").contains("s3cret"));
    }
}
