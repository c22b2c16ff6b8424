//! Glossary terms used in an SOP's prose without a link to their definition. The full name
//! is matched without regard to case (a plural `s`/`es` allowed), the acronym exactly, both
//! as whole words; the longest match wins, so "Backup Set" is not also counted as "Backup".

use std::collections::HashSet;

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, AhoCorasickKind, MatchKind};

use crate::corpus::{Corpus, Document};
use crate::diagnostic::{Diagnostic, Rule};
use crate::source::Span;

pub struct TermMatcher {
    automaton: Option<AhoCorasick>,
    /// Per pattern: the term, and whether it is an acronym (then its case must match).
    patterns: Vec<(usize, bool)>,
    texts: Vec<String>,
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
        // One case-insensitive automaton for names and acronyms alike (one pass over the
        // text); an acronym match is then kept only when its case is exact.
        let automaton = (!texts.is_empty()).then(|| {
            AhoCorasickBuilder::new()
                .kind(Some(AhoCorasickKind::DFA))
                .ascii_case_insensitive(true)
                .match_kind(MatchKind::LeftmostLongest)
                .build(&texts)
                .expect("term patterns are plain strings")
        });
        TermMatcher {
            automaton,
            patterns,
            texts,
        }
    }

    /// The first use of each term in `doc`'s prose, in order of appearance.
    pub fn first_uses(&self, doc: &Document) -> Vec<(usize, Span)> {
        let text = &doc.file.text;
        let prose = &doc.markdown.prose;
        let (Some(ac), Some(first), Some(last)) = (&self.automaton, prose.first(), prose.last())
        else {
            return Vec::new();
        };
        // One scan over the region that holds prose (the many small text events would each
        // cost a call), keeping the matches that lie wholly inside one prose span.
        let base = first.start;
        let region = &text[base..last.end];
        let in_prose = |s: usize, e: usize| {
            let i = prose.partition_point(|p| p.start <= s);
            i > 0 && e <= prose[i - 1].end
        };
        let mut seen = HashSet::new();
        let mut uses = Vec::new();
        for m in ac.find_iter(region) {
            let (s, e) = (base + m.start(), base + m.end());
            let pattern = m.pattern().as_usize();
            let (term, acronym) = self.patterns[pattern];
            let suffixes: &[&str] = if acronym {
                &["s", ""]
            } else {
                &["es", "s", ""]
            };
            if seen.contains(&term)
                || (acronym && text[s..e] != self.texts[pattern])
                || !in_prose(s, e)
                || !whole_word(text, s, e, suffixes)
            {
                continue;
            }
            seen.insert(term);
            uses.push((term, Span::new(s, e)));
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

pub fn check_document(
    corpus: &Corpus,
    matcher: &TermMatcher,
    doc: &Document,
    linked: &HashSet<usize>,
) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    for (term, span) in matcher.first_uses(doc) {
        if linked.contains(&term) {
            continue;
        }
        let t = &corpus.terms[term];
        let glossary = corpus.docs[t.doc].path();
        let target = relative(doc.path(), glossary);
        out.push(
            Diagnostic::new(
                Rule::UnlinkedTerm,
                doc.path(),
                Some(span),
                format!(
                    "glossary term \"{}\" is used but never linked in this SOP",
                    t.name_with_acronym()
                ),
            )
            .with_help(format!(
                "link one use (the first is best) to `{target}#{}`",
                t.slug
            )),
        );
    }
    out
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

    #[test]
    fn words() {
        assert!(whole_word("the RPO is", 4, 7, &["s", ""]));
        assert!(whole_word("two VMs run", 4, 6, &["s", ""]));
        assert!(!whole_word("RPOX", 0, 3, &["s", ""]));
        assert!(!whole_word("xRPO", 1, 4, &["s", ""]));
        assert!(whole_word("restore tests.", 0, 12, &["es", "s", ""]));
    }
}
