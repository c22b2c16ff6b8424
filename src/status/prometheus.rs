//! The status as Prometheus text exposition (format 0.0.4), for node_exporter's textfile
//! collector: write it to `DIR/sopkit.prom` (atomically) from a timer.

use super::{Status, parse_time};

/// A label value, escaped as the format requires.
fn label(v: &str) -> String {
    v.replace('\\', r"\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

struct Metrics(String);

impl Metrics {
    fn family(&mut self, name: &str, help: &str) {
        self.0
            .push_str(&format!("# HELP {name} {help}\n# TYPE {name} gauge\n"));
    }
    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        let l: Vec<String> = labels
            .iter()
            .map(|(k, v)| format!("{k}=\"{}\"", label(v)))
            .collect();
        let l = if l.is_empty() {
            String::new()
        } else {
            format!("{{{}}}", l.join(","))
        };
        self.0.push_str(&format!("{name}{l} {value}\n"));
    }
}

fn b(x: bool) -> f64 {
    if x { 1.0 } else { 0.0 }
}

pub fn render(s: &Status) -> String {
    let mut m = Metrics(String::new());
    m.family(
        "sopkit_sop_effective",
        "1 when the SOP's current content is an effective (approved) revision.",
    );
    for p in &s.sops {
        m.sample("sopkit_sop_effective", &[("sop", &p.id)], b(p.effective));
    }
    m.family(
        "sopkit_sop_pending_approvals",
        "Required roles that have not approved the SOP's current content.",
    );
    for p in &s.sops {
        m.sample(
            "sopkit_sop_pending_approvals",
            &[("sop", &p.id)],
            p.pending_roles.len() as f64,
        );
    }
    m.family(
        "sopkit_sop_review_overdue",
        "1 when the SOP's periodic review is overdue.",
    );
    for p in &s.sops {
        m.sample(
            "sopkit_sop_review_overdue",
            &[("sop", &p.id)],
            b(p.review_overdue),
        );
    }
    m.family(
        "sopkit_slo_last_success_timestamp_seconds",
        "When the SLO's step last succeeded (0: never).",
    );
    for l in &s.slos {
        let t = l.last_success.as_deref().and_then(parse_time).unwrap_or(0);
        m.sample(
            "sopkit_slo_last_success_timestamp_seconds",
            &[("sop", &l.sop), ("step", &l.step)],
            t as f64,
        );
    }
    m.family("sopkit_slo_overdue", "1 when the SLO's step is overdue.");
    for l in &s.slos {
        m.sample(
            "sopkit_slo_overdue",
            &[("sop", &l.sop), ("step", &l.step)],
            b(l.overdue),
        );
    }
    for (name, help, get) in [
        (
            "sopkit_backup_copies",
            "Copies of the SOP's data, the original counted.",
            (|x: &super::BackupSet| x.total_copies as f64) as fn(&super::BackupSet) -> f64,
        ),
        (
            "sopkit_backup_media",
            "Kinds of medium holding copies.",
            |x| x.media as f64,
        ),
        ("sopkit_backup_offsite_copies", "Off-site copies.", |x| {
            x.off_site as f64
        }),
        ("sopkit_backup_offline_copies", "Offline copies.", |x| {
            x.offline as f64
        }),
        (
            "sopkit_backup_verification_errors",
            "Verification steps whose latest run failed or that never ran.",
            |x| x.errors.len() as f64,
        ),
        (
            "sopkit_backup_rule_32110",
            "1 when the 3-2-1-1-0 rule holds.",
            |x| b(x.rule_32110),
        ),
    ] {
        m.family(name, help);
        for set in &s.backup_sets {
            m.sample(name, &[("sop", &set.sop)], get(set));
        }
    }
    m.family(
        "sopkit_retention_violations",
        "Copies kept past their retention or gone before it ended.",
    );
    m.sample("sopkit_retention_violations", &[], s.retention.len() as f64);
    m.family(
        "sopkit_training_missing",
        "Role holders who have not acknowledged an SOP's effective revision.",
    );
    m.sample("sopkit_training_missing", &[], s.training.len() as f64);
    m.family("sopkit_ledger_ok", "1 when the evidence ledger verifies.");
    m.sample("sopkit_ledger_ok", &[], b(s.ledger.ok));
    m.family("sopkit_alerts", "Things overdue or broken.");
    m.sample("sopkit_alerts", &[], s.alerts.len() as f64);
    m.0
}

#[cfg(test)]
mod tests {
    #[test]
    fn labels_are_escaped() {
        assert_eq!(super::label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
