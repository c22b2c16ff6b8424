//! Approvals over real histories: every signature classification produced by real commits
//! signed with real SSH and GnuPG keys, and every forged or broken case failing `check`.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::{Repo, SOP, stderr, stdout};

/// Throwaway keys in a temp dir; GnuPG homes are shut down on drop.
pub(crate) struct Keys {
    dir: tempfile::TempDir,
    homes: std::cell::RefCell<Vec<PathBuf>>,
}

impl Drop for Keys {
    fn drop(&mut self) {
        for h in self.homes.borrow().iter() {
            let _ = Command::new("gpgconf")
                .args(["--kill", "all"])
                .env("GNUPGHOME", h)
                .output();
        }
    }
}

impl Keys {
    pub(crate) fn new() -> Keys {
        Keys {
            dir: tempfile::tempdir().unwrap(),
            homes: Default::default(),
        }
    }

    /// An SSH ed25519 key; returns the private key path (the public key is beside it).
    pub(crate) fn ssh(&self, name: &str) -> PathBuf {
        let key = self.dir.path().join(name);
        let out = Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C", name, "-f"])
            .arg(&key)
            .output()
            .expect("ssh-keygen (openssh-client) is needed");
        assert!(out.status.success(), "{}", stderr(&out));
        key
    }

    /// A GnuPG home with one signing key; returns (home, fingerprint).
    pub(crate) fn gpg(&self, name: &str, algo: &str, faked: Option<&str>) -> (PathBuf, String) {
        self.gpg_primary(name, algo, "sign", faked)
    }

    /// A GnuPG home whose primary key has `usage` (`sign`, or `cert` for one that only
    /// certifies subkeys); returns (home, fingerprint).
    fn gpg_primary(
        &self,
        name: &str,
        algo: &str,
        usage: &str,
        faked: Option<&str>,
    ) -> (PathBuf, String) {
        let home = self.dir.path().join(format!("gnupg-{name}"));
        std::fs::create_dir_all(&home).unwrap();
        std::fs::set_permissions(&home, std::os::unix::fs::PermissionsExt::from_mode(0o700))
            .unwrap();
        self.homes.borrow_mut().push(home.clone());
        let mut args = vec!["--batch", "--pinentry-mode", "loopback", "--passphrase", ""];
        if let Some(f) = faked {
            args.extend(["--faked-system-time", f]);
        }
        let uid = format!("{name} <{name}@example.com>");
        args.extend(["--quick-gen-key", &uid, algo, usage, "0"]);
        let out = gpg(&home, &args);
        assert!(out.status.success(), "{}", stderr(&out));
        let out = gpg(&home, &["--with-colons", "--list-keys"]);
        let fpr = stdout(&out)
            .lines()
            .find(|l| l.starts_with("fpr:"))
            .unwrap()
            .split(':')
            .nth(9)
            .unwrap()
            .to_string();
        (home, fpr)
    }
}

impl Keys {
    /// A copy of GnuPG home `home` in which key `fpr` expires on 2020-01-02 at 06:00 (set on
    /// 2020-01-01 at 06:00, for one day). The original still signs as if it never expired.
    fn expiring_copy(&self, home: &Path, fpr: &str) -> PathBuf {
        let copy = home.with_file_name(format!(
            "{}-expiring",
            home.file_name().unwrap().to_string_lossy()
        ));
        let copied = Command::new("cp").arg("-r").arg(home).arg(&copy).status();
        assert!(copied.unwrap().success());
        self.homes.borrow_mut().push(copy.clone());
        let out = gpg(
            &copy,
            &[
                "--batch",
                "--faked-system-time",
                "20200101T060000",
                "--quick-set-expire",
                fpr,
                "1d",
            ],
        );
        assert!(out.status.success(), "{}", stderr(&out));
        copy
    }
}

fn gpg(home: &Path, args: &[&str]) -> std::process::Output {
    Command::new("gpg")
        .args(args)
        .env("GNUPGHOME", home)
        .output()
        .expect("gpg (gnupg) is needed")
}

pub(crate) fn export(home: &Path, fpr: &str) -> String {
    stdout(&gpg(home, &["--armor", "--export", fpr]))
}

/// The fixture with people that have keys: ann (qa-lead, admin) and bob (operator).
pub(crate) fn signed_fixture(keys: &Keys) -> (Repo, PathBuf, PathBuf) {
    let ann = keys.ssh("ann");
    let bob = keys.ssh("bob");
    // People and keys are in the first commit that has people.yaml: the trust root.
    let r = Repo::with_clean_files();
    r.write(
        "roles/keys/ann.pub",
        &std::fs::read_to_string(ann.with_extension("pub")).unwrap(),
    );
    r.write(
        "roles/keys/bob.pub",
        &std::fs::read_to_string(bob.with_extension("pub")).unwrap(),
    );
    r.write(
        "roles/people.yaml",
        "people:\n  - id: ann\n    name: Ann Example\n    email: ann@example.com\n    admin: true\n    keys: [ann.pub]\n    roles:\n      - { role: qa-lead, from: 2019-01-01 }\n  - id: bob\n    name: Bob Example\n    email: bob@example.com\n    keys: [bob.pub]\n    roles:\n      - { role: operator, from: 2019-01-01 }\n",
    );
    r.git(&["add", "-A"]);
    // Signed, so the SOP's first revision has a known author (bob).
    author_commit(&r, "bob", "people and keys", Some(&bob));
    (r, ann, bob)
}

/// A commit authored by `who`, signed with an SSH key when one is given.
pub(crate) fn author_commit(r: &Repo, who: &str, msg: &str, key: Option<&Path>) -> String {
    let name = format!("user.name={who}");
    let email = format!("user.email={who}@example.com");
    let mut args: Vec<String> = vec!["-c".into(), name, "-c".into(), email];
    if let Some(k) = key {
        args.extend([
            "-c".into(),
            "gpg.format=ssh".into(),
            "-c".into(),
            format!("user.signingkey={}", k.with_extension("pub").display()),
        ]);
    }
    args.extend([
        "commit".into(),
        "-q".into(),
        "--allow-empty".into(),
        "-m".into(),
        msg.into(),
    ]);
    if key.is_some() {
        args.push("-S".into());
    } else {
        args.push("--no-gpg-sign".into());
    }
    let out = own_identity(&mut Command::new("git"))
        .args(&args)
        .current_dir(r.path())
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    r.git(&["rev-parse", "HEAD"])
}

/// Makes `who` the repository's git identity, signing with SSH key `key` (as `approve`,
/// `run` and `render --sign` then do).
pub(crate) fn sign_as(r: &Repo, who: &str, key: &Path) {
    r.git(&["config", "user.name", who]);
    r.git(&["config", "user.email", &format!("{who}@example.com")]);
    r.git(&["config", "gpg.format", "ssh"]);
    r.git(&[
        "config",
        "user.signingkey",
        &key.with_extension("pub").display().to_string(),
    ]);
}

/// Signs an evidence record file as `run` would, with the SSH key the repository's git
/// config names, writing `FILE.sig` beside it.
pub(crate) fn sign_record(r: &Repo, file: &Path) {
    let key = r.git(&["config", "user.signingkey"]);
    sign_record_with(Path::new(key.trim()), file);
}

/// An evidence record file, parsed.
pub(crate) fn read_record(path: &Path) -> sopkit::evidence::Record {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// Rewrites the record files `chain` (one writer's, in order) with `edit`, as an insider
/// with that writer's key `key` could: every digest and `prev` recomputed, each record
/// signed again.
pub(crate) fn rewrite_chain(
    chain: &[PathBuf],
    key: &Path,
    mut edit: impl FnMut(&mut sopkit::evidence::Record),
) {
    let mut prev: Option<String> = None;
    for path in chain {
        let mut rec = read_record(path);
        edit(&mut rec);
        rec.prev = prev.clone();
        let bytes = rec.to_bytes();
        std::fs::write(path, &bytes).unwrap();
        prev = Some(sopkit::digest::sha256_hex(&bytes));
        sign_record_with(key, path);
    }
}

/// Signs an evidence record file with SSH key `key` (a private key, or a public one whose
/// private half lies beside it), writing `FILE.sig`.
pub(crate) fn sign_record_with(key: &Path, file: &Path) {
    let out = Command::new("ssh-keygen")
        .args(["-Y", "sign", "-n", "sopkit-evidence", "-f"])
        .arg(key)
        .stdin(std::fs::File::open(file).unwrap())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let mut sig = file.as_os_str().to_owned();
    sig.push(".sig");
    std::fs::write(sig, out.stdout).unwrap();
}

/// Runs `sopkit approve` as `who`, signing with an SSH key through the repository's git config.
pub(crate) fn approve(
    r: &Repo,
    who: &str,
    key: &Path,
    sop: &str,
    meaning: &str,
) -> std::process::Output {
    sign_as(r, who, key);
    own_identity(&mut Command::new(crate::support::sopkit_bin()))
        .args(["approve", sop, "--meaning", meaning])
        .current_dir(r.path())
        .output()
        .unwrap()
}

/// `sopkit approve QA-001 --meaning approved` as `who`, which must succeed.
pub(crate) fn approve_ok(r: &Repo, who: &str, key: &Path) {
    let out = approve(r, who, key, "QA-001", "approved");
    assert!(out.status.success(), "{}", stderr(&out));
}

/// Makes a git or sopkit run use the repository's own identity and signing config: no
/// global config, and none of the author and committer variables the test harness sets.
pub(crate) fn own_identity(cmd: &mut Command) -> &mut Command {
    cmd.env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env_remove("GIT_AUTHOR_NAME")
        .env_remove("GIT_AUTHOR_EMAIL")
        .env_remove("GIT_COMMITTER_NAME")
        .env_remove("GIT_COMMITTER_EMAIL")
}

pub(crate) fn history(r: &Repo) -> serde_json::Value {
    let out = r.sopkit(&["history", "QA-001", "--format", "json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Statuses of every signature, in order.
pub(crate) fn statuses(r: &Repo) -> Vec<String> {
    let h = history(r);
    h["revisions"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|rev| {
            rev["signatures"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| s["status"].as_str().unwrap().to_string())
        })
        .collect()
}

pub(crate) fn rules(r: &Repo) -> Vec<String> {
    r.findings().into_iter().map(|f| f.0).collect()
}

#[test]
fn valid_approval_makes_a_revision_effective_and_later_edits_a_draft() {
    let keys = Keys::new();
    let (r, ann, bob) = signed_fixture(&keys);
    let out = approve(&r, "ann", &ann, "QA-001", "approved");
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("QA-001 (procedures/QA-001-demo.md)"),
        "approve names the file it signed: {}",
        stdout(&out)
    );
    assert_eq!(statuses(&r), ["valid"]);
    let h = history(&r);
    let rev = &h["revisions"][0];
    assert_eq!(rev["version"], 1);
    let sig = &rev["signatures"][0];
    assert_eq!(sig["name"], "Ann Example");
    assert_eq!(sig["role"], "qa-lead");
    assert_eq!(sig["meaning"], "approved");
    assert!(sig["fingerprint"].as_str().unwrap().starts_with("SHA256:"));

    // Marking it effective changes the content: a new revision that is not yet approved.
    r.replace(SOP, "title: Demo", "title: Demo\nstatus: effective");
    r.git(&["add", "-A"]);
    author_commit(&r, "bob", "make it effective", Some(&bob));
    let f = r.findings();
    assert_eq!(
        f.iter().map(|x| x.0.as_str()).collect::<Vec<_>>(),
        ["unapproved-change"],
        "{f:?}"
    );
    let (_, diags) = r.diagnostics();
    assert!(
        diags[0].message.contains("missing: qa-lead"),
        "{}",
        diags[0].message
    );
    approve_ok(&r, "ann", &ann);
    assert_eq!(rules(&r), Vec::<String>::new());
    assert_eq!(history(&r)["revisions"][1]["version"], 2);
    // An uncommitted edit of an effective SOP is an unapproved change too.
    r.append(SOP, "\nAn edit.\n");
    assert_eq!(rules(&r), ["unapproved-change"]);

    // Human history names signer, role, meaning, UTC time, fingerprint and status.
    let text = stdout(&r.sopkit(&["history", "QA-001"]));
    assert!(
        text.contains("version 2")
            && text.contains("Ann Example (qa-lead)")
            && text.contains("UTC")
            && text.contains("valid"),
        "{text}"
    );
}

/// A walk hashes only what approvals and readers need; drafts nobody approved are still
/// recognised by their content, and `history` shows every revision's hash.
#[test]
fn drafts_nobody_approved_are_recognised_and_shown_with_their_hash() {
    let keys = Keys::new();
    let (r, _ann, bob) = signed_fixture(&keys);
    r.replace(SOP, "title: Demo", "title: Demo\nstatus: effective");
    r.git(&["add", "-A"]);
    author_commit(&r, "bob", "mark it effective", Some(&bob));
    let marked = r.read(SOP);
    r.append(SOP, "\nA later draft.\n");
    r.git(&["add", "-A"]);
    author_commit(&r, "bob", "a later draft", Some(&bob));

    let h = history(&r);
    let revisions = h["revisions"].as_array().unwrap();
    assert_eq!(revisions.len(), 3, "{h}");
    assert_eq!(
        revisions[1]["sha256"],
        sopkit::digest::sha256_hex(marked.as_bytes()),
        "a draft between two others is shown with its own hash: {h}"
    );
    let hashes: std::collections::BTreeSet<&str> = revisions
        .iter()
        .map(|r| r["sha256"].as_str().unwrap())
        .collect();
    assert!(
        hashes.len() == 3 && hashes.iter().all(|x| x.len() == 64),
        "{hashes:?}"
    );

    // Back to the content of the middle draft, uncommitted: that draft, not unknown content.
    r.write(SOP, &marked);
    let (_, diags) = r.diagnostics();
    assert_eq!(diags.len(), 1, "{diags:?}");
    assert!(
        diags[0].message.contains("its approvals are incomplete"),
        "{}",
        diags[0].message
    );
}

#[test]
fn role_not_held_self_approval_unknown_key_and_meaning() {
    let keys = Keys::new();
    let (r, ann, bob) = signed_fixture(&keys);
    // bob holds no approver role.
    approve_ok(&r, "bob", &bob);
    // carol's key is in no people.yaml.
    let carol = keys.ssh("carol");
    approve_ok(&r, "carol", &carol);
    // A meaning outside the vocabulary, written by hand (sopkit approve refuses it).
    let sha = history(&r)["revisions"][0]["sha256"]
        .as_str()
        .unwrap()
        .to_string();
    r.git(&["add", "-A"]);
    author_commit(
        &r,
        "ann",
        &format!("Bless\n\nSopkit-Approves: QA-001 sha256:{sha}\nSopkit-Meaning: blessed\n"),
        Some(&ann),
    );
    assert_eq!(
        statuses(&r),
        ["role-not-held", "unknown-key", "meaning-not-allowed"]
    );
    // An unknown key is an error that stays; good signatures that merely do not count are
    // warnings, so a harmless mistake does not keep CI red.
    let f = rules(&r);
    assert_eq!(
        f.iter().filter(|x| *x == "invalid-signature").count(),
        1,
        "{f:?}"
    );
    assert_eq!(
        f.iter().filter(|x| *x == "uncounted-signature").count(),
        2,
        "{f:?}"
    );
    let out = r.sopkit(&["check"]);
    assert_eq!(out.status.code(), Some(1), "the unknown key fails check");

    // Self-approval: ann edits the SOP, then approves her own revision.
    r.append(SOP, "\nAnn's change.\n");
    r.git(&["add", "-A"]);
    author_commit(&r, "ann", "ann edits", Some(&ann));
    approve_ok(&r, "ann", &ann);
    assert_eq!(statuses(&r).last().unwrap(), "self-approval");
    assert!(history(&r)["revisions"][1]["version"].is_null());
}

#[test]
fn lost_and_forged_signatures() {
    let keys = Keys::new();
    let (r, ann, _) = signed_fixture(&keys);
    let sha = history(&r)["revisions"][0]["sha256"]
        .as_str()
        .unwrap()
        .to_string();
    // Trailers on an unsigned commit (what a squash merge leaves).
    author_commit(
        &r,
        "ann",
        &format!("Approve\n\nSopkit-Approves: QA-001 sha256:{sha}\nSopkit-Meaning: approved\n"),
        None,
    );
    // A signed approval whose message is altered afterwards: the signature no longer matches.
    approve_ok(&r, "ann", &ann);
    let raw = r.git(&["cat-file", "commit", "HEAD"]);
    let forged = raw.replacen("Approve QA-001 (approved)", "Approve QA-001 (approved!)", 1);
    assert_ne!(raw, forged);
    let file = r.path().join(".git/forged");
    std::fs::write(&file, format!("{forged}\n")).unwrap();
    let id = r.git(&["hash-object", "-t", "commit", "-w", file.to_str().unwrap()]);
    r.git(&["reset", "-q", "--hard", &id]);
    assert_eq!(statuses(&r), ["unsigned", "bad-signature"]);
    let f = rules(&r);
    assert!(
        f.contains(&"lost-signature".to_string()) && f.contains(&"invalid-signature".to_string()),
        "{f:?}"
    );
    assert!(
        history(&r)["revisions"][0]["version"].is_null(),
        "neither counts"
    );
}

/// A signed approval whose trailers name content the SOP does not have in that commit (the
/// text the approver read before a later edit) approves nothing: the revision stays a draft,
/// the signature shows as "approves other content", and `check` warns (the signature is
/// genuine, so it is no error).
#[test]
fn an_approval_of_other_content_does_not_count() {
    let keys = Keys::new();
    let (r, ann, bob) = signed_fixture(&keys);
    let old_sha = history(&r)["revisions"][0]["sha256"]
        .as_str()
        .unwrap()
        .to_string();
    r.append(SOP, "\nA later edit the approver never read.\n");
    r.git(&["add", "-A"]);
    author_commit(&r, "bob", "bob edits", Some(&bob));
    author_commit(
        &r,
        "ann",
        &format!("Approve\n\nSopkit-Approves: QA-001 sha256:{old_sha}\nSopkit-Meaning: approved\n"),
        Some(&ann),
    );
    assert_eq!(statuses(&r), ["wrong-content"]);
    let h = history(&r);
    assert!(
        h["revisions"]
            .as_array()
            .unwrap()
            .iter()
            .all(|rev| rev["version"].is_null()),
        "{h}"
    );
    let out = r.sopkit(&["check", "--format", "json"]);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let found = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| {
            f["message"]
                .as_str()
                .unwrap_or("")
                .contains("approves other content")
        })
        .unwrap_or_else(|| panic!("{report}"));
    assert_eq!(found["severity"], "warning", "{found}");
    // The same signature over the content the commit holds counts.
    approve_ok(&r, "ann", &ann);
    assert_eq!(history(&r)["revisions"][1]["version"], 1);
}

#[test]
fn policy_changes_need_an_admin_signature() {
    let keys = Keys::new();
    let (r, ann, bob) = signed_fixture(&keys);
    let carol = keys.ssh("carol");
    let carol_entry = "  - id: carol\n    name: Carol Example\n    email: carol@example.com\n    keys: [carol.pub]\n    roles:\n      - { role: qa-lead, from: 2019-01-01 }\n";
    // bob (not an admin) adds carol as a qa-lead: ignored, and her approval does not count.
    r.write(
        "roles/keys/carol.pub",
        &std::fs::read_to_string(carol.with_extension("pub")).unwrap(),
    );
    r.append("roles/people.yaml", carol_entry);
    r.git(&["add", "-A"]);
    author_commit(&r, "bob", "bob adds carol", Some(&bob));
    approve_ok(&r, "carol", &carol);
    assert_eq!(statuses(&r), ["unknown-key"]);
    let f = rules(&r);
    assert!(
        f.contains(&"unauthorised-policy-change".to_string()),
        "{f:?}"
    );
    // Editing people and approving in the same commit cannot work either: approve refuses.
    r.replace("roles/people.yaml", "Carol Example", "Carol X");
    let out = approve(&r, "carol", &carol, "QA-001", "approved");
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    r.git(&["checkout", "--", "roles/people.yaml"]);
    // ann (an admin) signs a change of people.yaml alone: only the paths her commit changed
    // become trusted, so carol's key file, added without an admin, is still not trusted.
    r.append("roles/people.yaml", "\n");
    r.git(&["add", "-A"]);
    author_commit(&r, "ann", "ann confirms carol", Some(&ann));
    approve_ok(&r, "carol", &carol);
    assert_eq!(statuses(&r), ["unknown-key", "unknown-key"]);
    // Re-made in full (the key file too) in a commit ann signs: now carol's approval counts.
    r.append("roles/keys/carol.pub", "\n");
    r.git(&["add", "-A"]);
    author_commit(&r, "ann", "ann confirms carol's key", Some(&ann));
    approve_ok(&r, "carol", &carol);
    assert_eq!(statuses(&r), ["unknown-key", "unknown-key", "valid"]);
    assert_eq!(history(&r)["revisions"][0]["version"], 1);
}

#[test]
fn gnupg_keys_valid_expired_and_revoked() {
    let keys = Keys::new();
    let (ed_home, ed) = keys.gpg("dora", "ed25519", None);
    let (rsa_home, rsa) = keys.gpg("rita", "rsa3072", None);
    // An expiring key: signs in 2020-01-05, but the certificate the repository holds says it
    // expired on 2020-01-02 (set in a copy of the home, so gpg itself still signs).
    let (exp_home, exp) = keys.gpg("eve", "ed25519", Some("20200101T000000"));
    let copy = keys.expiring_copy(&exp_home, &exp);
    // A revoked key: its revocation certificate is in the repository's key file.
    let (rev_home, rev) = keys.gpg("ray", "ed25519", None);
    let revocation = std::fs::read_to_string(rev_home.join(format!("openpgp-revocs.d/{rev}.rev")))
        .unwrap()
        .replace(":-----BEGIN", "-----BEGIN");

    let r = Repo::with_clean_files();
    r.write("roles/keys/dora.asc", &export(&ed_home, &ed));
    r.write("roles/keys/rita.asc", &export(&rsa_home, &rsa));
    r.write("roles/keys/eve.asc", &export(&copy, &exp));
    r.write(
        "roles/keys/ray.asc",
        &format!("{}{revocation}", export(&rev_home, &rev)),
    );
    let mut people = String::from("people:\n");
    for (id, key) in [
        ("dora", "dora.asc"),
        ("rita", "rita.asc"),
        ("eve", "eve.asc"),
        ("ray", "ray.asc"),
    ] {
        people.push_str(&format!(
            "  - id: {id}\n    name: {id}\n    email: {id}@example.com\n    admin: true\n    keys: [{key}]\n    roles:\n      - {{ role: qa-lead, from: 2019-01-01 }}\n"
        ));
    }
    r.write("roles/people.yaml", &people);
    r.commit("keys");
    for (home, fpr, faked) in [
        (&ed_home, &ed, None),
        (&rsa_home, &rsa, None),
        (&exp_home, &exp, Some("20200105T000000")),
        (&rev_home, &rev, None),
    ] {
        gpg_approve_first_revision(&keys, &r, home, fpr, faked);
    }
    assert_eq!(
        statuses(&r),
        ["valid", "valid", "expired-key", "revoked-key"]
    );
    let h = history(&r);
    assert_eq!(
        h["revisions"][0]["signatures"][0]["fingerprint"],
        ed.as_str()
    );
    assert_eq!(h["revisions"][0]["version"], 1);
}

#[test]
fn renames_are_followed_and_reviews_fall_due() {
    let keys = Keys::new();
    let (r, ann, bob) = signed_fixture(&keys);
    approve_ok(&r, "ann", &ann);
    r.git(&["mv", SOP, "procedures/QA-001-renamed.md"]);
    author_commit(&r, "bob", "rename", None);
    let h = history(&r);
    assert_eq!(
        h["revisions"].as_array().unwrap().len(),
        1,
        "a rename is not a new revision"
    );
    assert_eq!(h["revisions"][0]["path"], "procedures/QA-001-renamed.md");
    assert_eq!(h["revisions"][0]["version"], 1);
    // review_every elapsed since the effective approval: a warning, exit 0.
    r.replace(
        "procedures/QA-001-renamed.md",
        "title: Demo",
        "title: Demo\nreview_every: 30d",
    );
    r.git(&["add", "-A"]);
    author_commit(&r, "bob", "review yearly", Some(&bob));
    approve_ok(&r, "ann", &ann);
    let out = Command::new(crate::support::sopkit_bin())
        .args(["check", "--format", "short"])
        .current_dir(r.path())
        .env("SOPKIT_NOW", "2099-01-01")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(
        stdout(&out).contains("warning[review-overdue]"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn approve_refuses_unknown_meanings_and_uncommitted_edits() {
    let keys = Keys::new();
    let (r, ann, _) = signed_fixture(&keys);
    let out = approve(&r, "ann", &ann, "QA-001", "blessed");
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("not allowed"));
    r.append(SOP, "\nunsaved\n");
    let out = approve(&r, "ann", &ann, "QA-001", "approved");
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains(SOP), "{}", stderr(&out));
    r.git(&["checkout", "--", SOP]);
    r.write("notes.md", "# Notes\n");
    r.git(&["add", "notes.md"]);
    let out = approve(&r, "ann", &ann, "QA-001", "approved");
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("staged"), "{}", stderr(&out));
    assert_eq!(
        approve(&r, "ann", &ann, "QA-404", "approved").status.code(),
        Some(2)
    );
    r.git(&["reset", "-q"]);
    // No key where git is told to find one: the error says how approvals are signed, and no
    // commit is made.
    let head = r.git(&["rev-parse", "HEAD"]);
    let out = approve(
        &r,
        "ann",
        &r.path().join("no-such-key"),
        "QA-001",
        "approved",
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("could not sign") && stderr(&out).contains("help: an approval"),
        "{}",
        stderr(&out)
    );
    assert_eq!(r.git(&["rev-parse", "HEAD"]), head);
}

#[test]
fn the_gnupg_backend_needs_the_gpgme_feature() {
    let r = Repo::clean();
    r.append("sopkit.toml", "[approval]\nbackend = \"gnupg\"\n");
    let out = r.sopkit(&["check"]);
    // The default build has no GnuPG backend: a clear fatal error, not silently another backend.
    assert_eq!(out.status.code(), Some(2), "{}", stdout(&out));
    assert!(stderr(&out).contains("gpgme"), "{}", stderr(&out));
    // status and run say that the approvals could not be read; neither passes it off as
    // "nothing is approved".
    let out = r.sopkit(&["status"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("the approval history could not be read (")
            && stdout(&out).contains("gpgme"),
        "{}",
        stdout(&out)
    );
    let out = r.sopkit(&["run", "QA-001", "--yes"]);
    assert_eq!(out.status.code(), Some(2), "{}", stdout(&out));
    assert!(
        stderr(&out).contains("its approval history could not be read: sopkit.toml asks for"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn separation_of_duties_can_be_switched_off() {
    let keys = Keys::new();
    let (r, ann, _) = signed_fixture(&keys);
    r.append(SOP, "\nAnn's change.\n");
    r.git(&["add", "-A"]);
    author_commit(&r, "ann", "ann edits", Some(&ann));
    approve_ok(&r, "ann", &ann);
    assert_eq!(statuses(&r), ["self-approval"]);
    r.append("sopkit.toml", "[approval]\nseparation_of_duties = false\n");
    r.git(&["add", "-A"]);
    // sopkit.toml's [approval] is policy: bob's unsigned commit changes nothing.
    author_commit(&r, "bob", "allow self-approval", None);
    assert_eq!(statuses(&r), ["self-approval"]);
    assert!(rules(&r).contains(&"unauthorised-policy-change".to_string()));
    // Made by an admin in a commit she signs, it takes effect for approvals from then on
    // (the first was judged by the policy in force when it entered the main line).
    r.append("sopkit.toml", "\n");
    r.git(&["add", "-A"]);
    author_commit(&r, "ann", "allow self-approval", Some(&ann));
    assert_eq!(statuses(&r), ["self-approval"]);
    approve_ok(&r, "ann", &ann);
    assert_eq!(statuses(&r), ["self-approval", "valid"]);
    assert_eq!(history(&r)["revisions"][1]["version"], 1);
}

#[test]
fn the_trust_root_is_the_first_main_line_commit_that_gives_an_admin_a_key() {
    let keys = Keys::new();
    let ann = keys.ssh("ann");
    let r = Repo::with_clean_files();
    // People without keys: nobody could sign a later change, so this is no root yet.
    r.commit("people without keys");
    r.write(
        "roles/keys/ann.pub",
        &std::fs::read_to_string(ann.with_extension("pub")).unwrap(),
    );
    r.replace("roles/people.yaml", "keys: []", "keys: [ann.pub]");
    r.replace("roles/people.yaml", "from: 2026-01-01", "from: 2019-01-01");
    let root = r.commit("ann's key");
    approve_ok(&r, "ann", &ann);
    assert_eq!(statuses(&r), ["valid"]);
    assert!(!rules(&r).contains(&"unauthorised-policy-change".to_string()));
    // `trust_root` is policy: an unsigned commit cannot move the root.
    r.append("sopkit.toml", "[approval]\ntrust_root = \"0000000\"\n");
    r.git(&["add", "-A"]);
    author_commit(&r, "bob", "another root", None);
    assert_eq!(statuses(&r), ["valid"]);
    assert!(rules(&r).contains(&"unauthorised-policy-change".to_string()));
    // Signed by an admin, it pins the root: a pin that is not the history's root is a
    // finding (the history was rewritten, or the pin is wrong)...
    r.append("sopkit.toml", "\n");
    r.git(&["add", "-A"]);
    author_commit(&r, "ann", "pin a wrong root", Some(&ann));
    let out = r.sopkit(&["check", "--format", "short"]);
    assert!(
        stdout(&out).contains("pins the trust root"),
        "{}",
        stdout(&out)
    );
    // ...and the right one is not.
    r.replace("sopkit.toml", "0000000", &root[..12]);
    r.git(&["add", "-A"]);
    author_commit(&r, "ann", "pin the root", Some(&ann));
    let out = r.sopkit(&["check", "--format", "short"]);
    assert!(
        !stdout(&out).contains("pins the trust root"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn approve_signs_through_gnupg() {
    let keys = Keys::new();
    let (home, fpr) = keys.gpg("dora", "ed25519", None);
    let r = Repo::with_clean_files();
    r.write("roles/keys/dora.asc", &export(&home, &fpr));
    r.write(
        "roles/people.yaml",
        "people:\n  - id: dora\n    name: Dora Example\n    email: dora@example.com\n    admin: true\n    keys: [dora.asc]\n    roles:\n      - { role: qa-lead, from: 2019-01-01 }\n",
    );
    r.git(&["config", "user.name", "Dora Example"]);
    r.git(&["config", "user.email", "dora@example.com"]);
    r.git(&["config", "user.signingkey", &fpr]);
    // Dora is the only person: she commits the SOP signed with her OpenPGP key and approves
    // it herself, which the root's own policy allows (separation of duties off).
    r.append("sopkit.toml", "[approval]\nseparation_of_duties = false\n");
    r.git(&["add", "-A"]);
    let out = own_identity(&mut Command::new("git"))
        .args(["commit", "-q", "-S", "-m", "keys"])
        .current_dir(r.path())
        .env("GNUPGHOME", &home)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let out = own_identity(&mut Command::new(crate::support::sopkit_bin()))
        .args([
            "approve",
            "QA-001",
            "--meaning",
            "approved",
            "--comment",
            "Checked against the policy.",
        ])
        .current_dir(r.path())
        .env("GNUPGHOME", &home)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let h = history(&r);
    let sig = &h["revisions"][0]["signatures"][0];
    assert_eq!(sig["status"], "valid");
    assert_eq!(sig["kind"], "openpgp");
    assert_eq!(sig["fingerprint"], fpr.as_str());
    assert_eq!(h["revisions"][0]["version"], 1);
    assert!(
        r.git(&["log", "-1", "--format=%B"])
            .contains("Checked against the policy.")
    );
}

#[test]
fn an_sop_id_that_a_trailer_cannot_carry_is_not_approved() {
    let r = Repo::clean();
    r.replace(SOP, "id: QA-001", "id: QA 001");
    r.commit("an id with a space");
    let head = r.git(&["rev-parse", "HEAD"]);
    let out = r.sopkit(&["approve", "QA 001", "--meaning", "approved"]);
    assert_eq!(out.status.code(), Some(2), "{}", stdout(&out));
    assert!(
        stderr(&out).contains("cannot approve `QA 001`: an SOP id may hold only"),
        "{}",
        stderr(&out)
    );
    assert_eq!(r.git(&["rev-parse", "HEAD"]), head, "no commit was made");
}

#[test]
fn an_sop_naming_no_approvers_says_so_and_never_runs_as_approved() {
    let r = Repo::clean();
    r.replace(SOP, "approvers: [qa-lead]", "approvers: []");
    r.commit("no approvers");
    let said = "no approver roles: `approvers` is empty";
    let history = r.sopkit(&["history", "QA-001"]);
    assert!(
        stdout(&history).contains(&format!("draft ({said})")),
        "{}",
        stdout(&history)
    );
    let out = r.sopkit(&["run", "QA-001", "--yes"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains(said), "{}", stderr(&out));
}

#[test]
fn a_signer_holding_two_roles_covers_the_one_nobody_else_can() {
    // Ann holds qa-lead and operator and signs first; Carol holds qa-lead only. Ann must
    // count as operator and Carol as qa-lead, or the SOP would wait for an operator forever.
    let keys = Keys::new();
    let (ann, carol) = (keys.ssh("ann"), keys.ssh("carol"));
    let r = Repo::with_clean_files();
    for (who, key) in [("ann", &ann), ("carol", &carol)] {
        r.write(
            &format!("roles/keys/{who}.pub"),
            &std::fs::read_to_string(key.with_extension("pub")).unwrap(),
        );
    }
    r.write(
        "roles/people.yaml",
        "people:\n  - id: ann\n    name: Ann Example\n    email: ann@example.com\n    admin: true\n    keys: [ann.pub]\n    roles:\n      - { role: qa-lead, from: 2019-01-01 }\n      - { role: operator, from: 2019-01-01 }\n  - id: carol\n    name: Carol Example\n    email: carol@example.com\n    keys: [carol.pub]\n    roles:\n      - { role: qa-lead, from: 2019-01-01 }\n",
    );
    r.replace(
        SOP,
        "approvers: [qa-lead]",
        "approvers: [qa-lead, operator]",
    );
    r.git(&["add", "-A"]);
    author_commit(&r, "bob", "people, keys and the SOP", None);
    assert!(
        approve(&r, "ann", &ann, "QA-001", "approved")
            .status
            .success()
    );
    assert_eq!(
        history(&r)["revisions"][0]["version"],
        serde_json::Value::Null
    );
    let out = approve(&r, "carol", &carol, "QA-001", "approved");
    assert!(out.status.success(), "{}", stderr(&out));
    let h = history(&r);
    let rev = &h["revisions"][0];
    assert_eq!(rev["version"], 1, "{rev}");
    let roles: Vec<(&str, &str)> = rev["signatures"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["signer"].as_str().unwrap(), s["role"].as_str().unwrap()))
        .collect();
    assert_eq!(roles, [("ann", "operator"), ("carol", "qa-lead")]);
}

#[test]
fn a_backdated_approval_is_judged_no_earlier_than_the_content_it_signs() {
    // Ann was qa-lead only in 2020. Content written now, approved in a commit dated 2020:
    // the signer's clock cannot make her hold the role for content that did not exist then.
    let keys = Keys::new();
    let (r, ann, bob) = signed_fixture(&keys);
    r.replace(
        "roles/people.yaml",
        "{ role: qa-lead, from: 2019-01-01 }",
        "{ role: qa-lead, from: 2019-01-01, until: 2020-12-31 }",
    );
    r.git(&["add", "-A"]);
    author_commit(&r, "ann", "ann's role ended", Some(&ann));
    r.append(SOP, "\nA change written today.\n");
    r.git(&["add", "-A"]);
    author_commit(&r, "bob", "today's change", Some(&bob));
    r.git(&["config", "user.name", "ann"]);
    r.git(&["config", "user.email", "ann@example.com"]);
    r.git(&["config", "gpg.format", "ssh"]);
    let signing_key = ann.with_extension("pub").display().to_string();
    r.git(&["config", "user.signingkey", &signing_key]);
    let approve_dated = |date: &str| {
        let out = own_identity(&mut Command::new(crate::support::sopkit_bin()))
            .args(["approve", "QA-001", "--meaning", "approved"])
            .env("GIT_AUTHOR_DATE", date)
            .env("GIT_COMMITTER_DATE", date)
            .current_dir(r.path())
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
    };
    approve_dated("2020-06-01T12:00:00Z");
    assert_eq!(
        r.git(&["log", "-1", "--format=%cI"]),
        "2020-06-01T12:00:00Z",
        "the approval commit is backdated"
    );
    let h = history(&r);
    let last = h["revisions"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["signatures"][0]["status"], "role-not-held", "{last}");
    assert_eq!(last["version"], serde_json::Value::Null);

    // Had she kept the role, the approval would count, but its effective date would still
    // not come before the content existed.
    r.replace("roles/people.yaml", ", until: 2020-12-31", "");
    r.git(&["add", "-A"]);
    author_commit(&r, "ann", "ann is qa-lead again", Some(&ann));
    approve_dated("2020-06-02T12:00:00Z");
    let h = history(&r);
    let last = h["revisions"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["signatures"][1]["status"], "valid", "{last}");
    assert_eq!(last["version"], 1, "{last}");
    assert_eq!(last["effective_time"], last["time"], "{last}");
    // A signature dated before the content it signs is shown with the content's date.
    assert_eq!(last["signatures"][1]["time"], last["time"], "{last}");
}

/// Commits an approval of QA-001's first revision in `r`, signed by GnuPG key `fpr` of
/// `home`, with gpg's clock set to `faked` (`YYYYMMDDTHHMMSS`) when given.
fn gpg_approve_first_revision(keys: &Keys, r: &Repo, home: &Path, fpr: &str, faked: Option<&str>) {
    let sha = history(r)["revisions"][0]["sha256"]
        .as_str()
        .unwrap()
        .to_string();
    let msg =
        format!("Approve\n\nSopkit-Approves: QA-001 sha256:{sha}\nSopkit-Meaning: approved\n");
    let wrapper = keys
        .dir
        .path()
        .join(format!("gpg-{fpr}-{}", faked.unwrap_or("now")));
    let extra = faked
        .map(|f| format!(" --faked-system-time {f}"))
        .unwrap_or_default();
    std::fs::write(&wrapper, format!("#!/bin/sh\nexec gpg{extra} \"$@\"\n")).unwrap();
    std::fs::set_permissions(
        &wrapper,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let out = Command::new("git")
        .args(["-c", &format!("gpg.program={}", wrapper.display())])
        .args(["-c", &format!("user.signingkey={fpr}")])
        .args(["commit", "-q", "-S", "--allow-empty", "-m", &msg])
        .current_dir(r.path())
        .env("GNUPGHOME", home)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_AUTHOR_NAME", "x")
        .env("GIT_AUTHOR_EMAIL", "x@example.com")
        .env("GIT_COMMITTER_NAME", "x")
        .env("GIT_COMMITTER_EMAIL", "x@example.com")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
}

/// A repository whose content is committed today, approved by Eve (key file `cert`) with
/// gpg's clock set to 2020-01-01 12:00; returns that revision's history.
fn backdated_gpg_approval(keys: &Keys, home: &Path, fpr: &str, cert: &str) -> serde_json::Value {
    let r = Repo::with_clean_files();
    r.write("roles/keys/eve.asc", cert);
    r.write(
        "roles/people.yaml",
        "people:\n  - id: eve\n    name: Eve\n    email: eve@example.com\n    admin: true\n    keys: [eve.asc]\n    roles:\n      - { role: qa-lead, from: 2019-01-01 }\n",
    );
    r.commit("content written today");
    gpg_approve_first_revision(keys, &r, home, fpr, Some("20200101T120000"));
    history(&r)["revisions"][0].clone()
}

#[test]
fn an_openpgp_signature_dated_back_into_its_keys_life_does_not_cover_newer_content() {
    // Eve's certificate expired on 2020-01-02. She signs today's content with her clock set
    // to 2020-01-01: the signature verifies as of its own date, but the content is newer.
    let keys = Keys::new();
    let (home, fpr) = keys.gpg("eve", "ed25519", Some("20200101T000000"));
    let copy = keys.expiring_copy(&home, &fpr);
    let rev = backdated_gpg_approval(&keys, &home, &fpr, &export(&copy, &fpr));
    let sig = &rev["signatures"][0];
    assert_eq!(sig["status"], "expired-key", "{sig}");
    let detail = sig["detail"].as_str().unwrap();
    assert!(
        detail.contains("before the content it signs was committed")
            && detail.contains("the certificate had expired"),
        "{sig}"
    );
    assert_eq!(rev["version"], serde_json::Value::Null);

    // The same with a signing subkey that expired on 2020-01-02 under a primary key that
    // never expires.
    let (home, fpr) = keys.gpg_primary("eve-sub", "ed25519", "cert", Some("20200101T000000"));
    let quiet = ["--batch", "--pinentry-mode", "loopback", "--passphrase", ""];
    let at = ["--faked-system-time", "20200101T000000"];
    let out = gpg(
        &home,
        &[
            &quiet[..],
            &at[..],
            &["--quick-add-key", &fpr, "ed25519", "sign", "1d"],
        ]
        .concat(),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let rev = backdated_gpg_approval(&keys, &home, &fpr, &export(&home, &fpr));
    let sig = &rev["signatures"][0];
    assert_eq!(sig["status"], "expired-key", "{sig}");
    assert!(
        sig["detail"]
            .as_str()
            .unwrap()
            .contains("the signing key had expired"),
        "{sig}"
    );
}

/// The corpus and the approval history agree on what an SOP file is: an SOP written as
/// `.markdown` is approved like one written as `.md`, not reported unapproved forever.
#[test]
fn an_sop_in_a_dot_markdown_file_is_approved_like_any_other() {
    let keys = Keys::new();
    let (r, ann, bob) = signed_fixture(&keys);
    r.git(&["mv", SOP, "procedures/QA-001-demo.markdown"]);
    author_commit(&r, "bob", "the long extension", Some(&bob));
    approve_ok(&r, "ann", &ann);
    assert_eq!(statuses(&r), ["valid"]);
    assert_eq!(history(&r)["revisions"][0]["version"], 1);
    assert_eq!(rules(&r), Vec::<String>::new());
}

/// `approve` offers only the meanings the policy trusts: an unsigned `sopkit.toml` that
/// adds one cannot get an approval commit made under it.
#[test]
fn approve_takes_its_meanings_from_the_trusted_policy() {
    let keys = Keys::new();
    let (r, ann, _) = signed_fixture(&keys);
    r.append(
        "sopkit.toml",
        "\n[approval]\nmeanings = [\"authored\", \"reviewed\", \"approved\", \"waved-through\"]\n",
    );
    r.git(&["add", "-A"]);
    author_commit(&r, "bob", "a new meaning, unsigned by an admin", None);
    let out = approve(&r, "ann", &ann, "QA-001", "waved-through");
    assert_eq!(out.status.code(), Some(2), "{}", stdout(&out));
    assert!(stderr(&out).contains("not allowed"), "{}", stderr(&out));
}
