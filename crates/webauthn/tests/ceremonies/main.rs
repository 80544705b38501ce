//! Registration and sign-in end to end, against a software authenticator that can be made
//! to misbehave in every way the verifier has to notice.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod authentication;
mod authenticator;
mod properties;
mod registration;
