//! Any bytes as a WAL segment: the decoder never panics, and what it reads
//! is exactly a prefix of the bytes that re-encodes to itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tripwire_fuzz::ingest::wal::fuzzing::{decode_records, encode_record};

fuzz_target!(|data: &[u8]| {
    let (records, end) = decode_records(data);
    assert!(end <= data.len());
    let mut again = Vec::new();
    for record in &records {
        assert!(!record.is_empty());
        encode_record(record, &mut again);
    }
    assert_eq!(&again[..], &data[..end]);
    assert_eq!(decode_records(&data[..end]).0, records);
});
