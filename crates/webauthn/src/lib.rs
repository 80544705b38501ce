//! Haven as a WebAuthn relying party: verifying passkey registration and sign-in
//! (W3C WebAuthn Level 2/3, §7.1 and §7.2).
//!
//! The crate is pure and synchronous: it makes the options a browser needs to start a
//! ceremony and verifies what the browser sends back. It knows no HTTP, no storage and no
//! clock, so everything stateful is the caller's:
//!
//! 1. Make a challenge with [`Challenge::generate`], keep it with an expiry of about
//!    [`limits::CEREMONY_TIMEOUT_MS`], send [`RelyingParty::creation_options`] or
//!    [`RelyingParty::request_options`].
//! 2. When the response comes back, **remove** the challenge from the store (it is
//!    single-use whatever the outcome), then call [`RelyingParty::finish_registration`]
//!    or [`RelyingParty::finish_authentication`].
//! 3. Store the [`RegisteredCredential`] (refusing an id already registered), or save
//!    [`Authenticated::new_sign_count`] and `backed_up` before treating the user as signed in.
//!
//! # Why hand-written
//!
//! The verifier is about a thousand lines, options and wire types included, over `ring`,
//! which Haven already builds for TLS. `webauthn-rs` 0.5 needs OpenSSL; 0.6 drops it but
//! has no EdDSA, and pulls a second generation of the RustCrypto crates and a pre-release
//! `rsa`. Here ES256 and Ed25519 are verified by `ring`, RS256 by `ring`'s PKCS#1 v1.5
//! verifier (2048–8192-bit moduli), COSE keys are read with `coset` and CBOR with
//! `ciborium`.
//!
//! # Deliberately absent
//!
//! - Attestation other than "none": Haven does not rely on knowing the authenticator's
//!   make, so there are no certificate chains or vendor roots to keep current.
//!   Authenticators that insist on another format (some security keys send "packed"
//!   self-attestation) are refused with [`WebauthnError::UnsupportedAttestationFormat`].
//! - Extensions: none are requested; outputs are checked for shape and ignored.
//! - Cross-origin iframes (`crossOrigin`, `topOrigin`): always refused.
//! - Whether the RP ID is a public suffix: the browser checks that.

#![forbid(unsafe_code)]

mod attestation;
mod authentication;
mod authenticator_data;
mod base64url;
mod cbor;
mod challenge;
mod client_data;
mod error;
pub mod limits;
pub mod options;
mod public_key;
mod registration;
mod relying_party;
mod response;
mod user_handle;

pub use authentication::{Authenticated, StoredCredential};
pub use challenge::Challenge;
pub use error::{ConfigError, WebauthnError};
pub use options::{CreationOptions, CredentialDescriptor, RequestOptions};
pub use public_key::CoseAlgorithm;
pub use registration::RegisteredCredential;
pub use relying_party::RelyingParty;
pub use response::{
    AssertionResponse, AttestationResponse, AuthenticationResponse, RegistrationResponse,
};
pub use user_handle::UserHandle;
