//! A JSON object read in one pass that checks all of it, against JSON's
//! grammar and against tripwire's own rules ([`super::scan`]: nesting
//! depth, lone surrogate escapes, numbers beyond a 64-bit float), and finds
//! where each top-level member starts and ends. Before, every event was
//! read twice (a scan for those rules, then serde_json for the grammar and
//! the members): together the largest cost of import and of the ingest
//! handlers.
//!
//! The pass only answers whether the text is a valid object: text it
//! refuses is read again by the scan and serde_json, which say why (so
//! every error message is as it was). Its tests hold it to exactly what
//! those two accept.

use std::borrow::Cow;

use super::members::{key_of, skip_blanks};

/// A member of an object: its key (unescaped) and its value's JSON text.
pub type Member<'a> = (Cow<'a, str>, &'a str);

/// The members of `text`, one JSON object (blanks around it allowed)
/// nesting at most `limit` levels, in order; `None` when the text is
/// anything else or breaks a rule.
pub fn object(text: &str, limit: usize) -> Option<Vec<Member<'_>>> {
    let mut members = Vec::with_capacity(12);
    Reader::whole(text, limit, b'{', |reader| {
        reader.members(Some(&mut members))
    })?;
    Some(members)
}

/// [`object`], with the object under `key` also split into its members in
/// the same pass: those of the last `key` (the value a lookup finds), or
/// `None` when that holds no object. A collect envelope's `properties` is
/// read so once, not scanned again for `eventName` and the rest.
pub fn object_and_members<'a>(
    text: &'a str,
    limit: usize,
    key: &str,
) -> Option<(Vec<Member<'a>>, Option<Vec<Member<'a>>>)> {
    let mut members = Vec::with_capacity(12);
    let mut inner = None;
    Reader::whole(text, limit, b'{', |reader| {
        reader.members_nesting(&mut members, key, &mut inner)
    })?;
    Some((members, inner))
}

/// An element of an array: its JSON text, and its members when it is an
/// object.
pub type Element<'a> = (&'a str, Option<Vec<Member<'a>>>);

/// [`object`], with the array under `key` also split into its elements,
/// each object among them into its members, in the same pass: a batch body
/// and its events are read once. The elements are `None` when `key` holds
/// no array (the last array, when `key` is repeated).
pub fn object_and_items<'a>(
    text: &'a str,
    limit: usize,
    key: &str,
) -> Option<(Vec<Member<'a>>, Option<Vec<Element<'a>>>)> {
    let mut members = Vec::with_capacity(4);
    let mut items = None;
    Reader::whole(text, limit, b'{', |reader| {
        reader.members_splitting(&mut members, key, &mut items)
    })?;
    Some((members, items))
}

/// The elements of `text`, one JSON array (blanks around it allowed)
/// nesting at most `limit` levels, each object among them split into its
/// members; `None` when the text is anything else or breaks a rule.
pub fn array(text: &str, limit: usize) -> Option<Vec<Element<'_>>> {
    let mut elements = Vec::new();
    Reader::whole(text, limit, b'[', |reader| reader.items(&mut elements))?;
    Some(elements)
}

/// The position of one pass through `text`.
struct Reader<'a> {
    text: &'a str,
    bytes: &'a [u8],
    at: usize,
    depth: usize,
    limit: usize,
}

impl<'a> Reader<'a> {
    /// Reads all of `text` with `read`, which starts at `open` (after
    /// blanks); only blanks may follow what it read.
    fn whole(
        text: &'a str,
        limit: usize,
        open: u8,
        read: impl FnOnce(&mut Reader<'a>) -> Option<()>,
    ) -> Option<()> {
        let bytes = text.as_bytes();
        let mut reader = Reader {
            text,
            bytes,
            at: skip_blanks(bytes, 0),
            depth: 0,
            limit,
        };
        if reader.peek() != Some(open) {
            return None;
        }
        read(&mut reader)?;
        (skip_blanks(bytes, reader.at) == bytes.len()).then_some(())
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.at).copied()
    }

    fn skip_blanks(&mut self) {
        self.at = skip_blanks(self.bytes, self.at);
    }

    /// Steps over `byte` after blanks, or fails.
    fn expect(&mut self, byte: u8) -> Option<()> {
        self.skip_blanks();
        (self.peek()? == byte).then(|| self.at += 1)
    }

    /// One more level of nesting, within the limit.
    fn enter(&mut self) -> Option<()> {
        self.depth += 1;
        (self.depth <= self.limit).then_some(())
    }

    /// The object opening at `at`, its members added to `found` if given
    /// (keys are unescaped only then).
    fn members(&mut self, mut found: Option<&mut Vec<Member<'a>>>) -> Option<()> {
        self.sequence(b'}', |reader| {
            let key = reader.key()?;
            let value = reader.value()?;
            if let Some(members) = found.as_deref_mut() {
                members.push((key_of(key)?, value));
            }
            Some(())
        })
    }

    /// The members of the object opening at `at` added to `found`, the
    /// array under `key` split into `items` by [`Reader::items`].
    fn members_splitting(
        &mut self,
        found: &mut Vec<Member<'a>>,
        key: &str,
        items: &mut Option<Vec<Element<'a>>>,
    ) -> Option<()> {
        self.members_reading(found, key, |reader| {
            if reader.peek() != Some(b'[') {
                return reader.value().map(|_| ());
            }
            let mut elements = Vec::new();
            reader.items(&mut elements)?;
            *items = Some(elements);
            Some(())
        })
    }

    /// The members of the object opening at `at` added to `found`, those
    /// of the object under the last `key` to `inner`.
    fn members_nesting(
        &mut self,
        found: &mut Vec<Member<'a>>,
        key: &str,
        inner: &mut Option<Vec<Member<'a>>>,
    ) -> Option<()> {
        self.members_reading(found, key, |reader| {
            if reader.peek() != Some(b'{') {
                *inner = None;
                return reader.value().map(|_| ());
            }
            let mut members = Vec::with_capacity(12);
            reader.members(Some(&mut members))?;
            *inner = Some(members);
            Some(())
        })
    }

    /// The members of the object opening at `at` added to `found`, the
    /// value of each `key` read by `read_keyed` (at its first byte).
    fn members_reading(
        &mut self,
        found: &mut Vec<Member<'a>>,
        key: &str,
        mut read_keyed: impl FnMut(&mut Self) -> Option<()>,
    ) -> Option<()> {
        self.sequence(b'}', |reader| {
            let name = key_of(reader.key()?)?;
            reader.skip_blanks();
            let start = reader.at;
            match name == key {
                true => read_keyed(reader)?,
                false => {
                    reader.value()?;
                }
            }
            found.push((name, &reader.text[start..reader.at]));
            Some(())
        })
    }

    /// The array opening at `at`, each element added to `found` with its
    /// members when it is an object.
    fn items(&mut self, found: &mut Vec<Element<'a>>) -> Option<()> {
        self.sequence(b']', |reader| {
            reader.skip_blanks();
            let start = reader.at;
            let members = match reader.peek()? {
                b'{' => {
                    let mut members = Vec::with_capacity(12);
                    reader.members(Some(&mut members))?;
                    Some(members)
                }
                _ => reader.value().map(|_| None)?,
            };
            found.push((&reader.text[start..reader.at], members));
            Some(())
        })
    }

    /// A member's key after blanks, and its colon: the key's JSON text.
    fn key(&mut self) -> Option<&'a str> {
        self.skip_blanks();
        let start = self.at;
        self.string()?;
        let key = &self.text[start..self.at];
        self.expect(b':')?;
        Some(key)
    }

    /// The array opening at `at`, stepped over.
    fn elements(&mut self) -> Option<()> {
        self.sequence(b']', |reader| reader.value().map(|_| ()))
    }

    /// The object or array opening at `at`, one level deeper: `item`
    /// reads each member or element, separated by commas, up to `close`.
    fn sequence(&mut self, close: u8, mut item: impl FnMut(&mut Self) -> Option<()>) -> Option<()> {
        self.enter()?;
        self.at += 1;
        self.skip_blanks();
        if self.peek()? != close {
            loop {
                item(self)?;
                self.skip_blanks();
                match self.peek()? {
                    b',' => self.at += 1,
                    byte if byte == close => break,
                    _ => return None,
                }
            }
        }
        self.at += 1;
        self.depth -= 1;
        Some(())
    }

    /// The value after blanks: its text.
    fn value(&mut self) -> Option<&'a str> {
        self.skip_blanks();
        let start = self.at;
        match self.peek()? {
            b'"' => self.string()?,
            b'{' => self.members(None)?,
            b'[' => self.elements()?,
            b'-' | b'0'..=b'9' => self.number()?,
            b't' => self.literal(b"true")?,
            b'f' => self.literal(b"false")?,
            b'n' => self.literal(b"null")?,
            _ => return None,
        }
        Some(&self.text[start..self.at])
    }

    fn literal(&mut self, word: &[u8]) -> Option<()> {
        let end = self.at + word.len();
        (self.bytes.get(self.at..end)? == word).then(|| self.at = end)
    }

    /// The string opening at `at`: no control characters, only JSON's
    /// escapes, and surrogate escapes in pairs.
    fn string(&mut self) -> Option<()> {
        if self.peek()? != b'"' {
            return None;
        }
        self.at += 1;
        loop {
            self.at = string_stop(self.bytes, self.at)?;
            match self.bytes[self.at] {
                b'"' => {
                    self.at += 1;
                    return Some(());
                }
                b'\\' => self.escape()?,
                _ => return None,
            }
        }
    }

    /// The escape at `at` (its backslash).
    fn escape(&mut self) -> Option<()> {
        match *self.bytes.get(self.at + 1)? {
            b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => {
                self.at += 2;
                Some(())
            }
            b'u' => match self.unit()? {
                0xD800..=0xDBFF => match self.unit()? {
                    0xDC00..=0xDFFF => Some(()),
                    _ => None,
                },
                0xDC00..=0xDFFF => None,
                _ => Some(()),
            },
            _ => None,
        }
    }

    /// The UTF-16 code unit of the `\uXXXX` escape at `at`, stepped over.
    fn unit(&mut self) -> Option<u32> {
        let escape = self.bytes.get(self.at..self.at + 6)?;
        if escape[..2] != *b"\\u" {
            return None;
        }
        let mut unit = 0;
        for digit in &escape[2..] {
            unit = unit * 16 + (*digit as char).to_digit(16)?;
        }
        self.at += 6;
        Some(unit)
    }

    /// The number at `at`: JSON's grammar (`-`, no leading zeros, digits
    /// after a point and in an exponent), within a 64-bit float's range.
    fn number(&mut self) -> Option<()> {
        let start = self.at;
        if self.peek() == Some(b'-') {
            self.at += 1;
        }
        match self.peek()? {
            b'0' => self.at += 1,
            b'1'..=b'9' => self.digits(),
            _ => return None,
        }
        let mut exponent = false;
        if self.peek() == Some(b'.') {
            self.at += 1;
            self.some_digits()?;
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            exponent = true;
            self.at += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.at += 1;
            }
            self.some_digits()?;
        }
        let token = &self.text[start..self.at];
        (!beyond_a_float(token, exponent)).then_some(())
    }

    fn digits(&mut self) {
        while matches!(self.peek(), Some(b'0'..=b'9')) {
            self.at += 1;
        }
    }

    /// At least one digit.
    fn some_digits(&mut self) -> Option<()> {
        let start = self.at;
        self.digits();
        (self.at > start).then_some(())
    }
}

/// Whether a number token overflows a 64-bit float: only one with an
/// exponent, or with more digits than `f64::MAX` has, can.
fn beyond_a_float(token: &str, exponent: bool) -> bool {
    const MAX_PLAIN_DIGITS: usize = 309;
    if !exponent && token.len() <= MAX_PLAIN_DIGITS {
        return false;
    }
    token.parse::<f64>().map_or(true, f64::is_infinite)
}

/// A byte in each of a word's eight lanes: `ONES * b` repeats `b`.
const ONES: u64 = 0x0101_0101_0101_0101;
const HIGHS: u64 = 0x8080_8080_8080_8080;

/// The high bit of each zero byte of `word`: exact at the lowest one,
/// which is all the searches that read eight bytes at a time need.
fn zero_byte(word: u64) -> u64 {
    word.wrapping_sub(ONES) & !word & HIGHS
}

/// Where, from `at` inside a string, the next quote, backslash or control
/// character is: eight bytes at a time.
pub(super) fn string_stop(bytes: &[u8], mut at: usize) -> Option<usize> {
    while let Some(chunk) = bytes.get(at..at + 8) {
        let word = u64::from_le_bytes(chunk.try_into().ok()?);
        let quote = zero_byte(word ^ (ONES * u64::from(b'"')));
        let backslash = zero_byte(word ^ (ONES * u64::from(b'\\')));
        let control = word.wrapping_sub(ONES * 0x20) & !word & HIGHS;
        // Each mask is exact at its lowest set byte, which is all we need.
        let stops = quote | backslash | control;
        if stops != 0 {
            return Some(at + stops.trailing_zeros() as usize / 8);
        }
        at += 8;
    }
    let rest = bytes.get(at..)?;
    rest.iter()
        .position(|b| matches!(b, b'"' | b'\\' | 0..=0x1f))
        .map(|skip| at + skip)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::fields::Fields;
    use crate::event::scan::{MAX_JSON_DEPTH, check_json};

    /// What the scan and serde_json together make of `text`: its members,
    /// or `None` when either refuses it.
    fn two_pass(text: &str, limit: usize) -> Option<Vec<(String, String)>> {
        check_json(text, limit).ok()?;
        let fields = Fields::parse(text).ok()?;
        Some(owned(fields.pairs().to_vec()))
    }

    fn owned(members: Vec<Member<'_>>) -> Vec<(String, String)> {
        members
            .into_iter()
            .map(|(k, v)| (k.into_owned(), v.to_string()))
            .collect()
    }

    fn one_pass(text: &str, limit: usize) -> Option<Vec<(String, String)>> {
        object(text, limit).map(owned)
    }

    #[test]
    fn objects_read_as_the_scan_and_serde_json_read_them() {
        let deep = format!("{{\"a\":{}1{}}}", "[".repeat(63), "]".repeat(63));
        let too_deep = format!("{{\"a\":{}1{}}}", "[".repeat(64), "]".repeat(64));
        for text in [
            r#"{}"#,
            " \n{ }\t",
            r#"{"a":1,"b":-0.5e-3,"c":true,"d":false,"e":null,"f":"x","g":[],"h":{}}"#,
            r#"{"s":"x\"}{][,","t":"\\","u":"\\\"","v":"\/\b\f\n\r\t\u00e9"}"#,
            r#"{"esc\u0061ped":"v","ke\"y":{"x":"}"},"a":1,"a":2}"#,
            r#"{"pair":"\ud83d\ude00","lone":"\ud800"}"#,
            r#"{"low":"\udc00"}"#,
            r#"{"short":"\u12"}"#,
            r#"{"bad":"\x"}"#,
            "{\"ctl\":\"a\u{1}b\"}",
            "{\"tab\":\"a\tb\"}",
            r#"{"n":01}"#,
            r#"{"n":1.}"#,
            r#"{"n":.5}"#,
            r#"{"n":-}"#,
            r#"{"n":1e}"#,
            r#"{"n":1e+}"#,
            r#"{"n":+1}"#,
            r#"{"n":1e308,"m":1e999}"#,
            r#"{"n":-1E+309}"#,
            r#"{"n":1e-999,"m":123456789012345678901234567890}"#,
            r#"{"t":tru}"#,
            r#"{"t":nul,"x":1}"#,
            r#"{"a":1,}"#,
            r#"{,"a":1}"#,
            r#"{"a" 1}"#,
            r#"{"a":1 "b":2}"#,
            r#"{"a":[1,]}"#,
            r#"{"a":[1 2]}"#,
            r#"{a:1}"#,
            r#"{"a":1} x"#,
            r#"{"a":1}}"#,
            r#"{"a":"unterminated}"#,
            r#"{"a":1"#,
            "",
            "[1]",
            "\"s\"",
            "1",
            deep.as_str(),
            too_deep.as_str(),
        ] {
            assert_eq!(
                one_pass(text, MAX_JSON_DEPTH),
                two_pass(text, MAX_JSON_DEPTH),
                "{text}"
            );
        }
    }

    /// A small generator (same numbers on every run).
    struct Seed(u64);

    impl Seed {
        fn next(&mut self, below: usize) -> usize {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((self.0 >> 33) % below as u64) as usize
        }
    }

    const EVENTS: &[&str] = &[
        r#"{"partnerId":"shop","clientId":"c1","type":"track","sentAt":1524776691259,"properties":{"eventName":"view","properties":{"sku":"S-1","price":-12.5e1,"tags":["a","b\"c"],"ok":true,"none":null}}}"#,
        r#"{"type":"identify","userId":"u\u00e9","traits":{"email":"a@b.c","nested":{"d":[1,[2,{"e":"\ud83d\ude00"}]]}},"timestamp":"2026-01-31T12:00:00Z"}"#,
        r#"{"name":"signup","payload":{"plan":"pro","seats":0,"ratio":0.25,"path":"\/x\\y"},"user_id":42}"#,
    ];

    /// Bytes a mutation inserts: JSON's structure and the edges of its rules.
    const PIECES: &[&str] = &[
        "{", "}", "[", "]", ",", ":", "\"", "\\", "\\u", "d800", "dc00", "0", "1", "-", ".", "e",
        "E", "+", "9", " ", "\n", "\u{1}", "\u{7f}", "é", "true", "null", "x", "1e999",
    ];

    #[test]
    fn mutated_events_read_as_the_scan_and_serde_json_read_them() {
        let mut seed = Seed(11);
        let mut accepted = 0;
        for round in 0..30_000 {
            let mut text = EVENTS[round % EVENTS.len()].to_string();
            for _ in 0..1 + seed.next(3) {
                let mut at = seed.next(text.len() + 1);
                while !text.is_char_boundary(at) {
                    at -= 1;
                }
                match seed.next(3) {
                    0 => text.insert_str(at, PIECES[seed.next(PIECES.len())]),
                    1 if at < text.len() => {
                        text.remove(at);
                    }
                    _ => text.replace_range(at..at, PIECES[seed.next(PIECES.len())]),
                }
            }
            let expected = two_pass(&text, MAX_JSON_DEPTH);
            accepted += usize::from(expected.is_some());
            assert_eq!(one_pass(&text, MAX_JSON_DEPTH), expected, "{text}");
        }
        // Both outcomes were exercised.
        assert!((1_000..29_000).contains(&accepted), "{accepted}");
    }

    #[test]
    fn a_batch_and_its_items_read_as_each_read_alone() {
        let body = r#"{"writeKey":"k","batch":[ {"a":1,"b":{"c":[2]}} ,3,"s",{},{"k\u0061":"\ud83d\ude00"}],"x":null}"#;
        let (members, items) = object_and_items(body, 5, "batch").unwrap();
        assert_eq!(Some(members.clone()), object(body, 5));
        let items = items.unwrap();
        let texts: Vec<&str> = items.iter().map(|(text, _)| *text).collect();
        assert_eq!(Some(texts), array(members[1].1, 4).map(|e| texts_of(&e)));
        for (text, split) in &items {
            assert_eq!(*split, object(text, 3), "{text}");
        }
        assert_eq!(
            object_and_items(r#"{"batch":{}}"#, 4, "batch").unwrap().1,
            None
        );
        for bad in [
            r#"{"batch":[{"a":"\ud800"}]}"#,
            r#"{"batch":[{"a":1},]}"#,
            r#"{"batch":[[[[[1]]]]]}"#,
            r#"{"batch":[]} x"#,
        ] {
            assert_eq!(object_and_items(bad, 5, "batch"), None, "{bad}");
        }
    }

    fn texts_of<'a>(elements: &[Element<'a>]) -> Vec<&'a str> {
        elements.iter().map(|(text, _)| *text).collect()
    }

    #[test]
    fn an_inner_object_splits_as_it_reads_alone() {
        for text in [
            r#"{"a":1,"properties":{"eventName":"x","properties":{"k":[1,{"v":"\u00e9"}]}},"z":2}"#,
            r#"{"properties":{"a":1},"properties":null}"#,
            r#"{"properties":null,"properties":{"b":2}}"#,
            r#"{"properties":[1],"x":{"properties":{"c":3}}}"#,
            r#"{"p\u0072operties":{"d":4}}"#,
        ] {
            let (members, inner) = object_and_members(text, 5, "properties").unwrap();
            assert_eq!(Some(members.clone()), object(text, 5), "{text}");
            let last = members.iter().rev().find(|(k, _)| k == "properties");
            let expected = last.and_then(|(_, v)| object(v, 4));
            assert_eq!(inner, expected, "{text}");
        }
        for bad in [
            r#"{"properties":{"a":"\ud800"}}"#,
            r#"{"properties":{"a":1,}}"#,
            r#"{"properties":{"a":[[[[1]]]]}}"#,
        ] {
            assert_eq!(object_and_members(bad, 5, "properties"), None, "{bad}");
        }
    }

    #[test]
    fn arrays_split_into_their_elements() {
        let elements = array(r#" [ {"a":[1]} , "s", 2 ,[]] "#, 4).unwrap();
        assert_eq!(texts_of(&elements), [r#"{"a":[1]}"#, r#""s""#, "2", "[]"]);
        assert_eq!(elements[0].1, object(r#"{"a":[1]}"#, 3));
        assert!(elements[1..].iter().all(|(_, members)| members.is_none()));
        assert_eq!(array("[]", 4), Some(vec![]));
        for bad in ["[1,]", "[1", "{}", "[[[1]]]", r#"["\ud800"]"#, "[1] 2"] {
            assert_eq!(array(bad, 2), None, "{bad}");
        }
    }

    #[test]
    fn string_stops_are_found_in_every_lane() {
        for lane in 0..20 {
            for stop in ["\"", "\\", "\u{0}", "\u{1f}"] {
                let text = format!("{}{stop}tail", "é".repeat(lane / 2) + &"a".repeat(lane % 2));
                let expected = text.find(stop).unwrap();
                assert_eq!(string_stop(text.as_bytes(), 0), Some(expected), "{text:?}");
            }
        }
        assert_eq!(string_stop("no stop here at all".as_bytes(), 0), None);
    }
}
