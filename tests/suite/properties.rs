//! Property tests: the parsers never panic, link resolution never leaves the repository, and
//! random edits of real SOP content never break `check` or its reports.

use proptest::prelude::*;
use sopkit::corpus::{front_matter, markdown, step};
use sopkit::source::{SourceFile, Span};

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, .. ProptestConfig::default() })]

    #[test]
    fn front_matter_never_panics(yaml in "[-a-z:{}\\[\\]&*!|>'\" \n0-9#,.]{0,200}") {
        let text = format!("---\n{yaml}\n---\n# T\n");
        let file = SourceFile::new("p.md", text);
        if let Ok(Some(block)) = front_matter::split(&file.text) {
            match front_matter::parse_sop(&file, block) {
                Ok((_, problems)) => for p in problems { prop_assert!(p.span.end <= file.text.len()); },
                Err(p) => prop_assert!(p.span.end <= file.text.len()),
            }
        }
    }

    #[test]
    fn info_strings_never_panic(info in "[a-z]{0,4} ?\\{[a-z=\" ,.{}\\\\]{0,40}\\}?") {
        let _ = step::parse_info(&info);
        let _ = step::from_block(&info, "a: b\n", Span::new(0, 1), Span::new(0, 1));
    }

    #[test]
    fn markdown_never_panics(body in "(\\[[a-z^ ]{0,5}\\](\\([a-z#./%]{0,10}\\))?|#{1,3} [a-z]{0,5}\n|```[a-z {}=]{0,12}\n|[a-z \n>*_`-]|<a id=\"x\">){0,40}") {
        let md = markdown::parse(&body, 0);
        for l in &md.links { prop_assert!(l.span.end <= body.len()); }
        for p in &md.prose { prop_assert!(p.end <= body.len()); }
    }

    #[test]
    fn normalized_paths_stay_inside(path in "(\\.\\.|\\.|[a-z]{1,3}|%2e|/){0,12}") {
        if let Some(n) = sopkit::tree::normalize(&path) {
            prop_assert!(!n.starts_with('/'));
            prop_assert!(!n.split('/').any(|s| s == ".." || s == "."));
        }
    }
}

#[test]
fn link_resolution_never_leaves_the_repository() {
    let r = crate::support::Repo::clean();
    let corpus = sopkit::corpus::Corpus::read(sopkit::tree::Tree::open_dir(r.path()).unwrap());
    let mut runner = proptest::test_runner::TestRunner::default();
    runner
        .run(
            &"(\\.\\./|\\./|[a-z]{1,3}/|%2e%2e/|/){0,8}[a-z]{0,3}(\\.md)?(#[a-z%]{0,4})?",
            |dest| {
                use sopkit::check::links::{Target, resolve};
                match resolve(&corpus, "procedures/QA-001-demo.md", &dest) {
                    Target::Path { path, .. } => {
                        prop_assert!(!path.starts_with('/'));
                        prop_assert!(!path.split('/').any(|s| s == ".."), "{path}");
                    }
                    Target::Outside
                    | Target::SameDocument { .. }
                    | Target::Empty
                    | Target::External => {}
                }
                Ok(())
            },
        )
        .unwrap();
}

/// Pieces that Markdown, YAML, step blocks and links give meaning to, for the mutations below.
const TOKENS: &[&str] = &[
    "[",
    "]",
    "(",
    ")",
    "#",
    "\n",
    "---\n",
    "```",
    "```sh {step=",
    "}",
    "{",
    "<a id=\"",
    "\"",
    "é",
    "日本",
    "\u{200b}",
    "\u{0301}",
    "%",
    "%e9",
    "%ff",
    "..",
    "../",
    "/",
    "*",
    "&a ",
    "*a",
    "!!binary ",
    ":",
    ": ",
    "- ",
    "\t",
    "\r",
    "[^1]",
    "[^1]: x\n",
    "[x]: ",
    "[x][]",
    "|",
    "| a |\n|---|\n",
    "\\",
    "`",
    "<",
    "> ",
    "1. ",
    "- [ ] ",
    "id: ",
    "owner: ",
    "approvers: [",
    "slos:\n  - { step: ",
    "every: ",
    "99999999999999999999d",
    "-1d",
    "(../glossary/",
    "(/roles/",
    ".md#",
    "target=",
    "timeout=",
    "env=",
    " action=",
    "${",
    "<!--",
    "RPO",
    "restore test",
];

/// One edit: insert a token, delete a run of bytes, repeat a run elsewhere, or flip a bit
/// (which may leave the file invalid UTF-8). Positions are fractions of the file's length.
fn apply(bytes: &mut Vec<u8>, (op, at, arg, len): (u8, u16, u16, u8)) {
    let pos = |n: usize, f: u16| n * usize::from(f) / usize::from(u16::MAX);
    let at = pos(bytes.len(), at);
    let end = (at + usize::from(len)).min(bytes.len());
    match op % 4 {
        0 => {
            let t = TOKENS[usize::from(arg) % TOKENS.len()].as_bytes();
            bytes.splice(at..at, t.iter().copied());
        }
        1 => {
            bytes.drain(at..end);
        }
        2 => {
            let piece = bytes[at..end].to_vec();
            let to = pos(bytes.len(), arg);
            bytes.splice(to..to, piece);
        }
        _ => {
            if let Some(b) = bytes.get_mut(at) {
                *b ^= 1 << (arg % 8);
            }
        }
    }
}

/// This repository's own SOPs, glossary, roles, people and configuration, edited at random:
/// `check` and every report format never panic, never fail as a whole, and place every
/// finding inside its file; the JSON and SARIF reports stay valid JSON.
#[test]
fn edits_of_this_repositorys_own_content_never_break_check_or_its_reports() {
    use sopkit::report::{self, Format};
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let work = tempfile::tempdir().unwrap();
    let mut files = Vec::new();
    for sub in ["procedures", "glossary", "roles", "sopkit.toml", "evidence"] {
        let p = root.join(sub);
        if p.is_file() {
            files.push(p);
        } else {
            files.extend(crate::support::files(&p));
        }
    }
    let originals: Vec<(std::path::PathBuf, Vec<u8>)> = files
        .iter()
        .map(|p| {
            let to = work.path().join(p.strip_prefix(root).unwrap());
            std::fs::create_dir_all(to.parent().unwrap()).unwrap();
            let bytes = std::fs::read(p).unwrap();
            std::fs::write(&to, &bytes).unwrap();
            (to, bytes)
        })
        .collect();
    let editable: Vec<usize> = (0..originals.len())
        .filter(|&i| {
            let name = originals[i].0.to_string_lossy();
            name.ends_with(".md") || name.ends_with(".yaml") || name.ends_with(".toml")
        })
        .collect();
    assert!(editable.len() >= 10, "{} files to edit", editable.len());
    let edits = proptest::collection::vec(any::<(u8, u16, u16, u8)>(), 1..8);
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases: 64,
        ..ProptestConfig::default()
    });
    runner
        .run(&(any::<prop::sample::Index>(), edits), |(which, edits)| {
            let (path, original) = &originals[editable[which.index(editable.len())]];
            let mut bytes = original.clone();
            for e in edits {
                apply(&mut bytes, e);
            }
            // Put the file back even when check panics, so shrinking starts from the original.
            struct Restore<'a>(&'a std::path::Path, &'a [u8]);
            impl Drop for Restore<'_> {
                fn drop(&mut self) {
                    std::fs::write(self.0, self.1).unwrap();
                }
            }
            std::fs::write(path, &bytes).unwrap();
            let outcome = {
                let _restore = Restore(path, original);
                sopkit::workspace::Workspace::open(
                    work.path(),
                    sopkit::workspace::Revision::WorkingTree,
                )
                .map_err(|e| e.to_string())
                .and_then(|ws| {
                    let checked = sopkit::check::run(&ws, None).map_err(|e| e.to_string())?;
                    Ok((ws, checked))
                })
            };
            let (ws, checked) =
                outcome.map_err(|e| TestCaseError::fail(format!("check failed: {e}")))?;
            let findings = report::locate(&checked.diagnostics, &ws.corpus);
            for f in &findings {
                if let (Some(line), Some(source)) = (f.line, ws.corpus.source(&f.path)) {
                    prop_assert!(
                        line >= 1 && line <= source.text.lines().count() + 1,
                        "{f:?}"
                    );
                }
            }
            let cx = report::Context {
                corpus: &ws.corpus,
                summary: checked.summary,
                color: false,
            };
            for format in [
                Format::Human,
                Format::Short,
                Format::Json,
                Format::Github,
                Format::Sarif,
                Format::Junit,
            ] {
                let mut out = Vec::new();
                report::write(format, &findings, &cx, &mut out).unwrap();
                if matches!(format, Format::Json | Format::Sarif) {
                    prop_assert!(serde_json::from_slice::<serde_json::Value>(&out).is_ok());
                }
            }
            Ok(())
        })
        .unwrap();
}

/// Random edits, deletions, reorderings, re-chainings (a record rewritten with its digest and
/// every later `prev` recomputed), cuts and removals of a committed ledger, left in the
/// working tree or committed, are always found by `evidence verify`'s two checks: the chains
/// as they are, and the ledger against git's history.
#[test]
fn every_change_to_a_committed_ledger_is_found() {
    use sopkit::evidence::{Record, Writer, committed, signed::Judge, verify};
    const N: usize = 6;
    let r = crate::support::Repo::empty();
    let evidence = r.path().join("evidence");
    let writer = Writer::open(&evidence, "op@h").unwrap();
    for i in 0..N {
        let record: Record = serde_json::from_value(serde_json::json!({
            "format": 1, "seq": 0, "prev": null, "kind": if i % 2 == 0 { "start" } else { "end" },
            "run": format!("run-{}", i / 2), "sop": "OPS-1", "sop_path": "procedures/OPS-1.md",
            "commit": null, "content_sha256": "0".repeat(64), "version": 1, "allow_draft": false,
            "step": "backup", "target": null, "operator": "op", "host": "h",
            "started": format!("2026-01-0{}T00:00:00Z", 1 + i / 2),
            "ended": if i % 2 == 0 { serde_json::Value::Null } else { serde_json::json!(format!("2026-01-0{}T00:10:00Z", 1 + i / 2)) },
            "exit_status": if i % 2 == 0 { serde_json::Value::Null } else { serde_json::json!(0) },
            "outcome": if i % 2 == 0 { serde_json::Value::Null } else { serde_json::json!("succeeded") },
            "files": [], "verification": [], "sopkit_version": "0", "digest": ""
        }))
        .unwrap();
        writer.lock().unwrap().append(record, &[]).unwrap();
    }
    let base = r.commit("a ledger of three runs");
    let folder = evidence.join("op@h");
    let file = |k: usize| folder.join(sopkit::evidence::record_name(k as u64 + 1));
    let found = || {
        let tracked = verify::tracked_at_head(r.path(), "evidence");
        let mut problems = verify::verify(&evidence, &tracked, &Judge::none()).problems;
        problems.extend(committed::changes(r.path(), "evidence").unwrap());
        problems
    };
    assert!(found().is_empty(), "{:?}", found());

    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases: 48,
        ..ProptestConfig::default()
    });
    runner
        .run(
            &(0u8..6, 0..N, 0..N, any::<u16>(), any::<bool>()),
            |(op, k, j, at, commit)| {
                r.git(&["reset", "-q", "--hard", base.trim()]);
                r.git(&["clean", "-fdq", "evidence"]);
                let what = match op {
                    0 => {
                        let mut bytes = std::fs::read(file(k)).unwrap();
                        let i = at as usize % bytes.len();
                        bytes[i] ^= 0x01;
                        std::fs::write(file(k), bytes).unwrap();
                        "a flipped bit"
                    }
                    1 => {
                        std::fs::remove_file(file(k)).unwrap();
                        "a deleted record"
                    }
                    2 => {
                        let j = if j == k { (k + 1) % N } else { j };
                        let (a, b) = (
                            std::fs::read(file(k)).unwrap(),
                            std::fs::read(file(j)).unwrap(),
                        );
                        std::fs::write(file(k), b).unwrap();
                        std::fs::write(file(j), a).unwrap();
                        "two records swapped"
                    }
                    3 => {
                        // Rewritten from record k on, each digest and `prev` recomputed.
                        let mut prev: Option<String> = None;
                        for i in 0..N {
                            let bytes = std::fs::read(file(i)).unwrap();
                            let mut rec: Record = serde_json::from_slice(&bytes).unwrap();
                            if i >= k {
                                if i == k {
                                    rec.operator = "someone else".into();
                                }
                                rec.prev = prev.clone();
                                let new = rec.to_bytes();
                                std::fs::write(file(i), &new).unwrap();
                                prev = Some(sopkit::digest::sha256_hex(&new));
                            } else {
                                prev = Some(sopkit::digest::sha256_hex(&bytes));
                            }
                        }
                        "a consistent re-chaining"
                    }
                    4 => {
                        for i in k..N {
                            std::fs::remove_file(file(i)).unwrap();
                        }
                        "the chain cut short"
                    }
                    _ => {
                        std::fs::remove_dir_all(&folder).unwrap();
                        "the whole writer removed"
                    }
                };
                if commit {
                    r.git(&["add", "-A"]);
                    r.git(&["commit", "-q", "--allow-empty", "-m", what]);
                }
                let problems = found();
                prop_assert!(
                    !problems.is_empty(),
                    "{what} (record {k}, committed: {commit}) went unnoticed"
                );
                Ok(())
            },
        )
        .unwrap();
}
