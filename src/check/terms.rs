//! Glossary terms used in an SOP's prose without a link to their definition. The full name
//! is matched without regard to case (a plural `s`/`es` allowed), the acronym exactly, both
//! as whole words; the longest match wins, so "Backup Set" is not also counted as "Backup".

use rustc_hash::FxHashSet as HashSet;

pub use crate::corpus::terms::{TermMatcher, relative};
use crate::corpus::{Corpus, Document};
use crate::diagnostic::{Diagnostic, Rule};

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
