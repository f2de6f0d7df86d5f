//! Any directory of files (segments, counter, node id, leftovers) on an
//! in-memory disk, opened as the write-ahead log: recovery never panics;
//! when it opens, each segment keeps exactly its whole records, empty ones
//! are gone, and the next segment gets a number above every one in use.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use tripwire_fuzz::ingest::wal::fuzzing::{decode_records, recover};

#[derive(Arbitrary, Debug)]
enum Name {
    Segment(u16),
    Counter,
    NodeId,
    Temporary,
    Other(u8),
}

impl Name {
    fn file(&self) -> String {
        match self {
            Name::Segment(n) => format!("{:020}.wal", n),
            Name::Counter => "segment-counter".into(),
            Name::NodeId => "node-id".into(),
            Name::Temporary => "segment-counter.tmp".into(),
            Name::Other(n) => format!("x{n}"),
        }
    }
}

#[derive(Arbitrary, Debug)]
struct Directory {
    files: Vec<(Name, Vec<u8>)>,
    record: Option<Vec<u8>>,
}

fuzz_target!(|dir: Directory| {
    // Later files of the same name replace earlier ones, as on a disk.
    let mut files: std::collections::BTreeMap<String, Vec<u8>> = Default::default();
    for (name, contents) in &dir.files {
        files.insert(name.file(), contents.clone());
    }
    let laid_out: Vec<(String, Vec<u8>)> = files.clone().into_iter().collect();
    let record = dir.record.as_deref().filter(|r| !r.is_empty());
    let Ok(recovered) = recover(&laid_out, record) else {
        return;
    };
    let mut highest = 0u64;
    for (number, records) in &recovered.segments {
        let original = &files[&format!("{number:020}.wal")];
        let whole = decode_records(original).0;
        assert!(!whole.is_empty(), "an empty segment {number} was kept");
        assert_eq!(records, &whole, "segment {number}");
        highest = highest.max(*number);
    }
    if let Some(counter) = files.get("segment-counter")
        && let Some(n) = std::str::from_utf8(counter)
            .ok()
            .and_then(|t| t.trim().parse::<u64>().ok())
    {
        highest = highest.max(n);
    }
    if record.is_some() {
        let appended = recovered
            .appended_to
            .expect("the appended record was sealed");
        assert!(
            appended > highest,
            "segment {appended} reused a number <= {highest}"
        );
    }
});
