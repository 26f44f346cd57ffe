//! Sealing school credentials at rest with the master key (AES-256-GCM from *ring*).
//! The store records which master key sealed it, so a wrong key is caught by name.

use std::io::Write;
use std::path::{Path, PathBuf};

use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::digest::{SHA256, digest};
use ring::rand::{SecureRandom, SystemRandom};
use sea_orm::{ActiveValue::Set, ConnectionTrait, EntityTrait};
use secrecy::{ExposeSecret, SecretString};

use super::entities::store_meta;
use crate::settings::{SecretError, SecretRef, Settings};

const KEY_LEN: usize = 32;
const META_KEY_ID: &str = "master_key_id";

#[derive(Debug, thiserror::Error)]
pub enum SealError {
    #[error("master key: {0}")]
    Secret(#[from] SecretError),
    #[error("master key {origin} must be {len} hex digits (a 256-bit key)", len = KEY_LEN * 2)]
    Format { origin: String },
    #[error("cannot create a master key at {path}: {reason}")]
    Create { path: PathBuf, reason: String },
    #[error(
        "the master key {origin} (id {found}) is not the key this store was sealed with (id \
         {expected}); restore the original key, or every stored school key must be set again"
    )]
    WrongKey {
        origin: String,
        found: String,
        expected: String,
    },
    #[error(
        "the stored {kind} of school {school} cannot be unsealed (sealed by key {key_id}); \
         set it again with `rostersync school set-key {school}`"
    )]
    Corrupt {
        school: String,
        kind: String,
        key_id: String,
    },
    #[error("cannot record the master key id in the store: {0}")]
    Store(#[from] sea_orm::DbErr),
    #[error(
        "a PostgreSQL store needs security.master_key (the same key on every instance that \
         shares the store); there is no default key file beside it"
    )]
    NoKeyConfigured,
    #[error(
        "there is no master key at {path}, so no school key sealed in the store can be read; \
         restore the key file (or add the school's key again with `rostersync school set-key`)"
    )]
    Missing { path: PathBuf },
}

/// A sealed secret as stored: which key sealed it, the nonce, and ciphertext with tag.
pub struct Sealed {
    pub key_id: String,
    pub nonce: Vec<u8>,
    pub ciphertext: Vec<u8>,
}

pub struct MasterKey {
    key: LessSafeKey,
    id: String,
    origin: String,
}

/// What the master key is wanted for: reading sealed keys never creates one; sealing a new
/// key may create the default key file of a SQLite store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyUse {
    Read,
    Seal,
}

impl MasterKey {
    /// The configured key, or the default one: credential `master-key` under systemd, else
    /// (SQLite stores only) `master.key` beside the store, created (mode 0600) when sealing
    /// needs it. A PostgreSQL store, shared by instances on several machines, has no "beside":
    /// it needs `security.master_key` (or the credential).
    pub fn load(
        settings: &Settings,
        store: &super::Store,
        want: KeyUse,
    ) -> Result<MasterKey, SealError> {
        if let Some(reference) = &settings.security.master_key {
            return Self::from_ref(reference);
        }
        if let Some(dir) = std::env::var_os("CREDENTIALS_DIRECTORY") {
            let path = Path::new(&dir).join("master-key");
            if path.exists() {
                return Self::from_ref(&SecretRef::Credential("master-key".into()));
            }
        }
        if store.backend() != sea_orm::DbBackend::Sqlite {
            return Err(SealError::NoKeyConfigured);
        }
        let path = store.home().join("master.key");
        if !path.exists() {
            if want == KeyUse::Read {
                return Err(SealError::Missing { path });
            }
            create_key_file(&path)?;
            tracing::warn!(
                path = %path.display(),
                "Generated a new master key. Back it up: stored school keys cannot be read without it."
            );
        }
        Self::from_ref(&SecretRef::File(path))
    }

    fn from_ref(reference: &SecretRef) -> Result<MasterKey, SealError> {
        let text = reference.load_string()?;
        let bytes = decode_hex(text.expose_secret().trim()).ok_or_else(|| SealError::Format {
            origin: reference.to_string(),
        })?;
        Self::from_bytes(&bytes, reference.to_string())
    }

    pub fn from_bytes(bytes: &[u8], origin: String) -> Result<MasterKey, SealError> {
        if bytes.len() != KEY_LEN {
            return Err(SealError::Format { origin });
        }
        let unbound = UnboundKey::new(&AES_256_GCM, bytes).map_err(|_| SealError::Format {
            origin: origin.clone(),
        })?;
        let mut id_input = b"rostersync master key id\0".to_vec();
        id_input.extend_from_slice(bytes);
        let id = encode_hex(&digest(&SHA256, &id_input).as_ref()[..8]);
        Ok(MasterKey {
            key: LessSafeKey::new(unbound),
            id,
            origin,
        })
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    /// Make sure this is the key the store was sealed with; the first key used is recorded.
    pub async fn check_against<C: ConnectionTrait>(&self, db: &C) -> Result<(), SealError> {
        match store_meta::Entity::find_by_id(META_KEY_ID.to_owned())
            .one(db)
            .await?
        {
            Some(row) if row.value == self.id => Ok(()),
            Some(row) => Err(SealError::WrongKey {
                origin: self.origin.clone(),
                found: self.id.clone(),
                expected: row.value,
            }),
            None => {
                store_meta::Entity::insert(store_meta::ActiveModel {
                    key: Set(META_KEY_ID.to_owned()),
                    value: Set(self.id.clone()),
                })
                .exec(db)
                .await?;
                Ok(())
            }
        }
    }

    /// Seal `plain`, bound to `context` (school and kind) so it cannot be moved elsewhere.
    pub fn seal(&self, context: &str, plain: &SecretString) -> Sealed {
        let mut nonce = [0u8; NONCE_LEN];
        SystemRandom::new()
            .fill(&mut nonce)
            .expect("the system random source is available");
        let mut data = plain.expose_secret().as_bytes().to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(context.as_bytes()),
                &mut data,
            )
            .expect("AES-GCM sealing of a short secret cannot fail");
        Sealed {
            key_id: self.id.clone(),
            nonce: nonce.to_vec(),
            ciphertext: data,
        }
    }

    pub fn open(&self, context: &str, sealed: &Sealed) -> Option<SecretString> {
        let nonce = Nonce::try_assume_unique_for_key(&sealed.nonce).ok()?;
        let mut data = sealed.ciphertext.clone();
        let plain = self
            .key
            .open_in_place(nonce, Aad::from(context.as_bytes()), &mut data)
            .ok()?;
        String::from_utf8(plain.to_vec())
            .ok()
            .map(SecretString::from)
    }
}

/// A new random master key at `path` (0600); refuses to replace a file that exists.
pub fn create_key_file(path: &Path) -> Result<(), SealError> {
    let err = |reason: String| SealError::Create {
        path: path.to_owned(),
        reason,
    };
    let mut key = [0u8; KEY_LEN];
    SystemRandom::new()
        .fill(&mut key)
        .map_err(|_| err("the system random source failed".into()))?;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path).map_err(|e| err(e.to_string()))?;
    file.write_all(format!("{}\n", encode_hex(&key)).as_bytes())
        .and_then(|_| file.sync_all())
        .map_err(|e| err(e.to_string()))
}

fn encode_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn decode_hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) || !text.is_ascii() {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> MasterKey {
        MasterKey::from_bytes(&[byte; KEY_LEN], "test".into()).expect("valid key")
    }

    #[test]
    fn sealed_secrets_open_only_with_the_same_key_and_context() {
        let k = key(7);
        let secret = SecretString::from("sleutel-123");
        let sealed = k.seal("99XX00/las_key", &secret);
        assert!(!sealed.ciphertext.windows(11).any(|w| w == b"sleutel-123"));
        let opened = k.open("99XX00/las_key", &sealed).expect("opens");
        assert_eq!(opened.expose_secret(), "sleutel-123");
        assert!(
            k.open("12AB00/las_key", &sealed).is_none(),
            "bound to its school"
        );
        assert!(
            key(8).open("99XX00/las_key", &sealed).is_none(),
            "bound to its key"
        );
    }

    #[test]
    fn key_ids_differ_per_key_and_hex_round_trips() {
        assert_ne!(key(1).id(), key(2).id());
        assert_eq!(
            decode_hex(&encode_hex(&[0, 15, 255])),
            Some(vec![0, 15, 255])
        );
        assert_eq!(decode_hex("zz"), None);
    }

    #[test]
    fn a_new_key_file_is_private_and_loads() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("master.key");
        create_key_file(&path).expect("created");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
            assert_eq!(mode & 0o077, 0, "only the owner may read it");
        }
        assert!(MasterKey::from_ref(&SecretRef::File(path.clone())).is_ok());
        assert!(create_key_file(&path).is_err(), "never overwrites a key");
    }
}
