//! Maps keyed by the address of a shared object. A pass reads every cached object (tens of
//! thousands of Tasks on a busy fleet) and looks each one up in what it made from it last time;
//! a cache hands the same `Arc` back until the object changes, so its address names that
//! version of it. Hashing an address needs none of the work a `String` key or a DoS-resistant
//! hasher does: the maps' keys are addresses this process allocated, not input.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;

/// A map from the address of a shared object (see [`address`]). Whoever keys by an address
/// keeps that `Arc` alive in the value, so the address is not reused while the entry exists.
pub(super) type ByAddress<V> = HashMap<usize, V, BuildHasherDefault<AddressHasher>>;

/// The key of `shared` in a [`ByAddress`] map.
pub(super) fn address<T>(shared: &Arc<T>) -> usize {
    Arc::as_ptr(shared).cast::<()>() as usize
}

/// Hashes one address: a multiply by an odd constant spreads its bits (allocations are aligned
/// and close together), the high half folded down because the table takes the low bits.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct AddressHasher(u64);

impl Hasher for AddressHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.write_u64(u64::from(*b));
        }
    }

    fn write_u64(&mut self, n: u64) {
        let mixed = (self.0 ^ n).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        self.0 = mixed ^ (mixed >> 32);
    }

    fn write_usize(&mut self, n: usize) {
        self.write_u64(n as u64);
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::hash::BuildHasher;

    use super::*;

    #[test]
    fn an_address_names_one_shared_object_until_it_is_dropped() {
        let a = Arc::new(7_u32);
        let b = Arc::new(7_u32);
        assert_eq!(address(&a), address(&a.clone()), "clones share the address");
        assert_ne!(address(&a), address(&b), "equal values, distinct objects");
        let mut map: ByAddress<Arc<u32>> = ByAddress::default();
        map.insert(address(&a), a.clone());
        assert!(Arc::ptr_eq(&map[&address(&a)], &a));
        assert!(!map.contains_key(&address(&b)));
    }

    #[test]
    fn neighbouring_aligned_addresses_spread_over_the_low_bits() {
        let hasher = BuildHasherDefault::<AddressHasher>::default();
        // 10,000 allocations 64 bytes apart: the low 10 bits of their hashes (what a table of
        // 1,024 buckets uses) must not collapse onto a few buckets.
        let buckets: HashSet<u64> = (0..10_000_usize)
            .map(|i| hasher.hash_one(0x7f00_0000_0000_usize + i * 64) & 1023)
            .collect();
        assert!(buckets.len() > 1000, "{} of 1024 buckets used", buckets.len());
    }

    #[test]
    fn bytes_hash_too() {
        let hasher = BuildHasherDefault::<AddressHasher>::default();
        assert_ne!(hasher.hash_one("a"), hasher.hash_one("b"));
    }
}
