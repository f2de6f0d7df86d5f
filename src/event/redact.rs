//! Secrets taken out of rejected input before it is kept anywhere (the WAL,
//! the quarantine table): the fields `partnerSecret`, `writeKey` and
//! `Authorization`, matched without regard to case, at any depth. Input
//! that is not JSON (a cut-off line, say) has the value after each such
//! field name blanked as text, or everything after the name cut when the
//! value cannot be told.

/// Field names that carry credentials, lower-cased.
const SECRET_FIELDS: &[&str] = &["partnersecret", "writekey", "authorization"];

/// What a secret's value is replaced with in text that is not JSON.
pub const REDACTED: &str = "[redacted]";

fn is_secret_field(name: &str) -> bool {
    SECRET_FIELDS.iter().any(|f| name.eq_ignore_ascii_case(f))
}

/// `raw` without its secrets (unchanged when it holds none).
pub fn without_secrets(raw: &str) -> String {
    if !SECRET_FIELDS
        .iter()
        .any(|f| raw.to_ascii_lowercase().contains(f))
    {
        return raw.to_string();
    }
    match serde_json::from_str::<serde_json::Value>(raw) {
        Ok(mut value) => {
            remove_secret_fields(&mut value);
            value.to_string()
        }
        Err(_) => blank_secret_values(raw),
    }
}

fn remove_secret_fields(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Object(object) => {
            object.retain(|name, _| !is_secret_field(name));
            object.values_mut().for_each(remove_secret_fields);
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(remove_secret_fields),
        _ => {}
    }
}

/// Text redaction: after each secret field name, a quoted value is
/// replaced by [`REDACTED`]; anything else after the name is cut.
fn blank_secret_values(raw: &str) -> String {
    let lower = raw.to_ascii_lowercase();
    let mut out = String::with_capacity(raw.len());
    let mut at = 0;
    while let Some(end) = next_secret_name(&lower, at) {
        out.push_str(&raw[at..end]);
        match quoted_value(raw, end) {
            Some((open, close)) => {
                out.push_str(&raw[end..=open]);
                out.push_str(REDACTED);
                at = close;
            }
            None => {
                out.push_str(&format!(" {REDACTED}"));
                return out;
            }
        }
    }
    out.push_str(&raw[at..]);
    out
}

/// Where the next secret field name at or after `from` ends.
fn next_secret_name(lower: &str, from: usize) -> Option<usize> {
    SECRET_FIELDS
        .iter()
        .filter_map(|f| {
            lower[from..]
                .find(f)
                .map(|i| (from + i, from + i + f.len()))
        })
        .min()
        .map(|(_, end)| end)
}

/// After a field name ending at `from`: `"` `:` `"value"` (whitespace
/// allowed). Returns the index of the value's opening quote and of its
/// closing quote.
fn quoted_value(raw: &str, from: usize) -> Option<(usize, usize)> {
    let bytes = raw.as_bytes();
    let mut i = from;
    let skip = |i: &mut usize, pred: fn(u8) -> bool| {
        while *i < bytes.len() && pred(bytes[*i]) {
            *i += 1;
        }
    };
    skip(&mut i, |b| b == b'"');
    skip(&mut i, |b| b.is_ascii_whitespace());
    if bytes.get(i) != Some(&b':') {
        return None;
    }
    i += 1;
    skip(&mut i, |b| b.is_ascii_whitespace());
    if bytes.get(i) != Some(&b'"') {
        return None;
    }
    let open = i;
    i += 1;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b'"' => return Some((open, i)),
            _ => i += 1,
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_fields_are_removed_from_json_at_any_depth() {
        let raw = r#"{"partnerId":"shop","partnerSecret":"s1","type":"nope",
                      "context":{"headers":{"Authorization":"Bearer s2"}},"WriteKey":"s3"}"#;
        let kept = without_secrets(raw);
        for secret in ["s1", "s2", "s3", "partnerSecret", "Authorization"] {
            assert!(!kept.contains(secret), "{secret} in {kept}");
        }
        assert!(kept.contains("nope") && kept.contains("shop"));
        assert_eq!(without_secrets("not json"), "not json");
        let clean = r#"{"a": 1}"#;
        assert_eq!(without_secrets(clean), clean, "unchanged, byte for byte");
    }

    #[test]
    fn text_that_is_not_json_has_its_secret_values_blanked() {
        let cut = r#"{"partnerId":"shop","partnerSecret" : "s3cr\"et","type":"#;
        let kept = without_secrets(cut);
        assert_eq!(
            kept,
            r#"{"partnerId":"shop","partnerSecret" : "[redacted]","type":"#
        );
        let unquoted = r#"{"writeKey": s3cret, "x"#;
        let kept = without_secrets(unquoted);
        assert!(!kept.contains("s3cret"), "{kept}");
        let open = r#"{"writeKey": "s3cr"#;
        assert_eq!(without_secrets(open), r#"{"writeKey [redacted]"#);
    }
}
