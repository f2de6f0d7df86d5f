//! API keys held as SHA-256 digests and compared in constant time: the
//! digest makes every comparison the same length (a plain constant-time
//! compare still stops early when the lengths differ, which tells a prober
//! the key's length), and `subtle` keeps the compare itself branch-free.

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// A SHA-256 digest of one key.
type KeyDigest = [u8; 32];

/// The valid values of one kind of key (e.g. a workspace's write keys);
/// several during a rotation. Its `Debug` prints only how many.
#[derive(Clone, Default)]
pub struct KeySet {
    digests: Vec<KeyDigest>,
}

impl KeySet {
    /// The set of `keys` (already resolved values).
    pub fn new<K: AsRef<str>>(keys: impl IntoIterator<Item = K>) -> KeySet {
        KeySet {
            digests: keys.into_iter().map(|k| digest(k.as_ref())).collect(),
        }
    }

    /// No key is valid: the kind of key is not configured.
    pub fn is_empty(&self) -> bool {
        self.digests.is_empty()
    }

    /// Whether `key` is one of the set. Every entry is compared, so the time
    /// taken says nothing about which entry, if any, matched.
    pub fn contains(&self, key: &str) -> bool {
        let sent = digest(key);
        self.digests
            .iter()
            .fold(subtle::Choice::from(0), |found, d| found | d.ct_eq(&sent))
            .into()
    }
}

impl std::fmt::Debug for KeySet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "KeySet({} keys)", self.digests.len())
    }
}

fn digest(key: &str) -> KeyDigest {
    Sha256::digest(key.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_entry_is_valid_and_nothing_else() {
        let keys = KeySet::new(["old-key", "new-key"]);
        assert!(keys.contains("old-key") && keys.contains("new-key"));
        assert!(!keys.contains("new-ke") && !keys.contains("new-key2") && !keys.contains(""));
        assert!(!KeySet::new(Vec::<String>::new()).contains(""));
        assert!(KeySet::default().is_empty());
        assert!(!format!("{keys:?}").contains("key\""));
    }
}
