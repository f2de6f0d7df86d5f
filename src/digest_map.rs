//! Hash maps keyed by digests (xxh3): the key is already a hash, so the
//! map's hasher passes its low word through instead of hashing it again.
//! Ingest's dedupe keys ids by digest; a tick's JSON memo keys documents.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// A map whose keys are digests (`u128`, or `(u64, u64)` halves).
pub type DigestMap<K, V> = HashMap<K, V, BuildHasherDefault<DigestHasher>>;

/// The digest maps' hasher: the key's low word is the hash.
#[derive(Debug, Default)]
pub struct DigestHasher(u64);

impl Hasher for DigestHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(byte);
        }
    }

    fn write_u64(&mut self, word: u64) {
        self.0 ^= word;
    }

    fn write_u128(&mut self, digest: u128) {
        self.0 ^= digest as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_find_their_entries_in_either_shape() {
        let mut halves: DigestMap<(u64, u64), u32> = DigestMap::default();
        let mut whole: DigestMap<u128, u32> = DigestMap::default();
        for n in 0..1_000u64 {
            let digest = xxhash_rust::xxh3::xxh3_128(&n.to_le_bytes());
            halves.insert((digest as u64, (digest >> 64) as u64), n as u32);
            whole.insert(digest, n as u32);
        }
        for n in 0..1_000u64 {
            let digest = xxhash_rust::xxh3::xxh3_128(&n.to_le_bytes());
            assert_eq!(halves[&(digest as u64, (digest >> 64) as u64)], n as u32);
            assert_eq!(whole[&digest], n as u32);
        }
    }
}
