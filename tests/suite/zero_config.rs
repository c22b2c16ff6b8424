//! No sopkit.toml, no procedures/ folder: a handbook as real companies keep them (no front
//! matter, one glossary.md, links from the root, spaces in file names) is checked like a
//! link checker would, plus glossary-aware suggestions.

use crate::support::{Repo, stdout};

/// Each finding of a JSON report: its rule and message.
fn rules_and_messages(report: &serde_json::Value) -> Vec<(String, String)> {
    report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["rule"].as_str().unwrap().to_string(),
                f["message"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn handbook() -> Repo {
    let r = Repo::empty();
    r.write("glossary.md", "# Glossary\n\nTerms.\n\n## Enterprise Application Server (EAS)\n\nA server that runs a business application.\n");
    r.write(
        "qms/procedures/IT-245-System Backup and Recovery.md",
        "# System Backup and Recovery\n\n[refs]: /glossary.md\n\nAn [EAS](/glossary.md#enterprise-application-server-eas) fails.\nAlso [EAS](../../glossary.md#EAS), [restores](IT-250%20Infrastructure.md#restores),\n[gone](IT-250%20Infrastructure.md#backups) and [vendor](proxmox.com).\n\n```sh {step=whatever}\nnot a step outside an SOP repository\n```\n",
    );
    r.write(
        "qms/procedures/IT-250 Infrastructure.md",
        "# Infrastructure\n\n## Restores\n\nText.\n",
    );
    r.write("README.md", "# Handbook\n\n- [Procedures](qms/procedures/)\n- [Backup](qms/procedures/IT-245-System%20Backup%20and%20Recovery.md)\n");
    r.commit("handbook");
    r
}

#[test]
fn handbook_is_checked_like_a_link_checker() {
    let r = handbook();
    let out = r.sopkit(&["check", "--format", "json"]);
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["mode"], "zero-config");
    let rules = rules_and_messages(&v);
    assert_eq!(rules.len(), 4, "{rules:#?}");
    assert!(
        rules
            .iter()
            .any(|(r, m)| r == "undefined-term" && m.contains("#EAS")),
        "{rules:#?}"
    );
    assert!(
        rules
            .iter()
            .any(|(r, m)| r == "broken-anchor" && m.contains("#backups")),
        "{rules:#?}"
    );
    assert!(
        rules
            .iter()
            .any(|(r, m)| r == "broken-link" && m.contains("proxmox.com")),
        "{rules:#?}"
    );
    assert!(
        rules.iter().any(|(r, _)| r == "unused-reference"),
        "{rules:#?}"
    );
    let helps = stdout(&out);
    assert!(
        helps.contains("#enterprise-application-server-eas"),
        "the acronym anchor suggests the full slug"
    );
}

#[test]
fn init_creates_a_repository_that_passes_check() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("sops");
    let out = std::process::Command::new(crate::support::sopkit_bin())
        .arg("init")
        .arg(&target)
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(
        stdout(&out).contains("and a git repository"),
        "{}",
        stdout(&out)
    );
    let repo = git2::Repository::open(&target).expect("init made a git repository");
    assert!(repo.head().is_err(), "with nothing committed yet");
    let out = std::process::Command::new(crate::support::sopkit_bin())
        .arg("check")
        .arg(&target)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    assert!(stdout(&out).contains("no findings"), "{}", stdout(&out));
    // It builds too, before anything is committed.
    let out = std::process::Command::new(crate::support::sopkit_bin())
        .args(["build", "-C"])
        .arg(&target)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        crate::support::stderr(&out)
    );
    assert!(target.join("out/EX-001.pdf").is_file() && target.join("out/index.pdf").is_file());
    // A second init into the same, now non-empty, folder is refused.
    let out = std::process::Command::new(crate::support::sopkit_bin())
        .arg("init")
        .arg(&target)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(crate::support::stderr(&out).contains("not empty"));
    // Inside an existing repository, no repository is nested.
    let nested = target.join("more-sops");
    let out = std::process::Command::new(crate::support::sopkit_bin())
        .arg("init")
        .arg(&nested)
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(!stdout(&out).contains("git repository"), "{}", stdout(&out));
    assert!(!nested.join(".git").exists());
}

/// The text of a PDF, by pdftotext.
fn pdf_text(path: &std::path::Path) -> String {
    let out = std::process::Command::new("pdftotext")
        .arg(path)
        .arg("-")
        .output()
        .expect("pdftotext (poppler-utils; scripts/test installs it)");
    assert!(out.status.success(), "{}", crate::support::stderr(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn without_a_config_sops_are_known_by_file_name_and_any_file_renders_by_path() {
    use crate::support::stderr;
    let r = Repo::empty();
    r.write(
        "ops/IT-300-Server Backups.md",
        "# Server Backups\n\n## Scope\n\nAll servers.\n",
    );
    r.write(
        "handbook/onboarding.md",
        "# Onboarding\n\nWelcome aboard.\n",
    );
    r.commit("a handbook");

    let out = r.sopkit(&["render", "IT-300", "-o", "it300.pdf"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out)
            .contains("took ops/IT-300-Server Backups.md as SOP IT-300, \"Server Backups\""),
        "{}",
        stderr(&out)
    );
    let text = pdf_text(&r.path().join("it300.pdf"));
    assert!(
        text.contains("IT-300") && text.contains("Server Backups"),
        "{text}"
    );

    // A file no name marks as an SOP still renders by its path.
    let out = r.sopkit(&["render", "handbook/onboarding.md", "-o", "onboarding.pdf"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("took handbook/onboarding.md as SOP onboarding, \"Onboarding\""),
        "{}",
        stderr(&out)
    );
    assert!(pdf_text(&r.path().join("onboarding.pdf")).contains("Welcome aboard."));

    // build takes the files named like SOPs.
    let out = r.sopkit(&["build"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(r.path().join("out/IT-300.pdf").is_file());
    assert!(!r.path().join("out/onboarding.pdf").exists());

    // Where no file is named so, build takes every Markdown file with a heading.
    let r = Repo::empty();
    r.write("guide.md", "# Field Guide\n\nText.\n");
    r.write("notes.md", "no heading here\n");
    r.commit("a guide");
    let out = r.sopkit(&["build"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("took guide.md as SOP guide, \"Field Guide\""),
        "{}",
        stderr(&out)
    );
    assert!(pdf_text(&r.path().join("out/guide.pdf")).contains("Field Guide"));
    assert!(!r.path().join("out/notes.pdf").exists());
    assert!(r.path().join("out/index.pdf").is_file());
}

#[test]
fn an_sop_with_more_headings_than_a_render_can_take_is_refused_with_the_limit() {
    let r = Repo::empty();
    let mut text = String::from("# Huge\n\n");
    for i in 0..=sopkit::render::MAX_HEADINGS {
        text.push_str(&format!("## Part {i}\n\nText.\n\n"));
    }
    r.write("IT-901-Huge.md", &text);
    r.commit("huge");
    let out = r.sopkit(&["render", "IT-901", "-o", "huge.pdf"]);
    assert_eq!(out.status.code(), Some(2), "{}", stdout(&out));
    let said = crate::support::stderr(&out);
    assert!(
        said.contains(&format!(
            "IT-901-Huge.md has {} headings; sopkit renders SOPs of up to {}",
            sopkit::render::MAX_HEADINGS + 2,
            sopkit::render::MAX_HEADINGS
        )),
        "{said}"
    );
    assert!(!r.path().join("huge.pdf").exists());
}

#[test]
fn without_a_config_an_sop_keeps_its_history_across_a_rename() {
    let r = Repo::empty();
    r.write("IT-300-Server Backups.md", "# Server Backups\n\nFirst.\n");
    r.commit("first version");
    std::fs::create_dir(r.path().join("ops")).unwrap();
    r.git(&["mv", "IT-300-Server Backups.md", "ops/"]);
    r.append("ops/IT-300-Server Backups.md", "\nSecond.\n");
    r.commit("moved and edited");
    let out = r.sopkit(&["render", "IT-300", "-o", "it300.pdf"]);
    assert!(out.status.success(), "{}", crate::support::stderr(&out));
    let text = pdf_text(&r.path().join("it300.pdf"));
    assert!(text.contains("first version"), "{text}");
    assert!(
        text.contains("moved and edited (was IT-300-Server"),
        "{text}"
    );
}

/// A handbook as found in the wild, without sopkit.toml: an SOP renamed in git, files with
/// spaces, HTML links, folder links with fragments, mixed-case fragments, indented code and
/// headings in other scripts. `check` says what a forge would show, and only that.
#[test]
fn a_handbook_in_the_wild_is_checked_as_the_forge_shows_it() {
    let r = Repo::empty();
    r.write(
        "glossary.md",
        "# Glossary\n\n## Restore Test\n\nA test that restores a backup.\n",
    );
    r.write(
        "ops/README.md",
        "# Operations\n\n## Incident Process\n\nCall the on-call engineer.\n\n## தமிழ் மொழி\n\nText.\n",
    );
    r.write(
        "ops/IT-300-Server Backups.md",
        "# Server Backups\n\n## Scope\n\nAll servers.\n",
    );
    r.commit("first");
    r.git(&[
        "mv",
        "ops/IT-300-Server Backups.md",
        "ops/IT-300-Backups of Servers.md",
    ]);
    r.commit("renamed");
    r.write(
        "ops/IT-301-Restores.md",
        "# Restores\n\nSee [backups](IT-300-Backups%20of%20Servers.md#SCOPE), the \
         [process](./#incident-process), [Tamil](./#தமிழ்-மொழி) and <a href=\"../glossary.md#restore-test\">restore tests</a>.\n\
         Broken: <a href=\"IT-300-Server%20Backups.md\">old name</a>, [nope](./#nope), \
         [gone](../hr/#leave) and <img src=\"diagram.png\">.\n\n\
         Indented code is code:\n\n    curl [^note] Restore Test\n",
    );
    r.commit("restores");
    let out = r.sopkit(&["check", "--format", "json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["mode"], "zero-config");
    let mut found = rules_and_messages(&v);
    found.sort();
    let rules: Vec<&str> = found.iter().map(|(r, _)| r.as_str()).collect();
    assert_eq!(
        rules,
        [
            "anchor-case",
            "broken-anchor",
            "broken-image",
            "broken-link",
            "missing-folder"
        ],
        "{found:#?}"
    );
    let said = |rule: &str| &found.iter().find(|(r, _)| r == rule).unwrap().1;
    assert!(said("anchor-case").contains("#SCOPE"), "{found:#?}");
    assert!(said("broken-anchor").contains("#nope"), "{found:#?}");
    assert!(
        said("broken-link").contains("IT-300-Server%20Backups.md"),
        "{found:#?}"
    );
    assert!(said("broken-image").contains("diagram.png"), "{found:#?}");
    assert!(said("missing-folder").contains("../hr/"), "{found:#?}");
    assert_eq!(out.status.code(), Some(1));

    // The renamed SOP renders with its history across the rename.
    let out = r.sopkit(&["render", "IT-300", "-o", "it300.pdf"]);
    assert!(out.status.success(), "{}", crate::support::stderr(&out));
    let text = pdf_text(&r.path().join("it300.pdf"));
    assert!(text.contains("first (was ops/IT-300-Server"), "{text}");
}
