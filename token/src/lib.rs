//! Berth's token format, shared by the server, the CLI and the worker.
//!
//! A token looks like `berth_usr_<43 base62 chars><6 base62 chars>`: a type prefix that
//! names its role, 32 random bytes written in base62, and a CRC-32 checksum of everything
//! before it. The prefix lets secret scanners recognise a leaked Berth token, and the
//! checksum lets them (and the server) reject a mistyped or made-up one offline, without
//! a database lookup. The server only ever stores [`TokenHash`], the SHA-256 of the whole
//! string.

use std::fmt;

use rand::RngCore;
use sha2::{Digest, Sha256};

const ALPHABET: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
const BODY_LEN: usize = 43; // ceil(256 / log2(62))
const CHECKSUM_LEN: usize = 6; // ceil(32 / log2(62))

/// The kind of a token, which is also the role it grants.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TokenKind {
    /// `berth_adm_`: an administrator.
    Admin,
    /// `berth_usr_`: a user.
    User,
    /// `berth_wkr_`: a worker daemon.
    Worker,
}

impl TokenKind {
    /// The prefix every token of this kind starts with.
    pub fn prefix(self) -> &'static str {
        match self {
            TokenKind::Admin => "berth_adm_",
            TokenKind::User => "berth_usr_",
            TokenKind::Worker => "berth_wkr_",
        }
    }

    /// The role's name as stored and shown: `admin`, `user` or `worker`.
    pub fn as_str(self) -> &'static str {
        match self {
            TokenKind::Admin => "admin",
            TokenKind::User => "user",
            TokenKind::Worker => "worker",
        }
    }

    /// Parses a role name as written by [`TokenKind::as_str`].
    pub fn from_name(name: &str) -> Option<TokenKind> {
        match name {
            "admin" => Some(TokenKind::Admin),
            "user" => Some(TokenKind::User),
            "worker" => Some(TokenKind::Worker),
            _ => None,
        }
    }

    const ALL: [TokenKind; 3] = [TokenKind::Admin, TokenKind::User, TokenKind::Worker];
}

impl fmt::Display for TokenKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A token secret. Its `Debug` never shows the secret, so it can sit in structs that are
/// logged.
#[derive(Clone, PartialEq, Eq)]
pub struct Token {
    kind: TokenKind,
    secret: String,
}

/// Why a string is not a well-formed token.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenFormatError {
    /// It does not start with a known prefix.
    #[error("not a Berth token (expected a berth_adm_, berth_usr_ or berth_wkr_ prefix)")]
    UnknownPrefix,
    /// It has the wrong length or characters outside base62.
    #[error("malformed Berth token (wrong length or characters)")]
    Malformed,
    /// Its checksum does not match: mistyped or made up.
    #[error("Berth token checksum does not match (mistyped or truncated?)")]
    BadChecksum,
}

impl Token {
    /// Makes a new random token of `kind` from the operating system's CSPRNG.
    pub fn generate(kind: TokenKind) -> Token {
        let mut bytes = [0u8; 32];
        rand::rng().fill_bytes(&mut bytes);
        let mut secret = String::with_capacity(kind.prefix().len() + BODY_LEN + CHECKSUM_LEN);
        secret.push_str(kind.prefix());
        secret.push_str(&base62_fixed(&bytes, BODY_LEN));
        let checksum = crc32fast::hash(secret.as_bytes());
        secret.push_str(&base62_fixed(&checksum.to_be_bytes(), CHECKSUM_LEN));
        Token { kind, secret }
    }

    /// Checks the prefix, length, alphabet and checksum of `text`.
    pub fn parse(text: &str) -> Result<Token, TokenFormatError> {
        let kind = TokenKind::ALL
            .into_iter()
            .find(|kind| text.starts_with(kind.prefix()))
            .ok_or(TokenFormatError::UnknownPrefix)?;
        let rest = &text[kind.prefix().len()..];
        if rest.len() != BODY_LEN + CHECKSUM_LEN || !rest.bytes().all(|b| ALPHABET.contains(&b)) {
            return Err(TokenFormatError::Malformed);
        }
        let (signed, checksum) = text.split_at(text.len() - CHECKSUM_LEN);
        let expected = base62_fixed(
            &crc32fast::hash(signed.as_bytes()).to_be_bytes(),
            CHECKSUM_LEN,
        );
        if checksum != expected {
            return Err(TokenFormatError::BadChecksum);
        }
        Ok(Token {
            kind,
            secret: text.to_owned(),
        })
    }

    /// The token's kind (its role).
    pub fn kind(&self) -> TokenKind {
        self.kind
    }

    /// The secret itself, for an `authorization` header or to show once to its owner.
    pub fn expose_secret(&self) -> &str {
        &self.secret
    }

    /// The SHA-256 of the secret, which is all the server stores.
    pub fn hash(&self) -> TokenHash {
        TokenHash(Sha256::digest(self.secret.as_bytes()).into())
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Token({}[REDACTED])", self.kind.prefix())
    }
}

/// SHA-256 of a token: the only form in which tokens are stored.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TokenHash(pub [u8; 32]);

impl fmt::Debug for TokenHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenHash(..)")
    }
}

/// Writes `bytes` (a big-endian number) in base62, left-padded with `0` to `width`.
fn base62_fixed(bytes: &[u8], width: usize) -> String {
    let mut number = bytes.to_vec();
    let mut digits = Vec::with_capacity(width);
    while number.iter().any(|&b| b != 0) {
        let mut remainder = 0u32;
        for byte in number.iter_mut() {
            let value = (remainder << 8) | u32::from(*byte);
            *byte = (value / 62) as u8;
            remainder = value % 62;
        }
        digits.push(ALPHABET[remainder as usize]);
    }
    while digits.len() < width {
        digits.push(b'0');
    }
    digits.reverse();
    String::from_utf8(digits).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_tokens_parse_back_with_their_kind() {
        for kind in TokenKind::ALL {
            let token = Token::generate(kind);
            assert!(token.expose_secret().starts_with(kind.prefix()));
            assert_eq!(
                token.expose_secret().len(),
                kind.prefix().len() + BODY_LEN + CHECKSUM_LEN
            );
            let parsed = Token::parse(token.expose_secret()).expect("round trip");
            assert_eq!(parsed.kind(), kind);
            assert_eq!(parsed.hash(), token.hash());
        }
    }

    #[test]
    fn two_tokens_differ() {
        let a = Token::generate(TokenKind::User);
        let b = Token::generate(TokenKind::User);
        assert_ne!(a.expose_secret(), b.expose_secret());
    }

    #[test]
    fn a_changed_character_fails_the_checksum() {
        let token = Token::generate(TokenKind::Admin);
        let mut chars: Vec<char> = token.expose_secret().chars().collect();
        let i = TokenKind::Admin.prefix().len() + 5;
        chars[i] = if chars[i] == 'a' { 'b' } else { 'a' };
        let tampered: String = chars.into_iter().collect();
        assert_eq!(Token::parse(&tampered), Err(TokenFormatError::BadChecksum));
    }

    #[test]
    fn wrong_prefix_length_or_alphabet_is_refused() {
        assert_eq!(
            Token::parse("ghp_abc"),
            Err(TokenFormatError::UnknownPrefix)
        );
        assert_eq!(
            Token::parse("berth_usr_short"),
            Err(TokenFormatError::Malformed)
        );
        let token = Token::generate(TokenKind::User);
        let with_dash = token
            .expose_secret()
            .replacen('0', "-", 1)
            .replacen('A', "-", 1);
        if with_dash != token.expose_secret() {
            assert!(Token::parse(&with_dash).is_err());
        }
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let token = Token::generate(TokenKind::Worker);
        let shown = format!("{token:?} {:?}", token.hash());
        assert!(!shown.contains(&token.expose_secret()[10..]));
    }

    #[test]
    fn base62_encodes_known_values() {
        assert_eq!(base62_fixed(&[0], 3), "000");
        assert_eq!(base62_fixed(&[61], 2), "0z");
        assert_eq!(base62_fixed(&[0, 62], 2), "10");
    }
}
