//! A journal's records in memory: each name's latest record, found by a
//! digest of its name (xxh3-128, seeded per process: names are not
//! chosen by senders, and a seed keeps it so). One line's names and value
//! are one allocation shared by its records, so reading a batch of 10k
//! claims makes one, not 10k (a store that had just sent 500k deliveries
//! spent a third of a second of each process's start on them).

use std::hash::BuildHasher as _;
use std::sync::Arc;

use xxhash_rust::xxh3::xxh3_128_with_seed;

use crate::digest_map::DigestMap;

/// Each name's latest record.
pub(super) struct Records {
    seed: u64,
    latest: DigestMap<u128, Record>,
}

/// A name's latest record.
pub(super) struct Record {
    /// µs since the epoch.
    pub written: i64,
    /// The number of the segment it is in.
    pub segment: u64,
    line: Arc<Line>,
    /// Where its name is in the line's names.
    name: (u32, u32),
}

/// What the records of one line share.
struct Line {
    /// The names, separated by commas.
    names: Box<str>,
    value: Box<[u8]>,
}

impl Record {
    pub fn name(&self) -> &str {
        &self.line.names[self.name.0 as usize..self.name.1 as usize]
    }

    pub fn value(&self) -> &[u8] {
        &self.line.value
    }
}

impl Default for Records {
    fn default() -> Records {
        Records {
            seed: std::collections::hash_map::RandomState::new().hash_one(0u64),
            latest: DigestMap::default(),
        }
    }
}

impl Records {
    fn key(&self, name: &str) -> u128 {
        xxh3_128_with_seed(name.as_bytes(), self.seed)
    }

    pub fn contains(&self, name: &str) -> bool {
        self.latest.contains_key(&self.key(name))
    }

    pub fn get(&self, name: &str) -> Option<&Record> {
        self.latest.get(&self.key(name))
    }

    pub fn get_mut(&mut self, name: &str) -> Option<&mut Record> {
        let key = self.key(name);
        self.latest.get_mut(&key)
    }

    /// Puts the records of one line written at `written` in `segment`:
    /// each of `names` (separated by commas; empty ones skipped) holding
    /// `value`, replacing any earlier record of the name.
    pub fn put_line(&mut self, written: i64, names: &str, value: &[u8], segment: u64) {
        if u32::try_from(names.len()).is_err() {
            return; // refused before it is written (`Journal::append`)
        }
        let line = Arc::new(Line {
            names: names.into(),
            value: value.into(),
        });
        let mut start = 0;
        for name in names.split(',') {
            let end = start + name.len();
            if !name.is_empty() {
                let record = Record {
                    written,
                    segment,
                    line: line.clone(),
                    name: (start as u32, end as u32),
                };
                self.latest.insert(self.key(name), record);
            }
            start = end + 1;
        }
    }

    /// Removes `name`'s record if `which` says so: whether it did.
    pub fn remove_if(&mut self, name: &str, which: impl Fn(&Record) -> bool) -> bool {
        let key = self.key(name);
        match self.latest.get(&key) {
            Some(record) if which(record) => self.latest.remove(&key).is_some(),
            _ => false,
        }
    }

    /// Makes room for `more` records.
    pub fn reserve(&mut self, more: usize) {
        self.latest.reserve(more);
    }

    pub fn values(&self) -> impl Iterator<Item = &Record> {
        self.latest.values()
    }

    pub fn clear(&mut self) {
        self.latest.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lines_names_share_its_value_and_a_later_line_replaces_a_name() {
        let mut records = Records::default();
        records.put_line(1, "a,,b,c", b"v1", 7);
        records.put_line(2, "c", b"v2", 8);
        let a = records.get("a").unwrap();
        assert_eq!(
            (a.name(), a.value(), a.written, a.segment),
            ("a", &b"v1"[..], 1, 7)
        );
        assert_eq!(records.get("b").unwrap().name(), "b");
        let c = records.get("c").unwrap();
        assert_eq!((c.value(), c.written, c.segment), (&b"v2"[..], 2, 8));
        assert!(!records.contains(""), "empty names are skipped");
        assert!(!records.contains("a,"));
        assert_eq!(records.values().count(), 3);
        assert!(records.remove_if("b", |r| r.written == 1));
        assert!(
            !records.remove_if("a", |r| r.written == 2),
            "not the one asked for"
        );
        assert!(!records.remove_if("b", |_| true), "gone already");
        assert!(!records.contains("b") && records.contains("a"));
    }
}
