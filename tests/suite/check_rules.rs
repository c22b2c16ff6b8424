//! One fixture per rule: start from a clean repository, break one thing, and expect exactly
//! the finding(s) of that rule, at the right line and column.

use std::process::Command;

use crate::support::{Repo, SOP, sopkit_bin, stderr, stdout};

/// Where a finding is expected: a file and the text it points at (`None`: the whole file).
type Expect<'a> = (&'a str, &'a str, Option<&'a str>);

fn assert_findings(repo: &Repo, expected: &[Expect<'_>]) {
    let mut want: Vec<(String, String, usize, usize)> = expected
        .iter()
        .map(|(rule, path, needle)| {
            let (l, c) = needle.map_or((0, 0), |n| repo.pos(path, n));
            (rule.to_string(), path.to_string(), l, c)
        })
        .collect();
    let mut got = repo.findings();
    want.sort();
    got.sort();
    assert_eq!(got, want);
}

#[test]
fn the_clean_fixture_is_clean() {
    assert_findings(&Repo::clean(), &[]);
}

#[test]
fn broken_link() {
    let r = Repo::clean();
    r.append(SOP, "\nSee [the plan](plan.md) and [site](proxmox.com).\n");
    assert_findings(
        &r,
        &[
            ("broken-link", SOP, Some("[the plan]")),
            ("broken-link", SOP, Some("[site]")),
        ],
    );
    let (_, diags) = r.diagnostics();
    assert!(
        diags[1].help_text().contains("https://proxmox.com"),
        "{:?}",
        diags[1]
    );
}

#[test]
fn broken_link_with_slash_after_file_name() {
    let r = Repo::clean();
    r.append(SOP, "\n[g](../glossary/terms.md/#restore-test)\n");
    assert_findings(&r, &[("broken-link", SOP, Some("[g]"))]);
}

#[test]
fn broken_anchor_with_suggestion() {
    let r = Repo::clean();
    r.append(
        SOP,
        "\n[s](#scop) and [d](QA-001-demo.md#demo) and [x](../roles/operator.md#nope)\n",
    );
    assert_findings(
        &r,
        &[
            ("broken-anchor", SOP, Some("[s]")),
            ("broken-anchor", SOP, Some("[x]")),
        ],
    );
    let (_, diags) = r.diagnostics();
    assert!(
        diags.iter().any(|d| d.help_text().contains("#scope")),
        "{diags:?}"
    );
}

#[test]
fn an_anchor_in_another_case_resolves_with_a_warning() {
    let r = Repo::clean();
    r.append(
        SOP,
        "\n[s](#SCOPE) and [t](../glossary/terms.md#Restore-Test) and [u](#Scop)\n",
    );
    assert_findings(
        &r,
        &[
            ("anchor-case", SOP, Some("[s]")),
            ("anchor-case", SOP, Some("[t]")),
            ("broken-anchor", SOP, Some("[u]")),
        ],
    );
    let (_, diags) = r.diagnostics();
    let case = diags
        .iter()
        .find(|d| d.message.contains("#SCOPE"))
        .expect("the finding of [s]");
    assert_eq!(case.help_text(), "write `#scope`");
    // A warning: without the broken one, `check` passes.
    r.replace(SOP, " and [u](#Scop)", "");
    let out = r.sopkit(&["check"]);
    assert!(out.status.success(), "{}", stdout(&out));
}

#[test]
fn a_fragment_on_a_folder_link_is_looked_up_in_its_readme() {
    let r = Repo::clean();
    r.write(
        "procedures/README.md",
        "# Procedures\n\n## How we write them\n\nText.\n",
    );
    r.append(
        SOP,
        "\n[a](./#how-we-write-them) and [b](./#nope) and [c](../glossary/#terms)\n",
    );
    assert_findings(
        &r,
        &[
            ("broken-anchor", SOP, Some("[b]")),
            ("broken-anchor", SOP, Some("[c]")),
        ],
    );
    let (_, diags) = r.diagnostics();
    assert!(
        diags
            .iter()
            .any(|d| d.message.contains("folder `glossary` has no README")),
        "{diags:?}"
    );
    assert!(
        diags
            .iter()
            .any(|d| d.message.contains("in `procedures/README.md`")),
        "{diags:?}"
    );
}

#[test]
fn front_matter_without_its_opening_fence_is_a_finding_at_its_first_line() {
    let r = Repo::clean();
    let text = r.read(SOP);
    r.write(SOP, text.strip_prefix("---\n").unwrap());
    assert_findings(&r, &[("invalid-front-matter", SOP, Some("id: QA-001"))]);
    let (corpus, diags) = r.diagnostics();
    assert!(
        diags[0].message.contains("without its opening `---`"),
        "{diags:?}"
    );
    // Its lines are not a heading of the body: the title is the document's own heading.
    assert_eq!(corpus.sops[0].title, "Demo");
    let doc = &corpus.docs[corpus.sops[0].doc];
    assert!(
        doc.markdown
            .headings
            .iter()
            .all(|h| !h.text.contains("id:")),
        "{:?}",
        doc.markdown.headings
    );
}

#[test]
fn html_links_follow_the_same_rules() {
    let r = Repo::clean();
    r.append(
        SOP,
        "\nSee <a href=\"plan.md\">the plan</a>, <a href=\"#scop\">scope</a>, <a href=\"https://example.com\">web</a>.\n\n<p align=\"center\">\n  <img src=\"img/missing.png\" alt=\"x\">\n  <a href=\"../glossary/terms.md#restore-test\">ok</a>\n</p>\n",
    );
    assert_findings(
        &r,
        &[
            ("broken-link", SOP, Some("href=\"plan.md\"")),
            ("broken-anchor", SOP, Some("href=\"#scop\"")),
            ("broken-image", SOP, Some("src=\"img/missing.png\"")),
        ],
    );
}

#[test]
fn repeated_headings_and_explicit_anchors() {
    let r = Repo::clean();
    r.append(
        SOP,
        "\n## Backup\n\nx\n\n## Backup\n\ny\n\n### Hardware <a id=\"hw\"></a>\n\n[a](#backup-1) [b](#hw) [c](#hardware-) [d](#backup-2)\n",
    );
    assert_findings(&r, &[("broken-anchor", SOP, Some("[d]"))]);
}

#[test]
fn broken_image() {
    let r = Repo::clean();
    r.write_bytes("img/ok.png", b"\x89PNG");
    r.append(SOP, "\n![ok](../img/ok.png) ![missing](../img/nope.png)\n");
    assert_findings(&r, &[("broken-image", SOP, Some("![missing]"))]);
}

#[test]
fn missing_folder() {
    let r = Repo::clean();
    r.append(SOP, "\n[here](../roles/) and [there](../archive/)\n");
    assert_findings(&r, &[("missing-folder", SOP, Some("[there]"))]);
}

#[test]
fn link_outside_repository() {
    let r = Repo::clean();
    r.append(SOP, "\n[o](../../../../etc/passwd)\n");
    assert_findings(&r, &[("link-outside-repository", SOP, Some("[o]"))]);
}

#[test]
fn undefined_reference_and_footnote() {
    let r = Repo::clean();
    r.append(SOP, "\n[a][nolabel] and a note[^missing] and [shortcut].\n");
    assert_findings(
        &r,
        &[
            ("undefined-reference", SOP, Some("[a][nolabel]")),
            ("undefined-reference", SOP, Some("[^missing]")),
        ],
    );
}

#[test]
fn duplicate_and_unused_references() {
    let r = Repo::clean();
    r.append(SOP, "\n[t][a]\n\n[a]: ../glossary/terms.md\n[A]: ../roles/qa-lead.md\n[spare]: ../roles/qa-lead.md\n");
    assert_findings(
        &r,
        &[
            ("duplicate-reference", SOP, Some("[A]:")),
            ("unused-reference", SOP, Some("[spare]:")),
        ],
    );
}

#[test]
fn reference_definitions_are_checked_once() {
    let r = Repo::clean();
    r.append(
        SOP,
        "\n[one][gone] and [two][gone]\n\n[gone]: ../nowhere.md\n",
    );
    assert_findings(&r, &[("broken-link", SOP, Some("[gone]:"))]);
}

#[test]
fn undefined_term_suggests_the_full_slug() {
    let r = Repo::clean();
    r.replace(SOP, "terms.md#recovery-point-objective-rpo", "terms.md#rpo");
    // The acronym appears only as the link text, which is not prose, so no unlinked-term.
    assert_findings(&r, &[("undefined-term", SOP, Some("[RPO]"))]);
    let (_, diags) = r.diagnostics();
    let d = diags
        .iter()
        .find(|d| d.rule.id() == "undefined-term")
        .unwrap();
    assert!(
        d.help_text().contains("#recovery-point-objective-rpo"),
        "{}",
        d.help_text()
    );
}

#[test]
fn unlinked_term_is_a_warning_with_exit_zero() {
    let r = Repo::clean();
    r.replace(
        SOP,
        "[restore test](../glossary/terms.md#restore-test)",
        "restore tests",
    );
    assert_findings(&r, &[("unlinked-term", SOP, Some("restore tests"))]);
    let out = r.sopkit(&["check", "--format", "short"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        crate::support::stdout(&out)
    );
    // Acronyms match exactly, as whole words; code and links do not count as prose.
    let r = Repo::clean();
    r.append(
        SOP,
        "\nArpo, rpo and `RPO` are not uses; [RPO docs](../roles/qa-lead.md) neither.\n",
    );
    assert_findings(&r, &[]);
}

#[test]
fn undefined_roles_everywhere() {
    let r = Repo::clean();
    r.replace(SOP, "owner: operator", "owner: operatr");
    r.replace(SOP, "approvers: [qa-lead]", "approvers: [qa-lead, auditor]");
    r.append(SOP, "\nAsk the [DBA](../roles/dba.md).\n");
    r.replace(
        "roles/operator.md",
        "reports_to: qa-lead",
        "reports_to: boss",
    );
    r.replace("roles/people.yaml", "role: qa-lead", "role: cfo");
    assert_findings(
        &r,
        &[
            ("undefined-role", SOP, Some("operatr")),
            ("undefined-role", SOP, Some("auditor")),
            ("undefined-role", SOP, Some("[DBA]")),
            ("undefined-role", "roles/operator.md", Some("boss")),
            ("undefined-role", "roles/people.yaml", Some("cfo")),
        ],
    );
    let (_, diags) = r.diagnostics();
    assert!(
        diags
            .iter()
            .any(|d| d.help_text().contains("did you mean `operator`")),
        "{diags:?}"
    );
}

#[test]
fn invalid_front_matter_missing_keys() {
    let r = Repo::clean();
    r.replace(SOP, "owner: operator\n", "");
    assert_findings(&r, &[("invalid-front-matter", SOP, Some("---"))]);
}

#[test]
fn invalid_front_matter_sop_id_that_trailers_and_file_names_cannot_carry() {
    for bad in ["QA 001", "QA/001", "-QA-001", "QA-Ä1"] {
        let r = Repo::clean();
        r.replace(SOP, "id: QA-001", &format!("id: {bad}"));
        assert_findings(&r, &[("invalid-front-matter", SOP, Some(bad))]);
    }
    let r = Repo::clean();
    r.replace(SOP, "id: QA-001", "id: QM.7_5-1");
    assert_findings(&r, &[]);
}

#[test]
fn invalid_front_matter_type_error_is_located() {
    let r = Repo::clean();
    r.replace(SOP, "approvers: [qa-lead]", "approvers: 5");
    let f = r.findings();
    assert_eq!(f.len(), 1, "{f:?}");
    assert_eq!(f[0].0, "invalid-front-matter");
    assert_eq!((f[0].2, f[0].3), r.pos(SOP, "5"));
}

#[test]
fn invalid_front_matter_syntax_and_values() {
    let r = Repo::clean();
    r.replace(SOP, "title: Demo", "title: [Demo");
    let f = r.findings();
    assert!(
        f.iter().any(|x| x.0 == "invalid-front-matter" && x.2 >= 3),
        "{f:?}"
    );

    let r = Repo::clean();
    r.replace(
        SOP,
        "title: Demo",
        "title: Demo\nstatus: live\nreview_every: yearly",
    );
    assert_findings(
        &r,
        &[
            ("invalid-front-matter", SOP, Some("live")),
            ("invalid-front-matter", SOP, Some("yearly")),
        ],
    );

    let r = Repo::clean();
    r.write(
        "procedures/QA-002-open.md",
        "---\nid: QA-002\n# never closed\n",
    );
    assert_findings(
        &r,
        &[(
            "invalid-front-matter",
            "procedures/QA-002-open.md",
            Some("---"),
        )],
    );

    let r = Repo::clean();
    r.write("procedures/QA-003-none.md", "# No front matter\n");
    assert_findings(
        &r,
        &[(
            "invalid-front-matter",
            "procedures/QA-003-none.md",
            Some("#"),
        )],
    );
}

#[test]
fn alias_bomb_and_huge_files_are_refused() {
    let r = Repo::clean();
    let mut y = String::from("---\nid: QA-009\na0: &a0 [x, x, x, x, x, x, x, x, x]\n");
    for i in 1..9 {
        let p = i - 1;
        y.push_str(&format!(
            "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
        ));
    }
    y.push_str("---\n# Bomb\n");
    r.write("procedures/QA-009-bomb.md", &y);
    r.write("notes/huge.md", &"x".repeat(11 * 1024 * 1024));
    let f = r.findings();
    assert!(
        f.iter()
            .any(|x| x.0 == "invalid-front-matter" && x.1 == "procedures/QA-009-bomb.md"),
        "{f:?}"
    );
    assert!(
        f.iter()
            .any(|x| x.0 == "file-too-large" && x.1 == "notes/huge.md"),
        "{f:?}"
    );
}

#[test]
fn duplicate_sop_id() {
    let r = Repo::clean();
    r.write("procedures/QA-001-z-copy.md", &r.read(SOP));
    assert_findings(
        &r,
        &[(
            "duplicate-sop-id",
            "procedures/QA-001-z-copy.md",
            Some("QA-001"),
        )],
    );
    let (_, diags) = r.diagnostics();
    assert_eq!(diags[0].related[0].path, SOP);
}

#[test]
fn malformed_steps() {
    let r = Repo::clean();
    r.append(
        SOP,
        "\n```sh {target=backups}\nx\n```\n\n```sh {step=y colour=red}\nx\n```\n\n```sopkit {step=z action=explode}\n```\n\n```sopkit {step=w action=verify}\n- not\n- a mapping\n```\n",
    );
    assert_findings(
        &r,
        &[
            ("malformed-step", SOP, Some("```sh {target")),
            ("malformed-step", SOP, Some("```sh {step=y")),
            ("malformed-step", SOP, Some("```sopkit {step=z")),
            ("malformed-step", SOP, Some("```sopkit {step=w")),
        ],
    );
}

#[test]
fn duplicate_step_id() {
    let r = Repo::clean();
    r.append(SOP, "\n```sh {step=backup}\nagain\n```\n");
    assert_findings(
        &r,
        &[("duplicate-step-id", SOP, Some("```sh {step=backup}\nagain"))],
    );
}

#[test]
fn unknown_target_in_attribute_and_arguments() {
    let r = Repo::clean();
    r.append(SOP, "\n```sh {step=x target=tape}\nx\n```\n\n```sopkit {step=y action=prune}\ntarget: vault\nretention: 35d\n```\n");
    assert_findings(
        &r,
        &[
            ("unknown-target", SOP, Some("```sh {step=x")),
            ("unknown-target", SOP, Some("```sopkit")),
        ],
    );
}

#[test]
fn invalid_step_arguments_name_the_key_or_value_in_the_block() {
    let r = Repo::clean();
    // A typo would be ignored, and a string where a list belongs would hold nothing.
    r.append(
        SOP,
        "\n```sopkit {step=prune-a action=prune}\npath: backups\nretention: 35d\nkeep_dayly: 7\n```\n\n```sopkit {step=prune-b action=prune}\npath: backups\nretention: 35d\nlegal_hold: \"*.keep\"\n```\n",
    );
    assert_findings(
        &r,
        &[
            ("invalid-step-arguments", SOP, Some("keep_dayly")),
            ("invalid-step-arguments", SOP, Some("\"*.keep\"")),
        ],
    );
    let (_, diags) = r.diagnostics();
    let typo = diags
        .iter()
        .find(|d| d.message.contains("keep_dayly"))
        .expect("the typo is reported");
    assert!(typo.help_text().contains("keep_daily"), "{typo:?}");
    let hold = diags
        .iter()
        .find(|d| d.message.contains("prune-b"))
        .expect("the string legal_hold is reported");
    assert!(hold.help_text().contains("list"), "{hold:?}");
}

#[test]
fn invalid_step_arguments_inside_a_list_item_point_into_the_indented_block() {
    let r = Repo::clean();
    r.append(
        SOP,
        "\n1. Archive:\n\n   ```sopkit {step=arch action=archive}\n   source: data\n   dest: out\n   level: fast\n   ```\n",
    );
    assert_findings(&r, &[("invalid-step-arguments", SOP, Some("fast"))]);
}

#[test]
fn a_correct_step_of_every_action_passes() {
    let r = Repo::clean();
    r.write(
        "sopkit.toml",
        "[targets.backups]\nkind = \"local\"\npath = \"/srv/backups\"\nmedium = \"disk\"\n\n\
         [targets.db]\nkind = \"mysql\"\nhost = \"127.0.0.1\"\nuser = \"backup\"\n\n\
         [targets.offsite]\nkind = \"s3\"\nbucket = \"b\"\naccess_key_env = \"A\"\nsecret_key_env = \"S\"\n\n\
         [targets.forge]\nkind = \"git\"\nurl = \"https://example.com/r.git\"\n",
    );
    let blocks = [
        ("archive", "source: data\ndest: out\nlevel: 3\n"),
        ("verify", "archive: step-archive\n"),
        ("verify", "target: offsite\nkey: app/\nall_versions: true\n"),
        ("copy", "source: step-archive\ndest: /mnt/offline\n"),
        (
            "prune",
            "path: out\npattern: \"*.tar.zst\"\nretention: 35d\nkeep_daily: 7\nkeep_weekly: 4\nkeep_monthly: 12\nlegal_hold: [\"case-*\"]\n",
        ),
        (
            "prune",
            "target: offsite\nprefix: app\nretention: 90d\nexpire_latest: false\ndry_run: true\n",
        ),
        ("git-mirror", "target: forge\ndest: mirrors\n"),
        (
            "git-mirror",
            "url: https://example.com/x.git\ndest: mirrors\n",
        ),
        ("db-dump", "target: db\ndatabase: app\ndest: dumps\n"),
        ("restore-test", "dump: step-db-dump\ntarget: db\njobs: 2\n"),
        (
            "upload",
            "source: step-db-dump\ntarget: offsite\nkey: app/\npattern: \"*.zst\"\npart_size: 64MiB\n",
        ),
        (
            "restore",
            "target: offsite\nkey: app/x\nversions_back: 1\ndest: restored/\n",
        ),
    ];
    let mut text = String::new();
    for (i, (action, body)) in blocks.iter().enumerate() {
        text.push_str(&format!(
            "\n```sopkit {{step=step-{action}{} action={action}}}\n{body}```\n",
            if i == 0 || blocks[i - 1].0 != *action {
                String::new()
            } else {
                format!("-{i}")
            }
        ));
    }
    r.append(SOP, &text);
    assert_findings(&r, &[]);
}

#[test]
fn unknown_slo_step() {
    let r = Repo::clean();
    r.replace(SOP, "step: backup, every", "step: restore, every");
    assert_findings(&r, &[("unknown-slo-step", SOP, Some("restore"))]);
}

#[test]
fn invalid_people() {
    let r = Repo::clean();
    r.replace("roles/people.yaml", "keys: []", "keys: [ann.pub]");
    let listed = || {
        assert_findings(
            &r,
            &[("invalid-people", "roles/people.yaml", Some("ann.pub"))],
        )
    };
    listed(); // missing
    r.write("roles/keys/ann.pub", "public key");
    listed(); // not a key
    // A real key pair: the public half is fine, the private half anywhere under keys/ is not.
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("ann");
    let made = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "ann", "-f"])
        .arg(&key)
        .status()
        .unwrap();
    assert!(made.success());
    r.write(
        "roles/keys/ann.pub",
        &std::fs::read_to_string(key.with_extension("pub")).unwrap(),
    );
    assert_findings(&r, &[]);
    r.write("roles/keys/ann", &std::fs::read_to_string(&key).unwrap());
    assert_findings(&r, &[("invalid-people", "roles/keys/ann", None)]);
    r.write(
        "roles/keys/ann.pub",
        &std::fs::read_to_string(&key).unwrap(),
    );
    assert_findings(
        &r,
        &[
            ("invalid-people", "roles/keys/ann", None),
            ("invalid-people", "roles/people.yaml", Some("ann.pub")),
        ],
    );
    r.remove("roles/keys/ann");
    r.write(
        "roles/keys/ann.pub",
        &std::fs::read_to_string(key.with_extension("pub")).unwrap(),
    );
    r.replace("roles/people.yaml", "from: 2026-01-01", "from: someday");
    assert_findings(
        &r,
        &[("invalid-people", "roles/people.yaml", Some("someday"))],
    );
}

#[test]
fn invalid_config() {
    let r = Repo::clean();
    r.append("sopkit.toml", "[paths]\nprocedure = \"x\"\n");
    assert_findings(
        &r,
        &[("invalid-config", "sopkit.toml", Some("procedure ="))],
    );
}

#[test]
fn invalid_encoding() {
    let r = Repo::clean();
    r.write_bytes("notes/latin1.md", b"caf\xe9\n");
    assert_findings(&r, &[("invalid-encoding", "notes/latin1.md", None)]);
}

#[test]
fn unreadable_file() {
    // A file deleted after the walk listed it stands for any read that fails (tests run as
    // root, which no permission stops).
    let r = Repo::clean();
    r.write("notes/gone.md", "# Gone\n");
    let tree = sopkit::tree::Tree::open_dir(r.path()).unwrap();
    std::fs::remove_file(r.path().join("notes/gone.md")).unwrap();
    let corpus = sopkit::corpus::Corpus::read(tree);
    let diagnostics = sopkit::check::check(&corpus);
    let found: Vec<(&str, &str, &str)> = diagnostics
        .iter()
        .map(|d| (d.rule.id(), d.path.as_str(), d.message.as_str()))
        .collect();
    assert_eq!(
        found,
        [(
            "unreadable-file",
            "notes/gone.md",
            "notes/gone.md could not be read: No such file or directory (os error 2)"
        )]
    );
}

#[test]
fn a_folder_or_file_without_read_permission_is_reported() {
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &std::path::Path, m: u32| {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap()
    };
    // A zero-config tree: every Markdown file is checked.
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::create_dir_all(root.join("notes/secret")).unwrap();
    std::fs::write(root.join("README.md"), "# Notes\n").unwrap();
    std::fs::write(root.join("notes/secret/a.md"), "# A\n").unwrap();
    std::fs::write(root.join("notes/locked.md"), "# L\n").unwrap();
    // A folder listed in .gitignore is not part of the tree, readable or not.
    std::fs::create_dir_all(root.join("private")).unwrap();
    std::fs::write(root.join(".gitignore"), "private/\n").unwrap();
    mode(&root.join("private"), 0o000);
    mode(root, 0o755);
    mode(&root.join("notes/secret"), 0o000);
    mode(&root.join("notes/locked.md"), 0o000);
    // Root reads anything, so then the check runs as `nobody`, from a copy of the binary in a
    // folder that user may enter.
    let root_user = unsafe { libc::geteuid() } == 0;
    let bin_dir = tempfile::tempdir().unwrap();
    let bin = bin_dir.path().join("sopkit");
    if std::fs::hard_link(sopkit_bin(), &bin).is_err() {
        std::fs::copy(sopkit_bin(), &bin).unwrap();
    }
    mode(bin_dir.path(), 0o755);
    let mut cmd = if root_user {
        let mut c = Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(&bin);
        c
    } else {
        Command::new(&bin)
    };
    let out = cmd
        .args(["check", "--format", "short"])
        .arg(root)
        .env("HOME", root)
        .output()
        .unwrap();
    mode(&root.join("notes/secret"), 0o755);
    mode(&root.join("private"), 0o755);
    let report = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{report}{}", stderr(&out));
    assert_eq!(report.matches("unreadable-file").count(), 2, "{report}");
    assert!(
        report.contains(
            "notes/secret: error[unreadable-file]: the folder notes/secret could not be read: \
             Permission denied (os error 13); nothing in it was checked"
        ),
        "{report}"
    );
    assert!(
        report.contains(
            "notes/locked.md: error[unreadable-file]: notes/locked.md could not be read: \
             Permission denied (os error 13)"
        ),
        "{report}"
    );
}

#[test]
fn symlinks_out_of_the_repository_are_reported_not_followed() {
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(
        outside.path().join("secret.md"),
        "# Secret\n\n[x](nowhere.md)\n",
    )
    .unwrap();
    let r = Repo::clean();
    std::os::unix::fs::symlink(outside.path().join("secret.md"), r.path().join("notes.md"))
        .unwrap();
    r.append(SOP, "\n[n](../notes.md)\n");
    assert_findings(
        &r,
        &[
            ("symlink-outside-repository", "notes.md", None),
            ("broken-link", SOP, Some("[n]")),
        ],
    );
}

#[test]
fn broken_symlink() {
    let r = Repo::clean();
    std::os::unix::fs::symlink("gone.md", r.path().join("notes.md")).unwrap();
    std::os::unix::fs::symlink("loop-b.md", r.path().join("loop-a.md")).unwrap();
    std::os::unix::fs::symlink("loop-a.md", r.path().join("loop-b.md")).unwrap();
    assert_findings(
        &r,
        &[
            ("broken-symlink", "loop-a.md", None),
            ("broken-symlink", "loop-b.md", None),
            ("broken-symlink", "notes.md", None),
        ],
    );
}

#[test]
fn rooted_links_web_root_and_routes() {
    let r = Repo::clean();
    r.append(
        "sopkit.toml",
        "[links]\nweb_root = \"site\"\nroutes = { \"/qms/glossary/\" = \"glossary/terms.md\" }\n",
    );
    r.write("site/logo.md", "# Logo\n");
    r.append(
        SOP,
        "\n[a](/site/logo.md) [b](/logo.md) [c](/qms/glossary/) [d](/glossary/terms.md#restore-test) [e](/nope.md)\n",
    );
    assert_findings(&r, &[("broken-link", SOP, Some("[e]"))]);
}

#[test]
fn percent_encoded_paths() {
    let r = Repo::clean();
    r.write("procedures/IT-245 System Backup.md", "---\nid: IT-245\ntitle: B\nowner: operator\napprovers: [qa-lead]\n---\n# B\n\n## Über Backup\n");
    r.append(SOP, "\n[b](IT-245%20System%20Backup.md#%C3%BCber-backup) [c](IT-245%20System%20Backup.md#uber-backup)\n");
    assert_findings(&r, &[("broken-anchor", SOP, Some("[c]"))]);
}

/// sopkit's heading slugs are GitHub's: every heading of tests/fixtures/slug-headings.txt
/// (many scripts, numbers, symbols, repeats) gets the slug github-slugger gives it, as
/// scripts/test has it compute them (SOPKIT_SLUGS_EXPECTED).
#[test]
fn slugs_are_the_ones_github_slugger_gives() {
    let path = std::env::var("SOPKIT_SLUGS_EXPECTED").expect(
        "SOPKIT_SLUGS_EXPECTED is not set: run the tests through scripts/test, which computes \
         the expected slugs with github-slugger",
    );
    let expected: Vec<(String, String)> =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    let fixture = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/slug-headings.txt"),
    )
    .unwrap();
    let headings: Vec<&str> = fixture.split('\n').filter(|l| !l.is_empty()).collect();
    assert_eq!(
        headings.len(),
        expected.len(),
        "the same list on both sides"
    );
    let mut slugger = sopkit::corpus::slug::Slugger::default();
    let wrong: Vec<String> = expected
        .iter()
        .filter_map(|(heading, want)| {
            let got = slugger.slug(heading);
            (got != *want).then(|| format!("{heading:?}: sopkit {got:?}, github-slugger {want:?}"))
        })
        .collect();
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}
