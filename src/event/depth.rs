//! How deeply a JSON text nests, found by one scan of its bytes, before any
//! parser recurses into it: every endpoint and every import line is held to
//! the same [`MAX_JSON_DEPTH`].

/// The deepest nesting of objects and arrays an event may have, the event
/// object itself counting as level 1. serde_json refuses 128 levels when it
/// builds values, so whatever is stored can always be read back.
pub const MAX_JSON_DEPTH: usize = 64;

/// The deepest nesting in `text`, counting `{` and `[` outside strings, and
/// stopping as soon as it exceeds `limit` (so a hostile input costs no more
/// than a scan of its bytes). The text need not be valid JSON.
pub fn nesting_depth(text: &[u8], limit: usize) -> usize {
    let mut depth = 0usize;
    let mut deepest = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for &byte in text {
        if in_string {
            match (escaped, byte) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'{' | b'[' => {
                depth += 1;
                deepest = deepest.max(depth);
                if deepest > limit {
                    return deepest;
                }
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

/// Refuses `text` when it nests deeper than `limit` levels.
pub fn check_depth(text: &str, limit: usize) -> Result<(), String> {
    match nesting_depth(text.as_bytes(), limit) {
        depth if depth > limit => Err(format!(
            "the JSON nests deeper than {limit} levels of objects and arrays"
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depth_counts_brackets_outside_strings() {
        assert_eq!(nesting_depth(b"{}", 10), 1);
        assert_eq!(nesting_depth(br#"{"a":[{"b":1}],"c":{}}"#, 10), 3);
        assert_eq!(nesting_depth(br#"{"a":"[[[{{{"}"#, 10), 1);
        assert_eq!(nesting_depth(br#"{"a":"\"[[["}"#, 10), 1);
        assert_eq!(nesting_depth(br#"{"a":"\\"}"#, 10), 1);
        assert_eq!(nesting_depth(b"1", 10), 0);
    }

    #[test]
    fn deep_input_is_refused_without_reading_it_all() {
        let deep = format!("{}{}", "[".repeat(16_000), "]".repeat(16_000));
        assert_eq!(nesting_depth(deep.as_bytes(), 64), 65);
        let err = check_depth(&deep, MAX_JSON_DEPTH).unwrap_err();
        assert!(err.contains("deeper than 64"), "{err}");
        let ok = format!("{}{}", "[".repeat(64), "]".repeat(64));
        assert!(check_depth(&ok, MAX_JSON_DEPTH).is_ok());
    }
}
