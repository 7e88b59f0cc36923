//! The cluster key (a Secret in the chart): every gossip packet carries an HMAC-SHA256 tag
//! under it, and peers fetching artifacts present a token derived from it. An outsider without
//! the key can neither join the gossip, inject state, nor fetch artifacts.

use hmac::{Hmac, Mac as _};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Bytes of an authentication tag.
pub const TAG_LEN: usize = 32;

/// Shortest key accepted, in bytes.
pub const MIN_KEY_LEN: usize = 16;

/// The shared secret of a cluster.
#[derive(Clone)]
pub struct ClusterKey {
    bytes: Vec<u8>,
}

impl std::fmt::Debug for ClusterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClusterKey(..)")
    }
}

/// Why a key cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the cluster key must be at least {MIN_KEY_LEN} bytes (after trimming whitespace), got {0}")]
pub struct KeyTooShort(pub usize);

impl ClusterKey {
    /// A key from the contents of a key file (surrounding whitespace ignored).
    ///
    /// # Errors
    /// [`KeyTooShort`] for fewer than [`MIN_KEY_LEN`] bytes.
    pub fn new(bytes: &[u8]) -> Result<Self, KeyTooShort> {
        let trimmed = bytes.trim_ascii();
        if trimmed.len() < MIN_KEY_LEN {
            return Err(KeyTooShort(trimmed.len()));
        }
        Ok(Self {
            bytes: trimmed.to_vec(),
        })
    }

    fn mac(&self) -> HmacSha256 {
        // HMAC takes keys of any length.
        <HmacSha256 as hmac::Mac>::new_from_slice(&self.bytes).unwrap_or_else(|_| unreachable_key())
    }

    /// The tag of `data`.
    pub fn tag(&self, data: &[u8]) -> [u8; TAG_LEN] {
        let mut mac = self.mac();
        mac.update(data);
        mac.finalize().into_bytes().into()
    }

    /// Whether `tag` is the tag of `data` (constant time).
    pub fn verify(&self, data: &[u8], tag: &[u8]) -> bool {
        let mut mac = self.mac();
        mac.update(data);
        mac.verify_slice(tag).is_ok()
    }

    /// The bearer token peers present to fetch artifacts.
    pub fn peer_token(&self) -> String {
        format!("peer.{}", hex::encode(self.tag(b"ringrift artifact fetch v1")))
    }
}

#[allow(clippy::panic)] // HMAC accepts every key length; this cannot run
fn unreachable_key() -> HmacSha256 {
    panic!("HMAC rejected a key")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_verify_only_under_the_same_key_and_data() {
        let k = ClusterKey::new(b"0123456789abcdef\n").unwrap();
        let other = ClusterKey::new(b"0123456789abcdeF").unwrap();
        let tag = k.tag(b"hello");
        assert!(k.verify(b"hello", &tag));
        assert!(!k.verify(b"hellO", &tag));
        assert!(!other.verify(b"hello", &tag));
        assert!(!k.verify(b"hello", &tag[..31]));
        assert_ne!(k.peer_token(), other.peer_token());
        assert_eq!(
            k.peer_token(),
            ClusterKey::new(b"  0123456789abcdef ").unwrap().peer_token()
        );
        assert!(k.peer_token().starts_with("peer."));
        assert_eq!(format!("{k:?}"), "ClusterKey(..)", "never printed");
    }

    #[test]
    fn short_keys_are_refused() {
        assert_eq!(ClusterKey::new(b"  short \n").unwrap_err(), KeyTooShort(5));
    }
}
