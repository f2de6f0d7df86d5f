//! Any bytes as an NDJSON file, with a small `max_line_bytes` and tiny
//! chunks: the line cutter never panics, numbers every line of the file
//! exactly once (kept in a chunk, or refused), and parsing its chunks never
//! panics either.
#![no_main]

use std::sync::atomic::AtomicU64;

use libfuzzer_sys::fuzz_target;
use tripwire_fuzz::import::lines::read_ndjson_chunks;
use tripwire_fuzz::shop_parser;

fuzz_target!(|input: (u8, &[u8])| {
    let (limit, data) = input;
    let max_line = usize::from(limit) + 1;
    let parser = shop_parser(max_line);
    let mut next = 1u64;
    read_ndjson_chunks(data, &AtomicU64::new(0), max_line, |raw| {
        assert_eq!(raw.first_line, next);
        assert!(raw.data.is_empty() || raw.data.ends_with(b"\n"));
        let lines = raw.data.iter().filter(|b| **b == b'\n').count() as u64;
        if let Some(refused) = &raw.refused {
            assert_eq!(refused.line, next + lines);
        }
        next += lines + u64::from(raw.refused.is_some());
        let parsed = parser.parse_ndjson(raw);
        assert!(parsed.last_line < next);
        true
    })
    .expect("reading a slice never fails");
    let newlines = data.iter().filter(|b| **b == b'\n').count() as u64;
    let unterminated = u64::from(data.last().is_some_and(|b| *b != b'\n'));
    assert_eq!(
        next - 1,
        newlines + unterminated,
        "every line numbered once"
    );
});
