//! Evidence records signed by their operator and judged against the policy timeline
//! (issue 22): attributable runs, refused unsigned or unqualified runs, forged records that
//! never count. Real SSH keys, real git, real `sopkit run`.

use crate::approvals::{
    Keys, approve_ok, author_commit, read_record, rewrite_chain, sign_as, sign_record_with,
    signed_fixture,
};
use std::path::Path;

use crate::support::{Repo, SOP, files, stderr, stdout};

fn run(r: &Repo) -> std::process::Output {
    r.sopkit(&["run", "QA-001", "--allow-draft", "--yes"])
}

fn evidence_verify(r: &Repo) -> (Option<i32>, String) {
    let out = r.sopkit(&["evidence", "verify"]);
    (out.status.code(), stdout(&out) + &stderr(&out))
}

/// Every file of the ledger whose name ends with `suffix`.
fn ledger_files(r: &Repo, suffix: &str) -> Vec<std::path::PathBuf> {
    let mut f: Vec<_> = files(&r.path().join("evidence"))
        .into_iter()
        .filter(|p| p.to_string_lossy().ends_with(suffix))
        .collect();
    f.sort();
    f
}

#[test]
fn a_run_is_signed_by_its_operator_and_a_rewritten_record_no_longer_counts() {
    let keys = Keys::new();
    let (r, _ann, bob) = signed_fixture(&keys);
    sign_as(&r, "bob", &bob);
    let out = run(&r);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    let records = ledger_files(&r, ".json");
    assert_eq!(records.len(), 2, "a start and an end record");
    for rec in &records {
        let sig = std::fs::read_to_string(format!("{}.sig", rec.display())).unwrap();
        assert!(sig.starts_with("-----BEGIN SSH SIGNATURE-----"), "{sig}");
    }
    let (code, said) = evidence_verify(&r);
    assert_eq!(code, Some(0), "{said}");
    assert!(said.contains("2 records by Bob Example (bob)"), "{said}");
    // The two good signatures are remembered for the next run (which must still find the
    // rewrite below): a sealed file of one 32-byte entry each.
    let memo = std::fs::read(r.path().join(".git/sopkit-cache/signatures.bin")).unwrap();
    let body = &memo[memo.iter().position(|&b| b == b'\n').unwrap() + 1..];
    assert_eq!(body.len(), 64, "two entries");
    let log = stdout(&r.sopkit(&["evidence", "log", "--format", "csv"]));
    assert!(log.contains(",Bob Example (bob),"), "{log}");

    // Rewritten to name another operator, digest recomputed as an insider would: the chain
    // still links, but bob's signature no longer covers it.
    let end = &records[1];
    let mut rec: sopkit::evidence::Record =
        serde_json::from_slice(&std::fs::read(end).unwrap()).unwrap();
    rec.operator = "carol@example.com".into();
    std::fs::write(end, rec.to_bytes()).unwrap();
    let (code, said) = evidence_verify(&r);
    assert_eq!(code, Some(1), "{said}");
    assert!(
        said.contains("000002.json: cannot count: it has a signature that is not valid"),
        "{said}"
    );
    assert!(said.contains("1 records by Bob Example (bob)"), "{said}");
    let log = stdout(&r.sopkit(&["evidence", "log", "--format", "csv"]));
    assert!(
        log.contains(",NOT ATTRIBUTABLE,")
            && log.contains("its end record has a signature that is not valid"),
        "{log}"
    );
    // Its signature removed as well: unsigned, from a writer that must sign.
    std::fs::remove_file(format!("{}.sig", end.display())).unwrap();
    let (code, said) = evidence_verify(&r);
    assert_eq!(code, Some(1), "{said}");
    assert!(said.contains("is not signed"), "{said}");
}

#[test]
fn a_run_without_a_signing_key_is_refused_unless_an_admin_allowed_its_writer() {
    let keys = Keys::new();
    let (r, ann, bob) = signed_fixture(&keys);
    let marker = r.path().join("ran");
    r.replace(SOP, "echo backup", &format!("touch {}", marker.display()));
    r.git(&["add", "-A"]);
    author_commit(&r, "bob", "mark the run", Some(&bob));
    let out = run(&r);
    assert_eq!(out.status.code(), Some(2), "{}", stdout(&out));
    assert!(stderr(&out).contains("must be signed"), "{}", stderr(&out));
    assert!(!marker.exists(), "the step never started");
    assert!(ledger_files(&r, ".json").is_empty(), "and wrote no record");

    // Allowed by someone who is not an admin: still refused.
    r.append("sopkit.toml", "\n[evidence]\nunsigned_writers = [\"*\"]\n");
    r.git(&["add", "-A"]);
    author_commit(&r, "bob", "let me run unsigned", Some(&bob));
    let out = run(&r);
    assert_eq!(out.status.code(), Some(2), "{}", stdout(&out));
    assert!(!marker.exists());

    // Signed by an admin: the run goes ahead, unattributed.
    r.append("sopkit.toml", "\n");
    r.git(&["add", "-A"]);
    author_commit(
        &r,
        "ann",
        "headless jobs may write unsigned records",
        Some(&ann),
    );
    let out = run(&r);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert!(marker.exists());
    assert!(ledger_files(&r, ".sig").is_empty());
    let (code, said) = evidence_verify(&r);
    assert_eq!(code, Some(0), "{said}");
    assert!(said.contains("2 records by unattributed"), "{said}");
}

#[test]
fn a_step_that_names_a_role_runs_only_for_a_holder_and_a_forged_holder_is_found() {
    let keys = Keys::new();
    let (r, ann, bob) = signed_fixture(&keys);
    let marker = r.path().join("ran");
    r.replace(
        SOP,
        "```sh {step=backup target=backups}\necho backup",
        &format!(
            "```sh {{step=backup target=backups role=qa-lead}}\ntouch {}",
            marker.display()
        ),
    );
    r.git(&["add", "-A"]);
    author_commit(&r, "bob", "only the QA lead backs up", Some(&bob));
    assert!(
        r.sopkit(&["check"]).status.success(),
        "{}",
        stdout(&r.sopkit(&["check"]))
    );
    // A role nobody defined is a finding of `check`.
    r.replace(SOP, "role=qa-lead", "role=qa-leed");
    let said = stdout(&r.sopkit(&["check", "--format", "short"]));
    assert!(
        said.contains("undefined-role") && said.contains("step `backup` requires role `qa-leed`"),
        "{said}"
    );
    r.replace(SOP, "role=qa-leed", "role=qa-lead");

    // bob holds `operator`, not `qa-lead`: refused before the step starts.
    sign_as(&r, "bob", &bob);
    let out = run(&r);
    assert_eq!(out.status.code(), Some(2), "{}", stdout(&out));
    assert!(
        stderr(&out).contains("did not hold role `qa-lead`"),
        "{}",
        stderr(&out)
    );
    assert!(!marker.exists());
    assert!(ledger_files(&r, ".json").is_empty());

    // ann holds it; she approves the SOP (bob wrote it) and runs it as approved.
    approve_ok(&r, "ann", &ann);
    let out = r.sopkit(&["run", "QA-001", "--yes"]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    let (code, said) = evidence_verify(&r);
    assert_eq!(code, Some(0), "{said}");
    assert!(said.contains("2 records by Ann Example (ann)"), "{said}");
    let out = r.sopkit(&["status", "--format", "json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        v["slos"][0]["last_success_by"], "Ann Example (ann), role qa-lead",
        "{v}"
    );

    // A whole chain rewritten by bob: the role left out, every `prev` and digest recomputed,
    // every record signed with bob's own key. It links and its signatures hold, but the SOP
    // still says who must run the step.
    rewrite_chain(&ledger_files(&r, ".json"), &bob, |rec| {
        assert_eq!(rec.role.as_deref(), Some("qa-lead"));
        rec.role = None;
        rec.operator = "bob".into();
    });
    let (code, said) = evidence_verify(&r);
    assert_eq!(code, Some(1), "{said}");
    assert!(!said.contains("changed, replaced or reordered"), "{said}");
    assert!(
        said.contains("does not name role `qa-lead`, which step `backup` of QA-001 requires"),
        "{said}"
    );
    let status = r.sopkit(&["status", "--format", "json"]);
    let v: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(v["ledger"]["ok"], false, "{v}");
}

#[test]
fn committed_evidence_is_append_only_and_the_commit_that_broke_it_is_named() {
    let keys = Keys::new();
    let (r, _ann, bob) = signed_fixture(&keys);
    sign_as(&r, "bob", &bob);
    for _ in 0..2 {
        let out = run(&r);
        assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    }
    r.git(&["add", "-A"]);
    author_commit(&r, "bob", "evidence of two runs", Some(&bob));
    assert_eq!(evidence_verify(&r).0, Some(0), "{}", evidence_verify(&r).1);

    // A committed record rewritten in place by its own writer, consistently: digest
    // recomputed and signed again with bob's valid key. Only git knows it changed.
    let records = ledger_files(&r, ".json");
    let last = records.last().unwrap().clone();
    let mut rec: sopkit::evidence::Record =
        serde_json::from_slice(&std::fs::read(&last).unwrap()).unwrap();
    rec.outcome = Some(sopkit::evidence::Outcome::Succeeded);
    rec.verification = vec!["all good".into()];
    std::fs::write(&last, rec.to_bytes()).unwrap();
    sign_record_with(&bob, &last);
    let (code, said) = evidence_verify(&r);
    assert_eq!(code, Some(1), "{said}");
    assert!(
        said.contains("000004.json: changed since it was committed"),
        "{said}"
    );
    r.git(&["add", "-A"]);
    let rewrite_commit = author_commit(&r, "bob", "tidy the evidence", Some(&bob));
    let (code, said) = evidence_verify(&r);
    assert_eq!(code, Some(1), "{said}");
    assert!(
        said.contains(&format!(
            "000004.json: changed by commit {} after it was committed",
            &rewrite_commit.trim()[..12]
        )),
        "{said}"
    );

    // The chain cut short: the last run's records, signatures and logs deleted and committed.
    // What is left links and verifies on its own.
    let last_run = run_of(&r, 3);
    for f in files(&r.path().join("evidence")) {
        let name = f.file_name().unwrap().to_string_lossy().into_owned();
        if name.starts_with("000003") || name.starts_with("000004") || name.contains(&last_run) {
            std::fs::remove_file(f).unwrap();
        }
    }
    r.git(&["add", "-A"]);
    author_commit(&r, "bob", "drop a run", Some(&bob));
    let cut = r.git(&["rev-parse", "HEAD"]);
    let (code, said) = evidence_verify(&r);
    assert_eq!(code, Some(1), "{said}");
    assert!(
        said.contains(&format!(
            "000003.json: removed by commit {}",
            &cut.trim()[..12]
        )),
        "{said}"
    );

    // A whole writer removed: one finding for the folder.
    std::fs::remove_dir_all(ledger_files(&r, ".json")[0].parent().unwrap()).unwrap();
    r.git(&["add", "-A"]);
    author_commit(&r, "bob", "no evidence", Some(&bob));
    let gone = r.git(&["rev-parse", "HEAD"]);
    let (code, said) = evidence_verify(&r);
    assert_eq!(code, Some(1), "{said}");
    assert!(
        said.contains(&format!(
            "writer folder removed by commit {}",
            &gone.trim()[..12]
        )),
        "{said}"
    );
    // `status` says the ledger is not intact, though no evidence folder is left at all.
    let out = r.sopkit(&["status", "--format", "json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["ledger"]["ok"], false, "{v}");
    assert!(
        v["ledger"]["problems"]
            .to_string()
            .contains("writer folder removed"),
        "{v}"
    );
}

/// The run id of record `seq` of the repository's only writer.
fn run_of(r: &Repo, seq: usize) -> String {
    let rec = &ledger_files(r, ".json")[seq - 1];
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(rec).unwrap()).unwrap();
    v["run"].as_str().unwrap().to_string()
}

#[test]
fn a_later_step_takes_artifacts_only_from_signed_records_of_the_same_revision() {
    let keys = Keys::new();
    let (r, _ann, bob) = signed_fixture(&keys);
    r.write(
        "procedures/OPS-300-ship.md",
        "---\nid: OPS-300\ntitle: Ship\n---\n\n# Ship\n\n```sopkit {step=backup action=archive}\nsource: data\ndest: backups\n```\n\n```sopkit {step=ship action=copy}\nsource: backup\ndest: offsite\n```\n",
    );
    r.write("data/a.txt", "alpha\n");
    r.git(&["add", "-A"]);
    author_commit(&r, "bob", "ship", Some(&bob));
    sign_as(&r, "bob", &bob);
    let run = |step: &str| r.sopkit(&["run", "OPS-300", "--allow-draft", "--yes", "--step", step]);
    let out = run("backup");
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    let (_, genuine) = crate::support::end_record_files(&r).pop().unwrap();
    let archive = genuine["files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"].as_str().unwrap().ends_with(".tar.zst"))
        .unwrap()["name"]
        .as_str()
        .unwrap()
        .to_string();

    // An unsigned record in a writer folder of its own, later than the genuine run, naming a
    // copy of the archive (true size and hash, under the step's `dest`).
    let forged_name = "backups/forged.tar.zst";
    std::fs::copy(r.path().join(&archive), r.path().join(forged_name)).unwrap();
    let mut rec: sopkit::evidence::Record = serde_json::from_value(genuine.clone()).unwrap();
    rec.seq = 1;
    rec.prev = None;
    rec.run = "forged-run".into();
    rec.ended = Some("2099-01-01T00:00:00Z".into());
    for f in rec.files.iter_mut().filter(|f| f.name == archive) {
        f.name = forged_name.into();
    }
    let folder = r.path().join("evidence/mallory@x");
    std::fs::create_dir_all(&folder).unwrap();
    std::fs::write(folder.join("000001.json"), rec.to_bytes()).unwrap();

    let out = run("ship");
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    let shipped: Vec<String> = files(&r.path().join("offsite"))
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    let genuine_file = Path::new(&archive).file_name().unwrap().to_string_lossy();
    assert!(shipped.contains(&genuine_file.to_string()), "{shipped:?}");
    assert!(!shipped.iter().any(|s| s.contains("forged")), "{shipped:?}");
    assert!(
        stdout(&out).contains("not intact or not attributable"),
        "the log says records were left out: {}",
        stdout(&out)
    );

    // A new revision of the SOP: the archive of the old one is not its input.
    std::fs::remove_dir_all(&folder).unwrap();
    std::fs::remove_dir_all(r.path().join("offsite")).unwrap();
    r.append("procedures/OPS-300-ship.md", "\nA new revision.\n");
    r.git(&["add", "-A"]);
    author_commit(&r, "bob", "revise", Some(&bob));
    let out = run("ship");
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(files(&r.path().join("offsite")).is_empty());
}

#[test]
fn a_record_dated_before_the_commit_it_ran_from_never_counts() {
    let keys = Keys::new();
    let (r, _ann, bob) = signed_fixture(&keys);
    sign_as(&r, "bob", &bob);
    let out = run(&r);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    // Both records moved back to 2001 by their own writer, chain and signatures redone.
    rewrite_chain(&ledger_files(&r, ".json"), &bob, |rec| {
        rec.started = "2001-01-01T00:00:00Z".into();
        if rec.ended.is_some() {
            rec.ended = Some("2001-01-01T00:01:00Z".into());
        }
    });
    let (code, said) = evidence_verify(&r);
    assert_eq!(code, Some(1), "{said}");
    assert!(said.contains("before commit"), "{said}");
    assert!(
        !said.contains("records by Bob"),
        "none of them counts: {said}"
    );
}

/// A time-stamping authority on loopback: `openssl ts -reply` behind a small HTTP server, with
/// its own CA. Stopped when dropped.
struct Tsa {
    dir: tempfile::TempDir,
    server: std::process::Child,
    url: String,
}

impl Drop for Tsa {
    fn drop(&mut self) {
        let _ = self.server.kill();
        let _ = self.server.wait();
    }
}

impl Tsa {
    fn start() -> Tsa {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let openssl = |args: &[&str]| {
            let out = std::process::Command::new("openssl")
                .args(args)
                .current_dir(d)
                .output()
                .unwrap();
            assert!(out.status.success(), "openssl {args:?}: {}", stderr(&out));
        };
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
        ];
        openssl(
            &[
                &["req", "-x509"][..],
                &ec,
                &[
                    "-keyout",
                    "ca.key",
                    "-out",
                    "ca.pem",
                    "-subj",
                    "/CN=Test TSA CA",
                    "-days",
                    "2",
                ],
            ]
            .concat(),
        );
        openssl(
            &[
                &["req"][..],
                &ec,
                &[
                    "-keyout",
                    "tsa.key",
                    "-out",
                    "tsa.csr",
                    "-subj",
                    "/CN=Test TSA",
                ],
            ]
            .concat(),
        );
        std::fs::write(
            d.join("ext.cnf"),
            "extendedKeyUsage = critical, timeStamping\nkeyUsage = critical, digitalSignature\nbasicConstraints = CA:FALSE\n",
        )
        .unwrap();
        openssl(&[
            "x509",
            "-req",
            "-in",
            "tsa.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "tsa.pem",
            "-days",
            "2",
            "-extfile",
            "ext.cnf",
        ]);
        std::fs::write(d.join("serial"), "01\n").unwrap();
        std::fs::write(
            d.join("tsa.cnf"),
            format!(
                "[ tsa ]\ndefault_tsa = tsa1\n[ tsa1 ]\ndir = {}\nserial = $dir/serial\ncrypto_device = builtin\nsigner_cert = $dir/tsa.pem\ncerts = $dir/ca.pem\nsigner_key = $dir/tsa.key\nsigner_digest = sha256\ndefault_policy = 1.2.3.4.1\ndigests = sha256, sha384, sha512\naccuracy = secs:1\nordering = yes\ntsa_name = yes\ness_cert_id_chain = no\ness_cert_id_alg = sha256\n",
                d.display()
            ),
        )
        .unwrap();
        std::fs::write(
            d.join("server.py"),
            r#"import http.server, subprocess, sys, os
d = sys.argv[1]
class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers['Content-Length']))
        open(os.path.join(d, 'req.tsq'), 'wb').write(body)
        subprocess.run(['openssl', 'ts', '-reply', '-config', os.path.join(d, 'tsa.cnf'),
                        '-queryfile', os.path.join(d, 'req.tsq'), '-out', os.path.join(d, 'resp.tsr')],
                       check=True, capture_output=True)
        resp = open(os.path.join(d, 'resp.tsr'), 'rb').read()
        self.send_response(200)
        self.send_header('Content-Type', 'application/timestamp-reply')
        self.send_header('Content-Length', str(len(resp)))
        self.end_headers()
        self.wfile.write(resp)
    def log_message(self, *a):
        pass
s = http.server.HTTPServer(('127.0.0.1', 0), H)
print(s.server_address[1], flush=True)
s.serve_forever()
"#,
        )
        .unwrap();
        let mut server = std::process::Command::new("python3")
            .arg(d.join("server.py"))
            .arg(d)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut port = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(server.stdout.take().unwrap()),
            &mut port,
        )
        .unwrap();
        let url = format!("http://127.0.0.1:{}/", port.trim());
        Tsa { dir, server, url }
    }
}

#[test]
fn rfc_3161_tokens_date_a_chain_and_a_record_dated_after_its_token_is_found() {
    let tsa = Tsa::start();
    let keys = Keys::new();
    let (r, ann, bob) = signed_fixture(&keys);
    r.write(
        "roles/keys/tsa-ca.pem",
        &std::fs::read_to_string(tsa.dir.path().join("ca.pem")).unwrap(),
    );
    r.append(
        "sopkit.toml",
        &format!(
            "\n[evidence]\ntsa_url = \"{}\"\ntsa_certificate = \"roles/keys/tsa-ca.pem\"\n",
            tsa.url
        ),
    );
    r.git(&["add", "-A"]);
    author_commit(
        &r,
        "ann",
        "the company's time-stamping authority",
        Some(&ann),
    );
    sign_as(&r, "bob", &bob);
    let out = run(&r);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));

    let out = r.sopkit(&["evidence", "stamp"]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert!(
        stdout(&out).contains("1 token(s) obtained"),
        "{}",
        stdout(&out)
    );
    let tokens = ledger_files(&r, ".tsr");
    assert_eq!(tokens.len(), 1);
    assert!(tokens[0].to_string_lossy().ends_with("000002.json.tsr"));
    let (code, said) = evidence_verify(&r);
    assert_eq!(code, Some(0), "{said}");
    // Nothing new: nothing to stamp.
    let out = r.sopkit(&["evidence", "stamp"]);
    assert!(
        stdout(&out).contains("0 token(s) obtained"),
        "{}",
        stdout(&out)
    );

    // A record that says it was written tomorrow, signed and chained by its writer, then
    // stamped today: the token proves it existed before the time it claims.
    let last = ledger_files(&r, ".json").pop().unwrap();
    let bytes = std::fs::read(&last).unwrap();
    let mut rec: sopkit::evidence::Record = serde_json::from_slice(&bytes).unwrap();
    let tomorrow = time::OffsetDateTime::now_utc() + time::Duration::days(1);
    let fmt = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");
    rec.seq = 3;
    rec.prev = Some(sopkit::digest::sha256_hex(&bytes));
    rec.run = "later".into();
    rec.kind = sopkit::evidence::Kind::Start;
    rec.ended = None;
    rec.outcome = None;
    rec.exit_status = None;
    rec.files.clear();
    rec.started = tomorrow.format(fmt).unwrap();
    let third = last.with_file_name("000003.json");
    std::fs::write(&third, rec.to_bytes()).unwrap();
    sign_record_with(&bob, &third);
    let out = r.sopkit(&["evidence", "stamp"]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    let (code, said) = evidence_verify(&r);
    assert_eq!(code, Some(1), "{said}");
    assert!(
        said.contains("000003.json: says it was written at")
            && said.contains("after the time-stamping authority dated record 000003.json"),
        "{said}"
    );

    // A stamped record changed afterwards (and signed again): its token no longer verifies.
    std::fs::remove_file(&third).unwrap();
    std::fs::remove_file(format!("{}.sig", third.display())).unwrap();
    std::fs::remove_file(format!("{}.tsr", third.display())).unwrap();
    let mut rec: sopkit::evidence::Record = serde_json::from_slice(&bytes).unwrap();
    rec.verification = vec!["all good".into()];
    std::fs::write(&last, rec.to_bytes()).unwrap();
    sign_record_with(&bob, &last);
    let (code, said) = evidence_verify(&r);
    assert_eq!(code, Some(1), "{said}");
    assert!(
        said.contains("the timestamp token does not verify"),
        "{said}"
    );
}

#[test]
fn in_toto_export_is_checked_by_a_dsse_verifier_other_than_sopkit() {
    let keys = Keys::new();
    let (r, _ann, bob) = signed_fixture(&keys);
    sign_as(&r, "bob", &bob);
    let out = run(&r);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    // A run that does not count (its end record is not bob's: unsigned, other folder).
    let (_, v) = crate::support::end_record_files(&r).pop().unwrap();
    let other = r.path().join("evidence/mallory@x");
    std::fs::create_dir_all(&other).unwrap();
    let mut rec: sopkit::evidence::Record = serde_json::from_value(v).unwrap();
    rec.seq = 1;
    rec.prev = None;
    std::fs::write(other.join("000001.json"), rec.to_bytes()).unwrap();

    let auditor = keys.ssh("auditor");
    let bundle = r.path().join("runs.intoto.jsonl");
    let out = r.sopkit(&[
        "evidence",
        "export",
        "--format",
        "in-toto",
        "--key",
        &auditor.display().to_string(),
        "-o",
        &bundle.display().to_string(),
    ]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    let text = std::fs::read_to_string(&bundle).unwrap();
    assert_eq!(text.lines().count(), 1, "only bob's run counts: {text}");

    // Verified by Python's `cryptography` with the auditor's public key: DSSE v1 over the
    // payload, then the statement read as in-toto says.
    let verifier = r#"
import base64, json, sys
from cryptography.hazmat.primitives.serialization import load_ssh_public_key
key = load_ssh_public_key(open(sys.argv[1], 'rb').read())
for line in open(sys.argv[2]):
    env = json.loads(line)
    payload = base64.b64decode(env['payload'])
    t = env['payloadType'].encode()
    pae = b'DSSEv1 %d %s %d %s' % (len(t), t, len(payload), payload)
    for s in env['signatures']:
        key.verify(base64.b64decode(s['sig']), pae)
    st = json.loads(payload)
    assert st['_type'] == 'https://in-toto.io/Statement/v1', st
    assert st['predicateType'] == 'https://in-toto.io/attestation/link/v0.3', st
    p = st['predicate']
    print(p['name'], p['byproducts']['outcome'], p['environment']['signed_by'], p['environment']['sop'])
    for s in st['subject']:
        print(s['name'], s['digest']['sha256'])
"#;
    let verify = |file: &Path| {
        std::process::Command::new("python3")
            .args(["-c", verifier])
            .arg(auditor.with_extension("pub"))
            .arg(file)
            .output()
            .unwrap()
    };
    let out = verify(&bundle);
    assert!(out.status.success(), "{}", stderr(&out));
    let said = stdout(&out);
    assert!(
        said.contains("backup succeeded Bob Example (bob) QA-001"),
        "{said}"
    );
    let records = ledger_files(&r, ".json");
    let bob_end = records
        .iter()
        .find(|p| !p.to_string_lossy().contains("mallory") && p.ends_with("000002.json"))
        .unwrap();
    let digest = sopkit::digest::sha256_hex(&std::fs::read(bob_end).unwrap());
    assert!(
        said.contains(&digest),
        "the end record is a subject: {said}"
    );

    // One byte of the payload changed: the verifier refuses it.
    let mut env: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut payload = b64.decode(env["payload"].as_str().unwrap()).unwrap();
    let at = payload.len() / 2;
    payload[at] ^= 1;
    env["payload"] = serde_json::json!(b64.encode(&payload));
    let tampered = r.path().join("tampered.intoto.jsonl");
    std::fs::write(&tampered, format!("{env}\n")).unwrap();
    assert!(!verify(&tampered).status.success());
}

#[test]
fn records_signed_through_gnupg_are_attributed_and_an_unlisted_openpgp_key_runs_nothing() {
    let keys = Keys::new();
    let (r, ann, _bob) = signed_fixture(&keys);
    let (home, fpr) = keys.gpg("gina", "ed25519", None);
    let (stranger_home, stranger) = keys.gpg("stan", "ed25519", None);
    r.write(
        "roles/keys/gina.asc",
        &crate::approvals::export(&home, &fpr),
    );
    r.append(
        "roles/people.yaml",
        "  - id: gina\n    name: Gina Example\n    email: gina@example.com\n    keys: [gina.asc]\n    roles:\n      - { role: operator, from: 2019-01-01 }\n",
    );
    r.git(&["add", "-A"]);
    author_commit(&r, "ann", "gina joins the operators", Some(&ann));
    let run_as = |home: &Path, key: &str| {
        r.git(&["config", "gpg.format", "openpgp"]);
        r.git(&["config", "user.signingkey", key]);
        std::process::Command::new(crate::support::sopkit_bin())
            .args(["run", "QA-001", "--allow-draft", "--yes"])
            .current_dir(r.path())
            .env("GNUPGHOME", home)
            .output()
            .unwrap()
    };

    // A key the policy does not list: refused before the step starts, no record written.
    let out = run_as(&stranger_home, &stranger);
    assert_eq!(out.status.code(), Some(2), "{}", stdout(&out));
    assert!(
        stderr(&out).contains("was not written: the record has a signature by a key no person"),
        "{}",
        stderr(&out)
    );
    assert!(ledger_files(&r, ".json").is_empty());

    let out = run_as(&home, &fpr);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    for rec in ledger_files(&r, ".json") {
        let sig = std::fs::read_to_string(format!("{}.sig", rec.display())).unwrap();
        assert!(sig.starts_with("-----BEGIN PGP SIGNATURE-----"), "{sig}");
    }
    let (code, said) = evidence_verify(&r);
    assert_eq!(code, Some(0), "{said}");
    assert!(said.contains("2 records by Gina Example (gina)"), "{said}");
}

/// The writer folder of the repository's one run, and that run's start and end records.
fn first_run(
    r: &Repo,
) -> (
    std::path::PathBuf,
    sopkit::evidence::Record,
    sopkit::evidence::Record,
) {
    let records = ledger_files(r, ".json");
    let folder = records[0].parent().unwrap().to_path_buf();
    (folder, read_record(&records[0]), read_record(&records[1]))
}

/// Appends `rec` to the chain in writer folder `folder` as its writer would (next seq, `prev`
/// the hash of the last record file, digest recomputed) and signs it with SSH key `key`.
fn append_signed(
    folder: &Path,
    mut rec: sopkit::evidence::Record,
    key: &Path,
) -> std::path::PathBuf {
    let mut last: Vec<_> = files(folder)
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    last.sort();
    let prev = last.last().map(|p| std::fs::read(p).unwrap());
    rec.seq = last.len() as u64 + 1;
    rec.prev = prev.map(|b| sopkit::digest::sha256_hex(&b));
    let path = folder.join(sopkit::evidence::record_name(rec.seq));
    std::fs::write(&path, rec.to_bytes()).unwrap();
    sign_record_with(key, &path);
    path
}

#[test]
fn an_end_signed_by_someone_else_than_its_start_does_not_count() {
    let keys = Keys::new();
    let (r, ann, bob) = signed_fixture(&keys);
    sign_as(&r, "bob", &bob);
    let out = run(&r);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    // ann ends a second run that bob started: both signatures hold, the run does not.
    let (folder, start, end) = first_run(&r);
    let mut start2 = start.clone();
    start2.run = "second".into();
    append_signed(&folder, start2, &bob);
    let mut end2 = end.clone();
    end2.run = "second".into();
    let forged = append_signed(&folder, end2, &ann);
    let (code, said) = evidence_verify(&r);
    assert_eq!(code, Some(1), "{said}");
    assert!(
        said.contains(&format!(
            "{}: cannot count: it ends run second for Ann Example (ann), but its start record is \
             signed by Bob Example (bob)",
            forged.file_name().unwrap().to_string_lossy()
        )),
        "{said}"
    );
}

#[test]
fn a_key_removed_by_the_policy_signs_no_end_record_even_for_a_run_dated_before() {
    let keys = Keys::new();
    let (r, ann, bob) = signed_fixture(&keys);
    sign_as(&r, "bob", &bob);
    let out = run(&r);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    let (folder, start, end) = first_run(&r);
    // bob's key leaked: an admin takes it out of the policy (a second after the run, so that
    // the run's records are dated before the removal, as they would be).
    std::thread::sleep(std::time::Duration::from_millis(1100));
    r.replace(
        "roles/people.yaml",
        "    keys: [bob.pub]\n",
        "    keys: []\n",
    );
    r.git(&["add", "-A"]);
    author_commit(&r, "ann", "bob's key leaked: removed", Some(&ann));
    // Whoever holds it writes a run that "started" before the removal and ended now.
    let now = time::OffsetDateTime::now_utc() + time::Duration::seconds(2);
    let fmt = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");
    let mut start2 = start.clone();
    start2.run = "after-the-leak".into();
    append_signed(&folder, start2, &bob);
    let mut end2 = end.clone();
    end2.run = "after-the-leak".into();
    end2.ended = Some(now.format(fmt).unwrap());
    let forged = append_signed(&folder, end2, &bob);
    let (code, said) = evidence_verify(&r);
    assert_eq!(code, Some(1), "{said}");
    assert!(
        said.contains(&format!(
            "{}: cannot count: it has a signature by a key no person in people.yaml holds",
            forged.file_name().unwrap().to_string_lossy()
        )),
        "{said}"
    );
    // The records bob wrote while his key was his still count.
    assert!(said.contains("3 records by Bob Example (bob)"), "{said}");
}

#[test]
fn a_role_added_later_holds_for_runs_of_the_new_revision_only() {
    let keys = Keys::new();
    let (r, _ann, bob) = signed_fixture(&keys);
    sign_as(&r, "bob", &bob);
    let out = run(&r);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    r.git(&["add", "-A"]);
    author_commit(&r, "bob", "evidence", Some(&bob));
    // The step now requires the QA lead: bob's earlier run, of the revision without that
    // requirement, still counts.
    r.replace(
        SOP,
        "{step=backup target=backups}",
        "{step=backup target=backups role=qa-lead}",
    );
    r.git(&["add", "-A"]);
    author_commit(&r, "bob", "only the QA lead backs up", Some(&bob));
    let (code, said) = evidence_verify(&r);
    assert_eq!(code, Some(0), "{said}");
    assert!(said.contains("2 records by Bob Example (bob)"), "{said}");

    // A record claiming the old revision from a commit git does not hold: judged by the
    // SOP as it is now, which requires the role.
    let records = ledger_files(&r, ".json");
    let folder = records[0].parent().unwrap().to_path_buf();
    let mut start: sopkit::evidence::Record =
        serde_json::from_slice(&std::fs::read(&records[0]).unwrap()).unwrap();
    start.run = "claimed-old".into();
    start.commit = Some("1".repeat(40));
    let forged = append_signed(&folder, start, &bob);
    let (code, said) = evidence_verify(&r);
    assert_eq!(code, Some(1), "{said}");
    assert!(
        said.contains(&format!(
            "{}: cannot count: it does not name role `qa-lead`",
            forged.file_name().unwrap().to_string_lossy()
        )),
        "{said}"
    );
}
