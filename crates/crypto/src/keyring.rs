//! The root of the key hierarchy.
//!
//! The root key wraps (encrypts) every subject key and the blind-index key; it never leaves
//! the [`KeyProvider`]. The trait speaks only of wrapping and unwrapping, which is what an
//! external KMS (Vault Transit, a cloud KMS, an HSM over PKCS#11) offers, so one can replace
//! the local keyring without the rest of Haven noticing.
//!
//! [`LocalKeyring`] keeps root keys as files in a directory: `root-<id>.key` (32 raw bytes,
//! mode 0600) and `active`, naming the key that wraps new keys. Old root keys stay until
//! every key wrapped by them has been re-wrapped (`haven keys rotate`), then are destroyed.

use std::collections::BTreeMap;
use std::fmt;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use rand::RngCore;

use crate::CryptoError;
use crate::aead;
use crate::secret::KeyMaterial;

/// Identifies one root key; stored in front of everything it wraps.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RootKeyId([u8; RootKeyId::BYTES]);

impl RootKeyId {
    pub const BYTES: usize = 16;

    fn generate() -> Self {
        let mut bytes = [0u8; Self::BYTES];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        Self(bytes)
    }

    pub fn as_bytes(&self) -> &[u8; Self::BYTES] {
        &self.0
    }

    pub fn try_from_slice(bytes: &[u8]) -> Option<Self> {
        <[u8; Self::BYTES]>::try_from(bytes).ok().map(Self)
    }

    pub fn parse_hex(text: &str) -> Option<Self> {
        let bytes = hex::decode(text.trim()).ok()?;
        <[u8; Self::BYTES]>::try_from(bytes.as_slice())
            .ok()
            .map(Self)
    }
}

impl fmt::Display for RootKeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for RootKeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RootKeyId({self})")
    }
}

/// A key wrapped by a root key: `version(1) ‖ root key id(16) ‖ nonce ‖ ciphertext ‖ tag`.
#[derive(Clone, PartialEq, Eq)]
pub struct WrappedKey(Vec<u8>);

const WRAPPED_FORMAT_V1: u8 = 1;

impl WrappedKey {
    pub fn from_bytes(bytes: Vec<u8>) -> Result<Self, CryptoError> {
        if bytes.len() < 1 + RootKeyId::BYTES + aead::NONCE_BYTES + aead::TAG_BYTES {
            return Err(CryptoError::Malformed("wrapped key too short"));
        }
        if bytes[0] != WRAPPED_FORMAT_V1 {
            return Err(CryptoError::Malformed("unknown wrapped key format"));
        }
        Ok(Self(bytes))
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// Which root key wrapped this key; rotation re-wraps those not under the active one.
    pub fn root_key_id(&self) -> RootKeyId {
        let mut id = [0u8; RootKeyId::BYTES];
        id.copy_from_slice(&self.0[1..1 + RootKeyId::BYTES]);
        RootKeyId(id)
    }
}

impl fmt::Debug for WrappedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "WrappedKey(root={})", self.root_key_id())
    }
}

/// Wraps and unwraps keys with a root key that never leaves the provider.
///
/// `context` is associated data naming what the wrapped key belongs to (for example the
/// subject id and key id), so a wrapped key copied onto another subject fails to unwrap.
pub trait KeyProvider: Send + Sync + fmt::Debug {
    fn active_key_id(&self) -> RootKeyId;
    fn wrap(&self, key: &KeyMaterial, context: &[u8]) -> Result<WrappedKey, CryptoError>;
    fn unwrap(&self, wrapped: &WrappedKey, context: &[u8]) -> Result<KeyMaterial, CryptoError>;
}

/// Root keys kept as files in a directory readable only by the service user.
pub struct LocalKeyring {
    dir: PathBuf,
    active: RootKeyId,
    keys: BTreeMap<RootKeyId, KeyMaterial>,
}

impl fmt::Debug for LocalKeyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalKeyring")
            .field("dir", &self.dir)
            .field("active", &self.active)
            .field("keys", &self.keys.len())
            .finish()
    }
}

const ACTIVE_FILE: &str = "active";

impl LocalKeyring {
    /// Opens the keyring in `dir`, creating the directory and a first root key if there is
    /// none. Refuses key files that other users could read.
    pub fn open_or_create(dir: &Path) -> Result<Self, CryptoError> {
        let error = |message: String| CryptoError::Keyring {
            path: dir.display().to_string(),
            message,
        };
        if !dir.exists() {
            create_private_dir(dir).map_err(|e| error(format!("cannot create: {e}")))?;
        }
        check_private(dir, 0o077)?;
        let mut keys = BTreeMap::new();
        let entries = fs::read_dir(dir).map_err(|e| error(format!("cannot read: {e}")))?;
        for entry in entries {
            let entry = entry.map_err(|e| error(format!("cannot read: {e}")))?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            let Some(id) = name
                .strip_prefix("root-")
                .and_then(|rest| rest.strip_suffix(".key"))
            else {
                continue;
            };
            let id = RootKeyId::parse_hex(id)
                .ok_or_else(|| error(format!("unexpected key file name {name}")))?;
            let path = entry.path();
            check_private(&path, 0o077)?;
            let bytes = fs::read(&path).map_err(|e| error(format!("cannot read {name}: {e}")))?;
            let key = KeyMaterial::try_from_slice(&bytes)
                .ok_or_else(|| error(format!("{name} is not a 32-byte key")))?;
            keys.insert(id, key);
        }

        let active_path = dir.join(ACTIVE_FILE);
        if keys.is_empty() {
            if active_path.exists() {
                // The pointer exists but its key is gone: never silently start a new,
                // empty hierarchy over data sealed with the lost one.
                return Err(error(
                    "the active root key file is missing; restore the keyring from backup".into(),
                ));
            }
            let mut keyring = Self {
                dir: dir.to_owned(),
                active: RootKeyId::generate(),
                keys,
            };
            keyring.rotate()?;
            return Ok(keyring);
        }

        let active_text = fs::read_to_string(&active_path)
            .map_err(|e| error(format!("cannot read {ACTIVE_FILE}: {e}")))?;
        let active = RootKeyId::parse_hex(&active_text)
            .ok_or_else(|| error(format!("{ACTIVE_FILE} does not name a root key")))?;
        if !keys.contains_key(&active) {
            return Err(error(format!(
                "the active root key {active} has no key file; restore the keyring from backup"
            )));
        }
        Ok(Self {
            dir: dir.to_owned(),
            active,
            keys,
        })
    }

    /// Creates a new root key and makes it the one that wraps new keys. Existing wrapped keys
    /// still unwrap with their old root until they are re-wrapped and the old root retired.
    pub fn rotate(&mut self) -> Result<RootKeyId, CryptoError> {
        let id = RootKeyId::generate();
        let key = KeyMaterial::generate();
        let path = self.dir.join(format!("root-{id}.key"));
        write_private_file(&path, key.expose_secret())?;
        write_private_file(&self.dir.join(ACTIVE_FILE), id.to_string().as_bytes())?;
        self.keys.insert(id, key);
        self.active = id;
        Ok(id)
    }

    /// Destroys a root key that no longer wraps anything. The caller checks that nothing is
    /// wrapped by it; the active key can never be retired.
    pub fn retire(&mut self, id: RootKeyId) -> Result<(), CryptoError> {
        if id == self.active {
            return Err(CryptoError::Keyring {
                path: self.dir.display().to_string(),
                message: "the active root key cannot be retired".into(),
            });
        }
        let path = self.dir.join(format!("root-{id}.key"));
        // Overwrite before unlinking so the bytes do not linger in the file's old blocks on
        // filesystems that write in place.
        write_private_file(&path, &[0u8; KeyMaterial::BYTES])?;
        fs::remove_file(&path).map_err(|e| CryptoError::Keyring {
            path: path.display().to_string(),
            message: format!("cannot remove: {e}"),
        })?;
        self.keys.remove(&id);
        Ok(())
    }

    /// Every root key present, the active one included.
    pub fn key_ids(&self) -> Vec<RootKeyId> {
        self.keys.keys().copied().collect()
    }

    fn key(&self, id: RootKeyId) -> Result<&KeyMaterial, CryptoError> {
        self.keys.get(&id).ok_or(CryptoError::UnknownRootKey(id))
    }
}

impl KeyProvider for LocalKeyring {
    fn active_key_id(&self) -> RootKeyId {
        self.active
    }

    fn wrap(&self, key: &KeyMaterial, context: &[u8]) -> Result<WrappedKey, CryptoError> {
        let root = self.key(self.active)?;
        let aad = wrap_aad(self.active, context);
        let sealed = aead::seal(root, &aad, key.expose_secret());
        let mut bytes = Vec::with_capacity(1 + RootKeyId::BYTES + sealed.len());
        bytes.push(WRAPPED_FORMAT_V1);
        bytes.extend_from_slice(&self.active.0);
        bytes.extend_from_slice(&sealed);
        Ok(WrappedKey(bytes))
    }

    fn unwrap(&self, wrapped: &WrappedKey, context: &[u8]) -> Result<KeyMaterial, CryptoError> {
        let id = wrapped.root_key_id();
        let root = self.key(id)?;
        let plain = aead::open(
            root,
            &wrap_aad(id, context),
            &wrapped.0[1 + RootKeyId::BYTES..],
        )?;
        KeyMaterial::try_from_slice(&plain).ok_or(CryptoError::Malformed("wrapped key length"))
    }
}

/// The root key id is bound too, so a wrapped key cannot be relabelled with another root.
fn wrap_aad(root: RootKeyId, context: &[u8]) -> Vec<u8> {
    let mut aad = Vec::with_capacity(16 + RootKeyId::BYTES + context.len());
    aad.extend_from_slice(b"haven/wrap/v1\0");
    aad.extend_from_slice(&root.0);
    aad.extend_from_slice(context);
    aad
}

#[cfg(unix)]
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

#[cfg(not(unix))]
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    fs::create_dir_all(dir)
}

/// Refuses a key file or directory that users other than the owner can access.
#[cfg(unix)]
fn check_private(path: &Path, forbidden_mode_bits: u32) -> Result<(), CryptoError> {
    use std::os::unix::fs::PermissionsExt;
    let mode = fs::metadata(path)
        .map_err(|e| CryptoError::Keyring {
            path: path.display().to_string(),
            message: format!("cannot stat: {e}"),
        })?
        .permissions()
        .mode();
    if mode & forbidden_mode_bits != 0 {
        return Err(CryptoError::Keyring {
            path: path.display().to_string(),
            message: format!(
                "is accessible to other users (mode {:o}); restrict it with chmod go-rwx",
                mode & 0o777
            ),
        });
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_private(_path: &Path, _forbidden_mode_bits: u32) -> Result<(), CryptoError> {
    Ok(())
}

/// Writes through a temporary file, fsyncs, renames and fsyncs the directory: a crash leaves
/// either the old file or the new one, never half a key.
fn write_private_file(path: &Path, bytes: &[u8]) -> Result<(), CryptoError> {
    let error = |message: String| CryptoError::Keyring {
        path: path.display().to_string(),
        message,
    };
    let dir = path
        .parent()
        .ok_or_else(|| error("has no parent directory".into()))?;
    let temporary = path.with_extension("tmp");
    let mut options = fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options
        .open(&temporary)
        .map_err(|e| error(format!("cannot write: {e}")))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(|e| error(format!("cannot write: {e}")))?;
    fs::rename(&temporary, path).map_err(|e| error(format!("cannot rename: {e}")))?;
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| error(format!("cannot sync directory: {e}")))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creates_a_private_root_key_and_reopens_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keyring");
        let keyring = LocalKeyring::open_or_create(&path).unwrap();
        let key = KeyMaterial::generate();
        let wrapped = keyring.wrap(&key, b"subject-1").unwrap();

        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let file = path.join(format!("root-{}.key", keyring.active_key_id()));
            let mode = fs::metadata(file).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }

        let reopened = LocalKeyring::open_or_create(&path).unwrap();
        assert_eq!(reopened.active_key_id(), keyring.active_key_id());
        let unwrapped = reopened.unwrap(&wrapped, b"subject-1").unwrap();
        assert_eq!(unwrapped.expose_secret(), key.expose_secret());
    }

    #[test]
    fn wrapped_keys_are_bound_to_their_context() {
        let dir = tempfile::tempdir().unwrap();
        let keyring = LocalKeyring::open_or_create(&dir.path().join("k")).unwrap();
        let wrapped = keyring
            .wrap(&KeyMaterial::generate(), b"subject-1")
            .unwrap();
        assert!(matches!(
            keyring.unwrap(&wrapped, b"subject-2"),
            Err(CryptoError::Integrity)
        ));
    }

    #[test]
    fn rotation_keeps_old_keys_until_retired() {
        let dir = tempfile::tempdir().unwrap();
        let mut keyring = LocalKeyring::open_or_create(&dir.path().join("k")).unwrap();
        let old = keyring.active_key_id();
        let wrapped = keyring.wrap(&KeyMaterial::generate(), b"s").unwrap();
        let new = keyring.rotate().unwrap();
        assert_ne!(old, new);
        assert!(keyring.unwrap(&wrapped, b"s").is_ok());
        assert!(
            keyring.retire(new).is_err(),
            "the active key cannot be retired"
        );
        keyring.retire(old).unwrap();
        assert!(matches!(
            keyring.unwrap(&wrapped, b"s"),
            Err(CryptoError::UnknownRootKey(id)) if id == old
        ));
        let reopened = LocalKeyring::open_or_create(&dir.path().join("k")).unwrap();
        assert_eq!(reopened.key_ids(), vec![new]);
    }

    #[cfg(unix)]
    #[test]
    fn refuses_key_files_readable_by_others() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keyring");
        let keyring = LocalKeyring::open_or_create(&path).unwrap();
        let file = path.join(format!("root-{}.key", keyring.active_key_id()));
        fs::set_permissions(&file, fs::Permissions::from_mode(0o644)).unwrap();
        let error = LocalKeyring::open_or_create(&path).unwrap_err().to_string();
        assert!(error.contains("accessible to other users"), "{error}");
    }

    #[test]
    fn refuses_to_start_over_when_the_active_key_is_lost() {
        let dir = tempfile::tempdir().unwrap();
        let keyring = LocalKeyring::open_or_create(&dir.path().join("k")).unwrap();
        fs::remove_file(
            dir.path()
                .join("k")
                .join(format!("root-{}.key", keyring.active_key_id())),
        )
        .unwrap();
        assert!(LocalKeyring::open_or_create(&dir.path().join("k")).is_err());
    }
}
