//! The relying party: Haven's identity towards authenticators, and the options that start
//! each ceremony.

use sha2::{Digest, Sha256};

use crate::limits::{CEREMONY_TIMEOUT_MS, ORIGINS_MAX, RP_ID_BYTES_MAX, RP_NAME_BYTES_MAX};
use crate::options::{
    AttestationConveyance, AuthenticatorSelection, CreationOptions, CredentialDescriptor,
    CredentialParameters, PublicKeyCredentialType, RelyingPartyEntity, RequestOptions,
    ResidentKeyRequirement, UserEntity, UserVerificationRequirement,
};
use crate::{Challenge, ConfigError, CoseAlgorithm, UserHandle};

/// Haven as a WebAuthn relying party: the RP ID that passkeys are bound to and the exact
/// origins (scheme, host and port) its pages are served from.
#[derive(Debug, Clone)]
pub struct RelyingParty {
    rp_id: String,
    name: String,
    origins: Vec<String>,
    rp_id_hash: [u8; 32],
}

impl RelyingParty {
    /// `rp_id` is a domain such as `clinic.example.org` or `localhost`; every origin, such
    /// as `https://clinic.example.org` or `http://localhost:8080`, must be on it or on a
    /// subdomain of it, written as browsers serialise origins (lower case, no path, no
    /// default port). Plain `http` is allowed only for `localhost`, which browsers treat
    /// as secure. Whether `rp_id` is a registrable domain rather than a public suffix is
    /// not checked here; the browser refuses the ceremony if it is not.
    pub fn new(rp_id: &str, name: &str, origins: &[impl AsRef<str>]) -> Result<Self, ConfigError> {
        check_rp_id(rp_id)?;
        if name.trim().is_empty() {
            return Err(ConfigError::Name("empty"));
        }
        if name.len() > RP_NAME_BYTES_MAX {
            return Err(ConfigError::Name("longer than 64 bytes"));
        }
        if origins.is_empty() {
            return Err(ConfigError::Origins("none given"));
        }
        if origins.len() > ORIGINS_MAX {
            return Err(ConfigError::Origins("more than 16"));
        }
        let mut checked: Vec<String> = Vec::with_capacity(origins.len());
        for origin in origins {
            let origin = origin.as_ref();
            check_origin(origin, rp_id).map_err(|reason| ConfigError::Origin {
                origin: origin.to_owned(),
                reason,
            })?;
            if checked.iter().any(|seen| seen == origin) {
                return Err(ConfigError::Origins("an origin is repeated"));
            }
            checked.push(origin.to_owned());
        }
        Ok(Self {
            rp_id: rp_id.to_owned(),
            name: name.to_owned(),
            origins: checked,
            rp_id_hash: Sha256::digest(rp_id.as_bytes()).into(),
        })
    }

    pub fn rp_id(&self) -> &str {
        &self.rp_id
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn origins(&self) -> &[String] {
        &self.origins
    }

    /// SHA-256 of the RP ID, the first 32 bytes of all authenticator data made for it.
    pub fn rp_id_hash(&self) -> &[u8; 32] {
        &self.rp_id_hash
    }

    /// Options for `navigator.credentials.create()`: a passkey with user verification for
    /// `user`, no attestation, one of [`CoseAlgorithm::OFFERED`]. `exclude_credentials`
    /// should list the account's existing credentials, so one authenticator is not
    /// registered twice.
    pub fn creation_options(
        &self,
        challenge: &Challenge,
        user: &UserHandle,
        user_name: &str,
        user_display_name: &str,
        exclude_credentials: Vec<CredentialDescriptor>,
    ) -> CreationOptions {
        CreationOptions {
            rp: RelyingPartyEntity {
                id: self.rp_id.clone(),
                name: self.name.clone(),
            },
            user: UserEntity {
                id: user.to_base64url(),
                name: user_name.to_owned(),
                display_name: user_display_name.to_owned(),
            },
            challenge: challenge.to_base64url(),
            pub_key_cred_params: CoseAlgorithm::OFFERED
                .iter()
                .map(|alg| CredentialParameters {
                    credential_type: PublicKeyCredentialType::PublicKey,
                    alg: alg.cose_id(),
                })
                .collect(),
            timeout: CEREMONY_TIMEOUT_MS,
            attestation: AttestationConveyance::None,
            authenticator_selection: AuthenticatorSelection {
                resident_key: ResidentKeyRequirement::Required,
                require_resident_key: true,
                user_verification: UserVerificationRequirement::Required,
            },
            exclude_credentials,
        }
    }

    /// Options for `navigator.credentials.get()`. Leave `allow_credentials` empty to let
    /// the user choose any of their passkeys (sign-in without a user name).
    pub fn request_options(
        &self,
        challenge: &Challenge,
        allow_credentials: Vec<CredentialDescriptor>,
    ) -> RequestOptions {
        RequestOptions {
            challenge: challenge.to_base64url(),
            rp_id: self.rp_id.clone(),
            allow_credentials,
            user_verification: UserVerificationRequirement::Required,
            timeout: CEREMONY_TIMEOUT_MS,
        }
    }
}

/// A lower-case ASCII domain name, as browsers compare them; not an IP address, which
/// cannot be an RP ID.
fn check_rp_id(rp_id: &str) -> Result<(), ConfigError> {
    if rp_id.is_empty() || rp_id.len() > RP_ID_BYTES_MAX {
        return Err(ConfigError::RpId("must be 1 to 253 bytes"));
    }
    for label in rp_id.split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err(ConfigError::RpId(
                "each dot-separated label must be 1 to 63 bytes",
            ));
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return Err(ConfigError::RpId(
                "must be a lower-case domain name (letters, digits, '-', '.'; IDNs as punycode)",
            ));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(ConfigError::RpId("a label starts or ends with '-'"));
        }
    }
    if rp_id
        .rsplit('.')
        .next()
        .is_some_and(|top| top.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(ConfigError::RpId("an IP address cannot be an RP ID"));
    }
    Ok(())
}

/// `scheme://host[:port]`, exactly as a browser serialises the origin of a page on
/// `rp_id` or a subdomain of it.
fn check_origin(origin: &str, rp_id: &str) -> Result<(), &'static str> {
    let (scheme, authority) = origin
        .split_once("://")
        .ok_or("must be scheme://host[:port]")?;
    let default_port = match scheme {
        "https" => "443",
        "http" => "80",
        _ => return Err("scheme must be https (or http for localhost)"),
    };
    if authority.contains(['/', '?', '#', '@', '[', ']']) {
        return Err("must have no path, query, fragment, user or IP literal");
    }
    let (host, port) = match authority.split_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (authority, None),
    };
    if let Some(port) = port {
        let valid = !port.is_empty()
            && !port.starts_with('0')
            && port.bytes().all(|b| b.is_ascii_digit())
            && port.parse::<u16>().is_ok();
        if !valid {
            return Err("port must be a number from 1 to 65535");
        }
        if port == default_port {
            return Err("browsers omit the scheme's default port; omit it here too");
        }
    }
    let on_rp_id = host == rp_id
        || host
            .strip_suffix(rp_id)
            .is_some_and(|prefix| prefix.ends_with('.') && prefix.len() > 1);
    if !on_rp_id {
        return Err("host must be the RP ID or a subdomain of it, in lower case");
    }
    if check_rp_id(host).is_err() {
        return Err("host must be a lower-case domain name");
    }
    let localhost = host == "localhost" || host.ends_with(".localhost");
    if scheme == "http" && !localhost {
        return Err("plain http is allowed only for localhost");
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn accepts_origins_on_the_rp_id_and_its_subdomains() {
        let rp = RelyingParty::new(
            "example.org",
            "Haven",
            &["https://example.org", "https://clinic.example.org:8443"],
        )
        .unwrap();
        assert_eq!(rp.origins().len(), 2);
        assert_eq!(
            rp.rp_id_hash(),
            &<[u8; 32]>::from(Sha256::digest(b"example.org"))
        );
        assert!(RelyingParty::new("localhost", "Haven", &["http://localhost:8080"]).is_ok());
    }

    #[test]
    fn refuses_origins_a_browser_would_never_send() {
        for origin in [
            "https://example.org/",
            "https://example.org:443",
            "http://localhost:80",
            "https://Example.org",
            "http://example.org",
            "ftp://example.org",
            "https://evilexample.org",
            "https://example.org.evil.com",
            "https://example.org:0",
            "https://example.org:65536",
            "https://example.org:",
            "example.org",
            "https://user@example.org",
        ] {
            let rp_id = if origin.contains("localhost") {
                "localhost"
            } else {
                "example.org"
            };
            assert!(
                matches!(
                    RelyingParty::new(rp_id, "Haven", &[origin]),
                    Err(ConfigError::Origin { .. })
                ),
                "{origin}"
            );
        }
    }

    #[test]
    fn refuses_bad_rp_ids_names_and_origin_lists() {
        for rp_id in [
            "",
            "Example.org",
            "127.0.0.1",
            "example..org",
            "-a.org",
            "a_b.org",
        ] {
            assert!(
                matches!(
                    RelyingParty::new(rp_id, "Haven", &["https://example.org"]),
                    Err(ConfigError::RpId(_))
                ),
                "{rp_id}"
            );
        }
        let none: [&str; 0] = [];
        assert!(RelyingParty::new("example.org", "Haven", &none).is_err());
        assert!(RelyingParty::new("example.org", " ", &["https://example.org"]).is_err());
        assert!(
            RelyingParty::new(
                "example.org",
                "Haven",
                &["https://example.org", "https://example.org"]
            )
            .is_err()
        );
    }

    #[test]
    fn creation_options_have_the_shape_browsers_parse() {
        let rp = RelyingParty::new("localhost", "Haven", &["http://localhost:8080"]).unwrap();
        let challenge = Challenge::from_bytes(&[1; 32]).unwrap();
        let user = UserHandle::from_bytes(b"user-1").unwrap();
        let options = rp.creation_options(
            &challenge,
            &user,
            "alice@example.org",
            "Alice Example",
            vec![CredentialDescriptor::new(b"old", &["internal".to_owned()])],
        );
        assert_eq!(
            serde_json::to_value(&options).unwrap(),
            json!({
                "rp": {"id": "localhost", "name": "Haven"},
                "user": {"id": "dXNlci0x", "name": "alice@example.org", "displayName": "Alice Example"},
                "challenge": "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE",
                "pubKeyCredParams": [
                    {"type": "public-key", "alg": -8},
                    {"type": "public-key", "alg": -7},
                    {"type": "public-key", "alg": -257},
                ],
                "timeout": 300000,
                "attestation": "none",
                "authenticatorSelection": {
                    "residentKey": "required",
                    "requireResidentKey": true,
                    "userVerification": "required",
                },
                "excludeCredentials": [{"type": "public-key", "id": "b2xk", "transports": ["internal"]}],
            })
        );
    }

    #[test]
    fn request_options_have_the_shape_browsers_parse() {
        let rp = RelyingParty::new("localhost", "Haven", &["http://localhost:8080"]).unwrap();
        let challenge = Challenge::from_bytes(&[2; 32]).unwrap();
        let options = rp.request_options(&challenge, vec![CredentialDescriptor::new(b"c", &[])]);
        assert_eq!(
            serde_json::to_value(&options).unwrap(),
            json!({
                "challenge": "AgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgI",
                "rpId": "localhost",
                "allowCredentials": [{"type": "public-key", "id": "Yw"}],
                "userVerification": "required",
                "timeout": 300000,
            })
        );
    }
}
