//! Finding glossary terms in prose: the full name without regard to case (a plural `s`/`es`
//! allowed), the acronym exactly, both as whole words; the longest match wins, so "Backup
//! Set" is not also counted as "Backup". `check` reports terms used without a link, and
//! `render` lists the terms an SOP uses.

use rustc_hash::FxHashSet as HashSet;

use aho_corasick::{
    AhoCorasick, AhoCorasickBuilder, AhoCorasickKind, Anchored, Input, MatchKind, StartKind,
};

use super::{Corpus, Document};
use crate::source::Span;

pub struct TermMatcher {
    automaton: Option<AhoCorasick>,
    /// Per pattern: the term, and whether it is an acronym (then its case must match).
    patterns: Vec<(usize, bool)>,
    texts: Vec<String>,
    /// Bit `prefix_bit(a, b, c)` of `names` is set when some full name starts with the bytes
    /// `a b c` (ASCII case folded), of `acronyms` when some acronym does (exact case); a
    /// two-byte pattern sets the bit for every `c`. This is the cheap test that decides where
    /// the automaton is run at all.
    names: Box<[u64; 1024]>,
    acronyms: Box<[u64; 1024]>,
}

/// Bytes that continue a word: a term cannot start right after one.
fn continues_word(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'_'
}

/// A 16-bit hash of three bytes (a collision only costs one automaton run).
fn prefix_bit(a: u8, b: u8, c: u8) -> usize {
    let [a, b, c] = [a, b, c].map(usize::from);
    ((a << 8 | b) ^ (c << 5) ^ (c >> 3)) & 0xffff
}

fn has_bit(set: &[u64; 1024], bit: usize) -> bool {
    set[bit / 64] & (1 << (bit % 64)) != 0
}

/// The word starts among `bytes[from..to]` as a bit mask (bit `j` for `from + j`), where
/// `to - from <= 64`: positions not preceded by a byte that continues a word.
fn word_starts(bytes: &[u8], from: usize, to: usize) -> u64 {
    if from > 0
        && let Some(prev) = bytes.get(from - 1..from + 63)
        && let Ok(prev) = <&[u8; 64]>::try_from(prev)
    {
        let all = not_word_mask(prev);
        return if to - from == 64 {
            all
        } else {
            all & ((1u64 << (to - from)) - 1)
        };
    }
    let mut mask = 0u64;
    for (j, pos) in (from..to).enumerate() {
        let prev = if pos == 0 { b' ' } else { bytes[pos - 1] };
        mask |= u64::from(!continues_word(prev)) << j;
    }
    mask
}

/// Bit `j` set when `bytes[j]` does not continue a word, sixteen bytes at a time. Written
/// with SSE2 (part of every x86-64 CPU) because the compiler does not vectorize this loop.
#[cfg(target_arch = "x86_64")]
fn not_word_mask(bytes: &[u8; 64]) -> u64 {
    use std::arch::x86_64::*;
    // Unsigned `x - lo < len` as a signed comparison, since SSE2 only compares signed bytes.
    let in_range = |v: __m128i, lo: u8, len: u8| {
        // SAFETY: SSE2 is always available on x86-64.
        unsafe {
            let shifted = _mm_xor_si128(
                _mm_sub_epi8(v, _mm_set1_epi8(lo as i8)),
                _mm_set1_epi8(i8::MIN),
            );
            _mm_cmplt_epi8(shifted, _mm_set1_epi8((len ^ 0x80) as i8))
        }
    };
    let mut mask = 0u64;
    for (k, chunk) in bytes.chunks_exact(16).enumerate() {
        // SAFETY: SSE2 is always available on x86-64, and the load reads the 16 bytes of
        // `chunk` (an unaligned load).
        let bits = unsafe {
            let v = _mm_loadu_si128(chunk.as_ptr().cast());
            let letter = in_range(_mm_or_si128(v, _mm_set1_epi8(0x20)), b'a', 26);
            let digit = in_range(v, b'0', 10);
            let dash = _mm_cmpeq_epi8(v, _mm_set1_epi8(b'-' as i8));
            let underscore = _mm_cmpeq_epi8(v, _mm_set1_epi8(b'_' as i8));
            let word = _mm_or_si128(_mm_or_si128(letter, digit), _mm_or_si128(dash, underscore));
            !_mm_movemask_epi8(word) as u16
        };
        mask |= u64::from(bits) << (16 * k);
    }
    mask
}

#[cfg(not(target_arch = "x86_64"))]
fn not_word_mask(bytes: &[u8; 64]) -> u64 {
    let mut mask = 0u64;
    for (j, &b) in bytes.iter().enumerate() {
        mask |= u64::from(!continues_word(b)) << j;
    }
    mask
}

impl TermMatcher {
    pub fn new(corpus: &Corpus) -> TermMatcher {
        let mut texts = Vec::new();
        let mut patterns = Vec::new();
        for (i, t) in corpus.terms.iter().enumerate() {
            if t.name.chars().count() >= 3 {
                texts.push(t.name.clone());
                patterns.push((i, false));
            }
            if let Some(a) = &t.acronym
                && a.chars().count() >= 2
            {
                texts.push(a.clone());
                patterns.push((i, true));
            }
        }
        let mut names = Box::new([0u64; 1024]);
        let mut acronyms = Box::new([0u64; 1024]);
        for (t, &(_, acronym)) in texts.iter().zip(&patterns) {
            let (set, b) = if acronym {
                (&mut acronyms, t.as_bytes().to_vec())
            } else {
                (&mut names, t.to_ascii_lowercase().into_bytes())
            };
            // Every pattern has at least two characters, so at least two bytes.
            let thirds = match b.get(2) {
                Some(&c) => c..=c,
                None => 0..=u8::MAX,
            };
            for c in thirds {
                let p = prefix_bit(b[0], b[1], c);
                set[p / 64] |= 1 << (p % 64);
            }
        }
        // One case-insensitive automaton for names and acronyms alike; an acronym match is
        // then kept only when its case is exact. It is only ever run anchored, at a word
        // start that the prefix tables let through.
        let automaton = (!texts.is_empty()).then(|| {
            AhoCorasickBuilder::new()
                .kind(Some(AhoCorasickKind::DFA))
                .start_kind(StartKind::Anchored)
                .ascii_case_insensitive(true)
                .match_kind(MatchKind::LeftmostLongest)
                .build(&texts)
                .expect("term patterns are plain strings")
        });
        TermMatcher {
            automaton,
            patterns,
            texts,
            names,
            acronyms,
        }
    }

    /// Whether a pattern may start at `bytes[i]` (`i + 1 < bytes.len()`).
    fn may_start(&self, bytes: &[u8], i: usize) -> bool {
        let (a, b) = (bytes[i], bytes[i + 1]);
        let c = bytes.get(i + 2).copied().unwrap_or(0);
        let acronym = has_bit(&self.acronyms, prefix_bit(a, b, c));
        let name = has_bit(
            &self.names,
            prefix_bit(
                a.to_ascii_lowercase(),
                b.to_ascii_lowercase(),
                c.to_ascii_lowercase(),
            ),
        );
        acronym || name
    }

    /// The first use of each term in `doc`'s prose, in order of appearance.
    pub fn first_uses(&self, doc: &Document) -> Vec<(usize, Span)> {
        let Some(ac) = &self.automaton else {
            return Vec::new();
        };
        let text = &doc.file.text;
        let bytes = text.as_bytes();
        let mut seen = HashSet::default();
        let mut uses = Vec::new();
        // Without a prefilter (there are too many patterns for one) the automaton costs about
        // 2 ns a byte whatever the patterns; a term can only start at a word start, so the
        // automaton runs only where a word starts with the first bytes of some pattern.
        for p in &doc.markdown.prose {
            // Matches end where the next search may begin.
            let mut resume = p.start;
            let mut block = p.start;
            while block + 1 < p.end {
                let block_end = (block + 64).min(p.end - 1);
                let mut starts = word_starts(bytes, block, block_end);
                while starts != 0 {
                    let i = block + starts.trailing_zeros() as usize;
                    starts &= starts - 1;
                    if i < resume || !self.may_start(bytes, i) {
                        continue;
                    }
                    let input = Input::new(text).range(i..p.end).anchored(Anchored::Yes);
                    let Some(m) = ac.find(input) else {
                        continue;
                    };
                    let (s, e) = (m.start(), m.end());
                    let pattern = m.pattern().as_usize();
                    let (term, acronym) = self.patterns[pattern];
                    let suffixes: &[&str] = if acronym {
                        &["s", ""]
                    } else {
                        &["es", "s", ""]
                    };
                    if (acronym && text[s..e] != self.texts[pattern])
                        || !whole_word(text, s, e, suffixes)
                    {
                        continue;
                    }
                    if seen.insert(term) {
                        uses.push((term, Span::new(s, e)));
                    }
                    resume = e;
                }
                block = block_end;
            }
        }
        uses
    }
}

fn whole_word(text: &str, start: usize, end: usize, suffixes: &[&str]) -> bool {
    let before = text[..start].chars().next_back();
    if before.is_some_and(|c| c.is_alphanumeric() || c == '-' || c == '_') {
        return false;
    }
    let rest = &text[end..];
    suffixes.iter().any(|s| {
        rest.starts_with(s)
            && !rest[s.len()..]
                .chars()
                .next()
                .is_some_and(|c| c.is_alphanumeric() || c == '_')
    })
}

/// The relative path from the file `from` to the file `to` (both repository paths).
pub fn relative(from: &str, to: &str) -> String {
    let from_dir: Vec<&str> = crate::tree::parent_of(from)
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    let to_parts: Vec<&str> = to.split('/').collect();
    let common = from_dir
        .iter()
        .zip(&to_parts)
        .take_while(|(a, b)| a == b)
        .count();
    let mut parts: Vec<&str> = vec![".."; from_dir.len() - common];
    parts.extend(&to_parts[common..]);
    parts.join("/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths() {
        assert_eq!(
            relative("procedures/a.md", "glossary/g.md"),
            "../glossary/g.md"
        );
        assert_eq!(relative("a.md", "glossary/g.md"), "glossary/g.md");
        assert_eq!(relative("procedures/x/a.md", "procedures/b.md"), "../b.md");
    }

    /// The terms `first_uses` finds in `prose` (a file of its own beside a glossary), and
    /// the ones [`reference_uses`] finds.
    fn found_in(prose: &str) -> (Vec<String>, Vec<String>) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("glossary.md"),
            "# Glossary\n\n## Recovery Point Objective (RPO)\n\nHow much.\n\n## Restore Test\n\nA test.\n\n## Installation Qualification (IQ)\n\nInstallation.\n\n## Hot Site\n\nA site.\n\n## Qualität (QÄ)\n\nGüte.\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("a.md"), prose).unwrap();
        let corpus = Corpus::read(crate::tree::Tree::open_dir(dir.path()).unwrap());
        let matcher = TermMatcher::new(&corpus);
        let doc = corpus.doc("a.md").unwrap();
        let text = |uses: Vec<(usize, Span)>| -> Vec<String> {
            uses.into_iter()
                .map(|(_, s)| doc.file.text[s.start..s.end].to_string())
                .collect()
        };
        (
            text(matcher.first_uses(doc)),
            text(reference_uses(&matcher, doc)),
        )
    }

    fn uses_in(prose: &str) -> Vec<String> {
        found_in(prose).0
    }

    /// What `first_uses` must find, the slow way: at every word start of every prose span,
    /// the longest pattern there (ASCII case folded), kept when its case and the words
    /// around it are right; the next search begins where a kept use ends.
    fn reference_uses(m: &TermMatcher, doc: &Document) -> Vec<(usize, Span)> {
        let bytes = doc.file.text.as_bytes();
        let (mut seen, mut uses) = (HashSet::default(), Vec::new());
        for p in &doc.markdown.prose {
            let mut resume = p.start;
            for i in p.start..p.end.saturating_sub(1) {
                if i < resume || (i > 0 && continues_word(bytes[i - 1])) {
                    continue;
                }
                let longest = m
                    .texts
                    .iter()
                    .enumerate()
                    .filter(|(_, t)| {
                        bytes.get(i..i + t.len()).is_some_and(|b| {
                            i + t.len() <= p.end && b.eq_ignore_ascii_case(t.as_bytes())
                        })
                    })
                    .max_by_key(|(k, t)| (t.len(), std::cmp::Reverse(*k)));
                let Some((k, t)) = longest else { continue };
                let (term, acronym) = m.patterns[k];
                let e = i + t.len();
                let suffixes: &[&str] = if acronym {
                    &["s", ""]
                } else {
                    &["es", "s", ""]
                };
                if (acronym && &bytes[i..e] != t.as_bytes())
                    || !whole_word(&doc.file.text, i, e, suffixes)
                {
                    continue;
                }
                if seen.insert(term) {
                    uses.push((term, Span::new(i, e)));
                }
                resume = e;
            }
        }
        uses
    }

    proptest::proptest! {
        #[test]
        fn the_fast_scan_finds_what_the_slow_one_does(
            pieces in proptest::collection::vec(proptest::sample::select(vec![
                "RPO", "rpo", "RPOs", "Restore Test", "restore tests", "Recovery Point Objective",
                "IQ", "iq", "hot site", "Hot Sites", "QÄ", "qualität", "Qualität", "-", "_", " ",
                " ", " ", "é", "\u{2014}", "x", "ab", "\n", "*", "`", "[", "](g.md)", ".", "Ä",
            ]), 0..60),
            pad in 0usize..70,
        ) {
            let prose = format!("{}{}", "w ".repeat(pad / 2), pieces.concat());
            let (fast, slow) = found_in(&prose);
            proptest::prop_assert_eq!(fast, slow, "{:?}", prose);
        }
    }

    #[test]
    fn uses_are_found_wherever_they_sit_in_a_line() {
        // Every offset around the 64-byte blocks the scan works in, at the end of a line, and
        // at the very start of the file.
        for pad in (0..140).step_by(3) {
            let text = format!("{} RPO\n", "x".repeat(pad));
            assert_eq!(uses_in(&text), ["RPO"], "pad {pad}");
        }
        assert_eq!(uses_in("RPO"), ["RPO"]);
        assert_eq!(uses_in("restore tests run."), ["restore test"]);
    }

    #[test]
    fn only_whole_words_in_prose_count() {
        assert_eq!(
            uses_in("xRPO, pre-RPO, rpo, RPO_x, `RPO`, IQs are [RPO](g.md)."),
            ["IQ"]
        );
        // A hyphen or a dash may follow or precede a use; a term's first use is its name or
        // its acronym, whichever comes first.
        assert_eq!(uses_in("RPO-based plans"), ["RPO"]);
        assert_eq!(uses_in("targets\u{2014}RPO and RTO"), ["RPO"]);
        assert_eq!(
            uses_in("the Recovery Point Objective (RPO) and the RPO again"),
            ["Recovery Point Objective"]
        );
        assert_eq!(uses_in("Ärger RPOé"), Vec::<String>::new());
    }

    #[test]
    fn words() {
        assert!(whole_word("the RPO is", 4, 7, &["s", ""]));
        assert!(whole_word("two VMs run", 4, 6, &["s", ""]));
        assert!(!whole_word("RPOX", 0, 3, &["s", ""]));
        assert!(!whole_word("xRPO", 1, 4, &["s", ""]));
        assert!(whole_word("restore tests.", 0, 12, &["es", "s", ""]));
    }
}
