//! `sopkit status` over evidence written by real `sopkit run`s, with the clock pinned by
//! `SOPKIT_TEST_NOW`.

use std::path::Path;
use std::process::Command;

use crate::approvals::{Keys, approve, author_commit};
use crate::support::{Repo, stderr, stdout};

/// Targets: an on-site disk, an offline USB disk and an off-site disk, all local folders.
fn toml(root: &Path) -> String {
    let d = root.display();
    format!(
        "[targets.disk]\nkind = \"local\"\npath = \"{d}/disk\"\nmedium = \"disk\"\nlocation = \"on-site\"\nconnectivity = \"online\"\n\n[targets.usb]\nkind = \"local\"\npath = \"{d}/usb\"\nmedium = \"usb\"\nlocation = \"on-site\"\nconnectivity = \"offline\"\n\n[targets.remote]\nkind = \"local\"\npath = \"{d}/remote\"\nmedium = \"disk\"\nlocation = \"off-site\"\nconnectivity = \"online\"\n"
    )
}

fn sop(root: &Path) -> String {
    let d = root.display();
    format!(
        "---\nid: OPS-200\ntitle: Backups\nowner: qa-lead\napprovers: [qa-lead]\nretention: 3d\nslos:\n  - {{ step: backup, every: 1d }}\n  - {{ step: verify-backup, every: 7d }}\n---\n\n# Backups\n\n```sopkit {{step=backup action=archive}}\nsource: data\ndest: {d}/disk\n```\n\n```sopkit {{step=verify-backup action=verify}}\narchive: backup\n```\n\n```sopkit {{step=offline-copy action=copy}}\nsource: backup\ndest: {d}/usb\n```\n\n```sopkit {{step=offsite-copy action=copy}}\nsource: backup\ndest: {d}/remote\n```\n"
    )
}

/// The repository with OPS-200 effective (written by bob, approved by ann): only runs of an
/// approved procedure count for SLOs and copies.
struct Approved {
    repo: Repo,
    _keys: Keys,
    /// The private keys of ann (who approves) and bob (who wrote OPS-200).
    ann: std::path::PathBuf,
    bob: std::path::PathBuf,
}

impl std::ops::Deref for Approved {
    type Target = Repo;
    fn deref(&self) -> &Repo {
        &self.repo
    }
}

fn repo() -> Approved {
    let keys = Keys::new();
    let (ann, bob) = (keys.ssh("ann"), keys.ssh("bob"));
    let r = Repo::empty();
    r.write("sopkit.toml", &toml(r.path()));
    r.write("procedures/OPS-200-backups.md", &sop(r.path()));
    r.write("data/a.txt", "alpha\n");
    r.write("data/b.txt", "beta\n");
    for (who, key) in [("ann", &ann), ("bob", &bob)] {
        let public = std::fs::read_to_string(key.with_extension("pub")).unwrap();
        r.write(&format!("roles/keys/{who}.pub"), &public);
    }
    r.write(
        "roles/people.yaml",
        "people:\n  - id: ann\n    name: Ann Example\n    email: ann@example.com\n    admin: true\n    keys: [ann.pub]\n    roles:\n      - { role: qa-lead, from: 2019-01-01 }\n  - id: bob\n    name: Bob Example\n    email: bob@example.com\n    keys: [bob.pub]\n    roles:\n      - { role: operator, from: 2019-01-01 }\n",
    );
    r.git(&["add", "-A"]);
    author_commit(&r, "bob", "backups", Some(&bob));
    let out = approve(&r, "ann", &ann, "OPS-200", "approved");
    assert!(out.status.success(), "{}", stderr(&out));
    Approved {
        repo: r,
        _keys: keys,
        ann,
        bob,
    }
}

fn run(r: &Repo, steps: &[&str]) {
    let mut cmd = Command::new(crate::support::sopkit_bin());
    cmd.args(["run", "OPS-200", "--yes"]);
    for s in steps {
        cmd.args(["--step", s]);
    }
    let out = cmd.current_dir(r.path()).output().unwrap();
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
}

/// `sopkit run OPS-200 --allow-draft --yes --step STEP`, whatever it exits with.
fn run_allowing_draft(r: &Repo, step: &str) -> std::process::Output {
    Command::new(crate::support::sopkit_bin())
        .args(["run", "OPS-200", "--allow-draft", "--yes", "--step", step])
        .current_dir(r.path())
        .output()
        .unwrap()
}

/// RFC 3339 of now + `hours`.
fn later(hours: i64) -> String {
    let t = time::OffsetDateTime::now_utc() + time::Duration::hours(hours);
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

fn status(r: &Repo, now: &str, format: &str) -> std::process::Output {
    Command::new(crate::support::sopkit_bin())
        .args(["status", "--format", format])
        .env("SOPKIT_TEST_NOW", now)
        .current_dir(r.path())
        .output()
        .unwrap()
}

fn json(r: &Repo, now: &str) -> (Option<i32>, serde_json::Value) {
    let out = status(r, now, "json");
    let v = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}{}", stdout(&out), stderr(&out)));
    (out.status.code(), v)
}

/// Whether some alert of a status report contains `text`.
fn alerted(v: &serde_json::Value, text: &str) -> bool {
    v["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .any(|a| a.as_str().unwrap().contains(text))
}

fn slo<'a>(v: &'a serde_json::Value, step: &str) -> &'a serde_json::Value {
    v["slos"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["step"] == step)
        .unwrap()
}

#[test]
fn slos_are_met_then_due_then_overdue() {
    let r = repo();
    // Nothing has run: both SLOs are overdue.
    let (code, v) = json(&r, &later(0));
    assert_eq!(code, Some(1));
    assert_eq!(slo(&v, "backup")["overdue"], true);
    assert!(slo(&v, "backup")["last_success"].is_null());

    run(&r, &["backup", "verify-backup"]);
    let (_, v) = json(&r, &later(1));
    assert_eq!(slo(&v, "backup")["overdue"], false, "{v}");
    assert_eq!(slo(&v, "verify-backup")["overdue"], false);
    assert!(slo(&v, "backup")["due"].as_str().unwrap() > later(20).as_str());

    // Two days on, the daily backup is overdue; the weekly verification is not.
    let (code, v) = json(&r, &later(48));
    assert_eq!(code, Some(1));
    assert_eq!(slo(&v, "backup")["overdue"], true);
    assert_eq!(slo(&v, "verify-backup")["overdue"], false);
    assert!(alerted(&v, "SLO backup every 1d is overdue"), "{v}");
    let human = status(&r, &later(48), "human");
    assert!(
        stdout(&human).contains("OVERDUE since"),
        "{}",
        stdout(&human)
    );
    let prom = status(&r, &later(48), "prometheus");
    let text = stdout(&prom);
    assert!(
        text.contains("sopkit_slo_overdue{sop=\"OPS-200\",step=\"backup\"} 1"),
        "{text}"
    );
    assert!(text.contains("sopkit_slo_overdue{sop=\"OPS-200\",step=\"verify-backup\"} 0"));
    assert!(text.contains("# TYPE sopkit_ledger_ok gauge"));
}

#[test]
fn a_run_dated_after_now_satisfies_no_slo() {
    let r = repo();
    run(&r, &["backup"]);
    // Judged two days before the run: its records are dated in the future.
    let (code, v) = json(&r, &later(-48));
    assert_eq!(code, Some(1));
    assert_eq!(slo(&v, "backup")["overdue"], true, "{v}");
    assert!(slo(&v, "backup")["last_success"].is_null(), "{v}");
    assert!(alerted(&v, "in the future or backwards"), "{v}");
}

#[test]
fn an_end_record_in_another_writers_folder_completes_no_run() {
    let r = repo();
    std::fs::remove_dir_all(r.path().join("data")).unwrap();
    let out = run_allowing_draft(&r, "backup");
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    // The failed run's end record, copied into a folder of its own as a success.
    let (end, mut v) = crate::support::end_record_files(&r)
        .pop()
        .expect("an end record");
    v["outcome"] = serde_json::json!("succeeded");
    v["exit_status"] = serde_json::json!(0);
    let other = r.path().join("evidence/mallory@elsewhere");
    std::fs::create_dir_all(&other).unwrap();
    let forged = other.join(end.file_name().unwrap());
    std::fs::write(&forged, serde_json::to_vec(&v).unwrap()).unwrap();
    // Signed by the operator's own valid key: attributable, but still no run of its folder.
    crate::approvals::sign_record(&r, &forged);
    let (_, v) = json(&r, &later(1));
    assert_eq!(slo(&v, "backup")["overdue"], true, "{v}");
    assert!(slo(&v, "backup")["last_success"].is_null(), "{v}");
    assert!(alerted(&v, "has no start record"), "{v}");
}

#[test]
fn a_run_from_a_draft_is_shown_and_counts_for_no_slo() {
    let r = repo();
    // An edit not yet approved: the run is a draft run.
    r.append(
        "procedures/OPS-200-backups.md",
        "\nA change nobody approved.\n",
    );
    let out = run_allowing_draft(&r, "backup");
    assert!(out.status.success(), "{}", stderr(&out));
    let (code, v) = json(&r, &later(1));
    assert_eq!(code, Some(1));
    assert_eq!(slo(&v, "backup")["overdue"], true, "{v}");
    assert!(slo(&v, "backup")["last_success"].is_null(), "{v}");
    assert!(
        alerted(&v, "1 run(s) from content no approval covers"),
        "{v}"
    );

    // Its own operator rewrites the draft run to claim version 1, chain and signatures
    // redone with her own key: the history, not the record, says what ran.
    rewrite_chain(&r, |rec| {
        rec.version = Some(1);
        rec.allow_draft = false;
    });
    let (_, v) = json(&r, &later(1));
    assert_eq!(v["ledger"]["ok"], true, "a consistent rewrite: {v}");
    assert!(slo(&v, "backup")["last_success"].is_null(), "{v}");
    assert!(
        alerted(&v, "1 run(s) from content no approval covers"),
        "{v}"
    );
}

/// Rewrites every record of the repository's one writer with `edit`, as its writer could,
/// signing with the key git config names.
fn rewrite_chain(r: &Repo, edit: impl FnMut(&mut sopkit::evidence::Record)) {
    let mut files: Vec<_> = crate::support::files(&r.path().join("evidence"))
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    let key = r.git(&["config", "user.signingkey"]);
    crate::approvals::rewrite_chain(&files, Path::new(key.trim()), edit);
}

#[test]
fn a_run_of_a_revision_already_replaced_counts_for_nothing() {
    let r = repo();
    run(&r, &["backup"]);
    let (_, v) = json(&r, &later(1));
    assert!(!slo(&v, "backup")["last_success"].is_null(), "{v}");
    // Version 2 becomes effective.
    r.append("procedures/OPS-200-backups.md", "\nVersion two.\n");
    r.git(&["add", "procedures/OPS-200-backups.md"]);
    author_commit(&r, "bob", "version two", Some(&r.bob));
    let out = approve(&r, "ann", &r.ann, "OPS-200", "approved");
    assert!(out.status.success(), "{}", stderr(&out));
    std::thread::sleep(std::time::Duration::from_millis(1100));
    // The version 1 run, dated now: it claims to have followed a procedure already replaced
    // (one that, say, did not yet require a role).
    let now = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    rewrite_chain(&r, |rec| {
        rec.started = now.clone();
        if rec.ended.is_some() {
            rec.ended = Some(now.clone());
        }
    });
    let (_, v) = json(&r, &later(1));
    assert_eq!(v["ledger"]["ok"], true, "{v}");
    assert!(slo(&v, "backup")["last_success"].is_null(), "{v}");
    assert!(
        alerted(
            &v,
            "1 run(s) of a revision that a later effective one had replaced"
        ),
        "{v}"
    );
}

#[test]
fn a_record_older_than_one_written_before_it_counts_for_nothing() {
    use sopkit::digest::sha256_hex;
    use sopkit::evidence::{Kind, Outcome, Record, record_name};
    let r = repo();
    // A whole chain made with the library, digests and links right: a failed verification
    // now, then a "success" dated two days back, written after it.
    let at = |hours: i64| later(hours);
    let base = |run: &str, started: String| Record {
        writer: String::new(),
        attribution: None,
        format: sopkit::evidence::FORMAT,
        seq: 0,
        prev: None,
        kind: Kind::Start,
        run: run.into(),
        sop: "OPS-200".into(),
        sop_path: "procedures/OPS-200-backups.md".into(),
        commit: None,
        content_sha256: "0".repeat(64),
        version: Some(1),
        allow_draft: false,
        step: "verify-backup".into(),
        role: None,
        target: None,
        operator: "mallory@example.com".into(),
        host: "x".into(),
        started,
        ended: None,
        exit_status: None,
        outcome: None,
        files: Vec::new(),
        verification: Vec::new(),
        sopkit_version: sopkit::VERSION.into(),
        digest: String::new(),
    };
    let end = |mut rec: Record, ended: String, ok: bool| {
        rec.kind = Kind::End;
        rec.ended = Some(ended);
        rec.exit_status = Some(if ok { 0 } else { 1 });
        rec.outcome = Some(if ok {
            Outcome::Succeeded
        } else {
            Outcome::Failed
        });
        rec
    };
    let failed = base("0000000000000001", at(0));
    let backdated = base("0000000000000002", at(-48));
    let chain = [
        failed.clone(),
        end(failed, at(0), false),
        backdated.clone(),
        end(backdated, at(-47), true),
    ];
    let dir = r.path().join("evidence/mallory@example.com@x");
    std::fs::create_dir_all(&dir).unwrap();
    let mut prev = None;
    for (i, mut rec) in chain.into_iter().enumerate() {
        rec.seq = i as u64 + 1;
        rec.prev = prev.clone();
        let bytes = rec.to_bytes();
        prev = Some(sha256_hex(&bytes));
        std::fs::write(dir.join(record_name(rec.seq)), bytes).unwrap();
    }
    let (_, v) = json(&r, &at(1));
    assert_eq!(slo(&v, "verify-backup")["overdue"], true, "{v}");
    assert!(slo(&v, "verify-backup")["last_success"].is_null(), "{v}");
    let verify = r.sopkit(&["evidence", "verify"]);
    assert_eq!(verify.status.code(), Some(1));
    assert!(
        stdout(&verify).contains("000003.json: was written at")
            && stdout(&verify).contains("of the same chain"),
        "{}",
        stdout(&verify)
    );
}

#[test]
fn an_unsigned_change_of_the_evidence_folder_hides_no_evidence() {
    let r = repo();
    run(&r, &["backup"]);
    r.append("sopkit.toml", "\n[paths]\nevidence = \"elsewhere\"\n");
    r.write("elsewhere/README.md", "Nothing ran here.\n");
    r.git(&["add", "-A"]);
    author_commit(&r, "bob", "evidence elsewhere", None);
    let (_, v) = json(&r, &later(1));
    assert_eq!(slo(&v, "backup")["overdue"], false, "{v}");
    let log = r.sopkit(&["evidence", "log"]);
    assert!(stdout(&log).contains("backup"), "{}", stdout(&log));
}

#[test]
fn the_32110_rule_from_evidence_and_target_labels() {
    let r = repo();
    run(&r, &["backup"]);
    // Not yet verified: unproven, and said so (not called an error).
    let (_, v) = json(&r, &later(1));
    let short = v["backup_sets"][0]["shortfalls"].to_string();
    assert!(
        short.contains("1 verification step(s) never run") && !short.contains("failed"),
        "{short}"
    );
    run(&r, &["verify-backup"]);
    let (_, v) = json(&r, &later(1));
    let set = &v["backup_sets"][0];
    assert_eq!(set["sop"], "OPS-200");
    assert_eq!(set["total_copies"], 2, "{set}");
    assert_eq!(set["rule_32110"], false);
    let short = set["shortfalls"].to_string();
    assert!(
        short.contains("no off-site copy") && short.contains("no offline copy"),
        "{short}"
    );

    run(&r, &["offline-copy", "offsite-copy"]);
    let (_, v) = json(&r, &later(1));
    let set = &v["backup_sets"][0];
    assert_eq!(set["total_copies"], 4, "{set}");
    assert_eq!(set["media"], 2);
    assert_eq!(set["off_site"], 1);
    assert_eq!(set["offline"], 1);
    assert_eq!(set["errors"].as_array().unwrap().len(), 0);
    assert_eq!(set["rule_32110"], true, "{set}");

    // A verification that fails breaks the "0".
    let archive = walk_one(&r.path().join("disk"), ".tar.zst");
    let mut bytes = std::fs::read(&archive).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 1;
    std::fs::write(&archive, bytes).unwrap();
    let out = Command::new(crate::support::sopkit_bin())
        .args([
            "run",
            "OPS-200",
            "--allow-draft",
            "--yes",
            "--step",
            "verify-backup",
        ])
        .current_dir(r.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let (code, v) = json(&r, &later(1));
    assert_eq!(code, Some(1));
    let set = &v["backup_sets"][0];
    assert_eq!(set["rule_32110"], false);
    assert!(
        set["errors"][0]
            .as_str()
            .unwrap()
            .contains("verify-backup failed"),
        "{set}"
    );
    assert!(
        set["shortfalls"]
            .to_string()
            .contains("1 failed verification(s)"),
        "{set}"
    );
}

fn walk_one(dir: &Path, suffix: &str) -> std::path::PathBuf {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.to_string_lossy().ends_with(suffix))
        .unwrap()
}

#[test]
fn retention_is_checked_both_ways_and_a_legal_hold_is_honoured() {
    let r = repo();
    run(&r, &["backup", "verify-backup"]);
    let archive = walk_one(&r.path().join("disk"), ".tar.zst");
    // Within retention and present: fine.
    let (_, v) = json(&r, &later(1));
    assert_eq!(v["retention"].as_array().unwrap().len(), 0, "{v}");
    // Four days on (retention 3d), still there: kept past retention.
    let (code, v) = json(&r, &later(96));
    assert_eq!(code, Some(1));
    let issues = v["retention"].as_array().unwrap();
    assert!(
        issues.iter().any(|i| i["kind"] == "kept-past-retention"
            && i["path"] == archive.to_string_lossy().as_ref()),
        "{v}"
    );
    // On legal hold: not a violation.
    let mut marker = archive.as_os_str().to_owned();
    marker.push(".legal-hold");
    std::fs::write(&marker, "case 7\n").unwrap();
    let (_, v) = json(&r, &later(96));
    assert!(
        !v["retention"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["path"] == archive.to_string_lossy().as_ref()),
        "{v}"
    );
    std::fs::remove_file(&marker).unwrap();
    // Deleted after one day although retention is three: gone before retention.
    std::fs::remove_file(&archive).unwrap();
    let (code, v) = json(&r, &later(24));
    assert_eq!(code, Some(1));
    assert!(
        v["retention"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["kind"] == "gone-before-retention"),
        "{v}"
    );
}

#[test]
fn a_broken_ledger_is_reported_and_fails_the_status() {
    let r = repo();
    run(&r, &["backup", "verify-backup"]);
    let (_, v) = json(&r, &later(1));
    assert_eq!(v["ledger"]["ok"], true);
    assert_eq!(v["ledger"]["records"], 4);
    let writer = std::fs::read_dir(r.path().join("evidence"))
        .unwrap()
        .flatten()
        .find(|e| e.path().is_dir())
        .unwrap()
        .path();
    let rec = writer.join("000002.json");
    let text = std::fs::read_to_string(&rec).unwrap();
    std::fs::write(&rec, text.replace("succeeded", "failed")).unwrap();
    let (code, v) = json(&r, &later(1));
    assert_eq!(code, Some(1));
    assert_eq!(v["ledger"]["ok"], false);
    assert!(
        v["ledger"]["problems"][0]
            .as_str()
            .unwrap()
            .contains("000002.json"),
        "{v}"
    );
}

#[test]
fn the_dashboard_renders_in_a_real_headless_browser() {
    let r = repo();
    r.write(
        "procedures/OPS-201-hostile.md",
        "---\nid: OPS-201\ntitle: \"<img src=x onerror=alert(1)> & co\"\n---\n\n# Hostile\n",
    );
    r.commit("hostile title");
    run(&r, &["backup", "verify-backup"]);
    run(&r, &["backup"]);
    let dir = r.path().join("dashboard");
    let out = Command::new(crate::support::sopkit_bin())
        .args(["status", "--format", "json", "--html"])
        .arg(&dir)
        .env("SOPKIT_TEST_NOW", later(1))
        .current_dir(r.path())
        .output()
        .unwrap();
    assert!(
        out.status.code().is_some_and(|c| c <= 1),
        "{}",
        stderr(&out)
    );
    let page = dir.join("index.html");
    let url = format!("file://{}", page.display());
    let browser = |args: &[&str]| {
        Command::new("chromium")
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
            ])
            .args(args)
            .arg(&url)
            .output()
            .expect("chromium (Debian's package; scripts/test installs it)")
    };
    let dom = browser(&["--dump-dom"]);
    assert!(dom.status.success(), "{}", stderr(&dom));
    let dom = stdout(&dom);
    // Each bar says who signed its run.
    assert!(dom.contains("signed by Ann Example (ann)"), "{dom}");
    // The browser built the tables and one timeline per step that ran, with a bar per run.
    assert!(
        dom.contains("id=\"slos\"") && dom.contains("id=\"backup-sets\""),
        "{dom}"
    );
    let timeline = dom
        .split("<section class=\"timeline\" data-sop=\"OPS-200\" data-step=\"backup\">")
        .nth(1)
        .expect("a timeline of the backup step")
        .split("</section>")
        .next()
        .unwrap();
    assert!(timeline.contains("2 runs, 2 succeeded"), "{timeline}");
    assert_eq!(timeline.matches("<rect").count(), 4, "{timeline}");
    // The hostile title stayed text: no element came of it.
    assert!(
        dom.contains("&lt;img src=x onerror=alert(1)&gt; &amp; co"),
        "{dom}"
    );
    assert!(!dom.contains("<img"), "{dom}");
    // And it paints: a real PNG of the page.
    let shot = r.path().join("dashboard.png");
    let png = browser(&[
        &format!("--screenshot={}", shot.display()),
        "--window-size=1000,1400",
    ]);
    assert!(png.status.success(), "{}", stderr(&png));
    let bytes = std::fs::read(&shot).unwrap();
    assert!(
        bytes.starts_with(b"\x89PNG") && bytes.len() > 10_000,
        "{}",
        bytes.len()
    );
}

#[test]
fn training_lists_role_holders_until_they_acknowledge_the_effective_revision() {
    use crate::approvals::{Keys, approve, signed_fixture};
    let keys = Keys::new();
    let (r, ann, bob) = signed_fixture(&keys);
    // A draft has no training to do yet, but says who could approve it.
    let (_, v) = json(&r, &later(0));
    assert_eq!(v["training"].as_array().unwrap().len(), 0, "{v}");
    let sop = &v["sops"][0];
    assert_eq!(sop["effective"], false);
    assert_eq!(sop["could_sign"]["qa-lead"][0], "ann", "{sop}");

    let out = approve(&r, "ann", &ann, "QA-001", "approved");
    assert!(out.status.success(), "{}", stderr(&out));
    let (_, v) = json(&r, &later(0));
    assert_eq!(v["sops"][0]["version"], 1, "{v}");
    let training = v["training"].as_array().unwrap();
    // Bob holds `operator`, the owner role the SOP also links to; Ann's role is not named.
    assert_eq!(training.len(), 1, "{v}");
    assert_eq!(training[0]["person"], "bob");
    assert_eq!(training[0]["role"], "operator");
    assert_eq!(training[0]["version"], 1);

    let out = approve(&r, "bob", &bob, "QA-001", "acknowledged");
    assert!(out.status.success(), "{}", stderr(&out));
    let (_, v) = json(&r, &later(0));
    assert_eq!(v["training"].as_array().unwrap().len(), 0, "{v}");
    // The acknowledgement did not change the version.
    assert_eq!(v["sops"][0]["version"], 1);
}
