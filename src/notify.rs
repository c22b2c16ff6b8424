//! Notifications: when a step fails, times out or is interrupted, and when `sopkit status
//! --notify` finds something newly overdue or broken, the holders of the responsible role
//! are told by SMTP (lettre), a webhook (an HTTP POST of the event as JSON, ureq) or a
//! command (the JSON on its standard input), as `[notify]` in `sopkit.toml` says.
//!
//! Every attempt comes back as a [`Delivery`]; one that fails is reported and recorded by
//! the caller (in the step's evidence record, or in the notification state of `status`),
//! never dropped.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde::Serialize;

use crate::config::{Notify, Smtp};
use crate::corpus::Corpus;

/// Someone who is told.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Recipient {
    pub person: String,
    pub name: String,
    pub email: String,
    pub role: String,
}

/// What happened (the webhook's and the command's JSON body).
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    /// `step-failed`, `step-timed-out`, `step-interrupted` or `status-alert`.
    pub event: String,
    pub sop: String,
    pub step: Option<String>,
    pub message: String,
    /// UTC, RFC 3339.
    pub time: String,
    pub host: String,
    /// The evidence record of the step, when there is one.
    pub record: Option<String>,
    pub recipients: Vec<Recipient>,
    pub sopkit_version: String,
}

/// One attempt to deliver an event.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Delivery {
    /// `smtp`, `webhook` or `command`.
    pub channel: String,
    pub ok: bool,
    pub detail: String,
}

impl Delivery {
    /// The line for an evidence record or a report.
    pub fn line(&self) -> String {
        if self.ok {
            format!("ok: notified by {}: {}", self.channel, self.detail)
        } else {
            format!(
                "FAILED: notification by {} could not be delivered: {}",
                self.channel, self.detail
            )
        }
    }
}

/// The holders, today, of the configured roles (default: the SOP's owner role).
pub fn recipients(corpus: &Corpus, sop: &str, today: time::Date) -> Vec<Recipient> {
    let roles: Vec<String> = if corpus.config.notify.roles.is_empty() {
        corpus
            .sops
            .iter()
            .find(|s| s.id == sop)
            .and_then(|s| corpus.docs[s.doc].sop.as_ref())
            .and_then(|m| m.owner.as_ref())
            .map(|o| vec![o.value.clone()])
            .unwrap_or_default()
    } else {
        corpus.config.notify.roles.clone()
    };
    let mut out: Vec<Recipient> = Vec::new();
    for role in &roles {
        for p in corpus.people.iter().filter(|p| p.holds(role, today)) {
            if !out.iter().any(|r| r.person == p.id.value) {
                out.push(Recipient {
                    person: p.id.value.clone(),
                    name: p.name.clone(),
                    email: p.email.clone(),
                    role: role.clone(),
                });
            }
        }
    }
    out
}

/// Sends `event` through every configured channel.
pub fn send(cfg: &Notify, event: &Event) -> Vec<Delivery> {
    let mut out = Vec::new();
    if let Some(smtp) = &cfg.smtp {
        out.push(by_smtp(smtp, event));
    }
    if let Some(url) = &cfg.webhook {
        out.push(by_webhook(url, event));
    }
    if let Some(cmd) = &cfg.command {
        out.push(by_command(cmd, event));
    }
    out
}

fn subject(event: &Event) -> String {
    match &event.step {
        Some(step) => format!("[sopkit] {} {}: {}", event.sop, step, event.event),
        None => format!("[sopkit] {}: {}", event.sop, event.message),
    }
}

fn body(event: &Event) -> String {
    let mut b = format!(
        "{}\n\nSOP:   {}\nStep:  {}\nWhen:  {}\nHost:  {}\n",
        event.message,
        event.sop,
        event.step.as_deref().unwrap_or("-"),
        event.time,
        event.host
    );
    if let Some(r) = &event.record {
        b.push_str(&format!("Evidence: {r}\n"));
    }
    b.push_str(&format!(
        "\nSent by sopkit {} to the holders of {}.\n",
        event.sopkit_version,
        event
            .recipients
            .iter()
            .map(|r| r.role.as_str())
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect::<Vec<_>>()
            .join(", ")
    ));
    b
}

fn by_smtp(smtp: &Smtp, event: &Event) -> Delivery {
    use lettre::Transport;
    let fail = |detail: String| Delivery {
        channel: "smtp".into(),
        ok: false,
        detail,
    };
    if event.recipients.is_empty() {
        return fail("no one holds the role to be told (roles/people.yaml)".into());
    }
    let from = match smtp.from.parse::<lettre::message::Mailbox>() {
        Ok(m) => m,
        Err(e) => return fail(format!("from `{}`: {e}", smtp.from)),
    };
    let mut builder = lettre::Message::builder()
        .from(from)
        .subject(subject(event));
    let mut to_list = Vec::new();
    for r in &event.recipients {
        match format!("{} <{}>", r.name, r.email).parse::<lettre::message::Mailbox>() {
            Ok(m) => {
                builder = builder.to(m);
                to_list.push(r.email.clone());
            }
            Err(e) => return fail(format!("address of {} `{}`: {e}", r.person, r.email)),
        }
    }
    let message = match builder.body(body(event)) {
        Ok(m) => m,
        Err(e) => return fail(e.to_string()),
    };
    let transport = if smtp.starttls {
        lettre::SmtpTransport::starttls_relay(&smtp.host).map(|b| b.port(smtp.port.unwrap_or(587)))
    } else {
        Ok(lettre::SmtpTransport::builder_dangerous(&smtp.host).port(smtp.port.unwrap_or(25)))
    };
    let mut transport = match transport {
        Ok(t) => t.timeout(Some(Duration::from_secs(30))),
        Err(e) => return fail(format!("{}: {e}", smtp.host)),
    };
    if let (Some(u), Some(p)) = (&smtp.user_env, &smtp.password_env) {
        match (std::env::var(u), std::env::var(p)) {
            (Ok(user), Ok(pass)) => {
                transport = transport.credentials(
                    lettre::transport::smtp::authentication::Credentials::new(user, pass),
                );
            }
            _ => return fail(format!("${u} and ${p} (the SMTP login) must be set")),
        }
    }
    match transport.build().send(&message) {
        Ok(_) => Delivery {
            channel: "smtp".into(),
            ok: true,
            detail: format!("mail to {} via {}", to_list.join(", "), smtp.host),
        },
        Err(e) => fail(format!("via {}: {e}", smtp.host)),
    }
}

fn by_webhook(url: &str, event: &Event) -> Delivery {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into();
    match agent.post(url).send_json(event) {
        Ok(resp) => Delivery {
            channel: "webhook".into(),
            ok: true,
            detail: format!("POST {url}: {}", resp.status()),
        },
        Err(e) => Delivery {
            channel: "webhook".into(),
            ok: false,
            detail: format!("POST {url}: {e}"),
        },
    }
}

fn by_command(cmd: &str, event: &Event) -> Delivery {
    let fail = |detail: String| Delivery {
        channel: "command".into(),
        ok: false,
        detail,
    };
    let json = serde_json::to_vec(event).unwrap_or_default();
    let child = Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .env("SOPKIT_NOTIFY_SOP", &event.sop)
        .env("SOPKIT_NOTIFY_EVENT", &event.event)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => return fail(format!("`{cmd}`: {e}")),
    };
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(&json);
    }
    match child.wait_with_output() {
        Ok(o) if o.status.success() => Delivery {
            channel: "command".into(),
            ok: true,
            detail: format!("`{cmd}` exited 0"),
        },
        Ok(o) => fail(format!(
            "`{cmd}` {}: {}",
            o.status,
            String::from_utf8_lossy(&o.stderr).trim()
        )),
        Err(e) => fail(format!("`{cmd}`: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event() -> Event {
        Event {
            event: "step-failed".into(),
            sop: "IT-1".into(),
            step: Some("dump".into()),
            message: "dump failed (exit 1)".into(),
            time: "2026-01-01T00:00:00Z".into(),
            host: "h".into(),
            record: None,
            recipients: vec![],
            sopkit_version: "0".into(),
        }
    }

    #[test]
    fn a_command_gets_the_event_and_its_failure_is_reported() {
        let d = tempfile::tempdir().unwrap();
        let out = d.path().join("got.json");
        let ok = by_command(&format!("cat > '{}'", out.display()), &event());
        assert!(ok.ok, "{ok:?}");
        let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
        assert_eq!(v["step"], "dump");
        let bad = by_command("echo nope >&2; exit 4", &event());
        assert!(!bad.ok);
        assert!(bad.line().starts_with("FAILED: notification by command"));
        assert!(bad.detail.contains("nope"), "{}", bad.detail);
    }

    #[test]
    fn mail_needs_someone_to_tell() {
        let smtp = Smtp {
            host: "127.0.0.1".into(),
            port: Some(1),
            from: "sopkit@example.com".into(),
            starttls: false,
            user_env: None,
            password_env: None,
        };
        let d = by_smtp(&smtp, &event());
        assert!(!d.ok && d.detail.contains("no one holds"), "{d:?}");
    }
}
