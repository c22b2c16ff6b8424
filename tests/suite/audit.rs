//! `sopkit audit` over a real history: two effective versions approved with real SSH keys,
//! a signed and an unsigned run, and a record tampered with afterwards. The package says
//! all of it, and `audit verify` finds a changed or added file and a broken signature.

use std::process::Command;

use crate::approvals::{Keys, approve_ok, author_commit, sign_as, signed_fixture};
use crate::support::{Repo, SOP, files, stderr, stdout};

/// QA-001 effective as version 1, then version 2; one run signed by bob, one unsigned (an
/// admin allowed it), and bob's end record edited afterwards.
fn audited() -> (Keys, Repo, std::path::PathBuf) {
    let keys = Keys::new();
    let (r, ann, bob) = signed_fixture(&keys);
    approve_ok(&r, "ann", &ann);
    r.replace(SOP, "runs each quarter", "runs each month");
    r.git(&["add", "-A"]);
    author_commit(&r, "bob", "restore tests monthly", Some(&bob));
    approve_ok(&r, "ann", &ann);
    r.append("sopkit.toml", "\n[evidence]\nunsigned_writers = [\"*\"]\n");
    r.git(&["add", "-A"]);
    author_commit(&r, "ann", "a headless job may write unsigned", Some(&ann));

    sign_as(&r, "bob", &bob);
    let out = r.sopkit(&["run", "QA-001", "--yes"]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    r.git(&["config", "--unset", "user.signingkey"]);
    r.git(&["config", "--unset", "gpg.format"]);
    let out = r.sopkit(&["run", "QA-001", "--yes"]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    // bob's end record, changed after the fact.
    let mut records: Vec<_> = files(&r.path().join("evidence"))
        .into_iter()
        .filter(|p| p.to_string_lossy().ends_with("000002.json"))
        .collect();
    records.sort();
    let tampered = &records[0];
    let text = std::fs::read_to_string(tampered).unwrap();
    std::fs::write(
        tampered,
        text.replacen("\"exit_status\": 0", "\"exit_status\": 1", 1),
    )
    .unwrap();
    (keys, r, ann)
}

fn read(dir: &std::path::Path, name: &str) -> String {
    std::fs::read_to_string(dir.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn pdf_text(path: &std::path::Path) -> String {
    let out = Command::new("pdftotext")
        .arg(path)
        .arg("-")
        .output()
        .expect("pdftotext (poppler-utils) is needed");
    stdout(&out)
}

#[test]
fn the_package_holds_every_effective_version_its_redline_signatures_and_the_evidence() {
    let (_keys, r, _ann) = audited();
    let out = r.sopkit(&["audit", "--out", "pkg"]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert!(
        stdout(&out).contains("2 SOP revision(s)"),
        "{}",
        stdout(&out)
    );
    let pkg = r.path().join("pkg");
    for f in [
        "sops/QA-001-v1.pdf",
        "sops/QA-001-v2.pdf",
        "sops/QA-001-v2-changes.pdf",
        "evidence/log-0001.pdf",
    ] {
        assert!(
            std::fs::read(pkg.join(f)).unwrap().starts_with(b"%PDF-"),
            "{f}"
        );
    }
    assert!(
        !pkg.join("sops/QA-001-v1-changes.pdf").exists(),
        "v1 has nothing before it"
    );
    // The PDF of a version is the one verify-pdf rebuilds from its commit.
    let v1 = pkg.join("sops/QA-001-v1.pdf");
    let out = r.sopkit(&["verify-pdf", v1.to_str().unwrap()]);
    assert!(stdout(&out).contains("identical"), "{}", stdout(&out));
    assert!(pdf_text(&v1).contains("quarter"));
    let redline = pdf_text(&pkg.join("sops/QA-001-v2-changes.pdf"));
    assert!(
        redline.contains("quarter") && redline.contains("month"),
        "{redline}"
    );

    let sigs = read(&pkg, "signatures.csv");
    assert_eq!(sigs.matches(",approved,").count(), 2, "{sigs}");
    assert!(
        sigs.contains("QA-001,1,") && sigs.contains("QA-001,2,"),
        "{sigs}"
    );
    assert!(
        sigs.contains(",ann,Ann Example,qa-lead,approved,") && sigs.contains(",valid,"),
        "{sigs}"
    );

    let log = read(&pkg, "evidence.csv");
    // Bob's run lost its attribution when its end record was edited; the other is unsigned.
    assert_eq!(log.lines().count(), 3, "{log}");
    assert!(log.contains(",NOT ATTRIBUTABLE,"), "{log}");
    assert!(log.contains(",unattributed,"), "{log}");
    let verified = read(&pkg, "evidence-verify.txt");
    assert!(
        verified.contains("000002.json: was changed after it was written")
            && verified.contains("3 problems"),
        "{verified}"
    );
    assert!(read(&pkg, "README.txt").contains("THE LEDGER IS NOT INTACT"));
    assert!(read(&pkg, "training.csv").starts_with("sop,version,person,role,acknowledged\n"));
    assert!(read(&pkg, "regulatory-map.md").contains("Part 11 §11.10(a)"));
    assert!(read(&pkg, "status.json").contains("\"alerts\""));

    // The manifest covers every file, and the zip holds the same files.
    let manifest = read(&pkg, "MANIFEST.sha256");
    assert!(
        manifest.contains("  sops/QA-001-v2-changes.pdf\n"),
        "{manifest}"
    );
    let listing = Command::new("python3")
        .args([
            "-c",
            "import sys, zipfile; print('\\n'.join(zipfile.ZipFile(sys.argv[1]).namelist()))",
        ])
        .arg(r.path().join("pkg.zip"))
        .output()
        .unwrap();
    let names = stdout(&listing);
    assert!(
        names.contains("pkg/MANIFEST.sha256") && names.contains("pkg/sops/QA-001-v1.pdf"),
        "{names}"
    );

    // Unsigned, the hashes alone prove nothing against whoever can write the folder: the
    // check passes only when asked to check the hashes alone.
    let out = r.sopkit(&["audit", "verify", "pkg"]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(stdout(&out).contains("NOT signed"), "{}", stdout(&out));
    let out = r.sopkit(&["audit", "verify", "pkg", "--allow-unsigned"]);
    assert!(out.status.success(), "{}", stdout(&out));
    assert!(
        stdout(&out).contains("the package is intact"),
        "{}",
        stdout(&out)
    );
    std::fs::write(
        pkg.join("signatures.csv"),
        sigs.replace(",valid,", ",VALID,"),
    )
    .unwrap();
    std::fs::write(pkg.join("extra.txt"), "slipped in").unwrap();
    let out = r.sopkit(&["audit", "verify", "pkg", "--allow-unsigned"]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let said = stdout(&out);
    assert!(said.contains("signatures.csv: changed"), "{said}");
    assert!(said.contains("extra.txt: not in the manifest"), "{said}");

    // A package is never written over another.
    let out = r.sopkit(&["audit", "--out", "pkg"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("is not empty"), "{}", stderr(&out));
}

#[test]
fn a_signed_package_verifies_against_the_repositorys_keys_and_the_period_narrows_it() {
    let (_keys, r, ann) = audited();
    sign_as(&r, "ann", &ann);
    let out = r.sopkit(&["audit", "--out", "signed", "--sign"]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    let dir = r.path().join("signed");
    assert!(dir.join("MANIFEST.sha256.sig").is_file());
    let out = r.sopkit(&["audit", "verify", "signed"]);
    assert!(out.status.success(), "{}", stdout(&out));
    assert!(
        stdout(&out).contains("valid signature by Ann Example (ann)"),
        "{}",
        stdout(&out)
    );
    // A manifest rewritten to match a changed file no longer carries Ann's signature.
    let manifest = read(&dir, "MANIFEST.sha256");
    std::fs::write(dir.join("MANIFEST.sha256"), manifest.replacen('a', "b", 1)).unwrap();
    let out = r.sopkit(&["audit", "verify", "signed"]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(
        stdout(&out).contains("signature NOT valid"),
        "{}",
        stdout(&out)
    );

    // An insider who edits a file, rewrites the manifest to match and strips the signature
    // gets a package that is consistent, and unsigned: refused.
    std::fs::write(dir.join("MANIFEST.sha256"), &manifest).unwrap();
    let csv = read(&dir, "signatures.csv").replace(",valid,", ",VALID,");
    std::fs::write(dir.join("signatures.csv"), &csv).unwrap();
    let rewritten: String = manifest
        .lines()
        .map(|l| match l.split_once("  ") {
            Some((_, "signatures.csv")) => format!(
                "{}  signatures.csv\n",
                sopkit::digest::sha256_hex(csv.as_bytes())
            ),
            _ => format!("{l}\n"),
        })
        .collect();
    std::fs::write(dir.join("MANIFEST.sha256"), rewritten).unwrap();
    std::fs::remove_file(dir.join("MANIFEST.sha256.sig")).unwrap();
    let out = r.sopkit(&["audit", "verify", "signed"]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(stdout(&out).contains("NOT signed"), "{}", stdout(&out));

    // A file swapped for a link to an outside copy with the same bytes is no file of the
    // package, though its hash matches.
    let out = r.sopkit(&["audit", "--out", "linked", "--sign"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let linked = r.path().join("linked");
    let outside = r.path().join("outside-readme.txt");
    std::fs::copy(linked.join("README.txt"), &outside).unwrap();
    std::fs::remove_file(linked.join("README.txt")).unwrap();
    std::os::unix::fs::symlink(&outside, linked.join("README.txt")).unwrap();
    let out = r.sopkit(&["audit", "verify", "linked"]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(
        stdout(&out).contains("README.txt: a symbolic link"),
        "{}",
        stdout(&out)
    );

    // A period before anything was approved holds no SOP revision and no run.
    let out = r.sopkit(&["audit", "--out", "old", "--until", "2000-01-01"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("0 SOP revision(s), 0 run(s)"),
        "{}",
        stdout(&out)
    );
    let out = r.sopkit(&["audit", "--out", "x", "--since", "01/02/2026"]);
    assert_eq!(out.status.code(), Some(2));
    let out = r.sopkit(&["audit", "--out", "y", "--sop", "NOPE-1"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(!r.path().join("y").exists() && !r.path().join("y.zip").exists());
}
