//! `sopkit status`: is the system of procedures being followed? Read from what sopkit
//! already has — the corpus, the approval history and the evidence ledger — at one moment
//! (`crate::time::now`).
//!
//! - per SOP: version, effective or draft, the roles whose approval is missing and who could
//!   give it, the next review and whether it is overdue;
//! - per SLO (`slos:` in front matter): the last successful run, when the next is due,
//!   whether it is overdue;
//! - per SOP with backup copies, the 3-2-1-1-0 rule from the evidence and the targets'
//!   declared medium, location and connectivity;
//! - retention: copies kept past their retention (not on legal hold) and copies gone before
//!   it ended;
//! - training: holders of the owner role and of roles the SOP links to who have not
//!   acknowledged its effective revision;
//! - the ledger's integrity.

pub mod html;
pub mod prometheus;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::approval::history::{self, History, Status as SigStatus};
use crate::config::{Target, TargetKind};
use crate::corpus::Corpus;
use crate::corpus::links::{Target as LinkTarget, resolve};
use crate::corpus::step::Step;
use crate::evidence::{self, Kind, Outcome, Record, Records};
use crate::workspace::Workspace;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Tree(#[from] crate::tree::Error),
    #[error(transparent)]
    History(#[from] history::Error),
    #[error(transparent)]
    Evidence(#[from] crate::evidence::Error),
}

/// Everything `status` reports. Times are UTC, RFC 3339.
#[derive(Debug, Serialize)]
pub struct Status {
    pub now: String,
    /// The commit the corpus was read at (`None`: the working tree of an unborn branch).
    pub commit: Option<String>,
    pub sops: Vec<SopStatus>,
    pub slos: Vec<SloStatus>,
    pub backup_sets: Vec<BackupSet>,
    pub retention: Vec<RetentionIssue>,
    pub training: Vec<TrainingGap>,
    pub ledger: Ledger,
    /// Reasons the exit status is 1 (empty: all is well).
    pub alerts: Vec<String>,
    /// Where the ledger is (for the dashboard's timelines).
    #[serde(skip)]
    pub evidence_dir: PathBuf,
}

#[derive(Debug, Serialize)]
pub struct SopStatus {
    pub id: String,
    pub title: String,
    pub path: String,
    /// The front matter's `status`.
    pub declared: String,
    /// The current content's version, when it is an effective revision.
    pub version: Option<u32>,
    pub effective: bool,
    /// The version that is effective now, when the current content is a newer draft.
    pub last_effective_version: Option<u32>,
    pub effective_since: Option<String>,
    /// Required roles that have not approved the current content.
    pub pending_roles: Vec<String>,
    /// For each pending role, the people who hold it today.
    pub could_sign: BTreeMap<String, Vec<String>>,
    pub next_review: Option<String>,
    pub review_overdue: bool,
}

#[derive(Debug, Serialize)]
pub struct SloStatus {
    pub sop: String,
    pub step: String,
    pub every: String,
    pub last_success: Option<String>,
    /// Who ran the last success, as its signature says ("Name (id)", with the role the
    /// step requires), or "unattributed".
    pub last_success_by: Option<String>,
    pub last_run: Option<String>,
    pub last_result: Option<String>,
    /// When the next successful run is due (`None`: never succeeded, due now).
    pub due: Option<String>,
    pub overdue: bool,
}

/// One place that holds a copy.
#[derive(Debug, Clone, Serialize)]
pub struct Copy {
    pub target: String,
    pub medium: Option<String>,
    pub location: Option<String>,
    pub connectivity: Option<String>,
    pub step: String,
    pub made: String,
}

#[derive(Debug, Serialize)]
pub struct BackupSet {
    pub sop: String,
    /// Copies made within the window (the SOP's `retention`, else 35 days), newest per
    /// target; the original data is the copy not listed.
    pub copies: Vec<Copy>,
    /// Counting the original: 1 + targets holding a copy.
    pub total_copies: usize,
    pub media: usize,
    pub off_site: usize,
    pub offline: usize,
    /// Verification steps whose latest run did not succeed, or never ran.
    pub errors: Vec<String>,
    /// 3 copies, 2 media, 1 off-site, 1 offline, 0 errors.
    pub rule_32110: bool,
    pub shortfalls: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct RetentionIssue {
    pub sop: String,
    pub step: String,
    pub path: String,
    pub made: String,
    /// `kept-past-retention` or `gone-before-retention`.
    pub kind: String,
    pub detail: String,
}

#[derive(Debug, Serialize)]
pub struct TrainingGap {
    pub sop: String,
    pub version: u32,
    pub role: String,
    pub person: String,
}

#[derive(Debug, Serialize)]
pub struct Ledger {
    pub ok: bool,
    pub writers: usize,
    pub records: usize,
    pub problems: Vec<String>,
}

const DEFAULT_WINDOW: i64 = 35 * 86_400;

use crate::time::{parse_rfc3339 as parse_time, rfc3339};

/// One executed step: its start and end records.
struct Run {
    end: Option<Box<Record>>,
    start: Box<Record>,
    /// When the run ended (its start, when it never did), UTC seconds: parsed once.
    ended: i64,
    /// An end record with no start record in its writer's chain (a run writes its start
    /// before the step begins): it proves nothing and counts for nothing.
    orphan: bool,
}

impl Run {
    fn outcome(&self) -> Outcome {
        self.end
            .as_ref()
            .and_then(|e| e.outcome)
            .unwrap_or(Outcome::Interrupted)
    }
    fn ended(&self) -> i64 {
        self.ended
    }
    /// A run dated after now (beyond a few minutes of clock skew), or ending before it
    /// started, proves nothing about the past: it never satisfies an SLO or makes a copy count.
    fn dated_sensibly(&self, now: i64) -> bool {
        let started = parse_time(&self.start.started).unwrap_or(i64::MIN);
        self.ended <= now + 300 && started <= self.ended
    }
}

/// Why a run does not count for SLOs and copies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Uncounted {
    /// Its content is no effective revision of its SOP.
    Draft,
    /// Its content was effective, but a later revision was when the run started.
    Superseded,
}

/// Whether a run counts, as the approval history says, never the record itself: its content
/// must be an effective revision of its SOP, the one in force when it started. A record that
/// names a version, or an old revision without a requirement the current one has, proves
/// nothing by that.
fn counted(history: &History, r: &Run) -> Result<(), Uncounted> {
    let sop = history.sops.get(&r.start.sop).ok_or(Uncounted::Draft)?;
    let rev = sop
        .revisions
        .iter()
        .rev()
        .find(|x| x.version.is_some() && x.sha256 == r.start.content_sha256)
        .ok_or(Uncounted::Draft)?;
    let started = parse_time(&r.start.started).unwrap_or(i64::MIN);
    let replaced = sop
        .revisions
        .iter()
        .any(|x| x.version > rev.version && x.effective_time.is_some_and(|t| t <= started));
    if replaced {
        Err(Uncounted::Superseded)
    } else {
        Ok(())
    }
}

fn runs(records: Records) -> Vec<Run> {
    // Start and end records paired by run id; indices, so the records move only once.
    // Start and end records paired by writer and run id: a record in one writer's folder
    // never completes another writer's run.
    // (writer, run id) → indices of its start and end records.
    type Slots<'a> = rustc_hash::FxHashMap<(&'a str, &'a str), (Option<usize>, Option<usize>)>;
    let mut slots: Slots = Default::default();
    for (i, r) in records.iter().enumerate() {
        let slot = slots
            .entry((r.writer.as_str(), r.run.as_str()))
            .or_default();
        match r.kind {
            Kind::Start => slot.0 = Some(i),
            Kind::End => slot.1 = Some(i),
        }
    }
    let pairs: Vec<(Option<usize>, Option<usize>)> = slots.into_values().collect();
    let mut records: Vec<Option<Box<Record>>> = records.into_iter().map(Some).collect();
    let mut out: Vec<Run> = Vec::with_capacity(pairs.len());
    out.extend(pairs.into_iter().filter_map(|(s, e)| {
        let e = e.and_then(|i| records[i].take());
        let (start, orphan) = match s.and_then(|i| records[i].take()) {
            Some(s) => (s, false),
            None => (e.clone()?, true),
        };
        let ended = e
            .as_ref()
            .and_then(|e| e.ended.as_deref())
            .and_then(parse_time)
            .or_else(|| parse_time(&start.started))
            .unwrap_or(0);
        Some(Run {
            start,
            end: e,
            ended,
            orphan,
        })
    }));
    // The key is computed once per run (parsing times in every comparison was slow); the
    // run id last, so the order never depends on the map's.
    rayon::slice::ParallelSliceMut::par_sort_by_cached_key(&mut out[..], |r| {
        let last = r.end.as_ref().unwrap_or(&r.start);
        (
            r.ended(),
            last.host.clone(),
            last.operator.clone(),
            last.seq,
            r.start.run.clone(),
        )
    });
    out
}

/// Whether a step checks copies rather than making them: the `verify` and `restore-test`
/// actions, and shell steps whose id says so.
fn is_verification(step: &Step) -> bool {
    match step.action.as_deref() {
        Some(a) => a == "verify" || a == "restore-test",
        None => {
            step.id.contains("restore-test")
                || step
                    .id
                    .split('-')
                    .any(|w| matches!(w, "verify" | "integrity" | "check"))
        }
    }
}

/// The targets a successful run left a copy on: artifacts below a local target's path or
/// on an ssh target (`NAME:PATH`); the bucket of an `upload`; the target of a shell step
/// that works on a local, ssh or s3 target and reported no artifacts.
fn copy_targets(
    step: Option<&Step>,
    end: &Record,
    targets: &BTreeMap<String, Target>,
) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let action = step.and_then(|s| s.action.as_deref());
    if matches!(
        action,
        Some("verify" | "restore-test" | "prune" | "restore")
    ) {
        return out;
    }
    let artifacts: Vec<&str> = end
        .files
        .iter()
        .filter(|f| f.role == "artifact")
        .map(|f| f.name.as_str())
        .collect();
    for a in &artifacts {
        for (name, t) in targets {
            let hit = match t.kind {
                TargetKind::Local => t.path.as_deref().is_some_and(|p| {
                    let p = p.trim_end_matches('/');
                    a.starts_with(&format!("{p}/"))
                }),
                TargetKind::Ssh => a.starts_with(&format!("{name}:")),
                _ => false,
            };
            if hit {
                out.insert(name.clone());
            }
        }
    }
    if let Some(t) = end
        .target
        .as_ref()
        .and_then(|n| targets.get(n).map(|t| (n, t)))
    {
        let (name, target) = t;
        let acts_on = match action {
            Some("upload") => target.kind == TargetKind::S3,
            Some(_) => false,
            None => {
                artifacts.is_empty()
                    && matches!(
                        target.kind,
                        TargetKind::Local | TargetKind::Ssh | TargetKind::S3
                    )
            }
        };
        if acts_on {
            out.insert(name.clone());
        }
    }
    out
}

/// Reads everything and judges it at `now` (UTC seconds).
pub fn status(ws: &Workspace) -> Result<Status, Error> {
    let (root, corpus, now) = (ws.root.as_path(), &ws.corpus, ws.now);
    let tree_evidence = corpus.config.paths.evidence.clone();
    let evidence_dir = crate::evidence::folder(root, &tree_evidence)?;
    // The ledger is verified and read in one pass over its files, while the approval history
    // is read from git beside it.
    let (history, (mut ledger_read, mut records)) = rayon::join(
        || ws.history(),
        || ledger(root, &tree_evidence, &evidence_dir, corpus),
    );
    let unread = History::default();
    let (history, history_error) = match history {
        Ok(h) => (h, None),
        Err(e) if e.is_shallow() => return Err(e.into()),
        Err(e) => (&unread, Some(e)),
    };
    // Where the evidence lies, and the targets that count as copies, are policy: as the
    // timeline trusts them (an unsigned `[paths] evidence` cannot hide or swap the ledger).
    let config = if history.head.is_some() {
        &history.config
    } else {
        &corpus.config
    };
    if config.paths.evidence != tree_evidence {
        let dir = crate::evidence::folder(root, &config.paths.evidence)?;
        (ledger_read, records) = ledger(root, &config.paths.evidence, &dir, corpus);
    }
    let ledger = ledger_read;
    let runs = runs(records);
    let today = time::OffsetDateTime::from_unix_timestamp(now)
        .map(|t| t.date())
        .unwrap_or(time::Date::MIN);
    let holders = |role: &str| -> Vec<String> {
        corpus
            .people
            .iter()
            .filter(|p| p.holds(role, today))
            .map(|p| p.id.value.clone())
            .collect()
    };

    let mut out = Status {
        now: rfc3339(now),
        commit: history.head.clone(),
        sops: Vec::new(),
        slos: Vec::new(),
        backup_sets: Vec::new(),
        retention: Vec::new(),
        training: Vec::new(),
        ledger,
        alerts: Vec::new(),
        evidence_dir: evidence_dir.clone(),
    };
    if let Some(e) = history_error {
        out.alerts.push(format!(
            "the approval history could not be read ({e}): no SOP is shown as effective"
        ));
    }
    let this_host = crate::run::hostname();
    let by_sop = counted_runs(&runs, history, now, &mut out.alerts);
    for sop in &corpus.sops {
        let doc = &corpus.docs[sop.doc];
        let meta = doc.sop.clone().unwrap_or_default();
        let steps: Vec<&Step> = doc.markdown.valid_steps().collect();
        let sop_runs: &[&Run] = by_sop.get(sop.id.as_str()).map_or(&[], |v| v.as_slice());

        // Approval state.
        out.sops.push(sop_status(
            sop,
            doc,
            &meta,
            history,
            now,
            &holders,
            &mut out.alerts,
        ));

        out.slos
            .extend(slo_statuses(sop, &meta, sop_runs, now, &mut out.alerts));

        out.backup_sets.extend(backup_set(
            sop,
            &meta,
            &steps,
            sop_runs,
            &config.targets,
            now,
            &mut out.alerts,
        ));

        out.retention.extend(retention_issues(
            sop,
            &meta,
            sop_runs,
            root,
            &this_host,
            now,
            &mut out.alerts,
        ));

        // Training.
        out.training
            .extend(training_gaps(corpus, sop, doc, &meta, history, &holders));
    }
    if !out.ledger.ok {
        out.alerts.push(format!(
            "the evidence ledger has {} problem(s)",
            out.ledger.problems.len()
        ));
    }
    // Freeing 100,000 records takes a tenth of a second that nobody needs to wait for.
    drop(by_sop);
    std::thread::spawn(move || drop(runs));
    Ok(out)
}

/// The runs that count, by SOP, in time order; an alert for each that does not (an orphan
/// end, a run dated in the future or backwards, a draft's or a replaced revision's).
fn counted_runs<'r>(
    runs: &'r [Run],
    history: &History,
    now: i64,
    alerts: &mut Vec<String>,
) -> BTreeMap<&'r str, Vec<&'r Run>> {
    let mut by_sop: BTreeMap<&str, Vec<&Run>> = BTreeMap::new();
    let mut drafts: BTreeMap<(&str, Uncounted), usize> = BTreeMap::new();
    for r in runs {
        if r.orphan {
            alerts.push(format!(
                "{}: an end record of step {} (run {}, writer {}) has no start record in its \
             writer's chain; it is not counted",
                r.start.sop, r.start.step, r.start.run, r.start.writer
            ));
            continue;
        }
        if !r.dated_sensibly(now) {
            alerts.push(format!(
            "{}: the run {} of step {} is dated {} to {}, in the future or backwards; it is not counted",
            r.start.sop,
            r.start.run,
            r.start.step,
            r.start.started,
            rfc3339(r.ended())
        ));
            continue;
        }
        // A run of content that no approval covers (`--allow-draft` on a draft), or of a
        // revision a later one had replaced, is shown, never counted: the policies ask for
        // procedures followed as approved.
        match counted(history, r) {
            Ok(()) => by_sop.entry(r.start.sop.as_str()).or_default().push(r),
            Err(why) => *drafts.entry((r.start.sop.as_str(), why)).or_default() += 1,
        }
    }
    for ((sop, why), n) in &drafts {
        let what = match why {
            Uncounted::Draft => "from content no approval covers (a draft, --allow-draft)",
            Uncounted::Superseded => "of a revision that a later effective one had replaced",
        };
        alerts.push(format!(
            "{sop}: {n} run(s) {what} are not counted for SLOs or copies"
        ));
    }
    by_sop
}

/// The state of each SLO of `sop`, with an alert for each one overdue.
fn slo_statuses(
    sop: &crate::corpus::Sop,
    meta: &crate::corpus::front_matter::SopMeta,
    sop_runs: &[&Run],
    now: i64,
    alerts: &mut Vec<String>,
) -> Vec<SloStatus> {
    let mut out = Vec::new();
    for slo in &meta.slos {
        let of_step: Vec<&&Run> = sop_runs
            .iter()
            .filter(|r| r.start.step == slo.step.value)
            .collect();
        let last = of_step.last();
        let success = of_step
            .iter()
            .rev()
            .find(|r| r.outcome() == Outcome::Succeeded);
        let due = success.map(|r| r.ended() + slo.every.seconds as i64);
        let overdue = due.is_none_or(|d| now > d);
        if overdue {
            alerts.push(format!(
                "{}: SLO {} every {} is overdue{}",
                sop.id,
                slo.step.value,
                slo.every,
                match due {
                    Some(d) => format!(" since {}", rfc3339(d)),
                    None => " (never succeeded)".to_string(),
                }
            ));
        }
        out.push(SloStatus {
            sop: sop.id.clone(),
            step: slo.step.value.clone(),
            every: slo.every.to_string(),
            last_success: success.map(|r| rfc3339(r.ended())),
            last_success_by: success.map(|r| {
                let rec = r.end.as_deref().unwrap_or(&r.start);
                let who = rec
                    .attribution
                    .as_ref()
                    .map_or("unattributed".into(), |a| a.label());
                match &rec.role {
                    Some(role) => format!("{who}, role {role}"),
                    None => who,
                }
            }),
            last_run: last.map(|r| rfc3339(r.ended())),
            last_result: last.map(|r| r.outcome().as_str().to_string()),
            due: due.map(rfc3339),
            overdue,
        });
    }
    out
}

/// The copies `sop`'s runs made within its retention window and how they meet the 3-2-1-1-0
/// rule; `None` for an SOP that makes no copies. Failed verifications are alerts.
fn backup_set(
    sop: &crate::corpus::Sop,
    meta: &crate::corpus::front_matter::SopMeta,
    steps: &[&Step],
    sop_runs: &[&Run],
    targets: &BTreeMap<String, Target>,
    now: i64,
    alerts: &mut Vec<String>,
) -> Option<BackupSet> {
    let step = |id: &str| steps.iter().find(|s| s.id == id).copied();
    let window = meta.retention.map_or(DEFAULT_WINDOW, |d| d.seconds as i64);
    let mut copies: BTreeMap<String, Copy> = BTreeMap::new();
    for r in sop_runs {
        let Some(end) = r.end.as_ref().filter(|_| r.outcome() == Outcome::Succeeded) else {
            continue;
        };
        if now - r.ended() > window {
            continue;
        }
        for name in copy_targets(step(&r.start.step), end, targets) {
            let t = &targets[&name];
            copies.insert(
                name.clone(),
                Copy {
                    target: name,
                    medium: t.medium.clone(),
                    location: t.location.clone(),
                    connectivity: t.connectivity.clone(),
                    step: r.start.step.clone(),
                    made: rfc3339(r.ended()),
                },
            );
        }
    }
    let verifications: Vec<&&Step> = steps.iter().filter(|s| is_verification(s)).collect();
    let makes_copies = steps.iter().any(|s| match s.action.as_deref() {
        Some(a) => matches!(a, "archive" | "copy" | "upload" | "db-dump" | "git-mirror"),
        None => s
            .target
            .as_ref()
            .and_then(|t| targets.get(t))
            .is_some_and(|t| {
                matches!(t.kind, TargetKind::Local | TargetKind::Ssh | TargetKind::S3)
            }),
    });
    if copies.is_empty() && !makes_copies {
        return None;
    }
    let mut errors = Vec::new();
    for v in &verifications {
        let last = sop_runs.iter().rev().find(|r| r.start.step == v.id);
        match last {
            None => errors.push(format!("{} never ran", v.id)),
            Some(r) if r.outcome() != Outcome::Succeeded => errors.push(format!(
                "{} {} at {}",
                v.id,
                r.outcome().as_str(),
                rfc3339(r.ended())
            )),
            Some(_) => {}
        }
    }
    let list: Vec<Copy> = copies.into_values().collect();
    let media: BTreeSet<&str> = list
        .iter()
        .map(|c| c.medium.as_deref().unwrap_or("unknown"))
        .collect();
    let off_site = list
        .iter()
        .filter(|c| c.location.as_deref() == Some("off-site"))
        .count();
    let offline = list
        .iter()
        .filter(|c| c.connectivity.as_deref() == Some("offline"))
        .count();
    let total = 1 + list.len();
    let mut shortfalls = Vec::new();
    if total < 3 {
        shortfalls.push(format!(
            "{total} copy(ies) (3 needed, the original counted)"
        ));
    }
    if media.len() < 2 {
        shortfalls.push(format!("{} kind(s) of medium (2 needed)", media.len()));
    }
    if off_site < 1 {
        shortfalls.push("no off-site copy".into());
    }
    if offline < 1 {
        shortfalls.push("no offline copy".into());
    }
    let never = errors.iter().filter(|e| e.ends_with("never ran")).count();
    if never > 0 {
        shortfalls.push(format!("{never} verification step(s) never run"));
    }
    if errors.len() > never {
        shortfalls.push(format!("{} failed verification(s)", errors.len() - never));
    }
    if !errors.is_empty() {
        // A verification that never ran is stale (its SLO says so); one that
        // failed is broken.
        for e in errors.iter().filter(|e| !e.ends_with("never ran")) {
            alerts.push(format!("{}: verification {e}", sop.id));
        }
    }
    Some(BackupSet {
        sop: sop.id.clone(),
        rule_32110: shortfalls.is_empty(),
        total_copies: total,
        media: media.len(),
        off_site,
        offline,
        copies: list,
        errors,
        shortfalls,
    })
}

/// Files this machine made for `sop` that are kept past its retention, or gone before it
/// ends (a legal hold keeps a file as long as it must); each is an alert too.
fn retention_issues(
    sop: &crate::corpus::Sop,
    meta: &crate::corpus::front_matter::SopMeta,
    sop_runs: &[&Run],
    root: &Path,
    this_host: &str,
    now: i64,
    alerts: &mut Vec<String>,
) -> Vec<RetentionIssue> {
    let mut out = Vec::new();
    if let Some(retention) = meta.retention {
        let limit = retention.seconds as i64;
        for r in sop_runs {
            let Some(end) = r.end.as_ref().filter(|_| r.outcome() == Outcome::Succeeded) else {
                continue;
            };
            if end.host != this_host {
                continue;
            }
            let age = now - r.ended();
            for f in end.files.iter().filter(|f| f.role == "artifact") {
                let path = PathBuf::from(&f.name);
                if !path.is_absolute() && f.name.contains(':') {
                    continue;
                }
                let path = if path.is_absolute() {
                    path
                } else {
                    root.join(path)
                };
                let exists = path.exists();
                let mut marker = path.as_os_str().to_owned();
                marker.push(".legal-hold");
                let held = Path::new(&marker).exists();
                let issue = if exists && age > limit && !held {
                    Some((
                        "kept-past-retention",
                        format!("{} days old, retention {retention}", age / 86_400),
                    ))
                } else if !exists && age < limit {
                    Some((
                        "gone-before-retention",
                        format!("gone after {} days, retention {retention}", age / 86_400),
                    ))
                } else {
                    None
                };
                if let Some((kind, detail)) = issue {
                    alerts.push(format!("{}: {} {kind}: {detail}", sop.id, f.name));
                    out.push(RetentionIssue {
                        sop: sop.id.clone(),
                        step: r.start.step.clone(),
                        path: f.name.clone(),
                        made: rfc3339(r.ended()),
                        kind: kind.to_string(),
                        detail,
                    });
                }
            }
        }
    }
    out
}

fn sop_status(
    sop: &crate::corpus::Sop,
    doc: &crate::corpus::Document,
    meta: &crate::corpus::front_matter::SopMeta,
    history: &History,
    now: i64,
    holders: &dyn Fn(&str) -> Vec<String>,
    alerts: &mut Vec<String>,
) -> SopStatus {
    let hist = history.sops.get(&sop.id);
    let current = hist.and_then(|h| h.revision_of(doc.file.text.as_bytes()));
    let version = current.and_then(|r| r.version);
    let last = hist.and_then(|h| h.last_effective());
    let pending_roles = match current {
        Some(r) if r.version.is_none() => r.missing_roles(),
        None => meta
            .approvers
            .as_ref()
            .map(|a| a.value.iter().map(|r| r.value.clone()).collect())
            .unwrap_or_default(),
        _ => Vec::new(),
    };
    let could_sign = pending_roles
        .iter()
        .map(|r| (r.clone(), holders(r)))
        .collect();
    let next_review = match (meta.review_every, last.and_then(|r| r.effective_time)) {
        (Some(every), Some(t)) => Some(t + every.seconds as i64),
        _ => None,
    };
    let review_overdue = next_review.is_some_and(|d| now > d);
    if review_overdue {
        alerts.push(format!(
            "{}: review overdue since {}",
            sop.id,
            rfc3339(next_review.unwrap_or_default())
        ));
    }
    SopStatus {
        id: sop.id.clone(),
        title: sop.title.clone(),
        path: doc.path().to_string(),
        declared: format!("{:?}", meta.status).to_lowercase(),
        version,
        effective: version.is_some(),
        last_effective_version: last.and_then(|r| r.version),
        effective_since: last.and_then(|r| r.effective_time).map(rfc3339),
        pending_roles,
        could_sign,
        next_review: next_review.map(rfc3339),
        review_overdue,
    }
}

/// Holders of the owner role and of roles the SOP links to who have no valid
/// `acknowledged` signature on its effective revision.
fn training_gaps(
    corpus: &Corpus,
    sop: &crate::corpus::Sop,
    doc: &crate::corpus::Document,
    meta: &crate::corpus::front_matter::SopMeta,
    history: &History,
    holders: &dyn Fn(&str) -> Vec<String>,
) -> Vec<TrainingGap> {
    let Some(rev) = history.sops.get(&sop.id).and_then(|h| h.last_effective()) else {
        return Vec::new();
    };
    let Some(version) = rev.version else {
        return Vec::new();
    };
    let mut roles: BTreeSet<String> = BTreeSet::new();
    if let Some(o) = &meta.owner {
        roles.insert(o.value.clone());
    }
    for link in &doc.markdown.links {
        if let LinkTarget::Path { path, .. } = resolve(corpus, doc.path(), &link.dest)
            && let Some(role) = corpus.roles.values().find(|r| r.path == path)
        {
            roles.insert(role.id.clone());
        }
    }
    let acknowledged: BTreeSet<&str> = rev
        .signatures
        .iter()
        .filter(|s| s.meaning == "acknowledged" && s.status == SigStatus::Valid)
        .filter_map(|s| s.signer.as_deref())
        .collect();
    let mut out = Vec::new();
    let mut seen = BTreeSet::new();
    for role in roles {
        for person in holders(&role) {
            if !acknowledged.contains(person.as_str()) && seen.insert(person.clone()) {
                out.push(TrainingGap {
                    sop: sop.id.clone(),
                    version,
                    role: role.clone(),
                    person,
                });
            }
        }
    }
    out
}

/// The ledger's integrity, and every record that parsed.
fn ledger(root: &Path, rel: &str, evidence_dir: &Path, corpus: &Corpus) -> (Ledger, Records) {
    let tracked = || evidence::verify::tracked_at_head(root, rel);
    // Who wrote each record, by the policy timeline (a history that cannot be read has
    // already stopped `status`).
    let judge = evidence::signed::Judge::for_repo(root)
        .unwrap_or_default()
        .with_roles_of(corpus);
    // What commits on the main line changed or removed of the committed ledger: read on a
    // thread of its own while the ledger is.
    let (committed, read) = std::thread::scope(|s| {
        let committed = s.spawn(|| evidence::committed::changes(root, rel).unwrap_or_default());
        let read = evidence_dir
            .exists()
            .then(|| evidence::verify::verify_and_read(evidence_dir, tracked, &judge));
        let committed = committed
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        (committed, read)
    });
    let (mut report, records) = if let Some(read) = read {
        read
    } else {
        let tracked = tracked();
        if tracked.is_empty() && committed.is_empty() {
            // Nothing has run yet, and nothing committed is missing.
            let empty = Ledger {
                ok: true,
                writers: 0,
                records: 0,
                problems: Vec::new(),
            };
            return (empty, Vec::new());
        }
        evidence::verify::verify_and_read(evidence_dir, || tracked, &judge)
    };
    report.problems.extend(committed);
    let ledger = Ledger {
        ok: report.problems.is_empty(),
        writers: report.writers,
        records: report.records,
        problems: report
            .problems
            .iter()
            .map(|p| format!("{}: {}", p.path.display(), p.message))
            .collect(),
    };
    (ledger, records)
}

/// The human table: compact, one line per item, problems marked.
// The table is written section by section in the order it is read.
pub fn human(s: &Status, colour: bool) -> String {
    let paint = |code: &str, text: &str| {
        if colour {
            format!("\u{1b}[{code}m{text}\u{1b}[0m")
        } else {
            text.to_string()
        }
    };
    let ok = |b: bool| {
        if b {
            paint("32", "ok")
        } else {
            paint("31", "!!")
        }
    };
    let mut o = format!("status at {}\n\nSOPs\n", s.now);
    for p in &s.sops {
        let state = match (p.version, p.last_effective_version) {
            (Some(v), _) => format!("v{v} effective"),
            (None, Some(v)) => format!("draft (v{v} effective)"),
            (None, None) => "draft".to_string(),
        };
        let pending = if p.pending_roles.is_empty() {
            String::new()
        } else {
            let who: Vec<String> = p
                .could_sign
                .iter()
                .map(|(r, people)| format!("{r}: {}", people.join(", ")))
                .collect();
            format!("  awaiting {}", who.join("; "))
        };
        let review = match &p.next_review {
            Some(d) if p.review_overdue => paint("31", &format!("  review OVERDUE since {d}")),
            Some(d) => format!("  review by {}", &d[..10.min(d.len())]),
            None => String::new(),
        };
        o.push_str(&format!(
            "  {} {:<10} {:<22}{pending}{review}\n",
            ok(!p.review_overdue),
            p.id,
            state
        ));
    }
    if !s.slos.is_empty() {
        o.push_str("\nSLOs\n");
        for l in &s.slos {
            let last = match (&l.last_success, &l.last_success_by) {
                (Some(t), Some(by)) => format!("{t} by {by}"),
                (Some(t), None) => t.clone(),
                (None, _) => "never".into(),
            };
            let due = match (&l.due, l.overdue) {
                (Some(d), true) => paint("31", &format!("OVERDUE since {d}")),
                (None, _) => paint("31", "OVERDUE (never succeeded)"),
                (Some(d), false) => format!("due {d}"),
            };
            o.push_str(&format!(
                "  {} {:<10} {:<28} every {:<6} last ok {last}  {due}\n",
                ok(!l.overdue),
                l.sop,
                l.step,
                l.every
            ));
        }
    }
    if !s.backup_sets.is_empty() {
        o.push_str("\n3-2-1-1-0\n");
        for b in &s.backup_sets {
            let detail = if b.shortfalls.is_empty() {
                String::new()
            } else {
                format!("  ({})", b.shortfalls.join("; "))
            };
            o.push_str(&format!(
                "  {} {:<10} copies {} media {} off-site {} offline {} errors {}{detail}\n",
                ok(b.rule_32110),
                b.sop,
                b.total_copies,
                b.media,
                b.off_site,
                b.offline,
                b.errors.len()
            ));
        }
    }
    if !s.retention.is_empty() {
        o.push_str("\nRetention\n");
        for r in &s.retention {
            o.push_str(&format!(
                "  {} {:<10} {} {}: {}\n",
                ok(false),
                r.sop,
                r.kind,
                r.path,
                r.detail
            ));
        }
    }
    if !s.training.is_empty() {
        o.push_str("\nTraining (not yet acknowledged)\n");
        for t in &s.training {
            o.push_str(&format!(
                "  -- {:<10} v{} {} ({})\n",
                t.sop, t.version, t.person, t.role
            ));
        }
    }
    o.push_str(&format!(
        "\nEvidence ledger: {} ({} writers, {} records{})\n",
        ok(s.ledger.ok),
        s.ledger.writers,
        s.ledger.records,
        if s.ledger.ok {
            String::new()
        } else {
            format!(", {} problems", s.ledger.problems.len())
        }
    ));
    if s.alerts.is_empty() {
        o.push_str("\nAll in order.\n");
    } else {
        o.push_str(&format!("\n{} alert(s):\n", s.alerts.len()));
        for a in &s.alerts {
            o.push_str(&format!("  - {a}\n"));
        }
    }
    o
}

/// What `status --notify` kept from earlier runs: the alerts already told (so only newly
/// overdue or broken things are sent) and the deliveries that failed.
#[derive(Debug, Default, Serialize, serde::Deserialize)]
pub struct NotifyState {
    pub notified: BTreeSet<String>,
    pub failures: Vec<NotifyFailure>,
}

#[derive(Debug, Serialize, serde::Deserialize)]
pub struct NotifyFailure {
    pub time: String,
    pub alert: String,
    pub channel: String,
    pub detail: String,
}

/// Where that state lives: inside the git directory (machine-local, never committed), or
/// `.sopkit-notified.json` at the root outside git.
pub fn notify_state_path(root: &Path) -> PathBuf {
    crate::git::find(root)
        .map(|r| r.path().join("sopkit-notified.json"))
        .unwrap_or_else(|| root.join(".sopkit-notified.json"))
}

/// What [`notify_new`] did: every delivery attempt (with the alert it told), and problems
/// with its record of what was told (the alerts are then told again next time, never lost).
#[derive(Debug, Default)]
pub struct Notified {
    pub deliveries: Vec<(String, crate::notify::Delivery)>,
    pub warnings: Vec<String>,
}

/// Sends each alert not told before to the holders of the responsible role (the SOP's
/// owner, or `[notify] roles`) and records the outcome.
pub fn notify_new(ws: &Workspace, status: &Status) -> Result<Notified, Error> {
    let root = ws.root.as_path();
    // Who is told, and how (a command runs as the user), is policy: only what an admin
    // signed, as in force at HEAD even when the status is of an older revision.
    let at_head;
    let config = match ws.at() {
        None => ws.policy_config()?,
        Some(_) => {
            at_head = history::trusted_config(root, &ws.corpus.config)?;
            &at_head
        }
    };
    let cfg = &config.notify;
    let path = notify_state_path(root);
    let mut warnings = Vec::new();
    let mut state: NotifyState = match std::fs::read(&path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => NotifyState::default(),
        Err(e) => {
            warnings.push(format!(
                "{} could not be read ({e}): every alert is told again",
                path.display()
            ));
            NotifyState::default()
        }
        Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
            warnings.push(format!(
                "{} is not a notification record ({e}): every alert is told again",
                path.display()
            ));
            NotifyState::default()
        }),
    };
    let today = parse_time(&status.now)
        .and_then(|t| time::OffsetDateTime::from_unix_timestamp(t).ok())
        .map_or(time::Date::MIN, |t| t.date());
    let mut out = Vec::new();
    let mut still: BTreeSet<String> = BTreeSet::new();
    for alert in &status.alerts {
        if state.notified.contains(alert) {
            still.insert(alert.clone());
            continue;
        }
        if !cfg.configured() {
            continue;
        }
        let sop = alert
            .split_once(": ")
            .map(|(s, _)| s)
            .filter(|s| ws.corpus.sops.iter().any(|x| x.id == *s))
            .unwrap_or("")
            .to_string();
        let event = crate::notify::Event {
            event: "status-alert".into(),
            sop: sop.clone(),
            step: None,
            message: alert.clone(),
            time: status.now.clone(),
            host: crate::run::hostname(),
            record: None,
            recipients: crate::notify::recipients(&ws.corpus, &sop, today),
            sopkit_version: crate::VERSION.to_string(),
        };
        let deliveries = crate::notify::send(cfg, &event);
        let all_ok = deliveries.iter().all(|d| d.ok);
        for d in deliveries {
            if !d.ok {
                state.failures.push(NotifyFailure {
                    time: status.now.clone(),
                    alert: alert.clone(),
                    channel: d.channel.clone(),
                    detail: d.detail.clone(),
                });
            }
            out.push((alert.clone(), d));
        }
        // Told only when every channel took it; otherwise the next run tries again.
        if all_ok {
            still.insert(alert.clone());
        }
    }
    // An alert that cleared is forgotten, so that it is told again if it comes back.
    state.notified = still;
    let keep = state.failures.len().saturating_sub(200);
    state.failures.drain(..keep);
    let mut json = serde_json::to_vec_pretty(&state).unwrap_or_default();
    json.push(b'\n');
    if let Err(e) = crate::fs_atomic::write(&path, &json) {
        warnings.push(format!(
            "which alerts were told could not be recorded in {} ({e}): they will be told again",
            path.display()
        ));
    }
    Ok(Notified {
        deliveries: out,
        warnings,
    })
}
