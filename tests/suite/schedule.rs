//! `sopkit schedule`: the real binary on a fixture with SLOs of 1d, 7d, 90d and 365d; systemd
//! units checked by `systemd-analyze` when it is installed, Kubernetes manifests parsed as
//! YAML, crontab lines checked field by field and by `sh -n`.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::{Repo, stderr, stdout};

const SOP: &str = "---\nid: OPS-002\ntitle: Scheduled Jobs\nstatus: effective\nowner: operator\napprovers: [qa-lead]\nslos:\n  - { step: daily-dump, every: 1d }\n  - { step: weekly-copy, every: 7d }\n  - { step: restore-test, every: 90d }\n  - { step: integrity, every: 365d }\n---\n\n# Scheduled Jobs\n\n## Steps\n\n```sh {step=daily-dump}\necho dump\n```\n\n```sh {step=weekly-copy}\necho copy\n```\n\n```sh {step=restore-test}\necho restore\n```\n\n```sh {step=integrity}\necho integrity\n```\n";

/// The SOP without SLOs that every fixture also has.
const NO_SLOS: &str = "---\nid: OPS-003\ntitle: Manual Only\nowner: operator\napprovers: [qa-lead]\n---\n\n# Manual Only\n\n```sh {step=by-hand}\necho hand\n```\n";

/// (step, OnCalendar at the default window, cron schedule at the default window)
const EXPECTED: &[(&str, &str, &str)] = &[
    ("daily-dump", "*-*-* 01:00:00 UTC", "0 1 * * *"),
    ("weekly-copy", "Mon *-*-* 01:00:00 UTC", "0 1 * * 1"),
    // 90 days: a quarter can be 92 days long, so monthly is the longest safe period.
    ("restore-test", "*-*-01 01:00:00 UTC", "0 1 1 * *"),
    // 365 days: a leap year is 366 days long, so quarterly.
    (
        "integrity",
        "*-01,04,07,10-01 01:00:00 UTC",
        "0 1 1 1,4,7,10 *",
    ),
];

fn fixture() -> Repo {
    let r = Repo::with_clean_files();
    r.write("procedures/OPS-002-scheduled.md", SOP);
    r.write("procedures/OPS-003-manual.md", NO_SLOS);
    r.commit("fixture with SLOs");
    r
}

fn canonical(r: &Repo) -> PathBuf {
    r.path().canonicalize().unwrap()
}

fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

fn setting<'a>(unit: &'a str, key: &str) -> Vec<&'a str> {
    unit.lines()
        .filter_map(|l| l.strip_prefix(key)?.strip_prefix('='))
        .collect()
}

#[test]
fn systemd_units_run_each_slo_step_in_the_window_and_pass_systemd_analyze() {
    let r = fixture();
    let out_dir = tempfile::tempdir().unwrap();
    let o = r.sopkit(&[
        "schedule",
        "--emit",
        "systemd",
        "--out",
        out_dir.path().to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let repo = canonical(&r);
    let bin = crate::support::sopkit_bin().canonicalize().unwrap();
    let mut names: Vec<String> = std::fs::read_dir(out_dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let mut want: Vec<String> = EXPECTED
        .iter()
        .flat_map(|(s, _, _)| {
            [
                format!("sopkit-ops-002-{s}.service"),
                format!("sopkit-ops-002-{s}.timer"),
            ]
        })
        .chain(["sopkit-status.service".into(), "sopkit-status.timer".into()])
        .collect();
    want.sort();
    // QA-001 of the clean fixture has one SLO too (backup, 1d); OPS-003 has none.
    want.extend([
        "sopkit-qa-001-backup.service".to_string(),
        "sopkit-qa-001-backup.timer".to_string(),
    ]);
    want.sort();
    assert_eq!(names, want);

    let mut calendars = Vec::new();
    for (step, calendar, _) in EXPECTED {
        let service = std::fs::read_to_string(
            out_dir
                .path()
                .join(format!("sopkit-ops-002-{step}.service")),
        )
        .unwrap();
        assert_eq!(setting(&service, "Type"), ["oneshot"]);
        assert_eq!(
            setting(&service, "WorkingDirectory"),
            [repo.to_str().unwrap()]
        );
        assert_eq!(
            setting(&service, "ExecStart"),
            [format!("{} run OPS-002 --step {step} --yes", bin.display()).as_str()]
        );
        assert!(
            service.contains("#EnvironmentFile=/etc/sopkit/ops-002.env"),
            "{service}"
        );
        assert!(setting(&service, "EnvironmentFile").is_empty(), "{service}");

        let timer =
            std::fs::read_to_string(out_dir.path().join(format!("sopkit-ops-002-{step}.timer")))
                .unwrap();
        assert_eq!(setting(&timer, "OnCalendar"), [*calendar], "{step}");
        assert_eq!(setting(&timer, "RandomizedDelaySec"), ["14400"]);
        assert_eq!(setting(&timer, "FixedRandomDelay"), ["true"]);
        assert_eq!(setting(&timer, "Persistent"), ["true"]);
        assert_eq!(
            setting(&timer, "Unit"),
            [format!("sopkit-ops-002-{step}.service").as_str()]
        );
        calendars.push(calendar.to_string());
    }
    let status = std::fs::read_to_string(out_dir.path().join("sopkit-status.service")).unwrap();
    assert_eq!(
        setting(&status, "ExecStart"),
        [format!("{} status --notify", bin.display()).as_str()]
    );
    let status_timer = std::fs::read_to_string(out_dir.path().join("sopkit-status.timer")).unwrap();
    assert_eq!(setting(&status_timer, "OnCalendar"), ["*-*-* 05:00:00 UTC"]);
    calendars.push("*-*-* 05:00:00 UTC".into());

    if !have("systemd-analyze") {
        eprintln!("note: systemd-analyze is not installed; unit files checked as text only");
        return;
    }
    for c in &calendars {
        let o = Command::new("systemd-analyze")
            .args(["calendar", c])
            .output()
            .unwrap();
        assert!(o.status.success(), "{c}: {}", stderr(&o));
        assert!(
            stdout(&o).contains(&format!("Normalized form: {c}")),
            "{c}: {}",
            stdout(&o)
        );
    }
    let units: Vec<PathBuf> = want.iter().map(|n| out_dir.path().join(n)).collect();
    let o = Command::new("systemd-analyze")
        .arg("verify")
        .args(&units)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    let err = stderr(&o);
    let complaints: Vec<&str> = err.lines().filter(|l| l.contains("sopkit-")).collect();
    assert!(complaints.is_empty(), "{complaints:#?}");
}

#[test]
fn the_window_sets_start_spread_and_status_time() {
    let r = fixture();
    let o = r.sopkit(&[
        "schedule",
        "--emit",
        "systemd",
        "--window",
        "22:30-02:00",
        "--sopkit",
        "/opt/sopkit bin/sopkit",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    assert!(
        text.contains("### sopkit-ops-002-daily-dump.timer\n"),
        "{text}"
    );
    assert!(text.contains("OnCalendar=*-*-* 22:30:00 UTC\n"), "{text}");
    assert!(text.contains("RandomizedDelaySec=12600\n"), "{text}");
    // The status timer fires when the window closes.
    assert!(text.contains("OnCalendar=*-*-* 02:00:00 UTC\n"), "{text}");
    // A --sopkit path with a space is quoted for systemd.
    assert!(
        text.contains("ExecStart=\"/opt/sopkit bin/sopkit\" run OPS-002 --step daily-dump --yes"),
        "{text}"
    );
    assert!(!text.contains("ops-003"), "{text}");
}

#[test]
fn cron_lines_have_five_fields_escape_percent_and_parse_as_shell() {
    let r = fixture();
    let o = r.sopkit(&["schedule", "--emit", "cron", "--sopkit", "/usr/bin/sopkit"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    assert!(text.starts_with("# sopkit SLO schedule"), "{text}");
    let repo = canonical(&r);
    let jobs: Vec<&str> = text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty() && !l.starts_with("CRON_TZ="))
        .collect();
    // OPS-002's four SLOs, QA-001's one, and the status line.
    assert_eq!(jobs.len(), 6, "{text}");
    for line in &jobs {
        let fields: Vec<&str> = line.splitn(6, ' ').collect();
        assert_eq!(fields.len(), 6, "{line}");
        for f in &fields[..5] {
            assert!(
                !f.is_empty() && f.chars().all(|c| c.is_ascii_digit() || ",*-/".contains(c)),
                "{line}"
            );
        }
        let minute: u32 = fields[0].parse().unwrap();
        assert!(minute < 60, "{line}");
        let command = fields[5];
        assert!(
            command.starts_with(&format!("cd {} && ", repo.display())),
            "{line}"
        );
        // cron turns a bare % into a new line: every % must be escaped.
        assert!(!command.replace("\\%", "").contains('%'), "{line}");
        let sh = Command::new("sh")
            .args(["-n", "-c", &command.replace("\\%", "%")])
            .output()
            .unwrap();
        assert!(sh.status.success(), "{line}: {}", stderr(&sh));
    }
    for (step, _, schedule) in EXPECTED {
        let line = jobs
            .iter()
            .find(|l| l.ends_with(&format!("run OPS-002 --step {step} --yes")))
            .unwrap_or_else(|| panic!("no line for {step}:\n{text}"));
        assert!(line.starts_with(&format!("{schedule} cd ")), "{line}");
        assert!(
            line.contains(
                "sleep $(( $(od -An -N2 -tu2 /dev/urandom) \\% 14400 )) && /usr/bin/sopkit run"
            ),
            "{line}"
        );
    }
    assert!(
        jobs.iter()
            .any(|l| l.starts_with("0 5 * * * ") && l.ends_with("/usr/bin/sopkit status --notify")),
        "{text}"
    );
}

#[test]
fn kubernetes_cronjobs_parse_as_yaml_with_every_field() {
    let r = fixture();
    let o = r.sopkit(&[
        "schedule",
        "--emit",
        "kubernetes",
        "--image",
        "registry.example.com/sopkit:1.2",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    let repo = canonical(&r);
    let docs: Vec<serde_json::Value> = text
        .split("\n---\n")
        .map(|d| {
            serde_saphyr::from_str::<serde_json::Value>(d).unwrap_or_else(|e| panic!("{e}\n{d}"))
        })
        .collect();
    assert_eq!(docs.len(), 6, "{text}");
    for d in &docs {
        assert_eq!(d["apiVersion"], "batch/v1");
        assert_eq!(d["kind"], "CronJob");
        let name = d["metadata"]["name"].as_str().unwrap();
        assert!(name.len() <= 52 && name.starts_with("sopkit-"), "{name}");
        assert_eq!(d["spec"]["timeZone"], "Etc/UTC");
        assert_eq!(d["spec"]["concurrencyPolicy"], "Forbid");
        assert!(d["spec"]["startingDeadlineSeconds"].as_u64().unwrap() > 0);
        let pod = &d["spec"]["jobTemplate"]["spec"]["template"]["spec"];
        assert_eq!(pod["restartPolicy"], "Never");
        let c = &pod["containers"][0];
        assert_eq!(c["image"], "registry.example.com/sopkit:1.2");
        assert_eq!(c["workingDir"], repo.to_str().unwrap());
    }
    for (step, _, schedule) in EXPECTED {
        let d = docs
            .iter()
            .find(|d| d["metadata"]["name"] == format!("sopkit-ops-002-{step}").as_str())
            .unwrap_or_else(|| panic!("no CronJob for {step}"));
        assert_eq!(d["spec"]["schedule"], *schedule);
        assert_eq!(d["spec"]["startingDeadlineSeconds"], 14400);
        let c = &d["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0];
        assert_eq!(
            c["command"],
            serde_json::json!(["sopkit", "run", "OPS-002", "--step", step, "--yes"])
        );
        assert_eq!(c["envFrom"][0]["secretRef"]["name"], "sopkit-ops-002");
    }
    let status = docs
        .iter()
        .find(|d| d["metadata"]["name"] == "sopkit-status")
        .unwrap();
    assert_eq!(status["spec"]["schedule"], "0 5 * * *");

    // --out writes one manifest per CronJob, which kubectl apply -f DIR reads.
    let out_dir = tempfile::tempdir().unwrap();
    let o = r.sopkit(&[
        "schedule",
        "--emit",
        "kubernetes",
        "--out",
        out_dir.path().to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let files = std::fs::read_dir(out_dir.path()).unwrap().count();
    assert_eq!(files, 6);
    let one =
        std::fs::read_to_string(out_dir.path().join("sopkit-ops-002-integrity.yaml")).unwrap();
    let v: serde_json::Value = serde_saphyr::from_str(&one).unwrap();
    assert_eq!(v["spec"]["schedule"], "0 1 1 1,4,7,10 *");
    assert_eq!(
        v["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["image"],
        "sopkit:latest"
    );
}

#[test]
fn a_bad_window_is_an_error_naming_it() {
    let r = fixture();
    for bad in ["25:00-01:00", "01:00", "03:00-03:00"] {
        let o = r.sopkit(&["schedule", "--emit", "cron", "--window", bad]);
        assert_eq!(o.status.code(), Some(2), "{bad}");
        assert!(
            stderr(&o).contains(&format!("`{bad}`")),
            "{bad}: {}",
            stderr(&o)
        );
        assert!(stdout(&o).is_empty());
    }
}

fn files_in(dir: &Path) -> usize {
    std::fs::read_dir(dir).map_or(0, |d| d.count())
}

#[test]
fn no_slos_at_all_is_a_note_and_exit_0() {
    let r = Repo::with_clean_files();
    r.replace(
        crate::support::SOP,
        "slos:\n  - { step: backup, every: 1d }\n",
        "",
    );
    r.write("procedures/OPS-003-manual.md", NO_SLOS);
    r.commit("no SLOs");
    for emit in ["systemd", "cron", "kubernetes"] {
        let o = r.sopkit(&["schedule", "--emit", emit]);
        assert!(o.status.success(), "{emit}: {}", stderr(&o));
        assert!(stdout(&o).is_empty(), "{emit}: {}", stdout(&o));
        assert!(stderr(&o).contains("no SLOs to schedule"), "{}", stderr(&o));
    }
    let out_dir = tempfile::tempdir().unwrap();
    let target = out_dir.path().join("units");
    let o = r.sopkit(&[
        "schedule",
        "--emit",
        "systemd",
        "--out",
        target.to_str().unwrap(),
    ]);
    assert!(o.status.success());
    assert_eq!(files_in(&target), 0);
}

#[test]
fn draft_sops_are_scheduled_with_a_warning() {
    let r = fixture();
    let o = r.sopkit(&["schedule", "--emit", "cron"]);
    assert!(o.status.success());
    // QA-001 is a draft: its job is emitted, and the warning says `sopkit run` will refuse it.
    assert!(stdout(&o).contains("run QA-001 --step backup --yes"));
    assert!(
        stderr(&o).contains("QA-001: status is draft"),
        "{}",
        stderr(&o)
    );
    assert!(!stderr(&o).contains("OPS-002"), "{}", stderr(&o));
}
