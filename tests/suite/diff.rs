//! `sopkit diff` over a real history: an SOP approved as version 1 with real SSH keys, then
//! edited (a word changed, a section renamed, one added, one moved); compared as text, as
//! Markdown and as a redline PDF read back with `pdftotext`.

use std::process::Command;

use crate::approvals::{Keys, approve_ok, author_commit, signed_fixture};
use crate::support::{Repo, SOP, stderr, stdout};

const V1: &str = "---\nid: QA-001\ntitle: Demo\nowner: operator\napprovers: [qa-lead]\n---\n\n# Demo\n\n## Purpose\n\nKeep every backup safe and tested each week by the operator on duty.\n\n## Scope\n\nAll servers in the data centre.\n\n## Records\n\nThe evidence stays in git.\n";

const V2: &str = "---\nid: QA-001\ntitle: Demo\nowner: operator\napprovers: [qa-lead]\n---\n\n# Demo\n\n## Records\n\nThe evidence stays in git.\n\n## Aim\n\nKeep every backup safe and tested each day by the operator on duty.\n\n## Scope\n\nAll servers in the data centre.\n\n## Escalation\n\nCall the QA lead when a restore test fails.\n";

/// The fixture with QA-001 at V1 approved (version 1), then edited to V2 and committed.
fn edited() -> (Keys, Repo) {
    let keys = Keys::new();
    let (r, ann, bob) = signed_fixture(&keys);
    r.write(SOP, V1);
    r.git(&["add", "-A"]);
    author_commit(&r, "bob", "version 1 text", Some(&bob));
    approve_ok(&r, "ann", &ann);
    r.write(SOP, V2);
    r.git(&["add", "-A"]);
    author_commit(&r, "bob", "rework", Some(&bob));
    (keys, r)
}

#[test]
fn diff_shows_word_changes_renames_moves_and_additions_since_the_effective_version() {
    let (_keys, r) = edited();
    let out = r.sopkit(&["diff", "QA-001"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("from version 1 (commit"), "{text}");
    assert!(text.contains("to the working tree"), "{text}");
    assert!(
        text.contains("[-week-]") && text.contains("{+day+}"),
        "{text}"
    );
    assert!(text.contains("Aim (was: Purpose)"), "{text}");
    assert!(
        text.contains("Escalation") && text.contains("added"),
        "{text}"
    );
    assert!(text.contains("moved"), "{text}");
    // Unchanged in text and place: not listed.
    assert!(!text.contains("== Scope"), "{text}");

    // Markdown for a pull request: a summary table and marked words.
    let out = r.sopkit(&["diff", "QA-001", "v1", "HEAD", "--format", "md"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let md = stdout(&out);
    assert!(
        md.contains("| Aim (was: Purpose) | changed, renamed"),
        "{md}"
    );
    assert!(
        md.contains("<del>week</del>") && md.contains("<ins>day</ins>"),
        "{md}"
    );
    assert!(md.contains("| Escalation | added | 9 | 0 |"), "{md}");

    // Between two commits the same change; between a revision and itself, none.
    let out = r.sopkit(&["diff", "QA-001", "HEAD", "HEAD"]);
    assert!(stdout(&out).contains("no changes"), "{}", stdout(&out));
    let out = r.sopkit(&["diff", "QA-001", "v7"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("has no version 7; its versions: v1"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn the_redline_pdf_marks_insertions_and_deletions_and_is_reproducible() {
    let (_keys, r) = edited();
    let a = r.path().join("a.pdf");
    let b = r.path().join("b.pdf");
    for f in [&a, &b] {
        let out = r.sopkit(&[
            "diff",
            "QA-001",
            "v1",
            "HEAD",
            "--format",
            "pdf",
            "-o",
            f.to_str().unwrap(),
        ]);
        assert!(out.status.success(), "{}", stderr(&out));
    }
    let bytes = std::fs::read(&a).unwrap();
    assert!(bytes.starts_with(b"%PDF-"));
    assert_eq!(
        bytes,
        std::fs::read(&b).unwrap(),
        "the same revisions give the same bytes"
    );
    // The new revision typeset as every SOP is (title page, numbered sections), preceded by
    // the summary, with the changes in place.
    let text = crate::render::pdf_text(&a);
    for want in [
        "Changes since version 1 (commit",
        "this document: Draft (after version 1)",
        "Contents",
        "Aim",
        "Renamed; it was",
        "Purpose",
        "week",
        "day",
        "New section",
        "Escalation",
        "Call the QA lead when a restore test fails.",
    ] {
        assert!(text.contains(want), "{want:?} missing:\n{text}");
    }
    // Looked at as images: insertions in blue, deletions in red, bars in the margin.
    let (blue, red, bars) = marks_seen(&a);
    assert!(blue > 50 && red > 20 && bars > 50, "{blue} {red} {bars}");
    // verify-pdf rebuilds the redline from the two commits it names, and says it is one.
    let out = r.sopkit(&["verify-pdf", a.to_str().unwrap()]);
    assert!(
        stdout(&out).contains("identical to the rebuild of the redline of QA-001 since commit"),
        "{}",
        stdout(&out)
    );
    // A redline made to claim another old side (its keyword pointed at another commit) is
    // not the rebuild of that claim.
    let key = b"sopkit-redline-from=";
    let at = bytes.windows(key.len()).position(|w| w == key).unwrap() + key.len();
    let from = String::from_utf8(bytes[at..at + 40].to_vec()).unwrap();
    let other = r.git(&["rev-parse", "HEAD~1"]);
    assert_ne!(from, other);
    let mut claimed = bytes.clone();
    claimed[at..at + 40].copy_from_slice(other.as_bytes());
    let c = r.path().join("claimed.pdf");
    std::fs::write(&c, &claimed).unwrap();
    let out = r.sopkit(&["verify-pdf", c.to_str().unwrap()]);
    assert!(!out.status.success(), "{}", stdout(&out));
    assert!(stdout(&out).contains("NOT identical"), "{}", stdout(&out));
    // A PDF needs a file to go to.
    let out = r.sopkit(&["diff", "QA-001", "--format", "pdf"]);
    assert_eq!(out.status.code(), Some(2));
}

/// `render --with-changes` of a draft under approval appends its redline against the last
/// effective version, and `verify-pdf` rebuilds that PDF byte for byte.
#[test]
fn a_render_with_changes_appends_the_redline_and_still_verifies() {
    let (_keys, r) = edited();
    let pdf = r.path().join("QA-001.pdf");
    let out = r.sopkit(&[
        "render",
        "QA-001",
        "--with-changes",
        "-o",
        pdf.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(
        &Command::new("pdftotext")
            .arg(&pdf)
            .arg("-")
            .output()
            .expect("pdftotext"),
    );
    assert!(text.contains("Appendix: changes to QA-001 Demo"), "{text}");
    assert!(
        text.contains("version 1") && text.contains("week") && text.contains("day"),
        "{text}"
    );
    let out = r.sopkit(&["verify-pdf", pdf.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stdout(&out));
    assert!(stdout(&out).contains("identical"), "{}", stdout(&out));
    // Without the appendix the PDF is a different one, and says so when checked against it.
    let plain = r.path().join("plain.pdf");
    let out = r.sopkit(&["render", "QA-001", "-o", plain.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_ne!(std::fs::read(&plain).unwrap(), std::fs::read(&pdf).unwrap());
    // The appendix is marked; the plain render has no change bar anywhere.
    assert!(marks_seen(&pdf).2 > 50);
    assert_eq!(marks_seen(&plain).2, 0);
}

/// Pixels of the redline's three colours on every page of `pdf` rendered at 100 dpi
/// (`pdftoppm`): insertion blue, deletion red and the change bars' amber.
fn marks_seen(pdf: &std::path::Path) -> (usize, usize, usize) {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new("pdftoppm")
        .args(["-r", "100"])
        .arg(pdf)
        .arg(dir.path().join("page"))
        .output()
        .expect("pdftoppm (poppler-utils) is needed");
    assert!(out.status.success(), "{}", stderr(&out));
    let near = |p: &[u8], c: [u8; 3]| p.iter().zip(c).all(|(a, b)| a.abs_diff(b) <= 12);
    let mut seen = (0, 0, 0);
    for page in std::fs::read_dir(dir.path()).unwrap() {
        let bytes = std::fs::read(page.unwrap().path()).unwrap();
        // P6: "P6\n<width> <height>\n255\n", then RGB bytes.
        let mut fields = 0;
        let start = bytes
            .iter()
            .position(|&b| {
                fields += usize::from(b == b'\n');
                fields == 3
            })
            .unwrap()
            + 1;
        for p in bytes[start..].chunks_exact(3) {
            seen.0 += usize::from(near(p, [0x1a, 0x5f, 0xb4]));
            seen.1 += usize::from(near(p, [0xc0, 0x1c, 0x28]));
            seen.2 += usize::from(near(p, [0xe5, 0xa5, 0x0a]));
        }
    }
    seen
}
