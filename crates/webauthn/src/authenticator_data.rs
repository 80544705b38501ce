//! Authenticator data (WebAuthn §6.1): the bytes the authenticator signs.
//!
//! ```text
//! rpIdHash (32) ‖ flags (1) ‖ signCount (4, big-endian)
//!   ‖ [attested credential data: aaguid (16) ‖ credentialIdLength (2) ‖ credentialId ‖ COSE key]
//!   ‖ [extensions: a CBOR map]
//! ```

use crate::WebauthnError;
use crate::cbor;
use crate::limits::{AUTHENTICATOR_DATA_BYTES_MAX, CREDENTIAL_ID_BYTES_MAX};

/// The flags byte. Bits 1 and 5 are reserved and ignored, as the specification asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Flags(u8);

impl Flags {
    pub(crate) const USER_PRESENT: u8 = 0x01;
    pub(crate) const USER_VERIFIED: u8 = 0x04;
    pub(crate) const BACKUP_ELIGIBLE: u8 = 0x08;
    pub(crate) const BACKED_UP: u8 = 0x10;
    pub(crate) const ATTESTED_CREDENTIAL_DATA: u8 = 0x40;
    pub(crate) const EXTENSION_DATA: u8 = 0x80;

    fn has(self, bit: u8) -> bool {
        self.0 & bit != 0
    }
    pub(crate) fn user_present(self) -> bool {
        self.has(Self::USER_PRESENT)
    }
    pub(crate) fn user_verified(self) -> bool {
        self.has(Self::USER_VERIFIED)
    }
    pub(crate) fn backup_eligible(self) -> bool {
        self.has(Self::BACKUP_ELIGIBLE)
    }
    pub(crate) fn backed_up(self) -> bool {
        self.has(Self::BACKED_UP)
    }

    /// The checks §7.1 and §7.2 share: presence, verification if required, and a backup
    /// state that only an eligible credential can have.
    pub(crate) fn verify(self, user_verification_required: bool) -> Result<(), WebauthnError> {
        if !self.user_present() {
            return Err(WebauthnError::UserPresenceMissing);
        }
        if user_verification_required && !self.user_verified() {
            return Err(WebauthnError::UserVerificationMissing);
        }
        if self.backed_up() && !self.backup_eligible() {
            return Err(WebauthnError::BackupStateInvalid);
        }
        Ok(())
    }
}

/// The credential a registration creates, as the authenticator describes it.
#[derive(Debug)]
pub(crate) struct AttestedCredentialData<'a> {
    pub(crate) aaguid: [u8; 16],
    pub(crate) credential_id: &'a [u8],
    /// The COSE key exactly as encoded; it is what gets stored, and
    /// [`crate::public_key::CredentialPublicKey`] validates it.
    pub(crate) public_key_cose: &'a [u8],
}

#[derive(Debug)]
pub(crate) struct AuthenticatorData<'a> {
    pub(crate) rp_id_hash: [u8; 32],
    pub(crate) flags: Flags,
    pub(crate) sign_count: u32,
    pub(crate) attested_credential: Option<AttestedCredentialData<'a>>,
}

fn take<'a, const N: usize>(
    input: &mut &'a [u8],
    what: &'static str,
) -> Result<&'a [u8; N], WebauthnError> {
    let (head, rest) = input
        .split_first_chunk::<N>()
        .ok_or(WebauthnError::Malformed(what))?;
    *input = rest;
    Ok(head)
}

impl<'a> AuthenticatorData<'a> {
    /// Parses the whole buffer; anything after the last item it announces is an error.
    pub(crate) fn parse(bytes: &'a [u8]) -> Result<Self, WebauthnError> {
        if bytes.len() > AUTHENTICATOR_DATA_BYTES_MAX {
            return Err(WebauthnError::TooLarge {
                field: "authenticatorData",
                limit: AUTHENTICATOR_DATA_BYTES_MAX,
            });
        }
        let mut input = bytes;
        let short = "authenticator data shorter than 37 bytes";
        let rp_id_hash = *take::<32>(&mut input, short)?;
        let [flags] = *take::<1>(&mut input, short)?;
        let flags = Flags(flags);
        let sign_count = u32::from_be_bytes(*take::<4>(&mut input, short)?);

        let attested_credential = if flags.has(Flags::ATTESTED_CREDENTIAL_DATA) {
            Some(parse_attested_credential_data(&mut input)?)
        } else {
            None
        };
        if flags.has(Flags::EXTENSION_DATA) {
            // Haven requests no extensions; outputs are checked for shape and ignored.
            let (extensions, _) = cbor::read_item(&mut input)
                .map_err(|_| WebauthnError::Malformed("extension outputs are not CBOR"))?;
            if !extensions.is_map() {
                return Err(WebauthnError::Malformed("extension outputs are not a map"));
            }
        }
        if !input.is_empty() {
            return Err(WebauthnError::Malformed(
                "trailing bytes after the authenticator data",
            ));
        }
        Ok(Self {
            rp_id_hash,
            flags,
            sign_count,
            attested_credential,
        })
    }
}

fn parse_attested_credential_data<'a>(
    input: &mut &'a [u8],
) -> Result<AttestedCredentialData<'a>, WebauthnError> {
    let short = "attested credential data truncated";
    let aaguid = *take::<16>(input, short)?;
    let id_len = usize::from(u16::from_be_bytes(*take::<2>(input, short)?));
    if id_len > CREDENTIAL_ID_BYTES_MAX {
        return Err(WebauthnError::TooLarge {
            field: "credentialId",
            limit: CREDENTIAL_ID_BYTES_MAX,
        });
    }
    if id_len == 0 {
        return Err(WebauthnError::Malformed("empty credential id"));
    }
    let (credential_id, rest) = input
        .split_at_checked(id_len)
        .ok_or(WebauthnError::Malformed(short))?;
    *input = rest;
    let (_, public_key_cose) = cbor::read_item(input)
        .map_err(|_| WebauthnError::Malformed("credential public key is not CBOR"))?;
    Ok(AttestedCredentialData {
        aaguid,
        credential_id,
        public_key_cose,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const COSE_KEY: [u8; 3] = [0xa1, 0x01, 0x02]; // {1: 2}

    fn attested(flags: u8, id: &[u8], tail: &[u8]) -> Vec<u8> {
        let mut bytes = vec![0xaa; 32];
        bytes.push(flags | Flags::ATTESTED_CREDENTIAL_DATA);
        bytes.extend(7u32.to_be_bytes());
        bytes.extend([0x11; 16]);
        bytes.extend(u16::try_from(id.len()).unwrap().to_be_bytes());
        bytes.extend(id);
        bytes.extend(COSE_KEY);
        bytes.extend(tail);
        bytes
    }

    #[test]
    fn parses_fixed_fields_and_attested_credential_data() {
        let bytes = attested(Flags::USER_PRESENT | Flags::BACKUP_ELIGIBLE, b"cred", &[]);
        let data = AuthenticatorData::parse(&bytes).unwrap();
        assert_eq!(data.rp_id_hash, [0xaa; 32]);
        assert_eq!(data.sign_count, 7);
        assert!(data.flags.user_present() && data.flags.backup_eligible());
        assert!(!data.flags.user_verified() && !data.flags.backed_up());
        let credential = data.attested_credential.unwrap();
        assert_eq!(credential.aaguid, [0x11; 16]);
        assert_eq!(credential.credential_id, b"cred");
        assert_eq!(credential.public_key_cose, COSE_KEY);
    }

    #[test]
    fn extensions_are_read_only_when_flagged() {
        let with_map = attested(Flags::EXTENSION_DATA, b"c", &[0xa0]);
        assert!(AuthenticatorData::parse(&with_map).is_ok());
        let not_flagged = attested(0, b"c", &[0xa0]);
        assert!(matches!(
            AuthenticatorData::parse(&not_flagged),
            Err(WebauthnError::Malformed(_))
        ));
        let not_a_map = attested(Flags::EXTENSION_DATA, b"c", &[0x80]);
        assert!(matches!(
            AuthenticatorData::parse(&not_a_map),
            Err(WebauthnError::Malformed(_))
        ));
    }

    #[test]
    fn refuses_short_trailing_and_oversize_inputs() {
        assert!(AuthenticatorData::parse(&[0; 36]).is_err());
        assert!(AuthenticatorData::parse(&[0; 37]).is_ok());
        assert!(matches!(
            AuthenticatorData::parse(&[0; 38]),
            Err(WebauthnError::Malformed(_))
        ));
        let full = attested(0, b"cred", &[]);
        for len in 37..full.len() {
            assert!(AuthenticatorData::parse(&full[..len]).is_err(), "{len}");
        }
        assert!(matches!(
            AuthenticatorData::parse(&vec![0; AUTHENTICATOR_DATA_BYTES_MAX + 1]),
            Err(WebauthnError::TooLarge { .. })
        ));
    }

    #[test]
    fn credential_ids_longer_than_1023_bytes_are_refused() {
        assert!(AuthenticatorData::parse(&attested(0, &[1; 1023], &[])).is_ok());
        assert!(matches!(
            AuthenticatorData::parse(&attested(0, &[1; 1024], &[])),
            Err(WebauthnError::TooLarge {
                field: "credentialId",
                ..
            })
        ));
        assert!(matches!(
            AuthenticatorData::parse(&attested(0, &[], &[])),
            Err(WebauthnError::Malformed(_))
        ));
    }

    #[test]
    fn flag_checks() {
        let up = Flags(Flags::USER_PRESENT);
        assert_eq!(up.verify(false), Ok(()));
        assert_eq!(up.verify(true), Err(WebauthnError::UserVerificationMissing));
        assert_eq!(
            Flags(Flags::USER_VERIFIED).verify(false),
            Err(WebauthnError::UserPresenceMissing)
        );
        assert_eq!(
            Flags(Flags::USER_PRESENT | Flags::BACKED_UP).verify(false),
            Err(WebauthnError::BackupStateInvalid)
        );
        let synced = Flags::USER_PRESENT | Flags::BACKED_UP | Flags::BACKUP_ELIGIBLE;
        assert_eq!(Flags(synced).verify(false), Ok(()));
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            if let Ok(data) = AuthenticatorData::parse(&bytes) {
                // Whatever parses consumed every byte it was given and agrees with them.
                prop_assert_eq!(&data.rp_id_hash[..], &bytes[..32]);
                prop_assert_eq!(data.flags.0, bytes[32]);
                prop_assert_eq!(
                    data.attested_credential.is_some(),
                    bytes[32] & Flags::ATTESTED_CREDENTIAL_DATA != 0
                );
            }
        }

        #[test]
        fn random_tails_after_a_valid_header_never_panic(
            flags in any::<u8>(),
            tail in proptest::collection::vec(any::<u8>(), 0..400),
        ) {
            let mut bytes = vec![0; 32];
            bytes.push(flags | Flags::ATTESTED_CREDENTIAL_DATA);
            bytes.extend([0; 4]);
            bytes.extend([0; 16]);
            bytes.extend(4u16.to_be_bytes());
            bytes.extend(b"cred");
            bytes.extend(&tail);
            let _ = AuthenticatorData::parse(&bytes);
        }
    }
}
