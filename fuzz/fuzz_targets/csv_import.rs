//! Any bytes as a CSV file to import: never a panic; chunks cover the file's
//! lines in order, every event lands in a valid batch with its time in
//! range, and every bad row is reported at a line of its chunk.
#![no_main]

use std::sync::atomic::AtomicU64;

use arrow::array::AsArray;
use arrow::datatypes::TimestampMicrosecondType;
use libfuzzer_sys::fuzz_target;
use tripwire_fuzz::event::{MAX_TIME_MICROS, MIN_TIME_MICROS};
use tripwire_fuzz::import::chunk::ParsedChunk;
use tripwire_fuzz::import::source::read_csv_chunks;
use tripwire_fuzz::shop_parser;

/// Checks one chunk; `after` is the last line of the chunk before it.
pub fn check_chunk(chunk: ParsedChunk, after: &mut u64) {
    assert!(
        chunk.first_line > *after,
        "{} after {after}",
        chunk.first_line
    );
    for rejected in &chunk.rejected {
        assert!((chunk.first_line..=chunk.last_line).contains(&rejected.line));
    }
    for builder in chunk.events.into_values() {
        for line in builder.lines() {
            assert!((chunk.first_line..=chunk.last_line).contains(line));
        }
        let batch = builder.finish(0);
        let sent_at = batch.column(7).as_primitive::<TimestampMicrosecondType>();
        for row in 0..sent_at.len() {
            let time = sent_at.value(row);
            assert!(
                time == 1_700_000_000_000_000 || (MIN_TIME_MICROS..MAX_TIME_MICROS).contains(&time)
            );
        }
    }
    *after = chunk.last_line.max(*after);
}

fuzz_target!(|data: &[u8]| {
    let parser = shop_parser(1 << 20);
    let mut after = 0;
    let _ = read_csv_chunks(data, &AtomicU64::new(0), &parser, |chunk| {
        check_chunk(chunk, &mut after);
        true
    });
});
