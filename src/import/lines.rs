//! Cutting an NDJSON stream into chunks of whole lines, with memory bounded
//! by the chunk size and `max_line_bytes` whatever the input:
//! - a line longer than `max_line_bytes` is refused with its line number
//!   and skipped without being held, and the lines after it still import;
//! - a stream that breaks (a truncated or corrupt gzip file, a read error)
//!   keeps every complete line before the break, and the break is refused
//!   with the line it cut.

use std::io::{self, Read};
use std::sync::atomic::{AtomicU64, Ordering};

use super::chunk::{RawChunk, Refused};

/// Bytes of NDJSON per chunk (one commit per chunk and workspace). Tiny
/// when fuzzing, so that small inputs reach every branch.
#[cfg(not(fuzzing))]
pub const CHUNK_BYTES: usize = 16 << 20;
#[cfg(fuzzing)]
pub const CHUNK_BYTES: usize = 64;
/// Bytes read at a time.
#[cfg(not(fuzzing))]
const READ_BLOCK: usize = 1 << 20;
#[cfg(fuzzing)]
const READ_BLOCK: usize = 16;
/// How much of a refused line is kept in quarantine.
pub const REFUSED_HEAD_BYTES: usize = 1 << 10;

/// How a read of the input ended.
enum Filled {
    /// The buffer holds what was asked for; there may be more.
    More,
    /// The input ended.
    End,
    /// The input broke: what was read before the error is in the buffer.
    Broken(io::Error),
}

/// Reads into `buf` after its first `held` bytes until it is full, the
/// input ends, or it breaks; `buf` is then cut to the bytes it holds. The
/// input is read straight into `buf`: no block in between to copy from,
/// and no zeroing first (`read_to_end` zeroes the room it reads into,
/// 16 MiB per chunk, each time a buffer is used again).
fn fill(input: &mut impl Read, buf: &mut Vec<u8>, mut held: usize) -> Filled {
    let filled = loop {
        if held == buf.len() {
            break Filled::More;
        }
        match input.read(&mut buf[held..]) {
            Ok(0) => break Filled::End,
            Ok(n) => held += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => break Filled::Broken(e),
        }
    };
    buf.truncate(held);
    filled
}

/// Makes `buf`, a buffer used before (its bytes stale), `len` bytes long
/// and starting with `carry`. Only the bytes past its old length are
/// zeroed: a buffer used again is already initialised and in memory.
fn start_with(buf: &mut Vec<u8>, carry: &[u8], len: usize) {
    buf.resize(len, 0);
    buf[..carry.len()].copy_from_slice(carry);
}

/// Cuts `input` into chunks of whole lines of about [`CHUNK_BYTES`] and hands
/// each to `send`; stops early when `send` returns false. Lines over
/// `max_line` bytes and a break in the stream come as [`Refused`] lines.
pub fn read_ndjson_chunks(
    input: impl Read,
    consumed: &AtomicU64,
    max_line: usize,
    send: impl FnMut(RawChunk) -> bool,
) -> io::Result<()> {
    read_ndjson_chunks_into(input, consumed, max_line, Vec::new, send)
}

/// [`read_ndjson_chunks`], reading each chunk into a buffer `spare` gives
/// (a chunk's buffer its parser is done with, or a new one): a buffer used
/// again is already in memory, where a new one costs a page fault per page
/// as the read fills it.
pub fn read_ndjson_chunks_into(
    input: impl Read,
    consumed: &AtomicU64,
    max_line: usize,
    spare: impl FnMut() -> Vec<u8>,
    send: impl FnMut(RawChunk) -> bool,
) -> io::Result<()> {
    let mut cutter = Cutter {
        input,
        consumed,
        max_line,
        spare,
        send,
        index: 0,
        next_line: 1,
    };
    cutter.run();
    Ok(())
}

struct Cutter<'a, R, P, S> {
    input: R,
    consumed: &'a AtomicU64,
    max_line: usize,
    spare: P,
    send: S,
    index: u64,
    next_line: u64,
}

impl<R: Read, P: FnMut() -> Vec<u8>, S: FnMut(RawChunk) -> bool> Cutter<'_, R, P, S> {
    fn run(&mut self) {
        // Bytes read but not sent yet, and how many of them at its start
        // are known to hold no newline (all of them after a cut; none after
        // a skipped line, whose rest may hold whole lines).
        let mut carry: Vec<u8> = Vec::new();
        let mut clean = 0;
        loop {
            let mut buf = (self.spare)();
            start_with(&mut buf, &carry, CHUNK_BYTES.max(carry.len() + READ_BLOCK));
            let searched = clean;
            let filled = fill(&mut self.input, &mut buf, carry.len());
            let cut = buf[searched..]
                .iter()
                .rposition(|b| *b == b'\n')
                .map(|at| searched + at + 1);
            if let Some(cut) = cut {
                carry = buf.split_off(cut);
            } else {
                carry = std::mem::take(&mut buf);
            }
            clean = carry.len();
            let go_on = match filled {
                Filled::More if carry.len() > self.max_line => {
                    let mut refused = self.overlong_at(self.next_line + count_lines(&buf), &carry);
                    match self.skip_line() {
                        Ok(rest) => {
                            carry = rest;
                            clean = 0;
                            self.emit(buf, Some(refused))
                        }
                        Err(error) => {
                            refused.reason += &format!("; the input breaks in it: {error}");
                            self.emit(buf, Some(refused));
                            return;
                        }
                    }
                }
                Filled::More => self.emit(buf, None),
                Filled::End => {
                    buf.append(&mut carry);
                    return self.finish(buf, None);
                }
                Filled::Broken(error) => {
                    self.emit(buf, None);
                    return self.finish(carry, Some(error));
                }
            };
            if !go_on {
                return;
            }
        }
    }

    /// The last chunk: `tail` (whole lines, the last maybe without its
    /// newline), or a partial line cut by `broken`.
    fn finish(&mut self, tail: Vec<u8>, broken: Option<io::Error>) {
        match broken {
            None if tail.last().is_some_and(|b| *b != b'\n') => {
                let start = tail
                    .iter()
                    .rposition(|b| *b == b'\n')
                    .map_or(0, |at| at + 1);
                let last = &tail[start..];
                if last.len() > self.max_line {
                    let refused = self.overlong_at(self.next_line + count_lines(&tail), last);
                    let lines = tail[..start].to_vec();
                    self.emit(lines, Some(refused));
                } else {
                    let mut whole = tail;
                    whole.push(b'\n');
                    self.emit(whole, None);
                }
            }
            None => {
                self.emit(tail, None);
            }
            Some(error) => {
                let line = self.next_line;
                let refused = Refused {
                    line,
                    reason: format!(
                        "the input breaks in this line (after {} complete lines): {error}",
                        line - 1
                    ),
                    head: head(&tail),
                };
                self.emit(Vec::new(), Some(refused));
            }
        }
    }

    /// Refuses line `line`, starting with `start`, over the limit.
    fn overlong_at(&self, line: u64, start: &[u8]) -> Refused {
        Refused {
            line,
            reason: format!(
                "the line is longer than max_line_bytes ({} bytes)",
                self.max_line
            ),
            head: head(start),
        }
    }

    /// Reads past the end of the current line without keeping it; returns
    /// what follows its newline.
    fn skip_line(&mut self) -> Result<Vec<u8>, io::Error> {
        let mut block = vec![0u8; READ_BLOCK];
        loop {
            match self.input.read(&mut block) {
                Ok(0) => return Ok(Vec::new()),
                Ok(n) => {
                    if let Some(at) = block[..n].iter().position(|b| *b == b'\n') {
                        return Ok(block[at + 1..n].to_vec());
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Sends whole `lines` (each ending in a newline) and then the refused
    /// line, if any; false once the receiver is gone.
    fn emit(&mut self, lines: Vec<u8>, refused: Option<Refused>) -> bool {
        if lines.is_empty() && refused.is_none() {
            return true;
        }
        let count = count_lines(&lines);
        let chunk = RawChunk {
            index: self.index,
            first_line: self.next_line,
            offset: self.consumed.load(Ordering::Relaxed),
            data: lines,
            refused,
        };
        self.index += 1;
        self.next_line += count + u64::from(chunk.refused.is_some());
        (self.send)(chunk)
    }
}

fn count_lines(bytes: &[u8]) -> u64 {
    memchr::memchr_iter(b'\n', bytes).count() as u64
}

/// The start of a refused line, kept in quarantine.
fn head(line: &[u8]) -> Vec<u8> {
    line[..line.len().min(REFUSED_HEAD_BYTES)].to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A chunk as (first line, text, refused line and reason).
    type Seen = (u64, String, Option<(u64, String)>);

    fn chunks(input: impl Read, max_line: usize) -> Vec<Seen> {
        let mut out = Vec::new();
        read_ndjson_chunks(input, &AtomicU64::new(0), max_line, |c| {
            let refused = c.refused.map(|r| (r.line, r.reason));
            out.push((c.first_line, String::from_utf8(c.data).unwrap(), refused));
            true
        })
        .unwrap();
        out
    }

    fn text(s: &str) -> Vec<Seen> {
        chunks(s.as_bytes(), 1 << 20)
    }

    #[test]
    fn chunks_hold_whole_lines_and_end_with_a_newline() {
        assert_eq!(text("a\nb\n"), vec![(1, "a\nb\n".to_string(), None)]);
        assert_eq!(text("a\nb"), vec![(1, "a\nb\n".to_string(), None)]);
        assert!(text("").is_empty());
    }

    #[test]
    fn large_inputs_are_cut_at_line_ends() {
        let line = format!("{}\n", "x".repeat(1000));
        let got = text(&line.repeat(40_000));
        assert!(got.len() > 1);
        let mut expected_line = 1;
        for (first, data, _) in &got {
            assert_eq!(*first, expected_line);
            assert!(data.ends_with('\n'));
            expected_line += data.matches('\n').count() as u64;
        }
        assert_eq!(expected_line, 40_001);
    }

    #[test]
    fn buffers_used_again_give_the_chunks_fresh_ones_give() {
        let line = format!("{}\n", "x".repeat(999));
        let input = format!("{}tail", line.repeat(40_000));
        let fresh = chunks(input.as_bytes(), 1 << 20);
        // Stale bytes of every kind: newlines (a cut searching them would
        // end a chunk early), a buffer longer than a chunk, a short one.
        let mut stale = vec![
            vec![b'\n'; CHUNK_BYTES + 5],
            vec![b'y'; 100],
            vec![b'\n'; 3 * READ_BLOCK],
        ]
        .into_iter()
        .cycle();
        let mut reused = Vec::new();
        read_ndjson_chunks_into(
            input.as_bytes(),
            &AtomicU64::new(0),
            1 << 20,
            || stale.next().unwrap_or_default(),
            |c| {
                let refused = c.refused.map(|r| (r.line, r.reason));
                reused.push((c.first_line, String::from_utf8(c.data).unwrap(), refused));
                true
            },
        )
        .unwrap();
        assert!(fresh.len() > 2);
        // Compared whole, but reported by line and length: the chunks hold
        // 40 MB.
        let shape = |seen: &[Seen]| -> Vec<(u64, usize)> {
            seen.iter()
                .map(|(line, text, _)| (*line, text.len()))
                .collect()
        };
        assert!(
            reused == fresh,
            "{:?} != {:?}",
            shape(&reused),
            shape(&fresh)
        );
    }

    #[test]
    fn a_line_longer_than_a_chunk_but_within_the_limit_is_kept_whole() {
        let long = "y".repeat(CHUNK_BYTES + 3 * READ_BLOCK);
        let input = format!("a\n{long}\nb\n");
        let got = chunks(input.as_bytes(), CHUNK_BYTES * 2);
        let lengths: Vec<usize> = got
            .iter()
            .flat_map(|(_, d, _)| d.lines().map(str::len))
            .collect();
        assert_eq!(lengths, [1, long.len(), 1]);
        assert!(got.iter().all(|(_, _, r)| r.is_none()));
    }

    #[test]
    fn an_unterminated_line_over_the_limit_is_refused_unheld_and_the_rest_kept() {
        // Longer than a chunk, so the reader sees it without its newline.
        let long = "z".repeat(CHUNK_BYTES + 2 * READ_BLOCK);
        let input = format!("a\nb\n{long}\nc\n");
        let got = chunks(input.as_bytes(), 2 * READ_BLOCK);
        let lines: Vec<&str> = got.iter().flat_map(|(_, d, _)| d.lines()).collect();
        assert_eq!(lines, ["a", "b", "c"]);
        let refused: Vec<&(u64, String)> = got.iter().filter_map(|(_, _, r)| r.as_ref()).collect();
        assert_eq!(refused.len(), 1);
        assert_eq!(refused[0].0, 3);
        assert!(refused[0].1.contains("max_line_bytes"), "{}", refused[0].1);
        assert_eq!(got.last().map(|c| c.0), Some(4), "c keeps its line number");
        // A last line without its newline is held to the limit too.
        let got = chunks(
            format!("a\n{}", &long[..3 * READ_BLOCK]).as_bytes(),
            READ_BLOCK,
        );
        assert_eq!(got.last().and_then(|c| c.2.as_ref()).map(|r| r.0), Some(2));
    }

    #[test]
    fn the_lines_after_a_skipped_line_keep_their_numbers() {
        // Found by fuzz/ndjson_lines: the bytes read past a skipped line's
        // newline held whole lines that were never searched, and were
        // swallowed into the next over-long line.
        let long = "z".repeat(CHUNK_BYTES + 2 * READ_BLOCK);
        let also_long = "w".repeat(3 * READ_BLOCK);
        let input = format!("{long}\na\nb\n{also_long}\nc\n");
        let got = chunks(input.as_bytes(), READ_BLOCK);
        // The second long line ends within the file, so it is cut whole
        // and left for the parser to refuse (`max_line_bytes` per line).
        let lengths: Vec<usize> = got
            .iter()
            .flat_map(|(_, d, _)| d.lines().map(str::len))
            .collect();
        assert_eq!(lengths, [1, 1, also_long.len(), 1]);
        let refused: Vec<u64> = got
            .iter()
            .filter_map(|c| c.2.as_ref().map(|r| r.0))
            .collect();
        assert_eq!(refused, [1]);
        let last = got.last().unwrap();
        assert_eq!(
            last.0 + last.1.matches('\n').count() as u64 - 1,
            5,
            "c is line 5"
        );
    }

    /// A reader that yields `data` and then fails.
    struct Breaks(io::Cursor<Vec<u8>>);

    impl Read for Breaks {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            match self.0.read(buf)? {
                0 => Err(io::Error::new(io::ErrorKind::UnexpectedEof, "truncated")),
                n => Ok(n),
            }
        }
    }

    #[test]
    fn a_broken_stream_keeps_its_complete_lines_and_says_where_it_broke() {
        let got = chunks(Breaks(io::Cursor::new(b"a\nb\npart".to_vec())), 1 << 20);
        let lines: Vec<&str> = got.iter().flat_map(|(_, d, _)| d.lines()).collect();
        assert_eq!(lines, ["a", "b"]);
        let (line, reason) = got.last().unwrap().2.clone().unwrap();
        assert_eq!(line, 3);
        assert!(
            reason.contains("after 2 complete lines") && reason.contains("truncated"),
            "{reason}"
        );
    }
}
