//! Rendering: an SOP as it stood at a revision → a model (front matter, numbered sections,
//! change history, verified signatures, the glossary terms and roles it uses) → a minijinja
//! template producing typst source → typst, in-process → PDF. Every date comes from the
//! commit, so the same revision and sopkit version always give the same bytes; the PDF
//! records the commit, the SOP's content hash and the sopkit version, which is what
//! `verify-pdf` rebuilds from.

pub mod markup;
pub mod pdf_meta;
pub mod redline;
pub mod sign;
pub mod template;
pub mod typeset;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::approval::history::{self, History, Revision, Status as SigStatus};
use crate::corpus::front_matter::Status;
use crate::corpus::links::{self, Target};
use crate::corpus::terms::TermMatcher;
use crate::corpus::{Corpus, DocKind, Document};
use crate::digest::sha256_hex;
use crate::tree;
use crate::workspace::{Revision as Read, Workspace};
use markup::{LinkView, Resolver};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Tree(#[from] tree::Error),
    #[error(transparent)]
    History(#[from] history::Error),
    #[error(transparent)]
    Workspace(#[from] crate::workspace::Error),
    // git2's message alone: its Display adds class and code numbers (see tree::Error).
    #[error("git: {}", .0.message())]
    Git(git2::Error),
    #[error("{0} (give an id such as IT-245 or a path under the procedures folder)")]
    UnknownSop(#[from] crate::corpus::FindSop),
    #[error("the changes for the appendix: {0}")]
    Changes(#[from] crate::diff::Error),
    #[error("{sop}: the redline's new side is not the text of the SOP being typeset")]
    RedlineSide { sop: String },
    #[error("template {name}: {message}")]
    Template { name: String, message: String },
    #[error("{sop}: {error}")]
    Typeset { sop: String, error: typeset::Error },
    #[error(
        "{path} has {headings} headings; sopkit renders SOPs of up to {MAX_HEADINGS} (typesetting \
         costs about 0.35 ms and 125 KiB of memory a heading): split it into several SOPs"
    )]
    TooManyHeadings { path: String, headings: usize },
}

/// The most headings an SOP may have to be rendered: measured on 2 cores, 2,000 headings
/// take 0.7 s and 300 MiB, 5,000 take 1.7 s and 650 MiB, 20,000 take 9 s and 2.5 GiB (typst's
/// layout and memoisation grow with the document), so this keeps a render near a second and
/// well under 500 MiB. Real SOPs have tens of headings.
pub const MAX_HEADINGS: usize = 3_000;

impl From<git2::Error> for Error {
    fn from(e: git2::Error) -> Error {
        Error::Git(e)
    }
}

/// A repository as it stood at one revision (or in the working tree), read once for any
/// number of renders: a [`Workspace`] with its history and what rendering adds.
pub struct Snapshot {
    pub corpus: Corpus,
    pub history: History,
    /// The commit rendered (for the working tree: `HEAD`), if the repository has one.
    pub commit: Option<String>,
    /// The commit's time (UTC seconds): every date in the PDF comes from here.
    pub time: i64,
    /// Rendered from a working tree that differs from `commit`.
    pub uncommitted: bool,
    /// The folder read, and whether it lies in git.
    pub root: PathBuf,
    pub in_git: bool,
    /// The time reviews are judged against (for the findings of `build`).
    pub review_now: i64,
    matcher: TermMatcher,
    /// Section numbers by slug, per SOP document (cross-references show them).
    sections: HashMap<usize, HashMap<String, String>>,
}

impl Snapshot {
    /// Reads the repository at `dir`: at `at` when given; else `HEAD` when the working tree
    /// is clean, else the working tree itself (marked as uncommitted).
    pub fn open(dir: &Path, at: Option<&str>) -> Result<Snapshot, Error> {
        Snapshot::new(Workspace::open(dir, Read::at_or(at, Read::Published))?)
    }

    /// The snapshot of a workspace, with its approval history.
    pub fn new(mut ws: Workspace) -> Result<Snapshot, Error> {
        let history = ws.take_history()?;
        let in_git = ws.in_git();
        let corpus = ws.corpus;
        let matcher = TermMatcher::new(&corpus);
        let sections = corpus
            .docs
            .iter()
            .enumerate()
            .filter(|(_, d)| d.kind == DocKind::Sop)
            .map(|(i, d)| (i, markup::section_numbers(&d.file.text[d.body_start..])))
            .collect();
        Ok(Snapshot {
            corpus,
            history,
            commit: ws.commit,
            time: ws.commit_time,
            uncommitted: ws.uncommitted,
            root: ws.root,
            in_git,
            review_now: ws.review_now,
            matcher,
            sections,
        })
    }

    /// Template `name` (an override the policy trusts, else the built-in one) rendered with
    /// `ctx`.
    pub fn render_template(&self, name: &str, ctx: minijinja::Value) -> Result<String, Error> {
        template::render(
            self.template_overrides(),
            &self.policy_config().paths.templates,
            name,
            ctx,
        )
    }

    /// The findings of this snapshot, from the check pipeline that `check` runs.
    pub fn check(&self) -> crate::check::Checked {
        let history = self.in_git.then_some(&self.history);
        let diagnostics =
            crate::check::findings(&self.corpus, &self.root, history, self.review_now);
        let summary = crate::check::summarize(&diagnostics, self.corpus.docs.len());
        crate::check::Checked {
            diagnostics,
            summary,
        }
    }

    /// The config whose policy parts count here: the timeline's at the rendered commit, or
    /// the tree's own where there is no history.
    pub fn policy_config(&self) -> &crate::config::Config {
        if self.history.head.is_some() {
            &self.history.config
        } else {
            &self.corpus.config
        }
    }

    /// Where template overrides come from: the timeline's trusted templates once the history
    /// has a trust root, else the tree being rendered.
    pub fn template_overrides(&self) -> template::Overrides<'_> {
        match &self.history.templates {
            Some(t) => template::Overrides::Trusted(t),
            None => template::Overrides::Tree(&self.corpus.tree),
        }
    }

    /// Takes document `doc` as an SOP of this snapshot (a repository without `sopkit.toml`
    /// configures none): its id from the file name (`DEPT-NNN-…`, else the file's stem), its
    /// title from its first heading. Returns its index and a note saying what was taken.
    fn take_as_sop(&mut self, doc: usize) -> (usize, String) {
        let d = &self.corpus.docs[doc];
        let path = d.path().to_string();
        let id = crate::corpus::id_from_file_name(&path);
        let title = d
            .markdown
            .headings
            .first()
            .map(|h| h.text.trim().to_string())
            .unwrap_or_else(|| id.clone());
        let note = format!("no sopkit.toml: took {path} as SOP {id}, \"{title}\"");
        self.sections
            .insert(doc, markup::section_numbers(&d.file.text[d.body_start..]));
        self.corpus.sops.push(crate::corpus::Sop { doc, id, title });
        (self.corpus.sops.len() - 1, note)
    }

    /// In a repository without `sopkit.toml`: the Markdown files named like an SOP
    /// (`DEPT-NNN-Title.md`) taken as SOPs; when none is and `every_heading` is set, every
    /// Markdown file with a heading. One note per file taken. Elsewhere nothing.
    pub fn take_zero_config_sops(&mut self, every_heading: bool) -> Vec<String> {
        if self.corpus.mode != crate::corpus::Mode::ZeroConfig || !self.corpus.sops.is_empty() {
            return Vec::new();
        }
        let named: Vec<usize> = (0..self.corpus.docs.len())
            .filter(|&i| crate::corpus::id_in_file_name(self.corpus.docs[i].path()).is_some())
            .collect();
        let taken = if named.is_empty() && every_heading {
            (0..self.corpus.docs.len())
                .filter(|&i| !self.corpus.docs[i].markdown.headings.is_empty())
                .collect()
        } else {
            named
        };
        taken.into_iter().map(|i| self.take_as_sop(i).1).collect()
    }

    /// [`Snapshot::find_sop`]; in a repository without `sopkit.toml` also any Markdown file by
    /// its path, taken as an SOP. With the SOP's index, the note of how it was taken, if it
    /// was.
    pub fn find_or_take(&mut self, name: &str) -> Result<(usize, Option<String>), Error> {
        let notes = self.take_zero_config_sops(false);
        let found = match self.find_sop(name) {
            Ok(i) => Ok(i),
            Err(e) => {
                let wanted = name.trim_start_matches("./").replace('\\', "/");
                let doc = (self.corpus.mode == crate::corpus::Mode::ZeroConfig)
                    .then(|| self.corpus.doc_id(&wanted))
                    .flatten();
                match doc {
                    Some(d) => {
                        let (i, note) = self.take_as_sop(d);
                        return Ok((i, Some(note)));
                    }
                    None => Err(e),
                }
            }
        }?;
        // The taken SOPs come first, in the order of their notes.
        Ok((found, notes.get(found).cloned()))
    }

    /// The SOP named by an id (`IT-245`) or a repository path (see
    /// [`Corpus::find_sop_index`]); an id two files carry is refused, naming both.
    pub fn find_sop(&self, name: &str) -> Result<usize, Error> {
        Ok(self.corpus.find_sop_index(name)?)
    }
}

/// One rendered SOP and what an index lists about it.
#[derive(Debug, Clone, Serialize)]
pub struct Rendered {
    #[serde(skip)]
    pub pdf: Vec<u8>,
    pub id: String,
    pub title: String,
    pub path: String,
    pub version_label: String,
    pub status_label: String,
    pub effective_date: Option<String>,
    pub draft: bool,
}

impl Rendered {
    /// Version and status in one phrase for a terminal: `Version 3, Effective`, or
    /// `Draft (after version 2), not approved` (not `Draft …, Draft (not approved)`).
    pub fn state(&self) -> String {
        let reason = self
            .status_label
            .strip_prefix("Draft (")
            .and_then(|r| r.strip_suffix(')'));
        match reason {
            Some(r) => format!("{}, {r}", self.version_label),
            None => format!("{}, {}", self.version_label, self.status_label),
        }
    }
}

fn date(t: i64) -> String {
    let fmt = time::macros::format_description!("[year]-[month]-[day]");
    time::OffsetDateTime::from_unix_timestamp(t)
        .ok()
        .and_then(|d| d.format(fmt).ok())
        .unwrap_or_default()
}

fn short(commit: &str) -> String {
    commit.chars().take(12).collect()
}

/// Links and images of one SOP, seen from the rendered snapshot.
struct DocResolver<'a> {
    snap: &'a Snapshot,
    doc: &'a Document,
    files: BTreeMap<String, Vec<u8>>,
}

impl Resolver for DocResolver<'_> {
    fn link(&self, dest: &str) -> LinkView {
        let corpus = &self.snap.corpus;
        match links::resolve(corpus, self.doc.path(), dest) {
            Target::External => LinkView::Url(dest.to_string()),
            Target::Empty | Target::Outside => LinkView::Plain,
            Target::SameDocument { fragment } => {
                let own = corpus.doc_id(self.doc.path());
                match own
                    .and_then(|i| self.snap.sections.get(&i))
                    .and_then(|s| s.get(&fragment))
                {
                    Some(n) => LinkView::Note(format!("§{n}")),
                    None => LinkView::Plain,
                }
            }
            Target::Path { path, fragment, .. } => {
                let Some(i) = corpus.doc_id(&path) else {
                    return LinkView::Note(path);
                };
                let target = &corpus.docs[i];
                match target.kind {
                    DocKind::Glossary | DocKind::Role => LinkView::Plain,
                    DocKind::Sop => {
                        let id = corpus
                            .sops
                            .iter()
                            .find(|s| s.doc == i)
                            .map_or_else(|| path.clone(), |s| s.id.clone());
                        let section = fragment
                            .and_then(|f| self.snap.sections.get(&i).and_then(|s| s.get(&f)))
                            .map(|n| format!(" §{n}"))
                            .unwrap_or_default();
                        LinkView::Note(format!("{id}{section}"))
                    }
                    DocKind::Other => LinkView::Note(path),
                }
            }
        }
    }

    fn image(&mut self, dest: &str) -> Option<String> {
        let Target::Path { path, .. } = links::resolve(&self.snap.corpus, self.doc.path(), dest)
        else {
            return None;
        };
        let lower = path.to_ascii_lowercase();
        let ext = [".png", ".jpg", ".jpeg", ".svg"]
            .into_iter()
            .find(|e| lower.ends_with(e))?;
        let bytes = self.snap.corpus.tree.read(&path, 32 << 20).ok()?;
        let vpath = format!("/img/{}{ext}", &sha256_hex(&bytes)[..32]);
        self.files.insert(vpath.clone(), bytes);
        Some(vpath)
    }
}

#[derive(Serialize)]
struct RoleView {
    id: String,
    title: String,
    acronym: Option<String>,
    named_as: String,
}

#[derive(Serialize)]
struct HistoryRow {
    number: usize,
    date: String,
    commit: String,
    commit_short: String,
    author: String,
    /// The author without the e-mail address.
    author_name: String,
    summary: String,
    path: String,
    renamed_from: Option<String>,
    version: Option<u32>,
    effective_date: Option<String>,
}

#[derive(Serialize)]
struct SignatureRow {
    name: String,
    role: String,
    meaning: String,
    time: String,
    fingerprint: String,
    status: String,
    valid: bool,
}

#[derive(Serialize)]
struct TermView {
    name: String,
    acronym: Option<String>,
    #[serde(skip)]
    definition: String,
}

/// The parts of the model every template gets about where the document came from.
#[derive(Serialize)]
struct SourceView {
    commit: String,
    commit_short: String,
    date: String,
    path: String,
    sha256: String,
    uncommitted: bool,
    sopkit_version: &'static str,
}

fn role_title(corpus: &Corpus, id: &str) -> (String, Option<String>) {
    corpus.roles.get(id).map_or_else(
        || (id.to_string(), None),
        |r| {
            (
                r.title.clone().unwrap_or_else(|| id.to_string()),
                r.acronym.clone(),
            )
        },
    )
}

fn source_view(snap: &Snapshot, path: &str, sha256: &str) -> SourceView {
    let commit = snap.commit.clone().unwrap_or_else(|| "none".to_string());
    SourceView {
        commit_short: short(&commit),
        commit,
        date: crate::approval::utc(snap.time),
        path: path.to_string(),
        sha256: sha256.to_string(),
        uncommitted: snap.uncommitted,
        sopkit_version: env!("CARGO_PKG_VERSION"),
    }
}

/// The PDF keywords that `verify-pdf` reads back.
fn keywords(sop: &str, path: &str, snap: &Snapshot, sha256: &str) -> Vec<String> {
    let commit = snap.commit.clone().unwrap_or_else(|| "none".to_string());
    let commit = if snap.uncommitted {
        format!("{commit}+uncommitted")
    } else {
        commit
    };
    vec![
        format!("{}{}", pdf_meta::SOP, pdf_meta::encode(sop)),
        format!("{}{}", pdf_meta::PATH, pdf_meta::encode(path)),
        format!("{}{commit}", pdf_meta::COMMIT),
        format!("{}{sha256}", pdf_meta::SHA256),
        format!("{}{}", pdf_meta::VERSION, env!("CARGO_PKG_VERSION")),
    ]
}

/// Renders SOP number `index` (into `snap.corpus.sops`) to PDF.
pub fn render(snap: &Snapshot, index: usize) -> Result<Rendered, Error> {
    render_with(snap, index, false)
}

/// [`render`]; with `with_changes`, the redline against the effective version before this
/// one (for a draft: the last effective version) follows as an appendix.
pub fn render_with(snap: &Snapshot, index: usize, with_changes: bool) -> Result<Rendered, Error> {
    render_doc(
        snap,
        index,
        if with_changes {
            Changes::Appendix
        } else {
            Changes::None
        },
    )
}

/// The redline of `d` (whose new side is SOP number `index` of `snap`): that SOP typeset as
/// always, its body marked with the changes and preceded by their summary.
pub fn render_redline(
    snap: &Snapshot,
    index: usize,
    d: &crate::diff::Diff,
) -> Result<Rendered, Error> {
    render_doc(snap, index, Changes::Marked(d))
}

/// The redline PDF of `d`, typeset from the repository at `root` as it stands on `d`'s new
/// side (its commit, or the working tree).
pub fn redline_pdf(root: &Path, d: &crate::diff::Diff) -> Result<Vec<u8>, Error> {
    let snap = Snapshot::open(root, d.to.commit.as_deref())?;
    let index = snap.find_sop(&d.sop)?;
    Ok(render_redline(&snap, index, d)?.pdf)
}

/// What a render shows of the changes since an earlier revision.
enum Changes<'d> {
    None,
    /// The redline against the effective version before, as an appendix.
    Appendix,
    /// The body itself marked with these changes.
    Marked(&'d crate::diff::Diff),
}

// Long: one step per part of the document model, in the order the template reads them.
fn render_doc(
    snap: &Snapshot,
    index: usize,
    changes_shown: Changes<'_>,
) -> Result<Rendered, Error> {
    let corpus = &snap.corpus;
    let sop = &corpus.sops[index];
    let doc = &corpus.docs[sop.doc];
    let path = doc.path().to_string();
    if doc.markdown.headings.len() > MAX_HEADINGS {
        return Err(Error::TooManyHeadings {
            path,
            headings: doc.markdown.headings.len(),
        });
    }
    let sha256 = sha256_hex(doc.file.text.as_bytes());
    let meta = doc.sop.clone().unwrap_or_default();

    // Body.
    let mut resolver = DocResolver {
        snap,
        doc,
        files: BTreeMap::new(),
    };
    let body_text = &doc.file.text[doc.body_start..];
    let marks = match changes_shown {
        Changes::Marked(d) => {
            if d.to.text != doc.file.text {
                return Err(Error::RedlineSide {
                    sop: sop.id.clone(),
                });
            }
            Some(d.marks().from_offset(doc.body_start))
        }
        _ => None,
    };
    let converted = markup::convert_marked(body_text, &mut resolver, marks.as_ref());

    // Approvals: the revision whose content this is.
    let sop_history = snap.history.sops.get(&sop.id);
    let revision: Option<&Revision> =
        sop_history.and_then(|h| h.revision_of(doc.file.text.as_bytes()));
    let Standing {
        version,
        retired,
        effective,
        version_label,
        status_label,
        effective_date,
    } = standing(snap, sop_history, revision, &meta);

    let history_rows = history_rows(sop_history);
    let signatures = signature_rows(revision);
    let missing_roles = revision.map(|r| r.missing_roles()).unwrap_or_default();

    let terms = used_terms(snap, doc);

    let roles = named_roles(corpus, doc, &meta);

    let role_ref = |id: &str| {
        let (title, _) = role_title(corpus, id);
        serde_json::json!({ "id": id, "title": title })
    };
    let front = match crate::corpus::front_matter::split(&doc.file.text) {
        Ok(Some(block)) => {
            crate::corpus::front_matter::values(&doc.file, block).unwrap_or_default()
        }
        _ => BTreeMap::new(),
    };
    let doc_view = serde_json::json!({
        "id": sop.id,
        "title": sop.title,
        "version": version,
        "version_label": version_label,
        "status": if retired { "retired" } else if effective { "effective" } else { "draft" },
        "status_label": status_label,
        "effective_date": effective_date,
        "owner": meta.owner.as_ref().map(|o| role_ref(&o.value)),
        "approvers": meta.approvers.as_ref().map(|a| a.value.iter().map(|r| role_ref(&r.value)).collect::<Vec<_>>()).unwrap_or_default(),
        "review_every": meta.review_every.map(|d| d.to_string()),
        "retention": meta.retention.map(|d| d.to_string()),
        "front_matter": front,
    });
    let draft = !effective;
    let source = source_view(snap, &path, &sha256);
    let mut kw = keywords(&sop.id, &path, snap, &sha256);
    // The redline's summary and marks, or the appendix after the body.
    let (lead, appendix) = match changes_shown {
        Changes::None => (String::new(), String::new()),
        Changes::Marked(d) => {
            let labels = redline::Labels {
                from: side_label(sop_history, &d.from),
                to: format!("this document: {version_label}"),
            };
            kw.push(format!(
                "{}{}",
                pdf_meta::REDLINE_FROM,
                d.from.commit.as_deref().unwrap_or("worktree")
            ));
            let heading = format!("Changes since {}", labels.from);
            (redline::head(d, &labels, &heading), String::new())
        }
        Changes::Appendix => {
            let d = changes(snap, sop, doc, sop_history, revision)?;
            let labels = redline::Labels {
                from: d.from.label.clone(),
                to: d.to.label.clone(),
            };
            let marks = d.marks().from_offset(doc.body_start);
            let marked = markup::convert_marked(body_text, &mut resolver, Some(&marks));
            kw.push(format!("{}yes", pdf_meta::WITH_CHANGES));
            (
                String::new(),
                redline::appendix(&d, &labels, &marked.markup),
            )
        }
    };
    let files = resolver.files;
    let terms_value: Vec<minijinja::Value> = terms
        .iter()
        .map(|t| {
            minijinja::context! {
                name => t.name.clone(),
                acronym => t.acronym.clone(),
                definition => minijinja::Value::from_safe_string(t.definition.clone()),
            }
        })
        .collect();
    let ctx = minijinja::context! {
        doc => serde_value(&doc_view),
        source => serde_value(&source),
        draft => draft,
        body => minijinja::Value::from_safe_string(format!("{lead}{}", converted.markup)),
        sections => serde_value(
            converted.sections.iter().map(|s| serde_json::json!({"number": s.number, "level": s.level, "title": s.title})).collect::<Vec<_>>()),
        history => serde_value(&history_rows),
        signatures => serde_value(&signatures),
        missing_roles => missing_roles,
        terms => terms_value,
        roles => serde_value(&roles),
    };
    let mut body = snap.render_template("sop.typ.j2", ctx)?;
    body.push_str(&appendix);
    let source_text = format!(
        "{}\n{body}",
        template::prelude(&format!("{} {}", sop.id, sop.title), &kw)
    );
    let pdf = typeset::pdf(typeset::Job {
        source: source_text,
        files,
        time: snap.time,
        ident: format!("{}@{}", sop.id, snap.commit.as_deref().unwrap_or("none")),
    })
    .map_err(|error| Error::Typeset {
        sop: path.clone(),
        error,
    })?;
    Ok(Rendered {
        pdf,
        id: sop.id.clone(),
        title: sop.title.clone(),
        path,
        version_label,
        status_label,
        effective_date,
        draft,
    })
}

/// The changes of this text of `sop` since the effective version before it (for a draft,
/// the last effective version; none when there is none).
fn changes(
    snap: &Snapshot,
    sop: &crate::corpus::Sop,
    doc: &Document,
    sop_history: Option<&history::SopHistory>,
    revision: Option<&Revision>,
) -> Result<crate::diff::Diff, Error> {
    let revisions = sop_history.map_or(&[][..], |h| &h.revisions[..]);
    let base = match revision.and_then(|r| r.version) {
        Some(v) => revisions.iter().rev().find(|r| r.version == Some(v - 1)),
        None => revisions.iter().rev().find(|r| r.version.is_some()),
    };
    let to = crate::diff::Side {
        label: match revision.and_then(|r| r.version) {
            Some(v) => format!("version {v} (this document)"),
            None => "this document".to_string(),
        },
        text: doc.file.text.clone(),
        commit: snap.commit.clone(),
        time: snap.time,
    };
    let from = match base {
        Some(b) => {
            let v = b.version.unwrap_or_default();
            crate::diff::blob_side(&snap.root, b, &format!("version {v}"))?
        }
        // Nothing effective before it: everything is new.
        None => crate::diff::Side {
            label: "nothing (no earlier effective version)".into(),
            text: String::new(),
            commit: None,
            time: snap.time,
        },
    };
    Ok(crate::diff::compare(&sop.id, &sop.title, from, to))
}

/// How a redline names its old side: by version when the history knows that content as one,
/// else by commit (or as the working tree), so that a rebuild names it the same way.
fn side_label(sop_history: Option<&history::SopHistory>, side: &crate::diff::Side) -> String {
    let Some(commit) = &side.commit else {
        return "the working tree".into();
    };
    let short = &commit[..commit.len().min(12)];
    let when = crate::approval::utc(side.time);
    let version = sop_history
        .and_then(|h| h.revision_of(side.text.as_bytes()))
        .and_then(|r| r.version);
    match version {
        Some(v) => format!("version {v} (commit {short}, {when})"),
        None => format!("commit {short} ({when})"),
    }
}

/// How an SOP stands in a snapshot: its version, whether it is effective or retired, and
/// what the title page says of it.
struct Standing {
    version: Option<u32>,
    retired: bool,
    effective: bool,
    version_label: String,
    status_label: String,
    effective_date: Option<String>,
}

fn standing(
    snap: &Snapshot,
    sop_history: Option<&history::SopHistory>,
    revision: Option<&Revision>,
    meta: &crate::corpus::front_matter::SopMeta,
) -> Standing {
    let version = revision.and_then(|r| r.version);
    let retired = meta.status == Status::Retired;
    let effective = version.is_some() && !snap.uncommitted && !retired;
    let version_label = match (version, sop_history.and_then(|h| h.last_effective())) {
        (Some(v), _) => format!("Version {v}"),
        (None, Some(last)) => format!("Draft (after version {})", last.version.unwrap_or_default()),
        (None, None) => "Draft".to_string(),
    };
    let status_label = if retired {
        "Retired".to_string()
    } else if effective {
        "Effective".to_string()
    } else if snap.uncommitted {
        "Draft (uncommitted changes)".to_string()
    } else {
        "Draft (not approved)".to_string()
    };
    let effective_date = revision
        .and_then(|r| r.effective_time)
        .filter(|_| version.is_some())
        .map(date);
    Standing {
        version,
        retired,
        effective,
        version_label,
        status_label,
        effective_date,
    }
}

/// The change history of an SOP, one row per revision.
fn history_rows(sop_history: Option<&history::SopHistory>) -> Vec<HistoryRow> {
    let mut history_rows = Vec::new();
    let mut previous_path: Option<&str> = None;
    for r in sop_history.map_or(&[][..], |h| &h.revisions[..]) {
        // Where this content was before: the previous revision's path, and any renames of
        // this revision itself.
        let mut was: Vec<&str> = previous_path.filter(|p| *p != r.path).into_iter().collect();
        was.extend(r.renamed_from.iter().map(String::as_str));
        was.dedup();
        history_rows.push(HistoryRow {
            number: r.number,
            date: crate::approval::utc(r.time),
            commit: r.commit.clone(),
            commit_short: short(&r.commit),
            author: r.author.clone(),
            author_name: r
                .author
                .split_once(" <")
                .map_or_else(|| r.author.clone(), |(n, _)| n.to_string()),
            summary: r.summary.clone(),
            path: r.path.clone(),
            renamed_from: (!was.is_empty()).then(|| was.join(", ")),
            version: r.version,
            effective_date: r.effective_time.map(date),
        });
        previous_path = Some(&r.path);
    }
    history_rows
}

/// The signatures of the revision rendered.
fn signature_rows(revision: Option<&Revision>) -> Vec<SignatureRow> {
    revision
        .map_or(&[][..], |r| &r.signatures[..])
        .iter()
        .map(|s| SignatureRow {
            name: s
                .name
                .clone()
                .or_else(|| s.signer.clone())
                .unwrap_or_else(|| "unknown".into()),
            role: s.role.clone().unwrap_or_else(|| "none".into()),
            meaning: s.meaning.clone(),
            time: crate::approval::utc(s.time),
            fingerprint: s.fingerprint.clone().unwrap_or_else(|| "-".into()),
            status: s.status.as_str().to_string(),
            valid: s.status == SigStatus::Valid,
        })
        .collect()
}

/// The glossary terms the SOP links to or uses, by name.
fn used_terms(snap: &Snapshot, doc: &Document) -> Vec<TermView> {
    let corpus = &snap.corpus;
    let mut used: BTreeSet<usize> = BTreeSet::new();
    for l in &doc.markdown.links {
        if let Target::Path {
            path,
            fragment: Some(f),
            ..
        } = links::resolve(corpus, doc.path(), &l.dest)
            && let Some(g) = corpus.doc_id(&path)
            && let Some(t) = corpus.term_index_at(g, &f)
        {
            used.insert(t);
        }
    }
    used.extend(snap.matcher.first_uses(doc).into_iter().map(|(t, _)| t));
    let mut terms: Vec<TermView> = used
        .into_iter()
        .map(|t| {
            let term = &corpus.terms[t];
            TermView {
                name: term.name.clone(),
                acronym: term.acronym.clone(),
                definition: term_definition(snap, t),
            }
        })
        .collect();
    terms.sort_by_key(|t| t.name.to_lowercase());
    terms
}

/// The roles the SOP names: owner, approvers, and links into the roles folder.
fn named_roles(
    corpus: &Corpus,
    doc: &Document,
    meta: &crate::corpus::front_matter::SopMeta,
) -> Vec<RoleView> {
    let mut named: BTreeMap<String, BTreeSet<&str>> = BTreeMap::new();
    if let Some(o) = &meta.owner {
        named.entry(o.value.clone()).or_default().insert("owner");
    }
    for a in meta.approvers.iter().flat_map(|a| a.value.iter()) {
        named.entry(a.value.clone()).or_default().insert("approver");
    }
    for l in &doc.markdown.links {
        if let Target::Path { path, .. } = links::resolve(corpus, doc.path(), &l.dest)
            && let Some(role) = corpus.roles.values().find(|r| r.path == path)
        {
            named
                .entry(role.id.clone())
                .or_default()
                .insert("referenced");
        }
    }
    named
        .into_iter()
        .map(|(id, how)| {
            let (title, acronym) = role_title(corpus, &id);
            RoleView {
                id,
                title,
                acronym,
                named_as: how.into_iter().collect::<Vec<_>>().join(", "),
            }
        })
        .collect()
}

/// The definition of term `t`: the glossary text below its heading, as typst markup.
fn term_definition(snap: &Snapshot, t: usize) -> String {
    let corpus = &snap.corpus;
    let term = &corpus.terms[t];
    let doc = &corpus.docs[term.doc];
    let headings = &doc.markdown.headings;
    let start = term.span.end;
    let end = headings
        .iter()
        .map(|h| h.span.start)
        .find(|&s| s > start)
        .unwrap_or(doc.file.text.len());
    struct Plain;
    impl Resolver for Plain {
        fn link(&self, _: &str) -> LinkView {
            LinkView::Plain
        }
        fn image(&mut self, _: &str) -> Option<String> {
            None
        }
    }
    markup::convert(doc.file.text.get(start..end).unwrap_or(""), &mut Plain)
        .markup
        .trim()
        .to_string()
}

fn serde_value<T: Serialize>(v: T) -> minijinja::Value {
    minijinja::Value::from(minijinja::value::Serde(v))
}

/// The index PDF of a build.
pub fn render_index(snap: &Snapshot, entries: &[(Rendered, String)]) -> Result<Vec<u8>, Error> {
    let sops: Vec<serde_json::Value> = entries
        .iter()
        .map(|(r, pdf)| {
            let mut v = serde_json::to_value(r).unwrap_or_default();
            v["pdf"] = serde_json::Value::String(pdf.clone());
            v
        })
        .collect();
    let source = source_view(snap, "", "");
    let ctx = minijinja::context! {
        source => serde_value(&source),
        sops => serde_value(&sops),
    };
    let body = snap.render_template("index.typ.j2", ctx)?;
    let commit = snap.commit.clone().unwrap_or_else(|| "none".into());
    let kw = vec![
        format!("{}index", pdf_meta::SOP),
        format!(
            "{}{commit}{}",
            pdf_meta::COMMIT,
            if snap.uncommitted { "+uncommitted" } else { "" }
        ),
        format!("{}{}", pdf_meta::VERSION, env!("CARGO_PKG_VERSION")),
    ];
    let source_text = format!("{}\n{body}", template::prelude("SOP index", &kw));
    typeset::pdf(typeset::Job {
        source: source_text,
        files: BTreeMap::new(),
        time: snap.time,
        ident: format!("index@{commit}"),
    })
    .map_err(|error| Error::Typeset {
        sop: "index".into(),
        error,
    })
}

/// The file name of an SOP's PDF in a build: its id, made safe for any file system.
pub fn pdf_name(id: &str) -> String {
    let safe: String = id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("{}.pdf", safe.trim_start_matches('.'))
}

type SopResult = Result<(Rendered, PathBuf), (String, String)>;

/// What `build` made.
#[derive(Debug)]
pub struct Built {
    pub rendered: Vec<(Rendered, PathBuf)>,
    pub index: PathBuf,
    pub failures: Vec<(String, String)>,
}

/// Renders every SOP of `snap` into `out` (in parallel), then the index. Each file is
/// written atomically. `progress` is called once per SOP as it finishes.
pub fn build(
    snap: &Snapshot,
    out: &Path,
    progress: &(dyn Fn(&str) + Sync),
) -> Result<Built, BuildError> {
    std::fs::create_dir_all(out).map_err(|source| BuildError::Write {
        path: out.to_path_buf(),
        source,
    })?;
    typeset::warm_up();
    let one = |i: usize| {
        let id = snap.corpus.sops[i].id.clone();
        let r = render(snap, i).map_err(|e| (id.clone(), e.to_string()));
        let r = r.and_then(|mut r| {
            let path = out.join(pdf_name(&r.id));
            crate::fs_atomic::write(&path, &r.pdf)
                .map_err(|e| (id.clone(), format!("writing {}: {e}", path.display())))?;
            r.pdf = Vec::new();
            Ok((r, path))
        });
        progress(&id);
        r
    };
    // Plain threads, not rayon: typst runs its own parallel work on rayon's global pool, and a
    // rayon worker that waits for a compilation would starve it (measured: a deadlock).
    let total = snap.corpus.sops.len();
    let workers = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(total.max(1));
    let next = std::sync::atomic::AtomicUsize::new(0);
    let results: Vec<SopResult> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                scope.spawn(|| {
                    let mut done = Vec::new();
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        if i >= total {
                            return done;
                        }
                        done.push(one(i));
                    }
                })
            })
            .collect();
        // A worker only panics if rendering does; that is a bug worth its message.
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
            .collect()
    });
    let mut rendered = Vec::new();
    let mut failures = Vec::new();
    for r in results {
        match r {
            Ok(x) => rendered.push(x),
            Err(f) => failures.push(f),
        }
    }
    rendered.sort_by(|a, b| a.0.id.cmp(&b.0.id));
    failures.sort();
    let entries: Vec<(Rendered, String)> = rendered
        .iter()
        .map(|(r, p)| {
            let name = p
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            (
                Rendered {
                    pdf: Vec::new(),
                    ..r.clone()
                },
                name,
            )
        })
        .collect();
    let index_pdf = render_index(snap, &entries).map_err(BuildError::Render)?;
    let index = out.join("index.pdf");
    crate::fs_atomic::write(&index, &index_pdf).map_err(|source| BuildError::Write {
        path: index.clone(),
        source,
    })?;
    Ok(Built {
        rendered,
        index,
        failures,
    })
}

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("writing {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Render(#[from] Error),
}

/// The outcome of `verify-pdf`.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The rebuild from the recorded commit is byte-identical.
    Identical { sop: String, commit: String },
    /// The rebuild differs (the PDF was changed, or made by another sopkit version).
    Differs {
        sop: String,
        commit: String,
        detail: String,
    },
    /// The PDF cannot be rebuilt: no sopkit provenance, or made from uncommitted changes.
    NotReproducible(String),
}

/// Rebuilds the PDF at `pdf_path` from the commit it records, in the repository at `dir`,
/// and compares the bytes.
pub fn verify_pdf(dir: &Path, pdf: &[u8]) -> Result<Verdict, Error> {
    let Some(p) = pdf_meta::read(pdf) else {
        return Ok(Verdict::NotReproducible(
            "the file carries no sopkit provenance (sopkit-commit keyword): it was not made by sopkit render".into(),
        ));
    };
    if p.uncommitted() {
        return Ok(Verdict::NotReproducible(format!(
            "{} was rendered from uncommitted changes on top of {}; only a render of a commit can be verified",
            p.sop,
            p.commit.trim_end_matches("+uncommitted")
        )));
    }
    if p.version != env!("CARGO_PKG_VERSION") {
        return Ok(Verdict::Differs {
            sop: p.sop,
            commit: p.commit,
            detail: format!(
                "made by sopkit {}, this is sopkit {}: rebuild with that version",
                p.version,
                env!("CARGO_PKG_VERSION")
            ),
        });
    }
    let snap = Snapshot::open(dir, Some(&p.commit))?;
    let rebuilt = if p.sop == "index" {
        // An index lists every SOP as rendered at that commit.
        let mut entries = Vec::new();
        for i in 0..snap.corpus.sops.len() {
            let r = render(&snap, i)?;
            let name = pdf_name(&r.id);
            entries.push((
                Rendered {
                    pdf: Vec::new(),
                    ..r
                },
                name,
            ));
        }
        entries.sort_by(|a, b| a.0.id.cmp(&b.0.id));
        render_index(&snap, &entries)?
    } else {
        let index = match p.path.as_deref().map(|path| snap.find_sop(path)) {
            Some(Ok(i)) => i,
            _ => snap.find_sop(&p.sop)?,
        };
        match p.redline_from.as_deref() {
            Some("worktree") => {
                return Ok(Verdict::NotReproducible(format!(
                    "this redline of {} compares with uncommitted changes; only one between commits can be verified",
                    p.sop
                )));
            }
            Some(from) => {
                let sop = &snap.corpus.sops[index];
                let old = crate::diff::commit_side(dir, &sop.id, from)?;
                let new = crate::diff::Side {
                    label: String::new(),
                    text: snap.corpus.docs[sop.doc].file.text.clone(),
                    commit: snap.commit.clone(),
                    time: snap.time,
                };
                let d = crate::diff::compare(&sop.id, &sop.title, old, new);
                render_redline(&snap, index, &d)?.pdf
            }
            None => render_with(&snap, index, p.with_changes)?.pdf,
        }
    };
    // A redline says so: it is no copy of the SOP, and which revision it compares with counts.
    let sop = match &p.redline_from {
        Some(from) => format!("the redline of {} since commit {from}", p.sop),
        None => p.sop,
    };
    if rebuilt == pdf {
        return Ok(Verdict::Identical {
            sop,
            commit: p.commit,
        });
    }
    let first = rebuilt
        .iter()
        .zip(pdf)
        .position(|(a, b)| a != b)
        .unwrap_or(rebuilt.len().min(pdf.len()));
    Ok(Verdict::Differs {
        sop,
        commit: p.commit,
        detail: format!(
            "the rebuild has {} bytes, the file {}; they first differ at byte {first}",
            rebuilt.len(),
            pdf.len()
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_says_draft_once() {
        let r = |version: &str, status: &str| Rendered {
            pdf: Vec::new(),
            id: "IT-1".into(),
            title: "T".into(),
            path: "p".into(),
            version_label: version.into(),
            status_label: status.into(),
            effective_date: None,
            draft: status != "Effective",
        };
        assert_eq!(r("Version 3", "Effective").state(), "Version 3, Effective");
        assert_eq!(
            r("Draft", "Draft (not approved)").state(),
            "Draft, not approved"
        );
        assert_eq!(
            r("Draft (after version 2)", "Draft (uncommitted changes)").state(),
            "Draft (after version 2), uncommitted changes"
        );
        assert_eq!(r("Version 3", "Retired").state(), "Version 3, Retired");
    }
}
