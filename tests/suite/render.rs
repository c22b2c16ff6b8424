//! Rendering to PDF: real typst output checked with poppler's pdftotext and qpdf, real
//! approvals signed with SSH keys, reproducibility and `verify-pdf` over real git history.

use std::path::Path;
use std::process::Command;

use crate::approvals::{Keys, approve, author_commit, export, own_identity, signed_fixture};
use crate::support::{Repo, SOP, stderr, stdout};

fn tool(name: &str) -> Command {
    Command::new(name)
}

/// The text of a PDF, as poppler extracts it (layout kept, so table rows stay on one line).
pub(crate) fn pdf_text(pdf: &Path) -> String {
    pdf_text_with(pdf, "-layout")
}

/// The text of a PDF with `mode` (`-layout`, or `-raw` for content-stream order, which keeps
/// a wrapped table cell's lines together).
fn pdf_text_with(pdf: &Path, mode: &str) -> String {
    let out = tool("pdftotext")
        .args([mode])
        .arg(pdf)
        .arg("-")
        .output()
        .expect("pdftotext (poppler-utils) is needed");
    assert!(out.status.success(), "{}", stderr(&out));
    stdout(&out)
}

/// `qpdf --check` must find no problem.
/// `text` with every run of white space made one space (table cells and headings keep
/// their words in order, whatever the layout put between them).
fn squash(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn assert_qpdf_ok(pdf: &Path) {
    let out = tool("qpdf")
        .arg("--check")
        .arg(pdf)
        .output()
        .expect("qpdf is needed");
    assert!(
        out.status.success(),
        "qpdf --check {}: {}{}",
        pdf.display(),
        stdout(&out),
        stderr(&out)
    );
}

fn render(r: &Repo, args: &[&str]) -> Vec<u8> {
    let out_file = r.path().join("out.pdf");
    let mut full = vec!["render"];
    full.extend(args);
    full.extend(["-o", out_file.to_str().unwrap()]);
    let out = r.sopkit(&full);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    let bytes = std::fs::read(&out_file).unwrap();
    std::fs::remove_file(&out_file).unwrap();
    bytes
}

/// A small SVG image (typst decodes it; PNG and JPEG go through the same path).
const SVG: &str = "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"40\" height=\"20\"><rect width=\"40\" height=\"20\" fill=\"#c00\"/></svg>";

const RICH_BODY: &str = "\n## Purpose\n\nSee the [backup section](#backup) and the [other SOP](QA-002-other.md#details).\nThe [web](https://example.com/policy) has more.[^src]\n\n## Backup\n\n| Item | Copies |\n|------|-------:|\n| Guests | 3 |\n\n- [x] checked\n- [ ] open\n\n> [!WARNING]\n> Unplug the disk afterwards.\n\n![flow](../assets/flow.svg)\n\n[^src]: From the 2026 policy.\n";

#[test]
fn a_rendered_sop_shows_sections_history_signatures_and_glossary() {
    let keys = Keys::new();
    let (r, ann, bob) = signed_fixture(&keys);
    r.append(SOP, RICH_BODY);
    r.write("assets/flow.svg", SVG);
    r.write(
        "procedures/QA-002-other.md",
        "---\nid: QA-002\ntitle: Other\nowner: operator\napprovers: [qa-lead]\n---\n\n# Other\n\n## Intro\n\n## Details\n\nText.\n",
    );
    r.git(&["add", "-A"]);
    author_commit(&r, "bob", "write the demo SOP", Some(&bob));
    let out = approve(&r, "ann", &ann, "QA-001", "approved");
    assert!(out.status.success(), "{}", stderr(&out));

    let pdf = r.path().join("QA-001.pdf");
    let out = r.sopkit(&["render", "QA-001", "-o", pdf.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("(Version 1, Effective)"),
        "{}",
        stdout(&out)
    );
    assert_qpdf_ok(&pdf);
    let text = pdf_text(&pdf);
    for needle in [
        "QA-001",
        "Version 1",
        "Effective",
        "1 Scope",
        "2 Purpose",
        "3 Backup",
        "(§3)",        // a link to a section of this SOP names it
        "(QA-002 §2)", // a cross-reference names the other SOP and its section
        "https://example.com/policy",
        "From the 2026 policy.",
        "☑ checked",
        "WARNING",
        "Change history",
        "write the demo SOP",
        "Signatures",
        "Ann Example",
        "qa-lead",
        "approved",
        "SHA256:",
        "valid",
        "Appendix A: Glossary",
        "Recovery Point Objective (RPO): How much data may be lost.",
        "Restore Test: A test that restores a backup.",
        "Appendix B: Roles",
        "Operator",
        "Step 1",
        "backup",
    ] {
        assert!(
            squash(&text).contains(needle),
            "missing {needle:?} in:\n{text}"
        );
    }
    // The history row, with its commit, on one line.
    let row = text
        .lines()
        .find(|l| l.contains("write the demo SOP"))
        .unwrap();
    assert!(
        row.trim_start().starts_with('2') && row.contains("bob"),
        "{row}"
    );
    // Every page says which SOP and which page it is.
    let pages = text.matches("Page ").count();
    assert!(
        pages >= 4 && text.contains(&format!("of {pages}")),
        "{pages} pages"
    );
    assert!(
        !text.contains("DRAFT"),
        "an effective SOP carries no draft mark"
    );

    // Reproducible: a second render is byte-identical, and verify-pdf rebuilds it.
    let again = render(&r, &["QA-001"]);
    assert!(std::fs::read(&pdf).unwrap() == again, "two renders differ");
    let out = r.sopkit(&["verify-pdf", pdf.to_str().unwrap()]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert!(stdout(&out).contains("identical"), "{}", stdout(&out));

    // One changed byte (in the page content, not the provenance) makes it fail.
    let mut bytes = again.clone();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x01;
    std::fs::write(&pdf, &bytes).unwrap();
    let out = r.sopkit(&["verify-pdf", pdf.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(stdout(&out).contains("NOT identical"), "{}", stdout(&out));
}

#[test]
fn a_render_at_an_old_revision_equals_the_render_made_back_then() {
    let r = Repo::clean();
    let then = render(&r, &["QA-001"]);
    let old = r.git(&["rev-parse", "HEAD"]);
    r.append(SOP, "\n## Later\n\nA later section.\n");
    r.commit("add a section");
    let now = render(&r, &["QA-001"]);
    assert!(then != now, "an edit must change the PDF");
    assert!(
        render(&r, &["QA-001", "--at", &old]) == then,
        "--at differs from then"
    );
    // A draft carries the mark on every page.
    let pdf = r.path().join("d.pdf");
    std::fs::write(&pdf, &now).unwrap();
    let text = pdf_text(&pdf);
    assert!(text.matches("DRAFT").count() >= 3, "{text}");
    // A render of uncommitted changes says so and cannot be verified.
    r.append(SOP, "\nUncommitted.\n");
    let dirty = render(&r, &["QA-001"]);
    std::fs::write(&pdf, &dirty).unwrap();
    assert!(pdf_text(&pdf).contains("uncommitted"));
    let out = r.sopkit(&["verify-pdf", pdf.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout(&out).contains("uncommitted"), "{}", stdout(&out));
}

#[test]
fn a_hostile_sop_renders_literally_and_reads_no_file() {
    let r = Repo::clean();
    let mut body = String::from(
        "\n## Hostile\n\n#read(\"/etc/passwd\") and #import \"@preview/x:0.1.0\": * and $x^2$ and <label> and @ref and \\\\ back\\slash and #{ 1 + 1 } and ] [ ) ( // not a comment\n\n```typst\n#read(\"/etc/hostname\")\n#let x = 1\n```\n\n![secret](/etc/passwd) ![up](../../../../etc/passwd)\n\n",
    );
    body.push_str(&"> ".repeat(300));
    body.push_str("deep quote\n\n");
    for i in 0..300 {
        body.push_str(&"  ".repeat(i));
        body.push_str("- level\n");
    }
    body.push_str("\n| n | square |\n|---|---|\n");
    for i in 0..10_000 {
        body.push_str(&format!("| {i} | {} |\n", i * i));
    }
    r.append(SOP, &body);
    r.commit("hostile content");
    let pdf = r.path().join("h.pdf");
    let out = r.sopkit(&["render", "QA-001", "-o", pdf.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_qpdf_ok(&pdf);
    let text = pdf_text(&pdf);
    for needle in [
        "#read(\"/etc/passwd\")",
        "#import \"@preview/x:0.1.0\": *",
        "$x^2$",
        "<label>",
        "@ref",
        "#{ 1 + 1 }",
        "// not a comment",
        "#let x = 1",
        "deep quote",
        "9999",
        "99980001",
    ] {
        assert!(text.contains(needle), "missing {needle:?}");
    }
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    let first = passwd.lines().next().unwrap_or("root:x:0:0");
    assert!(!text.contains(first), "the render read /etc/passwd");
    assert!(text.contains("Image not included"));
}

#[test]
fn zero_front_matter_takes_id_from_the_file_name_and_title_from_the_heading() {
    let r = Repo::empty();
    r.write(
        "procedures/IT-245-system-backup.md",
        "# System Backup and Recovery\n\n## Purpose\n\nKeep copies.\n",
    );
    r.commit("an SOP without front matter");
    let pdf = r.path().join("z.pdf");
    let out = r.sopkit(&["render", "IT-245", "-o", pdf.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = pdf_text(&pdf);
    assert!(text.contains("IT-245") && text.contains("System Backup and Recovery"));
    assert!(squash(&text).contains("1 Purpose"), "{text}");
}

#[test]
fn build_renders_every_sop_and_an_index() {
    let r = Repo::clean();
    r.write(
        "procedures/QA-002-other.md",
        "---\nid: QA-002\ntitle: Other\nowner: operator\napprovers: [qa-lead]\n---\n\n# Other\n\nText.\n",
    );
    r.commit("second SOP");
    let out = r.sopkit(&["build", "--out", "site"]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    for f in ["QA-001.pdf", "QA-002.pdf", "index.pdf"] {
        assert_qpdf_ok(&r.path().join("site").join(f));
    }
    let index = pdf_text(&r.path().join("site/index.pdf"));
    assert!(
        index.contains("QA-001") && index.contains("QA-002") && index.contains("Draft"),
        "{index}"
    );
    // The index is reproducible too.
    let out = r.sopkit(&["verify-pdf", "site/index.pdf"]);
    assert!(out.status.success(), "{}", stdout(&out));
    // A finding makes the build fail, but every PDF is still written.
    r.append(SOP, "\n[broken](missing.md)\n");
    r.commit("break a link");
    let out = r.sopkit(&["build", "--out", "site2"]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(r.path().join("site2/QA-001.pdf").is_file());
    assert!(stderr(&out).contains("broken-link"), "{}", stderr(&out));
}

#[test]
fn a_signed_pdf_verifies_against_the_repositorys_keys() {
    let keys = Keys::new();
    let (r, ann, _) = signed_fixture(&keys);
    r.git(&["config", "gpg.format", "ssh"]);
    r.git(&[
        "config",
        "user.signingkey",
        &ann.with_extension("pub").display().to_string(),
    ]);
    let pdf = r.path().join("QA-001.pdf");
    let out = own_identity(&mut Command::new(crate::support::sopkit_bin()))
        .args(["render", "QA-001", "--sign", "-o"])
        .arg(&pdf)
        .current_dir(r.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let sig = r.path().join("QA-001.pdf.sig");
    assert!(sig.is_file());
    let out = r.sopkit(&["verify-pdf", "QA-001.pdf"]);
    assert!(out.status.success(), "{}", stdout(&out));
    assert!(
        stdout(&out).contains("valid signature by Ann Example"),
        "{}",
        stdout(&out)
    );
    // A signature by a key the repository does not list is refused.
    let stranger = keys.ssh("stranger");
    std::fs::remove_file(&sig).unwrap();
    let out = Command::new("ssh-keygen")
        .args(["-Y", "sign", "-n", "sopkit-pdf", "-f"])
        .arg(&stranger)
        .arg(&pdf)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let out = r.sopkit(&["verify-pdf", "QA-001.pdf"]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(stdout(&out).contains("NOT valid"), "{}", stdout(&out));
}

#[test]
fn an_openpgp_signed_pdf_verifies_and_a_changed_pdf_does_not() {
    let keys = Keys::new();
    let (home, fpr) = keys.gpg("dora", "ed25519", None);
    let r = Repo::with_clean_files();
    r.write("roles/keys/dora.asc", &export(&home, &fpr));
    r.write(
        "roles/people.yaml",
        "people:\n  - id: dora\n    name: Dora Example\n    email: dora@example.com\n    admin: true\n    keys: [dora.asc]\n    roles:\n      - { role: qa-lead, from: 2019-01-01 }\n",
    );
    r.commit("dora's key");
    r.git(&["config", "user.signingkey", &fpr]);
    let out = own_identity(&mut Command::new(crate::support::sopkit_bin()))
        .args(["render", "QA-001", "--sign", "-o", "QA-001.pdf"])
        .env("GNUPGHOME", &home)
        .current_dir(r.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(r.path().join("QA-001.pdf.asc").is_file());
    let out = r.sopkit(&["verify-pdf", "QA-001.pdf"]);
    assert!(out.status.success(), "{}", stdout(&out));
    assert!(
        stdout(&out).contains("valid signature by Dora Example"),
        "{}",
        stdout(&out)
    );
    // The signature covers the bytes: a changed PDF fails both the rebuild and the signature.
    let pdf = r.path().join("QA-001.pdf");
    let mut bytes = std::fs::read(&pdf).unwrap();
    let at = bytes.len() / 3;
    bytes[at] ^= 0x20;
    std::fs::write(&pdf, &bytes).unwrap();
    let out = r.sopkit(&["verify-pdf", "QA-001.pdf"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stdout(&out).contains("signature NOT valid"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn the_change_history_follows_renames() {
    let r = Repo::clean();
    r.git(&["mv", SOP, "procedures/QA-001-renamed.md"]);
    r.commit("rename the demo SOP");
    r.append("procedures/QA-001-renamed.md", "\nMore.\n");
    r.commit("extend the renamed SOP");
    let pdf = r.path().join("r.pdf");
    std::fs::write(&pdf, render(&r, &["QA-001"])).unwrap();
    let text = squash(&pdf_text_with(&pdf, "-raw"));
    assert!(text.contains("clean fixture"), "{text}");
    assert!(text.contains("extend the renamed SOP"), "{text}");
    // The old path may wrap inside its table cell: compare without spaces.
    assert!(
        text.replace(' ', "")
            .contains("(wasprocedures/QA-001-demo.md)")
            || text
                .replace(' ', "")
                .contains("(wasprocedures/QA-001demo.md)"),
        "{text}"
    );
}

#[test]
fn this_repositorys_own_sops_build_into_checked_pdfs() {
    // The quick start's main job, on the real 14-page SOPs with their step blocks and tables
    // (each compiled on a thread with room for typst's recursion; a 2 MiB stack overflowed).
    let out_dir = tempfile::tempdir().unwrap();
    let out = Command::new(crate::support::sopkit_bin())
        .args(["build", "-C", env!("CARGO_MANIFEST_DIR"), "--out"])
        .arg(out_dir.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    for f in ["IT-245.pdf", "IT-250.pdf", "index.pdf"] {
        assert_qpdf_ok(&out_dir.path().join(f));
    }
    let text = squash(&pdf_text(&out_dir.path().join("IT-250.pdf")));
    assert!(text.contains("Infrastructure Backups and Restoration"));
    assert!(text.contains("6.13 System Restart and Recovery"), "{text}");
    assert!(text.contains("Appendix A: Glossary"));
}

/// `build` reports the findings `check` reports, from the one check pipeline: an evidence
/// folder outside the repository fails both.
#[test]
fn build_fails_on_every_finding_check_gives() {
    let r = Repo::clean();
    r.append("sopkit.toml", "\n[paths]\nevidence = \"../outside\"\n");
    r.commit("evidence outside");
    let check = r.sopkit(&["check"]);
    assert_eq!(check.status.code(), Some(1), "{}", stdout(&check));
    assert!(
        stdout(&check).contains("invalid-config"),
        "{}",
        stdout(&check)
    );
    let out = r.sopkit(&["build", "--out", "site"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    assert!(stderr(&out).contains("invalid-config"), "{}", stderr(&out));
}
