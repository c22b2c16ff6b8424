//! Steps against real targets on 127.0.0.1: an sshd with throwaway keys and a MariaDB
//! server, both started per test (see `services`).

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::services::{self, MARIADB_PASSWORD, Server, Sshd};
use crate::support::{Repo, end_records, files, sha256, stderr, stdout, verification};

const SECRET: &str = "tok-7f3a-never-in-evidence";

/// A repository with `sopkit.toml` (targets `web1` and `app-db` as given) and one SOP.
fn repo_with(targets: &str, sop: &str) -> Repo {
    let r = Repo::empty();
    r.write("sopkit.toml", targets);
    r.write("procedures/OPS-100-targets.md", sop);
    r.commit("targets");
    r
}

fn ssh_target(s: &Sshd) -> String {
    format!(
        "[targets.web1]\nkind = \"ssh\"\nhost = \"127.0.0.1\"\nport = {}\nuser = \"root\"\nssh_config = \"{}\"\nmedium = \"disk\"\nlocation = \"off-site\"\nconnectivity = \"online\"\n",
        s.server.port,
        s.config.display()
    )
}

fn db_target(db: &Server) -> String {
    format!(
        "[targets.app-db]\nkind = \"mysql\"\nhost = \"127.0.0.1\"\nport = {}\nuser = \"sopkit\"\npassword_env = \"APP_DB_PASSWORD\"\nmedium = \"disk\"\nlocation = \"on-site\"\nconnectivity = \"online\"\n",
        db.port
    )
}

fn sop(steps: &str) -> String {
    format!("---\nid: OPS-100\ntitle: Targets\n---\n\n# Targets\n\n{steps}")
}

fn run(r: &Repo, steps: &[&str]) -> std::process::Output {
    let mut cmd = Command::new(crate::support::sopkit_bin());
    cmd.args(["run", "OPS-100", "--allow-draft", "--yes"]);
    for s in steps {
        cmd.args(["--step", s]);
    }
    cmd.env("SECRET_TOKEN", SECRET)
        .env("APP_DB_PASSWORD", MARIADB_PASSWORD)
        .current_dir(r.path())
        .output()
        .unwrap()
}

fn last_end(r: &Repo) -> serde_json::Value {
    end_records(r).pop().expect("an end record")
}

/// `sopkit evidence verify` passes and no file under evidence/ holds `secret`.
fn evidence_clean(r: &Repo, secret: &str) {
    let v = r.sopkit(&["evidence", "verify"]);
    assert!(v.status.success(), "{}{}", stdout(&v), stderr(&v));
    for f in files(&r.path().join("evidence")) {
        let bytes = std::fs::read(&f).unwrap();
        assert!(
            !String::from_utf8_lossy(&bytes).contains(secret),
            "{} holds a secret",
            f.display()
        );
    }
}

fn alive(pid: &str) -> bool {
    Path::new(&format!("/proc/{}", pid.trim())).exists()
}

#[test]
fn shell_steps_run_on_an_ssh_host_with_streamed_output_artifacts_and_timeouts() {
    let s = services::sshd_full();
    let work = tempfile::tempdir().unwrap();
    let w = work.path().display();
    let steps = format!(
        "```sh {{step=remote target=web1 env=SECRET_TOKEN}}\necho \"on the host as $(id -un) with $SECRET_TOKEN in $SOPKIT_STEP\"\necho warn-line >&2\nprintf remote-data > {w}/out.bin\necho {w}/out.bin >> \"$SOPKIT_ARTIFACTS\"\n```\n\n```sh {{step=fails target=web1}}\necho about to fail; exit 3\n```\n\n```sh {{step=hangs target=web1 timeout=2s}}\necho $$ > {w}/hang.pid\nsleep 60\n```\n"
    );
    let r = repo_with(&ssh_target(&s), &sop(&steps));

    let out = run(&r, &["remote"]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert!(
        stdout(&out).contains("on the host as root with [REDACTED] in remote"),
        "{}",
        stdout(&out)
    );
    assert!(stderr(&out).contains("warn-line"), "{}", stderr(&out));
    let end = last_end(&r);
    assert_eq!(end["outcome"], "succeeded");
    let files = end["files"].as_array().unwrap();
    let artifact = files
        .iter()
        .find(|f| f["role"] == "artifact")
        .expect("the remote artifact is recorded");
    assert_eq!(artifact["name"], format!("web1:{w}/out.bin"));
    assert_eq!(artifact["sha256"], sha256(b"remote-data"));
    assert_eq!(artifact["size"], 11);
    evidence_clean(&r, SECRET);
    // The step's private folder on the host (script, pid, artifact list) is gone.
    let leftovers: Vec<_> = std::fs::read_dir("/tmp")
        .unwrap()
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with(&format!("sopkit-{}", end["run"].as_str().unwrap()))
        })
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    let out = run(&r, &["fails"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let end = last_end(&r);
    assert_eq!(end["outcome"], "failed");
    assert_eq!(end["exit_status"], 3);

    let out = run(&r, &["hangs"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let end = last_end(&r);
    assert_eq!(end["outcome"], "timed-out", "{end}");
    let pid = std::fs::read_to_string(work.path().join("hang.pid")).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert!(
        !alive(&pid),
        "the remote step {pid} still runs after its timeout"
    );
    evidence_clean(&r, SECRET);
}

#[test]
fn unknown_or_changed_host_keys_and_a_dead_host_fail_the_step() {
    let mut s = services::sshd_full();
    let steps = "```sh {step=remote target=web1}\necho connected\n```\n";
    let r = repo_with(&ssh_target(&s), &sop(steps));
    assert!(run(&r, &["remote"]).status.success());

    // A different key for the same host and port: someone in between.
    let other = tempfile::tempdir().unwrap();
    let key = other.path().join("k");
    assert!(
        Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(&key)
            .status()
            .unwrap()
            .success()
    );
    let pubkey = std::fs::read_to_string(key.with_extension("pub")).unwrap();
    let good = std::fs::read_to_string(&s.known_hosts).unwrap();
    let fake: Vec<&str> = pubkey.split_whitespace().take(2).collect();
    std::fs::write(
        &s.known_hosts,
        format!("[127.0.0.1]:{} {}\n", s.server.port, fake.join(" ")),
    )
    .unwrap();
    let out = run(&r, &["remote"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("someone in between"),
        "{}",
        stderr(&out)
    );
    assert!(!stdout(&out).contains("connected"));
    let end = last_end(&r);
    assert_eq!(end["outcome"], "failed");
    assert!(
        verification(&end)
            .join("\n")
            .contains("REMOTE HOST IDENTIFICATION HAS CHANGED")
    );

    // No key at all: never accepted blindly.
    std::fs::write(&s.known_hosts, "").unwrap();
    let out = run(&r, &["remote"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("never accepts an unknown key"),
        "{}",
        stderr(&out)
    );

    // The host is down.
    std::fs::write(&s.known_hosts, good).unwrap();
    s.server.stop();
    let out = run(&r, &["remote"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("does not answer"), "{}", stderr(&out));
    assert_eq!(last_end(&r)["outcome"], "failed");
    let v = r.sopkit(&["evidence", "verify"]);
    assert!(v.status.success(), "{}", stdout(&v));
}

#[test]
fn archive_and_copy_over_ssh_are_hashed_on_both_sides() {
    let s = services::sshd_full();
    let remote = tempfile::tempdir().unwrap();
    let src = remote.path().join("www");
    std::fs::create_dir_all(src.join("img")).unwrap();
    std::fs::write(src.join("index.html"), "<h1>hi</h1>\n").unwrap();
    std::fs::write(src.join("img/logo.bin"), vec![9u8; 200_000]).unwrap();
    std::fs::write(src.join("it's odd.txt"), "quote in the name\n").unwrap();
    std::os::unix::fs::symlink("index.html", src.join("home.html")).unwrap();
    let offsite = remote.path().join("offsite");
    let steps = format!(
        "```sopkit {{step=pull action=archive}}\nsource: web1:{src}\ndest: backups\n```\n\n```sopkit {{step=check action=verify}}\narchive: pull\n```\n\n```sopkit {{step=ship action=copy}}\nsource: pull\ndest: web1:{off}\n```\n\n```sopkit {{step=fetch action=copy}}\nsource: web1:{off}\ndest: fetched\n```\n",
        src = src.display(),
        off = offsite.display()
    );
    let r = repo_with(&ssh_target(&s), &sop(&steps));
    let out = run(&r, &["pull", "check", "ship", "fetch"]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    let all = end_records(&r);
    assert_eq!(all.len(), 4);
    assert!(
        verification(&all[0])
            .join("\n")
            .contains("3 files hashed here and on web1 with sha256sum, all equal"),
        "{}",
        verification(&all[0]).join("\n")
    );
    assert!(
        verification(&all[1])
            .join("\n")
            .contains("entries restored and compared")
    );
    assert!(verification(&all[2]).join("\n").contains("hashed on web1"));
    // The archive and its manifest went to the host, byte for byte, and came back.
    let archive = files(&r.path().join("backups"))
        .into_iter()
        .find(|p| p.to_string_lossy().ends_with(".tar.zst"))
        .unwrap();
    let name = archive.file_name().unwrap();
    let local = std::fs::read(&archive).unwrap();
    assert_eq!(std::fs::read(offsite.join(name)).unwrap(), local);
    assert_eq!(
        std::fs::read(r.path().join("fetched").join(name)).unwrap(),
        local
    );
    // Nothing half-sent is left on the host.
    let temps: Vec<_> = files(&offsite)
        .into_iter()
        .filter(|p| p.to_string_lossy().contains(".sopkit-copy-"))
        .collect();
    assert!(temps.is_empty(), "{temps:?}");
    evidence_clean(&r, SECRET);
}

#[test]
fn a_connection_cut_mid_copy_fails_and_leaves_no_file() {
    let s = services::sshd_full();
    let remote = tempfile::tempdir().unwrap();
    let dest = remote.path().join("dest");
    let steps = format!(
        "```sopkit {{step=ship action=copy}}\nsource: big.bin\ndest: web1:{}\n```\n",
        dest.display()
    );
    let r = repo_with(&ssh_target(&s), &sop(&steps));
    // Incompressible, so the transfer takes a while.
    let mut big = vec![0u8; 256 << 20];
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for chunk in big.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
    }
    std::fs::write(r.path().join("big.bin"), &big).unwrap();
    drop(big);
    let sshd_pid = s.server.child.id();
    let cutter = std::thread::spawn({
        let dest = dest.clone();
        move || {
            // Cut every connection once the host has started receiving the file.
            let start = std::time::Instant::now();
            while start.elapsed() < std::time::Duration::from_secs(60) {
                let receiving = files(&dest).iter().any(|p| {
                    p.to_string_lossy().contains(".sopkit-copy-")
                        && p.metadata().is_ok_and(|m| m.len() > 1 << 20)
                });
                if receiving {
                    let _ = Command::new("pkill")
                        .args(["-KILL", "-P", &sshd_pid.to_string()])
                        .status();
                    return true;
                }
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            false
        }
    });
    let out = run(&r, &["ship"]);
    assert!(cutter.join().unwrap(), "the copy never started");
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(stderr(&out).contains("copy of"), "{}", stderr(&out));
    let end = last_end(&r);
    assert_eq!(end["outcome"], "failed");
    assert!(
        !end["files"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["role"] == "artifact")
    );
    assert!(
        !dest.join("big.bin").exists(),
        "a cut copy got its final name"
    );
}

fn seed_shop(db: &Server) {
    let mut sql = String::from(
        "CREATE DATABASE shop; CREATE TABLE shop.items(id INT PRIMARY KEY, name VARCHAR(64), price DECIMAL(10,2), photo BLOB); CREATE TABLE shop.orders(id INT AUTO_INCREMENT PRIMARY KEY, item INT, at DATETIME); CREATE VIEW shop.cheap AS SELECT id, name FROM shop.items WHERE price < 5;",
    );
    sql.push_str("INSERT INTO shop.items VALUES ");
    let rows: Vec<String> = (0..2000)
        .map(|i| {
            format!(
                "({i}, 'item ''{i}''\\ttab', {}.{:02}, UNHEX('00FF{i:04X}'))",
                i % 50,
                i % 100
            )
        })
        .collect();
    sql.push_str(&rows.join(","));
    sql.push_str(
        "; INSERT INTO shop.orders(item, at) SELECT id, '2026-01-01 10:00:00' FROM shop.items;",
    );
    // About 2.5 MB of rows: several INSERT statements in a dump, which a restore test
    // spreads over its sessions. The trigger would change every row it saw inserted, and the
    // procedure's body is an INSERT line inside the dump's DELIMITER section: a restore that
    // created the trigger before the rows, or ran the body as an INSERT, fails its checksums.
    // The row with id 0 keeps it only under the dump's own `SQL_MODE` (NO_AUTO_VALUE_ON_ZERO),
    // which every session loading rows must have.
    sql.push_str(
        "USE shop; CREATE TABLE shop.log(id INT AUTO_INCREMENT PRIMARY KEY, note VARCHAR(120), UNIQUE KEY (note), KEY (note(8))); \
         SET SESSION sql_mode = CONCAT(@@sql_mode, ',NO_AUTO_VALUE_ON_ZERO'); INSERT INTO shop.log VALUES (0, 'zero'); \
         INSERT INTO shop.log SELECT seq, CONCAT('entrée ', seq, ' ', SHA1(seq), ' ', SHA1(seq + 1)) FROM seq_1_to_25000; \
         CREATE TRIGGER log_note BEFORE INSERT ON log FOR EACH ROW SET NEW.note = CONCAT(NEW.note, ' (late)');",
    );
    db.root_sql(&sql);
    db.root_sql(
        "USE shop\nDELIMITER ;;\nCREATE PROCEDURE touch()\nBEGIN\n  SELECT 1;\nINSERT INTO `orders` VALUES (NULL, 1, NOW());\nEND;;\nDELIMITER ;\n",
    );
}

/// Runs the `restore-test-file` step (which names the dump by path, so that sopkit does not
/// refuse an artifact edited after its run) with `record` as the dump's record; its output
/// and the
/// verification lines of its evidence.
fn restore_test_with(
    r: &Repo,
    record_file: &str,
    record: &serde_json::Value,
) -> (std::process::Output, String) {
    std::fs::write(record_file, serde_json::to_vec_pretty(record).unwrap()).unwrap();
    let dump = record_file.strip_suffix(".dump.json").unwrap();
    let out = Command::new(crate::support::sopkit_bin())
        .args([
            "run",
            "OPS-100",
            "--allow-draft",
            "--yes",
            "--step",
            "restore-test-file",
        ])
        .env("APP_DB_PASSWORD", MARIADB_PASSWORD)
        .env("DUMP_FILE", dump)
        .current_dir(r.path())
        .output()
        .unwrap();
    let v = verification(&last_end(r)).join("\n");
    (out, v)
}

/// Runs the `restore-test` step on `sql` in place of the dump's SQL, with a record that
/// matches it (so only the loading can fail).
fn restore_test_of_sql(
    r: &Repo,
    dump_file: &str,
    record_file: &str,
    record: &serde_json::Value,
    sql: &str,
) -> (std::process::Output, String) {
    let packed = zstd::encode_all(sql.as_bytes(), 1).unwrap();
    let mut edited = record.clone();
    edited["sql_sha256"] = serde_json::json!(sha256(sql.as_bytes()));
    edited["sql_size"] = serde_json::json!(sql.len());
    edited["file_sha256"] = serde_json::json!(sha256(&packed));
    edited["file_size"] = serde_json::json!(packed.len());
    std::fs::write(dump_file, &packed).unwrap();
    restore_test_with(r, record_file, &edited)
}

const DUMP_STEPS: &str = "```sopkit {step=dump action=db-dump target=app-db}\ndatabase: shop\ndest: dumps\n```\n\n```sopkit {step=restore-test action=restore-test}\ndump: dump\ntarget: app-db\n```\n\n```sopkit {step=restore-test-one action=restore-test}\ndump: dump\ntarget: app-db\njobs: 1\n```\n\n```sopkit {step=restore-test-file action=restore-test}\ndump: ${DUMP_FILE}\ntarget: app-db\n```\n";

#[test]
fn a_database_dump_is_restore_tested_and_the_scratch_database_dropped() {
    let db = services::mariadb();
    seed_shop(&db);
    let r = repo_with(&db_target(&db), &sop(DUMP_STEPS));
    let out = run(&r, &["dump", "restore-test"]);
    assert!(
        out.status.success(),
        "{}{}\nserver log:\n{}",
        stdout(&out),
        stderr(&out),
        std::fs::read_to_string(&db.log).unwrap_or_default()
    );
    let all = end_records(&r);
    let dump = &all[0];
    assert_eq!(dump["outcome"], "succeeded");
    let names: Vec<&str> = dump["files"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["role"] == "artifact")
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    assert!(names.iter().any(|n| n.ends_with(".sql.zst")), "{names:?}");
    let record_file = names.iter().find(|n| n.ends_with(".dump.json")).unwrap();
    let record: serde_json::Value =
        serde_json::from_slice(&std::fs::read(record_file).unwrap()).unwrap();
    let tables = record["tables"].as_array().unwrap();
    assert_eq!(tables.len(), 3, "{record}");
    assert_eq!(tables[0]["name"], "items");
    assert_eq!(tables[0]["rows"], 2000);
    // The rows in the dump's own INSERTs agree with the server's count.
    for t in tables {
        assert_eq!(t["dump_rows"], t["rows"], "{record}");
    }
    assert!(
        tables[0]["checksum"]
            .as_str()
            .unwrap()
            .parse::<u64>()
            .is_ok()
    );
    let test = &all[1];
    assert_eq!(test["outcome"], "succeeded");
    let v = verification(test).join("\n");
    assert!(v.contains("3 of 3 tables match"), "{v}");
    assert!(v.contains("over 4 client sessions"), "{v}");
    assert!(v.contains("dropped"), "{v}");
    // One session: the dump as it is, as `mariadb DB < dump.sql` reads it.
    let out = run(&r, &["restore-test-one"]);
    assert!(out.status.success(), "{}", stdout(&out));
    let v = verification(&last_end(&r)).join("\n");
    assert!(v.contains("3 of 3 tables match"), "{v}");
    assert!(
        v.lines().any(|l| l.ends_with("over 1 client session")),
        "{v}"
    );
    assert!(v.contains("dropped"), "{v}");
    let left = db.root_sql("SHOW DATABASES LIKE 'sopkit_restore%'");
    assert!(left.trim().is_empty(), "scratch databases left: {left}");
    evidence_clean(&r, MARIADB_PASSWORD);
    // The restore-test log the policies ask for.
    let log = r.sopkit(&["evidence", "log", "--step", "restore-test"]);
    assert!(stdout(&log).contains("restore-test"), "{}", stdout(&log));

    // A restored table whose checksum differs from the record fails, with its rows counted.
    let original = std::fs::read(record_file).unwrap();
    let mut edited = record.clone();
    edited["tables"][0]["checksum"] = serde_json::json!("12345");
    // Named by its step, an artifact edited after the run recorded it is not used at all.
    std::fs::write(record_file, serde_json::to_vec_pretty(&edited).unwrap()).unwrap();
    let out = run(&r, &["restore-test"]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let v = verification(&last_end(&r)).join("\n");
    assert!(v.contains("changed since its run recorded it"), "{v}");
    let (out, v) = restore_test_with(&r, record_file, &edited);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(
        v.contains("FAILED: table items: 2000 rows, checksum ")
            && v.contains("the dump recorded 2000 rows, checksum 12345"),
        "{v}"
    );
    std::fs::write(record_file, &original).unwrap();

    // A table that changed during the dump has no checksum to compare, but the rows of the
    // dump itself are compared: a restore that lost one would fail.
    let mut edited = record.clone();
    edited["tables"][0]["stable"] = serde_json::json!(false);
    let (out, v) = restore_test_with(&r, record_file, &edited);
    assert!(out.status.success(), "{}{v}", stdout(&out));
    assert!(
        v.contains("items restored with the 2000 rows of the dump"),
        "{v}"
    );
    edited["tables"][0]["dump_rows"] = serde_json::json!(2001);
    let (out, v) = restore_test_with(&r, record_file, &edited);
    assert_eq!(out.status.code(), Some(1), "{}{v}", stdout(&out));
    assert!(
        v.contains("FAILED: table items: 2000 rows after the restore; the dump holds 2001"),
        "{v}"
    );
    std::fs::write(record_file, &original).unwrap();

    // A dump that ends right after its last INSERT, without the `UNLOCK TABLES`, `ALTER
    // TABLE` and view definitions that follow it, still restores every row.
    let dump_file = names.iter().find(|n| n.ends_with(".sql.zst")).unwrap();
    let packed = std::fs::read(dump_file).unwrap();
    let sql = String::from_utf8(zstd::decode_all(&packed[..]).unwrap()).unwrap();
    let lines: Vec<&str> = sql.lines().collect();
    // `orders` is the last table dumped (the procedure's INSERT comes later, in a DELIMITER
    // section), and its rows fit one INSERT.
    let locked = lines
        .iter()
        .position(|l| *l == "LOCK TABLES `orders` WRITE;")
        .expect("the dump locks orders");
    let last_insert = locked
        + lines[locked..]
            .iter()
            .position(|l| l.starts_with("INSERT INTO"))
            .expect("the dump inserts rows");
    // Its rows follow on lines of their own; the statement ends at the first `;`.
    let end = last_insert
        + lines[last_insert..]
            .iter()
            .position(|l| l.ends_with(';'))
            .expect("the INSERT ends");
    let unlocked: String = lines[..=end]
        .iter()
        .filter(|l| !l.starts_with("LOCK TABLES") && !l.starts_with("UNLOCK TABLES"))
        .filter(|l| !l.contains("ENABLE KEYS") && !l.contains("DISABLE KEYS"))
        .map(|l| format!("{l}\n"))
        .collect();
    assert!(unlocked.len() < sql.len(), "nothing was cut from the dump");
    let (out, v) = restore_test_of_sql(&r, dump_file, record_file, &record, &unlocked);
    assert!(out.status.success(), "{}{v}", stdout(&out));
    assert!(v.contains("3 of 3 tables match"), "{v}");

    // A statement the server refuses in the middle of the rows stops the restore, whichever
    // session it reached, and the test fails with the client's error.
    let bad = sql.replacen(
        "INSERT INTO `log` VALUES",
        "INSERT INTO `log` VALUES (1, 'x'",
        2,
    );
    let bad = bad.replacen(
        "INSERT INTO `log` VALUES (1, 'x'",
        "INSERT INTO `log` VALUES",
        1,
    );
    assert_ne!(bad, sql);
    let (out, v) = restore_test_of_sql(&r, dump_file, record_file, &record, &bad);
    assert_eq!(out.status.code(), Some(1), "{}{v}", stdout(&out));
    assert!(
        v.contains(" of 4) could not load the dump") && v.contains("ERROR"),
        "{v}"
    );
    let left = db.root_sql("SHOW DATABASES LIKE 'sopkit_restore%'");
    assert!(left.trim().is_empty(), "scratch databases left: {left}");
    std::fs::write(dump_file, &packed).unwrap();
    std::fs::write(record_file, &original).unwrap();

    // A damaged dump fails its restore test, and no scratch database is left.
    let mut bytes = std::fs::read(dump_file).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x40;
    std::fs::write(dump_file, &bytes).unwrap();
    let out = run(&r, &["restore-test"]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let end = last_end(&r);
    assert_eq!(end["outcome"], "failed");
    // Its hash differs from the evidence record's: sopkit refuses it before the step starts,
    // so nothing of it reaches the server.
    assert!(
        verification(&end)
            .join("\n")
            .contains("changed since its run recorded it"),
        "{end}"
    );
    // Named by path, the same dump meets restore-test's own check against the dump's record.
    let original_record: serde_json::Value = serde_json::from_slice(&original).unwrap();
    let (out, v) = restore_test_with(&r, record_file, &original_record);
    assert_eq!(out.status.code(), Some(1), "{}{v}", stdout(&out));
    assert!(v.contains("was not loaded"), "{v}");
    let left = db.root_sql("SHOW DATABASES LIKE 'sopkit_restore%'");
    assert!(left.trim().is_empty(), "scratch databases left: {left}");
}

#[test]
fn a_wrong_password_or_a_dead_server_fails_without_leaving_a_dump() {
    let mut db = services::mariadb();
    seed_shop(&db);
    let r = repo_with(&db_target(&db), &sop(DUMP_STEPS));
    let out = Command::new(crate::support::sopkit_bin())
        .args(["run", "OPS-100", "--allow-draft", "--yes", "--step", "dump"])
        .env("APP_DB_PASSWORD", "not-the-password-91")
        .current_dir(r.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("Access denied"), "{}", stderr(&out));
    assert_eq!(last_end(&r)["outcome"], "failed");
    assert!(files(&r.path().join("dumps")).is_empty());
    evidence_clean(&r, "not-the-password-91");

    db.stop();
    let out = run(&r, &["dump"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("Can't connect"), "{}", stderr(&out));
    assert_eq!(last_end(&r)["outcome"], "failed");
    assert!(files(&r.path().join("dumps")).is_empty());
}

#[test]
fn a_full_disk_fails_the_dump_and_leaves_nothing_half_written() {
    let db = services::mariadb();
    seed_shop(&db);
    let r = repo_with(&db_target(&db), &sop(DUMP_STEPS));
    let dumps = r.path().join("dumps");
    std::fs::create_dir_all(&dumps).unwrap();
    let mount = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=16k", "tmpfs"])
        .arg(&dumps)
        .output()
        .unwrap();
    assert!(
        mount.status.success(),
        "cannot mount a small tmpfs (the tests run as root): {}",
        String::from_utf8_lossy(&mount.stderr)
    );
    struct Unmount(PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg(&self.0).status();
        }
    }
    let _guard = Unmount(dumps.clone());
    let out = run(&r, &["dump"]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(
        stderr(&out).contains("No space left on device"),
        "{}",
        stderr(&out)
    );
    assert_eq!(last_end(&r)["outcome"], "failed");
    assert!(files(&dumps).is_empty(), "{:?}", files(&dumps));
}
