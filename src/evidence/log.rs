//! `sopkit evidence log`: the backup, restore-test and integrity-check log the policies ask
//! for, one row per executed step (a start record without an end is an interrupted run).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::signed::Judge;
use super::{Kind, Outcome, Record, parse_seq};

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Row {
    pub started: String,
    pub ended: Option<String>,
    pub sop: String,
    /// The effective version that ran; `None` when it ran from a draft (`allow_draft`).
    pub version: Option<u32>,
    /// Whether the step ran from content that was not an effective revision
    /// (`--allow-draft`); the row's `issues` say so too.
    pub allow_draft: bool,
    pub step: String,
    pub target: Option<String>,
    pub operator: String,
    pub host: String,
    /// Bytes of the artifacts the step produced.
    pub size: u64,
    pub result: String,
    pub exit_status: Option<i32>,
    /// Who signed the run's records ("Name (id)"), `unattributed`, or `NOT ATTRIBUTABLE`
    /// (the issues say why); `-` when the log was read without a policy to judge by.
    pub signed_by: String,
    pub issues: Vec<String>,
    pub run: String,
    /// The start record's place in its writer's chain (orders runs within one second).
    #[serde(skip)]
    pub seq: u64,
}

/// Filters for the log.
#[derive(Debug, Default)]
pub struct Filter {
    pub sop: Option<String>,
    pub step: Option<String>,
    /// `YYYY-MM-DD`: runs started on or after that day.
    pub since: Option<String>,
}

/// The writer folder a record file lies in.
fn writer_of(record: &Path) -> String {
    record
        .parent()
        .and_then(|d| d.file_name())
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Every readable record of every writer, read and parsed in parallel, and the record files
/// that could not be read or parsed (`verify` says what is wrong with them). With a judge,
/// each record's signature is judged too: its attribution set, or why it has none.
pub fn records(
    evidence: &Path,
    judge: Option<&Judge>,
) -> (Vec<(Record, Option<String>)>, Vec<PathBuf>) {
    use rayon::prelude::*;
    let paths: Vec<PathBuf> = std::fs::read_dir(evidence)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|w| w.file_type().is_ok_and(|t| t.is_dir()))
        .flat_map(|w| std::fs::read_dir(w.path()).into_iter().flatten().flatten())
        .filter(|e| parse_seq(&e.file_name().to_string_lossy()).is_some())
        .map(|e| e.path())
        .collect();
    let read: Vec<Result<(Record, Option<String>), &PathBuf>> = paths
        .par_iter()
        .map(|p| {
            let bytes = std::fs::read(p).map_err(|_| p)?;
            let mut r = serde_json::from_slice::<Record>(&bytes).map_err(|_| p)?;
            r.writer = writer_of(p);
            let mut why = None;
            if let Some(judge) = judge {
                let mut sig = p.as_os_str().to_owned();
                sig.push(".sig");
                let sig = std::fs::read(PathBuf::from(sig)).ok();
                match judge.judge(&r.writer, &r, &bytes, sig.as_deref()) {
                    Ok(a) => r.attribution = Some(a),
                    Err(m) => why = Some(m),
                }
            }
            Ok((r, why))
        })
        .collect();
    let mut records = Vec::with_capacity(read.len());
    let mut unreadable = Vec::new();
    for r in read {
        match r {
            Ok(r) => records.push(r),
            Err(p) => unreadable.push(p.clone()),
        }
    }
    unreadable.sort();
    (records, unreadable)
}

/// The log: its rows, and the record files left out of it because they could not be read.
#[derive(Debug, Default)]
pub struct Log {
    pub rows: Vec<Row>,
    pub unreadable: Vec<PathBuf>,
}

/// The issue a run from a draft gets: the policies require approved procedures.
pub const DRAFT_ISSUE: &str = "ran from an unapproved draft (--allow-draft)";

/// The log rows (starts paired with ends), and the record files it had to leave out. With a
/// judge, each row says who signed the run.
pub fn read(evidence: &Path, filter: &Filter, judge: Option<&Judge>) -> Log {
    let (records, unreadable) = records(evidence, judge);
    let mut runs: BTreeMap<(String, String), (Option<Record>, Option<Record>)> = BTreeMap::new();
    // Why a run's records cannot be attributed, per run.
    let mut unattributable: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
    for (r, why) in records {
        let key = (r.writer.clone(), r.run.clone());
        if let Some(why) = why {
            let kind = if r.kind == Kind::Start {
                "start"
            } else {
                "end"
            };
            unattributable
                .entry(key.clone())
                .or_default()
                .push(format!("its {kind} record {why}"));
        }
        let slot = runs.entry(key).or_default();
        match r.kind {
            Kind::Start => slot.0 = Some(r),
            Kind::End => slot.1 = Some(r),
        }
    }
    let mut out: Vec<Row> = runs
        .into_iter()
        .filter_map(|(key, (start, end))| {
            let base = end.as_ref().or(start.as_ref())?.clone();
            let started = start
                .as_ref()
                .map_or(base.started.clone(), |s| s.started.clone());
            let (result, mut issues) = match end.as_ref().and_then(|e| e.outcome) {
                Some(o) => {
                    let issues: Vec<String> = end
                        .as_ref()
                        .map(|e| {
                            e.verification
                                .iter()
                                .filter(|v| v.starts_with("FAILED"))
                                .cloned()
                                .collect()
                        })
                        .unwrap_or_default();
                    (o.as_str().to_string(), issues)
                }
                None => (
                    Outcome::Interrupted.as_str().to_string(),
                    vec!["no end record: the run was killed or the machine stopped".to_string()],
                ),
            };
            if base.allow_draft {
                issues.push(DRAFT_ISSUE.to_string());
            }
            let why = unattributable.remove(&key).unwrap_or_default();
            let signed_by = if !why.is_empty() {
                "NOT ATTRIBUTABLE".to_string()
            } else if judge.is_none() {
                "-".to_string()
            } else {
                base.attribution
                    .as_ref()
                    .map_or("unattributed".into(), |a| a.label())
            };
            issues.extend(why);
            Some(Row {
                started,
                ended: end.as_ref().and_then(|e| e.ended.clone()),
                sop: base.sop.clone(),
                version: base.version,
                allow_draft: base.allow_draft,
                step: base.step.clone(),
                target: base.target.clone(),
                operator: base.operator.clone(),
                host: base.host.clone(),
                size: base
                    .files
                    .iter()
                    .filter(|f| f.role == "artifact")
                    .map(|f| f.size)
                    .sum(),
                result,
                exit_status: end.as_ref().and_then(|e| e.exit_status),
                signed_by,
                issues,
                run: base.run.clone(),
                seq: start.as_ref().map_or(base.seq, |s| s.seq),
            })
        })
        .filter(|r| filter.sop.as_ref().is_none_or(|s| &r.sop == s))
        .filter(|r| filter.step.as_ref().is_none_or(|s| &r.step == s))
        .filter(|r| {
            filter
                .since
                .as_ref()
                .is_none_or(|d| r.started.as_str() >= d.as_str())
        })
        .collect();
    out.sort_by(|a, b| {
        (&a.started, &a.host, &a.operator, a.seq).cmp(&(&b.started, &b.host, &b.operator, b.seq))
    });
    Log {
        rows: out,
        unreadable,
    }
}

/// The log rows alone (see [`read`]).
pub fn rows(evidence: &Path, filter: &Filter, judge: Option<&Judge>) -> Vec<Row> {
    read(evidence, filter, judge).rows
}

/// The lower bound `--since` gives, in the form records keep their start times (UTC,
/// `YYYY-MM-DDTHH:MM:SSZ`, compared as text): a day (`2026-12-01`, from its start) or an
/// RFC 3339 time in any offset (`2026-12-01T09:30:00+01:00`). `None` when it is neither.
pub fn since_bound(given: &str) -> Option<String> {
    use time::format_description::well_known::Rfc3339;
    let day = time::macros::format_description!("[year]-[month]-[day]");
    if time::Date::parse(given, day).is_ok() {
        return Some(given.to_string());
    }
    let at = time::OffsetDateTime::parse(given, &Rfc3339).ok()?;
    let utc = at.to_offset(time::UtcOffset::UTC);
    let form = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");
    utc.format(form).ok()
}

/// One CSV field, quoted as RFC 4180 asks where it holds a comma, quote or line break.
pub fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// The rows as CSV (RFC 4180 quoting).
pub fn csv(rows: &[Row]) -> String {
    let q = csv_field;
    let mut s = String::from(
        "started,ended,sop,version,step,target,operator,host,size,result,exit_status,signed_by,issues\n",
    );
    for r in rows {
        let fields = [
            r.started.clone(),
            r.ended.clone().unwrap_or_default(),
            r.sop.clone(),
            r.version.map(|v| v.to_string()).unwrap_or_default(),
            r.step.clone(),
            r.target.clone().unwrap_or_default(),
            r.operator.clone(),
            r.host.clone(),
            r.size.to_string(),
            r.result.clone(),
            r.exit_status.map(|v| v.to_string()).unwrap_or_default(),
            r.signed_by.clone(),
            r.issues.join("; "),
        ];
        s.push_str(&fields.iter().map(|f| q(f)).collect::<Vec<_>>().join(","));
        s.push('\n');
    }
    s
}

/// The rows as a table for people.
pub fn human(rows: &[Row]) -> String {
    let mut s = format!(
        "{:<20} {:<10} {:<7} {:<24} {:<14} {:>10} {:<11} {:>6} {:<24} {}\n",
        "started (UTC)",
        "sop",
        "version",
        "step",
        "target",
        "size",
        "result",
        "exit",
        "signed by",
        "issues"
    );
    for r in rows {
        s.push_str(&format!(
            "{:<20} {:<10} {:<7} {:<24} {:<14} {:>10} {:<11} {:>6} {:<24} {}\n",
            r.started,
            r.sop,
            r.version.map_or("draft".to_string(), |v| format!("v{v}")),
            r.step,
            r.target.as_deref().unwrap_or("-"),
            indicatif::HumanBytes(r.size).to_string(),
            r.result,
            r.exit_status.map_or("-".to_string(), |v| v.to_string()),
            r.signed_by,
            r.issues.join("; ")
        ));
    }
    s
}

/// Per step of SOP `sop`, the artifacts of its latest successful run from the same revision
/// (content `content_sha256`), taken only from records that count: in an intact place of
/// their chain and attributed by `judge` (signed by someone the policy lists, or from a
/// writer allowed to write unsigned). Also the record files left out because something is
/// wrong with them (`evidence verify` says what).
pub fn latest_artifacts(
    evidence: &Path,
    sop: &str,
    content_sha256: &str,
    judge: &crate::evidence::signed::Judge,
) -> (
    BTreeMap<String, Vec<crate::evidence::FileRef>>,
    Vec<PathBuf>,
) {
    let (report, records) =
        crate::evidence::verify::verify_and_read(evidence, BTreeSet::new, judge);
    let mut left_out: Vec<PathBuf> = report.problems.into_iter().map(|p| p.path).collect();
    left_out.sort();
    left_out.dedup();
    let mut best: BTreeMap<String, (String, Vec<crate::evidence::FileRef>)> = BTreeMap::new();
    for r in records {
        if r.sop != sop
            || r.content_sha256 != content_sha256
            || r.kind != Kind::End
            || r.outcome != Some(Outcome::Succeeded)
        {
            continue;
        }
        let ended = r.ended.clone().unwrap_or_default();
        let files: Vec<crate::evidence::FileRef> = r
            .files
            .iter()
            .filter(|f| f.role == "artifact")
            .cloned()
            .collect();
        if best.get(&r.step).is_none_or(|(t, _)| ended >= *t) {
            best.insert(r.step.clone(), (ended, files));
        }
    }
    let latest = best.into_iter().map(|(k, (_, v))| (k, v)).collect();
    (latest, left_out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::evidence::{FileRef, Writer, tests::record};

    #[test]
    fn a_row_shows_version_size_and_a_draft_run_as_an_issue() {
        let d = tempfile::tempdir().unwrap();
        let w = Writer::open(d.path(), "ann@h").unwrap();
        let l = w.lock().unwrap();
        let end = |run: &str, version: Option<u32>| {
            let mut r = record();
            r.run = run.into();
            r.kind = Kind::End;
            r.version = version;
            r.allow_draft = version.is_none();
            r.outcome = Some(Outcome::Succeeded);
            r.exit_status = Some(0);
            r.files.push(FileRef {
                role: "artifact".into(),
                name: "a.tar.zst".into(),
                size: 1536,
                sha256: "ab".into(),
            });
            r
        };
        l.append(end("approved", Some(3)), &[]).unwrap();
        l.append(end("draft", None), &[]).unwrap();
        let rows = rows(d.path(), &Filter::default(), None);
        let by_run = |run: &str| rows.iter().find(|r| r.run == run).unwrap();
        assert!(by_run("approved").issues.is_empty());
        assert!(!by_run("approved").allow_draft);
        assert_eq!(by_run("draft").issues, vec![DRAFT_ISSUE.to_string()]);
        assert!(by_run("draft").allow_draft);
        let table = human(&rows);
        let line = |run: &str| {
            let v = if run == "draft" { " draft " } else { " v3 " };
            table.lines().find(|l| l.contains(v)).unwrap().to_string()
        };
        assert!(line("approved").contains("1.50 KiB"), "{table}");
        assert!(line("draft").ends_with(DRAFT_ISSUE), "{table}");
        assert!(csv(&rows).contains(DRAFT_ISSUE));
    }

    #[test]
    fn since_takes_a_day_or_a_time_in_any_offset_as_utc() {
        assert_eq!(since_bound("2026-12-01").as_deref(), Some("2026-12-01"));
        assert_eq!(
            since_bound("2026-12-01T09:30:00+01:00").as_deref(),
            Some("2026-12-01T08:30:00Z")
        );
        assert_eq!(
            since_bound("2026-12-01T00:15:00-02:00").as_deref(),
            Some("2026-12-01T02:15:00Z")
        );
        // Compared as text with a record's start, a day bound lets that whole day through.
        assert!("2026-12-01T00:00:00Z" >= since_bound("2026-12-01").unwrap().as_str());
        for bad in ["yesterday", "2026-13-01", "2026-12-01 09:30", ""] {
            assert_eq!(since_bound(bad), None, "{bad}");
        }
    }
}
