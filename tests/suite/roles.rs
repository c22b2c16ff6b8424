//! `sopkit roles jd`: job descriptions of this repository's own roles and of a fixture, as
//! Markdown and as real PDFs (poppler's pdftotext, qpdf --check, identical bytes twice).

use std::path::Path;
use std::process::{Command, Output};

use crate::support::{Repo, sopkit_bin, stderr, stdout};

/// This repository, which is itself an SOP repository.
fn this_repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn sopkit_in(dir: &Path, args: &[&str]) -> Output {
    Command::new(sopkit_bin())
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap()
}

/// The number `sopkit render` gives the section with `slug` in an SOP file of this repository.
fn section_number(path: &str, slug: &str) -> String {
    let text = std::fs::read_to_string(this_repo().join(path)).unwrap();
    let body = text.split_once("\n---\n").unwrap().1;
    sopkit::render::markup::section_numbers(body)
        .remove(slug)
        .unwrap_or_else(|| panic!("no section {slug} in {path}"))
}

const IT_245: &str = "procedures/IT-245-system-backup-and-recovery.md";
const IT_250: &str = "procedures/IT-250-infrastructure-backups-and-restoration.md";

/// The lines of a Markdown job description between `### {sop}` and the next `### `.
fn sop_part<'a>(md: &'a str, sop: &str) -> &'a str {
    let start = md
        .find(&format!("\n### {sop} "))
        .unwrap_or_else(|| panic!("no part for {sop}:\n{md}"));
    let rest = &md[start + 1..];
    let end = rest[4..].find("\n### ").map_or(rest.len(), |e| e + 4);
    &rest[..end]
}

#[test]
fn it_lead_of_this_repository() {
    let o = sopkit_in(this_repo(), &["roles", "jd", "it-lead"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let md = stdout(&o);
    assert!(md.starts_with("# Job description: IT Lead (ITL)\n"), "{md}");
    assert!(md.contains("| Job levels | L4, L5 |"), "{md}");
    assert!(md.contains("| Reports to | not set |"), "{md}");
    assert!(
        md.contains("Support Engineer (`support-engineer`)"),
        "direct reports: {md}"
    );
    // The role file's own text.
    assert!(md.contains("### Responsibilities\n"), "{md}");
    assert!(md.contains("Hold the credentials that can delete object versions"));
    // Owner of IT-245 only; approver of both.
    let owner =
        &md[md.find("## Accountable for (owner)").unwrap()..md.find("## Approves").unwrap()];
    assert!(
        owner.contains("**IT-245** System Backup and Recovery"),
        "{owner}"
    );
    assert!(!owner.contains("IT-250"), "{owner}");
    let approves =
        &md[md.find("## Approves").unwrap()..md.find("## Responsibilities in the SOPs").unwrap()];
    assert!(
        approves.contains("**IT-245**") && approves.contains("**IT-250**"),
        "{approves}"
    );

    let it245 = sop_part(&md, "IT-245");
    let objectives = section_number(IT_245, "recovery-objectives");
    assert!(
        it245.contains(&format!(
            "- **§{objectives} Recovery Objectives**\n  - The IT Lead sets the objectives below."
        )),
        "{it245}"
    );
    let roles = section_number(IT_245, "roles");
    assert!(
        it245.contains(&format!(
            "- **§{roles} Roles**\n  - Owns this SOP, sets recovery objectives"
        )),
        "{it245}"
    );
    let it250 = sop_part(&md, "IT-250");
    let resp = section_number(IT_250, "responsibilities");
    assert!(
        it250.contains(&format!("**§{resp} Responsibilities**\n  - Keep stakeholders informed during a restore · during every incident")),
        "{it250}"
    );
    // Rows of other roles are not the IT Lead's.
    assert!(!it250.contains("Act on failure notifications"), "{it250}");
    assert!(!it245.contains("Back up every guest"), "{it245}");
}

#[test]
fn support_engineer_of_this_repository() {
    let o = sopkit_in(this_repo(), &["roles", "jd", "support-engineer"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let md = stdout(&o);
    assert!(
        md.starts_with("# Job description: Support Engineer (SE)\n"),
        "{md}"
    );
    assert!(md.contains("| Job levels | L2, L3 |"), "{md}");
    assert!(md.contains("| Reports to | IT Lead (`it-lead`) |"), "{md}");
    assert!(md.contains("No SOP names this role as its owner."), "{md}");
    assert!(
        md.contains("No SOP names this role among its approvers."),
        "{md}"
    );
    let it245 = sop_part(&md, "IT-245");
    let resp = section_number(IT_245, "responsibilities");
    assert!(
        it245.contains(&format!(
            "- **§{resp} Responsibilities**\n  - Restore test of one guest · at least every 90 days · `restore-test-guest` (steps: `restore-test-guest`)"
        )),
        "{it245}"
    );
    let it250 = sop_part(&md, "IT-250");
    let tests = section_number(IT_250, "restore-tests");
    assert!(
        it250.contains(&format!(
            "- **§{tests} Restore Tests**\n  - The Support Engineer runs one at least every quarter"
        )),
        "{it250}"
    );
    let snapshots = section_number(IT_250, "vm-snapshot-checks");
    assert!(
        it250.contains(&format!("**§{snapshots} VM Snapshot Checks**")),
        "{it250}"
    );
}

const OPS_SOP: &str = "---\nid: OPS-010\ntitle: Nightly Operations\nowner: operator\napprovers: [qa-lead]\n---\n\n# Nightly Operations\n\nThe on-call [Operator][op] keeps this procedure at hand. Nobody else needs it.\n\n## Roles\n\n| Role | Part |\n|---|---|\n| [Operator][op] | Runs the nightly backup and answers alerts. |\n| [QA Lead](../roles/qa-lead.md) | Reviews the evidence. |\n\n## Procedure\n\n### Backup\n\nThe backup runs unattended. Before a release, the [operator][op] checks the disk space:\n\n```sh {step=check-space}\ndf -h\n```\n\n### Review\n\n1. The [QA Lead](../roles/qa-lead.md) reads the log.\n2. The [operator][op] archives the log with `archive-log`:\n\n   ```sh {step=archive-log}\n   tar cf log.tar log\n   ```\n\n### Cleanup\n\nA paragraph that names no role runs `clean-up`.\n\n```sh {step=clean-up}\nrm -f log.tar\n```\n\n[op]: ../roles/operator.md\n";

fn fixture() -> Repo {
    let r = Repo::with_clean_files();
    r.write("procedures/OPS-010-nightly.md", OPS_SOP);
    r.commit("fixture for job descriptions");
    r
}

#[test]
fn a_fixture_role_gets_its_sections_steps_and_duties() {
    let r = fixture();
    let o = r.sopkit(&["roles", "jd", "operator"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let md = stdout(&o);
    assert!(md.starts_with("# Job description: Operator\n"), "{md}");
    assert!(md.contains("| Reports to | QA Lead (`qa-lead`) |"), "{md}");
    // The role file's title heading is dropped, its text kept.
    assert!(md.contains("## About the role\n\n- Runs steps.\n"), "{md}");
    assert!(!md.contains("\n# Operator"), "{md}");
    let owner =
        &md[md.find("## Accountable for (owner)").unwrap()..md.find("## Approves").unwrap()];
    assert!(
        owner.contains("**OPS-010** Nightly Operations (draft)"),
        "{owner}"
    );
    assert!(owner.contains("**QA-001** Demo (draft)"), "{owner}");
    assert!(
        md.contains("No SOP names this role among its approvers."),
        "{md}"
    );

    let ops = sop_part(&md, "OPS-010");
    let want = "### OPS-010 Nightly Operations (draft)\n\n\
        - **Nightly Operations** (introduction)\n  - The on-call Operator keeps this procedure at hand.\n\
        - **§1 Roles**\n  - Runs the nightly backup and answers alerts.\n\
        - **§2.1 Backup**\n  - Before a release, the operator checks the disk space: (steps: `check-space`)\n\
        - **§2.2 Review**\n  - The operator archives the log with `archive-log`: (steps: `archive-log`)\n";
    assert_eq!(ops, want, "{md}");
    // QA-001 of the clean fixture links to the operator in its Scope section.
    let qa = sop_part(&md, "QA-001");
    assert!(
        qa.contains("- **§1 Scope**\n  - The operator runs it."),
        "{qa}"
    );

    let o = r.sopkit(&["roles", "jd", "qa-lead"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let md = stdout(&o);
    let approves =
        &md[md.find("## Approves").unwrap()..md.find("## Responsibilities in the SOPs").unwrap()];
    assert!(
        approves.contains("**OPS-010**") && approves.contains("**QA-001**"),
        "{approves}"
    );
    let ops = sop_part(&md, "OPS-010");
    assert!(
        ops.contains("- **§1 Roles**\n  - Reviews the evidence.\n"),
        "{ops}"
    );
    assert!(
        ops.contains("- **§2.2 Review**\n  - The QA Lead reads the log.\n"),
        "{ops}"
    );
    assert!(
        !ops.contains("nightly backup") && !ops.contains("archive-log"),
        "{ops}"
    );
    // An acronym or title finds the role too.
    let o = r.sopkit(&["roles", "jd", "QA Lead"]);
    assert!(
        stdout(&o).starts_with("# Job description: QA Lead\n"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn markdown_goes_to_a_file_with_o() {
    let r = fixture();
    let o = r.sopkit(&["roles", "jd", "operator", "-o", "jd/operator.md"]);
    assert!(
        !o.status.success(),
        "the folder jd/ does not exist: {}",
        stderr(&o)
    );
    std::fs::create_dir(r.path().join("jd")).unwrap();
    let o = r.sopkit(&["roles", "jd", "operator", "-o", "jd/operator.md"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).is_empty());
    let md = r.read("jd/operator.md");
    assert!(
        md.contains("Runs the nightly backup and answers alerts."),
        "{md}"
    );
}

#[test]
fn an_unknown_role_is_exit_2_listing_the_known_ones() {
    let r = fixture();
    let o = r.sopkit(&["roles", "jd", "janitor"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("no role `janitor` in this repository; known roles: operator, qa-lead"),
        "{}",
        stderr(&o)
    );
    assert!(stdout(&o).is_empty());
    let o = r.sopkit(&["roles", "jd", "operator", "--format", "pdf"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("-o"), "{}", stderr(&o));
}

fn pdf_text(pdf: &Path) -> String {
    let out = Command::new("pdftotext")
        .arg(pdf)
        .arg("-")
        .output()
        .expect("pdftotext (poppler-utils) is needed");
    assert!(out.status.success(), "{}", stderr(&out));
    stdout(&out)
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

fn assert_qpdf_ok(pdf: &Path) {
    let out = Command::new("qpdf")
        .arg("--check")
        .arg(pdf)
        .output()
        .expect("qpdf is needed");
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
}

fn jd_pdf(dir: &Path, role: &str, file: &Path) -> Vec<u8> {
    let o = sopkit_in(
        dir,
        &[
            "roles",
            "jd",
            role,
            "--format",
            "pdf",
            "-o",
            file.to_str().unwrap(),
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    std::fs::read(file).unwrap()
}

#[test]
fn the_pdf_is_real_and_reproducible() {
    let r = fixture();
    let out = tempfile::tempdir().unwrap();
    let (a, b) = (out.path().join("a.pdf"), out.path().join("b.pdf"));
    let first = jd_pdf(r.path(), "operator", &a);
    let second = jd_pdf(r.path(), "operator", &b);
    assert!(first.starts_with(b"%PDF-"));
    assert_eq!(first, second, "two runs must give the same bytes");
    assert_qpdf_ok(&a);
    let text = pdf_text(&a);
    assert!(text.contains("JOB DESCRIPTION Operator"), "{text}");
    assert!(
        text.contains("Runs the nightly backup and answers alerts."),
        "{text}"
    );
    assert!(text.contains("§2.1 Backup"), "{text}");
    assert!(text.contains("(steps: check-space)"), "{text}");
    assert!(text.contains("OPS-010 Nightly Operations"), "{text}");
    // The only date is the commit's.
    let secs: i64 = r.git(&["log", "-1", "--format=%ct"]).parse().unwrap();
    let d = time::OffsetDateTime::from_unix_timestamp(secs).unwrap();
    let stamp = format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}",
        d.year(),
        d.month() as u8,
        d.day(),
        d.hour(),
        d.minute()
    );
    let pdf = String::from_utf8_lossy(&first);
    assert!(
        pdf.contains(&stamp),
        "the creation date is the commit's, {stamp}"
    );

    // This repository's own roles.
    let it = out.path().join("it-lead.pdf");
    let one = jd_pdf(this_repo(), "it-lead", &it);
    let two = jd_pdf(this_repo(), "it-lead", &out.path().join("it-lead-2.pdf"));
    assert_eq!(one, two);
    assert_qpdf_ok(&it);
    let text = pdf_text(&it);
    assert!(text.contains("IT Lead (ITL)"), "{text}");
    assert!(
        text.contains("The IT Lead sets the objectives below."),
        "{text}"
    );
    let se = out.path().join("se.pdf");
    jd_pdf(this_repo(), "support-engineer", &se);
    assert_qpdf_ok(&se);
    let text = pdf_text(&se);
    assert!(text.contains("Support Engineer (SE)"), "{text}");
    assert!(text.contains("Restore test of one guest"), "{text}");
}

#[test]
fn a_repository_template_overrides_the_built_in_one() {
    let r = fixture();
    r.write(
        "templates/jd.typ.j2",
        "= Custom {{ role.title }}\n{% for s in owner_of %}Owner of {{ s.id }}. {% endfor %}\n",
    );
    r.commit("own template");
    let out = tempfile::tempdir().unwrap();
    let pdf = out.path().join("jd.pdf");
    jd_pdf(r.path(), "operator", &pdf);
    let text = pdf_text(&pdf);
    assert!(text.contains("Custom Operator"), "{text}");
    assert!(text.contains("Owner of OPS-010."), "{text}");
    assert!(!text.contains("JOB DESCRIPTION"), "{text}");
}
