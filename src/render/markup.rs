//! Markdown to typst markup. Everything an author wrote reaches typst as escaped text or as
//! a string literal, so nothing in an SOP can call a typst function, read a file, or change
//! the document's styles: the only typst code in the output is the code this module writes.
//!
//! Block structure becomes calls of a few helper functions that the template defines
//! (`sop-step`, `sop-alert`, `sop-xref`, `sop-url`, `sop-missing-image`), so a repository can
//! restyle them without touching this code.

use std::collections::HashMap;
use std::fmt::Write;

use pulldown_cmark::{
    Alignment, BlockQuoteKind, CodeBlockKind, Event, HeadingLevel, LinkType, Parser, Tag, TagEnd,
};

use crate::corpus::markdown::options;
use crate::corpus::step;

/// How deep containers (lists, quotes, emphasis …) may nest before further levels are
/// flattened into their parent: typst's parser and layout recurse per level.
pub const MAX_DEPTH: usize = 12;

/// How a link destination is shown on paper.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkView {
    /// An external URL: the link text, with the URL in a footnote.
    Url(String),
    /// A reference a reader can follow on paper, shown after the link text: `IT-250 §3.2`,
    /// `§4`, `Glossary`, `roles/it-lead.md`.
    Note(String),
    /// Nothing to add (a link to the glossary or a role: the appendix lists both).
    Plain,
}

/// What the converter asks of the document it is converting.
pub trait Resolver {
    fn link(&self, dest: &str) -> LinkView;
    /// The virtual path under which typst may read the image at `dest`, or `None` when it is
    /// not a readable PNG, JPEG or SVG file of the repository.
    fn image(&mut self, dest: &str) -> Option<String>;
}

/// One heading of the converted body: its section number as shown (`3.2`), and the slug a
/// link uses to reach it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Section {
    pub number: String,
    pub level: usize,
    pub title: String,
}

/// The converted body.
#[derive(Debug, Default)]
pub struct Converted {
    pub markup: String,
    /// Sections in document order.
    pub sections: Vec<Section>,
    /// Whether the first heading was a level-1 title that was dropped (the title page shows
    /// the title).
    pub dropped_title: bool,
}

/// Section numbers of a Markdown body, keyed by GitHub slug, the way [`convert`] numbers
/// them: another SOP's cross-references use this.
pub fn section_numbers(body: &str) -> HashMap<String, String> {
    let mut slugger = crate::corpus::slug::Slugger::default();
    let headings = headings(body);
    let numbers = number_headings(&headings);
    let mut out = HashMap::new();
    for (h, n) in headings.iter().zip(numbers) {
        let slug = slugger.slug(&h.1);
        if let Some(n) = n {
            out.insert(slug, n);
        }
    }
    out
}

/// Every heading's level and plain text.
fn headings(body: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut current: Option<(usize, String)> = None;
    for event in Parser::new_ext(body, options()) {
        match event {
            Event::Start(Tag::Heading { level, .. }) => {
                current = Some((level_of(level), String::new()))
            }
            Event::End(TagEnd::Heading(_)) => out.extend(current.take()),
            Event::Text(t) | Event::Code(t) => {
                if let Some((_, s)) = &mut current {
                    s.push_str(&t);
                }
            }
            _ => {}
        }
    }
    out
}

fn level_of(level: HeadingLevel) -> usize {
    level as usize
}

/// A leading manual number such as `3.`, `3.2` or `3.2.1)` in a heading; the renderer numbers
/// sections itself.
fn manual_number_len(text: &str) -> usize {
    let bytes = text.as_bytes();
    let mut i = 0;
    let mut saw_digit = false;
    while i < bytes.len() && (bytes[i].is_ascii_digit() || (bytes[i] == b'.' && saw_digit)) {
        saw_digit |= bytes[i].is_ascii_digit();
        i += 1;
    }
    if !saw_digit {
        return 0;
    }
    if i < bytes.len() && bytes[i] == b')' {
        i += 1;
    }
    if !text[..i].contains(['.', ')']) {
        return 0; // "2024 review": a bare number is part of the title
    }
    let rest = &text[i..];
    let trimmed = rest.trim_start();
    if trimmed.len() == rest.len() || trimmed.is_empty() {
        return 0; // "2024 review" or a heading that is only a number
    }
    text.len() - trimmed.len()
}

/// The numbers (`1`, `1.2`, …) of headings: a leading level-1 title is not numbered; the
/// shallowest remaining level counts as level 1; headings before the first one of that level
/// (a preamble, such as an H2 above the H1) are not numbered, rather than `0.1`.
fn number_headings(headings: &[(usize, String)]) -> Vec<Option<String>> {
    let skip_title = headings.first().is_some_and(|h| h.0 == 1);
    let rest = if skip_title { &headings[1..] } else { headings };
    let top = rest.iter().map(|h| h.0).min().unwrap_or(1);
    let mut counters: Vec<u32> = Vec::new();
    let mut out = Vec::with_capacity(headings.len());
    if skip_title {
        out.push(None);
    }
    let mut seen_top = false;
    for (level, _) in rest {
        seen_top |= *level == top;
        if !seen_top {
            out.push(None);
            continue;
        }
        let depth = level - top + 1;
        counters.truncate(depth);
        while counters.len() < depth {
            counters.push(0);
        }
        counters[depth - 1] += 1;
        out.push(Some(
            counters
                .iter()
                .map(|c| c.to_string())
                .collect::<Vec<_>>()
                .join("."),
        ));
    }
    out
}

/// Appends `text` as typst markup that shows exactly these characters.
pub fn escape_into(out: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            // Every ASCII punctuation character may start markup somewhere (`#`, `$`, `*`,
            // `_`, `` ` ``, `<`, `@`, `=`, `-`, `+`, `/`, `~`, `\`, quotes, brackets,
            // `1.` list numbers, `//` comments, `https://` autolinks); a backslash before any
            // non-space character is a literal in typst.
            c if c.is_ascii_punctuation() => {
                out.push('\\');
                out.push(c);
            }
            '\n' | '\r' | '\t' => out.push(' '),
            c if c.is_control() => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
}

/// `text` escaped as typst markup.
pub fn escape(text: &str) -> String {
    let mut s = String::with_capacity(text.len() + text.len() / 4);
    escape_into(&mut s, text);
    s
}

/// `text` as a typst string literal, quotes included.
pub fn string_literal(text: &str) -> String {
    let mut s = String::with_capacity(text.len() + 2);
    s.push('"');
    for c in text.chars() {
        match c {
            '\\' => s.push_str("\\\\"),
            '"' => s.push_str("\\\""),
            '\n' => s.push_str("\\n"),
            '\r' => s.push_str("\\r"),
            '\t' => s.push_str("\\t"),
            c if c.is_control() => {
                let _ = write!(s, "\\u{{{:x}}}", c as u32);
            }
            c => s.push(c),
        }
    }
    s.push('"');
    s
}

/// What closes an open Markdown container.
enum Frame {
    /// Emit this text at the end; `true` when the container counts towards [`MAX_DEPTH`].
    Close(&'static str, bool),
    /// A container beyond [`MAX_DEPTH`], flattened into its parent.
    Flattened,
    /// A link: the text that follows it (its note or footnote).
    Link(String),
    /// An image: its alt text is collected, then the image is emitted.
    Image { path: Option<String>, dest: String },
    /// A heading whose text is collected (a manual number is removed).
    Heading { title: bool },
    /// A code block: its text is collected.
    Code { info: String },
    /// A table: cells are separated by commas.
    Table,
    /// A table beyond [`MAX_DEPTH`]: its cells become text.
    FlatTable,
}

struct Converter<'a, R: Resolver> {
    resolver: &'a mut R,
    out: String,
    stack: Vec<Frame>,
    depth: usize,
    /// Text collected for the innermost heading, image alt text or code block.
    collect: Option<String>,
    footnotes: &'a HashMap<String, String>,
    in_footnote: bool,
    numbers: std::vec::IntoIter<Option<String>>,
    sections: Vec<Section>,
    dropped_title: bool,
    steps: usize,
    /// Whether the current table is flattened into text (beyond [`MAX_DEPTH`]).
    flat_table: bool,
    /// The changes to mark, for a redline.
    marks: Option<MarkState>,
}

/// The changes still to mark while converting (offsets into the body).
struct MarkState {
    inserted: Vec<std::ops::Range<usize>>,
    deleted: std::collections::VecDeque<crate::diff::Deletion>,
    headings: HashMap<usize, crate::diff::HeadingMark>,
    /// What to say under the heading being converted.
    heading_note: Option<String>,
    /// The code block being converted, when changes fall in it.
    changed_block: Option<std::ops::Range<usize>>,
    /// The body the offsets point into.
    body: String,
    /// Set while converting an image that is new or changed.
    changed_image: bool,
    /// Per range of `inserted`: whether the output shows it yet.
    shown: Vec<bool>,
}

impl MarkState {
    /// Whether `pos` is inserted text, and where that stops being so (capped at `end`).
    fn inserted_at(&self, pos: usize, end: usize) -> (bool, usize) {
        let i = self.inserted.partition_point(|r| r.end <= pos);
        match self.inserted.get(i) {
            Some(r) if r.start <= pos => (true, r.end.min(end)),
            Some(r) => (false, r.start.min(end)),
            None => (false, end),
        }
    }

    /// The lines of `block` (of the body) that changed: each as it was (inserted text left
    /// out, deleted text put back where it stood) and as it is.
    fn changed_lines(&self, block: &std::ops::Range<usize>) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let Some(text) = self.body.get(block.clone()) else {
            return out;
        };
        let mut a = block.start;
        for line in text.split_inclusive('\n') {
            let b = a + line.trim_end_matches(['\n', '\r']).len();
            let dels: Vec<&crate::diff::Deletion> = self
                .deleted
                .iter()
                .filter(|d| d.at >= a && d.at <= b && d.section.is_none())
                .collect();
            if self.overlaps_insert(&(a..b.max(a + 1))) || !dels.is_empty() {
                let mut old = String::new();
                let mut pos = a;
                let mut dels = dels.into_iter().peekable();
                loop {
                    while let Some(d) = dels.next_if(|d| d.at <= pos) {
                        old.push_str(d.text.trim_end_matches('\n'));
                    }
                    if pos >= b {
                        break;
                    }
                    let i = self.inserted.partition_point(|r| r.end <= pos);
                    match self.inserted.get(i).filter(|r| r.start <= pos) {
                        Some(r) => pos = r.end.min(b),
                        None => {
                            let c = self.body[pos..].chars().next().expect("pos < b");
                            old.push(c);
                            pos += c.len_utf8();
                        }
                    }
                }
                out.push((old, self.body[a..b].to_string()));
            }
            a += line.len();
        }
        out
    }

    /// Notes that the output shows the inserted text within `r`.
    fn show(&mut self, r: &std::ops::Range<usize>) {
        let mut i = self.inserted.partition_point(|x| x.end <= r.start);
        while i < self.inserted.len() && self.inserted[i].start < r.end.max(r.start + 1) {
            self.shown[i] = true;
            i += 1;
        }
    }

    /// Inserted text that the output does not show (it sits where the document shows
    /// nothing: a second definition of a footnote, say), as one note.
    fn unshown_note(&self) -> Option<String> {
        let hidden: Vec<String> = self
            .inserted
            .iter()
            .zip(&self.shown)
            .filter(|(_, shown)| !**shown)
            .filter_map(|(r, _)| self.body.get(r.clone()))
            .map(|t| t.split_whitespace().collect::<Vec<_>>().join(" "))
            .filter(|t| !t.is_empty())
            .map(|t| format!("#sop-ins[{}]", escape(&t)))
            .collect();
        (!hidden.is_empty()).then(|| {
            format!(
                "\n\n#sop-redline-note[Inserted where this document shows nothing: {}]\n",
                hidden.join(" … ")
            )
        })
    }

    fn overlaps_insert(&self, r: &std::ops::Range<usize>) -> bool {
        let i = self.inserted.partition_point(|x| x.end <= r.start);
        self.inserted.get(i).is_some_and(|x| x.start < r.end)
    }
}

/// Deleted text as typst markup: struck through, as the words a reader saw (the Markdown
/// source of the old revision with its markup left out), white space made single spaces.
fn deleted_markup(d: &crate::diff::Deletion) -> String {
    let mut words = String::new();
    for event in Parser::new_ext(&d.text, options()) {
        match event {
            Event::Text(t) | Event::Code(t) | Event::InlineHtml(t) | Event::Html(t) => {
                words.push_str(&t)
            }
            Event::SoftBreak
            | Event::HardBreak
            | Event::End(
                TagEnd::Paragraph
                | TagEnd::Heading(_)
                | TagEnd::Item
                | TagEnd::TableCell
                | TagEnd::CodeBlock
                | TagEnd::BlockQuote(_),
            ) => words.push(' '),
            _ => {}
        }
    }
    let text = words.split_whitespace().collect::<Vec<_>>().join(" ");
    match &d.section {
        Some(title) => format!(
            "\n\n#sop-redline-removed[{}][{}]\n\n",
            escape(title),
            escape(&text)
        ),
        None if text.is_empty() => String::new(),
        None => format!("#sop-del[{}]", escape(&text)),
    }
}

/// Converts a Markdown body to typst markup.
pub fn convert<R: Resolver>(body: &str, resolver: &mut R) -> Converted {
    convert_marked(body, resolver, None)
}

/// [`convert`], with the changes of a redline marked where they fall: inserted text through
/// `#sop-ins`, deleted text through `#sop-del` where it stood, removed sections through
/// `#sop-redline-removed`, and notes under new, renamed and moved headings and after changed
/// code blocks through `#sop-redline-note` (the redline defines them). `marks` are offsets
/// into `body`.
pub fn convert_marked<R: Resolver>(
    body: &str,
    resolver: &mut R,
    marks: Option<&crate::diff::Marks>,
) -> Converted {
    let events: Vec<(Event<'_>, std::ops::Range<usize>)> = Parser::new_ext(body, options())
        .into_offset_iter()
        .collect();
    // Footnote definitions come first, so that a reference can show its text in place.
    let mut footnotes = HashMap::new();
    // The changed footnote definitions that will show (the first of each label).
    let mut shown_defs = Vec::new();
    let mut main = Vec::with_capacity(events.len());
    let mut i = 0;
    let empty = HashMap::new();
    while i < events.len() {
        if let (Event::Start(Tag::FootnoteDefinition(label)), _) = &events[i] {
            let start = i + 1;
            let mut nesting = 0usize;
            let mut end = start;
            while end < events.len() {
                match &events[end].0 {
                    Event::Start(Tag::FootnoteDefinition(_)) => nesting += 1,
                    Event::End(TagEnd::FootnoteDefinition) if nesting == 0 => break,
                    Event::End(TagEnd::FootnoteDefinition) => nesting -= 1,
                    _ => {}
                }
                end += 1;
            }
            let mut c = Converter::new(resolver, &empty, Vec::new());
            c.in_footnote = true;
            for (e, range) in &events[start..end] {
                c.event(e.clone(), range.clone());
            }
            // A footnote definition with inserted text is marked as a whole where it shows.
            let def = events[i].1.clone();
            let changed = marks.is_some_and(|m| {
                let at = m.inserted.partition_point(|r| r.end <= def.start);
                m.inserted.get(at).is_some_and(|r| r.start < def.end)
            });
            let text = c.out.trim().to_string();
            if changed && !footnotes.contains_key(label.as_ref()) {
                shown_defs.push(def.clone());
            }
            footnotes.entry(label.to_string()).or_insert_with(|| {
                if changed {
                    format!("#sop-ins[{text}]")
                } else {
                    text
                }
            });
            i = end + 1;
        } else {
            main.push(events[i].clone());
            i += 1;
        }
    }
    let heading_list = headings(body);
    let numbers = number_headings(&heading_list);
    let mut c = Converter::new(resolver, &footnotes, numbers);
    c.marks = marks.map(|m| MarkState {
        inserted: m.inserted.clone(),
        deleted: m.deleted.iter().cloned().collect(),
        headings: m.headings.iter().map(|h| (h.at, h.clone())).collect(),
        heading_note: None,
        changed_block: None,
        body: body.to_string(),
        changed_image: false,
        shown: vec![false; m.inserted.len()],
    });
    if let Some(m) = &mut c.marks {
        for def in &shown_defs {
            m.show(def);
        }
    }
    for (e, range) in main {
        c.event(e, range);
    }
    c.flush_deleted(usize::MAX, true);
    if let Some(note) = c.marks.as_ref().and_then(MarkState::unshown_note) {
        c.out.push_str(&note);
    }
    Converted {
        markup: c.out,
        sections: c.sections,
        dropped_title: c.dropped_title,
    }
}

impl<'a, R: Resolver> Converter<'a, R> {
    fn new(
        resolver: &'a mut R,
        footnotes: &'a HashMap<String, String>,
        numbers: Vec<Option<String>>,
    ) -> Self {
        Converter {
            resolver,
            out: String::new(),
            stack: Vec::new(),
            depth: 0,
            collect: None,
            footnotes,
            in_footnote: false,
            numbers: numbers.into_iter(),
            sections: Vec::new(),
            dropped_title: false,
            steps: 0,
            flat_table: false,
            marks: None,
        }
    }

    /// Emits the deletions that stood before `pos`; `block` when between blocks (a
    /// deletion then stands as a paragraph of its own).
    fn flush_deleted(&mut self, pos: usize, block: bool) {
        let Some(m) = &mut self.marks else { return };
        while m.deleted.front().is_some_and(|d| d.at <= pos) {
            let d = m.deleted.pop_front().expect("checked");
            let markup = deleted_markup(&d);
            if markup.is_empty() {
                continue;
            }
            if block && d.section.is_none() {
                self.out.push_str("\n\n");
                self.out.push_str(&markup);
                self.out.push_str("\n\n");
            } else {
                self.out.push_str(&markup);
            }
        }
    }

    /// Text at `r` in the body, its inserted parts marked and the deletions inside it shown
    /// where they stood.
    fn marked_text(&mut self, t: &str, r: std::ops::Range<usize>) {
        let Some(m) = &self.marks else {
            return self.text(t);
        };
        if t.len() != r.len() {
            // Not the source's bytes (an escape or an entity): marked as a whole.
            let inserted = m.overlaps_insert(&r);
            if inserted && let Some(m) = &mut self.marks {
                m.show(&r);
            }
            return self.piece(t, inserted);
        }
        let mut pos = r.start;
        while pos < r.end {
            self.flush_deleted(pos, false);
            let m = self.marks.as_ref().expect("checked");
            let (inserted, mut until) = m.inserted_at(pos, r.end);
            if let Some(d) = m.deleted.front().filter(|d| d.at > pos && d.at < until) {
                until = d.at;
            }
            while until < r.end && !t.is_char_boundary(until - r.start) {
                until += 1;
            }
            if inserted && let Some(m) = &mut self.marks {
                m.show(&(pos..until));
            }
            self.piece(&t[pos - r.start..until - r.start], inserted);
            pos = until;
        }
    }

    fn piece(&mut self, t: &str, inserted: bool) {
        if inserted && !t.trim().is_empty() {
            self.out.push_str("#sop-ins[");
            escape_into(&mut self.out, t);
            self.out.push(']');
        } else {
            escape_into(&mut self.out, t);
        }
    }

    /// Before an event of the body (outside any collected text): the deletions before it,
    /// and what a heading or code block starting here needs noted.
    fn before(&mut self, event: &Event<'_>, r: &std::ops::Range<usize>) {
        if self.marks.is_none() || self.collect.is_some() {
            return;
        }
        let top = self.stack.is_empty();
        match event {
            Event::Start(
                Tag::Paragraph
                | Tag::Heading { .. }
                | Tag::Table(_)
                | Tag::BlockQuote(_)
                | Tag::List(_)
                | Tag::CodeBlock(_)
                | Tag::HtmlBlock,
            )
            | Event::Rule
                if top =>
            {
                self.flush_deleted(r.start, true)
            }
            Event::Text(_) | Event::Code(_) => self.flush_deleted(r.start, false),
            _ => {}
        }
        let m = self.marks.as_mut().expect("checked");
        match event {
            Event::Start(Tag::Heading { .. }) => {
                m.heading_note = m.headings.get(&r.start).map(|h| {
                    let mut what = Vec::new();
                    if h.added {
                        what.push("#sop-ins[New section]".to_string());
                    }
                    if let Some(old) = &h.renamed_from {
                        what.push(format!("Renamed; it was #sop-del[{}]", escape(old)));
                    }
                    if h.moved {
                        what.push("Moved here".to_string());
                    }
                    what.join(". ")
                });
            }
            Event::Start(Tag::Image { .. }) => {
                m.changed_image = m.overlaps_insert(r);
                if m.changed_image {
                    m.show(r);
                }
            }
            Event::Start(Tag::CodeBlock(_)) => {
                let changed =
                    m.overlaps_insert(r) || m.deleted.front().is_some_and(|d| d.at < r.end);
                m.changed_block = changed.then(|| r.clone());
                m.show(r);
            }
            _ => {}
        }
    }

    /// After a heading or code block: its note, when it has one.
    fn after_block(&mut self) {
        let Some(m) = &mut self.marks else { return };
        if let Some(note) = m.heading_note.take() {
            let _ = writeln!(self.out, "#sop-redline-note[{note}]");
        }
        if let Some(block) = m.changed_block.take() {
            // Code is shown as written: every changed line as it was and as it is, so that a
            // changed step argument or info string is seen exactly.
            let raw = |t: &str| format!("#raw({})", string_literal(t));
            let mut note = String::from("The block above changed:");
            for (old, new) in m.changed_lines(&block) {
                note.push_str("#linebreak()");
                if !old.trim().is_empty() {
                    let _ = write!(note, "#sop-del[{}] → ", raw(&old));
                }
                let _ = write!(note, "#sop-ins[{}]", raw(&new));
            }
            while m.deleted.front().is_some_and(|d| d.at < block.end) {
                m.deleted.pop_front();
            }
            let _ = writeln!(self.out, "#sop-redline-note[{note}]");
        }
    }

    fn push(&mut self, s: &str) {
        self.out.push_str(s);
    }

    /// Opens a nesting container, or flattens it beyond the depth limit.
    fn open(&mut self, open: &str, close: &'static str) {
        if self.depth >= MAX_DEPTH || self.collect.is_some() || self.flat_table {
            self.stack.push(Frame::Flattened);
        } else {
            self.depth += 1;
            self.out.push_str(open);
            self.stack.push(Frame::Close(close, true));
        }
    }

    fn text(&mut self, t: &str) {
        match &mut self.collect {
            Some(c) => c.push_str(t),
            None => escape_into(&mut self.out, t),
        }
    }

    fn event(&mut self, event: Event<'_>, range: std::ops::Range<usize>) {
        self.before(&event, &range);
        match event {
            Event::Start(tag) => self.start(tag),
            Event::End(tag) => {
                let block = matches!(tag, TagEnd::Heading(_) | TagEnd::CodeBlock);
                let image = matches!(tag, TagEnd::Image);
                self.end(tag);
                if block {
                    self.after_block();
                }
                if image
                    && let Some(m) = &mut self.marks
                    && std::mem::take(&mut m.changed_image)
                    && self.collect.is_none()
                {
                    self.out.push_str("#sop-ins[(image added or changed)]");
                }
            }
            Event::Text(t) if self.collect.is_none() => self.marked_text(&t, range),
            Event::Text(t) => self.text(&t),
            Event::Code(t) => match &mut self.collect {
                Some(c) => c.push_str(&t),
                None => {
                    let lit = string_literal(&t);
                    let inserted = self
                        .marks
                        .as_ref()
                        .is_some_and(|m| m.overlaps_insert(&range));
                    if inserted && let Some(m) = &mut self.marks {
                        m.show(&range);
                    }
                    let _ = if inserted {
                        write!(self.out, "#sop-ins[#raw({lit})]")
                    } else {
                        write!(self.out, "#raw({lit});")
                    };
                }
            },
            Event::SoftBreak => self.text(" "),
            Event::HardBreak => match &mut self.collect {
                Some(c) => c.push(' '),
                None => self.push("#linebreak();"),
            },
            Event::Rule => self.push("\n#line(length: 100%)\n"),
            Event::TaskListMarker(done) => self.push(if done { "☑ " } else { "☐ " }),
            Event::FootnoteReference(label) => match self.footnotes.get(label.as_ref()) {
                Some(text) if !self.in_footnote => {
                    let _ = write!(self.out, "#footnote[{text}]");
                }
                _ => self.text(&format!("[^{label}]")),
            },
            Event::Html(html) | Event::InlineHtml(html) => {
                let inserted = self.collect.is_none()
                    && self
                        .marks
                        .as_ref()
                        .is_some_and(|m| m.overlaps_insert(&range));
                if inserted {
                    if let Some(m) = &mut self.marks {
                        m.show(&range);
                    }
                    // HTML the PDF leaves out (a comment, an anchor) still shows that it came.
                    let before = self.out.len();
                    self.out.push_str("#sop-ins[");
                    let inner = self.out.len();
                    self.html(&html);
                    if self.out.len() == inner {
                        self.out.push_str("(hidden HTML)");
                    }
                    self.out.push(']');
                    debug_assert!(self.out.len() > before);
                } else {
                    self.html(&html);
                }
            }
            Event::InlineMath(t) | Event::DisplayMath(t) => self.text(&t),
        }
    }

    /// Raw HTML: comments and bare anchors (`<a id="x"></a>`) are invisible on a forge and
    /// here; `<br>` breaks the line; anything else is shown as written.
    fn html(&mut self, html: &str) {
        let t = html.trim();
        let lower = t.to_ascii_lowercase();
        if t.is_empty() || lower.starts_with("<!--") || lower == "</a>" {
            return;
        }
        if lower.starts_with("<a ") && !lower.contains("href") {
            return;
        }
        if matches!(lower.as_str(), "<br>" | "<br/>" | "<br />") {
            if self.collect.is_none() {
                self.push("#linebreak();");
            }
            return;
        }
        self.text(html);
    }

    // One arm per Markdown tag: a match that maps each to its typst opening.
    fn start(&mut self, tag: Tag<'_>) {
        match tag {
            Tag::Paragraph => self.stack.push(Frame::Close("\n\n", false)),
            Tag::Heading { level, .. } => {
                let number = self.numbers.next().flatten();
                let title = number.is_none() && level_of(level) == 1 && self.sections.is_empty();
                self.collect = Some(String::new());
                if !title {
                    // An unnumbered heading (a preamble) keeps its Markdown level.
                    let (level, number) = match number {
                        Some(n) => (n.split('.').count(), n),
                        None => (level_of(level), String::new()),
                    };
                    self.sections.push(Section {
                        level,
                        number,
                        title: String::new(),
                    });
                }
                self.stack.push(Frame::Heading { title });
            }
            Tag::BlockQuote(kind) => {
                let open = match kind {
                    None => "\n#quote(block: true)[".to_string(),
                    Some(k) => {
                        let name = match k {
                            BlockQuoteKind::Note => "note",
                            BlockQuoteKind::Tip => "tip",
                            BlockQuoteKind::Important => "important",
                            BlockQuoteKind::Warning => "warning",
                            BlockQuoteKind::Caution => "caution",
                        };
                        format!("\n#sop-alert(\"{name}\")[")
                    }
                };
                self.open(&open, "]\n");
            }
            Tag::CodeBlock(kind) => {
                let info = match kind {
                    CodeBlockKind::Fenced(info) => info.to_string(),
                    CodeBlockKind::Indented => String::new(),
                };
                self.collect = Some(String::new());
                self.stack.push(Frame::Code { info });
            }
            Tag::HtmlBlock => self.stack.push(Frame::Close("\n", false)),
            Tag::List(start) => {
                let open = match start {
                    Some(n) => format!("\n#enum(start: {n}, "),
                    None => "\n#list(".to_string(),
                };
                self.open(&open, ")\n");
            }
            Tag::Item => self.open("[", "],"),
            Tag::FootnoteDefinition(_) => self.stack.push(Frame::Close("", false)),
            Tag::DefinitionList
            | Tag::DefinitionListTitle
            | Tag::DefinitionListDefinition
            | Tag::MetadataBlock(_)
            | Tag::Superscript
            | Tag::Subscript => self.stack.push(Frame::Close(" ", false)),
            Tag::Table(aligns) => {
                if self.depth >= MAX_DEPTH {
                    self.flat_table = true;
                    self.stack.push(Frame::FlatTable);
                    return;
                }
                self.depth += 1;
                let cols = aligns.len().max(1);
                let align: Vec<&str> = aligns
                    .iter()
                    .map(|a| match a {
                        Alignment::None | Alignment::Left => "left",
                        Alignment::Center => "center",
                        Alignment::Right => "right",
                    })
                    .collect();
                let _ = write!(
                    self.out,
                    "\n#table(columns: {cols}, align: ({},), ",
                    if align.is_empty() {
                        "left".to_string()
                    } else {
                        align.join(", ")
                    }
                );
                self.stack.push(Frame::Table);
            }
            Tag::TableHead if self.flat_table => self.stack.push(Frame::Close("\n\n", false)),
            Tag::TableHead => {
                self.push("table.header(");
                self.stack.push(Frame::Close("),", false));
            }
            Tag::TableRow if self.flat_table => self.stack.push(Frame::Close("\n\n", false)),
            Tag::TableRow => self.stack.push(Frame::Close("", false)),
            Tag::TableCell => {
                if self.flat_table {
                    self.stack.push(Frame::Close(" | ", false));
                } else {
                    self.push("[");
                    self.stack.push(Frame::Close("],", false));
                }
            }
            Tag::Emphasis => self.open("#emph[", "]"),
            Tag::Strong => self.open("#strong[", "]"),
            Tag::Strikethrough => self.open("#strike[", "]"),
            Tag::Link {
                link_type,
                dest_url,
                ..
            } => {
                let dest = dest_url.to_string();
                let view = match link_type {
                    LinkType::Email => LinkView::Url(format!("mailto:{dest}")),
                    _ => self.resolver.link(&dest),
                };
                let after = match view {
                    LinkView::Url(url) => {
                        let lit = string_literal(&url);
                        if self.in_footnote || self.collect.is_some() {
                            format!(" (#sop-url({lit}))")
                        } else {
                            format!("#footnote[#sop-url({lit})]")
                        }
                    }
                    LinkView::Note(note) => format!(" #sop-xref({})", string_literal(&note)),
                    LinkView::Plain => String::new(),
                };
                self.stack.push(Frame::Link(after));
            }
            Tag::Image { .. } if self.collect.is_some() => {
                self.stack.push(Frame::Close("", false));
            }
            Tag::Image { dest_url, .. } => {
                let dest = dest_url.to_string();
                let path = self.resolver.image(&dest);
                self.collect = Some(String::new());
                self.stack.push(Frame::Image { path, dest });
            }
        }
    }

    fn end(&mut self, _tag: TagEnd) {
        let Some(frame) = self.stack.pop() else {
            return;
        };
        match frame {
            Frame::Close(s, nested) => {
                if nested {
                    self.depth -= 1;
                }
                self.push(s);
            }
            Frame::Flattened => {
                if self.collect.is_none() {
                    self.push(" ");
                }
            }
            Frame::Link(after) => {
                if let Some(c) = &mut self.collect {
                    c.push_str(&after_plain(&after));
                } else {
                    self.push(&after);
                }
            }
            Frame::Image { path, dest } => {
                let alt = self.collect.take().unwrap_or_default();
                match path {
                    Some(p) => {
                        let _ = write!(
                            self.out,
                            "#box(image({}, alt: {}, fit: \"contain\", width: 100%))",
                            string_literal(&p),
                            string_literal(&alt)
                        );
                    }
                    None => {
                        let _ = write!(
                            self.out,
                            "#sop-missing-image({}, {})",
                            string_literal(&alt),
                            string_literal(&dest)
                        );
                    }
                }
            }
            Frame::Heading { title } => {
                let text = self.collect.take().unwrap_or_default();
                if title {
                    self.dropped_title = true;
                    return;
                }
                let cut = manual_number_len(&text);
                let shown = text[cut..].trim().to_string();
                let section = self.sections.last_mut().expect("pushed at start");
                section.title = shown.clone();
                let level = section.level.min(6);
                let number = section.number.clone();
                let _ = if number.is_empty() {
                    write!(
                        self.out,
                        "\n#heading(level: {level}, numbering: none)[{}]\n",
                        escape(&shown)
                    )
                } else {
                    write!(
                        self.out,
                        "\n#heading(level: {level}, numbering: none)[{}#h(0.6em){}]\n",
                        escape(&number),
                        escape(&shown)
                    )
                };
            }
            Frame::Code { info } => {
                let code = self.collect.take().unwrap_or_default();
                self.code_block(&info, &code);
            }
            Frame::FlatTable => {
                self.flat_table = false;
                self.push("\n");
            }
            Frame::Table => {
                self.depth -= 1;
                self.push(")\n");
            }
        }
    }

    fn code_block(&mut self, info: &str, code: &str) {
        let code = code.strip_suffix('\n').unwrap_or(code);
        let lang = info.split_whitespace().next().unwrap_or("");
        let lang = lang.split('{').next().unwrap_or("");
        let lang_arg = if lang.is_empty() {
            "none".to_string()
        } else {
            string_literal(lang)
        };
        let raw = format!(
            "raw(block: true, lang: {lang_arg}, {})",
            string_literal(code)
        );
        match step::parse_info(info) {
            Ok(Some((_, attrs))) if attrs.contains_key("step") => {
                self.steps += 1;
                let opt = |k: &str| {
                    attrs
                        .get(k)
                        .map_or_else(|| "none".to_string(), |v| string_literal(v))
                };
                let _ = write!(
                    self.out,
                    "\n#sop-step(number: {}, id: {}, target: {}, action: {}, timeout: {}, {raw})\n",
                    self.steps,
                    opt("step"),
                    opt("target"),
                    opt("action"),
                    opt("timeout"),
                );
            }
            _ => {
                let _ = write!(self.out, "\n#{raw}\n");
            }
        }
    }
}

/// A link note inside collected text (a heading, alt text): shown without markup.
fn after_plain(after: &str) -> String {
    // The note is always `#sop-xref("...")`, `#footnote[#sop-url("...")]` or ` (#sop-url(..))`;
    // headings and alt text are escaped later, so only the quoted part is kept.
    match (after.find('"'), after.rfind('"')) {
        (Some(a), Some(b)) if b > a => format!(" ({})", &after[a + 1..b].replace("\\\"", "\"")),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct NoLinks;
    impl Resolver for NoLinks {
        fn link(&self, dest: &str) -> LinkView {
            if dest.starts_with("http") {
                LinkView::Url(dest.to_string())
            } else {
                LinkView::Note(format!("see {dest}"))
            }
        }
        fn image(&mut self, dest: &str) -> Option<String> {
            dest.ends_with(".png").then(|| format!("/img/{dest}"))
        }
    }

    fn conv(md: &str) -> Converted {
        convert(md, &mut NoLinks)
    }

    /// The changes from `old` to `new`, as `sopkit diff` finds them.
    fn changes(old: &str, new: &str) -> crate::diff::Diff {
        use crate::diff::Side;
        crate::diff::compare("QA-1", "T", Side::text_only(old), Side::text_only(new))
    }

    /// Pieces of Markdown that redlines meet: words (some multi-byte), markup, escapes,
    /// entities, headings, lists, tables, steps, links, blank lines.
    const PIECES: &[&str] = &[
        "word ",
        "été ",
        "日本 ",
        "**bold** ",
        "`code` ",
        "\\* ",
        "&amp; ",
        "\n\n",
        "\n",
        "## Head\n\n",
        "# Title\n\n",
        "- item\n",
        "1. first\n",
        "> quote\n",
        "```sh {step=s}\necho ok\n```\n",
        "| a | b |\n|---|---|\n| 1 | 2 |\n",
        "[link](x.md) ",
        "![alt](p.png) ",
        "<!-- c -->",
        "x[^n]\n\n[^n]: note\n",
    ];

    proptest::proptest! {
        /// Any two texts: the marks of their diff convert without a panic, every deleted
        /// word of the old text that was not kept shows somewhere, and without marks the
        /// output is what `convert` gives.
        #[test]
        fn a_redline_of_any_two_texts_converts(
            old in proptest::collection::vec(0..PIECES.len(), 0..24),
            new in proptest::collection::vec(0..PIECES.len(), 0..24),
        ) {
            let text = |v: &[usize]| v.iter().map(|&i| PIECES[i]).collect::<String>();
            let (old, new) = (text(&old), text(&new));
            let d = changes(&old, &new);
            let marks = d.marks();
            for r in &marks.inserted {
                proptest::prop_assert!(new.get(r.clone()).is_some(), "{r:?} in {new:?}");
            }
            let marked = convert_marked(&new, &mut NoLinks, Some(&marks)).markup;
            proptest::prop_assert_eq!(
                convert_marked(&new, &mut NoLinks, None).markup,
                convert(&new, &mut NoLinks).markup
            );
            if d.sections.iter().any(|s| s.words_inserted > 0 && !s.front_matter) {
                proptest::prop_assert!(
                    marked.contains("#sop-ins[") || marked.contains("#sop-redline-note["),
                    "{marked}"
                );
            }
        }
    }

    #[test]
    fn inserted_text_the_document_does_not_show_is_shown_all_the_same() {
        let marked = |old: &str, new: &str| {
            convert_marked(new, &mut NoLinks, Some(&changes(old, new).marks())).markup
        };
        // A second definition of a footnote shows nowhere in the document.
        let out = marked(
            "x[^n]\n\n[^n]: note\n\n[^n]: second\n",
            "x[^n]\n\n[^n]: note\n\n[^n]: second and more\n",
        );
        assert!(
            out.contains("Inserted where this document shows nothing: #sop-ins[and more]"),
            "{out}"
        );
        // A comment and an image are marked where they stand.
        let out = marked("Text.\n", "Text. <!-- hidden -->\n\n![alt](p.png)\n");
        assert!(out.contains("#sop-ins[(hidden HTML)]"), "{out}");
        assert!(out.contains("#sop-ins[(image added or changed)]"), "{out}");
        assert!(!out.contains("shows nothing"), "{out}");
    }

    #[test]
    fn a_redline_marks_insertions_and_deletions_where_they_fall() {
        let old = "## Purpose\n\nTested each week by the *operator*.\n\nRun it now and log it.\n\n## Gone\n\nOld words.\n\n## Steps\n\n```sh {step=a}\necho one\nrm -rf /old\n```\n";
        let new = "## Aim\n\nTested each day by the *operator*.\n\nRun it and log it.\n\nA new paragraph.\n\n## Steps\n\n```sh {step=a}\necho one\necho two\n```\n";
        let d = changes(old, new);
        let out = convert_marked(new, &mut NoLinks, Some(&d.marks())).markup;
        // The deleted word stands before the inserted one, both in the paragraph.
        let del = out.find("#sop-del[week]").expect(&out);
        let ins = out.find("#sop-ins[day]").expect(&out);
        assert!(del < ins, "{out}");
        assert!(out.contains("#sop-ins[A new paragraph\\.]"), "{out}");
        // A word deleted inside a text stands where it stood.
        assert!(out.contains("Run it #sop-del[now]"), "{out}");
        // Unchanged text is not marked, emphasis still typeset.
        assert!(out.contains("Tested each "), "{out}");
        assert!(!out.contains("#sop-ins[Tested"), "{out}");
        // The renamed heading says what it was; the removed section stands before Steps.
        assert!(out.contains("Renamed; it was #sop-del[Purpose]"), "{out}");
        let gone = out
            .find("#sop-redline-removed[Gone][Old words\\.]")
            .expect(&out);
        assert!(gone < out.find("Steps").unwrap(), "{out}");
        // A changed code block is noted after it: each changed line as it was and as it is.
        assert!(
            out.contains(
                "#sop-redline-note[The block above changed:#linebreak()#sop-del[#raw(\"rm -rf /old\")] → #sop-ins[#raw(\"echo two\")]]"
            ),
            "{out}"
        );
        // Without marks, nothing is marked.
        let plain = convert(new, &mut NoLinks).markup;
        assert!(
            !plain.contains("#sop-ins") && !plain.contains("#sop-del"),
            "{plain}"
        );
    }

    #[test]
    fn escapes_every_markup_character() {
        let s = escape("#read(\"/etc/passwd\") $x$ <l> @r *b* _i_ `c` = - + / ~ \\ 1. // a");
        let mut chars = s.chars();
        while let Some(c) = chars.next() {
            if c == '\\' {
                let next = chars.next();
                assert!(next.is_some_and(|n| n.is_ascii_punctuation()), "{s}");
            } else {
                assert!(!c.is_ascii_punctuation(), "unescaped {c} in {s}");
            }
        }
        assert!(s.starts_with("\\#read\\("), "{s}");
    }

    #[test]
    fn string_literals_escape_quotes_and_backslashes() {
        assert_eq!(string_literal("a\"b\\c\nd"), r#""a\"b\\c\nd""#);
        assert_eq!(string_literal("\u{1}"), r#""\u{1}""#);
    }

    #[test]
    fn numbers_sections_and_drops_the_title() {
        let c =
            conv("# IT-1 Title\n\n## 1. Purpose\n\ntext\n\n## Scope\n\n### Detail\n\n## 3) Last\n");
        assert!(c.dropped_title);
        let got: Vec<(&str, &str)> = c
            .sections
            .iter()
            .map(|s| (s.number.as_str(), s.title.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("1", "Purpose"),
                ("2", "Scope"),
                ("2.1", "Detail"),
                ("3", "Last")
            ]
        );
        assert!(
            c.markup
                .contains("#heading(level: 2, numbering: none)[2\\.1#h(0.6em)Detail]")
        );
    }

    #[test]
    fn a_preamble_before_the_first_top_heading_is_not_numbered() {
        let levels = [(2, "Note"), (1, "Title"), (2, "Purpose"), (1, "Scope")];
        let headings: Vec<(usize, String)> =
            levels.iter().map(|(l, t)| (*l, t.to_string())).collect();
        let got = number_headings(&headings);
        assert_eq!(
            got,
            [None, Some("1".into()), Some("1.1".into()), Some("2".into())]
        );
        // Rendered without a number, at its own level, never as "0.1".
        let c = conv("## Note\n\ntext\n\n# Title\n\n## Purpose\n");
        assert!(
            c.markup
                .contains("#heading(level: 2, numbering: none)[Note]"),
            "{}",
            c.markup
        );
        assert!(!c.markup.contains("0\\.1"), "{}", c.markup);
    }

    #[test]
    fn section_numbers_by_slug() {
        let n = section_numbers("# T\n\n## Purpose\n\n## Backup\n\n### Backup\n");
        assert_eq!(n.get("purpose").map(String::as_str), Some("1"));
        assert_eq!(n.get("backup").map(String::as_str), Some("2"));
        assert_eq!(n.get("backup-1").map(String::as_str), Some("2.1"));
        assert_eq!(n.get("t"), None);
    }

    #[test]
    fn manual_numbers() {
        assert_eq!(manual_number_len("1. Purpose"), 3);
        assert_eq!(manual_number_len("3.2 Scope"), 4);
        assert_eq!(manual_number_len("2024 review"), 0);
        assert_eq!(manual_number_len("Purpose"), 0);
        assert_eq!(manual_number_len("42"), 0);
    }

    #[test]
    fn links_images_steps_and_footnotes() {
        let c = conv(
            "Text[^n] and [web](https://x.org/a\"b) and [other](b.md#s).\n\n![flow](f.png) ![gone](f.gif)\n\n```sh {step=dump target=db}\necho \"$X\"\n```\n\n[^n]: The *note*.\n",
        );
        let m = &c.markup;
        assert!(m.contains("#footnote[The #emph[note]\\.]"), "{m}");
        assert!(
            m.contains("#footnote[#sop-url(\"https://x.org/a\\\"b\")]"),
            "{m}"
        );
        assert!(m.contains("#sop-xref(\"see b.md#s\")"), "{m}");
        assert!(m.contains("image(\"/img/f.png\", alt: \"flow\""), "{m}");
        assert!(m.contains("#sop-missing-image(\"gone\", \"f.gif\")"), "{m}");
        assert!(m.contains("#sop-step(number: 1, id: \"dump\", target: \"db\", action: none, timeout: none, raw(block: true, lang: \"sh\", \"echo \\\"$X\\\"\"))"), "{m}");
    }

    #[test]
    fn deep_nesting_is_flattened() {
        let md = format!("{}deep\n", "> ".repeat(200));
        let c = conv(&md);
        assert_eq!(c.markup.matches("#quote").count(), MAX_DEPTH);
        assert!(c.markup.contains("deep"));
    }

    #[test]
    fn tables_and_task_lists() {
        let c = conv("| a | b |\n|:-|-:|\n| 1 | 2 |\n\n- [x] done\n- [ ] open\n");
        assert!(
            c.markup.contains(
                "#table(columns: 2, align: (left, right,), table.header([a],[b],),[1],[2],)"
            ),
            "{}",
            c.markup
        );
        assert!(c.markup.contains("[☑ done],[☐ open],"), "{}", c.markup);
    }
}
