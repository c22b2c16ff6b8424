//! The redline PDF of a [`Diff`]: the new text section by section, insertions underlined
//! in blue, deletions struck through in red, a bar in the left margin beside every changed
//! section, and a table of the changed sections first. Typeset by the same in-process typst
//! world as every SOP, dated by the newer side's commit, so the same two revisions always
//! give the same bytes.

use similar::ChangeTag;

use super::markup::escape;
use super::{Error, template, typeset};
use crate::diff::{Diff, Kind, SectionDiff};

/// The page of a redline of its own.
const PAGE: &str = r##"#set page(paper: "a4", margin: (left: 2.6cm, right: 2cm, y: 2cm),
  footer: context align(center, text(size: 8pt, fill: luma(110))[#counter(page).display("1 / 1", both: true)]))
#set text(size: 10pt)
#set par(justify: false, leading: 0.6em)
#set heading(numbering: none)
"##;

/// The typst definitions the redline uses.
const DEFINITIONS: &str = r##"#let ins(body) = underline(stroke: 0.8pt + rgb("#1a5fb4"), text(fill: rgb("#1a5fb4"), body))
#let del(body) = strike(stroke: 0.8pt + rgb("#c01c28"), text(fill: rgb("#c01c28"), body))
#let changed(body) = block(width: 100%, breakable: true, stroke: (left: 2.5pt + rgb("#e5a50a")),
  outset: (left: 14pt), inset: (left: 0pt), body)
#let muted = luma(110)
"##;

/// Splits `text` into its paragraphs: the parts between blank lines.
fn paragraphs(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\n' {
            // A line holding only spaces or tabs after a line break is a blank line.
            let mut j = i + 1;
            while j < bytes.len() && matches!(bytes[j], b' ' | b'\t' | b'\r') {
                j += 1;
            }
            if j < bytes.len() && bytes[j] == b'\n' {
                out.push(&text[start..i]);
                while j < bytes.len() && matches!(bytes[j], b'\n' | b' ' | b'\t' | b'\r') {
                    j += 1;
                }
                start = j;
                i = j;
                continue;
            }
        }
        i += 1;
    }
    out.push(&text[start..]);
    out
}

/// The section's text as typst markup, each piece marked; a mark is closed and opened again
/// at a paragraph break.
fn marked(s: &SectionDiff) -> String {
    let mut out = String::new();
    for p in &s.pieces {
        for (k, para) in paragraphs(&p.text).into_iter().enumerate() {
            if k > 0 {
                out.push_str("\n\n");
            }
            // A line break at a piece's edge separates words but starts no line of its own
            // (at a paragraph's edge it is the blank line around it).
            let trimmed = para.trim_matches(['\n', '\r']);
            let (lead, tail) = (
                if trimmed.len() < para.len() && para.starts_with(['\n', '\r']) {
                    " "
                } else {
                    ""
                },
                if trimmed.len() < para.len() && para.ends_with(['\n', '\r']) {
                    " "
                } else {
                    ""
                },
            );
            if trimmed.is_empty() {
                out.push_str(lead);
                continue;
            }
            out.push_str(lead);
            let para = trimmed;
            // Source lines stay lines: front matter, lists and tables read as written.
            let text = para
                .split('\n')
                .map(escape)
                .collect::<Vec<_>>()
                .join(" \\\n");
            match p.tag {
                ChangeTag::Equal => out.push_str(&text),
                ChangeTag::Insert => out.push_str(&format!("#ins[{text}]")),
                ChangeTag::Delete => out.push_str(&format!("#del[{text}]")),
            }
            out.push_str(tail);
        }
    }
    out
}

fn heading(s: &SectionDiff) -> String {
    let level = usize::from(s.level.clamp(1, 5)) + 1;
    let title = if s.level == 0 {
        format!("_{}_", escape(&s.title))
    } else {
        escape(&s.title)
    };
    let note = if s.is_change() {
        format!(
            " #text(size: 0.75em, fill: muted, weight: \"regular\")[({})]",
            escape(&s.describe())
        )
    } else {
        String::new()
    };
    let was = match &s.renamed_from {
        Some(old) => format!("\n#text(fill: muted)[Was: #del[{}]]\n", escape(old)),
        None => String::new(),
    };
    format!("{} {title}{note}\n{was}", "=".repeat(level))
}

/// The typst source of the redline.
pub fn source(d: &Diff) -> String {
    let mut src = String::new();
    let keywords = vec![
        format!("sopkit-redline={}", d.sop),
        format!(
            "sopkit-from={}",
            d.from.commit.as_deref().unwrap_or("worktree")
        ),
        format!("sopkit-to={}", d.to.commit.as_deref().unwrap_or("worktree")),
        format!("sopkit-version={}", crate::VERSION),
    ];
    src.push_str(&template::prelude(
        &format!("{} {}: changes", d.sop, d.title),
        &keywords,
    ));
    src.push('\n');
    src.push_str(PAGE);
    src.push_str(DEFINITIONS);
    src.push_str(&format!(
        "\n#text(size: 16pt, weight: \"bold\")[{} {}: changes]\n\n",
        escape(&d.sop),
        escape(&d.title),
    ));
    src.push_str(&body(d));
    src
}

/// The redline of `d` as an appendix after an SOP's own text: a new page, its own
/// definitions, headings left out of the numbering and the outline.
pub fn appendix(d: &Diff) -> String {
    let mut src =
        String::from("\n#pagebreak()\n#[\n#set heading(numbering: none, outlined: false)\n");
    src.push_str(DEFINITIONS);
    src.push_str(&format!(
        "\n#text(size: 14pt, weight: \"bold\")[Appendix: changes to {} {}]\n\n",
        escape(&d.sop),
        escape(&d.title)
    ));
    src.push_str(&body(d));
    src.push_str("\n]\n");
    src
}

/// From and to, the legend, the table of changed sections, then every section marked.
fn body(d: &Diff) -> String {
    let mut src = format!(
        "#table(columns: (auto, 1fr), stroke: none, inset: 3pt,\n  [From:], [{}],\n  [To:], [{}],\n)\n\n",
        escape(&d.from.label),
        escape(&d.to.label)
    );
    src.push_str("Insertions are #ins[underlined], deletions #del[struck through]; a bar in the margin marks each changed section.\n\n");
    let changed: Vec<&SectionDiff> = d.changed_sections().collect();
    if changed.is_empty() {
        src.push_str("*No changes.*\n");
    } else {
        src.push_str("#table(columns: (1fr, auto, auto, auto), inset: 4pt, stroke: 0.4pt + luma(180),\n  [*Section*], [*Change*], [*Inserted*], [*Deleted*],\n");
        for s in &changed {
            let title = match &s.renamed_from {
                Some(old) => format!("{} (was: {old})", s.title),
                None => s.title.clone(),
            };
            src.push_str(&format!(
                "  [{}], [{}], [{}], [{}],\n",
                escape(&title),
                escape(&s.describe()),
                s.words_inserted,
                s.words_deleted
            ));
        }
        src.push_str(")\n");
    }
    for s in &d.sections {
        src.push('\n');
        src.push_str(&heading(s));
        src.push('\n');
        let body = marked(s);
        if s.kind == Kind::Unchanged && !s.is_change() {
            src.push_str(&body);
        } else {
            src.push_str(&format!("#changed[\n{body}\n]"));
        }
        src.push('\n');
    }
    src
}

/// The redline as PDF bytes.
pub fn pdf(d: &Diff) -> Result<Vec<u8>, Error> {
    typeset::pdf(typeset::Job {
        source: source(d),
        files: Default::default(),
        time: d.to.time.max(d.from.time),
        ident: format!(
            "{}@{}..{}",
            d.sop,
            d.from.commit.as_deref().unwrap_or("worktree"),
            d.to.commit.as_deref().unwrap_or("worktree")
        ),
    })
    .map_err(|error| Error::Typeset {
        sop: d.sop.clone(),
        error,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn side(text: &str) -> crate::diff::Side {
        crate::diff::Side {
            label: "x".into(),
            text: text.into(),
            commit: None,
            time: 0,
        }
    }

    #[test]
    fn insertions_and_deletions_are_marked_and_changed_sections_barred() {
        let old = "# T\n\n## A\n\nTested each week.\n\n## B\n\nSame.\n";
        let new = "# T\n\n## A\n\nTested each day.\n\nA new paragraph.\n\n## B\n\nSame.\n";
        let d = crate::diff::compare("QA-1", "T", side(old), side(new));
        let src = source(&d);
        assert!(src.contains("#del[week\\.]#ins[day\\.]"), "{src}");
        assert!(src.contains("#ins[A new paragraph\\.]"), "{src}");
        assert!(
            src.contains("#changed[\n Tested each"),
            "no stray line break: {src}"
        );
        // A is changed and barred; B is not.
        let a = src.find("=== A").unwrap();
        let b = src.find("=== B").unwrap();
        assert!(src[a..b].contains("#changed["), "{src}");
        assert!(!src[b..].contains("#changed["), "{src}");
        // The appendix form keeps its definitions to itself.
        let app = appendix(&d);
        assert!(
            app.starts_with("\n#pagebreak()\n#[") && app.trim_end().ends_with(']'),
            "{app}"
        );
    }

    #[test]
    fn paragraphs_split_at_blank_lines_only() {
        assert_eq!(paragraphs("a\nb\n\nc\n \n\nd"), ["a\nb", "c", "d"]);
        assert_eq!(paragraphs("one"), ["one"]);
        assert_eq!(paragraphs("x\n\ny"), ["x", "y"]);
    }
}
