//! `sopkit schedule`: what runs each SLO's step on time, inside an off-peak window, as
//! systemd units, crontab lines or Kubernetes CronJobs.
//!
//! Every SLO (`slos: [{ step, every }]` in an SOP's front matter) becomes one job that runs
//! `sopkit run SOP --step STEP --yes` in the repository's folder. The job's calendar period is
//! the longest of hourly, daily, weekly, monthly, quarterly and yearly whose *longest* gap
//! between two firings still fits the interval: months have up to 31 days, quarters up to 92
//! and years up to 366, so `90d` runs monthly and `365d` quarterly, and the SLO is never
//! missed because of the calendar. Times are UTC.
//!
//! Runs spread over the window: systemd draws one random offset per timer and keeps it
//! (`FixedRandomDelay=`), so the gap between runs stays exactly one period; cron sleeps a
//! random time before each run, so one gap can be up to a window longer than the period;
//! Kubernetes starts every job at the window's start.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::corpus::Corpus;
use crate::corpus::front_matter::Status;
use crate::duration::Duration;
use crate::tree;
use crate::workspace::Workspace;

/// What `sopkit schedule` emits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Emit {
    /// One `.service` and one `.timer` per SLO, plus `sopkit-status`.
    Systemd,
    /// Crontab lines.
    Cron,
    /// One `batch/v1` CronJob manifest per SLO.
    Kubernetes,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "--window `{0}` is not a time window: write HH:MM-HH:MM in UTC, for example 01:00-05:00"
    )]
    BadWindow(String),
    #[error(transparent)]
    Tree(#[from] tree::Error),
    #[error("{what} `{value}` contains a line break or control character and cannot be scheduled")]
    Unprintable { what: &'static str, value: String },
    #[error("SLOs {first} and {second} would both be named `{name}`; give one SOP another id")]
    NameClash {
        name: String,
        first: String,
        second: String,
    },
    #[error("serialising the Kubernetes manifest: {0}")]
    Yaml(String),
    #[error("writing {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// A daily time window in UTC, `HH:MM-HH:MM`; it may cross midnight (`22:00-02:00`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// Minutes after midnight UTC at which the window opens.
    pub start: u32,
    /// Length in minutes (1 to 1439).
    pub minutes: u32,
}

impl Window {
    /// The window's length in seconds.
    pub fn seconds(&self) -> u64 {
        u64::from(self.minutes) * 60
    }

    /// Minutes after midnight UTC at which the window closes.
    pub fn end(&self) -> u32 {
        (self.start + self.minutes) % (24 * 60)
    }
}

impl Default for Window {
    fn default() -> Self {
        Window {
            start: 60,
            minutes: 240,
        }
    }
}

fn clock_minutes(s: &str) -> Option<u32> {
    let (h, m) = s.split_once(':')?;
    let digits = |t: &str| (1..=2).contains(&t.len()) && t.bytes().all(|b| b.is_ascii_digit());
    if !digits(h) || m.len() != 2 || !digits(m) {
        return None;
    }
    let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
    (h < 24 && m < 60).then_some(h * 60 + m)
}

impl std::str::FromStr for Window {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || Error::BadWindow(s.to_string());
        let (a, b) = s.trim().split_once('-').ok_or_else(bad)?;
        let start = clock_minutes(a.trim()).ok_or_else(bad)?;
        let end = clock_minutes(b.trim()).ok_or_else(bad)?;
        let minutes = (end + 24 * 60 - start) % (24 * 60);
        if minutes == 0 {
            return Err(bad());
        }
        Ok(Window { start, minutes })
    }
}

/// A calendar period a job repeats at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Period {
    Hourly,
    Daily,
    Weekly,
    Monthly,
    Quarterly,
    Yearly,
}

const HOUR: u64 = 3600;
const DAY: u64 = 24 * HOUR;

impl Period {
    const ALL: [Period; 6] = [
        Period::Yearly,
        Period::Quarterly,
        Period::Monthly,
        Period::Weekly,
        Period::Daily,
        Period::Hourly,
    ];

    /// The longest time between two firings at the same point of this period (UTC has no
    /// daylight saving time): a month of 31 days, a quarter of 92 (July to September), a
    /// leap year.
    pub fn longest(self) -> u64 {
        match self {
            Period::Hourly => HOUR,
            Period::Daily => DAY,
            Period::Weekly => 7 * DAY,
            Period::Monthly => 31 * DAY,
            Period::Quarterly => 92 * DAY,
            Period::Yearly => 366 * DAY,
        }
    }

    /// The shortest time between two firings (February, the first quarter of a common year).
    pub fn shortest(self) -> u64 {
        match self {
            Period::Hourly => HOUR,
            Period::Daily => DAY,
            Period::Weekly => 7 * DAY,
            Period::Monthly => 28 * DAY,
            Period::Quarterly => 90 * DAY,
            Period::Yearly => 365 * DAY,
        }
    }

    /// The longest period whose longest gap fits `every`, so a job on it never misses the
    /// SLO; `None` for intervals under an hour.
    pub fn for_interval(every: Duration) -> Option<Period> {
        Period::ALL
            .into_iter()
            .find(|p| p.longest() <= every.seconds)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Period::Hourly => "hourly",
            Period::Daily => "daily",
            Period::Weekly => "weekly",
            Period::Monthly => "monthly",
            Period::Quarterly => "quarterly",
            Period::Yearly => "yearly",
        }
    }

    /// A systemd `OnCalendar=` expression firing at minute `at` (after midnight UTC).
    pub fn on_calendar(self, at: u32) -> String {
        let (h, m) = (at / 60, at % 60);
        match self {
            Period::Hourly => format!("*-*-* *:{m:02}:00 UTC"),
            Period::Daily => format!("*-*-* {h:02}:{m:02}:00 UTC"),
            Period::Weekly => format!("Mon *-*-* {h:02}:{m:02}:00 UTC"),
            Period::Monthly => format!("*-*-01 {h:02}:{m:02}:00 UTC"),
            Period::Quarterly => format!("*-01,04,07,10-01 {h:02}:{m:02}:00 UTC"),
            Period::Yearly => format!("*-01-01 {h:02}:{m:02}:00 UTC"),
        }
    }

    /// A five-field cron schedule firing at minute `at` (after midnight).
    pub fn cron(self, at: u32) -> String {
        let (h, m) = (at / 60, at % 60);
        match self {
            Period::Hourly => format!("{m} * * * *"),
            Period::Daily => format!("{m} {h} * * *"),
            Period::Weekly => format!("{m} {h} * * 1"),
            Period::Monthly => format!("{m} {h} 1 * *"),
            Period::Quarterly => format!("{m} {h} 1 1,4,7,10 *"),
            Period::Yearly => format!("{m} {h} 1 1 *"),
        }
    }

    /// How far a run may be spread after the window opens: the window, but never a whole
    /// period (an hourly job spread over four hours would overlap itself).
    pub fn spread(self, window: &Window) -> u64 {
        window.seconds().min(self.shortest() - 60)
    }
}

/// One SLO to schedule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Job {
    pub sop: String,
    pub step: String,
    pub every: String,
    pub period: Period,
    /// `sopkit-<sop>-<step>`, lower case (unit, file and CronJob name).
    pub name: String,
}

/// What the repository asks to be scheduled.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The repository's folder, absolute.
    pub repo: PathBuf,
    pub jobs: Vec<Job>,
    /// SLOs left out, and SOPs that `sopkit run` will refuse until approved.
    pub warnings: Vec<String>,
}

/// How to emit a plan.
#[derive(Debug, Clone)]
pub struct Options {
    pub emit: Emit,
    pub window: Window,
    /// The sopkit binary that systemd and cron run (absolute).
    pub sopkit: PathBuf,
    /// The container image of a Kubernetes CronJob.
    pub image: String,
    /// The repository's folder inside the container (default: the repository's folder here).
    pub workdir: Option<PathBuf>,
}

/// One file of the output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct File {
    pub name: String,
    pub text: String,
}

/// A name safe for systemd units, file names and Kubernetes objects: lower case letters,
/// digits and single `-`.
fn name_part(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        let c = c.to_ascii_lowercase();
        if c.is_ascii_alphanumeric() {
            out.push(c);
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    out.trim_matches('-').to_string()
}

/// Kubernetes limits a CronJob's name to 52 characters (its Jobs add a suffix); a longer
/// name is cut and given a short hash of the full name, so two long names stay distinct.
fn object_name(name: &str) -> String {
    const MAX: usize = 52;
    if name.len() <= MAX {
        return name.to_string();
    }
    let hash = crate::digest::sha256_hex(name.as_bytes());
    let cut = name[..MAX - 9].trim_end_matches('-');
    format!("{cut}-{}", &hash[..8])
}

fn printable(what: &'static str, value: &str) -> Result<(), Error> {
    if value.chars().any(char::is_control) {
        return Err(Error::Unprintable {
            what,
            value: value.escape_debug().to_string(),
        });
    }
    Ok(())
}

/// Lists every SLO of the repository `ws` read (its working tree) to schedule. An SOP
/// without SLOs contributes nothing; SLOs that cannot be scheduled become warnings.
pub fn plan(ws: &Workspace) -> Result<Plan, Error> {
    let dir = ws.root.as_path();
    let repo = std::path::absolute(dir).map_err(|source| tree::Error::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let repo = repo.canonicalize().unwrap_or(repo);
    printable("the repository path", &repo.to_string_lossy())?;
    plan_corpus(&ws.corpus, repo)
}

fn plan_corpus(corpus: &Corpus, repo: PathBuf) -> Result<Plan, Error> {
    let mut jobs: Vec<Job> = Vec::new();
    let mut warnings = Vec::new();
    // name → "SOP/step", to find two SLOs that would share a unit name.
    let mut names: BTreeMap<String, String> = BTreeMap::new();
    let mut sops: Vec<&crate::corpus::Sop> = corpus.sops.iter().collect();
    sops.sort_by(|a, b| a.id.cmp(&b.id));
    for sop in sops {
        let doc = &corpus.docs[sop.doc];
        let Some(meta) = &doc.sop else { continue };
        if meta.slos.is_empty() {
            continue;
        }
        if meta.status == Status::Retired {
            warnings.push(format!(
                "{}: retired, so its {} SLO(s) are not scheduled",
                sop.id,
                meta.slos.len()
            ));
            continue;
        }
        printable("the SOP id", &sop.id)?;
        let steps: Vec<&str> = doc.markdown.valid_steps().map(|s| s.id.as_str()).collect();
        // One job per step, at the shortest interval any SLO asks of it.
        let mut wanted: BTreeMap<&str, Duration> = BTreeMap::new();
        for slo in &meta.slos {
            let step = slo.step.value.as_str();
            if !steps.contains(&step) {
                warnings.push(format!(
                    "{}: the SLO names step `{step}`, which the SOP does not contain (see `sopkit check`); not scheduled",
                    sop.id
                ));
                continue;
            }
            wanted
                .entry(step)
                .and_modify(|d| *d = (*d).min(slo.every))
                .or_insert(slo.every);
        }
        let before = jobs.len();
        for (step, every) in wanted {
            let Some(period) = Period::for_interval(every) else {
                warnings.push(format!(
                    "{}: step `{step}` is due every {every}, more often than hourly; not scheduled",
                    sop.id
                ));
                continue;
            };
            let name = format!("sopkit-{}-{}", name_part(&sop.id), name_part(step));
            let who = format!("{}/{step}", sop.id);
            if let Some(first) = names.insert(name.clone(), who.clone()) {
                return Err(Error::NameClash {
                    name,
                    first,
                    second: who,
                });
            }
            jobs.push(Job {
                sop: sop.id.clone(),
                step: step.to_string(),
                every: every.to_string(),
                period,
                name,
            });
        }
        if jobs.len() > before && meta.status != Status::Effective {
            warnings.push(format!(
                "{}: status is {}; `sopkit run` refuses to run it until it is approved and effective",
                sop.id,
                if meta.status == Status::Draft {
                    "draft"
                } else {
                    "not effective"
                }
            ));
        }
    }
    Ok(Plan {
        repo,
        jobs,
        warnings,
    })
}

/// One argument of a systemd `ExecStart=` line: `%` and `$` doubled, quoted when needed.
fn systemd_word(s: &str) -> String {
    let escaped = s
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('%', "%%")
        .replace('$', "$$");
    if s.is_empty() || s.contains(|c: char| c.is_whitespace() || c == '"' || c == '\'') {
        format!("\"{escaped}\"")
    } else {
        escaped
    }
}

/// A path in a systemd setting that takes a path (specifiers escaped).
fn systemd_path(p: &Path) -> String {
    p.to_string_lossy().replace('%', "%%")
}

/// A word for `/bin/sh`, single-quoted unless it is plainly safe.
fn shell_word(s: &str) -> String {
    if !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./:=@+,".contains(&b))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

fn run_args(job: &Job) -> Vec<String> {
    vec![
        "run".into(),
        job.sop.clone(),
        "--step".into(),
        job.step.clone(),
        "--yes".into(),
    ]
}

fn status_args() -> Vec<String> {
    vec!["status".into(), "--notify".into()]
}

fn hhmm(minutes: u32) -> String {
    format!("{:02}:{:02}", minutes / 60, minutes % 60)
}

/// Emits `plan` in the chosen format. An empty plan gives no files.
pub fn emit(plan: &Plan, opts: &Options) -> Result<Vec<File>, Error> {
    if plan.jobs.is_empty() {
        return Ok(Vec::new());
    }
    printable("the sopkit path", &opts.sopkit.to_string_lossy())?;
    match opts.emit {
        Emit::Systemd => Ok(systemd(plan, opts)),
        Emit::Cron => Ok(vec![cron(plan, opts)]),
        Emit::Kubernetes => kubernetes(plan, opts),
    }
}

fn exec_start(sopkit: &Path, args: &[String]) -> String {
    let mut words = vec![systemd_word(&sopkit.to_string_lossy())];
    words.extend(args.iter().map(|a| systemd_word(a)));
    words.join(" ")
}

fn service(description: &str, repo: &Path, exec: &str, env_file: Option<&str>) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "# Generated by `sopkit schedule`; regenerate rather than edit."
    );
    let _ = writeln!(s, "[Unit]");
    let _ = writeln!(s, "Description={description}");
    let _ = writeln!(s, "Wants=network-online.target");
    let _ = writeln!(s, "After=network-online.target");
    let _ = writeln!(s);
    let _ = writeln!(s, "[Service]");
    let _ = writeln!(s, "Type=oneshot");
    let _ = writeln!(s, "WorkingDirectory={}", systemd_path(repo));
    if let Some(env) = env_file {
        let _ = writeln!(
            s,
            "# Credentials the steps read (the variables their targets and env= name) go in\n\
             # {env} (mode 0600, owned by root), one NAME=value a line; never in this unit\n\
             # or the repository. Uncomment once the file exists:\n\
             #EnvironmentFile={env}"
        );
    }
    let _ = writeln!(s, "ExecStart={exec}");
    s
}

fn timer(description: &str, unit: &str, calendar: &str, spread: u64) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "# Generated by `sopkit schedule`; regenerate rather than edit."
    );
    let _ = writeln!(s, "[Unit]");
    let _ = writeln!(s, "Description={description}");
    let _ = writeln!(s);
    let _ = writeln!(s, "[Timer]");
    let _ = writeln!(s, "OnCalendar={calendar}");
    if spread > 0 {
        let _ = writeln!(
            s,
            "# Each timer keeps one random offset within the window, so runs spread out but\n\
             # stay exactly one period apart."
        );
        let _ = writeln!(s, "RandomizedDelaySec={spread}");
        let _ = writeln!(s, "FixedRandomDelay=true");
    }
    let _ = writeln!(s, "AccuracySec=1s");
    let _ = writeln!(s, "Persistent=true");
    let _ = writeln!(s, "Unit={unit}");
    let _ = writeln!(s);
    let _ = writeln!(s, "[Install]");
    let _ = writeln!(s, "WantedBy=timers.target");
    s
}

fn systemd(plan: &Plan, opts: &Options) -> Vec<File> {
    let w = &opts.window;
    let mut files = Vec::new();
    for job in &plan.jobs {
        let description = format!("sopkit: {} step {}", job.sop, job.step);
        let env = format!("/etc/sopkit/{}.env", name_part(&job.sop));
        files.push(File {
            name: format!("{}.service", job.name),
            text: service(
                &description,
                &plan.repo,
                &exec_start(&opts.sopkit, &run_args(job)),
                Some(&env),
            ),
        });
        files.push(File {
            name: format!("{}.timer", job.name),
            text: timer(
                &format!(
                    "{description}, {} (SLO: every {}), window {}-{} UTC",
                    job.period.as_str(),
                    job.every,
                    hhmm(w.start),
                    hhmm(w.end())
                ),
                &format!("{}.service", job.name),
                &job.period.on_calendar(w.start),
                job.period.spread(w),
            ),
        });
    }
    let description = "sopkit: SLO status and notifications";
    files.push(File {
        name: "sopkit-status.service".into(),
        text: service(
            description,
            &plan.repo,
            &exec_start(&opts.sopkit, &status_args()),
            None,
        ),
    });
    files.push(File {
        name: "sopkit-status.timer".into(),
        text: timer(
            &format!("{description}, daily after the window"),
            "sopkit-status.service",
            &Period::Daily.on_calendar(w.end()),
            0,
        ),
    });
    files
}

/// The command of a crontab line, `%` escaped (cron turns a bare `%` into a new line).
fn cron_command(repo: &Path, delay: u64, sopkit: &Path, args: &[String]) -> String {
    let mut cmd = format!("cd {}", shell_word(&repo.to_string_lossy()));
    if delay > 0 {
        // od reads two random bytes (0-65535) or, for a longer window, four.
        let (n, t) = if delay <= 65_536 { (2, 2) } else { (4, 4) };
        let _ = write!(
            cmd,
            " && sleep $(( $(od -An -N{n} -tu{t} /dev/urandom) % {delay} ))"
        );
    }
    let _ = write!(cmd, " && {}", shell_word(&sopkit.to_string_lossy()));
    for a in args {
        let _ = write!(cmd, " {}", shell_word(a));
    }
    cmd.replace('%', "\\%")
}

fn cron(plan: &Plan, opts: &Options) -> File {
    let w = &opts.window;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "# sopkit SLO schedule for {}, generated by `sopkit schedule --emit cron`.",
        plan.repo.display()
    );
    let _ = writeln!(
        s,
        "# Each job starts at {} and sleeps a random time within the window {}-{} UTC\n\
         # (so one gap can be up to a window longer than its period). Credentials the steps\n\
         # need must be in the environment of this crontab's user, never in this file.\n\
         # CRON_TZ is honoured by cronie; other crons use the system time zone (keep it UTC).",
        hhmm(w.start),
        hhmm(w.start),
        hhmm(w.end())
    );
    let _ = writeln!(s, "CRON_TZ=UTC");
    for job in &plan.jobs {
        let _ = writeln!(
            s,
            "# {} {}: every {} -> {}",
            job.sop,
            job.step,
            job.every,
            job.period.as_str()
        );
        let _ = writeln!(
            s,
            "{} {}",
            job.period.cron(w.start),
            cron_command(
                &plan.repo,
                job.period.spread(w),
                &opts.sopkit,
                &run_args(job)
            )
        );
    }
    let _ = writeln!(s, "# SLO status and notifications, daily after the window");
    let _ = writeln!(
        s,
        "{} {}",
        Period::Daily.cron(w.end()),
        cron_command(&plan.repo, 0, &opts.sopkit, &status_args())
    );
    File {
        name: "sopkit.crontab".into(),
        text: s,
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct CronJob {
    api_version: &'static str,
    kind: &'static str,
    metadata: Metadata,
    spec: CronJobSpec,
}

#[derive(Serialize)]
struct Metadata {
    name: String,
    labels: BTreeMap<&'static str, String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct CronJobSpec {
    schedule: String,
    time_zone: &'static str,
    concurrency_policy: &'static str,
    starting_deadline_seconds: u64,
    successful_jobs_history_limit: u32,
    failed_jobs_history_limit: u32,
    job_template: JobTemplate,
}

#[derive(Serialize)]
struct JobTemplate {
    spec: JobSpec,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct JobSpec {
    backoff_limit: u32,
    template: PodTemplate,
}

#[derive(Serialize)]
struct PodTemplate {
    spec: PodSpec,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PodSpec {
    restart_policy: &'static str,
    containers: Vec<Container>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Container {
    name: &'static str,
    image: String,
    working_dir: String,
    command: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    env_from: Vec<EnvFrom>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct EnvFrom {
    secret_ref: SecretRef,
}

#[derive(Serialize)]
struct SecretRef {
    name: String,
    optional: bool,
}

/// Where a CronJob's container runs: its image and the repository's folder in it.
struct Place<'a> {
    image: &'a str,
    workdir: &'a str,
}

fn cron_job(
    name: &str,
    labels: BTreeMap<&'static str, String>,
    schedule: String,
    deadline: u64,
    place: &Place<'_>,
    args: Vec<String>,
    secret: Option<String>,
) -> CronJob {
    let mut command = vec!["sopkit".to_string()];
    command.extend(args);
    CronJob {
        api_version: "batch/v1",
        kind: "CronJob",
        metadata: Metadata {
            name: name.to_string(),
            labels,
        },
        spec: CronJobSpec {
            schedule,
            time_zone: "Etc/UTC",
            concurrency_policy: "Forbid",
            starting_deadline_seconds: deadline,
            successful_jobs_history_limit: 3,
            failed_jobs_history_limit: 5,
            job_template: JobTemplate {
                spec: JobSpec {
                    backoff_limit: 0,
                    template: PodTemplate {
                        spec: PodSpec {
                            restart_policy: "Never",
                            containers: vec![Container {
                                name: "sopkit",
                                image: place.image.to_string(),
                                working_dir: place.workdir.to_string(),
                                command,
                                env_from: secret
                                    .map(|name| {
                                        vec![EnvFrom {
                                            secret_ref: SecretRef {
                                                name,
                                                optional: true,
                                            },
                                        }]
                                    })
                                    .unwrap_or_default(),
                            }],
                        },
                    },
                },
            },
        },
    }
}

fn kubernetes(plan: &Plan, opts: &Options) -> Result<Vec<File>, Error> {
    let w = &opts.window;
    let workdir = opts
        .workdir
        .clone()
        .unwrap_or_else(|| plan.repo.clone())
        .to_string_lossy()
        .into_owned();
    printable("the working directory", &workdir)?;
    let place = Place {
        image: &opts.image,
        workdir: &workdir,
    };
    let header = |what: &str| {
        format!(
            "# {what}, generated by `sopkit schedule --emit kubernetes`.\n\
             # The image must hold sopkit and the SOP repository at {workdir} (or mount it there).\n"
        )
    };
    let yaml = |job: &CronJob| serde_saphyr::to_string(job).map_err(|e| Error::Yaml(e.to_string()));
    let mut files = Vec::new();
    for job in &plan.jobs {
        let name = object_name(&job.name);
        let labels = BTreeMap::from([
            ("app.kubernetes.io/managed-by", "sopkit".to_string()),
            ("sopkit/sop", name_part(&job.sop)),
            ("sopkit/step", name_part(&job.step)),
        ]);
        let secret = object_name(&format!("sopkit-{}", name_part(&job.sop)));
        let manifest = cron_job(
            &name,
            labels,
            job.period.cron(w.start),
            // A run that cannot start inside the window waits for the next period.
            w.seconds(),
            &place,
            run_args(job),
            Some(secret.clone()),
        );
        files.push(File {
            name: format!("{name}.yaml"),
            text: format!(
                "{}# {} {}: every {} -> {}; credentials from Secret {secret} (optional).\n{}",
                header("sopkit SLO job"),
                job.sop,
                job.step,
                job.every,
                job.period.as_str(),
                yaml(&manifest)?
            ),
        });
    }
    let status = cron_job(
        "sopkit-status",
        BTreeMap::from([("app.kubernetes.io/managed-by", "sopkit".to_string())]),
        Period::Daily.cron(w.end()),
        HOUR,
        &place,
        status_args(),
        None,
    );
    files.push(File {
        name: "sopkit-status.yaml".into(),
        text: format!(
            "{}{}",
            header("sopkit SLO status and notifications, daily after the window"),
            yaml(&status)?
        ),
    });
    Ok(files)
}

/// All files as one text for standard output: systemd units each under a `### NAME` comment,
/// Kubernetes manifests as one stream of documents separated by `---`.
pub fn to_text(emit: Emit, files: &[File]) -> String {
    match emit {
        Emit::Kubernetes => {
            files
                .iter()
                .map(|f| f.text.trim_end().to_string())
                .collect::<Vec<_>>()
                .join("\n---\n")
                + "\n"
        }
        Emit::Cron => files.iter().map(|f| f.text.as_str()).collect(),
        Emit::Systemd => files
            .iter()
            .map(|f| format!("### {}\n{}", f.name, f.text))
            .collect::<Vec<_>>()
            .join("\n"),
    }
}

/// Writes every file into `dir` (created when missing), each atomically.
pub fn write_files(dir: &Path, files: &[File]) -> Result<Vec<PathBuf>, Error> {
    std::fs::create_dir_all(dir).map_err(|source| Error::Write {
        path: dir.to_path_buf(),
        source,
    })?;
    let mut written = Vec::new();
    for f in files {
        let path = dir.join(&f.name);
        crate::fs_atomic::write(&path, f.text.as_bytes()).map_err(|source| Error::Write {
            path: path.clone(),
            source,
        })?;
        written.push(path);
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Duration {
        s.parse().unwrap()
    }

    #[test]
    fn intervals_map_to_the_longest_period_that_never_misses() {
        let cases = [
            ("1h", Some(Period::Hourly)),
            ("12h", Some(Period::Hourly)),
            ("23h", Some(Period::Hourly)),
            ("1d", Some(Period::Daily)),
            ("6d", Some(Period::Daily)),
            ("7d", Some(Period::Weekly)),
            ("1w", Some(Period::Weekly)),
            ("30d", Some(Period::Weekly)),
            ("31d", Some(Period::Monthly)),
            ("90d", Some(Period::Monthly)),
            ("92d", Some(Period::Quarterly)),
            ("365d", Some(Period::Quarterly)),
            ("1y", Some(Period::Quarterly)),
            ("366d", Some(Period::Yearly)),
            ("3650d", Some(Period::Yearly)),
            ("59m", None),
            ("0s", None),
        ];
        for (every, want) in cases {
            assert_eq!(Period::for_interval(d(every)), want, "{every}");
            if let Some(p) = want {
                assert!(p.longest() <= d(every).seconds, "{every}");
            }
        }
    }

    #[test]
    fn calendars_fire_at_the_window_start() {
        let at = 90; // 01:30
        assert_eq!(Period::Hourly.on_calendar(at), "*-*-* *:30:00 UTC");
        assert_eq!(Period::Daily.on_calendar(at), "*-*-* 01:30:00 UTC");
        assert_eq!(Period::Weekly.on_calendar(at), "Mon *-*-* 01:30:00 UTC");
        assert_eq!(Period::Monthly.on_calendar(at), "*-*-01 01:30:00 UTC");
        assert_eq!(
            Period::Quarterly.on_calendar(at),
            "*-01,04,07,10-01 01:30:00 UTC"
        );
        assert_eq!(Period::Yearly.on_calendar(at), "*-01-01 01:30:00 UTC");
        assert_eq!(Period::Daily.cron(at), "30 1 * * *");
        assert_eq!(Period::Quarterly.cron(at), "30 1 1 1,4,7,10 *");
        assert_eq!(Period::Weekly.cron(at), "30 1 * * 1");
    }

    #[test]
    fn windows_parse_and_bad_ones_are_named() {
        let w: Window = "01:00-05:00".parse().unwrap();
        assert_eq!((w.start, w.minutes, w.seconds()), (60, 240, 14_400));
        assert_eq!(w, Window::default());
        let w: Window = "22:30-02:00".parse().unwrap();
        assert_eq!((w.start, w.minutes, w.end()), (22 * 60 + 30, 210, 120));
        let w: Window = "1:05-1:20".parse().unwrap();
        assert_eq!((w.start, w.minutes), (65, 15));
        for bad in [
            "",
            "01:00",
            "01:00-",
            "24:00-01:00",
            "01:60-02:00",
            "01:00-01:00",
            "1-5",
            "01:0-05:00",
            "a:bc-05:00",
            "01:00-05:00-06:00",
            "+1:00-05:00",
        ] {
            let e = bad.parse::<Window>().unwrap_err();
            assert!(e.to_string().contains(&format!("`{bad}`")), "{bad}: {e}");
        }
    }

    #[test]
    fn hourly_jobs_are_not_spread_beyond_their_hour() {
        let w = Window::default();
        assert_eq!(Period::Hourly.spread(&w), 3540);
        assert_eq!(Period::Daily.spread(&w), 14_400);
    }

    #[test]
    fn names_are_safe_and_bounded() {
        assert_eq!(name_part("IT-245"), "it-245");
        assert_eq!(name_part("QA 001/x_y"), "qa-001-x-y");
        let long = format!("sopkit-{}", "a".repeat(80));
        let n = object_name(&long);
        assert!(n.len() <= 52, "{n}");
        assert_ne!(n, object_name(&format!("sopkit-{}b", "a".repeat(80))));
    }

    #[test]
    fn words_are_escaped_for_systemd_and_the_shell() {
        assert_eq!(systemd_word("IT-245"), "IT-245");
        assert_eq!(systemd_word("a b%$"), "\"a b%%$$\"");
        assert_eq!(shell_word("/srv/my repo"), "'/srv/my repo'");
        assert_eq!(shell_word("it's"), "'it'\\''s'");
        let c = cron_command(
            Path::new("/r"),
            100,
            Path::new("/bin/sopkit"),
            &run_args(&Job {
                sop: "A-1".into(),
                step: "s".into(),
                every: "1d".into(),
                period: Period::Daily,
                name: "sopkit-a-1-s".into(),
            }),
        );
        assert!(c.contains("\\% 100"), "{c}");
        assert!(!c.replace("\\%", "").contains('%'), "{c}");
    }
}
