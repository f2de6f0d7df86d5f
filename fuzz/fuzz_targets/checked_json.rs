//! Any bytes as a JSON object: the one checked pass (`event::checked`)
//! accepts exactly what the depth scan and serde_json together accept, with
//! the same members; an accepted object put in a batch body is split out in
//! the body's pass as it reads alone. Never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tripwire_fuzz::event::checked::{Member, object, object_and_items};
use tripwire_fuzz::event::fields::Fields;
use tripwire_fuzz::event::scan::{MAX_JSON_DEPTH, check_json};

fn owned(members: &[Member<'_>]) -> Vec<(String, String)> {
    members
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let two_pass = check_json(text, MAX_JSON_DEPTH)
        .and_then(|()| Fields::parse(text))
        .ok()
        .map(|fields| owned(fields.pairs()));
    let one_pass = object(text, MAX_JSON_DEPTH).map(|members| owned(&members));
    assert_eq!(one_pass, two_pass, "{text}");

    // An accepted event inside a batch body: split out in the body's pass
    // as it reads alone.
    if let Some(members) = one_pass {
        let body = format!(r#"{{"batch":[{text},1]}}"#);
        let (_, items) = object_and_items(&body, MAX_JSON_DEPTH + 2, "batch").expect("a batch");
        let items = items.expect("the batch's items");
        let blank = |c: char| matches!(c, ' ' | '\t' | '\n' | '\r');
        assert_eq!(items.len(), 2, "{text}");
        assert_eq!(items[0].0, text.trim_matches(blank), "{text}");
        assert_eq!(items[0].1.as_deref().map(owned), Some(members), "{text}");
        assert_eq!(items[1], ("1", None), "{text}");
    }
});
