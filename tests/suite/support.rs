//! Fixture repositories: real `git init`, real commits, the real `sopkit` binary.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use sopkit::diagnostic::Diagnostic;

pub struct Repo {
    pub dir: tempfile::TempDir,
}

pub fn sopkit_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_sopkit"))
}

fn run_git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_AUTHOR_NAME", "Test Author")
        .env("GIT_AUTHOR_EMAIL", "author@example.com")
        .env("GIT_COMMITTER_NAME", "Test Author")
        .env("GIT_COMMITTER_EMAIL", "author@example.com")
        .output()
        .expect("git must be installed to run the tests");
    assert!(
        out.status.success(),
        "git {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

impl Repo {
    /// An empty git repository.
    pub fn empty() -> Repo {
        let dir = tempfile::tempdir().expect("temp dir");
        run_git(dir.path(), &["init", "-q", "-b", "main"]);
        Repo { dir }
    }

    /// A git repository holding the clean files (see `CLEAN_FILES`), not yet committed.
    pub fn with_clean_files() -> Repo {
        let repo = Repo::empty();
        for (path, text) in CLEAN_FILES {
            repo.write(path, text);
        }
        repo
    }

    /// A small, clean SOP repository (see `CLEAN_FILES`), committed.
    pub fn clean() -> Repo {
        let repo = Repo::with_clean_files();
        repo.commit("clean fixture");
        repo
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn write(&self, rel: &str, text: &str) -> &Self {
        self.write_bytes(rel, text.as_bytes())
    }

    pub fn write_bytes(&self, rel: &str, bytes: &[u8]) -> &Self {
        let p = self.path().join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, bytes).unwrap();
        self
    }

    pub fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.path().join(rel)).unwrap()
    }

    /// Replaces the first occurrence of `from` (which must exist) in a file.
    pub fn replace(&self, rel: &str, from: &str, to: &str) -> &Self {
        let text = self.read(rel);
        assert!(text.contains(from), "{rel} does not contain {from:?}");
        self.write(rel, &text.replacen(from, to, 1))
    }

    pub fn append(&self, rel: &str, more: &str) -> &Self {
        let text = self.read(rel);
        self.write(rel, &format!("{text}{more}"))
    }

    pub fn remove(&self, rel: &str) -> &Self {
        std::fs::remove_file(self.path().join(rel)).unwrap();
        self
    }

    pub fn git(&self, args: &[&str]) -> String {
        run_git(self.path(), args)
    }

    /// Commits everything; returns the commit id.
    pub fn commit(&self, msg: &str) -> String {
        self.git(&["add", "-A"]);
        self.git(&["commit", "-q", "--allow-empty", "-m", msg]);
        self.git(&["rev-parse", "HEAD"])
    }

    /// Runs the `sopkit` binary in the repository.
    pub fn sopkit(&self, args: &[&str]) -> Output {
        Command::new(sopkit_bin())
            .args(args)
            .current_dir(self.path())
            .env_remove("SOPKIT_FORMAT")
            .output()
            .unwrap()
    }

    /// The library's findings for the working tree.
    pub fn diagnostics(&self) -> (sopkit::corpus::Corpus, Vec<Diagnostic>) {
        let ws = sopkit::workspace::Workspace::open(
            self.path(),
            sopkit::workspace::Revision::WorkingTree,
        )
        .expect("the repository opens");
        let checked = sopkit::check::run(&ws, None).expect("check runs");
        (ws.corpus, checked.diagnostics)
    }

    /// `(rule, path, line, column)` of every finding.
    pub fn findings(&self) -> Vec<(String, String, usize, usize)> {
        let (corpus, diags) = self.diagnostics();
        sopkit::report::locate(&diags, &corpus)
            .into_iter()
            .map(|f| {
                (
                    f.rule.to_string(),
                    f.path,
                    f.line.unwrap_or(0),
                    f.column.unwrap_or(0),
                )
            })
            .collect()
    }

    /// The 1-based line and column of the first occurrence of `needle` in a file.
    pub fn pos(&self, rel: &str, needle: &str) -> (usize, usize) {
        let text = self.read(rel);
        let at = text
            .find(needle)
            .unwrap_or_else(|| panic!("{needle:?} not in {rel}"));
        let line = text[..at].matches('\n').count() + 1;
        let col = text[..at].rsplit('\n').next().unwrap().chars().count() + 1;
        (line, col)
    }
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub const SOP: &str = "procedures/QA-001-demo.md";

pub const CLEAN_FILES: &[(&str, &str)] = &[
    (
        "sopkit.toml",
        "[targets.backups]\nkind = \"local\"\npath = \"/srv/backups\"\nmedium = \"disk\"\n",
    ),
    (
        "glossary/terms.md",
        "# Terms\n\nWords we use.\n\n## Recovery Point Objective (RPO)\n\nHow much data may be lost.\n\n## Restore Test\n\nA test that restores a backup.\n",
    ),
    (
        "roles/qa-lead.md",
        "---\nid: qa-lead\ntitle: QA Lead\nlevels: [L3]\n---\n\n# QA Lead\n\n- Approves SOPs.\n",
    ),
    (
        "roles/operator.md",
        "---\nid: operator\ntitle: Operator\nreports_to: qa-lead\n---\n\n# Operator\n\n- Runs steps.\n",
    ),
    (
        "roles/people.yaml",
        "people:\n  - id: ann\n    name: Ann Example\n    email: ann@example.com\n    admin: true\n    keys: []\n    roles:\n      - { role: qa-lead, from: 2026-01-01 }\n",
    ),
    (
        SOP,
        "---\nid: QA-001\ntitle: Demo\nowner: operator\napprovers: [qa-lead]\nslos:\n  - { step: backup, every: 1d }\n---\n\n# Demo\n\n## Scope\n\nThe [RPO](../glossary/terms.md#recovery-point-objective-rpo) is one day; a\n[restore test](../glossary/terms.md#restore-test) runs each quarter. The\n[operator](../roles/operator.md) runs it. See [scope](#scope).\n\n```sh {step=backup target=backups}\necho backup\n```\n",
    ),
];

/// Every file under `dir`, recursively (none when it does not exist).
pub fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// Lower-case hex SHA-256.
pub fn sha256(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The end records of the repository's ledger (one writer in these tests) with their files,
/// oldest first.
pub fn end_record_files(r: &Repo) -> Vec<(PathBuf, serde_json::Value)> {
    let mut recs: Vec<(PathBuf, serde_json::Value)> = files(&r.path().join("evidence"))
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .filter_map(|p| {
            let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&p).ok()?).ok()?;
            (v["kind"] == "end").then_some((p, v))
        })
        .collect();
    recs.sort_by_key(|(_, v)| v["seq"].as_u64());
    recs
}

/// The end records of the repository's ledger (one writer in these tests), oldest first.
pub fn end_records(r: &Repo) -> Vec<serde_json::Value> {
    end_record_files(r).into_iter().map(|(_, v)| v).collect()
}

/// A record's `verification` lines.
pub fn verification(rec: &serde_json::Value) -> Vec<String> {
    rec["verification"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect()
}
