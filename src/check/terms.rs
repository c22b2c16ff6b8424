//! Glossary terms used in an SOP's prose without a link to their definition. The full name
//! is matched without regard to case (a plural `s`/`es` allowed), the acronym exactly, both
//! as whole words; the longest match wins, so "Backup Set" is not also counted as "Backup".

use std::collections::HashSet;

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};

use crate::corpus::{Corpus, Document};
use crate::diagnostic::{Diagnostic, Rule};
use crate::source::Span;

pub struct TermMatcher {
    names: Option<AhoCorasick>,
    name_terms: Vec<usize>,
    acronyms: Option<AhoCorasick>,
    acronym_terms: Vec<usize>,
}

impl TermMatcher {
    pub fn new(corpus: &Corpus) -> TermMatcher {
        let mut names = Vec::new();
        let mut name_terms = Vec::new();
        let mut acronyms = Vec::new();
        let mut acronym_terms = Vec::new();
        for (i, t) in corpus.terms.iter().enumerate() {
            if t.name.chars().count() >= 3 {
                names.push(t.name.clone());
                name_terms.push(i);
            }
            if let Some(a) = &t.acronym
                && a.chars().count() >= 2
            {
                acronyms.push(a.clone());
                acronym_terms.push(i);
            }
        }
        let build = |pats: &[String], fold: bool| {
            (!pats.is_empty()).then(|| {
                AhoCorasickBuilder::new()
                    .ascii_case_insensitive(fold)
                    .match_kind(MatchKind::LeftmostLongest)
                    .build(pats)
                    .expect("term patterns are plain strings")
            })
        };
        TermMatcher {
            names: build(&names, true),
            name_terms,
            acronyms: build(&acronyms, false),
            acronym_terms,
        }
    }

    /// The first use of each term in `doc`'s prose, in order of appearance.
    pub fn first_uses(&self, doc: &Document) -> Vec<(usize, Span)> {
        let text = &doc.file.text;
        let mut seen = HashSet::new();
        let mut uses = Vec::new();
        for span in &doc.markdown.prose {
            let chunk = &text[span.start..span.end];
            for (ac, terms, suffixes) in [
                (&self.names, &self.name_terms, &["es", "s", ""][..]),
                (&self.acronyms, &self.acronym_terms, &["s", ""][..]),
            ] {
                let Some(ac) = ac else { continue };
                for m in ac.find_iter(chunk) {
                    if !whole_word(chunk, m.start(), m.end(), suffixes) {
                        continue;
                    }
                    let term = terms[m.pattern().as_usize()];
                    if seen.insert(term) {
                        uses.push((
                            term,
                            Span::new(span.start + m.start(), span.start + m.end()),
                        ));
                    }
                }
            }
        }
        uses.sort_by_key(|(_, s)| *s);
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
