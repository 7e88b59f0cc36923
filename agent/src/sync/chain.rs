//! SHA-256 cut at chunk boundaries. SHA-256 reads its input in 64-byte blocks, carrying a
//! 32-byte state from one block to the next; the digest is the state after the last block and
//! the padding. A manifest records the state at the end of every chunk, so one chunk is checked
//! on its own: start from the state the previous chunk ends with (the standard initial state for
//! the first), run the blocks of the chunk, and compare with the state recorded for it; the last
//! chunk is finished with the padding, and its state is the artifact's digest itself.
//!
//! Hence one pass of SHA-256 over the bytes checks every chunk *and* the whole: when every chunk
//! of a file checks out against one manifest whose last state is the wanted digest, the file's
//! SHA-256 is that digest (it is the same computation, done piecewise). Chunks are checked in any
//! order and on any thread, and the digest stays the plain `sha256sum` of the content.

/// SHA-256's internal state: eight 32-bit words.
pub type State = [u32; 8];

/// Bytes per SHA-256 block; chunk sizes are multiples of it.
pub const BLOCK: u64 = 64;

/// The state SHA-256 starts from (FIPS 180-4, 5.3.3).
pub const INITIAL: State = [
    0x6a09_e667,
    0xbb67_ae85,
    0x3c6e_f372,
    0xa54f_f53a,
    0x510e_527f,
    0x9b05_688c,
    0x1f83_d9ab,
    0x5be0_cd19,
];

/// Runs the blocks of `data` through `state`; the length of `data` must be a multiple of
/// [`BLOCK`] (`false`, with `state` untouched, when it is not).
pub fn advance(state: &mut State, data: &[u8]) -> bool {
    if !(data.len() as u64).is_multiple_of(BLOCK) {
        return false;
    }
    for block in data.chunks_exact(64) {
        if let Ok(block) = <&[u8; 64]>::try_from(block) {
            sha2::compress256(state, std::slice::from_ref(block.into()));
        }
    }
    true
}

/// Finishes a hash whose state is `state` after the blocks before `tail`: runs `tail` (the
/// rest of the input, any length) and the padding for an input of `total` bytes, and returns
/// the digest.
pub fn finish(mut state: State, tail: &[u8], total: u64) -> [u8; 32] {
    let whole = tail.len() - tail.len() % 64;
    let (blocks, rest) = tail.split_at(whole);
    advance(&mut state, blocks);
    let mut last = [0u8; 128];
    last[..rest.len()].copy_from_slice(rest);
    last[rest.len()] = 0x80;
    let end = if rest.len() < 56 { 64 } else { 128 };
    last[end - 8..end].copy_from_slice(&total.wrapping_mul(8).to_be_bytes());
    advance(&mut state, &last[..end]);
    let mut out = [0u8; 32];
    for (bytes, word) in out.chunks_exact_mut(4).zip(state) {
        bytes.copy_from_slice(&word.to_be_bytes());
    }
    out
}

/// A state as 64 lowercase hex digits (the words big-endian, as a digest is written).
pub fn to_hex(state: &State) -> String {
    let bytes: Vec<u8> = state.iter().flat_map(|w| w.to_be_bytes()).collect();
    hex::encode(bytes)
}

/// A state from [`to_hex`]'s spelling; `None` for anything else.
pub fn from_hex(hex: &str) -> Option<State> {
    if hex.len() != 64
        || !hex
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    {
        return None;
    }
    let mut state = [0u32; 8];
    for (i, word) in state.iter_mut().enumerate() {
        *word = u32::from_str_radix(hex.get(i * 8..i * 8 + 8)?, 16).ok()?;
    }
    Some(state)
}

#[cfg(test)]
mod tests {
    use sha2::{Digest as _, Sha256};

    use super::*;

    fn data(n: usize) -> Vec<u8> {
        (0..n).map(|i| u8::try_from(i * 7 % 251).unwrap()).collect()
    }

    #[test]
    fn finishing_from_the_start_is_sha256() {
        // Every padding case: empty, short, 55/56/63/64 bytes (one or two padding blocks), long.
        for n in [0, 1, 55, 56, 57, 63, 64, 65, 119, 120, 128, 1000, 4096 + 3] {
            let d = data(n);
            assert_eq!(
                finish(INITIAL, &d, n as u64),
                <[u8; 32]>::from(Sha256::digest(&d)),
                "{n} bytes"
            );
        }
    }

    #[test]
    fn chunk_states_chain_to_the_digest() {
        let d = data(64 * 10 + 17);
        let mut state = INITIAL;
        assert!(advance(&mut state, &d[..64 * 4]));
        let middle = state;
        assert!(advance(&mut state, &d[64 * 4..64 * 8]));
        let digest = finish(state, &d[64 * 8..], d.len() as u64);
        assert_eq!(digest, <[u8; 32]>::from(Sha256::digest(&d)));
        // The second chunk checks out from the recorded middle state alone.
        let mut again = middle;
        advance(&mut again, &d[64 * 4..64 * 8]);
        assert_eq!(again, state);
        // A changed byte does not.
        let mut bad = d[64 * 4..64 * 8].to_vec();
        bad[100] ^= 1;
        let mut other = middle;
        advance(&mut other, &bad);
        assert_ne!(other, state);
    }

    #[test]
    fn only_whole_blocks_advance() {
        let mut state = INITIAL;
        assert!(!advance(&mut state, &[0u8; 65]));
        assert_eq!(state, INITIAL);
        assert!(advance(&mut state, &[]));
        assert_eq!(state, INITIAL);
    }

    #[test]
    fn states_round_trip_through_hex() {
        let hex = to_hex(&INITIAL);
        assert_eq!(
            hex,
            "6a09e667bb67ae853c6ef372a54ff53a510e527f9b05688c1f83d9ab5be0cd19"
        );
        assert_eq!(from_hex(&hex), Some(INITIAL));
        for bad in [
            "",
            "6a09",
            &hex.to_uppercase(),
            &format!("{}g", &hex[..63]),
            &format!("{hex}0"),
        ] {
            assert_eq!(from_hex(bad), None, "{bad}");
        }
    }
}
