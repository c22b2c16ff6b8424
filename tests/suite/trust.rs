//! The policy timeline tried as an insider with write access would: every attack on a real
//! history with real SSH keys, each of which made an SOP effective (or a PDF "valid") before
//! the timeline, and the honest paths beside them; and a property test of random histories
//! against a model of the policy that does not use sopkit.

use std::path::Path;
use std::process::Command;

use crate::approvals::{
    Keys, approve, approve_ok, author_commit, history, own_identity, rules, signed_fixture,
    statuses,
};
use crate::support::{Repo, SOP, stderr, stdout};

/// Adds a person with an SSH key and `role` from 2019 in a commit ann (admin) signs.
fn add_person(r: &Repo, ann: &Path, id: &str, key: &Path, role: &str) {
    r.write(
        &format!("roles/keys/{id}.pub"),
        &std::fs::read_to_string(key.with_extension("pub")).unwrap(),
    );
    r.append(
        "roles/people.yaml",
        &format!(
            "  - id: {id}\n    name: {id} Example\n    email: {id}@example.com\n    keys: [{id}.pub]\n    roles:\n      - {{ role: {role}, from: 2019-01-01 }}\n"
        ),
    );
    r.git(&["add", "-A"]);
    author_commit(r, "ann", &format!("add {id}"), Some(ann));
}

fn version(r: &Repo, rev: usize) -> serde_json::Value {
    history(r)["revisions"][rev]["version"].clone()
}

#[test]
fn an_orphan_history_with_its_own_people_merged_in_is_no_second_trust_root() {
    let keys = Keys::new();
    let (r, _, _) = signed_fixture(&keys);
    let mallory = keys.ssh("mallory");
    // An unrelated history: the same SOP text, a people.yaml making mallory admin and
    // qa-lead, and mallory's approval on top.
    let sop = r.read(SOP);
    r.git(&["checkout", "-q", "--orphan", "evil"]);
    r.git(&["rm", "-rq", "--cached", "."]);
    r.write(
        "roles/keys/mallory.pub",
        &std::fs::read_to_string(mallory.with_extension("pub")).unwrap(),
    );
    r.write(
        "roles/people.yaml",
        "people:\n  - id: mallory\n    name: Mallory\n    email: mallory@example.com\n    admin: true\n    keys: [mallory.pub]\n    roles:\n      - { role: qa-lead, from: 2019-01-01 }\n",
    );
    r.write(SOP, &sop);
    r.git(&["add", "-A"]);
    author_commit(&r, "mallory", "my own root", Some(&mallory));
    approve_ok(&r, "mallory", &mallory);
    // Merged into main by a merge that keeps main's files.
    r.git(&["checkout", "-q", "-f", "main"]);
    r.git(&[
        "merge",
        "-q",
        "--allow-unrelated-histories",
        "-s",
        "ours",
        "-m",
        "merge",
        "evil",
    ]);
    assert_eq!(statuses(&r), ["unknown-key"]);
    assert!(version(&r, 0).is_null());
    assert!(rules(&r).contains(&"invalid-signature".to_string()));
    assert_eq!(r.sopkit(&["check"]).status.code(), Some(1));
}

#[test]
fn a_signer_cannot_escape_a_role_end_by_signing_on_a_branch_cut_before_it() {
    let keys = Keys::new();
    let (r, ann, _) = signed_fixture(&keys);
    let carol = keys.ssh("carol");
    add_person(&r, &ann, "carol", &carol, "qa-lead");
    let before_end = r.git(&["rev-parse", "HEAD"]);
    // An admin ends carol's qa-lead role (her entry is the last one).
    let people = r.read("roles/people.yaml");
    let i = people.rfind("{ role: qa-lead, from: 2019-01-01 }").unwrap();
    let ended = format!(
        "{}{{ role: qa-lead, from: 2019-01-01, until: 2020-01-01 }}\n",
        &people[..i]
    );
    r.write("roles/people.yaml", &ended);
    r.git(&["add", "-A"]);
    author_commit(&r, "ann", "carol's role ends", Some(&ann));
    // carol branches off before the change, approves there, and the branch is merged.
    r.git(&["checkout", "-q", "-b", "old-policy", &before_end]);
    approve_ok(&r, "carol", &carol);
    r.git(&["checkout", "-q", "main"]);
    r.git(&[
        "merge",
        "-q",
        "--no-ff",
        "-m",
        "merge old-policy",
        "old-policy",
    ]);
    let h = history(&r);
    let sig = &h["revisions"][0]["signatures"][0];
    assert_eq!(sig["status"], "role-not-held", "{sig}");
    assert!(h["revisions"][0]["version"].is_null());
    // The honest path: the same branch approval while her role lasts counts.
    let keys2 = Keys::new();
    let (r2, ann2, _) = signed_fixture(&keys2);
    let carol2 = keys2.ssh("carol");
    add_person(&r2, &ann2, "carol", &carol2, "qa-lead");
    r2.git(&["checkout", "-q", "-b", "side"]);
    approve_ok(&r2, "carol", &carol2);
    r2.git(&["checkout", "-q", "main"]);
    r2.git(&["merge", "-q", "--no-ff", "-m", "merge side", "side"]);
    assert_eq!(statuses(&r2), ["valid"]);
    assert_eq!(version(&r2, 0), 1);
}

#[test]
fn a_signature_dated_after_it_entered_the_main_line_does_not_count() {
    let keys = Keys::new();
    let (r, ann, _) = signed_fixture(&keys);
    r.git(&["config", "user.name", "ann"]);
    r.git(&["config", "user.email", "ann@example.com"]);
    r.git(&["config", "gpg.format", "ssh"]);
    let key = ann.with_extension("pub").display().to_string();
    r.git(&["config", "user.signingkey", &key]);
    let out = own_identity(&mut Command::new(crate::support::sopkit_bin()))
        .args(["approve", "QA-001", "--meaning", "approved"])
        .env("GIT_AUTHOR_DATE", "2099-01-01T00:00:00Z")
        .env("GIT_COMMITTER_DATE", "2099-01-01T00:00:00Z")
        .current_dir(r.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(statuses(&r), ["future-dated"]);
    assert!(version(&r, 0).is_null());
    // It merely does not count: a warning, not an error.
    assert!(rules(&r).contains(&"uncounted-signature".to_string()));
}

#[test]
fn separation_of_duties_rests_on_signatures_not_on_e_mail_addresses() {
    let keys = Keys::new();
    let (r, ann, bob) = signed_fixture(&keys);
    approve_ok(&r, "ann", &ann);
    assert_eq!(version(&r, 0), 1);
    // ann writes a change unsigned under bob's address, then approves it alone.
    r.append(SOP, "\nAnn's change, committed as bob.\n");
    r.git(&["add", "-A"]);
    author_commit(&r, "bob", "bob's change?", None);
    approve_ok(&r, "ann", &ann);
    let h = history(&r);
    let rev = &h["revisions"][1];
    assert_eq!(rev["signatures"][0]["status"], "valid", "{rev}");
    assert!(rev["version"].is_null(), "{rev}");
    let text = stdout(&r.sopkit(&["history", "QA-001"]));
    assert!(text.contains("a second approver"), "{text}");
    // A change of `approvers` also needs the approvers of the last effective revision:
    // bob (operator) cannot move the SOP to his own role and have it approved without
    // qa-lead.
    r.replace(SOP, "approvers: [qa-lead]", "approvers: [operator]");
    r.git(&["add", "-A"]);
    author_commit(&r, "bob", "operators approve now", Some(&bob));
    let h = history(&r);
    let rev = h["revisions"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(rev["approvers"], serde_json::json!(["operator", "qa-lead"]));
}

#[test]
fn a_shallow_clone_is_refused_with_a_way_out() {
    let keys = Keys::new();
    let (r, ann, _) = signed_fixture(&keys);
    approve_ok(&r, "ann", &ann);
    let clone = tempfile::tempdir().unwrap();
    let url = format!("file://{}", r.path().display());
    let out = Command::new("git")
        .args(["clone", "-q", "--depth", "1", &url])
        .arg(clone.path().join("c"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    for args in [
        &["check"][..],
        &["history", "QA-001"],
        &["status"],
        &["render", "QA-001", "-o", "x.pdf"],
        &["build"],
        &["run", "QA-001", "--yes"],
    ] {
        let out = Command::new(crate::support::sopkit_bin())
            .args(args)
            .current_dir(clone.path().join("c"))
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stdout(&out));
        assert!(
            stderr(&out).contains("fetch-depth: 0"),
            "{args:?}: {}",
            stderr(&out)
        );
    }
}

#[test]
fn an_ambiguous_id_is_refused_by_approve_and_run() {
    let keys = Keys::new();
    let (r, ann, bob) = signed_fixture(&keys);
    r.write("procedures/QA-001-copy.md", &r.read(SOP));
    r.git(&["add", "-A"]);
    author_commit(&r, "bob", "a copy", Some(&bob));
    let out = approve(&r, "ann", &ann, "QA-001", "approved");
    assert_eq!(out.status.code(), Some(2), "{}", stdout(&out));
    assert!(
        stderr(&out).contains("procedures/QA-001-copy.md")
            && stderr(&out).contains("procedures/QA-001-demo.md"),
        "{}",
        stderr(&out)
    );
    let out = r.sopkit(&["run", "QA-001", "--allow-draft", "--yes"]);
    assert_eq!(out.status.code(), Some(2), "{}", stdout(&out));
    assert!(stderr(&out).contains("QA-001-copy.md"), "{}", stderr(&out));
}

#[test]
fn trailers_count_only_in_an_empty_commit_made_by_its_own_signer() {
    let keys = Keys::new();
    let (r, ann, bob) = signed_fixture(&keys);
    let sha = history(&r)["revisions"][0]["sha256"]
        .as_str()
        .unwrap()
        .to_string();
    let trailers = format!("Sopkit-Approves: QA-001 sha256:{sha}\nSopkit-Meaning: approved\n");
    // Signed by ann, but the commit changes a file: not an approval.
    r.write("notes.md", "# Notes\n");
    r.git(&["add", "-A"]);
    author_commit(&r, "ann", &format!("Notes\n\n{trailers}"), Some(&ann));
    assert_eq!(statuses(&r), Vec::<String>::new());
    let out = r.sopkit(&["check", "--format", "short"]);
    assert!(
        stdout(&out).contains("in a commit that changes files"),
        "{}",
        stdout(&out)
    );
    // ann's approval on a branch, cherry-picked by bob with his own signature: bob did not
    // approve, and ann did not sign this commit.
    r.git(&["checkout", "-q", "-b", "side"]);
    approve_ok(&r, "ann", &ann);
    let approval = r.git(&["rev-parse", "HEAD"]);
    r.git(&["checkout", "-q", "main"]);
    let out = own_identity(&mut Command::new("git"))
        .args([
            "-c",
            "user.name=bob",
            "-c",
            "user.email=bob@example.com",
            "-c",
            "gpg.format=ssh",
            "-c",
        ])
        .arg(format!(
            "user.signingkey={}",
            bob.with_extension("pub").display()
        ))
        .args(["cherry-pick", "--allow-empty", "-S", &approval])
        .current_dir(r.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(statuses(&r), ["recommitted"]);
    assert!(version(&r, 0).is_null());
}

#[test]
fn an_honest_acknowledgement_after_an_ours_merge_counts() {
    let keys = Keys::new();
    let (r, ann, bob) = signed_fixture(&keys);
    r.git(&["checkout", "-q", "-b", "side"]);
    r.append(SOP, "\nA change main does not take.\n");
    r.git(&["add", "-A"]);
    author_commit(&r, "bob", "side change", Some(&bob));
    r.git(&["checkout", "-q", "main"]);
    r.git(&["merge", "-q", "-s", "ours", "-m", "keep ours", "side"]);
    let out = approve(&r, "ann", &ann, "QA-001", "acknowledged");
    assert!(out.status.success(), "{}", stderr(&out));
    let h = history(&r);
    let sigs: Vec<_> = h["revisions"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|rev| rev["signatures"].as_array().unwrap().clone())
        .collect();
    assert_eq!(sigs.len(), 1);
    assert_eq!(sigs[0]["status"], "valid", "{sigs:?}");
}

#[test]
fn verify_pdf_trusts_only_keys_the_timeline_trusts_at_the_pdfs_commit() {
    let keys = Keys::new();
    let (r, _, _) = signed_fixture(&keys);
    let mallory = keys.ssh("mallory");
    // An unsigned append of mallory's key to ann's key file.
    r.append(
        "roles/keys/ann.pub",
        &std::fs::read_to_string(mallory.with_extension("pub")).unwrap(),
    );
    r.git(&["add", "-A"]);
    author_commit(&r, "bob", "one more key", None);
    let out = r.sopkit(&["render", "QA-001", "-o", "QA-001.pdf"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = Command::new("ssh-keygen")
        .args(["-Y", "sign", "-n", "sopkit-pdf", "-f"])
        .arg(&mallory)
        .arg(r.path().join("QA-001.pdf"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let out = r.sopkit(&["verify-pdf", "QA-001.pdf"]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(
        stdout(&out).contains("signature NOT valid"),
        "{}",
        stdout(&out)
    );
    assert!(!stdout(&out).contains("by Ann"), "{}", stdout(&out));
}

#[test]
fn a_template_override_counts_on_paper_only_when_an_admin_signed_it() {
    let keys = Keys::new();
    let (r, ann, bob) = signed_fixture(&keys);
    // bob's unsigned override claims what only approvals may say.
    r.write("templates/sop.typ.j2", "FORGED Effective Version 7\n");
    r.git(&["add", "-A"]);
    author_commit(&r, "bob", "nicer title page", Some(&bob));
    assert!(rules(&r).contains(&"unauthorised-policy-change".to_string()));
    let render = |name: &str| {
        let out = r.sopkit(&["render", "QA-001", "-o", name]);
        assert!(out.status.success(), "{}", stderr(&out));
        crate::render::pdf_text(&r.path().join(name))
    };
    let text = render("a.pdf");
    assert!(!text.contains("FORGED"), "{text}");
    assert!(
        text.contains("DRAFT"),
        "the built-in template marks the draft: {text}"
    );
    // The same override re-made by an admin in a commit she signs is used.
    r.append("templates/sop.typ.j2", "\n");
    r.git(&["add", "-A"]);
    author_commit(&r, "ann", "adopt the template", Some(&ann));
    assert!(render("b.pdf").contains("FORGED"));
}

/// Who acts in the property test below.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Who {
    Ann,
    Bob,
    Carol,
    Mallory,
}

impl Who {
    fn id(self) -> &'static str {
        match self {
            Who::Ann => "ann",
            Who::Bob => "bob",
            Who::Carol => "carol",
            Who::Mallory => "mallory",
        }
    }
}

#[derive(Debug, Clone)]
enum Op {
    /// A content change, signed by someone or unsigned (committed as bob).
    Edit(Option<Who>),
    /// `sopkit approve` as someone, on main or on a branch merged with a merge commit.
    Approve(Who, bool),
    /// carol's qa-lead role ended in people.yaml, in a commit signed by someone or unsigned.
    EndCarol(Option<Who>),
    /// mallory's key appended to carol's key file, unsigned.
    ForgeKey,
}

/// What the policy says of one content version, computed without sopkit.
#[derive(Debug, Default, Clone)]
struct Version {
    authors: std::collections::BTreeSet<Who>,
    unattributed: bool,
    counted: std::collections::BTreeSet<Who>,
    effective: bool,
}

fn op() -> impl proptest::strategy::Strategy<Value = Op> {
    use proptest::prelude::*;
    let who = prop_oneof![
        Just(Who::Ann),
        Just(Who::Bob),
        Just(Who::Carol),
        Just(Who::Mallory)
    ];
    let signer = prop_oneof![
        Just(None),
        Just(Some(Who::Ann)),
        Just(Some(Who::Bob)),
        Just(Some(Who::Carol))
    ];
    prop_oneof![
        3 => signer.clone().prop_map(Op::Edit),
        5 => (who, any::<bool>()).prop_map(|(w, b)| Op::Approve(w, b)),
        1 => signer.prop_map(Op::EndCarol),
        1 => Just(Op::ForgeKey),
    ]
}

#[test]
fn random_histories_make_nothing_effective_that_the_policy_does_not_allow() {
    use proptest::prelude::*;
    let config = ProptestConfig {
        cases: 16,
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    let mut runner = proptest::test_runner::TestRunner::new(config);
    runner
        .run(&proptest::collection::vec(op(), 1..8), |ops| {
            let keys = Keys::new();
            let (r, ann, bob) = signed_fixture(&keys);
            let (carol, mallory) = (keys.ssh("carol"), keys.ssh("mallory"));
            let key = |w: Who| match w {
                Who::Ann => ann.clone(),
                Who::Bob => bob.clone(),
                Who::Carol => carol.clone(),
                Who::Mallory => mallory.clone(),
            };
            let signing = key;
            add_person(&r, &ann, "carol", &carol, "qa-lead");
            let mut versions = vec![Version {
                authors: [Who::Bob].into(),
                ..Version::default()
            }];
            let mut carol_active = true;
            for (n, op) in ops.iter().enumerate() {
                if n == ops.len() / 2 {
                    // A cache of the history so far, which the final read continues from.
                    history(&r);
                }
                match *op {
                    Op::Edit(signer) => {
                        r.append(SOP, &format!("\nEdit {n}.\n"));
                        r.git(&["add", "-A"]);
                        let who = signer.unwrap_or(Who::Bob);
                        author_commit(&r, who.id(), "edit", signer.map(signing).as_deref());
                        let prev = versions.last().unwrap().clone();
                        let mut v = Version::default();
                        if !prev.effective {
                            v.authors = prev.authors;
                            v.unattributed = prev.unattributed;
                        }
                        match signer {
                            Some(w) => {
                                v.authors.insert(w);
                            }
                            None => v.unattributed = true,
                        }
                        versions.push(v);
                    }
                    Op::Approve(who, branch) => {
                        if branch {
                            r.git(&["checkout", "-q", "-b", &format!("b{n}")]);
                        }
                        let out = approve(&r, who.id(), &signing(who), "QA-001", "approved");
                        prop_assert!(out.status.success(), "{}", stderr(&out));
                        if branch {
                            r.git(&["checkout", "-q", "main"]);
                            r.git(&["merge", "-q", "--no-ff", "-m", "merge", &format!("b{n}")]);
                        }
                        let v = versions.last_mut().unwrap();
                        let entitled = who == Who::Ann || (who == Who::Carol && carol_active);
                        if entitled && !v.authors.contains(&who) {
                            v.counted.insert(who);
                        }
                        if !v.counted.is_empty() && (!v.unattributed || v.counted.len() >= 2) {
                            v.effective = true;
                        }
                    }
                    Op::EndCarol(signer) => {
                        let text = r.read("roles/people.yaml");
                        let i = text.rfind("{ role: qa-lead, from: 2019-01-01").unwrap();
                        let head = &text[..i];
                        r.write(
                            "roles/people.yaml",
                            &format!("{head}{{ role: qa-lead, from: 2019-01-01, until: 2020-01-01 }}\n# change {n}\n"),
                        );
                        r.git(&["add", "-A"]);
                        let who = signer.unwrap_or(Who::Bob);
                        author_commit(&r, who.id(), "end carol", signer.map(signing).as_deref());
                        if signer == Some(Who::Ann) {
                            carol_active = false;
                        }
                    }
                    Op::ForgeKey => {
                        r.append(
                            "roles/keys/carol.pub",
                            &std::fs::read_to_string(key(Who::Mallory).with_extension("pub"))
                                .unwrap(),
                        );
                        r.git(&["add", "-A"]);
                        author_commit(&r, "bob", "one more key for carol", None);
                    }
                }
            }
            // Read once with the cache of the history before the last op, once from the start.
            let h = history(&r);
            std::fs::remove_dir_all(r.path().join(".git/sopkit-cache")).unwrap();
            prop_assert_eq!(&h, &history(&r));
            let got: Vec<bool> = h["revisions"]
                .as_array()
                .unwrap()
                .iter()
                .map(|rev| !rev["version"].is_null())
                .collect();
            let want: Vec<bool> = versions.iter().map(|v| v.effective).collect();
            prop_assert_eq!(got, want, "{:?}\n{}", ops, h);
            Ok(())
        })
        .unwrap();
}

/// `history` as JSON, and the same computed from the start (the cache under `.git/` removed).
fn cached_and_full(r: &Repo) -> (serde_json::Value, serde_json::Value) {
    let cached = history(r);
    let dir = r.path().join(".git/sopkit-cache");
    assert!(dir.is_dir(), "history leaves a cache");
    std::fs::remove_dir_all(&dir).unwrap();
    (cached, history(r))
}

#[test]
fn the_history_cache_gives_what_a_walk_from_the_start_gives() {
    let keys = Keys::new();
    let (r, ann, bob) = signed_fixture(&keys);
    let carol = keys.ssh("carol");
    history(&r);
    // New commits on top: an edit, an approval, a policy change.
    let old = r.git(&["rev-parse", "HEAD"]);
    r.append(SOP, "\nMore.\n");
    r.git(&["add", "-A"]);
    author_commit(&r, "bob", "more", Some(&bob));
    approve_ok(&r, "ann", &ann);
    add_person(&r, &ann, "carol", &carol, "qa-lead");
    let (cached, full) = cached_and_full(&r);
    assert_eq!(cached, full);
    assert_eq!(full["revisions"][1]["version"], 1);
    // The cache is really what the next run continues from: a cached summary, re-sealed with
    // its digest, shows up after a new commit.
    history(&r);
    let dir = r.path().join(".git/sopkit-cache");
    let file = std::fs::read_dir(&dir)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    // The cache is its digest's line, then postcard: strings are their length, then bytes.
    let bytes = std::fs::read(&file).unwrap();
    let newline = bytes.iter().position(|&b| b == b'\n').unwrap();
    let mut body = bytes[newline + 1..].to_vec();
    let at = body.windows(5).position(|w| w == b"\x04more").unwrap();
    body[at + 1..at + 5].copy_from_slice(b"MORE");
    let mut sealed =
        format!("sopkit-history-cache 4 {}\n", crate::support::sha256(&body)).into_bytes();
    sealed.extend_from_slice(&body);
    std::fs::write(&file, sealed).unwrap();
    r.write("notes.md", "# Notes\n");
    r.git(&["add", "-A"]);
    author_commit(&r, "bob", "notes", Some(&bob));
    assert_eq!(history(&r)["revisions"][1]["summary"], "MORE");
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(history(&r)["revisions"][1]["summary"], "more");
    // A branch cut from a commit long before the cached head, merged after it.
    history(&r);
    r.git(&["checkout", "-q", "-b", "old", &old]);
    r.write(
        "procedures/QA-002-other.md",
        "---\nid: QA-002\ntitle: Other\nowner: operator\napprovers: [qa-lead]\n---\n\n# Other\n",
    );
    r.git(&["add", "-A"]);
    author_commit(&r, "bob", "another SOP", Some(&bob));
    r.git(&["checkout", "-q", "main"]);
    r.git(&["merge", "-q", "--no-ff", "-m", "merge old", "old"]);
    let out = approve(&r, "carol", &carol, "QA-002", "approved");
    assert!(out.status.success(), "{}", stderr(&out));
    let qa2 = |r: &Repo| {
        let out = r.sopkit(&["history", "QA-002", "--format", "json"]);
        assert!(out.status.success(), "{}", stderr(&out));
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    let cached = qa2(&r);
    std::fs::remove_dir_all(r.path().join(".git/sopkit-cache")).unwrap();
    assert_eq!(cached, qa2(&r));
    assert_eq!(cached["revisions"][0]["version"], 1, "{cached}");
    // History rewritten under the cache: the cached head is gone from the main line.
    history(&r);
    r.git(&["reset", "-q", "--hard", "HEAD~3"]);
    r.append(SOP, "\nRewritten.\n");
    r.git(&["add", "-A"]);
    author_commit(&r, "bob", "rewritten", Some(&bob));
    let (cached, full) = cached_and_full(&r);
    assert_eq!(cached, full);
}

#[test]
fn a_procedures_folder_moved_without_an_admin_is_not_where_history_is_read() {
    let keys = Keys::new();
    let (r, ann, bob) = signed_fixture(&keys);
    approve_ok(&r, "ann", &ann);
    let before = history(&r);
    assert_eq!(before["revisions"][0]["version"], 1, "{before}");
    // bob points the SOP folder at one of his own, where QA-001 says something else and
    // nobody approved it. The history is read where the trusted policy says (a walk from the
    // start reads the folder the tree names while the timeline is built, so it must read
    // again), and a cached walk agrees.
    r.write(
        "mine/QA-001-demo.md",
        &r.read(SOP).replace("# ", "# Unapproved "),
    );
    r.append("sopkit.toml", "\n[paths]\nprocedures = \"mine\"\n");
    r.git(&["add", "-A"]);
    author_commit(&r, "bob", "my own folder", Some(&bob));
    let (cached, full) = cached_and_full(&r);
    assert_eq!(cached, full);
    assert_eq!(full["revisions"], before["revisions"], "{full}");
}

#[test]
fn a_notify_command_added_without_an_admin_never_runs() {
    let keys = Keys::new();
    let (r, ann, bob) = signed_fixture(&keys);
    let marker = r.path().join("ran");
    r.append(
        "sopkit.toml",
        &format!("[notify]\ncommand = \"touch {}\"\n", marker.display()),
    );
    r.git(&["add", "-A"]);
    author_commit(&r, "bob", "tell me", Some(&bob));
    // The SLO of QA-001 never ran: an alert to tell, but bob's command is not policy.
    let out = r.sopkit(&["status", "--notify"]);
    assert!(!marker.exists(), "{}", stdout(&out));
    // Signed by an admin, the same command is used.
    r.append("sopkit.toml", "\n");
    r.git(&["add", "-A"]);
    author_commit(&r, "ann", "tell the on-call engineer", Some(&ann));
    let out = r.sopkit(&["status", "--notify"]);
    assert!(marker.exists(), "{}{}", stdout(&out), stderr(&out));
}

#[test]
fn a_target_changed_without_an_admin_is_not_where_a_step_runs() {
    let keys = Keys::new();
    let (r, _, bob) = signed_fixture(&keys);
    r.replace(SOP, "echo backup", "echo \"target at $SOPKIT_TARGET_PATH\"");
    r.replace("sopkit.toml", "/srv/backups", "/tmp/elsewhere");
    r.git(&["add", "-A"]);
    author_commit(&r, "bob", "back up elsewhere", Some(&bob));
    crate::approvals::sign_as(&r, "bob", &bob);
    let out = r.sopkit(&["run", "QA-001", "--allow-draft", "--yes"]);
    let said = format!("{}{}", stdout(&out), stderr(&out));
    assert!(said.contains("target at /srv/backups"), "{said}");
    assert!(!said.contains("/tmp/elsewhere"), "{said}");
}

#[test]
fn an_admin_can_accept_a_reviewed_historical_error_and_nobody_else_can() {
    let keys = Keys::new();
    let (r, ann, bob) = signed_fixture(&keys);
    // A stranger's approval: an unknown key, an error in every later check.
    let stranger = keys.ssh("stranger");
    approve_ok(&r, "stranger", &stranger);
    let commit = r.git(&["rev-parse", "HEAD"]);
    assert_eq!(r.sopkit(&["check"]).status.code(), Some(1));
    // bob lists it as accepted without an admin: ignored, and reported as such.
    r.append(
        "sopkit.toml",
        &format!("[approval]\naccepted_findings = [\"{}\"]\n", &commit[..12]),
    );
    r.git(&["add", "-A"]);
    author_commit(&r, "bob", "accept", Some(&bob));
    assert!(rules(&r).contains(&"invalid-signature".to_string()));
    // ann (admin) signs the same list: the error is waived, the history still shows it.
    r.append("sopkit.toml", "\n");
    r.git(&["add", "-A"]);
    author_commit(
        &r,
        "ann",
        "accept the stranger's approval after review",
        Some(&ann),
    );
    assert!(
        !rules(&r).contains(&"invalid-signature".to_string()),
        "{:?}",
        rules(&r)
    );
    assert_eq!(statuses(&r), ["unknown-key"]);
}

#[test]
fn the_evidence_folder_cannot_lead_outside_the_repository() {
    let outside = tempfile::tempdir().unwrap();
    for how in ["dotdot", "symlink"] {
        let r = Repo::clean();
        match how {
            "dotdot" => r.append("sopkit.toml", "[paths]\nevidence = \"../elsewhere\"\n"),
            _ => {
                std::os::unix::fs::symlink(outside.path(), r.path().join("evidence")).unwrap();
                &r
            }
        };
        r.commit("evidence elsewhere");
        let out = r.sopkit(&["check", "--format", "short"]);
        assert!(
            stdout(&out).contains("invalid-config")
                && stdout(&out).contains("inside the repository"),
            "{how}: {}",
            stdout(&out)
        );
        let out = r.sopkit(&["run", "QA-001", "--allow-draft", "--yes"]);
        assert_eq!(out.status.code(), Some(2), "{how}: {}", stdout(&out));
        assert!(
            stderr(&out).contains("inside the repository"),
            "{how}: {}",
            stderr(&out)
        );
        assert_eq!(
            std::fs::read_dir(outside.path()).unwrap().count(),
            0,
            "{how}"
        );
        assert!(
            !r.path().parent().unwrap().join("elsewhere").exists(),
            "{how}"
        );
    }
}

#[test]
fn a_record_naming_a_file_outside_the_steps_output_ships_nothing() {
    let r = Repo::empty();
    r.write(
        "procedures/OPS-300-ship.md",
        "---\nid: OPS-300\ntitle: Ship\n---\n\n# Ship\n\n```sopkit {step=backup action=archive}\nsource: data\ndest: backups\n```\n\n```sopkit {step=ship action=copy}\nsource: backup\ndest: offsite\n```\n",
    );
    r.write("data/a.txt", "alpha\n");
    r.commit("ship");
    let run = |step: &str| r.sopkit(&["run", "OPS-300", "--allow-draft", "--yes", "--step", step]);
    assert!(run("backup").status.success());
    // A private key outside the repository (made now by ssh-keygen), and the archive's end
    // record rewritten to name it (with its true size and hash) as what the backup produced.
    let keys = Keys::new();
    let key = keys.ssh("id_ed25519");
    let bytes = std::fs::read(&key).unwrap();
    let (record, mut v) = crate::support::end_record_files(&r)
        .pop()
        .expect("the backup's end record");
    for f in v["files"].as_array_mut().unwrap() {
        if f["role"] == "artifact" {
            f["name"] = serde_json::json!(key.display().to_string());
            f["size"] = serde_json::json!(bytes.len());
            f["sha256"] = serde_json::json!(crate::support::sha256(&bytes));
        }
    }
    std::fs::write(&record, serde_json::to_vec(&v).unwrap()).unwrap();
    let out = run("ship");
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let end = crate::support::end_records(&r).pop().unwrap();
    assert_eq!(end["step"], "ship");
    let said = crate::support::verification(&end).join("\n");
    assert!(
        said.contains("lies outside where step backup puts its output"),
        "{said}"
    );
    let shipped = crate::support::files(&r.path().join("offsite"));
    assert!(shipped.is_empty(), "{shipped:?}");
}

#[test]
fn a_policy_file_edited_in_the_object_store_is_not_trusted() {
    let keys = Keys::new();
    let (r, _, _) = signed_fixture(&keys);
    let mallory = keys.ssh("mallory");
    // ann's key file, as git stores it, rewritten in place to hold mallory's key: the blob
    // keeps its name (its id), so only hashing the bytes finds the change.
    let id = r.git(&["rev-parse", "HEAD:roles/keys/ann.pub"]);
    let object = r
        .path()
        .join(format!(".git/objects/{}/{}", &id[..2], &id[2..]));
    let public = std::fs::read(mallory.with_extension("pub")).unwrap();
    let mut raw = format!("blob {}\0", public.len()).into_bytes();
    raw.extend_from_slice(&public);
    std::fs::set_permissions(&object, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let out = Command::new("python3")
        .args([
            "-c",
            "import sys, zlib; open(sys.argv[1], 'wb').write(zlib.compress(sys.stdin.buffer.read()))",
        ])
        .arg(&object)
        .stdin(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().unwrap().write_all(&raw)?;
            c.wait_with_output()
        })
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    // mallory signs as if she were ann.
    approve_ok(&r, "ann", &mallory);
    assert_eq!(statuses(&r), ["unknown-key"]);
    assert!(version(&r, 0).is_null());
}

#[test]
fn a_pdf_signed_with_a_key_the_policy_has_since_removed_is_not_valid() {
    let keys = Keys::new();
    let (r, ann, _) = signed_fixture(&keys);
    let signing = ann.with_extension("pub").display().to_string();
    r.git(&["config", "gpg.format", "ssh"]);
    r.git(&["config", "user.signingkey", &signing]);
    let out = own_identity(&mut Command::new(crate::support::sopkit_bin()))
        .args(["render", "QA-001", "--sign", "-o", "QA-001.pdf"])
        .current_dir(r.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&r.sopkit(&["verify-pdf", "QA-001.pdf"])).contains("valid signature by Ann"));
    // ann's key leaked: she replaces it, signing the change with the old one (still hers).
    let new = keys.ssh("ann-new");
    r.write(
        "roles/keys/ann.pub",
        &std::fs::read_to_string(new.with_extension("pub")).unwrap(),
    );
    r.git(&["add", "-A"]);
    author_commit(&r, "ann", "ann's new key", Some(&ann));
    // A PDF of the old commit, signed with the leaked key, no longer verifies.
    let out = r.sopkit(&["verify-pdf", "QA-001.pdf"]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(stdout(&out).contains("no longer gives"), "{}", stdout(&out));
}
