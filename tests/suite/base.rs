//! `check --base REV`: only findings that are new compared to REV.

use crate::support::{Repo, SOP, stdout};

#[test]
fn only_new_findings_are_reported() {
    let r = Repo::clean();
    r.append(SOP, "\nOld break: [old](old.md).\n");
    let base = r.commit("an old broken link");
    // Without --base both old and new findings show; with it only the new one.
    r.append(SOP, "\nNew break: [new](new.md).\n");
    let all = r.sopkit(&["check", "--format", "short"]);
    assert_eq!(stdout(&all).lines().count(), 2, "{}", stdout(&all));
    let out = r.sopkit(&["check", "--format", "short", "--base", &base]);
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    assert_eq!(text.lines().count(), 1, "{text}");
    assert!(text.contains("new.md"), "{text}");
}

#[test]
fn deleting_a_heading_breaks_an_untouched_file_and_that_is_new() {
    let r = Repo::clean();
    r.write("procedures/QA-002-other.md", "---\nid: QA-002\ntitle: Other\nowner: operator\napprovers: [qa-lead]\n---\n# Other\n\nSee [scope of QA-001](QA-001-demo.md#scope).\n");
    let base = r.commit("cross-reference");
    assert_eq!(r.sopkit(&["check", "--base", &base]).status.code(), Some(0));
    // The change touches only QA-001 (renames its heading); QA-002 breaks.
    r.replace(SOP, "## Scope", "## Range");
    r.replace(SOP, "See [scope](#scope)", "See [range](#range)");
    let out = r.sopkit(&["check", "--format", "short", "--base", &base]);
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    assert!(text.starts_with("procedures/QA-002-other.md:"), "{text}");
    assert!(text.contains("broken-anchor"), "{text}");
}

#[test]
fn moving_a_finding_down_does_not_make_it_new() {
    let r = Repo::clean();
    r.append(SOP, "\n[old](old.md)\n");
    let base = r.commit("old");
    r.replace(SOP, "# Demo\n", "# Demo\n\nA new paragraph above.\n");
    let out = r.sopkit(&["check", "--format", "short", "--base", &base]);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
}

#[test]
fn base_works_in_a_subfolder_of_a_larger_repository() {
    let r = crate::support::Repo::empty();
    for (p, t) in crate::support::CLEAN_FILES {
        r.write(&format!("qms/{p}"), t);
    }
    r.write("README.md", "[broken](nowhere.md) outside the SOP folder\n");
    let base = r.commit("qms in a subfolder");
    r.append(&format!("qms/{SOP}"), "\n[x](gone.md)\n");
    let out = std::process::Command::new(crate::support::sopkit_bin())
        .args(["check", "qms", "--format", "short", "--base", &base])
        .current_dir(r.path())
        .output()
        .unwrap();
    let text = stdout(&out);
    assert_eq!(text.lines().count(), 1, "{text}");
    assert!(text.starts_with(&format!("{SOP}:")), "{text}");
}

#[test]
fn deleting_a_role_file_breaks_untouched_sops_and_that_is_new() {
    let r = Repo::clean();
    let base = r.commit("base");
    r.remove("roles/operator.md");
    let out = r.sopkit(&["check", "--format", "short", "--base", &base]);
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    // The owner in the front matter and the link in the prose both name the deleted role.
    assert_eq!(text.matches("undefined-role").count(), 2, "{text}");
    assert!(text.lines().all(|l| l.starts_with(SOP)), "{text}");
}
