//! A JSON object read once into (key, raw value) pairs, so each shape can pick
//! the fields it maps to columns and keep every other field as it was sent.

use std::borrow::Cow;
use std::fmt;

use serde::de::{Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;

use super::checked::Member;
use super::scan::check_json;

/// The top-level fields of one JSON object, values left unparsed (each
/// value's JSON text).
#[derive(Debug, Clone)]
pub struct Fields<'a> {
    pairs: Vec<Member<'a>>,
    /// The members of the object under [`SPLIT_KEY`], when the pass that
    /// read these fields split it too ([`Fields::inner`]).
    split: Option<Box<Fields<'a>>>,
}

/// The key whose object the one pass of [`Fields::read`] splits as well:
/// the collect envelope's `properties` (`eventName` and the payload).
const SPLIT_KEY: &str = "properties";

impl<'a> Fields<'a> {
    /// Reads `text`, one JSON object, checked against JSON's grammar and
    /// tripwire's rules ([`check_json`] with `limit` levels) in one pass.
    /// Text that pass refuses is read again by the scan and serde_json,
    /// whose words the error keeps.
    pub fn read(text: &'a str, limit: usize) -> Result<Fields<'a>, String> {
        match Fields::checked(text, limit) {
            Some(fields) => Ok(fields),
            None => check_json(text, limit).and_then(|()| Fields::parse(text)),
        }
    }

    /// The members a checked pass read (see [`super::checked`]).
    pub fn of_members(pairs: Vec<Member<'a>>) -> Fields<'a> {
        Fields { pairs, split: None }
    }

    /// The one pass of [`Fields::read`] alone (splitting [`SPLIT_KEY`]'s
    /// object too): `None` when it refuses the text (for a caller with its
    /// own words for why).
    pub fn checked(text: &'a str, limit: usize) -> Option<Fields<'a>> {
        super::checked::object_and_members(text, limit, SPLIT_KEY).map(|(pairs, split)| Fields {
            pairs,
            split: split.map(|members| Box::new(Fields::of_members(members))),
        })
    }

    /// Reads `text` as one JSON object (its syntax only: see [`Fields::read`]).
    pub fn parse(text: &'a str) -> Result<Fields<'a>, String> {
        let mut de = serde_json::Deserializer::from_str(text);
        let fields = de
            .deserialize_map(FieldsVisitor)
            .map_err(|e| describe_json_error(&e))?;
        de.end().map_err(|e| describe_json_error(&e))?;
        Ok(fields)
    }

    /// Reads `text`, a JSON object taken out of one already read (a value
    /// of [`Fields::object`]), without checking its syntax again: one scan
    /// for where each member starts and ends. Text that does not split as
    /// expected is read by [`Fields::parse`].
    pub fn of_checked(text: &'a str) -> Result<Fields<'a>, String> {
        match super::members::members(text) {
            Some(pairs) => Ok(Fields { pairs, split: None }),
            None => Fields::parse(text),
        }
    }

    /// Every member, in the order sent.
    pub fn pairs(&self) -> &[Member<'a>] {
        &self.pairs
    }

    /// The JSON text of `key`'s value (the last one if repeated); JSON
    /// `null` counts as absent.
    pub fn raw(&self, key: &str) -> Option<&'a str> {
        self.pairs
            .iter()
            .rev()
            .find(|(k, _)| same_key(k, key))
            .map(|(_, v)| *v)
            .filter(|v| *v != "null")
    }

    pub fn has(&self, key: &str) -> bool {
        self.pairs.iter().any(|(k, _)| same_key(k, key))
    }

    /// Adds `key` with the JSON text `value` unless the object has the key
    /// (even as null).
    pub fn or_insert(&mut self, key: &'a str, value: &'a str) {
        if !self.has(key) {
            self.pairs.push((Cow::Borrowed(key), value));
        }
    }

    /// A string field; numbers are accepted as their text (ids are often numeric).
    pub fn str(&self, key: &str) -> Result<Option<Cow<'a, str>>, String> {
        self.raw(key).map(|raw| string_of(raw, key)).transpose()
    }

    /// A field that must be an object, kept as its JSON text.
    pub fn object(&self, key: &str) -> Result<Option<&'a str>, String> {
        match self.raw(key) {
            Some(raw) if raw.starts_with('{') => Ok(Some(raw)),
            Some(_) => Err(format!("{key} must be a JSON object")),
            None => Ok(None),
        }
    }

    /// A field that must be an object, as its fields: split already when
    /// the pass that read these fields split it (borrowed), else read now.
    pub fn inner(&self, key: &str) -> Result<Option<Cow<'_, Fields<'a>>>, String> {
        let Some(text) = self.object(key)? else {
            return Ok(None);
        };
        match (&self.split, key == SPLIT_KEY) {
            (Some(split), true) => Ok(Some(Cow::Borrowed(split))),
            _ => Fields::of_checked(text).map(|fields| Some(Cow::Owned(fields))),
        }
    }

    pub fn bool(&self, key: &str) -> Result<Option<bool>, String> {
        match self.raw(key) {
            Some("true") => Ok(Some(true)),
            Some("false") => Ok(Some(false)),
            Some(_) => Err(format!("{key} must be true or false")),
            None => Ok(None),
        }
    }

    /// A JSON object of every field whose key is not in `mapped`, or `None`
    /// when nothing is left over.
    pub fn rest(&self, mapped: &[&str]) -> Option<String> {
        // Room for every member with its quotes, colon and comma: one
        // allocation, without comparing the keys twice (once to size it).
        let room: usize = self.pairs.iter().map(|(k, v)| k.len() + v.len() + 4).sum();
        let mut out = String::with_capacity(room + 1);
        let kept = self
            .pairs
            .iter()
            .filter(|(key, _)| !mapped.iter().any(|m| same_key(key, m)));
        for (key, value) in kept {
            out.push(if out.is_empty() { '{' } else { ',' });
            match key {
                // As sent, and it had no escapes: it needs none.
                Cow::Borrowed(key) => {
                    out.push('"');
                    out.push_str(key);
                    out.push('"');
                }
                Cow::Owned(key) => {
                    out.push_str(&serde_json::to_string(key).unwrap_or_default());
                }
            }
            out.push(':');
            out.push_str(value);
        }
        if out.is_empty() {
            return None;
        }
        out.push('}');
        Some(out)
    }
}

/// Whether two keys are equal. Keys are short: up to 16 bytes they are
/// compared as two (overlapping) words each, without a call to `memcmp`,
/// which cost more than the rest of a lookup (a lookup compares its key
/// with every member's until one matches).
fn same_key(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let n = a.len();
    let word = |s: &[u8], at: usize| u64::from_le_bytes(s[at..at + 8].try_into().unwrap_or([0; 8]));
    let half = |s: &[u8], at: usize| u32::from_le_bytes(s[at..at + 4].try_into().unwrap_or([0; 4]));
    match n {
        0..4 => a == b,
        4..8 => half(a, 0) == half(b, 0) && half(a, n - 4) == half(b, n - 4),
        8..=16 => word(a, 0) == word(b, 0) && word(a, n - 8) == word(b, n - 8),
        _ => a == b,
    }
}

/// A JSON string value, borrowed when it has no escapes; numbers as text.
fn string_of<'a>(text: &'a str, key: &str) -> Result<Cow<'a, str>, String> {
    match text.as_bytes().first() {
        // A byte loop: these strings are short, and `str::contains` sets up
        // a `memchr` for each (0.8% of an import's CPU).
        Some(b'"') if !text.bytes().any(|b| b == b'\\') => {
            Ok(Cow::Borrowed(&text[1..text.len() - 1]))
        }
        Some(b'"') => serde_json::from_str::<String>(text)
            .map(Cow::Owned)
            .map_err(|e| format!("{key}: {e}")),
        Some(b'-' | b'0'..=b'9') => Ok(Cow::Borrowed(text)),
        _ => Err(format!("{key} must be a string")),
    }
}

/// serde_json's message without its line/column, which is always 1 for a line.
fn describe_json_error(e: &serde_json::Error) -> String {
    let text = e.to_string();
    let message = match text.rfind(" at line ") {
        Some(i) => &text[..i],
        None => &text,
    };
    match e.classify() {
        serde_json::error::Category::Data if message.starts_with("invalid type") => {
            format!("not a JSON object ({message})")
        }
        serde_json::error::Category::Eof => format!("truncated JSON ({message})"),
        _ => format!("invalid JSON: {message} at column {}", e.column()),
    }
}

struct FieldsVisitor;

impl<'de> Visitor<'de> for FieldsVisitor {
    type Value = Fields<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<Fields<'de>, M::Error> {
        let mut pairs = Vec::with_capacity(map.size_hint().unwrap_or(12));
        while let Some(Key(key)) = map.next_key::<Key<'de>>()? {
            let value: &'de RawValue = map.next_value()?;
            pairs.push((key, value.get()));
        }
        Ok(Fields { pairs, split: None })
    }
}

/// A key borrowed from the text when it has no escapes (serde's own
/// `Cow<str>` always allocates one).
struct Key<'de>(Cow<'de, str>);

impl<'de> serde::Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Key<'de>, D::Error> {
        deserializer.deserialize_str(KeyVisitor)
    }
}

struct KeyVisitor;

impl<'de> Visitor<'de> for KeyVisitor {
    type Value = Key<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string key")
    }

    fn visit_borrowed_str<E: serde::de::Error>(self, key: &'de str) -> Result<Key<'de>, E> {
        Ok(Key(Cow::Borrowed(key)))
    }

    fn visit_str<E: serde::de::Error>(self, key: &str) -> Result<Key<'de>, E> {
        Ok(Key(Cow::Owned(key.to_string())))
    }

    fn visit_string<E: serde::de::Error>(self, key: String) -> Result<Key<'de>, E> {
        Ok(Key(Cow::Owned(key)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_of_every_length_are_equal_only_byte_for_byte() {
        for n in 0..=20 {
            let key: String = (0..n).map(|i| (b'a' + i as u8) as char).collect();
            assert!(same_key(&key, &key.clone()), "{key}");
            assert!(!same_key(&key, &format!("{key}x")), "{key}");
            for at in 0..n {
                let mut other = key.clone().into_bytes();
                other[at] = b'_';
                let other = String::from_utf8(other).unwrap();
                assert!(!same_key(&key, &other), "{key} vs {other}");
            }
        }
    }

    #[test]
    fn picks_fields_and_keeps_the_rest() {
        let f = Fields::parse(r#"{"a":"x","n":12,"o":{"k":[1,2]},"z":null,"e":"q\"t"}"#).unwrap();
        assert_eq!(f.str("a").unwrap().as_deref(), Some("x"));
        assert_eq!(f.str("n").unwrap().as_deref(), Some("12"));
        assert_eq!(f.str("e").unwrap().as_deref(), Some("q\"t"));
        assert_eq!(f.object("o").unwrap(), Some(r#"{"k":[1,2]}"#));
        assert!(f.raw("z").is_none());
        assert_eq!(
            f.rest(&["a", "n", "e"]).as_deref(),
            Some(r#"{"o":{"k":[1,2]},"z":null}"#)
        );
        assert!(f.object("a").is_err());
        assert!(f.str("o").is_err());
    }

    #[test]
    fn keys_are_borrowed_unless_escaped() {
        let f = Fields::parse(r#"{"plain":1,"esc\u0061ped":2}"#).unwrap();
        assert!(matches!(f.pairs[0].0, Cow::Borrowed("plain")));
        assert!(matches!(&f.pairs[1].0, Cow::Owned(k) if k == "escaped"));
        assert_eq!(f.str("escaped").unwrap().as_deref(), Some("2"));
    }

    #[test]
    fn errors_say_what_is_wrong() {
        assert!(
            Fields::parse("[1]")
                .unwrap_err()
                .contains("not a JSON object")
        );
        assert!(Fields::parse(r#"{"a":"#).unwrap_err().contains("truncated"));
        assert!(
            Fields::parse(r#"{"a" 1}"#)
                .unwrap_err()
                .contains("invalid JSON")
        );
        assert!(Fields::parse(r#"{"a":1} x"#).is_err());
    }
}
