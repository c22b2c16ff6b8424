//! Every output format, parsed back: JSON, SARIF (validated against the official 2.1.0
//! schema), JUnit XML, GitHub annotations, short and human.

use std::process::Command;

use crate::support::{Repo, SOP, stdout};

fn broken() -> Repo {
    let r = Repo::clean();
    r.append(SOP, "\nSee [the plan](plan.md) and restore tests.\n");
    r.replace(
        SOP,
        "[restore test](../glossary/terms.md#restore-test)",
        "restore test",
    );
    r
}

#[test]
fn json_has_every_field() {
    let r = broken();
    let out = r.sopkit(&["check", "--format", "json"]);
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["tool"], "sopkit");
    assert_eq!(v["mode"], "configured");
    assert_eq!(v["summary"]["errors"], 1);
    assert_eq!(v["summary"]["warnings"], 1);
    let f = &v["findings"];
    assert_eq!(f.as_array().unwrap().len(), 2);
    let link = f
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["rule"] == "broken-link")
        .unwrap();
    let (l, c) = r.pos(SOP, "[the plan]");
    assert_eq!(
        (
            link["line"].as_u64().unwrap() as usize,
            link["column"].as_u64().unwrap() as usize
        ),
        (l, c)
    );
    assert_eq!(link["path"], SOP);
    assert_eq!(link["severity"], "error");
    assert!(link["help"].as_str().unwrap().len() > 10);
}

#[test]
fn sarif_is_valid_2_1_0() {
    let r = broken();
    let out = r.sopkit(&["check", "--format", "sarif", "--output", "report.sarif"]);
    assert_eq!(out.status.code(), Some(1));
    let text = r.read("report.sarif");
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["version"], "2.1.0");
    let results = v["runs"][0]["results"].as_array().unwrap();
    assert_eq!(results.len(), 2);
    for res in results {
        let loc = &res["locations"][0]["physicalLocation"];
        assert_eq!(loc["artifactLocation"]["uri"], SOP);
        assert!(loc["region"]["startLine"].as_u64().unwrap() > 1);
        let idx = res["ruleIndex"].as_u64().unwrap() as usize;
        assert_eq!(
            v["runs"][0]["tool"]["driver"]["rules"][idx]["id"],
            res["ruleId"]
        );
    }
    validate_sarif(&r.path().join("report.sarif"));
}

/// Validates against the SARIF 2.1.0 JSON schema that `scripts/test` fetches from
/// Microsoft's `@microsoft/jest-sarif` package, with Python's jsonschema.
fn validate_sarif(file: &std::path::Path) {
    let schema = std::env::var("SOPKIT_SARIF_SCHEMA")
        .expect("SOPKIT_SARIF_SCHEMA is not set: run the tests through scripts/test, which fetches the SARIF schema");
    let script = "import json,sys,jsonschema\nschema=json.load(open(sys.argv[1]))\ndoc=json.load(open(sys.argv[2]))\njsonschema.validate(doc, schema)\nprint('valid')\n";
    let out = Command::new("python3")
        .args(["-c", script, &schema])
        .arg(file)
        .output()
        .expect("python3 is needed");
    assert!(
        out.status.success(),
        "SARIF is not valid: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "valid");
}

#[test]
fn sarif_of_a_clean_repository_is_valid_too() {
    let r = Repo::clean();
    let out = r.sopkit(&["check", "--format", "sarif", "-o", "clean.sarif"]);
    assert_eq!(out.status.code(), Some(0));
    validate_sarif(&r.path().join("clean.sarif"));
}

#[test]
fn junit_has_one_failing_case_per_finding() {
    let r = broken();
    let out = r.sopkit(&["check", "--format", "junit"]);
    assert_eq!(out.status.code(), Some(1));
    let report = quick_junit::Report::deserialize_from_str(&stdout(&out)).expect("valid JUnit XML");
    let suite = &report.test_suites[0];
    let failing: Vec<_> = suite
        .test_cases
        .iter()
        .filter(|c| matches!(c.status, quick_junit::TestCaseStatus::NonSuccess { .. }))
        .map(|c| c.name.as_str().to_string())
        .collect();
    assert_eq!(failing.len(), 2, "{failing:?}");
    assert!(
        failing
            .iter()
            .any(|n| n.starts_with("broken-link procedures/QA-001-demo.md:")),
        "{failing:?}"
    );
    assert!(
        suite.test_cases.len() > failing.len(),
        "clean files are passing cases"
    );
}

#[test]
fn github_annotations() {
    let r = broken();
    let out = r.sopkit(&["check", "--format", "github"]);
    let text = stdout(&out);
    let (l, c) = r.pos(SOP, "[the plan]");
    let want = format!("::error file={SOP},line={l},col={c},");
    assert!(
        text.lines()
            .any(|x| x.starts_with(&want) && x.contains("title=broken-link::")),
        "{text}"
    );
    assert!(
        text.lines().any(|x| x.starts_with("::warning file=")
            && !x.contains("%0Ahelp%3A")
            && x.contains("%0Ahelp: ")),
        "{text}"
    );
}

#[test]
fn short_and_human() {
    let r = broken();
    let out = r.sopkit(&["check", "--format", "short"]);
    let (l, c) = r.pos(SOP, "[the plan]");
    assert!(
        stdout(&out).contains(&format!(
            "{SOP}:{l}:{c}: error[broken-link]: `plan.md` not found"
        )),
        "{}",
        stdout(&out)
    );
    let out = r.sopkit(&["check"]);
    let text = stdout(&out);
    assert!(text.contains("error[broken-link]"), "{text}");
    assert!(text.contains(&format!("{SOP}:{l}:{c}")), "{text}");
    assert!(text.contains("help:"), "{text}");
    assert!(text.contains("1 error, 1 warning in 4 files\n"), "{text}");
    // What was read, and what was not (a Markdown file outside the configured folders).
    assert!(
        text.trim_end()
            .ends_with("read 4 Markdown files (1 SOP, 1 glossary, 2 roles)"),
        "{text}"
    );
    r.write("templates/note.md", "# Note\n");
    let text = stdout(&r.sopkit(&["check"]));
    assert!(
        text.trim_end().ends_with(
            "read 4 Markdown files (1 SOP, 1 glossary, 2 roles); not read: templates/ (1) \
             (links into them are checked as paths)"
        ),
        "{text}"
    );
    // A folder .gitignore leaves out is named as such.
    r.write(".gitignore", "drafts/\n");
    r.write("drafts/idea.md", "# Idea\n");
    let text = stdout(&r.sopkit(&["check"]));
    assert!(
        text.trim_end()
            .ends_with("; left out by .gitignore: drafts/"),
        "{text}"
    );
    assert!(!text.contains('\u{1b}'), "no colour when not on a terminal");
}

#[test]
fn human_output_snapshot() {
    let r = broken();
    let text = stdout(&r.sopkit(&["check"]));
    insta::assert_snapshot!(text);
}

#[test]
fn usage_errors_exit_2() {
    let r = Repo::clean();
    assert_eq!(
        r.sopkit(&["check", "--format", "xml"]).status.code(),
        Some(2)
    );
    assert_eq!(r.sopkit(&["check", "no-such-dir"]).status.code(), Some(2));
    let out = r.sopkit(&["check", ".", "--base", "no-such-rev"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(crate::support::stderr(&out).contains("no-such-rev"));
}
