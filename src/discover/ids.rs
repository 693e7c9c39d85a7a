//! Hash maps keyed by kernel-assigned numbers (socket inodes, pids).
//!
//! The kernel hands these out itself, mostly in sequence, so the
//! flood-resistant default hasher buys nothing here and costs a few percent
//! of a refresh; a multiplicative hash spreads sequential ids well.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};

/// Fibonacci hashing of one integer key.
#[derive(Debug, Default, Clone, Copy)]
pub struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only integer keys are hashed here; fold anything else in anyway.
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }

    fn write_u32(&mut self, n: u32) {
        self.write_u64(u64::from(n));
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0 ^ n)
            .wrapping_mul(0x9E37_79B9_7F4A_7C15)
            .rotate_left(29);
    }
}

pub type IdMap<K, V> = HashMap<K, V, BuildHasherDefault<IdHasher>>;
pub type IdSet<K> = HashSet<K, BuildHasherDefault<IdHasher>>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequential_ids_spread_over_buckets() {
        let (mut low, mut top) = (HashSet::new(), HashSet::new());
        for id in 1000u64..1064 {
            let mut h = IdHasher::default();
            h.write_u64(id);
            low.insert(h.finish() & 63);
            top.insert(h.finish() >> 57);
        }
        // 64 sequential ids land in most of 64 buckets, with varied tags.
        assert!(low.len() > 32, "low bits: {}", low.len());
        assert!(top.len() > 32, "top bits: {}", top.len());
    }
}
