//! `sopkit check`: every finding the corpus gives, as data. Nothing here prints.

pub mod approvals;
pub mod links;
pub mod sop;
pub mod terms;

use std::collections::HashMap;

use rayon::prelude::*;

use crate::corpus::{Corpus, DocKind};
use crate::diagnostic::{Diagnostic, Rule, Severity};

/// All findings for a corpus, sorted by file and position.
pub fn check(corpus: &Corpus) -> Vec<Diagnostic> {
    let mut out = corpus.problems.clone();
    let matcher = terms::TermMatcher::new(corpus);
    let per_doc: Vec<Vec<Diagnostic>> = corpus
        .docs
        .par_iter()
        .map(|doc| {
            let links = links::check_document(corpus, doc);
            let mut d = links.diagnostics;
            if doc.kind == DocKind::Sop {
                d.extend(terms::check_document(
                    corpus,
                    &matcher,
                    doc,
                    &links.linked_terms,
                ));
            }
            d
        })
        .collect();
    out.extend(per_doc.into_iter().flatten());
    let per_sop: Vec<Vec<Diagnostic>> = corpus
        .sops
        .par_iter()
        .map(|s| sop::check_sop(corpus, s))
        .collect();
    out.extend(per_sop.into_iter().flatten());
    out.extend(sop::check_ids(corpus));
    out.extend(sop::check_roles_and_people(corpus));
    sort(&mut out);
    out
}

pub fn sort(diags: &mut [Diagnostic]) {
    diags.sort_by(|a, b| {
        (&a.path, a.span.map(|s| s.start), a.rule, &a.message).cmp(&(
            &b.path,
            b.span.map(|s| s.start),
            b.rule,
            &b.message,
        ))
    });
}

/// The findings of `current` that `base` does not have. Findings are compared by rule, file
/// and message (never by line, so edits above a finding do not make it new); repeats count.
pub fn new_since(current: Vec<Diagnostic>, base: &[Diagnostic]) -> Vec<Diagnostic> {
    let key = |d: &Diagnostic| (d.rule, d.path.clone(), d.message.clone());
    let mut counts: HashMap<(crate::diagnostic::Rule, String, String), usize> = HashMap::new();
    for d in base {
        *counts.entry(key(d)).or_default() += 1;
    }
    let mut keep = Vec::with_capacity(current.len());
    for d in current {
        let seen = counts.get_mut(&key(&d)).filter(|n| **n > 0);
        match seen {
            Some(n) => *n -= 1,
            None => keep.push(d),
        }
    }
    keep
}

/// Counts of errors and warnings.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Summary {
    pub errors: usize,
    pub warnings: usize,
    pub files: usize,
}

/// What `check` read, for people: the Markdown files by kind, and the folders holding
/// Markdown files it did not read (outside the configured folders, or excluded), whose
/// links are still resolved as paths.
pub fn scope_line(corpus: &Corpus) -> String {
    use crate::corpus::DocKind;
    let count = |k: DocKind| corpus.docs.iter().filter(|d| d.kind == k).count();
    let plural = |n: usize, w: &str| format!("{n} {w}{}", if n == 1 { "" } else { "s" });
    let mut read = vec![
        plural(count(DocKind::Sop), "SOP"),
        format!("{} glossary", count(DocKind::Glossary)),
        plural(count(DocKind::Role), "role"),
        format!("{} other", count(DocKind::Other)),
    ];
    read.retain(|s| !s.starts_with("0 "));
    let mut unread: std::collections::BTreeMap<&str, usize> = Default::default();
    for f in corpus.tree.files() {
        let lower = f.to_ascii_lowercase();
        if (lower.ends_with(".md") || lower.ends_with(".markdown")) && corpus.doc(f).is_none() {
            let folder = f.split_once('/').map_or(".", |(top, _)| top);
            *unread.entry(folder).or_default() += 1;
        }
    }
    let mut line = format!(
        "read {} Markdown file{}{}",
        corpus.docs.len(),
        if corpus.docs.len() == 1 { "" } else { "s" },
        if read.is_empty() {
            String::new()
        } else {
            format!(" ({})", read.join(", "))
        }
    );
    if !unread.is_empty() {
        let folders: Vec<String> = unread
            .iter()
            .map(|(f, n)| {
                if *f == "." {
                    format!("the root ({n})")
                } else {
                    format!("{f}/ ({n})")
                }
            })
            .collect();
        line.push_str(&format!(
            "; not read: {} (links into them are checked as paths)",
            folders.join(", ")
        ));
    }
    let ignored = corpus.tree.ignored();
    if !ignored.is_empty() {
        line.push_str(&format!("; left out by .gitignore: {}", ignored.join(", ")));
    }
    line
}

pub fn summarize(diags: &[Diagnostic], files: usize) -> Summary {
    let errors = diags
        .iter()
        .filter(|d| d.severity == Severity::Error)
        .count();
    Summary {
        errors,
        warnings: diags.len() - errors,
        files,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diagnostic::Rule;

    #[test]
    fn new_since_counts_repeats_and_ignores_lines() {
        let d = |msg: &str, at: usize| {
            Diagnostic::new(
                Rule::BrokenLink,
                "a.md",
                Some(crate::source::Span::new(at, at)),
                msg,
            )
        };
        let base = vec![d("x", 1)];
        let now = vec![d("x", 50), d("x", 60), d("y", 70)];
        let new = new_since(now, &base);
        assert_eq!(
            new.iter().map(|d| d.message.as_str()).collect::<Vec<_>>(),
            ["x", "y"]
        );
    }
}

/// What `sopkit check` produced for one repository.
pub struct Outcome {
    pub corpus: Corpus,
    pub diagnostics: Vec<Diagnostic>,
    pub summary: Summary,
}

/// Approval findings, when the repository is in git and has a layout (not zero-config).
fn approval_findings(
    corpus: &Corpus,
    root: &std::path::Path,
    rev: Option<&str>,
    now: i64,
) -> Result<Vec<Diagnostic>, Error> {
    if corpus.mode == crate::corpus::Mode::ZeroConfig || crate::git::find(root).is_none() {
        return Ok(Vec::new());
    }
    let history = crate::approval::history::load(root, rev, &corpus.config)?;
    Ok(approvals::check(corpus, &history, now))
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    History(#[from] crate::approval::history::Error),
    #[error(transparent)]
    Tree(#[from] crate::tree::Error),
    #[error(transparent)]
    Corpus(#[from] crate::corpus::Error),
}

/// `[paths] evidence` must lie inside the repository: `run` writes records, logs and step
/// output there.
fn evidence_folder_finding(corpus: &Corpus, root: &std::path::Path) -> Option<Diagnostic> {
    if corpus.mode == crate::corpus::Mode::ZeroConfig {
        return None;
    }
    let e = crate::evidence::folder(root, &corpus.config.paths.evidence).err()?;
    let name = crate::config::FILE_NAME;
    let span = corpus.source(name).and_then(|f| {
        let i = f.text.find("evidence")?;
        Some(crate::source::Span::new(i, i + "evidence".len()))
    });
    Some(Diagnostic::new(
        Rule::InvalidConfig,
        name,
        span,
        e.to_string(),
    ))
}

/// Checks the working tree at `root`; with `base`, keeps only findings that are new
/// compared to that git revision.
pub fn check_path(root: &std::path::Path, base: Option<&str>) -> Result<Outcome, Error> {
    let now = approvals::now();
    let corpus = Corpus::load(crate::tree::Tree::open_dir(root)?)?;
    let mut diagnostics = check(&corpus);
    diagnostics.extend(approval_findings(&corpus, root, None, now)?);
    diagnostics.extend(evidence_folder_finding(&corpus, root));
    sort(&mut diagnostics);
    if let Some(rev) = base {
        let before = Corpus::load(crate::tree::Tree::open_revision(root, rev)?)?;
        let mut old = check(&before);
        old.extend(approval_findings(&before, root, Some(rev), now)?);
        diagnostics = new_since(diagnostics, &old);
    }
    let summary = summarize(&diagnostics, corpus.docs.len());
    Ok(Outcome {
        corpus,
        diagnostics,
        summary,
    })
}
