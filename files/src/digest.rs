//! A file's identity and the hasher that makes it.
//!
//! A file is its SHA-256 and its size together ([`FileId`]): a right hash with a wrong size
//! is another file. The empty file always exists ([`FileId::EMPTY`]).
//!
//! [`Hasher`] is SHA-256 whose midstate can be saved ([`Hasher::state`]) after any whole
//! number of 64-byte blocks and restored ([`Hasher::resume`]), so an upload that stopped
//! half-way can go on from another process, on another replica, after a restart.

use std::fmt;

use sha2::digest::common::hazmat::SerializableState;
use sha2::{Digest, Sha256};

/// A file's identity: its SHA-256 and its size in bytes.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FileId {
    pub sha256: [u8; 32],
    pub size: u64,
}

impl FileId {
    /// The empty file, which every store has without holding it.
    pub const EMPTY: FileId = FileId {
        sha256: [
            0xe3, 0xb0, 0xc4, 0x42, 0x98, 0xfc, 0x1c, 0x14, 0x9a, 0xfb, 0xf4, 0xc8, 0x99, 0x6f,
            0xb9, 0x24, 0x27, 0xae, 0x41, 0xe4, 0x64, 0x9b, 0x93, 0x4c, 0xa4, 0x95, 0x99, 0x1b,
            0x78, 0x52, 0xb8, 0x55,
        ],
        size: 0,
    };

    /// The identity of `bytes`.
    pub fn of(bytes: &[u8]) -> FileId {
        FileId {
            sha256: Sha256::digest(bytes).into(),
            size: bytes.len() as u64,
        }
    }

    /// From a hex SHA-256 and a size; `None` if the hex is not 64 hex digits.
    pub fn from_hex(hex: &str, size: u64) -> Option<FileId> {
        Some(FileId {
            sha256: parse_hex(hex)?,
            size,
        })
    }

    /// From raw hash bytes; `None` unless there are exactly 32.
    pub fn from_bytes(sha256: &[u8], size: u64) -> Option<FileId> {
        Some(FileId {
            sha256: sha256.try_into().ok()?,
            size,
        })
    }

    /// The SHA-256 in lower-case hex.
    pub fn hex(&self) -> String {
        to_hex(&self.sha256)
    }

    /// Where a store keeps the file: `sha256/<first two hex digits>/<hex>-<size>`.
    pub fn key(&self) -> String {
        let hex = self.hex();
        format!("sha256/{}/{}-{}", &hex[..2], hex, self.size)
    }

    /// The file a store key names, if it is one ([`FileId::key`]'s inverse).
    pub fn from_key(key: &str) -> Option<FileId> {
        let rest = key.strip_prefix("sha256/")?;
        let (prefix, name) = rest.split_once('/')?;
        let (hex, size) = name.split_once('-')?;
        let id = FileId::from_hex(hex, size.parse().ok()?)?;
        (id.hex()[..2] == *prefix && id.key() == key).then_some(id)
    }

    pub fn is_empty(&self) -> bool {
        self.size == 0
    }
}

impl fmt::Debug for FileId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.hex(), self.size)
    }
}

impl fmt::Display for FileId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{} ({} bytes)", self.hex(), self.size)
    }
}

/// Lower-case hex of `bytes`.
pub fn to_hex(bytes: &[u8]) -> String {
    use fmt::Write;
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out
}

fn parse_hex(hex: &str) -> Option<[u8; 32]> {
    if hex.len() != 64 || !hex.is_ascii() {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[i * 2..i * 2 + 2], 16).ok()?;
    }
    Some(out)
}

/// SHA-256 with a saveable midstate, counting the bytes it has seen.
#[derive(Clone, Default)]
pub struct Hasher {
    inner: Sha256,
    len: u64,
}

/// A saved midstate could not be restored (corrupt, or from another format).
#[derive(Debug, thiserror::Error)]
#[error("the saved SHA-256 state is not valid ({0})")]
pub struct BadState(&'static str);

impl Hasher {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn update(&mut self, bytes: &[u8]) {
        self.inner.update(bytes);
        self.len += bytes.len() as u64;
    }

    /// Bytes hashed so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The midstate as bytes, to store and later [`Hasher::resume`]. It includes the bytes
    /// buffered short of a block, so it may be taken after any number of bytes.
    pub fn state(&self) -> Vec<u8> {
        self.inner.serialize().to_vec()
    }

    /// A hasher that goes on from a saved [`Hasher::state`] taken after `len` bytes.
    pub fn resume(state: &[u8], len: u64) -> Result<Hasher, BadState> {
        let array = state
            .try_into()
            .map_err(|_| BadState("it has the wrong length"))?;
        let inner = Sha256::deserialize(array).map_err(|_| BadState("it does not decode"))?;
        Ok(Hasher { inner, len })
    }

    /// The identity of everything hashed.
    pub fn finish(self) -> FileId {
        FileId {
            sha256: self.inner.finalize().into(),
            size: self.len,
        }
    }
}

#[cfg(test)]
mod tests {
    #![expect(clippy::unwrap_used, reason = "tests may unwrap")]

    use super::*;

    #[test]
    fn the_empty_file_is_the_hash_of_nothing() {
        assert_eq!(FileId::of(b""), FileId::EMPTY);
        assert_eq!(Hasher::new().finish(), FileId::EMPTY);
    }

    #[test]
    fn a_saved_midstate_resumes_to_the_same_digest_at_any_split() {
        let data: Vec<u8> = (0..10_000u32).map(|i| (i * 7 % 251) as u8).collect();
        for split in [0, 1, 63, 64, 65, 4096, 9999, 10_000] {
            let mut first = Hasher::new();
            first.update(&data[..split]);
            let saved = first.state();
            let mut second = Hasher::resume(&saved, split as u64).unwrap();
            second.update(&data[split..]);
            assert_eq!(second.finish(), FileId::of(&data), "split at {split}");
        }
        assert!(Hasher::resume(b"short", 0).is_err());
    }

    #[test]
    fn keys_round_trip_and_reject_others() {
        let id = FileId::of(b"hello");
        assert_eq!(FileId::from_key(&id.key()), Some(id));
        assert!(id.key().starts_with("sha256/2c/2cf24d"));
        assert_eq!(FileId::from_key("sha256/00/2cf24d-5"), None);
        assert_eq!(FileId::from_key("uploads/x"), None);
        assert_eq!(FileId::from_hex(&id.hex(), 5), Some(id));
        assert_eq!(FileId::from_hex("zz", 5), None);
    }
}
