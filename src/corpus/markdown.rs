//! One pass of pulldown-cmark over a Markdown body, collecting everything the checks and
//! renderers need as plain data with byte spans: headings and their GitHub slugs, explicit
//! HTML anchors, links and images, reference definitions, footnotes, step blocks and the
//! spans of prose (where glossary terms are looked for).

use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet};
use std::cell::RefCell;
use std::sync::LazyLock;

use pulldown_cmark::{BrokenLink, CodeBlockKind, Event, LinkType, Options, Parser, Tag, TagEnd};
use regex::Regex;

use super::slug::Slugger;
use super::step::{self, Step, StepError};
use crate::source::Span;

/// The one set of parser options: CommonMark plus GitHub tables, footnotes, task lists,
/// strikethrough and alerts. Every reader of Markdown uses this function.
pub fn options() -> Options {
    Options::ENABLE_TABLES
        | Options::ENABLE_FOOTNOTES
        | Options::ENABLE_TASKLISTS
        | Options::ENABLE_STRIKETHROUGH
        | Options::ENABLE_GFM
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heading {
    pub level: u8,
    pub text: String,
    pub slug: String,
    pub span: Span,
    /// Whether any content follows before the next heading (glossary terms need a definition).
    pub has_body: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkKind {
    Link,
    Image,
}

/// A link or image to check. Reference-style links are recorded once, at their definition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub kind: LinkKind,
    pub dest: String,
    pub span: Span,
    /// The reference label when this is a definition (`[label]: dest`).
    pub label: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    pub label: String,
    pub span: Span,
}

#[derive(Debug, Default)]
pub struct Markdown {
    pub headings: Vec<Heading>,
    /// Heading slugs and explicit `id`/`name` anchors.
    pub anchors: HashSet<String>,
    pub links: Vec<Link>,
    /// Definitions that no link uses.
    pub unused_definitions: Vec<Reference>,
    /// Repeated definitions of a label (every one after the first).
    pub duplicate_definitions: Vec<Reference>,
    /// Full and collapsed reference links and footnote references whose label is undefined.
    pub undefined_references: Vec<Reference>,
    pub steps: Vec<Result<Step, StepError>>,
    /// Spans of plain prose (not headings, code, links or HTML).
    pub prose: Vec<Span>,
}

impl Markdown {
    /// The steps that parsed (malformed ones are reported by `check`).
    pub fn valid_steps(&self) -> impl Iterator<Item = &Step> {
        self.steps.iter().filter_map(|s| s.as_ref().ok())
    }
}

/// Normalizes a reference label the way CommonMark matches them.
pub fn normalize_label(label: &str) -> String {
    label
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase()
}

/// A line that starts like a link reference definition. Its label is looked up among the
/// parser's definitions, which decide (label length included): a length bound here, as a
/// bounded repetition, made compiling this one regex take 8 ms, half of reading a small
/// handbook.
static DEFINITION_LINE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^ {0,3}(?:> ?)*\[((?:[^\]\\\n]|\\.)+)\]:").expect("static regex")
});

static FOOTNOTE_REF: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\[\^([^\]\s]+)\]").expect("static regex"));

/// What an HTML fragment of the body (an HTML block, or one inline tag) adds: anchors (`id`
/// or `name` on any element) and links (`<a href>`, `<img src>`, checked like Markdown
/// links). Read with a WHATWG tokenizer, so comments, quoting and entities are as a browser
/// reads them; `start` is the fragment's offset in the text, for the links' spans.
fn scan_html(html: &str, start: usize, md: &mut Markdown) {
    use html5gum::{DefaultEmitter, Token, Tokenizer};
    let emitter = DefaultEmitter::<usize>::new_with_span();
    for Ok(token) in Tokenizer::new_with_emitter(html, emitter) {
        let Token::StartTag(tag) = token else {
            continue;
        };
        let name = tag.name.to_ascii_lowercase();
        for (attr, value) in &tag.attributes {
            let text = || String::from_utf8_lossy(&value.value).into_owned();
            match (name.as_slice(), attr.as_slice()) {
                (_, b"id" | b"name") => {
                    md.anchors.insert(text());
                }
                (b"a", b"href") | (b"img", b"src") => {
                    let kind = if name.as_slice() == b"img" {
                        LinkKind::Image
                    } else {
                        LinkKind::Link
                    };
                    // The attribute as written (`href="…"`), or the whole tag.
                    let (from, to) = if value.span.end > value.span.start {
                        (value.span.start, value.span.end)
                    } else {
                        (tag.span.start, tag.span.end)
                    };
                    md.links.push(Link {
                        kind,
                        dest: text().trim().to_string(),
                        span: Span::new(start + from, start + to),
                        label: None,
                    });
                }
                _ => {}
            }
        }
    }
}

/// Parses `text[offset..]` (the body after any front matter); spans are into `text`.
// One pass over pulldown-cmark's events, whose arms share the parser state (the heading,
// code block, link and image being read): it stays one loop rather than a state object.
pub fn parse(text: &str, offset: usize) -> Markdown {
    let body = &text[offset..];
    let at = |r: std::ops::Range<usize>| Span::new(r.start + offset, r.end + offset);
    let broken: RefCell<Vec<Reference>> = RefCell::new(Vec::new());
    let mut callback = |b: BrokenLink<'_>| {
        let label = b.reference.to_string();
        if label.starts_with('^')
            || matches!(b.link_type, LinkType::Reference | LinkType::Collapsed)
        {
            broken.borrow_mut().push(Reference {
                label,
                span: at(b.span),
            });
        }
        None
    };
    let parser = Parser::new_with_broken_link_callback(body, options(), Some(&mut callback));

    let mut defs: Vec<(String, String, Span)> = parser
        .reference_definitions()
        .iter()
        .map(|(label, def)| {
            (
                normalize_label(label),
                def.dest.to_string(),
                at(def.span.clone()),
            )
        })
        .collect();
    defs.sort_by_key(|d| d.2);

    let mut md = Markdown::default();
    let mut used: HashMap<String, LinkKind> = HashMap::default();
    let mut slugger = Slugger::default();
    let mut leaf_blocks: Vec<Span> = Vec::new();
    let mut footnotes_defined: HashSet<String> = HashSet::default();
    let mut footnote_refs: Vec<Reference> = Vec::new();

    // Parser state.
    let mut heading: Option<(u8, String, Span)> = None;
    let mut awaiting_body: Option<usize> = None;
    let mut in_link = 0usize;
    let mut in_image = 0usize;
    let mut code: Option<(String, String, Span)> = None;
    // Inside any code block, fenced or indented: its text is never prose.
    let mut in_code = false;

    // Whether the last event was prose (so the next text may extend the same prose span).
    let mut prose_open = false;
    for (event, range) in parser.into_offset_iter() {
        let span = at(range.clone());
        if !matches!(event, Event::Text(_) | Event::SoftBreak) {
            prose_open = false;
        }
        match event {
            Event::Start(tag) => {
                let is_block = matches!(
                    tag,
                    Tag::Paragraph
                        | Tag::CodeBlock(_)
                        | Tag::HtmlBlock
                        | Tag::Table(_)
                        | Tag::List(_)
                        | Tag::BlockQuote(_)
                        | Tag::FootnoteDefinition(_)
                        | Tag::DefinitionList
                );
                if is_block && let Some(i) = awaiting_body.take() {
                    md.headings[i].has_body = true;
                }
                match tag {
                    Tag::Heading { level, .. } => {
                        awaiting_body = None;
                        heading = Some((level as u8, String::new(), span));
                        leaf_blocks.push(span);
                    }
                    Tag::Paragraph | Tag::HtmlBlock | Tag::Table(_) => leaf_blocks.push(span),
                    Tag::CodeBlock(kind) => {
                        in_code = true;
                        leaf_blocks.push(span);
                        if let CodeBlockKind::Fenced(info) = kind {
                            let block = &text[span.start..span.end];
                            let first = block.find('\n').unwrap_or(block.len());
                            code = Some((
                                info.to_string(),
                                String::new(),
                                Span::new(span.start, span.start + first),
                            ));
                        }
                    }
                    Tag::Link {
                        link_type,
                        dest_url,
                        id,
                        ..
                    } => {
                        in_link += 1;
                        record_link(
                            &mut md,
                            &mut used,
                            link_type,
                            &dest_url,
                            &id,
                            span,
                            LinkKind::Link,
                        );
                    }
                    Tag::Image {
                        link_type,
                        dest_url,
                        id,
                        ..
                    } => {
                        in_image += 1;
                        record_link(
                            &mut md,
                            &mut used,
                            link_type,
                            &dest_url,
                            &id,
                            span,
                            LinkKind::Image,
                        );
                    }
                    Tag::FootnoteDefinition(label) => {
                        footnotes_defined.insert(normalize_label(&label));
                    }
                    _ => {}
                }
            }
            Event::End(end) => match end {
                TagEnd::Heading(_) => {
                    if let Some((level, text, hspan)) = heading.take() {
                        let slug = slugger.slug(&text);
                        md.anchors.insert(slug.clone());
                        md.headings.push(Heading {
                            level,
                            text,
                            slug,
                            span: hspan,
                            has_body: false,
                        });
                        awaiting_body = Some(md.headings.len() - 1);
                    }
                }
                TagEnd::HtmlBlock => {
                    if let Some(block) = leaf_blocks.last().copied() {
                        scan_html(&text[block.start..block.end], block.start, &mut md);
                    }
                }
                TagEnd::Link => in_link = in_link.saturating_sub(1),
                TagEnd::Image => in_image = in_image.saturating_sub(1),
                TagEnd::CodeBlock => {
                    in_code = false;
                    if let Some((info, body, info_span)) = code.take() {
                        let block_span = leaf_blocks.last().copied().unwrap_or(info_span);
                        match step::from_block(&info, &body, block_span, info_span) {
                            Ok(Some(s)) => md.steps.push(Ok(s)),
                            Ok(None) => {}
                            Err(e) => md.steps.push(Err(e)),
                        }
                    }
                }
                _ => {}
            },
            Event::Text(t) => {
                if let Some((_, body, _)) = code.as_mut() {
                    body.push_str(&t);
                } else if in_code {
                    // An indented code block: code, not prose.
                } else if let Some((_, htext, _)) = heading.as_mut() {
                    if in_image == 0 {
                        htext.push_str(&t);
                    }
                } else if in_link == 0 && in_image == 0 {
                    // Text events split at soft breaks, entities and the like: extend the
                    // last prose span when only such a break lies between.
                    match md.prose.last_mut() {
                        Some(last) if prose_open && span.start - last.end <= 1 => {
                            last.end = span.end
                        }
                        _ => md.prose.push(span),
                    }
                    prose_open = true;
                    continue;
                }
            }
            Event::Code(t) => {
                if let Some((_, htext, _)) = heading.as_mut() {
                    htext.push_str(&t);
                }
            }
            Event::SoftBreak | Event::HardBreak => {
                if let Some((_, htext, _)) = heading.as_mut() {
                    htext.push(' ');
                }
            }
            // An HTML block is read whole from the source once it ends (a tag may span its
            // lines); an inline tag is its own event.
            Event::Html(_) => {}
            Event::InlineHtml(h) => scan_html(&h, span.start, &mut md),
            Event::FootnoteReference(label) => {
                footnote_refs.push(Reference {
                    label: label.to_string(),
                    span,
                });
            }
            _ => {}
        }
    }

    undefined_footnotes(&mut md, body, offset, &footnotes_defined, footnote_refs);
    md.undefined_references.extend(broken.into_inner());

    definitions(&mut md, &defs, &used);
    if body.contains("]:") {
        md.duplicate_definitions = duplicate_definitions(body, offset, &defs, &leaf_blocks);
    }
    md.links.sort_by_key(|l| l.span);
    md
}

/// Footnote references with no definition: those the parser saw, and those it left as
/// literal text in the prose.
fn undefined_footnotes(
    md: &mut Markdown,
    body: &str,
    offset: usize,
    footnotes_defined: &HashSet<String>,
    mut footnote_refs: Vec<Reference>,
) {
    // An undefined footnote reference stays literal text; find it in the prose.
    if body.contains("[^") {
        for m in FOOTNOTE_REF.captures_iter(body) {
            let whole = m.get(0).expect("whole match");
            let pos = whole.start() + offset;
            let i = md.prose.partition_point(|p| p.start <= pos);
            let in_prose = i > 0 && pos < md.prose[i - 1].end;
            if in_prose && !footnotes_defined.contains(&normalize_label(&m[1])) {
                footnote_refs.push(Reference {
                    label: m[1].to_string(),
                    span: Span::new(pos, whole.end() + offset),
                });
            }
        }
    }
    for r in footnote_refs {
        if !footnotes_defined.contains(&normalize_label(&r.label)) {
            md.undefined_references.push(Reference {
                label: format!("^{}", r.label),
                span: r.span,
            });
        }
    }
}

/// Every reference definition as a link (with its label); one that no link uses is also
/// reported as unused.
fn definitions(
    md: &mut Markdown,
    defs: &[(String, String, Span)],
    used: &HashMap<String, LinkKind>,
) {
    for (label, dest, span) in defs {
        match used.get(label) {
            Some(kind) => md.links.push(Link {
                kind: *kind,
                dest: dest.clone(),
                span: *span,
                label: Some(label.clone()),
            }),
            None => {
                md.unused_definitions.push(Reference {
                    label: label.clone(),
                    span: *span,
                });
                md.links.push(Link {
                    kind: LinkKind::Link,
                    dest: dest.clone(),
                    span: *span,
                    label: Some(label.clone()),
                });
            }
        }
    }
}

fn record_link(
    md: &mut Markdown,
    used: &mut HashMap<String, LinkKind>,
    link_type: LinkType,
    dest: &str,
    id: &str,
    span: Span,
    kind: LinkKind,
) {
    match link_type {
        LinkType::Inline => md.links.push(Link {
            kind,
            dest: dest.to_string(),
            span,
            label: None,
        }),
        LinkType::Reference | LinkType::Collapsed | LinkType::Shortcut => {
            let entry = used.entry(normalize_label(id)).or_insert(kind);
            if kind == LinkKind::Image {
                *entry = LinkKind::Image;
            }
        }
        // Autolinks and e-mail links are URLs by construction; the rest are not links to files.
        _ => {}
    }
}

/// Finds labels defined more than once. pulldown-cmark keeps only the first definition and
/// does not report the others, so definition lines are found with a pattern here, skipping
/// lines that lie inside paragraphs, code, HTML, tables and headings.
fn duplicate_definitions(
    body: &str,
    offset: usize,
    defs: &[(String, String, Span)],
    leaf_blocks: &[Span],
) -> Vec<Reference> {
    let defined: HashMap<&str, Span> = defs.iter().map(|(l, _, s)| (l.as_str(), *s)).collect();
    let mut blocks = leaf_blocks.to_vec();
    blocks.sort();
    let inside = |pos: usize| {
        let i = blocks.partition_point(|b| b.start <= pos);
        blocks[..i].iter().rev().take(64).any(|b| pos < b.end)
    };
    let mut out = Vec::new();
    // Only lines that contain `]:` can be definitions; find them without a line-anchored
    // regex over the whole body (which is slow), then match the pattern on those lines.
    let mut candidates = Vec::new();
    let finder = memchr::memmem::Finder::new("]:");
    let mut from = 0;
    while let Some(i) = finder.find(&body.as_bytes()[from..]) {
        let at = from + i;
        let line_start = body[..at].rfind('\n').map_or(0, |n| n + 1);
        let line_end = body[at..].find('\n').map_or(body.len(), |n| at + n);
        if candidates.last() != Some(&line_start) {
            candidates.push(line_start);
        }
        from = line_end.max(at + 2);
    }
    if candidates.len() <= defs.len() {
        return out; // as many definition-like lines as definitions: no repeats
    }
    for line_start in candidates {
        let Some(c) = DEFINITION_LINE.captures(&body[line_start..]) else {
            continue;
        };
        let m = c.get(0).expect("whole match");
        let pos = line_start + offset;
        if inside(pos) {
            continue;
        }
        let label = normalize_label(&c[1]);
        if let Some(first) = defined.get(label.as_str())
            && !(first.start <= pos + 3 && pos <= first.end)
            && pos > first.start
        {
            out.push(Reference {
                label,
                span: Span::new(pos, line_start + m.end() + offset),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headings_anchors_and_bodies() {
        let md = parse(
            "# Title\n\ntext\n\n## Backup\n## Backup\n\nx\n\n### Hardware Procedures <a id=\"hw\"></a>\n",
            0,
        );
        let slugs: Vec<_> = md.headings.iter().map(|h| h.slug.as_str()).collect();
        assert_eq!(
            slugs,
            ["title", "backup", "backup-1", "hardware-procedures-"]
        );
        assert!(md.anchors.contains("hw"));
        let bodies: Vec<_> = md.headings.iter().map(|h| h.has_body).collect();
        assert_eq!(bodies, [true, false, true, false]);
    }

    #[test]
    fn links_references_and_footnotes() {
        let text = "See [a](x.md#y) and [b][lbl] and [c][nope] and ![i](img.png).\n\nFn[^1] and[^2].\n\n[lbl]: ref.md\n[unused]: u.md\n[LBL]: again.md\n\n[^1]: note\n";
        let md = parse(text, 0);
        let dests: Vec<_> = md.links.iter().map(|l| (l.dest.as_str(), l.kind)).collect();
        assert_eq!(
            dests,
            [
                ("x.md#y", LinkKind::Link),
                ("img.png", LinkKind::Image),
                ("ref.md", LinkKind::Link),
                ("u.md", LinkKind::Link)
            ]
        );
        let undefined: Vec<_> = md
            .undefined_references
            .iter()
            .map(|r| r.label.as_str())
            .collect();
        assert!(undefined.contains(&"nope"), "{undefined:?}");
        assert!(undefined.contains(&"^2"), "{undefined:?}");
        assert_eq!(md.unused_definitions.len(), 1);
        assert_eq!(md.duplicate_definitions.len(), 1);
        assert_eq!(
            &text[md.duplicate_definitions[0].span.start..md.duplicate_definitions[0].span.end],
            "[LBL]:"
        );
    }

    #[test]
    fn a_repeated_definition_is_found_whatever_its_labels_length() {
        // The parser's definitions decide which labels are labels: a long one it defines is
        // reported when repeated, one it does not define (too many non-ASCII bytes) is not.
        for (label, repeats) in [("a".repeat(1500), 1), ("é".repeat(600), 0)] {
            let text = format!("See [x][{label}].\n\n[{label}]: a.md\n[{label}]: b.md\n");
            let md = parse(&text, 0);
            assert_eq!(md.duplicate_definitions.len(), repeats, "{}", &label[..4]);
        }
    }

    #[test]
    fn html_links_and_anchors_are_read_with_their_spans() {
        let text = "Intro <a href=\"../glossary/terms.md#rpo\">RPO</a>.\n\n<div>\n<img\n  alt=\"x\" src='img/a.png'>\n<p id=\"here\">x</p>\n<!-- <a href=\"gone.md\">no</a> -->\n</div>\n";
        let md = parse(text, 0);
        let links: Vec<(&str, &str, LinkKind)> = md
            .links
            .iter()
            .map(|l| (l.dest.as_str(), &text[l.span.start..l.span.end], l.kind))
            .collect();
        assert_eq!(
            links,
            [
                (
                    "../glossary/terms.md#rpo",
                    "href=\"../glossary/terms.md#rpo\"",
                    LinkKind::Link
                ),
                ("img/a.png", "src='img/a.png'", LinkKind::Image),
            ]
        );
        assert!(md.anchors.contains("here"), "{:?}", md.anchors);
    }

    #[test]
    fn indented_code_is_not_prose() {
        let text = "Before.\n\n    code [^x] and Restore Test\n    more\n\nAfter.\n";
        let md = parse(text, 0);
        let prose: Vec<&str> = md.prose.iter().map(|p| &text[p.start..p.end]).collect();
        assert_eq!(prose, ["Before.", "After."]);
    }

    #[test]
    fn steps_and_prose() {
        let text = "Run it.\n\n```sh {step=a target=t}\necho hi\n```\n\n```sh {step}\n```\n\n```rust\nfn x(){}\n```\n";
        let md = parse(text, 0);
        assert_eq!(md.steps.len(), 2);
        let s = md.steps[0].as_ref().unwrap();
        assert_eq!(
            (s.id.as_str(), s.target.as_deref(), s.body.as_str()),
            ("a", Some("t"), "echo hi\n")
        );
        assert!(md.steps[1].is_err());
        assert_eq!(md.prose.len(), 1);
        assert_eq!(&text[md.prose[0].start..md.prose[0].end], "Run it.");
    }

    #[test]
    fn offsets_are_into_the_whole_file() {
        let text = "---\nid: x\n---\n[a](b.md)\n";
        let md = parse(text, 14);
        assert_eq!(
            &text[md.links[0].span.start..md.links[0].span.end],
            "[a](b.md)"
        );
    }
}
