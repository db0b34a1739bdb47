//! Encryption at rest for secret environment values.
//!
//! Secret env values must reach the container, so the server has to be able to read them
//! back; they must also never sit in the database in plain form. They are sealed with
//! ChaCha20-Poly1305 under a 256-bit key kept outside the database: by default
//! `<data-dir>/secret.key` (created on first start, mode 0600). Replicas sharing one
//! database must share the key file (`--secret-key-file`). A sealed value is
//! `version byte || 12-byte random nonce || ciphertext+tag`.

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use rand::RngCore;

const VERSION: u8 = 1;
const NONCE_LEN: usize = 12;

/// Why the secret key could not be loaded or a value not sealed/opened.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// The key file is unusable.
    #[error("secret key file {path}: {reason}")]
    KeyFile {
        /// The file.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// A sealed value does not open with this key (another key, or corrupted).
    #[error("cannot decrypt secret env values: wrong secret key or corrupted data")]
    Open,
}

/// The key that seals secret env values. `Debug` never shows it.
#[derive(Clone)]
pub struct SecretBox {
    cipher: ChaCha20Poly1305,
}

impl std::fmt::Debug for SecretBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretBox([REDACTED])")
    }
}

impl SecretBox {
    /// Loads the 32-byte key from `path`, creating it (mode 0600) if it does not exist.
    pub fn load_or_create(path: &Path) -> Result<SecretBox, SecretError> {
        let bad = |reason: String| SecretError::KeyFile {
            path: path.display().to_string(),
            reason,
        };
        let key = match std::fs::read(path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut key = [0u8; 32];
                rand::rng().fill_bytes(&mut key);
                let mut file = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(path)
                    .map_err(|e| bad(format!("cannot create it: {e}")))?;
                file.write_all(&key)
                    .and_then(|()| file.sync_all())
                    .map_err(|e| bad(format!("cannot write it: {e}")))?;
                tracing::info!(path = %path.display(), "created a new secret key for secret env values");
                key.to_vec()
            }
            Err(e) => return Err(bad(format!("cannot read it: {e}"))),
        };
        if key.len() != 32 {
            return Err(bad(format!(
                "must hold exactly 32 bytes, it holds {}",
                key.len()
            )));
        }
        if let Ok(meta) = std::fs::metadata(path)
            && meta.permissions().mode() & 0o077 != 0
        {
            tracing::warn!(path = %path.display(), "secret key file is readable by others; chmod 600 it");
        }
        Ok(SecretBox::from_key(&key))
    }

    /// A box from raw key bytes (32 bytes).
    pub(crate) fn from_key(key: &[u8]) -> SecretBox {
        SecretBox {
            cipher: ChaCha20Poly1305::new(Key::from_slice(key)),
        }
    }

    /// Seals a map of secret values.
    pub(crate) fn seal(&self, values: &BTreeMap<String, String>) -> Result<Vec<u8>, SecretError> {
        let plain = serde_json::to_vec(values).map_err(|_| SecretError::Open)?;
        let mut nonce = [0u8; NONCE_LEN];
        rand::rng().fill_bytes(&mut nonce);
        let sealed = self
            .cipher
            .encrypt(Nonce::from_slice(&nonce), plain.as_slice())
            .map_err(|_| SecretError::Open)?;
        let mut out = Vec::with_capacity(1 + NONCE_LEN + sealed.len());
        out.push(VERSION);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    /// Opens what [`SecretBox::seal`] produced.
    pub fn open(&self, sealed: &[u8]) -> Result<BTreeMap<String, String>, SecretError> {
        if sealed.len() < 1 + NONCE_LEN || sealed[0] != VERSION {
            return Err(SecretError::Open);
        }
        let (nonce, body) = sealed[1..].split_at(NONCE_LEN);
        let plain = self
            .cipher
            .decrypt(Nonce::from_slice(nonce), body)
            .map_err(|_| SecretError::Open)?;
        serde_json::from_slice(&plain).map_err(|_| SecretError::Open)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values() -> BTreeMap<String, String> {
        BTreeMap::from([("API_KEY".to_owned(), "hunter2-very-secret".to_owned())])
    }

    #[test]
    fn sealed_values_round_trip_and_hide_the_plain_text() {
        let secret_box = SecretBox::from_key(&[7u8; 32]);
        let sealed = secret_box.seal(&values()).expect("seal");
        assert!(!sealed.windows(b"hunter2".len()).any(|w| w == b"hunter2"));
        assert_eq!(secret_box.open(&sealed).expect("open"), values());
    }

    #[test]
    fn another_key_or_tampering_is_refused() {
        let sealed = SecretBox::from_key(&[7u8; 32])
            .seal(&values())
            .expect("seal");
        assert!(SecretBox::from_key(&[8u8; 32]).open(&sealed).is_err());
        let mut tampered = sealed.clone();
        let last = tampered.len() - 1;
        tampered[last] ^= 1;
        assert!(SecretBox::from_key(&[7u8; 32]).open(&tampered).is_err());
    }

    #[test]
    fn key_file_is_created_private_and_reused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("secret.key");
        let first = SecretBox::load_or_create(&path).expect("create");
        let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let sealed = first.seal(&values()).expect("seal");
        let second = SecretBox::load_or_create(&path).expect("load");
        assert_eq!(second.open(&sealed).expect("open"), values());
    }

    #[test]
    fn short_key_file_is_a_clear_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("secret.key");
        std::fs::write(&path, b"short").expect("write");
        let error = SecretBox::load_or_create(&path).expect_err("must fail");
        assert!(error.to_string().contains("exactly 32 bytes"), "{error}");
    }
}
