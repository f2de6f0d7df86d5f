//! The write-ahead log's on-disk format: record framing with a CRC32, and the
//! names of the files in its directory. Pure: no I/O here.

use std::path::{Path, PathBuf};

use super::error::WalError;

/// The largest record accepted; docs/reference.md "Limits" caps a whole request at 4 MB.
pub const MAX_RECORD_BYTES: usize = 16 << 20;
/// Bytes in front of each payload: its length and its CRC32.
pub(super) const HEADER_BYTES: usize = 8;
const SEGMENT_EXTENSION: &str = "wal";
/// Digits of a segment's file name, so names sort like numbers.
const SEGMENT_DIGITS: usize = 20;
pub(super) const NODE_ID_FILE: &str = "node-id";
pub(super) const COUNTER_FILE: &str = "segment-counter";
pub(super) const LOCK_FILE: &str = "lock";
/// A file being replaced is written under its name plus this extension first.
pub(super) const TMP_EXTENSION: &str = "tmp";

/// Appends `record` framed as length, CRC32, payload.
pub(super) fn encode(record: &[u8], out: &mut Vec<u8>) {
    // Fits: `check_records` allows at most MAX_RECORD_BYTES.
    out.extend_from_slice(&(record.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(record).to_le_bytes());
    out.extend_from_slice(record);
}

/// The payload of the whole, intact record at `at` and where the next one
/// starts; `None` at the end, a torn record, a bad checksum or a zero length
/// (a zero-filled tail is not a run of empty records).
fn record_at(bytes: &[u8], at: usize) -> Option<(&[u8], usize)> {
    let header = bytes.get(at..at.checked_add(HEADER_BYTES)?)?;
    let (length, crc) = header.split_at(4);
    let length = u32::from_le_bytes(length.try_into().ok()?) as usize;
    let crc = u32::from_le_bytes(crc.try_into().ok()?);
    if length == 0 || length > MAX_RECORD_BYTES {
        return None;
    }
    let start = at + HEADER_BYTES;
    let payload = bytes.get(start..start + length)?;
    (crc32fast::hash(payload) == crc).then_some((payload, start + length))
}

/// Every whole record from the start, and how many bytes they span.
pub(super) fn decode(bytes: &[u8]) -> (Vec<&[u8]>, usize) {
    let mut records = Vec::new();
    let mut at = 0;
    while let Some((payload, next)) = record_at(bytes, at) {
        records.push(payload);
        at = next;
    }
    (records, at)
}

/// Checks every record's size; returns the bytes they take framed.
pub(super) fn check_records(records: &[Vec<u8>]) -> Result<usize, WalError> {
    records.iter().try_fold(0, |total, record| {
        if record.is_empty() || record.len() > MAX_RECORD_BYTES {
            return Err(WalError::Record(record.len()));
        }
        Ok(total + HEADER_BYTES + record.len())
    })
}

pub(super) fn segment_path(dir: &Path, number: u64) -> PathBuf {
    dir.join(format!(
        "{number:0width$}.{SEGMENT_EXTENSION}",
        width = SEGMENT_DIGITS
    ))
}

/// The segment number a file name stands for, if it is a segment.
pub(super) fn segment_number(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(SEGMENT_EXTENSION)?.strip_suffix('.')?;
    let all_digits = digits.len() == SEGMENT_DIGITS && digits.bytes().all(|b| b.is_ascii_digit());
    all_digits.then(|| digits.parse().ok()).flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decoding_stops_at_a_bad_checksum_or_zeros() {
        let mut bytes = Vec::new();
        for record in ["first", "second", "third"] {
            encode(record.as_bytes(), &mut bytes);
        }
        let (all, end) = decode(&bytes);
        assert_eq!(all, ["first", "second", "third"].map(str::as_bytes));
        assert_eq!(end, bytes.len());
        let mut zeros = bytes.clone();
        zeros.extend_from_slice(&[0; 64]);
        assert_eq!(decode(&zeros).1, bytes.len());
        let second_payload = 8 + 5 + 8;
        bytes[second_payload] ^= 1;
        assert_eq!(decode(&bytes), (vec![&b"first"[..]], 8 + 5));
    }

    #[test]
    fn segment_names_sort_like_their_numbers_and_read_back() {
        let dir = Path::new("wal");
        let path = segment_path(dir, 42);
        assert_eq!(path, dir.join("00000000000000000042.wal"));
        let name = path.file_name().and_then(|n| n.to_str()).unwrap();
        assert_eq!(segment_number(name), Some(42));
        let max = segment_path(dir, u64::MAX);
        let name = max.file_name().and_then(|n| n.to_str()).unwrap();
        assert_eq!(segment_number(name), Some(u64::MAX));
        for other in ["42.wal", "00000000000000000042.tmp", "node-id", "lock"] {
            assert_eq!(segment_number(other), None, "{other}");
        }
    }

    #[test]
    fn record_sizes_are_checked_before_framing() {
        assert_eq!(
            check_records(&[b"ab".to_vec(), b"c".to_vec()]).ok(),
            Some(19)
        );
        assert!(matches!(
            check_records(&[Vec::new()]),
            Err(WalError::Record(0))
        ));
        let big = vec![vec![0; MAX_RECORD_BYTES + 1]];
        assert!(matches!(check_records(&big), Err(WalError::Record(_))));
    }
}
