//! The pieces that plug sopkit into other tools: the GitHub Actions workflow, the
//! pre-commit hooks, shell completions and manual pages.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::{Repo, SOP, sopkit_bin, stdout};

fn project_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn yaml(path: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path).unwrap();
    serde_saphyr::from_str::<serde_json::Value>(&text)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// PATH with the freshly built sopkit first.
fn path_with_sopkit() -> String {
    let bin_dir = sopkit_bin().parent().unwrap().to_path_buf();
    format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    )
}

#[test]
fn github_workflow_parses_and_its_check_step_runs() {
    let wf = yaml(&project_root().join(".github/workflows/sop-check.yml"));
    assert!(wf["on"]["pull_request"].is_null() || wf["on"]["pull_request"].is_object());
    let steps = wf["jobs"]["check"]["steps"]
        .as_array()
        .expect("jobs.check.steps");
    let check = steps
        .iter()
        .find(|s| s["name"] == "Check SOPs")
        .expect("a 'Check SOPs' step");
    let script = check["run"].as_str().unwrap();
    assert!(
        script.contains("--format sarif") && script.contains("--base"),
        "{script}"
    );
    let upload = steps.iter().find(|s| {
        s["uses"]
            .as_str()
            .is_some_and(|u| u.starts_with("github/codeql-action/upload-sarif"))
    });
    assert_eq!(
        upload.expect("an upload-sarif step")["with"]["sarif_file"],
        "sopkit.sarif"
    );

    // Run the step as the runner would, on a pull request that breaks a link.
    let r = Repo::clean();
    let base = r.commit("base");
    r.append(SOP, "\n[new](broken.md)\n");
    r.commit("pull request");
    let run = |base: &str| {
        Command::new("bash")
            .args(["-e", "-c", script])
            .current_dir(r.path())
            .env("PATH", path_with_sopkit())
            .env("BASE", base)
            .output()
            .unwrap()
    };
    let out = run(&base);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        crate::support::stderr(&out)
    );
    assert!(
        stdout(&out).contains("::error file=procedures/QA-001-demo.md"),
        "{}",
        stdout(&out)
    );
    let sarif: serde_json::Value = serde_json::from_str(&r.read("sopkit.sarif")).unwrap();
    assert_eq!(sarif["runs"][0]["results"].as_array().unwrap().len(), 1);
    // Against the pull request's own head nothing is new.
    let head = r.git(&["rev-parse", "HEAD"]);
    assert_eq!(run(&head).status.code(), Some(0));
}

/// The pull-request workflow that comments each SOP's changes: its script, run as the runner
/// would on a pull request that edits one SOP and adds another.
#[test]
fn github_diff_workflow_describes_each_changed_sop() {
    let wf = yaml(&project_root().join(".github/workflows/sop-diff.yml"));
    assert_eq!(wf["permissions"]["pull-requests"], "write");
    let steps = wf["jobs"]["diff"]["steps"]
        .as_array()
        .expect("jobs.diff.steps");
    let describe = steps
        .iter()
        .find(|s| s["name"] == "Describe the changes")
        .expect("a 'Describe the changes' step");
    let script = describe["run"].as_str().unwrap();
    let comment = steps
        .iter()
        .find(|s| s["name"] == "Comment on the pull request")
        .expect("a comment step");
    assert!(
        comment["run"]
            .as_str()
            .unwrap()
            .contains("--body-file sop-changes.md")
    );

    let r = Repo::clean();
    let base = r.git(&["rev-parse", "HEAD"]);
    r.replace(SOP, "is one day", "is four hours");
    r.write(
        "procedures/QA-002-new.md",
        "---\nid: QA-002\ntitle: New\nowner: operator\napprovers: [qa-lead]\n---\n\n# New\n\nText.\n",
    );
    r.commit("pull request");
    let out = Command::new("bash")
        .args(["-e", "-o", "pipefail", "-c", script])
        .current_dir(r.path())
        .env("PATH", path_with_sopkit())
        .env("BASE", base.trim())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", crate::support::stderr(&out));
    let body = r.read("sop-changes.md");
    assert!(body.contains("<!-- sopkit-diff -->"), "{body}");
    assert!(body.contains("### QA-001 Demo: changes"), "{body}");
    assert!(body.contains("| Scope | changed | 2 | 2 |"), "{body}");
    assert!(
        body.contains("<del>one</del><ins>four</ins> <del>day;</del><ins>hours;</ins>"),
        "{body}"
    );
    assert!(
        body.contains("procedures/QA-002-new.md") && body.contains("New in this pull request"),
        "{body}"
    );
}

#[test]
fn pre_commit_hooks_parse_and_their_entry_runs() {
    let hooks = yaml(&project_root().join(".pre-commit-hooks.yaml"));
    let hooks = hooks.as_array().expect("a list of hooks");
    let by_id: BTreeMap<&str, &serde_json::Value> = hooks
        .iter()
        .map(|h| (h["id"].as_str().unwrap(), h))
        .collect();
    let hook = by_id["sopkit-check"];
    assert_eq!(hook["pass_filenames"], false);
    assert_eq!(by_id["sopkit-check-build"]["language"], "rust");
    let entry = hook["entry"].as_str().unwrap();
    let r = Repo::clean();
    let run = || {
        Command::new("bash")
            .args(["-c", entry])
            .current_dir(r.path())
            .env("PATH", path_with_sopkit())
            .output()
            .unwrap()
    };
    assert_eq!(run().status.code(), Some(0));
    r.append(SOP, "\n[x](nope.md)\n");
    let out = run();
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout(&out).contains("error[broken-link]"));
}

#[test]
fn pre_commit_itself_runs_the_hook() {
    // The real pre-commit (installed by scripts/test) runs our hook from this repository.
    let r = Repo::clean();
    r.append(SOP, "\n[x](nope.md)\n");
    r.commit("broken");
    let out = Command::new("pre-commit")
        .args(["try-repo"])
        .arg(project_root())
        .args(["sopkit-check", "--all-files"])
        .current_dir(r.path())
        .env("PATH", path_with_sopkit())
        .env("PRE_COMMIT_HOME", r.path().join(".pre-commit-cache"))
        .output()
        .expect("pre-commit must be installed (scripts/test installs it)");
    let text = format!("{}{}", stdout(&out), crate::support::stderr(&out));
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("broken-link"), "{text}");
}

#[test]
fn completions_and_man_pages() {
    for shell in ["bash", "zsh", "fish"] {
        let out = Command::new(sopkit_bin())
            .args(["completions", shell])
            .output()
            .unwrap();
        assert!(out.status.success());
        assert!(stdout(&out).contains("check"), "{shell}");
    }
    let out = Command::new(sopkit_bin()).arg("man").output().unwrap();
    assert!(
        stdout(&out).starts_with(".ie") || stdout(&out).contains(".TH sopkit"),
        "{}",
        stdout(&out)
    );
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(sopkit_bin())
        .args(["man", "--out"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(dir.path().join("sopkit.1").exists());
    assert!(dir.path().join("sopkit-check.1").exists());
}

#[test]
fn readme_documents_every_rule_and_command() {
    let readme = std::fs::read_to_string(project_root().join("README.md")).unwrap();
    for rule in sopkit::diagnostic::Rule::ALL {
        let row = format!("| `{}` | {} |", rule.id(), rule.severity().as_str());
        assert!(
            readme.contains(&row),
            "README lacks the rules-table row for {}",
            rule.id()
        );
    }
    let help = stdout(&Command::new(sopkit_bin()).arg("--help").output().unwrap());
    for line in help
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
    {
        let Some(cmd) = line.split_whitespace().next() else {
            break;
        };
        if cmd == "help" {
            continue;
        }
        assert!(
            readme.contains(&format!("`sopkit {cmd}")),
            "README does not document `sopkit {cmd}`"
        );
    }
}
