//! The redline of a [`Diff`]: the new revision typeset through the same template and
//! converter as every SOP (see [`super::render_redline`]), with insertions underlined in blue,
//! deletions struck through in red where they stood, a bar in the left margin on every line
//! that carries a change, and first a summary: the two sides, a legend, a table of the changed
//! sections and the front matter's changes. The same two revisions always give the same bytes.

use similar::ChangeTag;

use super::markup::escape;
use crate::diff::{Diff, SectionDiff};

/// The typst definitions the marks use. They come after the template's own, so a template
/// cannot restyle them: what a redline shows as changed is sopkit's to say.
const DEFINITIONS: &str = r##"
#let sop-redline-bar = box(width: 0pt, context place(dx: 1.1cm - here().position().x, dy: -0.8em,
  rect(width: 2.5pt, height: 1.05em, fill: rgb("#e5a50a"), stroke: none)))
#let sop-ins(body) = [#sop-redline-bar#underline(stroke: 0.8pt + rgb("#1a5fb4"), text(fill: rgb("#1a5fb4"), body))]
#let sop-del(body) = [#sop-redline-bar#strike(stroke: 0.8pt + rgb("#c01c28"), text(fill: rgb("#c01c28"), body))]
#let sop-redline-note(body) = block(above: 0.5em, below: 0.9em,
  text(size: 0.85em, fill: luma(90))[#sop-redline-bar#body])
#let sop-redline-removed(title, body) = block(above: 0.9em, below: 0.9em)[
  #sop-redline-bar#text(weight: "bold", fill: rgb("#c01c28"))[Removed section: #sop-del(title)] \
  #sop-del(body)]
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
                ChangeTag::Insert => out.push_str(&format!("#sop-ins[{text}]")),
                ChangeTag::Delete => out.push_str(&format!("#sop-del[{text}]")),
            }
            out.push_str(tail);
        }
    }
    out
}

/// How the two sides are named on paper.
pub struct Labels {
    pub from: String,
    pub to: String,
}

/// What comes before the marked body of a redline: the definitions, a heading, the two sides,
/// the legend, the table of changed sections and the front matter's changes.
pub fn head(d: &Diff, labels: &Labels, heading: &str) -> String {
    let mut src = String::from(DEFINITIONS);
    src.push_str(&format!(
        "\n#heading(level: 1, numbering: none, outlined: true)[{}]\n\n",
        escape(heading)
    ));
    src.push_str(&format!(
        "#table(columns: (auto, 1fr), stroke: none, inset: 3pt,\n  [From:], [{}],\n  [To:], [{}],\n)\n\n",
        escape(&labels.from),
        escape(&labels.to)
    ));
    src.push_str("Insertions are #sop-ins[underlined], deletions #sop-del[struck through] where they stood; a bar in the margin marks each line that changed.\n\n");
    let changed: Vec<&SectionDiff> = d.changed_sections().collect();
    if changed.is_empty() {
        src.push_str("*No changes.*\n");
    } else {
        src.push_str("#table(columns: (1fr, auto, auto, auto), inset: 4pt, stroke: 0.4pt + luma(180),\n  [*Section*], [*Change*], [*Inserted words*], [*Deleted words*],\n");
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
    // The front matter is no part of the body: its changes are shown here, line by line.
    if let Some(front) = d.sections.iter().find(|s| s.front_matter && s.is_change()) {
        src.push_str("\n*Front matter:*\n\n#block(inset: (left: 1em))[\n");
        src.push_str(&marked(front));
        src.push_str("\n]\n");
    }
    src.push_str("\n#pagebreak(weak: true)\n");
    src
}

/// The redline as an appendix after an SOP's own text: on a new page, in a scope of its own
/// where headings are neither numbered again nor listed in the contents.
pub fn appendix(d: &Diff, labels: &Labels, marked_body: &str) -> String {
    let mut src = String::from("\n#pagebreak()\n#[\n#set heading(outlined: false)\n");
    src.push_str(&head(
        d,
        labels,
        &format!("Appendix: changes to {} {}", d.sop, d.title),
    ));
    src.push_str(marked_body);
    src.push_str("\n]\n");
    src
}

#[cfg(test)]
mod tests {
    use super::*;

    fn side(text: &str) -> crate::diff::Side {
        crate::diff::Side::text_only(text)
    }

    #[test]
    fn the_summary_lists_changed_sections_and_marks_the_front_matter() {
        let old = "---\nid: QA-1\nreview_every: 365d\n---\n# T\n\n## A\n\nTested each week.\n\n## B\n\nSame.\n";
        let new = "---\nid: QA-1\nreview_every: 180d\n---\n# T\n\n## A\n\nTested each day.\n\n## B\n\nSame.\n";
        let d = crate::diff::compare("QA-1", "T", side(old), side(new));
        let labels = Labels {
            from: "version 1".into(),
            to: "this document".into(),
        };
        let src = head(&d, &labels, "Changes since version 1");
        // The marks' definitions come first, so the body can use them.
        assert!(src.find("#let sop-ins").unwrap() < src.find("[From:]").unwrap());
        assert!(
            src.contains("[version 1]") && src.contains("[this document]"),
            "{src}"
        );
        assert!(src.contains("[A], [changed], [1], [1]"), "{src}");
        assert!(
            !src.contains("[B], ["),
            "an unchanged section is not listed: {src}"
        );
        assert!(src.contains("#sop-del[365d]#sop-ins[180d]"), "{src}");
        // The appendix keeps its headings out of the contents, in a scope of its own.
        let app = appendix(&d, &labels, "BODY");
        assert!(
            app.starts_with("\n#pagebreak()\n#[\n#set heading(outlined: false)"),
            "{app}"
        );
        assert!(app.trim_end().ends_with("BODY\n]"), "{app}");
    }

    #[test]
    fn paragraphs_split_at_blank_lines_only() {
        assert_eq!(paragraphs("a\nb\n\nc\n \n\nd"), ["a\nb", "c", "d"]);
        assert_eq!(paragraphs("one"), ["one"]);
        assert_eq!(paragraphs("x\n\ny"), ["x", "y"]);
    }
}
