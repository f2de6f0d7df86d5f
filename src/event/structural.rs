//! Where a nested JSON value (an object or array) ends, found 64 bytes at
//! a time. Each block's quotes, backslashes and brackets become bit masks
//! (SSE2 on x86_64, a byte loop elsewhere); the bits inside strings are
//! masked off with a prefix XOR of the unescaped quotes; the brackets are
//! counted with popcounts, and only a block where the depth may come back
//! to zero is walked bracket by bracket.
//!
//! This is the first stage of simdjson (Langdale and Lemire, "Parsing
//! Gigabytes of JSON per Second", 2019) cut down to skipping a value. The
//! JSON getters skip every nested value before the key they read
//! (`sql::json_member`): stepping from quote to quote had been most of a
//! getter's time, since nested values are dense with short strings.
//!
//! The text is expected to be JSON. On text that is not, the answer is
//! some position inside the text, or `None`; never a read past it.

/// Bytes classified at once.
const BLOCK: usize = 64;

/// The blanks a short last block is padded with: no quote, backslash or
/// bracket.
const PADDING: u8 = b' ';

/// Where the object or array whose bracket is at `at` closes (the position
/// after its closing bracket), or `None` when it does not close.
pub(crate) fn nested_end(bytes: &[u8], at: usize) -> Option<usize> {
    let mut walk = Walk::default();
    let mut start = at;
    while start < bytes.len() {
        let found = match bytes.get(start..start + BLOCK) {
            Some(block) => walk.close_in(block.try_into().ok()?),
            None => {
                let mut padded = [PADDING; BLOCK];
                let rest = &bytes[start..];
                padded[..rest.len()].copy_from_slice(rest);
                walk.close_in(&padded)
            }
        };
        if let Some(offset) = found {
            return Some(start + offset + 1);
        }
        start += BLOCK;
    }
    None
}

/// What a walk carries from one block to the next.
#[derive(Debug, Default)]
struct Walk {
    /// Brackets open (the value's own included).
    depth: u32,
    /// All ones when the last block ended inside a string.
    in_string: u64,
    /// Whether the last block ended with a backslash that escapes the next
    /// byte.
    escape_next: bool,
}

impl Walk {
    /// The offset in `block` of the bracket that closes the value, if it
    /// is there.
    fn close_in(&mut self, block: &[u8; BLOCK]) -> Option<usize> {
        let masks = Masks::of(block);
        let quotes = masks.quote & !self.escaped(masks.backslash);
        let inside = prefix_xor(quotes) ^ self.in_string;
        self.in_string = ((inside as i64) >> 63) as u64;
        let open = masks.open & !inside;
        let close = masks.close & !inside;
        if close.count_ones() < self.depth {
            self.depth += open.count_ones();
            self.depth -= close.count_ones();
            return None;
        }
        self.first_return_to_zero(open, close)
    }

    /// Walks the brackets in order to the one that brings the depth back
    /// to zero.
    fn first_return_to_zero(&mut self, open: u64, close: u64) -> Option<usize> {
        let mut brackets = open | close;
        while brackets != 0 {
            let bit = brackets.trailing_zeros();
            brackets &= brackets - 1;
            if open >> bit & 1 == 1 {
                self.depth += 1;
                continue;
            }
            // Text that is not JSON may close more than it opened.
            self.depth = self.depth.checked_sub(1)?;
            if self.depth == 0 {
                return Some(bit as usize);
            }
        }
        None
    }

    /// The bytes of the block that a backslash escapes: each backslash not
    /// itself escaped escapes the byte after it.
    fn escaped(&mut self, backslashes: u64) -> u64 {
        let mut escaped = u64::from(std::mem::take(&mut self.escape_next));
        let mut rest = backslashes;
        while rest != 0 {
            let bit = rest.trailing_zeros();
            rest &= rest - 1;
            if escaped >> bit & 1 == 1 {
                continue;
            }
            match bit {
                63 => self.escape_next = true,
                _ => escaped |= 1 << (bit + 1),
            }
        }
        escaped
    }
}

/// Each bit set from a quote up to the next one (the opening quote and the
/// string's text; not the closing quote).
fn prefix_xor(quotes: u64) -> u64 {
    let mut inside = quotes;
    for shift in [1, 2, 4, 8, 16, 32] {
        inside ^= inside << shift;
    }
    inside
}

/// A block's bytes of interest, bit `i` for byte `i`.
#[derive(Debug, Default, PartialEq, Eq)]
struct Masks {
    quote: u64,
    backslash: u64,
    /// `{` and `[`.
    open: u64,
    /// `}` and `]`.
    close: u64,
}

impl Masks {
    #[cfg(target_arch = "x86_64")]
    fn of(block: &[u8; BLOCK]) -> Masks {
        use std::arch::x86_64::{
            __m128i, _mm_cmpeq_epi8, _mm_loadu_si128, _mm_movemask_epi8, _mm_or_si128,
            _mm_set1_epi8,
        };
        let mut masks = Masks::default();
        // SAFETY: SSE2 is part of every x86_64 target; each load reads 16
        // bytes inside `block` (offsets 0, 16, 32, 48 of 64), unaligned
        // loads being allowed.
        unsafe {
            let splat = |byte: u8| _mm_set1_epi8(byte as i8);
            let bits = |v: __m128i, byte: u8| {
                u64::from(_mm_movemask_epi8(_mm_cmpeq_epi8(v, splat(byte))) as u16)
            };
            for lane in 0..BLOCK / 16 {
                let v = _mm_loadu_si128(block.as_ptr().add(lane * 16).cast::<__m128i>());
                // `[` and `{`, `]` and `}` differ only in the 0x20 bit.
                let folded = _mm_or_si128(v, splat(0x20));
                let shift = lane * 16;
                masks.quote |= bits(v, b'"') << shift;
                masks.backslash |= bits(v, b'\\') << shift;
                masks.open |= bits(folded, b'{') << shift;
                masks.close |= bits(folded, b'}') << shift;
            }
        }
        masks
    }

    #[cfg(not(target_arch = "x86_64"))]
    fn of(block: &[u8; BLOCK]) -> Masks {
        Masks::bytewise(block)
    }

    /// The masks read one byte at a time.
    #[cfg_attr(target_arch = "x86_64", allow(dead_code))]
    fn bytewise(block: &[u8; BLOCK]) -> Masks {
        let mut masks = Masks::default();
        for (i, byte) in block.iter().enumerate() {
            let mask = match byte {
                b'"' => &mut masks.quote,
                b'\\' => &mut masks.backslash,
                b'{' | b'[' => &mut masks.open,
                b'}' | b']' => &mut masks.close,
                _ => continue,
            };
            *mask |= 1 << i;
        }
        masks
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The end found byte by byte: the reference the blocks must agree with.
    fn nested_end_bytewise(bytes: &[u8], at: usize) -> Option<usize> {
        let (mut depth, mut in_string, mut escaped) = (0u32, false, false);
        for (i, byte) in bytes.iter().enumerate().skip(at) {
            match (in_string, byte) {
                (true, _) if escaped => escaped = false,
                (true, b'\\') => escaped = true,
                (true, b'"') => in_string = false,
                (true, _) => {}
                (false, b'"') => in_string = true,
                (false, b'{' | b'[') => depth += 1,
                (false, b'}' | b']') => {
                    depth = depth.checked_sub(1)?;
                    if depth == 0 {
                        return Some(i + 1);
                    }
                }
                _ => {}
            }
        }
        None
    }

    #[test]
    fn the_masks_are_those_read_byte_by_byte() {
        let mut block = [0u8; BLOCK];
        // Bytes one bit away from a bracket or quote too (`Z`, `^`, `|`, `~`…).
        let alphabet = b"\"\\{}[]a 0:,\x7f\xff\x00Z;^_`|~\xdb\xfb\x02";
        let mut seed = 7u64;
        for _ in 0..500 {
            for byte in block.iter_mut() {
                seed = seed
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                *byte = alphabet[(seed >> 33) as usize % alphabet.len()];
            }
            assert_eq!(Masks::of(&block), Masks::bytewise(&block), "{block:?}");
        }
    }

    #[test]
    fn prefix_xor_marks_each_string_from_its_opening_quote() {
        assert_eq!(prefix_xor(0), 0);
        assert_eq!(prefix_xor(0b1001), 0b0111);
        assert_eq!(prefix_xor(0b1), u64::MAX);
        assert_eq!(prefix_xor(1 << 63), 1 << 63);
    }

    /// Nested values whose brackets, quotes and escapes fall at every
    /// offset of a block, inside and across block edges.
    fn samples() -> Vec<String> {
        let pieces = [
            r#"{"a": [1, 2, {"b": "]}"}], "c": "\"{"}"#,
            r#"["\\", "\\\"]", {"x": {}}, []]"#,
            r#"{"k": "text with \\\\\" and ] and }", "n": [[[]]]}"#,
            r#"{"deep": [[[[[[[[[[["x"]]]]]]]]]]]}"#,
            r#"{"items": [{"sku": "SKU-1", "qty": 2, "price": 1.5}, {"sku": "SKU-2"}]}"#,
        ];
        let mut samples = Vec::new();
        for piece in pieces {
            for pad in 0..70 {
                samples.push(format!("{}{piece}, \"after\": 1}}", " ".repeat(pad)));
                let long = format!("{{\"s\": \"{}\", \"v\": {piece}}}", "x".repeat(pad));
                samples.push(long);
            }
        }
        samples
    }

    #[test]
    fn ends_are_those_found_byte_by_byte_at_every_offset() {
        for text in samples() {
            let bytes = text.as_bytes();
            for at in (0..bytes.len()).filter(|i| matches!(bytes[*i], b'{' | b'[')) {
                let expected = nested_end_bytewise(bytes, at);
                assert_eq!(nested_end(bytes, at), expected, "{text} at {at}");
            }
        }
    }

    #[test]
    fn a_backslash_at_a_blocks_last_byte_escapes_the_next_blocks_first() {
        for run in 1..5 {
            let prefix = format!("{{\"s\": \"{}", "x".repeat(BLOCK - 8 - run + 1));
            let text = format!("{prefix}{}\"] still text\"}} tail", "\\".repeat(run));
            let bytes = text.as_bytes();
            assert_eq!(
                nested_end(bytes, 0),
                nested_end_bytewise(bytes, 0),
                "{text}"
            );
        }
    }

    #[test]
    fn values_that_do_not_close_have_no_end() {
        for text in [
            "{",
            "[[]",
            r#"{"a": "}"#,
            r#"{"a": "\"}"#,
            &format!("[{}", "1,".repeat(100)),
        ] {
            assert_eq!(nested_end(text.as_bytes(), 0), None, "{text}");
        }
        assert_eq!(nested_end(b"]", 0), None, "closes more than it opened");
    }
}
