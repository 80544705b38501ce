//! Every bound on what a browser can send, with its unit, checked before anything is
//! decoded or parsed.
//!
//! The values leave room for every authenticator the specification allows (an RSA-8192 key,
//! a 1023-byte credential id) while keeping a hostile request from making the parser do
//! more than a few kilobytes of work.

/// clientDataJSON after base64url decoding. Browsers send about 200–300 bytes.
pub const CLIENT_DATA_BYTES_MAX: usize = 4096;

/// The attestation object after base64url decoding. With attestation "none" it is the
/// authenticator data plus a few bytes of framing; the slack lets a response with some
/// other attestation format be answered with a clear error rather than a size error.
pub const ATTESTATION_OBJECT_BYTES_MAX: usize = 16 * 1024;

/// Authenticator data: 37 fixed bytes, at registration the credential id (≤ 1023 bytes)
/// and its COSE key (about 1050 bytes for RSA-8192), and extension outputs.
pub const AUTHENTICATOR_DATA_BYTES_MAX: usize = 8 * 1024;

/// An assertion signature: 1024 bytes for RSA-8192; an ES256 signature in DER is at most
/// 72 bytes and an Ed25519 one 64.
pub const SIGNATURE_BYTES_MAX: usize = 1024;

/// A credential id (WebAuthn §7.1: "credentialIdLength ... ≤ 1023").
pub const CREDENTIAL_ID_BYTES_MAX: usize = 1023;

/// A user handle (WebAuthn §5.4.3: "a maximum size of 64 bytes").
pub const USER_HANDLE_BYTES_MAX: usize = 64;

/// Transport hints per credential (the specification names six today).
pub const TRANSPORTS_MAX: usize = 8;

/// One transport hint, such as `hybrid` or `internal`.
pub const TRANSPORT_BYTES_MAX: usize = 32;

/// Nesting depth of any CBOR item Haven decodes. COSE keys are flat maps and extension
/// outputs nest two or three levels; ciborium's default (256) would let a small input
/// recurse deeply.
pub const CBOR_NESTING_DEPTH_MAX: usize = 16;

/// The random bytes in a [`crate::Challenge`] made by `Challenge::generate`.
pub const CHALLENGE_BYTES: usize = 32;

/// The fewest bytes a challenge read back may have (the specification's minimum).
pub const CHALLENGE_BYTES_MIN: usize = 16;

/// The most bytes a challenge read back may have.
pub const CHALLENGE_BYTES_MAX: usize = 64;

/// How long the browser gives the user to finish a ceremony, sent as the options' `timeout`.
/// A caller should keep the challenge for at least this long, and not much longer.
pub const CEREMONY_TIMEOUT_MS: u32 = 300_000;

/// The shortest RSA modulus accepted for RS256, in bits.
pub const RSA_MODULUS_BITS_MIN: usize = 2048;

/// The longest RSA modulus accepted for RS256, in bits (the most `ring` verifies).
pub const RSA_MODULUS_BITS_MAX: usize = 8192;

/// A relying party id is a domain name (RFC 1035: at most 253 characters).
pub const RP_ID_BYTES_MAX: usize = 253;

/// The relying party's display name; authenticators may truncate names beyond 64 bytes.
pub const RP_NAME_BYTES_MAX: usize = 64;

/// Origins one relying party accepts.
pub const ORIGINS_MAX: usize = 16;
