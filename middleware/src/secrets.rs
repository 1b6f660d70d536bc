//! Secrets: the key file that seals account keys at rest (AES-256-GCM), bearer tokens (random,
//! stored as SHA-256), and password hashes (Argon2id).

use argon2::password_hash::{
    rand_core::OsRng, PasswordHash, PasswordHasher, PasswordVerifier, SaltString,
};
use argon2::Argon2;
use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use base64::Engine as _;
use rand::RngCore;
use sha2::{Digest, Sha256};
use std::path::Path;

/// Format tag of a sealed blob: version 1 = AES-256-GCM, 12-byte nonce, ciphertext ‖ tag.
const SEALED_V1: u8 = 1;

/// The master key that seals account keys; read from (or created in) a 32-byte key file.
pub struct KeyFile {
    key: LessSafeKey,
}

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("key file {path}: {why}")]
    KeyFile { path: String, why: String },
    #[error(
        "a sealed key does not open with this key file (wrong key file, or the data is corrupt)"
    )]
    Open,
    #[error("sealing: {0}")]
    Seal(String),
}

impl KeyFile {
    /// Opens `path`, creating it (mode 0600, 32 random bytes) when it does not exist.
    pub fn open_or_create(path: &Path) -> Result<KeyFile, SecretError> {
        let err = |why: String| SecretError::KeyFile {
            path: path.display().to_string(),
            why,
        };
        if !path.exists() {
            let mut k = [0u8; 32];
            rand::rngs::OsRng.fill_bytes(&mut k);
            write_private(path, &k).map_err(|e| err(e.to_string()))?;
        }
        let bytes = std::fs::read(path).map_err(|e| err(e.to_string()))?;
        if bytes.len() != 32 {
            return Err(err(format!("holds {} bytes, expected 32", bytes.len())));
        }
        KeyFile::from_bytes(&bytes).map_err(|e| err(e.to_string()))
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<KeyFile, SecretError> {
        let k =
            UnboundKey::new(&AES_256_GCM, bytes).map_err(|e| SecretError::Seal(e.to_string()))?;
        Ok(KeyFile {
            key: LessSafeKey::new(k),
        })
    }

    /// Seals `plain`; `aad` binds the blob to its owner (an account's ledger id), so a sealed
    /// key moved to another row does not open.
    pub fn seal(&self, plain: &[u8], aad: &[u8]) -> Result<Vec<u8>, SecretError> {
        let mut n = [0u8; NONCE_LEN];
        rand::rngs::OsRng.fill_bytes(&mut n);
        let mut buf = plain.to_vec();
        self.key
            .seal_in_place_append_tag(Nonce::assume_unique_for_key(n), Aad::from(aad), &mut buf)
            .map_err(|e| SecretError::Seal(e.to_string()))?;
        let mut out = Vec::with_capacity(1 + NONCE_LEN + buf.len());
        out.push(SEALED_V1);
        out.extend_from_slice(&n);
        out.extend_from_slice(&buf);
        Ok(out)
    }

    pub fn open(&self, sealed: &[u8], aad: &[u8]) -> Result<Vec<u8>, SecretError> {
        if sealed.len() < 1 + NONCE_LEN + 16 || sealed[0] != SEALED_V1 {
            return Err(SecretError::Open);
        }
        let mut n = [0u8; NONCE_LEN];
        n.copy_from_slice(&sealed[1..1 + NONCE_LEN]);
        let mut buf = sealed[1 + NONCE_LEN..].to_vec();
        let plain = self
            .key
            .open_in_place(Nonce::assume_unique_for_key(n), Aad::from(aad), &mut buf)
            .map_err(|_| SecretError::Open)?;
        Ok(plain.to_vec())
    }
}

/// Writes `bytes` to a new file readable only by its owner.
pub fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(0o600);
    }
    let mut f = o.open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

/// A new bearer token (`bpu_` + 43 base64url characters: 256 random bits) and the hash stored.
pub fn new_token() -> (String, Vec<u8>) {
    let mut b = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut b);
    let t = format!(
        "bpu_{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
    );
    let h = token_hash(&t);
    (t, h)
}

/// What the database keeps of a token.
pub fn token_hash(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

/// Argon2id (the crate's defaults: m = 19 MiB, t = 2, p = 1) in PHC string form.
pub fn hash_password(pw: &str) -> Result<String, SecretError> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(pw.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| SecretError::Seal(e.to_string()))
}

/// Whether `pw` matches the PHC string `hash`.
pub fn check_password(pw: &str, hash: &str) -> bool {
    PasswordHash::new(hash)
        .map(|h| Argon2::default().verify_password(pw.as_bytes(), &h).is_ok())
        .unwrap_or(false)
}

/// A random id: 16 bytes as 32 hex digits.
pub fn random_id() -> String {
    let mut b = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut b);
    hex::encode(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_round_trip_and_binding() {
        let k = KeyFile::from_bytes(&[7u8; 32]).expect("key");
        let s = k.seal(b"secret", b"owner-a").expect("seal");
        assert_eq!(k.open(&s, b"owner-a").expect("open"), b"secret");
        assert!(k.open(&s, b"owner-b").is_err(), "bound to its owner");
        let other = KeyFile::from_bytes(&[8u8; 32]).expect("key");
        assert!(other.open(&s, b"owner-a").is_err(), "another key file");
        let mut bad = s.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert!(k.open(&bad, b"owner-a").is_err(), "tampered");
        assert!(!s.windows(6).any(|w| w == b"secret"), "not in the clear");
    }

    #[test]
    fn passwords() {
        let h = hash_password("correct horse").expect("hash");
        assert!(h.starts_with("$argon2id$"), "{h}");
        assert!(check_password("correct horse", &h));
        assert!(!check_password("wrong", &h));
        assert!(!check_password("x", "not a hash"));
    }

    #[test]
    fn tokens_are_random_and_hashed() {
        let (a, ha) = new_token();
        let (b, _) = new_token();
        assert_ne!(a, b);
        assert_eq!(ha, token_hash(&a));
        assert_eq!(a.len(), 4 + 43);
    }
}
