//! The members of a JSON object whose syntax was already checked (a value
//! serde_json read as part of a larger text): where each key and value
//! starts and ends, found in one scan that jumps from quote to quote inside
//! strings and over nested values a block at a time (`structural`),
//! without checking the syntax a second time. The nested
//! properties of a collect envelope were read twice by serde_json before
//! (once in the envelope, once on their own): the most bytes of an event.
//! The JSON getters find a top-level key with the same scan
//! (`sql::json_member`).

use std::borrow::Cow;

use super::checked::string_stop;
use super::structural::nested_end;

/// Each member of the object `text` as (key, value's JSON text), keys
/// unescaped. `None` when the text is not an object as expected (the
/// caller then reads it with a checking parser).
pub fn members(text: &str) -> Option<Vec<(Cow<'_, str>, &str)>> {
    let bytes = text.as_bytes();
    let open = skip_blanks(bytes, 0);
    if bytes.get(open) != Some(&b'{') {
        return None;
    }
    let mut pairs = Pairs::after(text, open);
    let mut out = Vec::with_capacity(12);
    for pair in &mut pairs {
        let (key, value) = pair.ok()?;
        out.push((key_of(key)?, value));
    }
    whole(bytes, pairs.close()?).then_some(out)
}

/// The members of an object, one at a time, from the scan: each key's
/// token (quotes included) and its value's text. An `Err` ends them where
/// the text stops being an object; a member is given before what follows
/// it is looked at. [`members`] and the JSON getters (`sql::json_member`)
/// read objects with it.
pub(crate) struct Pairs<'a> {
    text: &'a str,
    at: usize,
    state: PairsState,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PairsState {
    /// A member starts at `at`.
    Next,
    /// The closing brace is at this position.
    Closed(usize),
    /// The text breaks off at `at`: an `Err` comes next.
    Breaks,
    /// The `Err` was given.
    Done,
}

/// Where the pairs stopped being an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Broken;

impl<'a> Pairs<'a> {
    /// The members of the object whose `{` is at `open` in `text`.
    pub(crate) fn after(text: &'a str, open: usize) -> Pairs<'a> {
        let at = skip_blanks(text.as_bytes(), open + 1);
        let state = match text.as_bytes().get(at) {
            Some(b'}') => PairsState::Closed(at),
            _ => PairsState::Next,
        };
        Pairs { text, at, state }
    }

    /// Where the closing brace is, once the members ended on it.
    pub(crate) fn close(&self) -> Option<usize> {
        match self.state {
            PairsState::Closed(at) => Some(at),
            _ => None,
        }
    }

    fn member(&mut self) -> Option<(&'a str, &'a str)> {
        let bytes = self.text.as_bytes();
        let key_end = string_end(bytes, self.at)?;
        let key = &self.text[self.at..key_end];
        let colon = skip_blanks(bytes, key_end);
        if bytes.get(colon) != Some(&b':') {
            return None;
        }
        let start = skip_blanks(bytes, colon + 1);
        let end = value_end(bytes, start)?;
        let after = skip_blanks(bytes, end);
        self.state = match bytes.get(after) {
            Some(b',') => {
                self.at = skip_blanks(bytes, after + 1);
                PairsState::Next
            }
            Some(b'}') => PairsState::Closed(after),
            _ => PairsState::Breaks,
        };
        Some((key, &self.text[start..end]))
    }
}

impl<'a> Iterator for Pairs<'a> {
    type Item = Result<(&'a str, &'a str), Broken>;

    fn next(&mut self) -> Option<Self::Item> {
        match self.state {
            PairsState::Next => Some(self.member().ok_or_else(|| {
                self.state = PairsState::Done;
                Broken
            })),
            PairsState::Breaks => {
                self.state = PairsState::Done;
                Some(Err(Broken))
            }
            PairsState::Closed(_) | PairsState::Done => None,
        }
    }
}

/// Whether only blanks follow the closing brace at `at`.
fn whole(bytes: &[u8], at: usize) -> bool {
    skip_blanks(bytes, at + 1) == bytes.len()
}

pub(crate) fn skip_blanks(bytes: &[u8], mut at: usize) -> usize {
    while matches!(bytes.get(at), Some(b' ' | b'\t' | b'\n' | b'\r')) {
        at += 1;
    }
    at
}

/// The key of the string token `token` (quotes included): borrowed unless
/// it has escapes.
pub(super) fn key_of(token: &str) -> Option<Cow<'_, str>> {
    let inside = &token[1..token.len() - 1];
    match inside.contains('\\') {
        false => Some(Cow::Borrowed(inside)),
        true => serde_json::from_str::<String>(token).ok().map(Cow::Owned),
    }
}

/// Where the string starting with the quote at `at` ends (after its
/// closing quote).
fn string_end(bytes: &[u8], at: usize) -> Option<usize> {
    if bytes.get(at) != Some(&b'"') {
        return None;
    }
    let mut i = at + 1;
    loop {
        // Checked text has no control characters in its strings.
        i = string_stop(bytes, i)?;
        match bytes[i] {
            b'\\' => i += 2,
            b'"' => return Some(i + 1),
            _ => return None,
        }
    }
}

/// Where the value starting at `at` ends.
fn value_end(bytes: &[u8], at: usize) -> Option<usize> {
    match bytes.get(at)? {
        b'"' => string_end(bytes, at),
        b'{' | b'[' => nested_end(bytes, at),
        _ => {
            let length = bytes[at..]
                .iter()
                .position(|b| matches!(b, b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r'))?;
            (length > 0).then_some(at + length)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::value::RawValue;

    /// What serde_json reads as the object's members.
    fn checked(text: &str) -> Vec<(String, String)> {
        let map: Vec<(String, Box<RawValue>)> =
            serde_json::from_str::<serde_members::Members>(text)
                .unwrap()
                .0;
        map.into_iter()
            .map(|(k, v)| (k, v.get().to_string()))
            .collect()
    }

    /// serde_json's own reading of an object's members, in order.
    mod serde_members {
        use serde::de::{Deserializer, MapAccess, Visitor};
        use serde_json::value::RawValue;

        pub struct Members(pub Vec<(String, Box<RawValue>)>);

        impl<'de> serde::Deserialize<'de> for Members {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Members, D::Error> {
                d.deserialize_map(MembersVisitor)
            }
        }

        struct MembersVisitor;

        impl<'de> Visitor<'de> for MembersVisitor {
            type Value = Members;

            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an object")
            }

            fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<Members, M::Error> {
                let mut pairs = Vec::new();
                while let Some((k, v)) = map.next_entry()? {
                    pairs.push((k, v));
                }
                Ok(Members(pairs))
            }
        }
    }

    fn ours(text: &str) -> Vec<(String, String)> {
        members(text)
            .unwrap_or_else(|| panic!("{text}"))
            .into_iter()
            .map(|(k, v)| (k.into_owned(), v.to_string()))
            .collect()
    }

    #[test]
    fn members_are_those_serde_json_reads() {
        for text in [
            r#"{}"#,
            r#" { } "#,
            r#"{"a":1}"#,
            r#"{"a" : -1.5e3 , "b":true,"c":null,"d":false}"#,
            r#"{"s":"x\"}{][,","t":"\\","u":"\\\""}"#,
            r#"{"o":{"k":[1,{"z":"]"},[]],"e":{}},"arr":[[[]],{"a":[{}]}]}"#,
            r#"{"esc\u0061ped":"v","ke\"y":{"x":"}"}}"#,
            "{\n\t\"a\":\r\n[1,\n2]\n}\n",
            r#"{"utm":{"source":"partner"},"cart":{"items":[{"sku":"S","qty":3,"price":115.13}],"value":964.05},"tags":[],"é":"ü"}"#,
            r#"{"a":1,"a":2}"#,
        ] {
            assert_eq!(ours(text), checked(text), "{text}");
        }
    }

    /// A value of depth up to `depth` from the generator state `seed`.
    fn random_value(seed: &mut u64, depth: u32) -> serde_json::Value {
        use serde_json::{Value, json};
        *seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let pick = (*seed >> 33) % if depth == 0 { 4 } else { 6 };
        let text = |seed: u64| {
            let pieces = ["a", "\"", "\\", "{", "]", ",", ":", "é", " ", "\n", "\u{1}"];
            (0..seed % 5)
                .map(|i| pieces[((seed >> (i * 4)) % pieces.len() as u64) as usize])
                .collect::<String>()
        };
        match pick {
            0 => Value::String(text(*seed >> 20)),
            1 => json!((*seed >> 40) as i64 - (1 << 23)),
            2 => json!(((*seed >> 30) as f64) / 7.0),
            3 => [Value::Null, Value::Bool(true), Value::Bool(false)][(*seed % 3) as usize].clone(),
            4 => Value::Array(
                (0..*seed % 4)
                    .map(|_| random_value(seed, depth - 1))
                    .collect(),
            ),
            _ => random_object(seed, depth - 1),
        }
    }

    fn random_object(seed: &mut u64, depth: u32) -> serde_json::Value {
        let size = *seed % 5;
        let members = (0..size).map(|i| {
            let key = format!("k{i}{}", ["", "\"", "{", "\\"][(*seed % 4) as usize]);
            (key, random_value(seed, depth))
        });
        serde_json::Value::Object(members.collect())
    }

    #[test]
    fn members_of_generated_objects_are_those_serde_json_reads() {
        let mut seed = 7;
        for _ in 0..2_000 {
            let object = random_object(&mut seed, 3);
            for text in [
                serde_json::to_string(&object).unwrap(),
                serde_json::to_string_pretty(&object).unwrap(),
            ] {
                assert_eq!(ours(&text), checked(&text), "{text}");
            }
        }
    }

    #[test]
    fn text_that_is_not_one_object_is_left_to_the_checking_parser() {
        for text in [
            "",
            "[1]",
            "{",
            r#"{"a":1"#,
            r#"{"a":1} x"#,
            r#"{"a" 1}"#,
            r#"{"a":}"#,
            r#"{"a":"unterminated}"#,
            r#"{"a":[1,2}"#,
            r#"{a:1}"#,
        ] {
            assert!(members(text).is_none(), "{text}");
        }
    }
}
