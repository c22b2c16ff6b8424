//! Notifications through a real SMTP server (aiosmtpd), a real HTTP endpoint and a command,
//! from failed runs and from `status --notify`.

use std::process::Command;

use crate::services;
use crate::support::{Repo, stderr, stdout};

const PEOPLE: &str = "people:\n  - id: bob\n    name: Bob Example\n    email: bob@example.com\n    keys: []\n    roles:\n      - { role: operator, from: 2019-01-01 }\n  - id: eve\n    name: Eve Example\n    email: eve@example.com\n    keys: []\n    roles:\n      - { role: auditor, from: 2019-01-01 }\n";

const SOP: &str = "---\nid: OPS-300\ntitle: Notified\nowner: operator\nslos:\n  - { step: fails, every: 1d }\n---\n\n# Notified\n\n```sh {step=fails}\necho about to fail; exit 4\n```\n";

fn repo(notify: &str) -> Repo {
    let r = Repo::empty();
    r.write("sopkit.toml", notify);
    r.write("roles/people.yaml", PEOPLE);
    r.write("procedures/OPS-300-notified.md", SOP);
    r.commit("notified");
    r
}

fn run_fails(r: &Repo) -> std::process::Output {
    Command::new(crate::support::sopkit_bin())
        .args(["run", "OPS-300", "--allow-draft", "--yes"])
        .current_dir(r.path())
        .output()
        .unwrap()
}

fn end_record(r: &Repo) -> serde_json::Value {
    let out = r.sopkit(&["evidence", "log", "--format", "json"]);
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    rows.last().unwrap().clone()
}

#[test]
fn a_failed_step_tells_the_owner_role_by_mail_webhook_and_command() {
    let mail = services::smtp();
    let hook = services::webhook();
    let r = repo(&format!(
        "[notify]\nwebhook = \"http://127.0.0.1:{}/sopkit\"\ncommand = \"cat > notified.json\"\n\n[notify.smtp]\nhost = \"127.0.0.1\"\nport = {}\nfrom = \"sopkit <sopkit@example.com>\"\nstarttls = false\n",
        hook.port, mail.port
    ));
    let out = run_fails(&r);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    for channel in ["smtp", "webhook", "command"] {
        assert!(
            stderr(&out).contains(&format!("ok: notified by {channel}")),
            "{}",
            stderr(&out)
        );
    }
    // The mail went to the holder of the owner role, and only to him.
    let mails = mail.mails();
    assert_eq!(mails.len(), 1, "{mails:?}");
    assert_eq!(mails[0].0.trim(), "bob@example.com");
    assert!(
        mails[0]
            .1
            .contains("Subject: [sopkit] OPS-300 fails: step-failed"),
        "{}",
        mails[0].1
    );
    assert!(mails[0].1.contains("exit 4"), "{}", mails[0].1);
    // The webhook's body.
    let posts = hook.posts();
    assert_eq!(posts.len(), 1);
    assert_eq!(posts[0]["event"], "step-failed");
    assert_eq!(posts[0]["sop"], "OPS-300");
    assert_eq!(posts[0]["step"], "fails");
    assert_eq!(posts[0]["recipients"][0]["email"], "bob@example.com");
    // The command got the same JSON.
    let cmd: serde_json::Value =
        serde_json::from_slice(&std::fs::read(r.path().join("notified.json")).unwrap()).unwrap();
    assert_eq!(cmd["step"], "fails");
    // The evidence says who was told.
    let row = end_record(&r);
    assert_eq!(row["result"], "failed");
    let writer = std::fs::read_dir(r.path().join("evidence"))
        .unwrap()
        .flatten()
        .find(|e| e.path().is_dir())
        .unwrap()
        .path();
    let end = std::fs::read_to_string(writer.join("000002.json")).unwrap();
    assert!(
        end.contains("ok: notified by smtp: mail to bob@example.com"),
        "{end}"
    );
    assert!(end.contains("ok: notified by webhook: POST"), "{end}");
    let v = r.sopkit(&["evidence", "verify"]);
    assert!(v.status.success(), "{}", stdout(&v));
}

#[test]
fn mail_goes_over_starttls_with_a_login_and_an_untrusted_server_gets_none() {
    let certs = tempfile::tempdir().unwrap();
    services::tls_certificates(certs.path());
    let mail = services::smtp_starttls(certs.path());
    // STARTTLS is the default; the login comes from the environment.
    let r = repo(&format!(
        "[notify.smtp]\nhost = \"127.0.0.1\"\nport = {}\nfrom = \"sopkit <sopkit@example.com>\"\nuser_env = \"MAIL_USER\"\npassword_env = \"MAIL_PASSWORD\"\n",
        mail.port
    ));
    let ca = certs.path().join("ca.pem");
    let run = |ca: Option<&std::path::Path>, password: &str| {
        let mut cmd = Command::new(crate::support::sopkit_bin());
        cmd.args(["run", "OPS-300", "--allow-draft", "--yes"])
            .current_dir(r.path())
            .env("MAIL_USER", services::SMTP_LOGIN)
            .env("MAIL_PASSWORD", password)
            .env_remove("SSL_CERT_DIR");
        match ca {
            Some(ca) => cmd.env("SSL_CERT_FILE", ca),
            None => cmd.env_remove("SSL_CERT_FILE"),
        };
        cmd.output().unwrap()
    };
    // A certificate from a CA the client does not trust: nothing is sent, and it says so.
    let out = run(None, services::SMTP_PASSWORD);
    assert!(
        stderr(&out).contains("FAILED: notification by smtp could not be delivered"),
        "{}",
        stderr(&out)
    );
    assert!(stderr(&out).contains("certificate"), "{}", stderr(&out));
    // Trusted, but the wrong password.
    let out = run(Some(&ca), "not-the-password");
    assert!(
        stderr(&out).contains("FAILED: notification by smtp could not be delivered"),
        "{}",
        stderr(&out)
    );
    assert!(stderr(&out).contains("535"), "{}", stderr(&out));
    assert!(mail.mails().is_empty());
    // Trusted and logged in: delivered (the server takes no mail before STARTTLS and a
    // login).
    let out = run(Some(&ca), services::SMTP_PASSWORD);
    assert!(
        stderr(&out).contains("ok: notified by smtp: mail to bob@example.com"),
        "{}",
        stderr(&out)
    );
    let mails = mail.mails();
    assert_eq!(mails.len(), 1, "{mails:?}");
    assert_eq!(mails[0].0.trim(), "bob@example.com");
    // The password never reaches the evidence.
    let v = r.sopkit(&["evidence", "verify"]);
    assert!(v.status.success(), "{}", stdout(&v));
    let mut evidence = String::new();
    for writer in std::fs::read_dir(r.path().join("evidence"))
        .unwrap()
        .flatten()
    {
        if writer.path().is_dir() {
            for f in std::fs::read_dir(writer.path()).unwrap().flatten() {
                evidence.push_str(&String::from_utf8_lossy(&std::fs::read(f.path()).unwrap()));
            }
        }
    }
    assert!(evidence.contains("notified by smtp"), "{evidence}");
    assert!(!evidence.contains(services::SMTP_PASSWORD));
}

#[test]
fn an_undeliverable_notification_is_reported_and_recorded() {
    let closed = services::free_port();
    let r = repo(&format!(
        "[notify]\nwebhook = \"http://127.0.0.1:{closed}/sopkit\"\n"
    ));
    let out = run_fails(&r);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("FAILED: notification by webhook could not be delivered"),
        "{}",
        stderr(&out)
    );
    let row = end_record(&r);
    assert!(
        row["issues"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i.as_str().unwrap().contains("notification by webhook")),
        "{row}"
    );
}

#[test]
fn status_notify_tells_each_new_alert_once_and_retries_failed_deliveries() {
    let hook = services::webhook();
    let r = repo(&format!(
        "[notify]\nroles = [\"auditor\"]\nwebhook = \"http://127.0.0.1:{}/sopkit\"\n",
        hook.port
    ));
    let status = |r: &Repo| {
        Command::new(crate::support::sopkit_bin())
            .args(["status", "--notify", "--format", "json"])
            .current_dir(r.path())
            .output()
            .unwrap()
    };
    // The SLO has never succeeded: one alert, told to the configured role.
    let out = status(&r);
    assert_eq!(out.status.code(), Some(1));
    let posts = hook.posts();
    assert_eq!(posts.len(), 1, "{posts:?}");
    assert_eq!(posts[0]["event"], "status-alert");
    assert!(
        posts[0]["message"]
            .as_str()
            .unwrap()
            .contains("SLO fails every 1d is overdue")
    );
    assert_eq!(posts[0]["recipients"][0]["person"], "eve");
    // Told once: the next run sends nothing new.
    let _ = status(&r);
    assert_eq!(hook.posts().len(), 1);

    // Now the webhook is gone: a new alert cannot be delivered; it is reported, recorded
    // and tried again on the next run.
    let closed = services::free_port();
    r.write(
        "sopkit.toml",
        &format!("[notify]\nroles = [\"auditor\"]\nwebhook = \"http://127.0.0.1:{closed}/x\"\n"),
    );
    // A changed SLO is a new alert.
    r.write(
        "procedures/OPS-300-notified.md",
        &SOP.replace("every: 1d", "every: 2d"),
    );
    let out = status(&r);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("FAILED: notification by webhook could not be delivered"),
        "{}",
        stderr(&out)
    );
    let state_file = r.path().join(".git/sopkit-notified.json");
    let state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&state_file).unwrap()).unwrap();
    assert!(!state["failures"].as_array().unwrap().is_empty(), "{state}");
    let out = status(&r);
    assert!(
        stderr(&out).contains("FAILED: notification by webhook"),
        "a failed delivery is tried again: {}",
        stderr(&out)
    );
    // A record of what was told that is damaged, or cannot be written, is said (the alerts
    // are then told again, never dropped).
    std::fs::write(&state_file, "{ not json").unwrap();
    let out = status(&r);
    assert!(
        stderr(&out).contains("is not a notification record")
            && stderr(&out).contains("every alert is told again"),
        "{}",
        stderr(&out)
    );
    std::fs::remove_file(&state_file).unwrap();
    std::fs::create_dir(&state_file).unwrap();
    let out = status(&r);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("which alerts were told could not be recorded in"),
        "{}",
        stderr(&out)
    );
}
