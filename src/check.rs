//! `sopkit check`: every finding the corpus gives, as data. Nothing here prints.

pub mod approvals;
pub mod links;
pub mod sop;
pub mod terms;

use std::collections::HashMap;

use rayon::prelude::*;

use crate::corpus::{Corpus, DocKind};
use crate::diagnostic::{Diagnostic, Rule, Severity};
use crate::workspace::{Revision, Workspace};

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

/// What `sopkit check` found in one repository.
pub struct Checked {
    pub diagnostics: Vec<Diagnostic>,
    pub summary: Summary,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    History(#[from] crate::approval::history::Error),
    #[error(transparent)]
    Workspace(#[from] crate::workspace::Error),
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

/// The check pipeline, the one that `check` and `build` both run: every finding of the
/// corpus, of its approvals (`history`, where the repository is in git and configured) and
/// of its configuration at `root`, sorted. Reviews are judged at `review_now`.
pub fn findings(
    corpus: &Corpus,
    root: &std::path::Path,
    history: Option<&crate::approval::history::History>,
    review_now: i64,
) -> Vec<Diagnostic> {
    let mut out = check(corpus);
    if corpus.mode != crate::corpus::Mode::ZeroConfig
        && let Some(h) = history
    {
        out.extend(approvals::check(corpus, h, review_now));
    }
    out.extend(evidence_folder_finding(corpus, root));
    sort(&mut out);
    out
}

/// The approval history that [`findings`] judges `ws` by: only in git, and only where a
/// `sopkit.toml` says what an SOP is.
fn approvals_history(ws: &Workspace) -> Result<Option<&crate::approval::history::History>, Error> {
    if ws.corpus.mode == crate::corpus::Mode::ZeroConfig || !ws.in_git() {
        return Ok(None);
    }
    Ok(Some(ws.history()?))
}

/// `sopkit check`: the findings of `ws`; with `base`, only those that are new compared to
/// that git revision.
pub fn run(ws: &Workspace, base: Option<&str>) -> Result<Checked, Error> {
    let mut diagnostics = findings(&ws.corpus, &ws.root, approvals_history(ws)?, ws.review_now);
    if let Some(rev) = base {
        let before = Workspace::open(&ws.root, Revision::At(rev))?;
        let old = findings(
            &before.corpus,
            &before.root,
            approvals_history(&before)?,
            ws.review_now,
        );
        diagnostics = new_since(diagnostics, &old);
    }
    let summary = summarize(&diagnostics, ws.corpus.docs.len());
    Ok(Checked {
        diagnostics,
        summary,
    })
}
