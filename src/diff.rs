//! `sopkit diff`: what changed in an SOP between two revisions, as an approver reads it. The
//! two texts are cut into sections at their headings (the front matter and the text before
//! the first heading are sections too); sections are paired by title, a section whose title
//! changed but whose text stayed mostly the same is paired as renamed, and a paired section
//! that changed places is marked moved. Inside each pair the change is word by word.
//! Printed for people (`human`), for a pull-request comment (`md`), or as a redline PDF
//! (`pdf`: the new revision typeset with the changes marked, by
//! [`crate::render::render_redline`]).

use similar::{Algorithm, ChangeTag};

use crate::approval::history::SopHistory;
use crate::workspace::{Revision as Read, Workspace};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Workspace(#[from] crate::workspace::Error),
    #[error(transparent)]
    History(#[from] crate::approval::history::Error),
    #[error(transparent)]
    Repository(#[from] crate::git::Error),
    #[error("{0} (give an id such as IT-245 or a path under the procedures folder)")]
    UnknownSop(#[from] crate::corpus::FindSop),
    #[error("{sop} has no version {version}; its versions: {known}")]
    NoSuchVersion {
        sop: String,
        version: u32,
        known: String,
    },
    #[error(
        "{0} has no effective version to compare with: name the revision to compare from \
         (a commit, or `worktree`)"
    )]
    NothingEffective(String),
    #[error("{sop} is not in the files at {at}")]
    NotAt { sop: String, at: String },
    #[error("reading {what}: {}", .source.message())]
    Git { what: String, source: git2::Error },
}

/// One side of a comparison: the SOP's text as it stood somewhere.
#[derive(Debug, Clone)]
pub struct Side {
    /// How a reader names it: `version 2 (commit 1a2b3c4d5e6f, 2026-01-02 10:00:00 UTC)`,
    /// `the working tree`.
    pub label: String,
    pub text: String,
    /// The commit it was read from; `None` for the working tree.
    pub commit: Option<String>,
    /// That commit's time (for the working tree, `HEAD`'s): the redline's date.
    pub time: i64,
}

#[cfg(test)]
impl Side {
    /// A side that is only a text (no commit, no time), for tests.
    pub(crate) fn text_only(text: &str) -> Side {
        Side {
            label: "x".into(),
            text: text.into(),
            commit: None,
            time: 0,
        }
    }
}

/// How a section changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Unchanged,
    Changed,
    Added,
    Removed,
}

/// One inserted, deleted or kept run of text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Piece {
    pub tag: ChangeTag,
    pub text: String,
}

/// A section of the new text paired with one of the old (or with none).
#[derive(Debug, Clone)]
pub struct SectionDiff {
    /// The title in the new text (in the old one for a removed section).
    pub title: String,
    /// The old title, when the section was renamed.
    pub renamed_from: Option<String>,
    /// Paired, but in another place among the paired sections than before.
    pub moved: bool,
    pub kind: Kind,
    pub words_inserted: usize,
    pub words_deleted: usize,
    /// The section's text (its heading line excluded) word by word.
    pub pieces: Vec<Piece>,
    /// The heading level (0 for the front matter and the text before the first heading).
    pub level: u8,
    /// Where the section stands in the new text: the byte offset of its heading (none for the
    /// two level-0 parts) and of its body; `None` for a removed section.
    pub at: Option<(Option<usize>, usize)>,
    /// The front matter, which is no part of the typeset body.
    pub front_matter: bool,
}

impl SectionDiff {
    /// Changed in any way a reader should see.
    pub fn is_change(&self) -> bool {
        self.kind != Kind::Unchanged || self.renamed_from.is_some() || self.moved
    }

    /// What happened to it, as a phrase: `changed, renamed, moved`.
    pub fn describe(&self) -> String {
        let mut what = vec![match self.kind {
            Kind::Unchanged => "unchanged",
            Kind::Changed => "changed",
            Kind::Added => "added",
            Kind::Removed => "removed",
        }];
        if self.renamed_from.is_some() {
            what.push("renamed");
        }
        if self.moved {
            what.push("moved");
        }
        if what.len() > 1 && what[0] == "unchanged" {
            what.remove(0);
        }
        what.join(", ")
    }
}

/// The changes to one SOP between two sides.
#[derive(Debug, Clone)]
pub struct Diff {
    pub sop: String,
    pub title: String,
    pub from: Side,
    pub to: Side,
    pub sections: Vec<SectionDiff>,
}

impl Diff {
    pub fn changed_sections(&self) -> impl Iterator<Item = &SectionDiff> {
        self.sections.iter().filter(|s| s.is_change())
    }

    /// Where the changes fall in the new text (`to.text`), for marking it where it is
    /// typeset. The front matter is left out: it is no part of the body.
    pub fn marks(&self) -> Marks {
        let mut m = Marks::default();
        // A removed section is shown where it stood: before the section that now follows it
        // (the sections are in that order), or at the end.
        let mut next = self.to.text.len();
        let mut removed = Vec::new();
        for s in self.sections.iter().rev() {
            match s.at {
                None if !s.front_matter => removed.push(Deletion {
                    at: next,
                    text: s.pieces.iter().map(|p| p.text.as_str()).collect(),
                    section: Some(s.title.clone()),
                }),
                None => {}
                Some((heading, start)) => next = heading.unwrap_or(start),
            }
        }
        for s in self.sections.iter().filter(|s| !s.front_matter) {
            let Some((heading, start)) = s.at else {
                continue;
            };
            if let Some(h) = heading
                && (s.kind == Kind::Added || s.renamed_from.is_some() || s.moved)
            {
                m.headings.push(HeadingMark {
                    at: h,
                    added: s.kind == Kind::Added,
                    renamed_from: s.renamed_from.clone(),
                    moved: s.moved,
                });
            }
            let mut pos = start;
            for p in &s.pieces {
                match p.tag {
                    ChangeTag::Equal => pos += p.text.len(),
                    ChangeTag::Insert => {
                        m.inserted.push(pos..pos + p.text.len());
                        pos += p.text.len();
                    }
                    ChangeTag::Delete => m.deleted.push(Deletion {
                        at: pos,
                        text: p.text.clone(),
                        section: None,
                    }),
                }
            }
        }
        m.deleted.extend(removed);
        m.deleted.sort_by_key(|d| d.at);
        m
    }
}

/// The changes of a [`Diff`] placed in the new text, by byte offset.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Marks {
    /// Inserted text, in order.
    pub inserted: Vec<std::ops::Range<usize>>,
    /// Deleted text and where it stood, in order.
    pub deleted: Vec<Deletion>,
    /// Headings of sections that are new, renamed or moved, by where the heading starts.
    pub headings: Vec<HeadingMark>,
}

/// Text of the old revision that the new one no longer has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deletion {
    pub at: usize,
    pub text: String,
    /// The title of a removed section (its whole text is `text`).
    pub section: Option<String>,
}

/// What happened to a section, shown at its heading.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeadingMark {
    pub at: usize,
    pub added: bool,
    pub renamed_from: Option<String>,
    pub moved: bool,
}

impl Marks {
    /// The marks of the part of the text that starts at `offset` (an SOP's body after its
    /// front matter), with offsets into that part; marks before it are left out.
    pub fn from_offset(&self, offset: usize) -> Marks {
        Marks {
            inserted: self
                .inserted
                .iter()
                .filter(|r| r.end > offset)
                .map(|r| r.start.max(offset) - offset..r.end - offset)
                .collect(),
            deleted: self
                .deleted
                .iter()
                .filter(|d| d.at >= offset)
                .map(|d| Deletion {
                    at: d.at - offset,
                    ..d.clone()
                })
                .collect(),
            headings: self
                .headings
                .iter()
                .filter(|h| h.at >= offset)
                .map(|h| HeadingMark {
                    at: h.at - offset,
                    ..h.clone()
                })
                .collect(),
        }
    }
}

/// A section of one text: its title, level and the text below its heading, with the offsets
/// of its heading and body in the text.
#[derive(Debug, Clone)]
struct Section {
    title: String,
    level: u8,
    body: String,
    heading: Option<usize>,
    start: usize,
}

/// The sections of an SOP's text: the front matter, the text before the first heading, and
/// one per heading.
fn sections(text: &str) -> Vec<Section> {
    let (front, body_start) = match crate::corpus::front_matter::split(text) {
        Ok(Some(block)) => (
            text[block.yaml.start..block.yaml.end].to_string(),
            block.body_start,
        ),
        _ => (String::new(), 0),
    };
    let md = crate::corpus::markdown::parse(text, body_start);
    let front_start = match crate::corpus::front_matter::split(text) {
        Ok(Some(block)) => block.yaml.start,
        _ => 0,
    };
    let mut out = vec![Section {
        title: "Front matter".into(),
        level: 0,
        body: front,
        heading: None,
        start: front_start,
    }];
    let first = md.headings.first().map_or(text.len(), |h| h.span.start);
    out.push(Section {
        title: "Before the first heading".into(),
        level: 0,
        body: text[body_start.min(first)..first].to_string(),
        heading: None,
        start: body_start.min(first),
    });
    for (i, h) in md.headings.iter().enumerate() {
        let end = md.headings.get(i + 1).map_or(text.len(), |n| n.span.start);
        out.push(Section {
            title: h.text.trim().to_string(),
            level: h.level,
            body: text[h.span.end.min(end)..end].to_string(),
            heading: Some(h.span.start),
            start: h.span.end.min(end),
        });
    }
    out
}

/// How alike two texts are, from 0 (nothing shared) to 1 (the same), word by word.
fn likeness(a: &str, b: &str) -> f32 {
    if a.trim().is_empty() && b.trim().is_empty() {
        return 1.0;
    }
    similar::TextDiff::configure()
        .algorithm(Algorithm::Patience)
        .diff_words(a, b)
        .ratio()
}

/// Below this likeness, a section whose title changed is another section, not a renamed one.
const RENAMED: f32 = 0.6;

/// Pairs old sections with new ones: by title first, then unpaired ones by their text.
/// Returns, per new section, the index of its old one.
fn pair(old: &[Section], new: &[Section]) -> Vec<Option<usize>> {
    let key = |s: &Section| s.title.to_lowercase();
    let mut taken = vec![false; old.len()];
    let mut pairs: Vec<Option<usize>> = new
        .iter()
        .map(|n| {
            let i = (0..old.len()).find(|&i| !taken[i] && key(&old[i]) == key(n))?;
            taken[i] = true;
            Some(i)
        })
        .collect();
    for (j, n) in new.iter().enumerate() {
        if pairs[j].is_some() || n.body.trim().is_empty() {
            continue;
        }
        let best = (0..old.len())
            .filter(|&i| !taken[i] && !old[i].body.trim().is_empty())
            .map(|i| (i, likeness(&old[i].body, &n.body)))
            .filter(|&(_, l)| l >= RENAMED)
            .max_by(|a, b| a.1.total_cmp(&b.1));
        if let Some((i, _)) = best {
            taken[i] = true;
            pairs[j] = Some(i);
        }
    }
    pairs
}

/// The paired new sections that keep their order: the longest run of old indices that
/// increases. The others moved.
fn in_order(pairs: &[Option<usize>]) -> Vec<bool> {
    let seq: Vec<(usize, usize)> = pairs
        .iter()
        .enumerate()
        .filter_map(|(j, p)| p.map(|i| (j, i)))
        .collect();
    // Longest increasing subsequence by patience sorting, with back links.
    let mut tails: Vec<usize> = Vec::new();
    let mut back: Vec<Option<usize>> = vec![None; seq.len()];
    for k in 0..seq.len() {
        let at = tails.partition_point(|&t| seq[t].1 < seq[k].1);
        back[k] = at.checked_sub(1).map(|p| tails[p]);
        if at == tails.len() {
            tails.push(k);
        } else {
            tails[at] = k;
        }
    }
    let mut keep = vec![false; pairs.len()];
    let mut k = tails.last().copied();
    while let Some(i) = k {
        keep[seq[i].0] = true;
        k = back[i];
    }
    keep
}

/// The word-by-word change from `old` to `new`, and the words inserted and deleted.
fn words(old: &str, new: &str) -> (Vec<Piece>, usize, usize) {
    let mut pieces: Vec<Piece> = Vec::new();
    let (mut ins, mut del) = (0, 0);
    for (tag, text) in similar::utils::diff_words(Algorithm::Patience, old, new) {
        // A change of spacing alone is no change a reader sees: the new spacing is kept.
        let tag = match tag {
            ChangeTag::Insert if text.trim().is_empty() => ChangeTag::Equal,
            ChangeTag::Delete if text.trim().is_empty() => continue,
            tag => tag,
        };
        match tag {
            ChangeTag::Insert => ins += text.split_whitespace().count(),
            ChangeTag::Delete => del += text.split_whitespace().count(),
            ChangeTag::Equal => {}
        }
        match pieces.last_mut() {
            Some(last) if last.tag == tag => last.text.push_str(text),
            _ => pieces.push(Piece {
                tag,
                text: text.to_string(),
            }),
        }
    }
    (pieces, ins, del)
}

/// Compares two texts of one SOP.
pub fn compare(sop: &str, title: &str, from: Side, to: Side) -> Diff {
    let old = sections(&from.text);
    let new = sections(&to.text);
    let pairs = pair(&old, &new);
    let ordered = in_order(&pairs);
    let mut paired = vec![false; old.len()];
    for i in pairs.iter().flatten() {
        paired[*i] = true;
    }
    let mut shown = vec![false; old.len()];
    let mut out = Vec::new();
    let removed = |i: usize| {
        let (pieces, _, del) = words(&old[i].body, "");
        SectionDiff {
            title: old[i].title.clone(),
            renamed_from: None,
            moved: false,
            kind: Kind::Removed,
            words_inserted: 0,
            words_deleted: del,
            pieces,
            level: old[i].level,
            at: None,
            front_matter: i == 0,
        }
    };
    for (j, n) in new.iter().enumerate() {
        match pairs[j] {
            Some(i) => {
                // Removed sections that stood before this one in the old text, in place.
                for (k, done) in shown.iter_mut().enumerate().take(i) {
                    if !*done && !paired[k] {
                        *done = true;
                        out.push(removed(k));
                    }
                }
                shown[i] = true;
                let (pieces, ins, del) = words(&old[i].body, &n.body);
                out.push(SectionDiff {
                    title: n.title.clone(),
                    renamed_from: (old[i].title != n.title).then(|| old[i].title.clone()),
                    moved: !ordered[j],
                    kind: if ins + del > 0 {
                        Kind::Changed
                    } else {
                        Kind::Unchanged
                    },
                    words_inserted: ins,
                    words_deleted: del,
                    pieces,
                    level: n.level,
                    at: Some((n.heading, n.start)),
                    front_matter: j == 0,
                });
            }
            None => {
                let (pieces, ins, _) = words("", &n.body);
                out.push(SectionDiff {
                    title: n.title.clone(),
                    renamed_from: None,
                    moved: false,
                    kind: Kind::Added,
                    words_inserted: ins,
                    words_deleted: 0,
                    pieces,
                    level: n.level,
                    at: Some((n.heading, n.start)),
                    front_matter: j == 0,
                });
            }
        }
    }
    for (k, done) in shown.iter().enumerate() {
        if !done && !paired[k] {
            out.push(removed(k));
        }
    }
    // The two level-0 parts are left out where both are empty.
    out.retain(|s| !(s.level == 0 && s.pieces.iter().all(|p| p.text.trim().is_empty())));
    Diff {
        sop: sop.to_string(),
        title: title.to_string(),
        from,
        to,
        sections: out,
    }
}

/// Where a side comes from, as the user names it.
fn side(
    ws: &Workspace,
    sop_id: &str,
    history: Option<&SopHistory>,
    name: &str,
) -> Result<Side, Error> {
    let head_time = ws.commit_time;
    if matches!(name, "worktree" | "working-tree") {
        let s = ws.corpus.find_sop(sop_id)?;
        return Ok(Side {
            label: "the working tree".into(),
            text: ws.corpus.docs[s.doc].file.text.clone(),
            commit: None,
            time: head_time,
        });
    }
    if let Some(v) = name.strip_prefix('v').and_then(|v| v.parse::<u32>().ok()) {
        let revisions = history.map_or(&[][..], |h| &h.revisions[..]);
        let Some(rev) = revisions.iter().find(|r| r.version == Some(v)) else {
            let known: Vec<String> = revisions
                .iter()
                .filter_map(|r| r.version.map(|v| format!("v{v}")))
                .collect();
            return Err(Error::NoSuchVersion {
                sop: sop_id.to_string(),
                version: v,
                known: if known.is_empty() {
                    "none".into()
                } else {
                    known.join(", ")
                },
            });
        };
        return revision_side(ws, rev, &format!("version {v}"));
    }
    commit_side(&ws.root, sop_id, name)
}

/// The SOP `sop_id` as it stood at git revision `name` of the repository at `root`.
pub fn commit_side(root: &std::path::Path, sop_id: &str, name: &str) -> Result<Side, Error> {
    let at = Workspace::open(root, Read::At(name))?;
    let s = at.corpus.find_sop(sop_id).map_err(|_| Error::NotAt {
        sop: sop_id.to_string(),
        at: name.to_string(),
    })?;
    let commit = at.commit.clone().unwrap_or_default();
    Ok(Side {
        label: format!(
            "commit {} ({})",
            &commit[..commit.len().min(12)],
            crate::approval::utc(at.commit_time)
        ),
        text: at.corpus.docs[s.doc].file.text.clone(),
        commit: Some(commit),
        time: at.commit_time,
    })
}

/// A revision of the approval history, read from its git blob.
pub fn revision_side(
    ws: &Workspace,
    rev: &crate::approval::history::Revision,
    what: &str,
) -> Result<Side, Error> {
    blob_side(&ws.root, rev, what)
}

/// [`revision_side`] in the repository containing `root`.
pub fn blob_side(
    root: &std::path::Path,
    rev: &crate::approval::history::Revision,
    what: &str,
) -> Result<Side, Error> {
    let repo = crate::git::discover(root)?;
    let git = |source| Error::Git {
        what: format!("{what} ({})", rev.path),
        source,
    };
    let blob = repo
        .find_blob(git2::Oid::from_str(&rev.blob).map_err(git)?)
        .map_err(git)?;
    Ok(Side {
        label: format!(
            "{what} (commit {}, {})",
            &rev.commit[..rev.commit.len().min(12)],
            crate::approval::utc(rev.time)
        ),
        text: String::from_utf8_lossy(blob.content()).into_owned(),
        commit: Some(rev.commit.clone()),
        time: rev.time,
    })
}

/// `sopkit diff SOP [FROM] [TO]`: from the last effective version (or `from`) to the working
/// tree (or `to`). Each is `vN`, a commit or other git revision, or `worktree`.
pub fn diff(
    ws: &Workspace,
    sop: &str,
    from: Option<&str>,
    to: Option<&str>,
) -> Result<Diff, Error> {
    let found = ws.corpus.find_sop(sop)?;
    let (id, title) = (found.id.clone(), found.title.clone());
    let history = if ws.in_git() {
        ws.history()?.sops.get(&id)
    } else {
        None
    };
    let from = match from {
        Some(name) => side(ws, &id, history, name)?,
        None => {
            let rev = history
                .and_then(|h| h.last_effective())
                .ok_or_else(|| Error::NothingEffective(id.clone()))?;
            let v = rev.version.unwrap_or_default();
            revision_side(ws, rev, &format!("version {v}"))?
        }
    };
    let to = side(ws, &id, history, to.unwrap_or("worktree"))?;
    Ok(compare(&id, &title, from, to))
}

/// The diff for a terminal: a summary, then each changed section with deletions as
/// `[-…-]` and insertions as `{+…+}` (in colour when `colour`).
pub fn human(d: &Diff, colour: bool) -> String {
    let (del_on, ins_on, off) = if colour {
        ("\x1b[9;31m", "\x1b[4;32m", "\x1b[0m")
    } else {
        ("", "", "")
    };
    let mut out = format!(
        "{} {}\nfrom {}\n  to {}\n",
        d.sop, d.title, d.from.label, d.to.label
    );
    let changed: Vec<&SectionDiff> = d.changed_sections().collect();
    if changed.is_empty() {
        out.push_str("\nno changes\n");
        return out;
    }
    out.push('\n');
    for s in &changed {
        out.push_str(&format!(
            "  {:<40} {:<24} +{} -{} words\n",
            summary_title(s),
            s.describe(),
            s.words_inserted,
            s.words_deleted
        ));
    }
    for s in changed {
        out.push_str(&format!("\n== {} ({})\n", summary_title(s), s.describe()));
        for p in &s.pieces {
            match p.tag {
                ChangeTag::Equal => out.push_str(&p.text),
                ChangeTag::Delete => out.push_str(&format!("{del_on}[-{}-]{off}", p.text)),
                ChangeTag::Insert => out.push_str(&format!("{ins_on}{{+{}+}}{off}", p.text)),
            }
        }
        if !out.ends_with('\n') {
            out.push('\n');
        }
    }
    out
}

/// A section's title with where it came from: `Scope (was: Purpose)`.
fn summary_title(s: &SectionDiff) -> String {
    match &s.renamed_from {
        Some(old) => format!("{} (was: {old})", s.title),
        None => s.title.clone(),
    }
}

/// Markdown text shown as written: every character that could start Markdown or HTML
/// escaped.
fn md_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + text.len() / 8);
    for c in text.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '\\' | '`' | '*' | '_' | '[' | ']' | '#' | '|' | '~' | '!' => {
                out.push('\\');
                out.push(c);
            }
            c => out.push(c),
        }
    }
    out
}

/// The diff as Markdown for a pull-request comment: a table of the changed sections, then
/// each with `<del>` and `<ins>` marks.
pub fn markdown(d: &Diff) -> String {
    let mut out = format!(
        "### {} {}: changes\n\nFrom {} to {}.\n\n",
        md_escape(&d.sop),
        md_escape(&d.title),
        md_escape(&d.from.label),
        md_escape(&d.to.label)
    );
    let changed: Vec<&SectionDiff> = d.changed_sections().collect();
    if changed.is_empty() {
        out.push_str("No changes.\n");
        return out;
    }
    out.push_str("| Section | Change | Words inserted | Words deleted |\n|---|---|---:|---:|\n");
    for s in &changed {
        out.push_str(&format!(
            "| {} | {} | {} | {} |\n",
            md_escape(&summary_title(s)),
            s.describe(),
            s.words_inserted,
            s.words_deleted
        ));
    }
    for s in changed {
        out.push_str(&format!(
            "\n#### {} ({})\n\n",
            md_escape(&summary_title(s)),
            s.describe()
        ));
        let mut body = String::new();
        for p in &s.pieces {
            // Marks close at each line end, so that no tag spans a Markdown block.
            for (k, line) in p.text.split('\n').enumerate() {
                if k > 0 {
                    body.push('\n');
                }
                if line.is_empty() {
                    continue;
                }
                let text = md_escape(line);
                match p.tag {
                    ChangeTag::Equal => body.push_str(&text),
                    ChangeTag::Delete => body.push_str(&format!("<del>{text}</del>")),
                    ChangeTag::Insert => body.push_str(&format!("<ins>{text}</ins>")),
                }
            }
        }
        // Source line breaks kept: two spaces end a line within a paragraph.
        let body = body
            .trim_matches('\n')
            .split('\n')
            .map(|l| {
                if l.is_empty() {
                    String::new()
                } else {
                    format!("{l}  ")
                }
            })
            .collect::<Vec<_>>()
            .join("\n");
        out.push_str(&body);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn side(text: &str) -> Side {
        Side::text_only(text)
    }

    const OLD: &str = "---\nid: QA-1\ntitle: T\n---\n\n# T\n\n## Purpose\n\nKeep the backups safe and tested every week.\n\n## Scope\n\nAll servers in the data centre.\n\n## Steps\n\nRun the backup.\n\n## Retired\n\nThis goes away.\n";
    const NEW: &str = "---\nid: QA-1\ntitle: T\n---\n\n# T\n\n## Scope\n\nAll servers in the data centre.\n\n## Aim\n\nKeep the backups safe and tested every day.\n\n## Steps\n\nRun the backup.\n\n## Records\n\nKeep the evidence.\n";

    #[test]
    fn sections_are_paired_by_title_then_by_text_and_changes_are_word_by_word() {
        let d = compare("QA-1", "T", side(OLD), side(NEW));
        let by = |t: &str| d.sections.iter().find(|s| s.title == t).unwrap();
        let aim = by("Aim");
        assert_eq!(aim.renamed_from.as_deref(), Some("Purpose"));
        assert_eq!(aim.kind, Kind::Changed);
        assert_eq!((aim.words_inserted, aim.words_deleted), (1, 1));
        assert!(
            aim.pieces
                .iter()
                .any(|p| p.tag == ChangeTag::Delete && p.text.contains("week"))
        );
        assert!(
            aim.pieces
                .iter()
                .any(|p| p.tag == ChangeTag::Insert && p.text.contains("day"))
        );
        assert_eq!(by("Records").kind, Kind::Added);
        assert_eq!(by("Retired").kind, Kind::Removed);
        assert_eq!(by("Steps").kind, Kind::Unchanged);
        assert!(!by("Steps").is_change());
        // Scope and Aim swapped places: one of them moved, the rest kept their order.
        let moved: Vec<&str> = d
            .sections
            .iter()
            .filter(|s| s.moved)
            .map(|s| s.title.as_str())
            .collect();
        assert_eq!(moved.len(), 1, "{moved:?}");
        assert!(moved[0] == "Scope" || moved[0] == "Aim");
    }

    #[test]
    fn marks_fall_on_the_new_text_where_the_changes_are() {
        let d = compare("QA-1", "T", side(OLD), side(NEW));
        let m = d.marks();
        // Every inserted range is inserted text of the new side, in order.
        let inserted: Vec<&str> = m.inserted.iter().map(|r| &NEW[r.clone()]).collect();
        assert!(inserted.iter().any(|t| t.contains("day")), "{inserted:?}");
        assert!(
            inserted.iter().any(|t| t.contains("Keep the evidence")),
            "the added section's text: {inserted:?}"
        );
        assert!(m.inserted.windows(2).all(|w| w[0].end <= w[1].start));
        // "week." stood right where "day." now stands.
        let week = m.deleted.iter().find(|x| x.text.contains("week")).unwrap();
        let day = m
            .inserted
            .iter()
            .find(|r| NEW[(*r).clone()].contains("day"))
            .unwrap();
        assert!(
            week.at == day.start || week.at == day.end,
            "{week:?} {day:?}"
        );
        assert!(week.section.is_none());
        // The removed section stands at the end (nothing follows it in the new text), whole.
        let retired = m.deleted.iter().find(|x| x.section.is_some()).unwrap();
        assert_eq!(retired.section.as_deref(), Some("Retired"));
        assert_eq!(retired.at, NEW.len());
        assert!(retired.text.contains("This goes away."));
        // New, renamed and moved sections are marked at their headings.
        let heading_at = |title: &str| NEW.find(&format!("## {title}")).unwrap();
        let aim = m
            .headings
            .iter()
            .find(|h| h.at == heading_at("Aim"))
            .unwrap();
        assert_eq!(aim.renamed_from.as_deref(), Some("Purpose"));
        let records = m
            .headings
            .iter()
            .find(|h| h.at == heading_at("Records"))
            .unwrap();
        assert!(records.added);
        assert!(m.headings.iter().all(|h| h.at != heading_at("Steps")));
        // Offsets into the body after the front matter.
        let body_start = NEW.find("# T").unwrap();
        let body = m.from_offset(body_start);
        for (r, b) in m.inserted.iter().zip(&body.inserted) {
            assert_eq!(&NEW[r.clone()], &NEW[body_start..][b.clone()]);
        }
    }

    #[test]
    fn identical_texts_have_no_changes_and_say_so() {
        let d = compare("QA-1", "T", side(OLD), side(OLD));
        assert_eq!(d.changed_sections().count(), 0);
        assert!(human(&d, false).contains("no changes"));
        assert!(markdown(&d).contains("No changes."));
    }

    #[test]
    fn markdown_marks_changes_and_escapes_what_the_author_wrote() {
        let old = "# T\n\n## A\n\nUse <b>bold</b> and *stars* here.\n";
        let new = "# T\n\n## A\n\nUse <b>bold</b> and *stars* there.\n";
        let md = markdown(&compare("QA-1", "T", side(old), side(new)));
        assert!(
            md.contains("<del>here.</del>") || md.contains("<del>here</del>"),
            "{md}"
        );
        assert!(md.contains("<ins>there"), "{md}");
        assert!(
            md.contains("&lt;b&gt;bold&lt;/b&gt;") && md.contains("\\*stars\\*"),
            "{md}"
        );
        assert!(md.contains("| A | changed | 1 | 1 |"), "{md}");
    }

    #[test]
    fn the_longest_run_in_order_stays_and_the_rest_moved() {
        assert_eq!(in_order(&[Some(0), Some(1), Some(2)]), [true, true, true]);
        assert_eq!(in_order(&[Some(2), Some(0), Some(1)]), [false, true, true]);
        assert_eq!(in_order(&[None, Some(1), Some(0)]), [false, false, true]);
    }
}
