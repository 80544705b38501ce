//! The signed-in clinician of the bench's `care-team read` phase: invited with the
//! administrator's token, enrolled, given a second factor (staff must have one), and put on
//! the care team of some of the patients the load created, through the public API only.

use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use hyper::client::conn::http1;
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HOST};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpStream;

const REQUEST_TIMEOUT_SECS: u64 = 10;
const RESPONSE_BODY_BYTES_MAX: usize = 64 * 1024;
const PASSWORD: &str = "steady amber compass at noon";

pub(crate) struct Client {
    sender: http1::SendRequest<Full<Bytes>>,
    host: String,
}

impl Client {
    pub(crate) async fn connect(address: SocketAddr) -> Result<Self> {
        let stream = TcpStream::connect(address).await?;
        stream.set_nodelay(true)?;
        let (sender, connection) = http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(connection);
        Ok(Self {
            sender,
            host: address.to_string(),
        })
    }

    /// One request with an optional JSON body; the status and the JSON answer (or null).
    pub(crate) async fn call(
        &mut self,
        method: Method,
        path: &str,
        bearer: Option<&str>,
        body: Option<Value>,
    ) -> Result<(StatusCode, Value)> {
        let mut builder = Request::builder()
            .method(method)
            .uri(path)
            .header(HOST, &self.host);
        if let Some(bearer) = bearer {
            builder = builder.header(AUTHORIZATION, format!("Bearer {bearer}"));
        }
        let body = match body {
            Some(body) => {
                builder = builder.header(CONTENT_TYPE, "application/json");
                Full::new(Bytes::from(body.to_string()))
            }
            None => Full::new(Bytes::new()),
        };
        self.sender.ready().await?;
        let response = tokio::time::timeout(
            Duration::from_secs(REQUEST_TIMEOUT_SECS),
            self.sender.send_request(builder.body(body)?),
        )
        .await
        .context("timed out")??;
        let status = response.status();
        let bytes = Limited::new(response.into_body(), RESPONSE_BODY_BYTES_MAX)
            .collect()
            .await
            .map_err(|e| anyhow::anyhow!("response body: {e}"))?
            .to_bytes();
        Ok((
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        ))
    }
}

pub(crate) fn text<'a>(value: &'a Value, field: &str) -> Result<&'a str> {
    value[field]
        .as_str()
        .with_context(|| format!("an answer without `{field}`: {value}"))
}

/// A clinician the bench or the seed made, with what a person needs to sign in as them.
#[derive(Debug)]
pub struct Clinician {
    pub token: String,
    pub team: Vec<String>,
    pub login: String,
    pub password: &'static str,
    /// Base32, for an authenticator app.
    pub totp_secret: String,
}

/// Signs a clinician in and puts them on the care team of up to
/// `load::CARE_TEAM_PATIENTS_MAX` of `ids`; their session token and those patients' ids.
pub async fn prepare(
    address: SocketAddr,
    admin_token: &str,
    ids: &[String],
) -> Result<(String, Vec<String>)> {
    let clinician = enrol(address, admin_token, ids).await?;
    Ok((clinician.token, clinician.team))
}

/// As [`prepare`], keeping the clinician's credentials.
pub async fn enrol(address: SocketAddr, admin_token: &str, ids: &[String]) -> Result<Clinician> {
    let mut client = Client::connect(address).await?;
    let (status, invited) = client
        .call(
            Method::POST,
            "/api/v1/invitations",
            Some(admin_token),
            Some(json!({ "role": "clinician" })),
        )
        .await?;
    if status != StatusCode::CREATED {
        bail!("inviting the bench clinician answered {status}: {invited}");
    }
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|since| since.as_nanos())
        .unwrap_or(0);
    let login = format!("clinician-{nanos}@haven.invalid");
    let (status, enrolled) = client
        .call(
            Method::POST,
            "/api/v1/auth/enrol",
            None,
            Some(json!({
                "invitation": text(&invited, "invitation")?,
                "login": login.clone(),
                "password": PASSWORD,
                "transport": "bearer",
            })),
        )
        .await?;
    if status != StatusCode::CREATED {
        bail!("enrolling the bench clinician answered {status}: {enrolled}");
    }
    let token = text(&enrolled, "token")?.to_owned();
    let (status, setup) = client
        .call(
            Method::POST,
            "/api/v1/auth/totp/setup",
            Some(&token),
            Some(json!({})),
        )
        .await?;
    if status != StatusCode::OK {
        bail!("setting up TOTP answered {status}: {setup}");
    }
    let totp_secret = text(&setup, "secret")?.to_owned();
    let secret = totp_rs::Secret::Encoded(totp_secret.clone())
        .to_bytes()
        .map_err(|e| anyhow::anyhow!("the TOTP secret is not base32: {e:?}"))?;
    let code = totp_rs::TOTP::new(totp_rs::Algorithm::SHA1, 6, 1, 30, secret)
        .map_err(|e| anyhow::anyhow!("a TOTP secret: {e}"))?
        .generate_current()
        .context("the clock is before 1970")?;
    let (status, confirmed) = client
        .call(
            Method::POST,
            "/api/v1/auth/totp/confirm",
            Some(&token),
            Some(json!({ "code": code })),
        )
        .await?;
    if status != StatusCode::OK {
        bail!("confirming TOTP answered {status}: {confirmed}");
    }
    let (_, me) = client
        .call(Method::GET, "/api/v1/me", Some(&token), None)
        .await?;
    let user = text(&me, "actor")?.to_owned();
    let team: Vec<String> = ids
        .iter()
        .take(crate::load::CARE_TEAM_PATIENTS_MAX)
        .cloned()
        .collect();
    for patient in &team {
        let (status, answer) = client
            .call(
                Method::PUT,
                &format!("/api/v1/patients/{patient}/care-team/{user}"),
                Some(admin_token),
                None,
            )
            .await?;
        if status != StatusCode::CREATED {
            bail!("adding the clinician to a care team answered {status}: {answer}");
        }
    }
    Ok(Clinician {
        token,
        team,
        login,
        password: PASSWORD,
        totp_secret,
    })
}
