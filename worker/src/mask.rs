//! Masking secret values in job output.
//!
//! A job's secret environment values must never reach the server's log store, but the
//! container writes its output in whatever pieces the kernel hands us: a token can arrive
//! as `ber` in one read and `th_wkr_…` in the next, or one byte at a time. Masking each
//! chunk on its own would let such a split secret through, so a [`Masker`] watches the
//! stream as a whole and holds back the shortest tail that could still be the start of a
//! secret. Everything before that tail is final and is passed on at once, so someone
//! following the log still sees ordinary lines live; only a tail that looks like the
//! beginning of a secret waits for the next chunk (or [`Masker::finish`]).
//!
//! # What gets masked
//!
//! Every byte that belongs to an occurrence of any secret is masked, and each run of
//! occurrences that overlap one another becomes a single `[MASKED]`. So when one secret is
//! a prefix of another, the longer one is masked whole; when two secrets overlap
//! (`abcd` and `cdef` in `abcdef`), neither leaves a tail behind (`[MASKED]`, not
//! `[MASKED]ef`); secrets that merely touch stay separate (`[MASKED][MASKED]`). The
//! result does not depend on how the stream was cut into chunks.
//!
//! Secrets are matched as literal bytes (no pattern syntax, so `.` or `*` in a password
//! mean themselves) in binary output as well as text. Matching uses an Aho–Corasick
//! automaton, so the cost per byte does not grow with the number of secrets.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

/// What replaces a secret in the output.
pub const MASK: &[u8] = b"[MASKED]";

/// Replaces every occurrence of any secret value with `[MASKED]` in a byte stream that
/// arrives in arbitrary chunks. Holds back only the shortest tail that could still be the
/// start of a secret, so ordinary output is passed on at once (a follower sees lines live).
///
/// Use one `Masker` per (attempt, stream). Cloning is cheap (the automaton is shared), so
/// a worker can build one for an attempt's secrets and clone it, fresh, for each stream.
///
/// Every secret is masked however short it is: a one-letter secret masks that letter
/// everywhere in the output. That errs on the side of hiding too much; keeping short,
/// common values out of secret environment variables is the job author's call.
#[derive(Clone)]
pub struct Masker {
    automaton: Arc<Automaton>,
    /// The automaton's state after the last byte pushed.
    state: u32,
    /// How many bytes have been pushed in total.
    pos: u64,
    /// Stream position of `tail[0]`.
    tail_start: u64,
    /// Bytes not yet passed on: every byte from `tail_start` to `pos`.
    tail: Vec<u8>,
    /// Masked runs that touch the tail, as `[start, end)` stream positions, sorted and
    /// disjoint. Only the last one can still grow.
    runs: Vec<(u64, u64)>,
}

impl Masker {
    /// A masker for `secrets`. Empty values are ignored (they would match everywhere);
    /// every other value is masked, however short (see the type's documentation).
    pub fn new(secrets: impl IntoIterator<Item = String>) -> Masker {
        Masker {
            automaton: Arc::new(Automaton::new(secrets)),
            state: ROOT,
            pos: 0,
            tail_start: 0,
            tail: Vec::new(),
            runs: Vec::new(),
        }
    }

    /// Takes the next chunk of the stream and returns the bytes that are now final: the
    /// output up to the start of the shortest tail that could still begin a secret.
    ///
    /// Without secrets the chunk itself is returned, neither copied nor scanned: most
    /// jobs have no secrets, and their output is the bulk of what a worker handles.
    pub fn push<'a>(&mut self, chunk: &'a [u8]) -> Cow<'a, [u8]> {
        if self.automaton.is_empty() {
            return Cow::Borrowed(chunk);
        }
        self.tail.extend_from_slice(chunk);
        for &byte in chunk {
            self.state = self.automaton.step(self.state, byte);
            self.pos += 1;
            let matched = self.automaton.longest_match(self.state);
            if matched > 0 {
                self.add_run(self.pos - u64::from(matched), self.pos);
            }
        }
        // An occurrence still to be completed can only start in the longest tail that is
        // an unfinished secret prefix; everything before it is final.
        let frontier = self.pos - u64::from(self.automaton.open_prefix(self.state));
        Cow::Owned(self.release(frontier))
    }

    /// Ends the stream: returns the held-back tail, with any complete secret in it masked.
    /// The masker can then be used for a new stream.
    pub fn finish(&mut self) -> Vec<u8> {
        let out = self.release(self.pos);
        self.state = ROOT;
        out
    }

    /// Records an occurrence `[start, end)`, merging it with the runs it overlaps. `end` is
    /// never before any recorded end, since occurrences are found as they complete.
    fn add_run(&mut self, mut start: u64, end: u64) {
        while let Some(&(last_start, last_end)) = self.runs.last() {
            if last_end <= start {
                break;
            }
            start = start.min(last_start);
            self.runs.pop();
        }
        self.runs.push((start, end));
    }

    /// Passes on everything before `frontier`: bytes outside runs as they are, and one
    /// `[MASKED]` for every run that ends by then. A run that crosses the frontier may
    /// still grow, so its marker waits; its bytes before the frontier are dropped (they
    /// will never be shown), which keeps the tail short even when a secret repeats
    /// without end.
    fn release(&mut self, frontier: u64) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.tail.len());
        let mut cursor = self.tail_start;
        let mut closed = 0;
        let mut crossing = false;
        for run in &mut self.runs {
            let (start, end) = *run;
            if start >= frontier {
                break;
            }
            out.extend_from_slice(
                &self.tail[offset(self.tail_start, cursor)..offset(self.tail_start, start)],
            );
            if end <= frontier {
                out.extend_from_slice(MASK);
                cursor = end;
                closed += 1;
            } else {
                run.0 = frontier;
                crossing = true;
                break;
            }
        }
        if !crossing {
            out.extend_from_slice(
                &self.tail[offset(self.tail_start, cursor)..offset(self.tail_start, frontier)],
            );
        }
        self.runs.drain(..closed);
        self.tail.drain(..offset(self.tail_start, frontier));
        self.tail_start = frontier;
        out
    }
}

/// Index into the tail of stream position `pos`. The tail never holds more than the
/// longest secret plus one chunk, so the difference always fits.
fn offset(tail_start: u64, pos: u64) -> usize {
    usize::try_from(pos - tail_start).unwrap_or(usize::MAX)
}

impl fmt::Debug for Masker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the secrets, nor the held-back bytes (they may be part of one).
        f.debug_struct("Masker")
            .field("secrets", &self.automaton.patterns)
            .field("position", &self.pos)
            .field("held_back", &self.tail.len())
            .finish()
    }
}

const ROOT: u32 = 0;

/// An Aho–Corasick automaton over bytes: a trie of the secrets with failure links, so
/// reading a byte moves from "the longest suffix of the input that is a prefix of some
/// secret" to the same for the input one byte longer.
struct Automaton {
    /// Number of distinct non-empty secrets.
    patterns: usize,
    /// Trie edges of each state, sorted by byte.
    edges: Vec<Vec<(u8, u32)>>,
    /// The root's transitions for every byte (most bytes of ordinary output land here).
    root: [u32; 256],
    /// Each state's failure link: the state for its longest proper suffix in the trie.
    fail: Vec<u32>,
    /// Length of the secret prefix each state stands for.
    depth: Vec<u32>,
    /// Length of the longest secret that ends at this state (a suffix of its prefix), or 0.
    longest: Vec<u32>,
    /// Length of the longest suffix of this state's prefix that some secret continues
    /// (a state with children): how much input could still become a secret.
    open: Vec<u32>,
}

impl Automaton {
    fn new(secrets: impl IntoIterator<Item = String>) -> Automaton {
        let mut automaton = Automaton {
            patterns: 0,
            edges: vec![Vec::new()],
            root: [ROOT; 256],
            fail: vec![ROOT],
            depth: vec![0],
            longest: vec![0],
            open: vec![0],
        };
        for secret in secrets {
            automaton.insert(secret.as_bytes());
        }
        automaton.link();
        automaton
    }

    fn is_empty(&self) -> bool {
        self.patterns == 0
    }

    fn insert(&mut self, secret: &[u8]) {
        if secret.is_empty() {
            return;
        }
        let mut state = ROOT;
        for &byte in secret {
            state = match self.child(state, byte) {
                Some(next) => next,
                None => {
                    let next = self.new_state(state);
                    let edges = &mut self.edges[state as usize];
                    let at = edges.partition_point(|&(b, _)| b < byte);
                    edges.insert(at, (byte, next));
                    next
                }
            };
        }
        let state = state as usize;
        if self.longest[state] == 0 {
            self.patterns += 1;
            self.longest[state] = self.depth[state];
        }
    }

    fn new_state(&mut self, parent: u32) -> u32 {
        let depth = self.depth[parent as usize] + 1;
        self.edges.push(Vec::new());
        self.fail.push(ROOT);
        self.depth.push(depth);
        self.longest.push(0);
        self.open.push(0);
        u32::try_from(self.edges.len() - 1).unwrap_or(u32::MAX)
    }

    fn child(&self, state: u32, byte: u8) -> Option<u32> {
        let edges = &self.edges[state as usize];
        edges
            .binary_search_by_key(&byte, |&(b, _)| b)
            .ok()
            .map(|at| edges[at].1)
    }

    /// Computes failure links, `longest` and `open` breadth-first, so a state's failure
    /// target is always finished before the state itself.
    fn link(&mut self) {
        for &(byte, next) in &self.edges[ROOT as usize] {
            self.root[usize::from(byte)] = next;
            if !self.edges[next as usize].is_empty() {
                self.open[next as usize] = 1;
            }
        }
        let mut queue: std::collections::VecDeque<u32> =
            self.edges[ROOT as usize].iter().map(|&(_, s)| s).collect();
        while let Some(state) = queue.pop_front() {
            let edges = self.edges[state as usize].clone();
            for (byte, next) in edges {
                let target = self.step(self.fail[state as usize], byte);
                self.fail[next as usize] = target;
                if self.longest[next as usize] == 0 {
                    self.longest[next as usize] = self.longest[target as usize];
                }
                self.open[next as usize] = if self.edges[next as usize].is_empty() {
                    self.open[target as usize]
                } else {
                    self.depth[next as usize]
                };
                queue.push_back(next);
            }
        }
    }

    fn step(&self, mut state: u32, byte: u8) -> u32 {
        loop {
            if state == ROOT {
                return self.root[usize::from(byte)];
            }
            if let Some(next) = self.child(state, byte) {
                return next;
            }
            state = self.fail[state as usize];
        }
    }

    fn open_prefix(&self, state: u32) -> u32 {
        self.open[state as usize]
    }

    fn longest_match(&self, state: u32) -> u32 {
        self.longest[state as usize]
    }
}

#[cfg(test)]
mod tests {
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    use super::*;

    fn masker(secrets: &[&str]) -> Masker {
        Masker::new(secrets.iter().map(|s| (*s).to_owned()))
    }

    fn one_shot(secrets: &[&str], text: &[u8]) -> Vec<u8> {
        let mut m = masker(secrets);
        let mut out = m.push(text).into_owned();
        out.extend(m.finish());
        out
    }

    fn in_chunks(m: &mut Masker, chunks: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        for chunk in chunks {
            out.extend_from_slice(&m.push(chunk));
        }
        out.extend(m.finish());
        out
    }

    /// The definition, written plainly: find every occurrence of every secret, merge the
    /// ones that overlap, replace each merged run with the marker.
    fn reference(secrets: &[Vec<u8>], text: &[u8]) -> Vec<u8> {
        let mut occurrences = Vec::new();
        for start in 0..text.len() {
            for secret in secrets.iter().filter(|s| !s.is_empty()) {
                if text[start..].starts_with(secret) {
                    occurrences.push((start, start + secret.len()));
                }
            }
        }
        occurrences.sort_unstable();
        let mut runs: Vec<(usize, usize)> = Vec::new();
        for (start, end) in occurrences {
            match runs.last_mut() {
                Some(last) if start < last.1 => last.1 = last.1.max(end),
                _ => runs.push((start, end)),
            }
        }
        let mut out = Vec::new();
        let mut cursor = 0;
        for (start, end) in runs {
            out.extend_from_slice(&text[cursor..start]);
            out.extend_from_slice(MASK);
            cursor = end;
        }
        out.extend_from_slice(&text[cursor..]);
        out
    }

    fn contains(haystack: &[u8], needle: &[u8]) -> bool {
        !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
    }

    #[test]
    fn output_without_secrets_passes_through_unchanged() {
        let mut m = masker(&[]);
        assert_eq!(*m.push(b"hello\n"), *b"hello\n");
        assert_eq!(m.finish(), b"");
        let mut m = masker(&[""]);
        assert_eq!(*m.push(b"hello\n"), *b"hello\n");
    }

    #[test]
    fn output_without_secrets_is_passed_on_without_a_copy() {
        let mut m = masker(&[""]);
        let chunk = b"build output\n".to_vec();
        assert!(matches!(m.push(&chunk), Cow::Borrowed(out) if out.as_ptr() == chunk.as_ptr()));
        // With a secret, output is copied (it may be changed or held back).
        let mut m = masker(&["hunter2"]);
        assert!(matches!(m.push(&chunk), Cow::Owned(_)));
    }

    #[test]
    fn secret_in_one_chunk_is_masked() {
        assert_eq!(
            one_shot(&["hunter2"], b"password=hunter2\n"),
            b"password=[MASKED]\n"
        );
        assert_eq!(
            one_shot(&["hunter2"], b"hunter2 hunter2"),
            b"[MASKED] [MASKED]"
        );
    }

    #[test]
    fn secret_split_across_two_chunks_is_masked() {
        let mut m = masker(&["hunter2"]);
        assert_eq!(in_chunks(&mut m, &[b"pw=hun", b"ter2!"]), b"pw=[MASKED]!");
    }

    #[test]
    fn secret_split_across_many_chunks_is_masked() {
        let mut m = masker(&["hunter2"]);
        assert_eq!(
            in_chunks(&mut m, &[b"pw=h", b"u", b"nt", b"e", b"r", b"2", b"!"]),
            b"pw=[MASKED]!"
        );
    }

    #[test]
    fn secret_fed_one_byte_at_a_time_is_masked() {
        let text = b"a hunter2 b hunter hunter2hunter2 c";
        let mut m = masker(&["hunter2"]);
        let chunks: Vec<&[u8]> = text.chunks(1).collect();
        assert_eq!(
            in_chunks(&mut m, &chunks),
            b"a [MASKED] b hunter [MASKED][MASKED] c"
        );
    }

    #[test]
    fn ordinary_output_is_passed_on_at_once() {
        let mut m = masker(&["hunter2"]);
        assert_eq!(*m.push(b"building...\n"), *b"building...\n");
        // Only the part that could start the secret waits.
        assert_eq!(*m.push(b"pw=hunt"), *b"pw=");
        assert_eq!(*m.push(b"ing\n"), *b"hunting\n");
        assert_eq!(*m.push(b"x h"), *b"x ");
        assert_eq!(m.finish(), b"h");
    }

    #[test]
    fn secret_completed_at_the_end_of_a_chunk_is_released_at_once() {
        let mut m = masker(&["hunter2"]);
        assert_eq!(*m.push(b"pw=hunter2"), *b"pw=[MASKED]");
        assert_eq!(m.finish(), b"");
    }

    #[test]
    fn finish_masks_a_complete_secret_in_the_held_back_tail() {
        // "ab" is complete but could still grow into "abc", so it is held back.
        let mut m = masker(&["ab", "abc"]);
        assert_eq!(*m.push(b"x ab"), *b"x ");
        assert_eq!(m.finish(), b"[MASKED]");
    }

    #[test]
    fn longest_secret_wins_when_one_is_a_prefix_of_another() {
        let secrets = ["abc", "abcdef"];
        assert_eq!(one_shot(&secrets, b"xabcdefy"), b"x[MASKED]y");
        assert_eq!(one_shot(&secrets, b"xabcdey"), b"x[MASKED]dey");
        let mut m = masker(&secrets);
        assert_eq!(in_chunks(&mut m, &[b"xab", b"cd", b"efy"]), b"x[MASKED]y");
    }

    #[test]
    fn overlapping_secrets_leave_no_part_visible() {
        assert_eq!(one_shot(&["abcd", "cdef"], b"1abcdef2"), b"1[MASKED]2");
        assert_eq!(one_shot(&["bc", "abcd"], b"1abcd2"), b"1[MASKED]2");
        assert_eq!(one_shot(&["aba"], b"ababa"), b"[MASKED]");
    }

    #[test]
    fn adjacent_secrets_are_masked_separately() {
        assert_eq!(one_shot(&["abc"], b"abcabc"), b"[MASKED][MASKED]");
        assert_eq!(one_shot(&["abc", "def"], b"abcdef"), b"[MASKED][MASKED]");
    }

    #[test]
    fn regex_special_characters_are_literal() {
        let secrets = ["a.b*c(", "^$[x]|+?{1}\\"];
        assert_eq!(
            one_shot(&secrets, b"a.b*c( axbbbc a.b*c ^$[x]|+?{1}\\ x"),
            b"[MASKED] axbbbc a.b*c [MASKED] x"
        );
    }

    #[test]
    fn secrets_are_masked_in_binary_output() {
        let secret = "s\u{e9}cr\u{0}t";
        let mut text = vec![0xff, 0x00, 0xfe];
        text.extend_from_slice(secret.as_bytes());
        text.extend_from_slice(&[0x80, 0x00]);
        let mut expected = vec![0xff, 0x00, 0xfe];
        expected.extend_from_slice(MASK);
        expected.extend_from_slice(&[0x80, 0x00]);
        assert_eq!(one_shot(&[secret], &text), expected);
        let mut m = masker(&[secret]);
        let chunks: Vec<&[u8]> = text.chunks(1).collect();
        assert_eq!(in_chunks(&mut m, &chunks), expected);
    }

    #[test]
    fn short_secrets_mask_common_text() {
        assert_eq!(one_shot(&["a"], b"banana"), b"b[MASKED]n[MASKED]n[MASKED]");
    }

    #[test]
    fn a_partial_secret_at_the_end_is_released_unmasked() {
        let mut m = masker(&["hunter2"]);
        assert_eq!(*m.push(b"hunter"), *b"");
        assert_eq!(m.finish(), b"hunter");
    }

    #[test]
    fn masker_is_reusable_after_finish() {
        let mut m = masker(&["hunter2"]);
        assert_eq!(in_chunks(&mut m, &[b"hun"]), b"hun");
        assert_eq!(in_chunks(&mut m, &[b"ter2"]), b"ter2");
        assert_eq!(in_chunks(&mut m, &[b"hunter2"]), b"[MASKED]");
    }

    #[test]
    fn endlessly_repeated_secret_keeps_the_held_back_tail_short() {
        let mut m = masker(&["aa"]);
        let chunk = vec![b'a'; 4096];
        for _ in 0..256 {
            assert_eq!(*m.push(&chunk), *b"");
            assert!(m.tail.len() <= 2, "tail grew to {}", m.tail.len());
        }
        assert_eq!(*m.push(b"b"), *b"[MASKED]b");
        assert_eq!(m.finish(), b"");
    }

    #[test]
    fn debug_output_does_not_show_secrets_or_held_bytes() {
        let mut m = masker(&["hunter2"]);
        let _ = m.push(b"hunte");
        let shown = format!("{m:?}");
        assert!(!shown.contains("hunt"), "{shown}");
    }

    /// For random text with planted secrets cut at random places, the streamed output is
    /// the one-shot output, and no secret survives.
    #[test]
    fn random_splits_match_one_shot_masking_and_never_leak() {
        let mut rng = StdRng::seed_from_u64(0x0062_6572_7468);
        for round in 0..3000 {
            // A small alphabet makes overlaps, prefixes and near-misses common.
            let alphabet: &[u8] = if round % 3 == 0 {
                b"ab"
            } else {
                b"abc\n\x00\xff"
            };
            let secret_count = rng.random_range(1..=5);
            let secrets: Vec<Vec<u8>> = (0..secret_count)
                .map(|_| {
                    let len = rng.random_range(1..=7);
                    (0..len)
                        .map(|_| alphabet[rng.random_range(0..alphabet.len())])
                        .filter(|b| b.is_ascii())
                        .collect()
                })
                .collect();
            let secret_strings: Vec<String> = secrets
                .iter()
                .map(|s| String::from_utf8_lossy(s).into_owned())
                .collect();
            let secrets: Vec<Vec<u8>> = secret_strings
                .iter()
                .map(|s| s.as_bytes().to_vec())
                .collect();

            let mut text = Vec::new();
            let len = rng.random_range(0..200);
            while text.len() < len {
                if rng.random_bool(0.2) {
                    text.extend_from_slice(&secrets[rng.random_range(0..secrets.len())]);
                } else {
                    text.push(alphabet[rng.random_range(0..alphabet.len())]);
                }
            }

            let expected = reference(&secrets, &text);
            let mut whole = Masker::new(secret_strings.clone());
            let mut got_whole = whole.push(&text).into_owned();
            got_whole.extend(whole.finish());
            assert_eq!(got_whole, expected, "one shot, secrets {secrets:?}");

            let mut m = Masker::new(secret_strings);
            let mut out = Vec::new();
            let mut rest = &text[..];
            while !rest.is_empty() {
                let cut = rng.random_range(0..=rest.len().min(9));
                let (chunk, tail) = rest.split_at(cut);
                out.extend_from_slice(&m.push(chunk));
                rest = tail;
                // Nothing is held back unless it could still become a secret.
                let seen = &text[..text.len() - rest.len()];
                let could_grow = (0..seen.len()).any(|start| {
                    secrets
                        .iter()
                        .any(|s| s.len() > seen.len() - start && s.starts_with(&seen[start..]))
                });
                if !could_grow {
                    assert_eq!(out, reference(&secrets, seen), "held back needlessly");
                }
            }
            out.extend(m.finish());
            assert_eq!(
                out,
                expected,
                "split input, secrets {secrets:?}, text {:?}",
                String::from_utf8_lossy(&text)
            );
            for secret in &secrets {
                assert!(!contains(&out, secret), "{secret:?} leaked");
            }
        }
    }
}
