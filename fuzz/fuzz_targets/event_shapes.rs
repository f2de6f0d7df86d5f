//! Any bytes as one event in any of the three JSON shapes: never a panic;
//! an accepted event has a time in range, a name if it is a track, JSON
//! objects that read back, and survives the WAL's record encoding.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use tripwire_fuzz::event::scan::{MAX_JSON_DEPTH, nesting_depth};
use tripwire_fuzz::event::shapes::parse_event;
use tripwire_fuzz::event::{EventKind, MAX_TIME_MICROS, MIN_TIME_MICROS};
use tripwire_fuzz::ingest::record::{StoredEvent, WalRecord};

fuzz_target!(|data: &[u8]| {
    let _ = nesting_depth(data, MAX_JSON_DEPTH);
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(event) = parse_event(text) else {
        return;
    };
    if let Some(time) = event.sent_at {
        assert!((MIN_TIME_MICROS..MAX_TIME_MICROS).contains(&time), "{time}");
    }
    if event.kind == EventKind::Track {
        assert!(event.event_name.as_deref().is_some_and(|n| !n.is_empty()));
    }
    let objects = [&event.properties, &event.traits];
    for object in objects.into_iter().flatten() {
        let value: Value = serde_json::from_str(object).expect("an object that reads back");
        assert!(value.is_object());
    }
    if let Some(envelope) = &event.envelope {
        let value: Value = serde_json::from_str(envelope).expect("an envelope that reads back");
        assert!(value.is_object());
    }
    let record = WalRecord::Event(StoredEvent::new("shop", &event, 0));
    let bytes = record.encode();
    let back = WalRecord::decode(&bytes).expect("a record reads back");
    assert_eq!(back, record);
});
