//! `upload`, `verify`, `restore` and `prune` of objects against a real moto S3 server on
//! 127.0.0.1, through the real `sopkit` binary; buckets and tampering through the AWS SDK.

use std::path::PathBuf;
use std::process::{Command, Output};

use aws_sdk_s3::Client;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{
    BucketVersioningStatus, ObjectLockLegalHold, ObjectLockLegalHoldStatus, VersioningConfiguration,
};

use crate::services::{self, Server};
use crate::support::{Repo, end_records, files, sha256, stderr, stdout, verification};

const ACCESS: &str = "test-access-key-XYZ";
const SECRET: &str = "test-secret-key-XYZ-do-not-log";
const SOP_ID: &str = "OPS-S3";

/// A moto server and an SDK client for it.
struct S3 {
    server: Server,
    client: Client,
    rt: tokio::runtime::Runtime,
}

impl S3 {
    fn start() -> S3 {
        let server = services::moto();
        let conf = aws_sdk_s3::Config::builder()
            .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
            .region(aws_sdk_s3::config::Region::new("us-east-1"))
            .credentials_provider(aws_sdk_s3::config::Credentials::new(
                ACCESS, SECRET, None, None, "test",
            ))
            .endpoint_url(server.endpoint())
            .force_path_style(true)
            .build();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        S3 {
            server,
            client: Client::from_conf(conf),
            rt,
        }
    }

    /// A bucket: versioned or not, with object lock or not.
    fn bucket(&self, name: &str, versioned: bool, lock: bool) {
        self.rt.block_on(async {
            self.client
                .create_bucket()
                .bucket(name)
                .object_lock_enabled_for_bucket(lock)
                .send()
                .await
                .unwrap();
            if versioned {
                self.client
                    .put_bucket_versioning()
                    .bucket(name)
                    .versioning_configuration(
                        VersioningConfiguration::builder()
                            .status(BucketVersioningStatus::Enabled)
                            .build(),
                    )
                    .send()
                    .await
                    .unwrap();
            }
        });
    }

    /// `(version id, is latest)` of every version of `key`, newest first.
    fn versions(&self, bucket: &str, key: &str) -> Vec<(String, bool)> {
        self.rt.block_on(async {
            let out = self
                .client
                .list_object_versions()
                .bucket(bucket)
                .prefix(key)
                .send()
                .await
                .unwrap();
            out.versions()
                .iter()
                .filter(|v| v.key() == Some(key))
                .map(|v| {
                    (
                        v.version_id().unwrap().to_string(),
                        v.is_latest().unwrap_or(false),
                    )
                })
                .collect()
        })
    }

    fn get(&self, bucket: &str, key: &str, version: Option<&str>) -> Vec<u8> {
        self.rt.block_on(async {
            let out = self
                .client
                .get_object()
                .bucket(bucket)
                .key(key)
                .set_version_id(version.map(str::to_string))
                .send()
                .await
                .unwrap();
            out.body.collect().await.unwrap().into_bytes().to_vec()
        })
    }

    /// A new version of `key` with `bytes` but the metadata of the current one: what a
    /// tampering or a silent corruption on the server looks like.
    fn corrupt(&self, bucket: &str, key: &str, bytes: &[u8]) -> String {
        self.rt.block_on(async {
            let head = self
                .client
                .head_object()
                .bucket(bucket)
                .key(key)
                .send()
                .await
                .unwrap();
            let out = self
                .client
                .put_object()
                .bucket(bucket)
                .key(key)
                .set_metadata(head.metadata().cloned())
                .body(ByteStream::from(bytes.to_vec()))
                .send()
                .await
                .unwrap();
            out.version_id().unwrap().to_string()
        })
    }
}

/// Deterministic bytes that do not compress (a xorshift stream).
fn bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// A repository with the target `offsite` (bucket `bucket` on `endpoint`) and an SOP whose
/// steps are `steps` (Markdown), committed.
fn repo(endpoint: &str, bucket: &str, steps: &str) -> Repo {
    let r = Repo::empty();
    r.write(
        "sopkit.toml",
        &format!(
            "[targets.offsite]\nkind = \"s3\"\nendpoint = \"{endpoint}\"\nregion = \"us-east-1\"\nbucket = \"{bucket}\"\nprefix = \"backups\"\npath_style = true\naccess_key_env = \"S3_ACCESS_KEY\"\nsecret_key_env = \"S3_SECRET_KEY\"\nmedium = \"object-storage\"\nlocation = \"off-site\"\n"
        ),
    );
    r.write(
        "procedures/OPS-S3-offsite.md",
        &format!("---\nid: {SOP_ID}\ntitle: Off-site copies\n---\n\n# Off-site copies\n\n{steps}"),
    );
    r.commit("s3 fixture");
    r
}

/// A ```` ```sopkit ```` step block.
fn step(id: &str, action: &str, yaml: &str) -> String {
    format!("```sopkit {{step={id} action={action}}}\n{yaml}```\n\n")
}

/// `sopkit run OPS-S3 --allow-draft --yes --step STEP` with the credentials set, plus `env`.
fn run(r: &Repo, step: &str, env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(crate::support::sopkit_bin());
    cmd.args(["run", SOP_ID, "--allow-draft", "--yes", "--step", step])
        .env("S3_ACCESS_KEY", ACCESS)
        .env("S3_SECRET_KEY", SECRET)
        .env_remove("SOPKIT_TEST_NOW")
        .current_dir(r.path());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

/// The version id in an `ok: uploaded s3://... version V (...)` line.
fn uploaded_version(lines: &[String]) -> String {
    let line = lines
        .iter()
        .find(|l| l.starts_with("ok: uploaded "))
        .unwrap_or_else(|| panic!("no upload line in {lines:?}"));
    line.split(" version ")
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .unwrap()
        .to_string()
}

/// `sopkit evidence verify` passes and no file under `evidence/` holds a credential.
fn evidence_is_sound(r: &Repo) {
    let v = r.sopkit(&["evidence", "verify"]);
    assert!(v.status.success(), "{}{}", stdout(&v), stderr(&v));
    let all = files(&r.path().join("evidence"));
    assert!(!all.is_empty());
    for f in all {
        let text = String::from_utf8_lossy(&std::fs::read(&f).unwrap()).into_owned();
        assert!(
            !text.contains(SECRET) && !text.contains(ACCESS),
            "a credential reached {}",
            f.display()
        );
    }
}

#[test]
fn a_multipart_upload_records_its_version_and_every_version_verifies() {
    let s3 = S3::start();
    s3.bucket("vault", true, false);
    let steps = step(
        "send",
        "upload",
        "source: data/big.bin\ntarget: offsite\nkey: db/big.bin\npart_size: 5MiB\n",
    ) + &step(
        "check",
        "verify",
        "target: offsite\nkey: db/big.bin\nall_versions: true\n",
    );
    let r = repo(&s3.server.endpoint(), "vault", &steps);
    // 11 MiB at 5 MiB parts: three parts, the last one short.
    let first = bytes(11 << 20, 7);
    r.write_bytes("data/big.bin", &first);
    let out = run(&r, "send", &[]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert!(!stdout(&out).contains(SECRET) && !stderr(&out).contains(SECRET));
    let rec = &end_records(&r)[0];
    assert_eq!(rec["outcome"], "succeeded");
    let lines = verification(rec);
    let v1 = uploaded_version(&lines);
    let listed = s3.versions("vault", "backups/db/big.bin");
    assert_eq!(listed, vec![(v1.clone(), true)], "{lines:?}");
    assert!(
        lines[0].contains(&format!(
            "s3://vault/backups/db/big.bin version {v1} ({} bytes, sha256 {})",
            first.len(),
            sha256(&first)
        )),
        "{lines:?}"
    );
    assert!(
        !lines.iter().any(|l| l.starts_with("warning:")),
        "{lines:?}"
    );
    // The object is whole, went up in three parts, and carries its SHA-256.
    assert_eq!(s3.get("vault", "backups/db/big.bin", Some(&v1)), first);
    let head = s3.rt.block_on(
        s3.client
            .head_object()
            .bucket("vault")
            .key("backups/db/big.bin")
            .send(),
    );
    let head = head.unwrap();
    assert_eq!(
        head.metadata().unwrap().get("sopkit-sha256").unwrap(),
        &sha256(&first)
    );
    assert!(
        head.e_tag().unwrap().trim_matches('"').ends_with("-3"),
        "{head:?}"
    );

    // A second version, then both verified.
    let second = bytes(6 << 20, 8);
    r.write_bytes("data/big.bin", &second);
    let out = run(&r, "send", &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let v2 = uploaded_version(&verification(&end_records(&r)[1]));
    assert_ne!(v1, v2);
    let out = run(&r, "check", &[]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    let lines = verification(&end_records(&r)[2]);
    assert_eq!(lines.len(), 2, "{lines:?}");
    for (v, content) in [(&v1, &first), (&v2, &second)] {
        assert!(
            lines.iter().any(|l| l.starts_with("ok: ")
                && l.contains(&format!("version {v} "))
                && l.contains(&sha256(content))),
            "{v} not verified: {lines:?}"
        );
    }
    evidence_is_sound(&r);
}

#[test]
fn a_corrupted_version_fails_verify_and_restore_and_leaves_a_failed_record() {
    let s3 = S3::start();
    s3.bucket("vault", true, false);
    let steps = step(
        "send",
        "upload",
        "source: dump.sql\ntarget: offsite\nkey: db/dump.sql\n",
    ) + &step("check", "verify", "target: offsite\nkey: db/dump.sql\n")
        + &step(
            "check-all",
            "verify",
            "target: offsite\nkey: db/dump.sql\nall_versions: true\n",
        )
        + &step(
            "bring-back",
            "restore",
            "target: offsite\nkey: db/dump.sql\ndest: restored/\n",
        );
    let r = repo(&s3.server.endpoint(), "vault", &steps);
    r.write("dump.sql", "CREATE TABLE t (id int);\n");
    assert!(run(&r, "send", &[]).status.success());
    assert!(run(&r, "check", &[]).status.success());
    let bad = s3.corrupt("vault", "backups/db/dump.sql", b"DROP TABLE t;\n");

    for step in ["check", "check-all"] {
        let out = run(&r, step, &[]);
        assert_eq!(out.status.code(), Some(1), "{step}: {}", stdout(&out));
        assert!(
            stderr(&out).contains(&format!("s3://vault/backups/db/dump.sql version {bad}")),
            "{}",
            stderr(&out)
        );
        let rec = end_records(&r).pop().unwrap();
        assert_eq!(rec["outcome"], "failed");
        let lines = verification(&rec);
        assert!(
            lines[0].starts_with("FAILED:")
                && lines[0].contains(&bad)
                && lines[0].contains("sopkit-sha256"),
            "{lines:?}"
        );
    }
    // A restore of the corrupted version refuses, and leaves nothing behind.
    let out = run(&r, "bring-back", &[]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(
        stderr(&out).contains("nothing was restored"),
        "{}",
        stderr(&out)
    );
    let left: Vec<PathBuf> = files(&r.path().join("restored"));
    assert!(left.is_empty(), "{left:?}");
    let rec = end_records(&r).pop().unwrap();
    assert_eq!(rec["outcome"], "failed");
    assert!(
        !rec["files"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["role"] == "artifact"),
        "{rec}"
    );
    evidence_is_sound(&r);
}

#[test]
fn restore_brings_back_an_earlier_version_byte_for_byte() {
    let s3 = S3::start();
    s3.bucket("vault", true, false);
    let steps = step(
        "send",
        "upload",
        "source: dump.sql\ntarget: offsite\nkey: db/dump.sql\n",
    ) + &step(
        "previous",
        "restore",
        "target: offsite\nkey: db/dump.sql\nversions_back: 1\ndest: restored/\n",
    ) + &step(
        "by-id",
        "restore",
        "target: offsite\nkey: db/dump.sql\nversion: ${WANT}\ndest: restored/exact.sql\n",
    );
    let r = repo(&s3.server.endpoint(), "vault", &steps);
    let old = "INSERT INTO t VALUES (1);\n";
    let new = "INSERT INTO t VALUES (1), (2);\n";
    r.write("dump.sql", old);
    assert!(run(&r, "send", &[]).status.success());
    let v_old = uploaded_version(&verification(&end_records(&r)[0]));
    r.write("dump.sql", new);
    assert!(run(&r, "send", &[]).status.success());

    let out = run(&r, "previous", &[]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert_eq!(r.read("restored/dump.sql"), old);
    let rec = end_records(&r).pop().unwrap();
    let art = rec["files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["role"] == "artifact")
        .unwrap_or_else(|| panic!("no artifact in {rec}"))
        .clone();
    assert_eq!(art["sha256"], sha256(old.as_bytes()));
    assert!(
        verification(&rec)[0].contains(&format!("version {v_old} ")),
        "{rec}"
    );

    let out = run(&r, "by-id", &[("WANT", &v_old)]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(r.read("restored/exact.sql"), old);
    // No temporary file stays beside the destination.
    let names: Vec<PathBuf> = files(&r.path().join("restored"));
    assert_eq!(names.len(), 2, "{names:?}");
    evidence_is_sound(&r);
}

#[test]
fn prune_deletes_old_versions_but_never_one_under_legal_hold_nor_the_latest() {
    let s3 = S3::start();
    s3.bucket("locked", true, true);
    let steps = step(
        "send",
        "upload",
        "source: dump.sql\ntarget: offsite\nkey: db/dump.sql\n",
    ) + &step(
        "plan",
        "prune",
        "target: offsite\nretention: 35d\ndry_run: true\n",
    ) + &step("prune", "prune", "target: offsite\nretention: 35d\n");
    let r = repo(&s3.server.endpoint(), "locked", &steps);
    for i in 1..=4 {
        r.write("dump.sql", &format!("backup number {i}\n"));
        let out = run(&r, "send", &[]);
        assert!(out.status.success(), "{}", stderr(&out));
    }
    let key = "backups/db/dump.sql";
    let versions = s3.versions("locked", key);
    assert_eq!(versions.len(), 4);
    // Newest first: versions[3] is the first backup, versions[2] the second.
    let held = versions[2].0.clone();
    s3.rt
        .block_on(
            s3.client
                .put_object_legal_hold()
                .bucket("locked")
                .key(key)
                .version_id(&held)
                .legal_hold(
                    ObjectLockLegalHold::builder()
                        .status(ObjectLockLegalHoldStatus::On)
                        .build(),
                )
                .send(),
        )
        .unwrap();
    // Now, every backup is a few seconds old: nothing is past retention.
    let out = run(&r, "prune", &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(s3.versions("locked", key).len(), 4);

    // A hundred days on.
    let later = time::OffsetDateTime::now_utc() + time::Duration::days(100);
    let later = later
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let out = run(&r, "plan", &[("SOPKIT_TEST_NOW", &later)]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains(&format!("would keep {key} version {held}: legal hold")),
        "{}",
        stdout(&out)
    );
    assert_eq!(s3.versions("locked", key).len(), 4, "a dry run deleted");

    // What `sopkit run --dry-run` shows, from the library: with a zero retention the two
    // old versions go, the held one and the latest stay. (moto takes any credentials, so
    // the target names two variables this process has anyway.)
    let target: sopkit::config::Target = toml::from_str(&format!(
        "kind = \"s3\"\nendpoint = \"{}\"\nbucket = \"locked\"\nprefix = \"backups\"\npath_style = true\naccess_key_env = \"PATH\"\nsecret_key_env = \"PATH\"\n",
        s3.server.endpoint()
    ))
    .unwrap();
    let targets = std::collections::BTreeMap::from([("offsite".to_string(), target)]);
    let Ok(sopkit::corpus::step::args::Arguments::Prune(args)) =
        sopkit::corpus::step::args::Arguments::parse("prune", "target: offsite\nretention: 0s\n")
    else {
        panic!("prune arguments")
    };
    let lines = sopkit::run::action::prune_objects::describe_prune(&args, &targets).unwrap();
    assert_eq!(lines.len(), 4, "{lines:?}");
    assert!(
        lines.contains(&format!("would keep {key} version {held}: legal hold")),
        "{lines:?}"
    );
    assert!(
        lines.contains(&format!(
            "would keep {key} version {}: latest version of the key",
            versions[0].0
        )),
        "{lines:?}"
    );
    for gone in [&versions[1].0, &versions[3].0] {
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with(&format!("would delete {key} version {gone} (written "))),
            "{lines:?}"
        );
    }
    assert_eq!(
        s3.versions("locked", key).len(),
        4,
        "describe_prune deleted"
    );

    let out = run(&r, "prune", &[("SOPKIT_TEST_NOW", &later)]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    let left = s3.versions("locked", key);
    let ids: Vec<&str> = left.iter().map(|v| v.0.as_str()).collect();
    assert_eq!(
        ids,
        [versions[0].0.as_str(), held.as_str()],
        "the latest and the held one stay"
    );
    assert!(left[0].1, "the latest is still the latest");
    let lines = verification(&end_records(&r).pop().unwrap());
    for gone in [&versions[1].0, &versions[3].0] {
        assert!(
            lines.contains(&format!("ok: deleted {key} version {gone}")),
            "{lines:?}"
        );
    }
    assert!(
        lines.contains(&"ok: 2 kept, 2 deleted".to_string()),
        "{lines:?}"
    );
    evidence_is_sound(&r);
}

#[test]
fn an_unversioned_bucket_warns_and_a_folder_goes_under_the_key_prefix() {
    let s3 = S3::start();
    s3.bucket("flat", false, false);
    let steps = step(
        "send",
        "upload",
        "source: out\ntarget: offsite\nkey: nightly\n",
    ) + &step("check", "verify", "target: offsite\nkey: nightly\n")
        + &step(
            "fetch",
            "restore",
            "target: offsite\nkey: nightly\ndest: restored/\n",
        );
    let r = repo(&s3.server.endpoint(), "flat", &steps);
    r.write("out/a.txt", "alpha\n");
    r.write("out/sub/b.txt", "beta\n");
    let out = run(&r, "send", &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("warning: bucket flat (target `offsite`) has no versioning enabled"),
        "{}",
        stdout(&out)
    );
    let lines = verification(&end_records(&r)[0]);
    assert!(lines[0].starts_with("warning: "), "{lines:?}");
    assert!(
        lines.contains(&format!(
            "ok: uploaded s3://flat/backups/nightly/sub/b.txt version null (5 bytes, sha256 {})",
            sha256(b"beta\n")
        )),
        "{lines:?}"
    );
    assert_eq!(s3.get("flat", "backups/nightly/a.txt", None), b"alpha\n");
    // Where each file went, as the operator sees it.
    assert!(
        stdout(&out).contains("s3://flat/backups/nightly/sub/b.txt"),
        "{}",
        stdout(&out)
    );
    // verify and restore take the key the upload took: here a prefix of two objects.
    let out = run(&r, "check", &[]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    let lines = verification(&end_records(&r)[1]);
    assert!(
        lines
            .iter()
            .filter(|l| l.starts_with("ok: s3://flat/backups/nightly/"))
            .count()
            == 2,
        "{lines:?}"
    );
    let out = run(&r, "fetch", &[]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert_eq!(
        std::fs::read(r.path().join("restored/a.txt")).unwrap(),
        b"alpha\n"
    );
    assert_eq!(
        std::fs::read(r.path().join("restored/sub/b.txt")).unwrap(),
        b"beta\n"
    );
    evidence_is_sound(&r);
}

#[test]
fn a_stopped_server_a_wrong_bucket_and_missing_credentials_fail_clearly() {
    let mut s3 = S3::start();
    s3.bucket("vault", true, false);
    let endpoint = s3.server.endpoint();
    let steps = step(
        "send",
        "upload",
        "source: dump.sql\ntarget: offsite\nkey: db/dump.sql\n",
    );

    // Credentials come only from the environment variables the target names.
    let r = repo(&endpoint, "vault", &steps);
    r.write("dump.sql", "data\n");
    let mut cmd = Command::new(crate::support::sopkit_bin());
    let out = cmd
        .args(["run", SOP_ID, "--allow-draft", "--yes", "--step", "send"])
        .env("S3_ACCESS_KEY", ACCESS)
        .env_remove("S3_SECRET_KEY")
        .current_dir(r.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains(
            "environment variable S3_SECRET_KEY (secret_key_env of target `offsite`) is not set"
        ),
        "{}",
        stderr(&out)
    );

    // A bucket that does not exist.
    let wrong = repo(&endpoint, "no-such-bucket", &steps);
    wrong.write("dump.sql", "data\n");
    let out = run(&wrong, "send", &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("NoSuchBucket"), "{}", stderr(&out));
    assert_eq!(end_records(&wrong)[0]["outcome"], "failed");

    // The server goes away.
    s3.server.stop();
    let out = run(&r, "send", &[]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let err = stderr(&out);
    assert!(
        err.contains(&format!("cannot reach {endpoint} (target `offsite`)"))
            && err.contains("onnection refused"),
        "{err}"
    );
    assert!(!err.contains(SECRET) && !stdout(&out).contains(SECRET));
    let recs = end_records(&r);
    let last = recs.last().unwrap();
    assert_eq!(last["outcome"], "failed");
    assert!(
        verification(last)[0].starts_with("FAILED: ")
            && verification(last)[0].contains("cannot reach"),
        "{last}"
    );
    evidence_is_sound(&r);
    evidence_is_sound(&wrong);
}
