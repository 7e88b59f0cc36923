//! Gossip packets on the wire: `RRG1`, an HMAC-SHA256 tag under the cluster key, then foca's
//! payload. A packet without the right tag is dropped before foca sees a byte of it.

use crate::sync::key::{ClusterKey, TAG_LEN};

/// Marks a RingRift gossip packet, version 1.
pub const MAGIC: &[u8; 4] = b"RRG1";

/// Bytes added to every payload.
pub const OVERHEAD: usize = MAGIC.len() + TAG_LEN;

/// Why a packet was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Rejected {
    /// Too short, or another protocol.
    #[error("not a gossip packet")]
    NotGossip,
    /// The tag does not verify: another key, or altered in flight.
    #[error("wrong cluster key or altered packet")]
    BadTag,
}

/// `payload` framed and tagged.
pub fn seal(key: &ClusterKey, payload: &[u8]) -> Vec<u8> {
    let mut tagged = Vec::with_capacity(MAGIC.len() + payload.len());
    tagged.extend_from_slice(MAGIC);
    tagged.extend_from_slice(payload);
    let tag = key.tag(&tagged);
    let mut out = Vec::with_capacity(OVERHEAD + payload.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&tag);
    out.extend_from_slice(payload);
    out
}

/// The payload of a packet, if it was sealed under `key`.
///
/// # Errors
/// [`Rejected`].
pub fn open<'a>(key: &ClusterKey, packet: &'a [u8]) -> Result<&'a [u8], Rejected> {
    if packet.len() < OVERHEAD || &packet[..MAGIC.len()] != MAGIC {
        return Err(Rejected::NotGossip);
    }
    let tag = &packet[MAGIC.len()..OVERHEAD];
    let payload = &packet[OVERHEAD..];
    let mut tagged = Vec::with_capacity(MAGIC.len() + payload.len());
    tagged.extend_from_slice(MAGIC);
    tagged.extend_from_slice(payload);
    if key.verify(&tagged, tag) {
        Ok(payload)
    } else {
        Err(Rejected::BadTag)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_packets_sealed_under_the_key_open() {
        let key = ClusterKey::new(b"a cluster key of some length").unwrap();
        let other = ClusterKey::new(b"another cluster key entirely").unwrap();
        let packet = seal(&key, b"payload");
        assert_eq!(open(&key, &packet), Ok(&b"payload"[..]));
        assert_eq!(open(&other, &packet), Err(Rejected::BadTag));
        let mut altered = packet.clone();
        *altered.last_mut().unwrap() ^= 1;
        assert_eq!(open(&key, &altered), Err(Rejected::BadTag));
        assert_eq!(open(&key, b"RRG1short"), Err(Rejected::NotGossip));
        assert_eq!(open(&key, &[0u8; 64]), Err(Rejected::NotGossip));
        assert_eq!(
            open(&key, &seal(&key, b"")),
            Ok(&b""[..]),
            "an empty payload is still sealed"
        );
    }
}
