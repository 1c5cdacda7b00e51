//! Encryption at rest: the master key, per-object data keys wrapped by it (or by a
//! customer's SSE-C key), access-key secrets sealed with it, and the chunked
//! AES-256-GCM format object bytes are stored in.
//!
//! Object bytes are cut into 64 KiB plaintext chunks, each sealed on its own, so
//! a ranged read decrypts only the chunks it covers and memory stays flat. Each
//! segment (blob) of an object has its own AES key, derived from the object's
//! random data key and the segment's unique blob id, so nonces never repeat under
//! one key; each chunk's nonce holds its index, and its associated data binds the
//! index and whether it is the last chunk, so reordered, dropped or truncated
//! chunks fail to open instead of decrypting to wrong bytes.

use std::path::{Path, PathBuf};

use aes_gcm::aead::{AeadInPlace, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce, Tag};
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Plaintext bytes per sealed chunk.
pub const CHUNK: usize = 64 * 1024;
/// The GCM tag each chunk carries.
pub const TAG: usize = 16;
const NONCE: usize = 12;

type HmacSha256 = Hmac<Sha256>;

#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    #[error("a master key must be 32 bytes, base64-encoded: {0}")]
    BadMasterKey(String),
    #[error("cannot read master key file {path}: {source}")]
    KeyFile {
        path: PathBuf,
        source: std::io::Error,
    },
    /// Sealed bytes that do not open: the wrong key, or tampering.
    #[error("sealed data does not authenticate (wrong key or tampered bytes)")]
    Unauthentic,
}

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::STANDARD
}

/// A 256-bit AES key. The bytes never appear in `Debug` output.
#[derive(Clone, PartialEq, Eq)]
pub struct Key([u8; 32]);

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Key(..)")
    }
}

impl Key {
    pub fn random() -> Self {
        Self(rand::random())
    }

    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        <[u8; 32]>::try_from(bytes).ok().map(Self)
    }

    /// Parses base64 of exactly 32 bytes (surrounding whitespace ignored).
    pub fn from_base64(text: &str) -> Result<Self, CryptoError> {
        let bytes = b64()
            .decode(text.trim())
            .map_err(|e| CryptoError::BadMasterKey(e.to_string()))?;
        let len = bytes.len();
        Self::from_bytes(&bytes)
            .ok_or_else(|| CryptoError::BadMasterKey(format!("got {len} bytes")))
    }

    pub fn to_base64(&self) -> String {
        b64().encode(self.0)
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    fn cipher(&self) -> Aes256Gcm {
        Aes256Gcm::new(aes_gcm::Key::<Aes256Gcm>::from_slice(&self.0))
    }

    fn mac(&self, label: &[u8], data: &[u8]) -> [u8; 32] {
        // HMAC accepts keys of any length; 32 bytes cannot fail.
        let mut mac = <HmacSha256 as Mac>::new_from_slice(&self.0)
            .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
        mac.update(label);
        mac.update(&[0]);
        mac.update(data);
        mac.finalize().into_bytes().into()
    }

    /// Seals `plaintext` with a random nonce: base64 of nonce ‖ ciphertext ‖ tag.
    /// `aad` binds the sealed value to where it is stored.
    pub fn seal(&self, plaintext: &[u8], aad: &[u8]) -> String {
        let nonce: [u8; NONCE] = rand::random();
        let mut out = Vec::with_capacity(NONCE + plaintext.len() + TAG);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(plaintext);
        let tag = self
            .cipher()
            .encrypt_in_place_detached(Nonce::from_slice(&nonce), aad, &mut out[NONCE..])
            .unwrap_or_else(|_| unreachable!("GCM seals any message under 64 GiB"));
        out.extend_from_slice(&tag);
        b64().encode(out)
    }

    /// Opens what [`Key::seal`] made with the same `aad`.
    pub fn open(&self, sealed: &str, aad: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let mut bytes = b64().decode(sealed).map_err(|_| CryptoError::Unauthentic)?;
        if bytes.len() < NONCE + TAG {
            return Err(CryptoError::Unauthentic);
        }
        let tag_at = bytes.len() - TAG;
        let tag = Tag::clone_from_slice(&bytes[tag_at..]);
        let nonce = Nonce::clone_from_slice(&bytes[..NONCE]);
        self.cipher()
            .decrypt_in_place_detached(&nonce, aad, &mut bytes[NONCE..tag_at], &tag)
            .map_err(|_| CryptoError::Unauthentic)?;
        bytes.truncate(tag_at);
        bytes.drain(..NONCE);
        Ok(bytes)
    }

    /// Wraps an object's data key (SSE-S3: with the master key; SSE-C: with the
    /// customer's key).
    pub fn wrap(&self, data_key: &Key) -> String {
        self.seal(&data_key.0, b"coffer data key v1")
    }

    pub fn unwrap_key(&self, wrapped: &str) -> Result<Key, CryptoError> {
        let bytes = self.open(wrapped, b"coffer data key v1")?;
        Key::from_bytes(&bytes).ok_or(CryptoError::Unauthentic)
    }

    /// A value the metadata store keeps to recognise its master key: a server
    /// started with another key refuses to start instead of failing every read.
    pub fn check_value(&self) -> String {
        b64().encode(self.mac(b"coffer master key check v1", b""))
    }

    /// A salted fingerprint of an SSE-C key, stored instead of the key (or its
    /// plain MD5) to recognise it on later requests.
    pub fn fingerprint(&self, salt: &[u8]) -> String {
        let mut mac = <HmacSha256 as Mac>::new_from_slice(salt)
            .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
        mac.update(&self.0);
        b64().encode(mac.finalize().into_bytes())
    }

    /// The cipher of one segment of an object whose data key this is.
    pub fn segment(&self, blob_id: &str) -> SegmentCipher {
        let key = Key(self.mac(b"coffer segment key v1", blob_id.as_bytes()));
        let prefix = self.mac(b"coffer segment nonce v1", blob_id.as_bytes());
        SegmentCipher {
            cipher: key.cipher(),
            prefix: [prefix[0], prefix[1], prefix[2], prefix[3]],
        }
    }
}

/// Prefix of access-key secrets sealed with the master key (rows without it are
/// plaintext from before encryption at rest, sealed on the next start).
pub const SEALED_SECRET_PREFIX: &str = "enc1:";

impl Key {
    pub fn seal_secret(&self, key_id: &str, secret: &str) -> String {
        let aad = format!("coffer access key secret v1:{key_id}");
        format!(
            "{SEALED_SECRET_PREFIX}{}",
            self.seal(secret.as_bytes(), aad.as_bytes())
        )
    }

    pub fn open_secret(&self, key_id: &str, stored: &str) -> Result<String, CryptoError> {
        let sealed = stored
            .strip_prefix(SEALED_SECRET_PREFIX)
            .ok_or(CryptoError::Unauthentic)?;
        let aad = format!("coffer access key secret v1:{key_id}");
        let bytes = self.open(sealed, aad.as_bytes())?;
        String::from_utf8(bytes).map_err(|_| CryptoError::Unauthentic)
    }
}

/// Number of chunks a segment of `size` plaintext bytes is stored as (an empty
/// segment still has one, empty, final chunk, so truncation to nothing is caught).
pub fn chunk_count(size: u64) -> u64 {
    size.div_ceil(CHUNK as u64).max(1)
}

/// The stored (ciphertext) size of a segment of `size` plaintext bytes.
pub fn stored_size(size: u64) -> u64 {
    size + TAG as u64 * chunk_count(size)
}

/// AES-256-GCM over the chunks of one segment.
pub struct SegmentCipher {
    cipher: Aes256Gcm,
    prefix: [u8; 4],
}

impl SegmentCipher {
    fn nonce(&self, index: u64) -> [u8; NONCE] {
        let mut nonce = [0u8; NONCE];
        nonce[..4].copy_from_slice(&self.prefix);
        nonce[4..].copy_from_slice(&index.to_be_bytes());
        nonce
    }

    fn aad(index: u64, last: bool) -> [u8; 9] {
        let mut aad = [0u8; 9];
        aad[..8].copy_from_slice(&index.to_be_bytes());
        aad[8] = u8::from(last);
        aad
    }

    /// Seals `plaintext`, which starts at chunk `first`: whole chunks, except
    /// that when `last` the final chunk may be short (or empty).
    pub fn seal_block(&self, first: u64, plaintext: &[u8], last: bool) -> Vec<u8> {
        let pieces = plaintext.len().div_ceil(CHUNK).max(usize::from(last));
        let mut out = Vec::with_capacity(plaintext.len() + pieces * TAG);
        for i in 0..pieces {
            let chunk = &plaintext[i * CHUNK..((i + 1) * CHUNK).min(plaintext.len())];
            let index = first + i as u64;
            let final_chunk = last && i + 1 == pieces;
            let start = out.len();
            out.extend_from_slice(chunk);
            let tag = self
                .cipher
                .encrypt_in_place_detached(
                    Nonce::from_slice(&self.nonce(index)),
                    &Self::aad(index, final_chunk),
                    &mut out[start..],
                )
                .unwrap_or_else(|_| unreachable!("GCM seals any chunk"));
            out.extend_from_slice(&tag);
        }
        out
    }

    /// Opens one sealed chunk (ciphertext ‖ tag) in place, returning the plaintext.
    pub fn open_chunk(
        &self,
        index: u64,
        mut sealed: Vec<u8>,
        last: bool,
    ) -> Result<Vec<u8>, CryptoError> {
        if sealed.len() < TAG {
            return Err(CryptoError::Unauthentic);
        }
        let tag_at = sealed.len() - TAG;
        let tag = Tag::clone_from_slice(&sealed[tag_at..]);
        self.cipher
            .decrypt_in_place_detached(
                Nonce::from_slice(&self.nonce(index)),
                &Self::aad(index, last),
                &mut sealed[..tag_at],
                &tag,
            )
            .map_err(|_| CryptoError::Unauthentic)?;
        sealed.truncate(tag_at);
        Ok(sealed)
    }
}

/// Where the chunks covering plaintext `range` of a segment of `size` bytes lie.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkSpan {
    /// Index of the first chunk read.
    pub first: u64,
    /// The stored bytes to read: whole sealed chunks.
    pub stored: std::ops::Range<u64>,
    /// Plaintext bytes to drop from the front of the first chunk.
    pub skip: u64,
}

pub fn chunk_span(size: u64, range: &std::ops::Range<u64>) -> ChunkSpan {
    let sealed = (CHUNK + TAG) as u64;
    let first = range.start / CHUNK as u64;
    let last = if range.end == 0 {
        0
    } else {
        (range.end - 1) / CHUNK as u64
    };
    let end = ((last + 1) * sealed).min(stored_size(size));
    ChunkSpan {
        first,
        stored: first * sealed..end,
        skip: range.start - first * CHUNK as u64,
    }
}

/// Reads the master key: the configured one, else the file named, else
/// `<data-dir>/master.key`, generating that file (0600) when missing.
/// Returns the key and, when it was just generated, the path it was written to.
pub fn load_master_key(
    configured: Option<&Key>,
    file: Option<&Path>,
    data_dir: &Path,
) -> Result<(Key, Option<PathBuf>), CryptoError> {
    if let Some(key) = configured {
        return Ok((key.clone(), None));
    }
    let read = |path: &Path| -> Result<Key, CryptoError> {
        let text = std::fs::read_to_string(path).map_err(|source| CryptoError::KeyFile {
            path: path.to_owned(),
            source,
        })?;
        Key::from_base64(&text)
    };
    if let Some(path) = file {
        return Ok((read(path)?, None));
    }
    let path = data_dir.join("master.key");
    if path.exists() {
        return Ok((read(&path)?, None));
    }
    let key = Key::random();
    write_key_file(&path, &key).map_err(|source| CryptoError::KeyFile {
        path: path.clone(),
        source,
    })?;
    Ok((key, Some(path)))
}

/// Writes a new key file readable by its owner only; never replaces a file.
pub fn write_key_file(path: &Path, key: &Key) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(format!("{}\n", key.to_base64()).as_bytes())?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_round_trip_and_detect_tampering() {
        let key = Key::random().segment("blob-1");
        let data: Vec<u8> = (0..CHUNK * 2 + 100).map(|i| (i % 251) as u8).collect();
        let sealed = key.seal_block(0, &data, true);
        assert_eq!(sealed.len() as u64, stored_size(data.len() as u64));
        let span = chunk_span(
            data.len() as u64,
            &(CHUNK as u64 + 5..CHUNK as u64 * 2 + 50),
        );
        assert_eq!(span.first, 1);
        assert_eq!(span.skip, 5);
        let second =
            sealed[span.stored.start as usize..(span.stored.start as usize + CHUNK + TAG)].to_vec();
        assert_eq!(
            key.open_chunk(1, second.clone(), false).unwrap(),
            &data[CHUNK..CHUNK * 2]
        );
        // The wrong position, a false "last" flag, or a flipped bit all fail.
        assert!(key.open_chunk(0, second.clone(), false).is_err());
        assert!(key.open_chunk(1, second.clone(), true).is_err());
        let mut bad = second;
        bad[7] ^= 1;
        assert!(key.open_chunk(1, bad, false).is_err());
    }

    #[test]
    fn empty_segment_is_one_final_chunk() {
        let key = Key::random().segment("b");
        let sealed = key.seal_block(0, &[], true);
        assert_eq!(sealed.len(), TAG);
        assert!(key.open_chunk(0, sealed, true).unwrap().is_empty());
    }

    #[test]
    fn secrets_and_wrapped_keys_need_the_right_key() {
        let master = Key::random();
        let sealed = master.seal_secret("AKID", "s3cret");
        assert_eq!(master.open_secret("AKID", &sealed).unwrap(), "s3cret");
        assert!(master.open_secret("OTHER", &sealed).is_err());
        assert!(Key::random().open_secret("AKID", &sealed).is_err());
        let data = Key::random();
        assert_eq!(master.unwrap_key(&master.wrap(&data)).unwrap(), data);
        assert!(Key::random().unwrap_key(&master.wrap(&data)).is_err());
    }
}
