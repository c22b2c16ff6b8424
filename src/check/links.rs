//! Links, images, anchors and reference labels. A link into the glossary is a term
//! reference, into the roles folder a role reference, into the procedures a cross-reference;
//! each is checked against the corpus. External URLs are recognised and never fetched.

use rustc_hash::FxHashSet as HashSet;
use std::sync::LazyLock;

use regex::Regex;

pub use crate::corpus::links::{Target, resolve};
use crate::corpus::markdown::{Link, LinkKind};
use crate::corpus::{Corpus, DocKind, Document, under};
use crate::diagnostic::{Diagnostic, Rule};
use crate::tree::{self, Kind};

static DOMAIN_LIKE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^(www\.)?[a-z0-9-]+(\.[a-z0-9-]+)*\.(com|org|net|io|de|eu|co|uk|fr|ch|at|nl|dev|app|cloud)(/.*)?$").expect("static regex")
});

/// What checking one document's links found: findings and the glossary terms it links.
pub struct DocLinks {
    pub diagnostics: Vec<Diagnostic>,
    /// Indices into `corpus.terms`.
    pub linked_terms: HashSet<usize>,
}

pub fn check_document(corpus: &Corpus, doc: &Document) -> DocLinks {
    let mut out = DocLinks {
        diagnostics: Vec::new(),
        linked_terms: HashSet::default(),
    };
    let path = doc.path();
    let md = &doc.markdown;
    for link in &md.links {
        check_link(corpus, doc, link, &mut out);
    }
    for r in &md.undefined_references {
        let (what, help) = if let Some(f) = r.label.strip_prefix('^') {
            (
                format!("footnote `[^{f}]` is never defined"),
                format!("add `[^{f}]: text` to this file"),
            )
        } else {
            (
                format!("reference label `{}` is never defined", r.label),
                format!(
                    "add a definition `[{}]: path.md#anchor` to this file",
                    r.label
                ),
            )
        };
        out.diagnostics.push(
            Diagnostic::new(Rule::UndefinedReference, path, Some(r.span), what).with_help(help),
        );
    }
    for r in &md.duplicate_definitions {
        out.diagnostics.push(Diagnostic::new(
            Rule::DuplicateReference,
            path,
            Some(r.span),
            format!(
                "reference label `{}` is defined again; only the first definition counts",
                r.label
            ),
        ));
    }
    for r in &md.unused_definitions {
        out.diagnostics.push(Diagnostic::new(
            Rule::UnusedReference,
            path,
            Some(r.span),
            format!("reference definition `{}` is never used", r.label),
        ));
    }
    out
}

fn check_link(corpus: &Corpus, doc: &Document, link: &Link, out: &mut DocLinks) {
    let from = doc.path();
    let shown = &link.dest;
    let push = |out: &mut DocLinks, d: Diagnostic| out.diagnostics.push(d);
    match resolve(corpus, from, &link.dest) {
        Target::External => {}
        Target::Empty => push(
            out,
            Diagnostic::new(
                Rule::BrokenLink,
                from,
                Some(link.span),
                "link has an empty destination",
            )
            .with_help("write the path or URL the link should lead to"),
        ),
        Target::Outside => push(
            out,
            Diagnostic::new(
                Rule::LinkOutsideRepository,
                from,
                Some(link.span),
                format!("`{shown}` leaves the repository"),
            ),
        ),
        Target::SameDocument { fragment } => {
            check_anchor(corpus, doc, from, &fragment, link, out);
        }
        Target::Path {
            path,
            fragment,
            trailing_slash,
        } => match corpus.tree.kind(&path) {
            Some(Kind::File) => {
                if trailing_slash {
                    push(
                        out,
                        Diagnostic::new(
                            Rule::BrokenLink,
                            from,
                            Some(link.span),
                            format!("`{shown}` has a `/` after the file name `{path}`"),
                        )
                        .with_help(
                            "remove the `/` after the file name; a forge shows no file there",
                        ),
                    );
                } else if let (Some(frag), Some(target)) = (fragment, corpus.doc(&path)) {
                    check_anchor(corpus, target, from, &frag, link, out);
                }
            }
            Some(Kind::Dir) => {
                // GitHub shows a folder's README below its listing: a fragment must be there.
                if let Some(frag) = fragment.filter(|f| !f.is_empty() && f != "top") {
                    match folder_readme(corpus, &path) {
                        Some(readme) => {
                            if let Some(target) = corpus.doc(&readme) {
                                check_anchor(corpus, target, from, &frag, link, out);
                            }
                        }
                        None => push(
                            out,
                            Diagnostic::new(
                                Rule::BrokenAnchor,
                                from,
                                Some(link.span),
                                format!(
                                    "`#{frag}` leads nowhere: folder `{path}` has no README for a \
                                     forge to show below its listing"
                                ),
                            )
                            .with_help(
                                "link to the file that has the heading, or add a README.md to \
                                 the folder",
                            ),
                        ),
                    }
                }
            }
            None => push(out, missing(corpus, from, link, &path, trailing_slash)),
        },
    }
}

/// The README a forge shows for folder `dir` (`README.md`, `readme.markdown`, `README`, …;
/// a Markdown one first), if there is one.
fn folder_readme(corpus: &Corpus, dir: &str) -> Option<String> {
    let mut found: Vec<&str> = corpus
        .tree
        .children(dir)
        .filter(|name| {
            let lower = name.to_ascii_lowercase();
            matches!(
                lower.as_str(),
                "readme.md" | "readme.markdown" | "readme" | "readme.txt" | "readme.rst"
            )
        })
        .collect();
    found.sort_by_key(|n| !n.to_ascii_lowercase().ends_with(".md"));
    let name = found.first()?;
    Some(if dir.is_empty() {
        name.to_string()
    } else {
        format!("{dir}/{name}")
    })
}

fn missing(
    corpus: &Corpus,
    from: &str,
    link: &Link,
    path: &str,
    trailing_slash: bool,
) -> Diagnostic {
    let shown = &link.dest;
    let roles = &corpus.config.paths.roles;
    if link.kind == LinkKind::Image {
        return with_suggestion(
            corpus,
            Diagnostic::new(
                Rule::BrokenImage,
                from,
                Some(link.span),
                format!("image `{shown}` not found: `{path}` does not exist"),
            ),
            path,
        );
    }
    if corpus.mode != crate::corpus::Mode::ZeroConfig
        && corpus.tree.is_dir(roles)
        && under(path, roles)
        && path.ends_with(".md")
    {
        let id = path
            .rsplit('/')
            .next()
            .unwrap_or(path)
            .trim_end_matches(".md");
        return with_suggestion(
            corpus,
            Diagnostic::new(
                Rule::UndefinedRole,
                from,
                Some(link.span),
                format!("role `{id}` is not defined: `{path}` does not exist"),
            ),
            path,
        );
    }
    if trailing_slash {
        return Diagnostic::new(
            Rule::MissingFolder,
            from,
            Some(link.span),
            format!("folder `{shown}` does not exist"),
        )
        .with_help(format!("no folder `{}` in the repository", path));
    }
    let d = Diagnostic::new(
        Rule::BrokenLink,
        from,
        Some(link.span),
        format!("`{shown}` not found: `{path}` does not exist"),
    );
    if DOMAIN_LIKE.is_match(&link.dest.to_ascii_lowercase()) {
        return d.with_help(format!(
            "`{shown}` looks like a web address; write it as `https://{shown}`"
        ));
    }
    with_suggestion(corpus, d, path)
}

/// Adds "did you mean" for the closest existing name in the same folder.
fn with_suggestion(corpus: &Corpus, d: Diagnostic, path: &str) -> Diagnostic {
    let dir = tree::parent_of(path);
    let name = path.rsplit('/').next().unwrap_or(path);
    if !corpus.tree.is_dir(dir) {
        return d.with_help(format!(
            "the folder `{}` does not exist either",
            if dir.is_empty() { "/" } else { dir }
        ));
    }
    let best = corpus
        .tree
        .children(dir)
        .map(|c| {
            (
                strsim::normalized_levenshtein(&c.to_lowercase(), &name.to_lowercase()),
                c,
            )
        })
        .filter(|(score, _)| *score >= 0.6)
        .max_by(|a, b| a.0.total_cmp(&b.0));
    match best {
        Some((_, c)) => {
            let full = if dir.is_empty() {
                c.to_string()
            } else {
                format!("{dir}/{c}")
            };
            d.with_help(format!("did you mean `{full}`?"))
        }
        None => d,
    }
}

fn check_anchor(
    corpus: &Corpus,
    target: &Document,
    from: &str,
    fragment: &str,
    link: &Link,
    out: &mut DocLinks,
) {
    if fragment.is_empty() || fragment == "top" {
        return;
    }
    let target_id = corpus.doc_id(target.path());
    if target.kind == DocKind::Glossary
        && let Some(t) = target_id
    {
        if let Some(i) = corpus.term_index_at(t, fragment) {
            out.linked_terms.insert(i);
            return;
        }
        // GitHub resolves a fragment whatever its case.
        let lower = fragment.to_lowercase();
        if lower != fragment
            && let Some(i) = corpus.term_index_at(t, &lower)
        {
            out.linked_terms.insert(i);
            out.diagnostics
                .push(anchor_case(from, link, fragment, &lower));
            return;
        }
        if !target.markdown.anchors.contains(fragment) {
            let d = Diagnostic::new(
                Rule::UndefinedTerm,
                from,
                Some(link.span),
                format!(
                    "`#{fragment}` is not a term of the glossary `{}`",
                    target.path()
                ),
            );
            let lower = fragment.to_lowercase();
            let suggestion = corpus.terms.iter().filter(|x| x.doc == t).find(|x| {
                x.acronym
                    .as_deref()
                    .is_some_and(|a| a.to_lowercase() == lower)
                    || crate::corpus::slug::slug(&x.name) == lower
            });
            let d = match suggestion {
                Some(x) => d.with_help(format!(
                    "the term \"{}\" is linked as `#{}` (a forge resolves only the heading's full slug)",
                    x.name_with_acronym(),
                    x.slug
                )),
                None => match closest(fragment, corpus.terms.iter().filter(|x| x.doc == t).map(|x| x.slug.as_str())) {
                    Some(s) => d.with_help(format!("did you mean `#{s}`?")),
                    None => d.with_help(format!("add a `## {fragment}` heading with its definition to `{}`", target.path())),
                },
            };
            out.diagnostics.push(d);
        }
        return;
    }
    if target.markdown.anchors.contains(fragment) {
        return;
    }
    let lower = fragment.to_lowercase();
    if lower != fragment && target.markdown.anchors.contains(&lower) {
        out.diagnostics
            .push(anchor_case(from, link, fragment, &lower));
        return;
    }
    let where_ = if target.path() == from {
        "this document".to_string()
    } else {
        format!("`{}`", target.path())
    };
    let d = Diagnostic::new(
        Rule::BrokenAnchor,
        from,
        Some(link.span),
        format!("`#{fragment}` matches no heading or anchor in {where_}"),
    );
    let d = match closest(fragment, target.markdown.anchors.iter().map(String::as_str)) {
        Some(s) => d.with_help(format!("did you mean `#{s}`?")),
        None => d,
    };
    out.diagnostics.push(d);
}

/// A fragment that GitHub resolves only by ignoring its case.
fn anchor_case(from: &str, link: &Link, fragment: &str, slug: &str) -> Diagnostic {
    Diagnostic::new(
        Rule::AnchorCase,
        from,
        Some(link.span),
        format!("`#{fragment}` matches the heading slug `#{slug}` only when case is ignored"),
    )
    .with_help(format!("write `#{slug}`"))
}

fn closest<'a>(want: &str, candidates: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    let want = want.to_lowercase();
    candidates
        .map(|c| {
            let score = if c == want {
                1.0
            } else {
                strsim::jaro_winkler(c, &want)
            };
            (score, c)
        })
        .filter(|(s, _)| *s >= 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0).then_with(|| b.1.cmp(a.1)))
        .map(|(_, c)| c)
}
