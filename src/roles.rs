//! `sopkit roles jd ROLE`: a job description generated from a role's file and from every
//! responsibility the SOPs give that role.
//!
//! What the SOPs say about a role is read from where they link to its file: every table row,
//! list item or sentence that links to the role is a duty, listed under its SOP and section
//! (numbered the way `sopkit render` numbers it), with the steps it names (`` `step-id` ``
//! in the same row or item) or that directly follow it. An SOP's `owner` and `approvers`
//! make the role accountable for, or an approver of, that SOP.
//!
//! The job description comes out as Markdown, or as a PDF through the same in-process typst
//! pipeline as `sopkit render` (template `jd.typ.j2`, overridable in the repository's
//! templates folder). Its only date is the commit's, so the same commit gives the same bytes.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;
use std::path::Path;

use pulldown_cmark::{CodeBlockKind, Event, Parser, Tag, TagEnd};
use serde::Serialize;

use crate::corpus::front_matter::Status;
use crate::corpus::links::{self, Target};
use crate::corpus::markdown::options;
use crate::corpus::slug::Slugger;
use crate::corpus::{Corpus, Document, Role};
use crate::render::markup::{self, LinkView, Resolver};
use crate::render::{self, Snapshot, template, typeset};

/// Output format of a job description.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Format {
    /// Markdown.
    #[default]
    Md,
    /// PDF (needs an output file).
    Pdf,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("no role `{role}` in this repository; known roles: {}", known_list(.known))]
    UnknownRole { role: String, known: Vec<String> },
    #[error(transparent)]
    Render(#[from] render::Error),
    #[error("job description of {role}: {error}")]
    Typeset {
        role: String,
        #[source]
        error: typeset::Error,
    },
}

fn known_list(known: &[String]) -> String {
    if known.is_empty() {
        "none (add roles/<id>.md)".to_string()
    } else {
        known.join(", ")
    }
}

/// A role named by id, with its title.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RoleRef {
    pub id: String,
    pub title: String,
}

/// The role's own data, from its file.
#[derive(Debug, Clone, Serialize)]
pub struct RoleView {
    pub id: String,
    pub title: String,
    pub acronym: Option<String>,
    pub levels: Vec<String>,
    pub reports_to: Option<RoleRef>,
    pub path: String,
}

/// An SOP the role owns or approves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SopRef {
    pub id: String,
    pub title: String,
    pub path: String,
    /// `draft`, `effective` or `retired`, as the front matter says.
    pub status: &'static str,
}

/// One duty: a row, list item or sentences of an SOP that link to the role.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Duty {
    /// As Markdown (inline code in backticks, everything else escaped).
    pub text: String,
    /// As plain text.
    pub plain: String,
    /// Steps it names or that follow it.
    pub steps: Vec<String>,
}

/// A section of an SOP with the role's duties in it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SectionDuties {
    /// The section number as `sopkit render` shows it (`7.3`); none for text under the title.
    pub number: Option<String>,
    pub title: String,
    pub slug: Option<String>,
    pub duties: Vec<Duty>,
}

/// One SOP's duties for the role.
#[derive(Debug, Clone, Serialize)]
pub struct SopDuties {
    pub id: String,
    pub title: String,
    pub path: String,
    pub status: &'static str,
    pub sections: Vec<SectionDuties>,
}

/// Where the job description came from.
#[derive(Debug, Clone, Serialize)]
pub struct SourceView {
    pub commit: Option<String>,
    pub commit_short: Option<String>,
    /// The commit's date (UTC), never the clock's.
    pub date: Option<String>,
    pub uncommitted: bool,
    pub sopkit_version: &'static str,
}

/// A job description.
#[derive(Debug, Clone, Serialize)]
pub struct JobDescription {
    pub role: RoleView,
    /// Roles whose `reports_to` is this role.
    pub direct_reports: Vec<RoleRef>,
    pub owner_of: Vec<SopRef>,
    pub approver_of: Vec<SopRef>,
    /// SOPs with sections that link to the role, by id.
    pub sops: Vec<SopDuties>,
    pub source: SourceView,
    /// The role file's body (without its front matter and title heading), as written.
    #[serde(skip)]
    pub body: String,
}

fn status_str(doc: &Document) -> &'static str {
    match doc.sop.as_ref().map(|m| m.status).unwrap_or_default() {
        Status::Draft => "draft",
        Status::Effective => "effective",
        Status::Retired => "retired",
    }
}

fn role_ref(corpus: &Corpus, id: &str) -> RoleRef {
    RoleRef {
        id: id.to_string(),
        title: corpus
            .roles
            .get(id)
            .and_then(|r| r.title.clone())
            .unwrap_or_else(|| id.to_string()),
    }
}

/// Finds a role by id, or by acronym or title in any case.
fn find_role<'a>(corpus: &'a Corpus, name: &str) -> Result<&'a Role, Error> {
    if let Some(r) = corpus.roles.get(name) {
        return Ok(r);
    }
    let lower = name.to_lowercase();
    corpus
        .roles
        .values()
        .find(|r| {
            r.id.to_lowercase() == lower
                || r.acronym
                    .as_deref()
                    .is_some_and(|a| a.to_lowercase() == lower)
                || r.title
                    .as_deref()
                    .is_some_and(|t| t.to_lowercase() == lower)
        })
        .ok_or_else(|| Error::UnknownRole {
            role: name.to_string(),
            known: corpus.roles.keys().cloned().collect(),
        })
}

/// Whether a link from `from` to `dest` reaches `role`'s file (for a roles file holding many
/// roles: the role's heading in it).
fn links_to(corpus: &Corpus, role: &Role, shared: bool, from: &str, dest: &str) -> bool {
    match links::resolve(corpus, from, dest) {
        Target::Path { path, fragment, .. } => {
            path == role.path && (!shared || fragment.as_deref() == Some(role.id.as_str()))
        }
        _ => false,
    }
}

/// Whether `dest` (from `from`) is a link to any role.
fn is_role_link(corpus: &Corpus, from: &str, dest: &str) -> bool {
    match links::resolve(corpus, from, dest) {
        Target::Path { path, .. } => corpus.roles.values().any(|r| r.path == path),
        _ => false,
    }
}

/// The role's body text: its file after the front matter, or, when one file holds every
/// role, the text under its heading.
fn role_body(corpus: &Corpus, role: &Role, shared: bool) -> String {
    let Some(doc) = role.doc.map(|i| &corpus.docs[i]) else {
        return String::new();
    };
    let text = &doc.file.text;
    if !shared {
        return text.get(doc.body_start..).unwrap_or("").to_string();
    }
    let headings = &doc.markdown.headings;
    let Some(pos) = headings.iter().position(|h| h.slug == role.id) else {
        return String::new();
    };
    let h = &headings[pos];
    let end = headings[pos + 1..]
        .iter()
        .find(|n| n.level <= h.level)
        .map_or(text.len(), |n| n.span.start);
    text.get(h.span.end..end).unwrap_or("").to_string()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum UnitKind {
    Row,
    Item,
    Paragraph,
}

/// A block being read: a table row, a list item or a paragraph outside both.
struct Unit {
    kind: UnitKind,
    plain: String,
    /// Byte ranges of inline code in `plain`.
    code: Vec<Range<usize>>,
    /// Where each link to this role starts in `plain`.
    links: Vec<usize>,
    /// Ranges of the text of links to any role.
    role_texts: Vec<Range<usize>>,
    /// Step blocks inside the unit (a list item holding a step).
    steps: BTreeSet<String>,
    /// Step ids written as inline code, with where they are in `plain`.
    code_steps: Vec<(usize, String)>,
    cell_start: usize,
}

impl Unit {
    fn new(kind: UnitKind) -> Unit {
        Unit {
            kind,
            plain: String::new(),
            code: Vec::new(),
            links: Vec::new(),
            role_texts: Vec::new(),
            steps: BTreeSet::new(),
            code_steps: Vec::new(),
            cell_start: 0,
        }
    }

    fn push_space(&mut self) {
        if !self.plain.is_empty() && !self.plain.ends_with(' ') {
            self.plain.push(' ');
        }
    }

    /// Words outside any link to a role.
    fn other_words(&self) -> usize {
        let mut s = String::new();
        let mut at = 0;
        let mut ranges = self.role_texts.clone();
        ranges.sort_by_key(|r| r.start);
        for r in ranges {
            if r.start >= at {
                s.push_str(self.plain.get(at..r.start).unwrap_or(""));
                s.push(' ');
                at = r.end;
            }
        }
        s.push_str(self.plain.get(at..).unwrap_or(""));
        s.split_whitespace()
            .filter(|w| w.chars().any(char::is_alphanumeric))
            .count()
    }
}

/// Sentence ranges of `text`: ends at `.`, `!` or `?` followed by white space, never inside
/// inline code.
fn sentences(text: &str, code: &[Range<usize>]) -> Vec<Range<usize>> {
    let mut out = Vec::new();
    let mut start = 0;
    let bytes = text.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        if matches!(b, b'.' | b'!' | b'?')
            && bytes.get(i + 1).is_some_and(|n| n.is_ascii_whitespace())
            && !code.iter().any(|r| r.contains(&i))
        {
            out.push(start..i + 1);
            start = i + 1;
        }
    }
    if start < text.len() {
        out.push(start..text.len());
    }
    out
}

/// The longest a duty's text gets before it is cut.
const MAX_DUTY: usize = 600;

fn escape_md(out: &mut String, text: &str) {
    for c in text.chars() {
        if matches!(
            c,
            '\\' | '`' | '*' | '_' | '[' | ']' | '<' | '>' | '#' | '|'
        ) {
            out.push('\\');
        }
        out.push(c);
    }
}

fn code_md(out: &mut String, code: &str) {
    let fence = if code.contains('`') { "``" } else { "`" };
    let pad = if code.starts_with('`') || code.ends_with('`') {
        " "
    } else {
        ""
    };
    out.push_str(fence);
    out.push_str(pad);
    out.push_str(code);
    out.push_str(pad);
    out.push_str(fence);
}

/// The text of `ranges` of a unit as Markdown and as plain text, white space squashed and cut
/// at [`MAX_DUTY`] characters (never inside inline code).
fn selection(unit: &Unit, ranges: &[Range<usize>]) -> (String, String) {
    // Split the selection into plain and code pieces.
    let mut pieces: Vec<(bool, &str)> = Vec::new();
    for r in ranges {
        let mut at = r.start;
        let mut code: Vec<&Range<usize>> = unit
            .code
            .iter()
            .filter(|c| c.start >= r.start && c.end <= r.end)
            .collect();
        code.sort_by_key(|c| c.start);
        for c in code {
            if c.start > at {
                pieces.push((false, &unit.plain[at..c.start]));
            }
            pieces.push((true, &unit.plain[c.clone()]));
            at = c.end;
        }
        if at < r.end {
            pieces.push((false, &unit.plain[at..r.end]));
        }
        pieces.push((false, " "));
    }
    let (mut md, mut plain) = (String::new(), String::new());
    let mut cut = false;
    for (is_code, text) in pieces {
        let squashed = if is_code {
            text.to_string()
        } else {
            let mut s: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
            if text.starts_with(char::is_whitespace) && !s.is_empty() {
                s.insert(0, ' ');
            }
            if text.ends_with(char::is_whitespace) {
                s.push(' ');
            }
            s
        };
        let room = MAX_DUTY.saturating_sub(plain.chars().count());
        if squashed.chars().count() > room {
            if !is_code {
                let part: String = squashed.chars().take(room).collect();
                let part = part.rsplit_once(' ').map_or(part.as_str(), |(a, _)| a);
                escape_md(&mut md, part);
                plain.push_str(part);
            }
            cut = true;
            break;
        }
        if is_code {
            code_md(&mut md, &squashed);
        } else {
            escape_md(&mut md, &squashed);
        }
        plain.push_str(&squashed);
    }
    let (mut md, mut plain) = (squash_spaces(&md), squash_spaces(&plain));
    if cut {
        md.push('…');
        plain.push('…');
    }
    (md, plain)
}

fn squash_spaces(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.trim().chars() {
        if c == ' ' && out.ends_with(' ') {
            continue;
        }
        out.push(c);
    }
    out
}

/// The duty a finished unit gives, if it links to the role, and whether it includes the
/// unit's last sentence (then a step block right after it belongs to it too).
fn duty_of(unit: &Unit) -> Option<(Duty, bool)> {
    if unit.links.is_empty() || unit.other_words() < 3 {
        return None;
    }
    let ranges: Vec<Range<usize>> = match unit.kind {
        UnitKind::Row => std::iter::once(0..unit.plain.len()).collect(),
        UnitKind::Item | UnitKind::Paragraph => sentences(&unit.plain, &unit.code)
            .into_iter()
            .filter(|s| unit.links.iter().any(|l| s.contains(l)))
            .collect(),
    };
    let (text, plain) = selection(unit, &ranges);
    if plain.is_empty() {
        return None;
    }
    let mut steps: Vec<String> = unit.steps.iter().cloned().collect();
    for (at, id) in &unit.code_steps {
        if ranges.iter().any(|r| r.contains(at)) && !steps.contains(id) {
            steps.push(id.clone());
        }
    }
    let trailing = ranges
        .last()
        .is_some_and(|r| unit.plain.get(r.end..).is_none_or(|t| t.trim().is_empty()));
    Some((
        Duty {
            text,
            plain: plain.trim_end_matches(" ·").to_string(),
            steps,
        },
        trailing,
    ))
}

/// Every section of `doc` (an SOP) with duties of `role`.
// One walk over the headings and the blocks below each, sharing the section being filled.
fn sop_duties(corpus: &Corpus, doc: &Document, role: &Role, shared: bool) -> Vec<SectionDuties> {
    let body = doc.file.text.get(doc.body_start..).unwrap_or("");
    let numbers = markup::section_numbers(body);
    let step_ids: BTreeSet<&str> = doc.markdown.valid_steps().map(|s| s.id.as_str()).collect();
    let title = doc
        .sop
        .as_ref()
        .and_then(|m| m.title.as_ref())
        .map(|t| t.value.clone())
        .unwrap_or_default();
    let mut sections: Vec<SectionDuties> = vec![SectionDuties {
        number: None,
        title,
        slug: None,
        duties: Vec::new(),
    }];
    let mut slugger = Slugger::default();
    let mut heading: Option<String> = None;
    let mut units: Vec<Unit> = Vec::new();
    // For each open link: where its text starts, whether it is to this role, to any role.
    let mut link_stack: Vec<(usize, bool, bool)> = Vec::new();
    let mut in_code = false;
    // The last duty read, while nothing else has come after it (steps that follow are its).
    let mut last_duty: Option<usize> = None;
    let from = doc.path();

    for event in Parser::new_ext(body, options()) {
        match event {
            Event::Start(Tag::Heading { .. }) => {
                heading = Some(String::new());
                last_duty = None;
            }
            Event::End(TagEnd::Heading(_)) => {
                let text = heading.take().unwrap_or_default();
                let slug = slugger.slug(&text);
                sections.push(SectionDuties {
                    number: numbers.get(&slug).cloned(),
                    title: text.trim().to_string(),
                    slug: Some(slug),
                    duties: Vec::new(),
                });
            }
            Event::Start(Tag::TableRow | Tag::TableHead) => {
                units.push(Unit::new(UnitKind::Row));
            }
            Event::Start(Tag::Item) => units.push(Unit::new(UnitKind::Item)),
            Event::Start(Tag::Paragraph) if units.is_empty() => {
                units.push(Unit::new(UnitKind::Paragraph));
            }
            Event::End(TagEnd::Paragraph) => match units.last_mut() {
                Some(u) if u.kind == UnitKind::Paragraph => {
                    let u = units.pop().expect("checked above");
                    close(&mut sections, &mut last_duty, &u);
                }
                Some(u) => u.push_space(),
                None => {}
            },
            Event::End(TagEnd::TableRow | TagEnd::TableHead | TagEnd::Item) => {
                if let Some(mut u) = units.pop() {
                    if u.kind == UnitKind::Row {
                        let t = u.plain.trim_end().trim_end_matches('·').trim_end().len();
                        u.plain.truncate(t);
                    }
                    close(&mut sections, &mut last_duty, &u);
                }
            }
            Event::Start(Tag::TableCell) => {
                if let Some(u) = units.last_mut() {
                    u.cell_start = u.plain.len();
                }
            }
            Event::End(TagEnd::TableCell) => {
                if let Some(u) = units.last_mut() {
                    let start = u.cell_start;
                    let mut rest = u.plain[start..].to_string();
                    let mut inside: Vec<&Range<usize>> =
                        u.role_texts.iter().filter(|r| r.start >= start).collect();
                    inside.sort_by_key(|r| std::cmp::Reverse(r.start));
                    for r in &inside {
                        rest.replace_range(r.start - start..r.end - start, " ");
                    }
                    let only_roles = !inside.is_empty() && !rest.chars().any(char::is_alphanumeric);
                    if u.plain[start..].trim().is_empty() || only_roles {
                        // A cell that only names roles says nothing the job description does
                        // not.
                        u.plain.truncate(start);
                        u.code.retain(|r| r.end <= start);
                        u.code_steps.retain(|(at, _)| *at < start);
                        u.role_texts.retain(|r| r.end <= start);
                    } else {
                        u.plain.push_str(" · ");
                    }
                }
            }
            Event::Start(Tag::Link { dest_url, .. }) => {
                let own = links_to(corpus, role, shared, from, &dest_url);
                let any = own || is_role_link(corpus, from, &dest_url);
                let at = units.last().map_or(0, |u| u.plain.len());
                if own && let Some(u) = units.last_mut() {
                    u.links.push(at);
                }
                link_stack.push((at, own, any));
            }
            Event::End(TagEnd::Link) => {
                if let Some((start, _, any)) = link_stack.pop()
                    && any
                    && let Some(u) = units.last_mut()
                {
                    let end = u.plain.len();
                    u.role_texts.push(start..end);
                }
            }
            Event::Start(Tag::CodeBlock(kind)) => {
                in_code = true;
                let step = match kind {
                    CodeBlockKind::Fenced(info) => crate::corpus::step::parse_info(&info)
                        .ok()
                        .flatten()
                        .and_then(|(_, attrs)| attrs.get("step").cloned()),
                    CodeBlockKind::Indented => None,
                };
                if let Some(step) = step {
                    match (units.last_mut(), last_duty) {
                        (Some(u), _) => {
                            u.steps.insert(step);
                        }
                        (None, Some(i)) => {
                            if let Some(d) = sections.last_mut().and_then(|s| s.duties.get_mut(i))
                                && !d.steps.contains(&step)
                            {
                                d.steps.push(step);
                            }
                        }
                        (None, None) => {}
                    }
                }
            }
            Event::End(TagEnd::CodeBlock) => in_code = false,
            Event::Text(t) if !in_code => {
                if let Some(h) = &mut heading {
                    h.push_str(&t);
                } else if let Some(u) = units.last_mut() {
                    u.plain.push_str(&t);
                }
            }
            Event::Code(t) => {
                if let Some(h) = &mut heading {
                    h.push_str(&t);
                } else if let Some(u) = units.last_mut() {
                    let start = u.plain.len();
                    u.plain.push_str(&t);
                    u.code.push(start..u.plain.len());
                    if step_ids.contains(t.as_ref()) {
                        u.code_steps.push((start, t.to_string()));
                    }
                }
            }
            Event::SoftBreak | Event::HardBreak => {
                if let Some(u) = units.last_mut() {
                    u.push_space();
                }
            }
            _ => {}
        }
    }
    sections.retain(|s| !s.duties.is_empty());
    sections
}

/// Records the duty of a finished unit in the current section.
fn close(sections: &mut [SectionDuties], last_duty: &mut Option<usize>, unit: &Unit) {
    let Some(section) = sections.last_mut() else {
        return;
    };
    match duty_of(unit) {
        Some((d, trailing)) => {
            if let Some(same) = section.duties.iter_mut().find(|x| x.plain == d.plain) {
                for s in d.steps {
                    if !same.steps.contains(&s) {
                        same.steps.push(s);
                    }
                }
                *last_duty = None;
            } else {
                section.duties.push(d);
                *last_duty = trailing.then(|| section.duties.len() - 1);
            }
        }
        None => *last_duty = None,
    }
}

/// The job description of `name` (a role id, acronym or title) in `snap`.
pub fn job_description(snap: &Snapshot, name: &str) -> Result<JobDescription, Error> {
    let corpus = &snap.corpus;
    let role = find_role(corpus, name)?;
    let shared = corpus
        .roles
        .values()
        .filter(|r| r.path == role.path)
        .count()
        > 1;
    let mut owner_of = Vec::new();
    let mut approver_of = Vec::new();
    let mut sops = Vec::new();
    let mut ordered: Vec<&crate::corpus::Sop> = corpus.sops.iter().collect();
    ordered.sort_by(|a, b| a.id.cmp(&b.id));
    for sop in ordered {
        let doc = &corpus.docs[sop.doc];
        let sop_ref = SopRef {
            id: sop.id.clone(),
            title: sop.title.clone(),
            path: doc.path().to_string(),
            status: status_str(doc),
        };
        if let Some(meta) = &doc.sop {
            if meta.owner.as_ref().is_some_and(|o| o.value == role.id) {
                owner_of.push(sop_ref.clone());
            }
            if meta
                .approvers
                .as_ref()
                .is_some_and(|a| a.value.iter().any(|r| r.value == role.id))
            {
                approver_of.push(sop_ref.clone());
            }
        }
        let sections = sop_duties(corpus, doc, role, shared);
        if !sections.is_empty() {
            let mut sections = sections;
            for s in &mut sections {
                if s.number.is_none() && s.slug.is_none() {
                    s.title = sop.title.clone();
                }
            }
            sops.push(SopDuties {
                id: sop.id.clone(),
                title: sop.title.clone(),
                path: doc.path().to_string(),
                status: status_str(doc),
                sections,
            });
        }
    }
    let direct_reports = corpus
        .roles
        .values()
        .filter(|r| r.reports_to.as_ref().is_some_and(|t| t.value == role.id))
        .map(|r| role_ref(corpus, &r.id))
        .collect();
    Ok(JobDescription {
        role: RoleView {
            id: role.id.clone(),
            title: role.title.clone().unwrap_or_else(|| role.id.clone()),
            acronym: role.acronym.clone(),
            levels: role.levels.clone(),
            reports_to: role.reports_to.as_ref().map(|t| role_ref(corpus, &t.value)),
            path: role.path.clone(),
        },
        direct_reports,
        owner_of,
        approver_of,
        sops,
        source: SourceView {
            commit_short: snap.commit.as_ref().map(|c| c.chars().take(12).collect()),
            commit: snap.commit.clone(),
            date: snap
                .commit
                .as_ref()
                .map(|_| crate::approval::utc(snap.time)),
            uncommitted: snap.uncommitted,
            sopkit_version: crate::VERSION,
        },
        body: without_title(&role_body(corpus, role, shared)),
    })
}

/// A body without a leading level-1 heading (the job description has its own title).
fn without_title(body: &str) -> String {
    let mut parser = Parser::new_ext(body, options()).into_offset_iter();
    if let Some((Event::Start(Tag::Heading { level, .. }), range)) = parser.next()
        && level == pulldown_cmark::HeadingLevel::H1
    {
        return body[range.end..].trim().to_string();
    }
    body.trim().to_string()
}

/// `body` with its ATX headings moved down so that the shallowest becomes level `top`.
fn demote_headings(body: &str, top: usize) -> String {
    let headings: Vec<(usize, usize)> = Parser::new_ext(body, options())
        .into_offset_iter()
        .filter_map(|(e, r)| match e {
            Event::Start(Tag::Heading { level, .. }) => Some((level as usize, r.start)),
            _ => None,
        })
        .collect();
    let Some(min) = headings.iter().map(|h| h.0).min() else {
        return body.to_string();
    };
    let shift = top.saturating_sub(min);
    if shift == 0 {
        return body.to_string();
    }
    let mut out = String::with_capacity(body.len() + headings.len() * shift);
    let mut at = 0;
    for (level, start) in headings {
        let line = &body[start..];
        let indent = line.len() - line.trim_start_matches(' ').len();
        if !line[indent..].starts_with('#') {
            continue; // a setext heading: left as it is
        }
        let add = shift.min(6usize.saturating_sub(level));
        out.push_str(&body[at..start + indent]);
        out.push_str(&"#".repeat(add));
        at = start + indent;
    }
    out.push_str(&body[at..]);
    out
}

fn sop_line(s: &SopRef) -> String {
    let mut line = String::new();
    line.push_str("- **");
    escape_md(&mut line, &s.id);
    line.push_str("** ");
    escape_md(&mut line, &s.title);
    line.push_str(&format!(" ({})\n", s.status));
    line
}

fn esc(text: &str) -> String {
    let mut s = String::new();
    escape_md(&mut s, text);
    s
}

/// The job description as Markdown.
pub fn markdown(jd: &JobDescription) -> String {
    let r = &jd.role;
    let mut out = String::new();
    out.push_str(&format!("# Job description: {}", esc(&r.title)));
    if let Some(a) = &r.acronym {
        out.push_str(&format!(" ({})", esc(a)));
    }
    out.push_str("\n\n| | |\n|---|---|\n");
    out.push_str(&format!("| Role | `{}` |\n", r.id));
    let levels = if r.levels.is_empty() {
        "not set".to_string()
    } else {
        esc(&r.levels.join(", "))
    };
    out.push_str(&format!("| Job levels | {levels} |\n"));
    let reports = r.reports_to.as_ref().map_or("not set".to_string(), |t| {
        format!("{} (`{}`)", esc(&t.title), t.id)
    });
    out.push_str(&format!("| Reports to | {reports} |\n"));
    if !jd.direct_reports.is_empty() {
        let list: Vec<String> = jd
            .direct_reports
            .iter()
            .map(|t| format!("{} (`{}`)", esc(&t.title), t.id))
            .collect();
        out.push_str(&format!("| Direct reports | {} |\n", list.join(", ")));
    }
    let source = match (&jd.source.commit_short, &jd.source.date) {
        (Some(c), Some(d)) => format!(
            "`{}` at commit `{c}` ({d}){}",
            r.path,
            if jd.source.uncommitted {
                ", with uncommitted changes"
            } else {
                ""
            }
        ),
        _ => format!("`{}` (no commit)", r.path),
    };
    out.push_str(&format!("| Source | {source} |\n"));

    if !jd.body.trim().is_empty() {
        out.push_str("\n## About the role\n\n");
        out.push_str(demote_headings(&jd.body, 3).trim());
        out.push('\n');
    }

    out.push_str("\n## Accountable for (owner)\n\n");
    if jd.owner_of.is_empty() {
        out.push_str("No SOP names this role as its owner.\n");
    }
    for s in &jd.owner_of {
        out.push_str(&sop_line(s));
    }
    out.push_str("\n## Approves\n\n");
    if jd.approver_of.is_empty() {
        out.push_str("No SOP names this role among its approvers.\n");
    }
    for s in &jd.approver_of {
        out.push_str(&sop_line(s));
    }

    out.push_str("\n## Responsibilities in the SOPs\n");
    if jd.sops.is_empty() {
        out.push_str("\nNo SOP links to this role's file.\n");
    }
    for sop in &jd.sops {
        out.push_str(&format!(
            "\n### {} {} ({})\n\n",
            esc(&sop.id),
            esc(&sop.title),
            sop.status
        ));
        for sec in &sop.sections {
            match &sec.number {
                Some(n) => out.push_str(&format!("- **§{n} {}**\n", esc(&sec.title))),
                None => out.push_str(&format!("- **{}** (introduction)\n", esc(&sec.title))),
            }
            for d in &sec.duties {
                out.push_str(&format!("  - {}", d.text));
                if !d.steps.is_empty() {
                    let steps: Vec<String> = d.steps.iter().map(|s| format!("`{s}`")).collect();
                    out.push_str(&format!(" (steps: {})", steps.join(", ")));
                }
                out.push('\n');
            }
        }
    }
    out
}

/// Links in the role's body, as a reader of the PDF can follow them.
struct BodyResolver<'a> {
    corpus: &'a Corpus,
    from: &'a str,
}

impl Resolver for BodyResolver<'_> {
    fn link(&self, dest: &str) -> LinkView {
        match links::resolve(self.corpus, self.from, dest) {
            Target::External => LinkView::Url(dest.to_string()),
            Target::Path { path, fragment, .. } => {
                let Some(i) = self.corpus.doc_id(&path) else {
                    return LinkView::Note(path);
                };
                match self.corpus.sops.iter().find(|s| s.doc == i) {
                    Some(s) => {
                        let doc = &self.corpus.docs[i];
                        let section = fragment
                            .and_then(|f| {
                                markup::section_numbers(
                                    doc.file.text.get(doc.body_start..).unwrap_or(""),
                                )
                                .remove(&f)
                            })
                            .map(|n| format!(" §{n}"))
                            .unwrap_or_default();
                        // The link text usually is the id already: the note gives the title.
                        LinkView::Note(format!("{}{section}", s.title))
                    }
                    None => LinkView::Plain,
                }
            }
            _ => LinkView::Plain,
        }
    }

    fn image(&mut self, _dest: &str) -> Option<String> {
        None
    }
}

fn serde_value<T: Serialize>(v: &T) -> minijinja::Value {
    minijinja::Value::from(minijinja::value::Serde(v))
}

/// The job description as a PDF, typeset in-process with template `jd.typ.j2`.
pub fn pdf(snap: &Snapshot, jd: &JobDescription) -> Result<Vec<u8>, Error> {
    let corpus = &snap.corpus;
    let mut resolver = BodyResolver {
        corpus,
        from: &jd.role.path,
    };
    let body = markup::convert(&jd.body, &mut resolver).markup;
    let ctx = minijinja::context! {
        role => serde_value(&jd.role),
        direct_reports => serde_value(&jd.direct_reports),
        owner_of => serde_value(&jd.owner_of),
        approver_of => serde_value(&jd.approver_of),
        sops => serde_value(&jd.sops),
        source => serde_value(&jd.source),
        body => minijinja::Value::from_safe_string(body),
    };
    let text = template::render(
        template::Overrides::Tree(&corpus.tree),
        &corpus.config.paths.templates,
        "jd.typ.j2",
        ctx,
    )?;
    let commit = jd.source.commit.clone().unwrap_or_else(|| "none".into());
    // Not the `sopkit-commit=` keywords of an SOP: `verify-pdf` rebuilds only SOPs.
    let keywords = vec![
        format!("sopkit-jd-role={}", jd.role.id),
        format!(
            "sopkit-jd-commit={commit}{}",
            if jd.source.uncommitted {
                "+uncommitted"
            } else {
                ""
            }
        ),
        format!("sopkit-jd-version={}", crate::VERSION),
    ];
    let source = format!(
        "{}\n{text}",
        template::prelude(&format!("Job description: {}", jd.role.title), &keywords)
    );
    typeset::pdf(typeset::Job {
        source,
        files: BTreeMap::new(),
        time: snap.time,
        ident: format!("jd-{}@{commit}", jd.role.id),
    })
    .map_err(|error| Error::Typeset {
        role: jd.role.id.clone(),
        error,
    })
}

/// Reads the repository at `dir` as `sopkit render` does (HEAD when the working tree is
/// clean, else the working tree).
pub fn open(dir: &Path) -> Result<Snapshot, Error> {
    Ok(Snapshot::open(dir, None)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sentences_split_outside_code() {
        let t = "Run `a. b` now. Then stop! Done";
        let s: Vec<&str> = sentences(t, std::slice::from_ref(&(4..8)))
            .into_iter()
            .map(|r| &t[r])
            .collect();
        assert_eq!(s, vec!["Run `a. b` now.", " Then stop!", " Done"]);
    }

    #[test]
    fn headings_are_demoted_and_titles_dropped() {
        assert_eq!(without_title("# QA Lead\n\n- Approves.\n"), "- Approves.");
        assert_eq!(without_title("Text.\n\n# Late\n"), "Text.\n\n# Late");
        let d = demote_headings("## Duties\n\nText with ## inside.\n\n### More\n", 3);
        assert_eq!(d, "### Duties\n\nText with ## inside.\n\n#### More\n");
        assert_eq!(demote_headings("No headings.\n", 3), "No headings.\n");
    }

    #[test]
    fn markdown_is_escaped_and_code_kept() {
        let mut u = Unit::new(UnitKind::Paragraph);
        u.plain = "Keep *all* files in /srv/x_y and run backup-db.".into();
        let at = u.plain.find("backup-db").unwrap();
        u.code = std::iter::once(at..at + "backup-db".len()).collect();
        u.links = vec![0];
        let (md, plain) = selection(&u, std::slice::from_ref(&(0..u.plain.len())));
        assert_eq!(
            md,
            "Keep \\*all\\* files in /srv/x\\_y and run `backup-db`."
        );
        assert_eq!(plain, "Keep *all* files in /srv/x_y and run backup-db.");
    }

    #[test]
    fn long_duties_are_cut() {
        let mut u = Unit::new(UnitKind::Paragraph);
        u.plain = "word ".repeat(400);
        u.links = vec![0];
        let (md, plain) = selection(&u, std::slice::from_ref(&(0..u.plain.len())));
        assert!(
            plain.ends_with('…') && plain.chars().count() <= MAX_DUTY + 1,
            "{plain}"
        );
        assert!(md.ends_with('…'));
    }
}
