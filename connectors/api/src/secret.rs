//! References to secrets in the configuration: `{ file = "..." }` or `{ credential = "name" }`.
//! A secret is never written inline, never echoed in an error, and only read when needed.

use std::fmt;
use std::path::{Path, PathBuf};

use secrecy::{SecretBox, SecretString};
use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};

/// Where a secret lives. Printing it shows the reference, never the content.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SecretRef {
    File(PathBuf),
    /// A systemd credential, read from `$CREDENTIALS_DIRECTORY/<name>`.
    Credential(String),
}

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("cannot read secret file {path}: {reason}")]
    File { path: PathBuf, reason: String },
    #[error(
        "credential '{name}' is not available: $CREDENTIALS_DIRECTORY is not set and \
         /etc/rostersync/credentials cannot be read (run as root, or under systemd with \
         LoadCredential={name}:..., or use {{ file = \"...\" }} instead)"
    )]
    NoCredentialsDirectory { name: String },
    #[error("cannot read credential '{name}' from {path}: {reason}")]
    Credential {
        name: String,
        path: PathBuf,
        reason: String,
    },
    #[error("secret {reference} is empty")]
    Empty { reference: String },
    #[error(
        "secret file {path} can be read by others than its owner (mode {mode:04o}): \
         chmod 600 {path} (it holds a secret; only the user rostersync runs as may read it)"
    )]
    TooOpen { path: PathBuf, mode: u32 },
    #[error("{path} is not a regular file")]
    NotAFile { path: PathBuf },
    #[error("secret {reference} is larger than {limit} bytes: is it the right file?")]
    TooLarge { reference: String, limit: u64 },
    #[error("secret {reference} is not UTF-8 text")]
    NotText { reference: String },
}

/// Where an installed rostersync keeps the files its unit hands over as credentials
/// (`LoadCredential=NAME:/etc/rostersync/credentials/NAME`).
pub const INSTALLED_CREDENTIALS_DIR: &str = "/etc/rostersync/credentials";

/// Where `{ credential = "NAME" }` is read from: systemd's `$CREDENTIALS_DIRECTORY` for the
/// service; for an administrator's command on an installed machine (root, outside the unit),
/// the directory those credentials are loaded from, when this process can read it. So
/// `sudo rostersync school add ...` reads the same secrets the service does.
pub fn credentials_directory() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("CREDENTIALS_DIRECTORY") {
        return Some(PathBuf::from(dir));
    }
    let installed = Path::new(INSTALLED_CREDENTIALS_DIR);
    std::fs::read_dir(installed)
        .is_ok()
        .then(|| installed.to_owned())
}

impl fmt::Display for SecretRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretRef::File(p) => write!(f, "file {}", p.display()),
            SecretRef::Credential(n) => write!(f, "credential '{n}'"),
        }
    }
}

impl SecretRef {
    /// The path the secret is read from.
    pub fn path(&self) -> Result<PathBuf, SecretError> {
        match self {
            SecretRef::File(p) => Ok(p.clone()),
            SecretRef::Credential(name) => {
                let dir = credentials_directory()
                    .ok_or_else(|| SecretError::NoCredentialsDirectory { name: name.clone() })?;
                Ok(dir.join(name))
            }
        }
    }

    /// The raw bytes (certificates with keys, key stores). The file is opened once and its
    /// handle checked (what is read is what was checked): a regular file, readable by its
    /// owner only, at most [`MAX_SECRET_BYTES`].
    pub fn load_bytes(&self) -> Result<SecretBox<Vec<u8>>, SecretError> {
        self.read(true)
    }

    /// The bytes of a file that is referenced like a secret but is public (a CA
    /// certificate): the same checks, except who may read it.
    pub fn load_public_bytes(&self) -> Result<Vec<u8>, SecretError> {
        self.read(false)
            .map(|b| secrecy::ExposeSecret::expose_secret(&b).clone())
    }

    fn read(&self, private: bool) -> Result<SecretBox<Vec<u8>>, SecretError> {
        use std::io::Read;
        let path = self.path()?;
        let file = std::fs::File::open(&path).map_err(|e| self.read_error(&path, e))?;
        let meta = file.metadata().map_err(|e| self.read_error(&path, e))?;
        if !meta.is_file() {
            return Err(SecretError::NotAFile { path });
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = meta.permissions().mode() & 0o7777;
            if private && mode & 0o077 != 0 {
                return Err(SecretError::TooOpen { path, mode });
            }
        }
        let mut bytes = Vec::new();
        file.take(MAX_SECRET_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| self.read_error(&path, e))?;
        if bytes.len() as u64 > MAX_SECRET_BYTES {
            return Err(SecretError::TooLarge {
                reference: self.to_string(),
                limit: MAX_SECRET_BYTES,
            });
        }
        if bytes.is_empty() {
            return Err(SecretError::Empty {
                reference: self.to_string(),
            });
        }
        Ok(SecretBox::new(Box::new(bytes)))
    }

    /// The secret as text, without the trailing newline editors add.
    pub fn load_string(&self) -> Result<SecretString, SecretError> {
        let bytes = self.load_bytes()?;
        let text = String::from_utf8(secrecy::ExposeSecret::expose_secret(&bytes).clone())
            .map_err(|_| SecretError::NotText {
                reference: self.to_string(),
            })?;
        let trimmed = text.trim_end_matches(['\n', '\r']).to_owned();
        if trimmed.trim().is_empty() {
            return Err(SecretError::Empty {
                reference: self.to_string(),
            });
        }
        Ok(SecretString::from(trimmed))
    }

    fn read_error(&self, path: &Path, e: std::io::Error) -> SecretError {
        let reason = match e.kind() {
            std::io::ErrorKind::NotFound => "no such file".to_owned(),
            std::io::ErrorKind::PermissionDenied => "permission denied".to_owned(),
            _ => e.to_string(),
        };
        match self {
            SecretRef::File(_) => SecretError::File {
                path: path.to_owned(),
                reason,
            },
            SecretRef::Credential(name) => SecretError::Credential {
                name: name.clone(),
                path: path.to_owned(),
                reason,
            },
        }
    }
}

/// No secret rostersync reads (a key, a token, a certificate with its key) is larger; a
/// larger file is the wrong one.
pub const MAX_SECRET_BYTES: u64 = 1024 * 1024;

impl<'de> Deserialize<'de> for SecretRef {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(SecretRefVisitor)
    }
}

struct SecretRefVisitor;

const INLINE: &str = "secrets are never written inline: use { file = \"/path\" } or \
                      { credential = \"name\" }";

impl<'de> Visitor<'de> for SecretRefVisitor {
    type Value = SecretRef;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("{ file = \"/path\" } or { credential = \"name\" }")
    }

    // Every scalar gets the same message, which never repeats the value: it may be the secret.
    fn visit_str<E: de::Error>(self, _: &str) -> Result<SecretRef, E> {
        Err(E::custom(INLINE))
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<SecretRef, E> {
        Err(E::custom(INLINE))
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<SecretRef, E> {
        Err(E::custom(INLINE))
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<SecretRef, E> {
        Err(E::custom(INLINE))
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<SecretRef, E> {
        Err(E::custom(INLINE))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<SecretRef, A::Error> {
        let mut found: Option<SecretRef> = None;
        while let Some(key) = map.next_key::<String>()? {
            let value: String = map.next_value()?;
            let this = match key.as_str() {
                "file" => SecretRef::File(PathBuf::from(value)),
                "credential" => {
                    if value.is_empty() || value.contains('/') {
                        return Err(de::Error::custom(
                            "a credential name is a plain file name without '/'",
                        ));
                    }
                    SecretRef::Credential(value)
                }
                other => {
                    return Err(de::Error::unknown_field(other, &["file", "credential"]));
                }
            };
            if found.replace(this).is_some() {
                return Err(de::Error::custom(
                    "give either file or credential for a secret, not both",
                ));
            }
        }
        found.ok_or_else(|| {
            de::Error::custom("a secret needs file = \"...\" or credential = \"...\"")
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    #[derive(Deserialize, Debug)]
    struct Holder {
        #[allow(dead_code)]
        key: SecretRef,
    }

    #[test]
    fn inline_secrets_are_refused_without_echoing_them() {
        let err = toml_like(r#"key = "hunter2""#).expect_err("inline refused");
        assert!(err.contains("never written inline"), "{err}");
        assert!(!err.contains("hunter2"), "{err}");
    }

    #[test]
    fn file_and_credential_forms_parse() {
        let file = toml_like(r#"key = { file = "/etc/k" }"#).expect("file form");
        assert_eq!(file, SecretRef::File("/etc/k".into()));
        let cred = toml_like(r#"key = { credential = "esis.p12" }"#).expect("credential form");
        assert_eq!(cred, SecretRef::Credential("esis.p12".into()));
        assert!(toml_like(r#"key = { file = "/a", credential = "b" }"#).is_err());
        assert!(toml_like(r#"key = { path = "/a" }"#).is_err());
        assert!(toml_like(r#"key = { credential = "../x" }"#).is_err());
    }

    fn private_file(path: &Path, content: &[u8]) {
        use std::os::unix::fs::PermissionsExt;
        std::fs::write(path, content).expect("write");
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    }

    #[test]
    fn a_secret_others_can_read_is_refused_naming_the_file_and_the_fix() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("k");
        private_file(&path, b"abc");
        for mode in [0o640, 0o604, 0o660] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).expect("chmod");
            let err = SecretRef::File(path.clone())
                .load_string()
                .expect_err("refused");
            let text = err.to_string();
            assert!(text.contains(&format!("{mode:04o}")), "{text}");
            assert!(text.contains("chmod 600"), "{text}");
            assert!(!text.contains("abc"), "{text}");
        }
        // A CA certificate is public: readable by all is fine.
        assert!(SecretRef::File(path.clone()).load_public_bytes().is_ok());
        let big = dir.path().join("big");
        private_file(&big, &vec![b'a'; (MAX_SECRET_BYTES + 1) as usize]);
        assert!(matches!(
            SecretRef::File(big).load_bytes(),
            Err(SecretError::TooLarge { .. })
        ));
        assert!(matches!(
            SecretRef::File(dir.path().to_owned()).load_bytes(),
            Err(SecretError::NotAFile { .. })
        ));
    }

    #[test]
    fn a_file_secret_loses_its_trailing_newline() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("k");
        private_file(&path, b"abc-123\n");
        let s = SecretRef::File(path).load_string().expect("readable");
        assert_eq!(s.expose_secret(), "abc-123");
        let missing = SecretRef::File(dir.path().join("nope")).load_string();
        assert!(matches!(missing, Err(SecretError::File { .. })));
    }

    fn toml_like(text: &str) -> Result<SecretRef, String> {
        let cfg = config::Config::builder()
            .add_source(config::File::from_str(text, config::FileFormat::Toml))
            .build()
            .map_err(|e| e.to_string())?;
        cfg.try_deserialize::<Holder>()
            .map(|h| h.key)
            .map_err(|e| e.to_string())
    }
}
