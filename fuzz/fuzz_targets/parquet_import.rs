//! Any bytes as a Parquet file to import: never a panic (a malformed file
//! is an error), and whatever imports lands in valid batches with its times
//! in range and rows numbered in order.
//!
//! The parquet and arrow crates still panic on some malformed pages (e.g.
//! definition levels past their buffer); `read_parquet` catches those and
//! refuses the file, as `tripwire import` does. libFuzzer's panic hook
//! aborts on every panic, so the init below lets a panic raised while the
//! parquet crate is on the stack unwind to that catch; any other panic
//! (tripwire's own code, these assertions) still aborts and is reported.
#![no_main]

use arrow::array::AsArray;
use arrow::datatypes::TimestampMicrosecondType;
use libfuzzer_sys::fuzz_target;
use tripwire_fuzz::event::{MAX_TIME_MICROS, MIN_TIME_MICROS};
use tripwire_fuzz::import::source::read_parquet;
use tripwire_fuzz::shop_parser;

/// Whether the panicking call went into the parquet crate (a frame of its
/// source on the stack): not a callback of tripwire's, which has none.
fn upstream() -> bool {
    std::backtrace::Backtrace::force_capture()
        .to_string()
        .contains("/parquet-")
}

fuzz_target!(
    init: {
        let abort = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !upstream() {
                abort(info);
            }
        }));
    },
    |data: &[u8]| {
        let parser = shop_parser(1 << 20);
        let mut after = 0u64;
        let bytes = bytes::Bytes::copy_from_slice(data);
        let _ = read_parquet(bytes, data.len() as u64, &parser, |chunk| {
            assert!(chunk.first_line > after);
            for rejected in &chunk.rejected {
                assert!((chunk.first_line..=chunk.last_line).contains(&rejected.line));
            }
            for builder in chunk.events.into_values() {
                let batch = builder.finish(0);
                let sent_at = batch.column(7).as_primitive::<TimestampMicrosecondType>();
                for row in 0..sent_at.len() {
                    let time = sent_at.value(row);
                    assert!(
                        time == 1_700_000_000_000_000
                            || (MIN_TIME_MICROS..MAX_TIME_MICROS).contains(&time)
                    );
                }
            }
            after = chunk.last_line.max(after);
            true
        });
    }
);
