//! `sopkit run` and the evidence ledger over real shell steps in temp repositories.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::approvals::{Keys, approve, signed_fixture};
use crate::support::{Repo, SOP, end_records, files, sha256, stderr, stdout};

const STEPS: &str = "---\nid: OPS-001\ntitle: Steps\n---\n\n# Steps\n\n```sh {step=hello env=SECRET_TOKEN}\necho \"hello $SECRET_TOKEN and again $SECRET_TOKEN\"\necho to-stderr >&2\nprintf data > out.bin\necho out.bin >> \"$SOPKIT_ARTIFACTS\"\n```\n\n```sh {step=fail}\necho failing; exit 3\n```\n\n```sh {step=slow timeout=1s}\necho $$ > slow.pid\nsleep 30\n```\n\n```sh {step=long}\necho $$ > long.pid\nsleep 30\n```\n\n```sopkit {step=pack action=db-dump target=nowhere}\ndatabase: app\ndest: dumps\n```\n";

fn steps_repo() -> Repo {
    let r = Repo::empty();
    r.write("procedures/OPS-001-steps.md", STEPS);
    r.commit("steps");
    r
}

fn run(r: &Repo, args: &[&str]) -> std::process::Output {
    Command::new(crate::support::sopkit_bin())
        .arg("run")
        .args(args)
        .env("SECRET_TOKEN", "s3cret-token-value")
        .current_dir(r.path())
        .output()
        .unwrap()
}

/// `sopkit run SOP --allow-draft --yes EXTRA...` with `$BACKUP_DIR` set to `backups`.
fn run_backup(r: &Repo, sop: &str, backups: &Path, extra: &[&str]) -> std::process::Output {
    run_backup_env(r, sop, backups, extra, &[])
}

/// [`run_backup`] with more environment variables (`SOPKIT_TEST_NOW`, say).
fn run_backup_env(
    r: &Repo,
    sop: &str,
    backups: &Path,
    extra: &[&str],
    env: &[(&str, &str)],
) -> std::process::Output {
    Command::new(crate::support::sopkit_bin())
        .args(["run", sop, "--allow-draft", "--yes"])
        .args(extra)
        .env("BACKUP_DIR", backups)
        .envs(env.iter().copied())
        .current_dir(r.path())
        .output()
        .unwrap()
}

fn verify(r: &Repo) -> std::process::Output {
    r.sopkit(&["evidence", "verify"])
}

fn log_json(r: &Repo) -> Vec<serde_json::Value> {
    let out = r.sopkit(&["evidence", "log", "--format", "json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn a_very_long_output_keeps_its_ends_in_the_log_and_its_whole_hash_in_the_record() {
    let r = Repo::empty();
    // 20 MB of numbered lines: the log keeps 8 MiB from each end.
    r.write(
        "procedures/OPS-002-loud.md",
        "---\nid: OPS-002\ntitle: Loud\n---\n\n# Loud\n\n```sh {step=loud}\nseq 1 2400000\n```\n",
    );
    r.commit("loud");
    let out = run(&r, &["OPS-002", "--allow-draft", "--yes"]);
    assert!(out.status.success(), "{}", stderr(&out));
    // The operator saw every line.
    let whole: String = (1..=2_400_000).map(|i| format!("{i}\n")).collect();
    assert!(stdout(&out).contains("\n1200000\n") && stdout(&out).ends_with("\n2400000\n"));
    let log = files(&r.path().join("evidence"))
        .into_iter()
        .find(|p| p.to_string_lossy().ends_with(".stdout.log"))
        .unwrap();
    let kept = std::fs::read(&log).unwrap();
    let keep = 8 << 20;
    assert!(kept.len() < 2 * keep + 200, "{} bytes kept", kept.len());
    assert_eq!(&kept[..keep], &whole.as_bytes()[..keep]);
    assert_eq!(
        &kept[kept.len() - keep..],
        &whole.as_bytes()[whole.len() - keep..]
    );
    let omitted = whole.len() - 2 * keep;
    assert!(
        String::from_utf8_lossy(&kept[keep..kept.len() - keep])
            .contains(&format!("{omitted} bytes of this output are not kept here")),
    );
    let rec = &end_records(&r)[0];
    let said = crate::support::verification(rec).join("\n");
    assert!(
        said.contains(&format!(
            "stdout was {} bytes (sha256 {})",
            whole.len(),
            sha256(whole.as_bytes())
        )),
        "{said}"
    );
    assert!(verify(&r).status.success(), "{}", stdout(&verify(&r)));
}

#[test]
fn a_step_streams_its_output_and_leaves_verifiable_evidence_without_its_secrets() {
    let r = steps_repo();
    let out = run(
        &r,
        &["OPS-001", "--step", "hello", "--allow-draft", "--yes"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("hello [REDACTED] and again [REDACTED]"),
        "{}",
        stdout(&out)
    );
    assert!(stderr(&out).contains("to-stderr"));
    let all = files(&r.path().join("evidence"));
    assert!(all.len() >= 4, "{all:?}");
    for f in &all {
        let bytes = std::fs::read(f).unwrap();
        assert!(
            !String::from_utf8_lossy(&bytes).contains("s3cret-token-value"),
            "the secret reached {}",
            f.display()
        );
    }
    let v = verify(&r);
    assert!(v.status.success(), "{}", stdout(&v));
    let rows = log_json(&r);
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["step"], "hello");
    assert_eq!(rows[0]["result"], "succeeded");
    assert_eq!(rows[0]["exit_status"], 0);
    assert_eq!(
        rows[0]["size"], 4,
        "the artifact out.bin is hashed and counted"
    );
    assert_eq!(rows[0]["version"], serde_json::Value::Null, "a draft run");
    // The end record names the artifact with its SHA-256, and the run as a draft.
    let end = all
        .iter()
        .find(|p| p.ends_with("000002.json"))
        .expect("an end record");
    let rec: serde_json::Value = serde_json::from_slice(&std::fs::read(end).unwrap()).unwrap();
    assert_eq!(rec["allow_draft"], true);
    let art = rec["files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["role"] == "artifact")
        .unwrap();
    assert_eq!(
        art["sha256"],
        "3a6eb0790f39ac87c94f3856b2dd2c5d110e6811602261a9a923d3bb23adc8b7"
    );
}

#[test]
fn a_failing_step_stops_the_run_and_a_timeout_kills_the_step() {
    let r = steps_repo();
    let out = run(
        &r,
        &[
            "OPS-001",
            "--step",
            "fail",
            "--step",
            "hello",
            "--allow-draft",
            "--yes",
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let rows = log_json(&r);
    assert_eq!(rows.len(), 1, "the step after the failure did not run");
    assert_eq!(rows[0]["result"], "failed");
    assert_eq!(rows[0]["exit_status"], 3);

    let t = Instant::now();
    let out = run(&r, &["OPS-001", "--step", "slow", "--allow-draft", "--yes"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        t.elapsed() < Duration::from_secs(20),
        "the timeout did not stop the step"
    );
    assert_eq!(log_json(&r)[1]["result"], "timed out");
    let pid = std::fs::read_to_string(r.path().join("slow.pid")).unwrap();
    assert!(
        !Path::new(&format!("/proc/{}", pid.trim())).exists(),
        "the step's shell survived"
    );
    assert!(verify(&r).status.success());
}

/// Starts `sopkit run OPS-001 --step long` and waits until the step runs.
fn start_long(r: &Repo) -> std::process::Child {
    let child = Command::new(crate::support::sopkit_bin())
        .args(["run", "OPS-001", "--step", "long", "--allow-draft", "--yes"])
        .current_dir(r.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let t = Instant::now();
    while !r.path().join("long.pid").exists() {
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "the step never started"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child
}

/// The step's pid, once the shell has written it (the file exists, empty, a moment before).
fn step_pid(r: &Repo) -> i32 {
    let t = Instant::now();
    loop {
        let text = std::fs::read_to_string(r.path().join("long.pid")).unwrap_or_default();
        if let Ok(pid) = text.trim().parse() {
            return pid;
        }
        assert!(t.elapsed() < Duration::from_secs(20), "no pid in long.pid");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn ctrl_c_interrupts_the_step_and_is_recorded() {
    let r = steps_repo();
    let mut child = start_long(&r);
    let pid = step_pid(&r);
    // SAFETY: a signal to the child we started.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130));
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "the step survived Ctrl-C"
    );
    assert_eq!(log_json(&r)[0]["result"], "interrupted");
    assert!(verify(&r).status.success());
}

#[test]
fn kill_9_mid_step_leaves_a_ledger_that_verifies_and_shows_the_run_interrupted() {
    let r = steps_repo();
    let mut child = start_long(&r);
    let pid = step_pid(&r);
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    // The step's own process group outlives sopkit; end it like an operator would.
    // SAFETY: a signal to the process group the step ran in.
    unsafe { libc::kill(-pid, libc::SIGKILL) };
    let v = verify(&r);
    assert!(v.status.success(), "{}", stdout(&v));
    let rows = log_json(&r);
    assert_eq!(rows[0]["result"], "interrupted");
    assert!(
        rows[0]["issues"][0]
            .as_str()
            .unwrap()
            .contains("no end record")
    );
    // The next run appends to the same chain.
    let out = run(
        &r,
        &["OPS-001", "--step", "hello", "--allow-draft", "--yes"],
    );
    assert!(out.status.success());
    assert!(verify(&r).status.success());
}

#[test]
fn two_runs_at_once_keep_one_unbroken_chain() {
    let r = steps_repo();
    let spawn = || {
        Command::new(crate::support::sopkit_bin())
            .args([
                "run",
                "OPS-001",
                "--step",
                "hello",
                "--step",
                "hello",
                "--allow-draft",
                "--yes",
            ])
            .env("SECRET_TOKEN", "s3cret-token-value")
            .current_dir(r.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    };
    let (mut a, mut b) = (spawn(), spawn());
    assert!(a.wait().unwrap().success() && b.wait().unwrap().success());
    let v = verify(&r);
    assert!(v.status.success(), "{}", stdout(&v));
    assert!(stdout(&v).contains("8 records"), "{}", stdout(&v));
    assert_eq!(log_json(&r).len(), 4);
}

#[test]
fn an_edited_or_deleted_evidence_file_fails_verification() {
    let r = steps_repo();
    for _ in 0..3 {
        assert!(
            run(
                &r,
                &["OPS-001", "--step", "hello", "--allow-draft", "--yes"]
            )
            .status
            .success()
        );
    }
    let writer = std::fs::read_dir(r.path().join("evidence"))
        .unwrap()
        .flatten()
        .find(|e| e.path().is_dir())
        .unwrap()
        .path();
    // A changed byte in a log.
    let log = files(&writer)
        .into_iter()
        .find(|p| p.to_string_lossy().ends_with(".stdout.log"))
        .unwrap();
    let original = std::fs::read(&log).unwrap();
    let mut b = original.clone();
    b[0] ^= 0x20;
    std::fs::write(&log, &b).unwrap();
    let v = verify(&r);
    assert_eq!(v.status.code(), Some(1));
    assert!(
        stdout(&v).contains(&log.file_name().unwrap().to_string_lossy().to_string()),
        "{}",
        stdout(&v)
    );
    std::fs::write(&log, &original).unwrap();
    assert!(verify(&r).status.success());
    // The log of these draft runs says so in every row.
    let log = r.sopkit(&["evidence", "log"]);
    assert!(log.status.success(), "{}", stderr(&log));
    let table = stdout(&log);
    let draft_rows: Vec<&str> = table
        .lines()
        .filter(|l| {
            l.contains(" draft ") && l.ends_with("ran from an unapproved draft (--allow-draft)")
        })
        .collect();
    assert_eq!(draft_rows.len(), 3, "{table}");
    // A record cut short is left out of the log, loudly: exit 1 and the file named.
    let record = writer.join("000004.json");
    let whole = std::fs::read(&record).unwrap();
    std::fs::write(&record, &whole[..whole.len() / 2]).unwrap();
    let log = r.sopkit(&["evidence", "log", "--format", "csv"]);
    assert_eq!(log.status.code(), Some(1), "{}", stderr(&log));
    assert!(
        stderr(&log).contains("000004.json could not be read as an evidence record"),
        "{}",
        stderr(&log)
    );
    assert_eq!(
        stdout(&log).lines().count(),
        4,
        "the header and three runs (one has no end record now)"
    );
    std::fs::write(&record, &whole).unwrap();
    // A deleted middle record.
    std::fs::remove_file(writer.join("000003.json")).unwrap();
    let v = verify(&r);
    assert_eq!(v.status.code(), Some(1));
    assert!(stdout(&v).contains("record 3 is missing"), "{}", stdout(&v));
}

#[test]
fn only_effective_sops_run_unless_allowed_and_bad_requests_are_refused() {
    let r = steps_repo();
    let out = run(&r, &["OPS-001", "--step", "hello", "--yes"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("not an effective revision"),
        "{}",
        stderr(&out)
    );
    let out = run(&r, &["OPS-001", "--step", "nope", "--allow-draft", "--yes"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("no step `nope`"), "{}", stderr(&out));
    let out = run(&r, &["OPS-001", "--step", "pack", "--allow-draft", "--yes"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("target `nowhere` is not defined"),
        "{}",
        stderr(&out)
    );
    let out = Command::new(crate::support::sopkit_bin())
        .args([
            "run",
            "OPS-001",
            "--step",
            "hello",
            "--allow-draft",
            "--yes",
        ])
        .env_remove("SECRET_TOKEN")
        .current_dir(r.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("SECRET_TOKEN is required"),
        "{}",
        stderr(&out)
    );
    // Without a terminal, --yes is required.
    let out = run(&r, &["OPS-001", "--step", "hello", "--allow-draft"]);
    assert_eq!(out.status.code(), Some(2));
    // Nothing ran.
    assert!(!r.path().join("evidence").exists());
    // A dry run shows the step with the secret masked, and runs nothing.
    let out = run(
        &r,
        &[
            "OPS-001",
            "--allow-draft",
            "--dry-run",
            "--step",
            "hello",
            "--step",
            "fail",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("step 1 of 2: hello")
            && stdout(&out).contains("env SECRET_TOKEN: set (masked)")
    );
    assert!(!stdout(&out).contains("s3cret-token-value"));
    assert!(!r.path().join("evidence").exists());
}

#[test]
fn an_approved_sop_runs_and_its_evidence_names_the_version() {
    let keys = Keys::new();
    let (r, ann, _) = signed_fixture(&keys);
    let out = approve(&r, "ann", &ann, "QA-001", "approved");
    assert!(out.status.success(), "{}", stderr(&out));
    let out = Command::new(crate::support::sopkit_bin())
        .args(["run", "QA-001", "--yes"])
        .current_dir(r.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("backup"));
    let rows = log_json(&r);
    assert_eq!(rows[0]["version"], 1);
    assert_eq!(rows[0]["allow_draft"], false);
    assert_eq!(rows[0]["issues"], serde_json::json!([]));
    assert_eq!(rows[0]["target"], "backups");
    let human = stdout(&r.sopkit(&["evidence", "log"]));
    assert!(human.lines().nth(1).unwrap().contains(" v1 "), "{human}");
    // An edit makes it a draft again: it no longer runs.
    r.append(SOP, "\nAn edit.\n");
    let out = r.sopkit(&["run", "QA-001", "--yes"]);
    assert_eq!(out.status.code(), Some(2));
}

const ARCHIVE_SOP: &str = "---\nid: BK-001\ntitle: Archive\n---\n\n# Archive\n\n```sopkit {step=pack action=archive}\nsource: data\ndest: ${BACKUP_DIR}\n```\n\n```sopkit {step=check action=verify}\narchive: pack\n```\n";

#[test]
fn an_archive_or_copy_into_its_own_source_folder_is_refused() {
    let r = Repo::empty();
    r.write(
        "procedures/BK-002-self.md",
        "---\nid: BK-002\ntitle: Self\n---\n\n# Self\n\n```sopkit {step=pack action=archive}\nsource: data\ndest: data/backups\n```\n\n```sopkit {step=mirror action=copy}\nsource: data\ndest: ${BACKUP_DIR}/copies\n```\n",
    );
    r.write("data/a.txt", "alpha\n");
    r.commit("self-archiving SOP");
    // Archive: into a folder of the source (not created yet).
    let out = run_backup(&r, "BK-002", r.path(), &["--step", "pack"]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let said = format!("{}{}", stdout(&out), stderr(&out));
    assert!(said.contains("is inside the source folder"), "{said}");
    assert!(!r.path().join("data/backups").exists());
    // Copy: BACKUP_DIR is the source folder itself, reached through a symlink.
    let link = r.path().join("via-link");
    std::os::unix::fs::symlink(r.path().join("data"), &link).unwrap();
    let out = run_backup(&r, "BK-002", &link, &["--step", "mirror"]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let said = format!("{}{}", stdout(&out), stderr(&out));
    assert!(said.contains("is inside the source folder"), "{said}");
    assert!(!r.path().join("data/copies").exists());
    // Outside the source, both work.
    let elsewhere = tempfile::tempdir().unwrap();
    let out = run_backup(&r, "BK-002", elsewhere.path(), &["--step", "mirror"]);
    assert!(out.status.success(), "{}", stdout(&out));
    assert!(elsewhere.path().join("copies/a.txt").is_file());
}

#[test]
fn archive_then_verify_and_a_corrupted_archive_is_caught() {
    let r = Repo::empty();
    r.write("procedures/BK-001-archive.md", ARCHIVE_SOP);
    r.write("data/a.txt", "alpha\n");
    r.write("data/sub/b.txt", &"b".repeat(100_000));
    r.commit("archive SOP");
    let backups = tempfile::tempdir().unwrap();
    let run_bk = |extra: &[&str]| run_backup(&r, "BK-001", backups.path(), extra);
    let out = run_bk(&[]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert!(
        stdout(&out).contains("archived 2 files"),
        "{}",
        stdout(&out)
    );
    let rows = log_json(&r);
    assert_eq!(
        rows.iter()
            .map(|r| r["result"].as_str().unwrap())
            .collect::<Vec<_>>(),
        ["succeeded", "succeeded"]
    );
    assert!(
        rows[0]["size"].as_u64().unwrap() > 0,
        "the archive is an artifact"
    );
    let archive = files(backups.path())
        .into_iter()
        .find(|p| p.to_string_lossy().ends_with(".tar.zst"))
        .unwrap();
    // The record takes the archive's hash computed while writing it: it is the file's.
    let pack = &end_records(&r)[0];
    let recorded = pack["files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"].as_str().unwrap().ends_with(".tar.zst"))
        .unwrap_or_else(|| panic!("no archive in {pack}"));
    let on_disk = std::fs::read(&archive).unwrap();
    assert_eq!(recorded["sha256"], sha256(&on_disk));
    assert_eq!(recorded["size"], on_disk.len() as u64);
    // Backup data is its owner's only; the manifest beside it is created as any file is.
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let umask = status
        .lines()
        .find_map(|l| l.strip_prefix("Umask:"))
        .map(|v| u32::from_str_radix(v.trim(), 8).unwrap())
        .unwrap();
    assert_eq!(mode(&archive), 0o600);
    let manifest = std::path::PathBuf::from(format!("{}.manifest.json", archive.display()));
    assert_eq!(mode(&manifest), 0o666 & !umask);
    // A byte flipped on disk: verify fails, and the log says why.
    let mut bytes = std::fs::read(&archive).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x01;
    std::fs::write(&archive, &bytes).unwrap();
    let out = run_bk(&["--step", "check"]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let rows = log_json(&r);
    assert_eq!(rows[2]["result"], "failed");
    assert!(
        rows[2]["issues"][0].as_str().unwrap().contains("FAILED"),
        "{:?}",
        rows[2]
    );
    assert!(verify(&r).status.success());
    // A record cut short: the next built-in step says what of the ledger it left out.
    let pack_end = files(&r.path().join("evidence"))
        .into_iter()
        .find(|p| p.ends_with("000002.json"))
        .unwrap();
    let whole = std::fs::read(&pack_end).unwrap();
    std::fs::write(&pack_end, &whole[..100]).unwrap();
    let out = run_bk(&["--step", "check"]);
    assert!(
        stdout(&out).contains("evidence file(s) are not intact or not attributable")
            && stdout(&out).contains("000002.json"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn copy_and_git_mirror_leave_verified_artifacts() {
    // A real repository to mirror, with a branch and a tag.
    let remote = Repo::empty();
    remote.write("code.txt", "fn main() {}\n");
    remote.commit("code");
    remote.git(&["tag", "v1"]);
    remote.git(&["branch", "feature"]);
    let sop = "---\nid: BK-002\ntitle: Copies\n---\n\n# Copies\n\n```sopkit {step=pack action=archive}\nsource: data\ndest: ${BACKUP_DIR}/local\n```\n\n```sopkit {step=offsite action=copy}\nsource: pack\ndest: ${BACKUP_DIR}/offsite\n```\n\n```sopkit {step=code action=git-mirror}\ntarget: code\ndest: ${BACKUP_DIR}/git\n```\n";
    let r = Repo::empty();
    r.write(
        "sopkit.toml",
        &format!(
            "[targets.code]\nkind = \"git\"\nurl = \"{}\"\n",
            remote.path().display()
        ),
    );
    r.write("procedures/BK-002-copies.md", sop);
    r.write("data/a.txt", "alpha\n");
    r.commit("copies SOP");
    let backups = tempfile::tempdir().unwrap();
    let out = run_backup(&r, "BK-002", backups.path(), &[]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    let rows = log_json(&r);
    assert_eq!(
        rows.iter()
            .map(|r| r["result"].as_str().unwrap())
            .collect::<Vec<_>>(),
        ["succeeded"; 3]
    );
    // The off-site copy is byte-identical to the local archive and its manifest.
    let local = files(&backups.path().join("local"));
    let offsite = files(&backups.path().join("offsite"));
    assert_eq!(local.len(), 2);
    assert_eq!(offsite.len(), 2);
    for f in &local {
        let twin = backups.path().join("offsite").join(f.file_name().unwrap());
        assert_eq!(std::fs::read(f).unwrap(), std::fs::read(twin).unwrap());
    }
    // The bundle holds every ref and clones into a repository that passes fsck.
    let bundle = files(&backups.path().join("git"))
        .into_iter()
        .find(|p| p.extension().is_some_and(|e| e == "bundle"))
        .unwrap();
    let heads = Command::new("git")
        .args(["bundle", "list-heads"])
        .arg(&bundle)
        .output()
        .unwrap();
    let heads = stdout(&heads);
    assert!(
        heads.contains("refs/heads/main")
            && heads.contains("refs/heads/feature")
            && heads.contains("refs/tags/v1"),
        "{heads}"
    );
    let out = r.sopkit(&["evidence", "log", "--step", "code", "--format", "json"]);
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        rows[0]["size"].as_u64().unwrap() > 0,
        "the bundle is an artifact"
    );
    assert!(verify(&r).status.success());
    // --since: a day, or a time in any offset, against the runs' UTC start times.
    let since = |bound: &str| {
        let out = r.sopkit(&["evidence", "log", "--since", bound, "--format", "json"]);
        assert!(out.status.success(), "{}", stderr(&out));
        serde_json::from_slice::<Vec<serde_json::Value>>(&out.stdout)
            .unwrap()
            .len()
    };
    let first = log_json(&r)[0]["started"].as_str().unwrap().to_string();
    assert_eq!(since(&first[..10]), 3, "the whole day of the runs");
    assert_eq!(since("2999-01-01"), 0);
    // The first run's start written in UTC+01:00: a second later leaves it out, a second
    // earlier lets every run through.
    let t = time::OffsetDateTime::parse(&first, &time::format_description::well_known::Rfc3339)
        .unwrap()
        .to_offset(time::macros::offset!(+1));
    let later = (t + time::Duration::seconds(1))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    assert!(
        since(&later) < 3,
        "{later} is after the first run started ({first})"
    );
    let earlier = (t - time::Duration::seconds(1))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    assert_eq!(since(&earlier), 3, "{earlier}");
    let out = r.sopkit(&["evidence", "log", "--since", "last week"]);
    assert_eq!(out.status.code(), Some(2));
}

/// An SOP that prunes `*.tar.zst` in `$BACKUP_DIR` after 35 days.
const PRUNE_SOP: &str = "---\nid: BK-003\ntitle: Prune\n---\n\n# Prune\n\n```sopkit {step=prune action=prune}\npath: ${BACKUP_DIR}\npattern: \"*.tar.zst\"\nretention: 35d\n```\n";

#[test]
fn prune_lists_on_a_dry_run_and_never_deletes_a_legal_hold() {
    let backups = tempfile::tempdir().unwrap();
    let old = std::time::SystemTime::now() - Duration::from_secs(90 * 86_400);
    for name in [
        "old-1.tar.zst",
        "old-2.tar.zst",
        "held.tar.zst",
        "new.tar.zst",
    ] {
        let p = backups.path().join(name);
        std::fs::write(&p, name).unwrap();
        if name != "new.tar.zst" {
            std::fs::File::options()
                .write(true)
                .open(&p)
                .unwrap()
                .set_modified(old)
                .unwrap();
        }
    }
    std::fs::write(
        backups.path().join("held.tar.zst.legal-hold"),
        "litigation 2026-7",
    )
    .unwrap();
    let r = Repo::empty();
    r.write("procedures/BK-003-prune.md", PRUNE_SOP);
    r.commit("prune SOP");
    let go = |extra: &[&str]| run_backup(&r, "BK-003", backups.path(), extra);
    let out = go(&["--dry-run"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("would delete") && text.contains("old-1.tar.zst"),
        "{text}"
    );
    assert!(text.contains("held.tar.zst: legal hold"), "{text}");
    assert_eq!(files(backups.path()).len(), 5, "a dry run deletes nothing");
    let out = go(&[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let left: Vec<String> = files(backups.path())
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert!(
        left.contains(&"held.tar.zst".to_string()) && left.contains(&"new.tar.zst".to_string())
    );
    assert!(
        !left.contains(&"old-1.tar.zst".to_string())
            && !left.contains(&"old-2.tar.zst".to_string())
    );
    assert!(verify(&r).status.success());
}

#[test]
fn every_single_byte_edit_of_real_evidence_is_detected() {
    let r = steps_repo();
    for step in ["hello", "fail"] {
        run(&r, &["OPS-001", "--step", step, "--allow-draft", "--yes"]);
    }
    let evidence = r.path().join("evidence");
    let none = std::collections::BTreeSet::new();
    assert!(
        sopkit::evidence::verify::verify(
            &evidence,
            &none,
            &sopkit::evidence::signed::Judge::none()
        )
        .problems
        .is_empty()
    );
    let targets: Vec<_> = files(&evidence)
        .into_iter()
        .filter(|p| {
            let n = p.file_name().unwrap().to_string_lossy();
            n.ends_with(".json") || n.ends_with(".log")
        })
        .collect();
    assert_eq!(targets.len(), 8, "4 records and 4 logs: {targets:?}");
    let mut checked = 0;
    for f in targets {
        let original = std::fs::read(&f).unwrap();
        for i in 0..original.len() {
            let mut b = original.clone();
            b[i] = b[i].wrapping_add(1);
            std::fs::write(&f, &b).unwrap();
            let report = sopkit::evidence::verify::verify(
                &evidence,
                &none,
                &sopkit::evidence::signed::Judge::none(),
            );
            assert!(
                report.problems.iter().any(|p| p.path == f),
                "byte {i} of {} changed unnoticed",
                f.display()
            );
            checked += 1;
        }
        std::fs::write(&f, &original).unwrap();
    }
    assert!(checked > 1000, "{checked} edits");
}

/// Local `prune` judges age by sopkit's one clock, as S3 `prune` does and as its dry run
/// does: pinned 90 days ahead, a backup written today is past a 35-day retention.
#[test]
fn local_prune_reads_the_one_clock() {
    let backups = tempfile::tempdir().unwrap();
    let today = backups.path().join("today.tar.zst");
    std::fs::write(&today, "x").unwrap();
    let r = Repo::empty();
    r.write("procedures/BK-003-prune.md", PRUNE_SOP);
    r.commit("prune SOP");
    let later = sopkit::time::rfc3339(sopkit::time::now() + 90 * 86_400);
    let go = |extra: &[&str]| {
        run_backup_env(
            &r,
            "BK-003",
            backups.path(),
            extra,
            &[("SOPKIT_TEST_NOW", &later)],
        )
    };
    let out = go(&["--dry-run"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("would delete") && text.contains("today.tar.zst"),
        "{text}"
    );
    let out = go(&[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!today.exists(), "the run deletes what its dry run listed");
}

/// A prune whose arguments are not prune's is refused before anything runs (exit 2, no
/// evidence), with the finding `check` gives: a misspelt keep rule would keep nothing, and a
/// `legal_hold` written as one string instead of a list would hold nothing.
#[test]
fn a_prune_with_wrong_arguments_is_refused_and_deletes_nothing() {
    let backups = tempfile::tempdir().unwrap();
    let old = std::time::SystemTime::now() - Duration::from_secs(90 * 86_400);
    for name in ["old.tar.zst", "case.keep"] {
        let p = backups.path().join(name);
        std::fs::write(&p, name).unwrap();
        std::fs::File::options()
            .write(true)
            .open(&p)
            .unwrap()
            .set_modified(old)
            .unwrap();
    }
    for (bad, finding) in [
        ("keep_dayly: 7", "unknown field `keep_dayly`"),
        ("legal_hold: \"*.keep\"", "`legal_hold` must be a list"),
    ] {
        let r = Repo::empty();
        let sop = format!(
            "---\nid: BK-004\ntitle: Prune\n---\n\n# Prune\n\n```sopkit {{step=prune action=prune}}\npath: ${{BACKUP_DIR}}\nretention: 35d\n{bad}\n```\n"
        );
        r.write("procedures/BK-004-prune.md", &sop);
        r.commit("prune SOP");
        let key = bad.split(':').next().unwrap();
        let (line, column) = r.pos("procedures/BK-004-prune.md", key);
        for extra in [&[][..], &["--dry-run"][..]] {
            let out = run_backup(&r, "BK-004", backups.path(), extra);
            assert_eq!(out.status.code(), Some(2), "{bad}: {}", stderr(&out));
            let err = stderr(&out);
            assert!(err.contains(finding), "{bad}: {err}");
            assert!(err.contains("step `prune`"), "{err}");
            if key == "keep_dayly" {
                let at = format!("procedures/BK-004-prune.md:{line}:{column}");
                assert!(err.contains(&at), "{at} in {err}");
                assert!(err.contains("keep_daily"), "the accepted ones: {err}");
            }
        }
        assert_eq!(files(backups.path()).len(), 2, "{bad}: nothing was deleted");
        assert!(!r.path().join("evidence").exists(), "{bad}: no evidence");
        // `check` reports the same thing.
        let check = r.sopkit(&["check"]);
        assert_eq!(check.status.code(), Some(1), "{bad}");
        assert!(
            stdout(&check).contains("invalid-step-arguments"),
            "{bad}: {}",
            stdout(&check)
        );
    }
}
