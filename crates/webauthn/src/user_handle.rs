//! The user handle: the opaque id of a user account inside a passkey.

use std::fmt;

use rand::RngCore;

use crate::limits::USER_HANDLE_BYTES_MAX;
use crate::{WebauthnError, base64url};

/// The id a passkey stores for its user account (`user.id` in the creation options) and
/// returns at each sign-in, 1 to [`USER_HANDLE_BYTES_MAX`] bytes.
///
/// Authenticators keep it, may show it to other software and never encrypt it, so it must
/// carry no personal information: use [`UserHandle::generate`], store it with the account,
/// and use the same handle for all of one account's passkeys.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct UserHandle(Vec<u8>);

impl UserHandle {
    /// 64 random bytes, as the specification recommends.
    pub fn generate() -> Self {
        let mut bytes = vec![0; USER_HANDLE_BYTES_MAX];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        Self(bytes)
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Self, WebauthnError> {
        if bytes.is_empty() {
            return Err(WebauthnError::Malformed("empty user handle"));
        }
        if bytes.len() > USER_HANDLE_BYTES_MAX {
            return Err(WebauthnError::TooLarge {
                field: "userHandle",
                limit: USER_HANDLE_BYTES_MAX,
            });
        }
        Ok(Self(bytes.to_vec()))
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    pub fn to_base64url(&self) -> String {
        base64url::encode(&self.0)
    }
}

/// Shown by length only: it identifies an account across relying-party logs.
impl fmt::Debug for UserHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "UserHandle({} bytes)", self.0.len())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn bounds_are_enforced() {
        assert!(UserHandle::from_bytes(&[]).is_err());
        assert!(UserHandle::from_bytes(&[1; 65]).is_err());
        assert_eq!(
            UserHandle::from_bytes(&[1; 64]).unwrap().as_bytes().len(),
            64
        );
        assert_ne!(UserHandle::generate(), UserHandle::generate());
    }

    #[test]
    fn debug_does_not_show_the_bytes() {
        let handle = UserHandle::from_bytes(b"alice").unwrap();
        assert_eq!(format!("{handle:?}"), "UserHandle(5 bytes)");
    }
}
