//! `sopkit run`: a procedure's steps, executed from the SOP itself, each leaving a start and
//! an end record in the evidence ledger with its hashed logs and artifacts.
//!
//! Shell steps (```` ```sh {step=ID target=NAME timeout=30m env=A,B} ````) run with the
//! operator's environment in their own process group, so that a timeout or Ctrl-C stops the
//! whole step. A step lists what it produced by writing paths, one per line, to the file
//! named by `$SOPKIT_ARTIFACTS`; sopkit hashes each into the end record.

pub mod action;
pub mod capture;
pub mod redact;
pub(crate) mod stream;
pub mod target;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::approval::history;
use crate::config::{Target, TargetKind};
use crate::corpus::step::Step;
use crate::corpus::step::args::Arguments;
use crate::digest::sha256_hex;
use crate::evidence::{self, FileRef, Kind, Outcome, Record, Writer};
use crate::workspace::Workspace;
use redact::Redactor;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Tree(#[from] crate::tree::Error),
    #[error(transparent)]
    History(#[from] history::Error),
    #[error(transparent)]
    Evidence(#[from] evidence::Error),
    #[error(transparent)]
    UnknownSop(#[from] crate::corpus::FindSop),
    #[error("{sop} has no step `{step}` (its steps: {known})")]
    UnknownStep {
        sop: String,
        step: String,
        known: String,
    },
    #[error("{sop} has no runnable steps")]
    NoSteps { sop: String },
    #[error(
        "{sop}: this content is not an effective revision ({why}); only approved SOPs run, or pass --allow-draft (the evidence records it)"
    )]
    NotEffective { sop: String, why: String },
    #[error("step {step}: target `{target}` is not defined in sopkit.toml")]
    UnknownTarget { step: String, target: String },
    #[error("step {step}: built-in action `{action}` is not available in this version of sopkit")]
    UnsupportedAction { step: String, action: String },
    #[error("{at}: step `{step}`: {message}\n  help: {help}")]
    InvalidArguments {
        at: String,
        step: String,
        message: String,
        help: String,
    },
    #[error("step {step}: environment variable {var} is required (env= in the step) but not set")]
    MissingEnv { step: String, var: String },
    #[error("{path}: {message}")]
    Io { path: PathBuf, message: String },
    #[error(
        "evidence of writer `{writer}` must be signed ({why}): set your signing key \
         (`git config user.signingkey ~/.ssh/id_ed25519.pub` and `git config gpg.format ssh`, \
         or an OpenPGP key id), the key listed for you in people.yaml"
    )]
    Unsigned { writer: String, why: String },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |e| Error::Io {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

/// What the operator asked for.
#[derive(Debug, Default, Clone)]
pub struct Options {
    pub steps: Vec<String>,
    pub target: Option<String>,
    pub allow_draft: bool,
}

/// One step ready to run.
#[derive(Debug, Clone)]
pub struct Planned {
    pub step: Step,
    /// A built-in action's arguments, with its target as the step and `--target` set it.
    pub args: Option<Arguments>,
    pub target_name: Option<String>,
    pub target: Option<Target>,
    /// Values of the step's `env=` variables and of the target's credential variables.
    pub secrets: Vec<String>,
    pub missing_env: Vec<String>,
}

/// Everything a run needs to know, resolved before anything runs.
#[derive(Debug)]
pub struct Plan {
    pub root: PathBuf,
    pub sop: String,
    pub sop_path: String,
    pub commit: Option<String>,
    pub content_sha256: String,
    pub version: Option<u32>,
    pub allow_draft: bool,
    pub evidence_dir: PathBuf,
    pub steps: Vec<Planned>,
    /// Every step of the SOP as read (where each puts its output).
    pub all_steps: Vec<Step>,
    pub targets: BTreeMap<String, Target>,
    /// `[notify]` of sopkit.toml, and who it would tell about this SOP today.
    pub notify: crate::config::Notify,
    pub recipients: Vec<crate::notify::Recipient>,
}

fn env_names(target: &Target) -> Vec<&str> {
    [
        &target.password_env,
        &target.access_key_env,
        &target.secret_key_env,
    ]
    .into_iter()
    .flatten()
    .map(String::as_str)
    .collect()
}

/// Resolves SOP, revision, steps, targets and environment; runs nothing.
pub fn plan(ws: &Workspace, sop: &str, opts: &Options) -> Result<Plan, Error> {
    // Absolute, so that the paths recorded in evidence mean the same from anywhere.
    let root = &ws.root.canonicalize().map_err(io_err(&ws.root))?;
    let corpus = &ws.corpus;
    let s = corpus.find_sop(sop)?;
    let doc = &corpus.docs[s.doc];
    let content_sha256 = sha256_hex(doc.file.text.as_bytes());
    let unread_history = history::History::default();
    let (history, unread) = match ws.history() {
        Ok(h) => (h, None),
        Err(e) if e.is_shallow() => return Err(e.into()),
        Err(e) => (&unread_history, Some(e)),
    };
    // Targets and notifications are policy: as the timeline trusts them at HEAD.
    let config = if history.head.is_some() {
        &history.config
    } else {
        &corpus.config
    };
    let sop_history = history.sops.get(&s.id);
    let revision = sop_history.and_then(|h| h.revision_of(doc.file.text.as_bytes()));
    let version = revision.and_then(|r| r.version);
    if version.is_none() && !opts.allow_draft {
        let why = match (unread, revision) {
            (Some(e), _) => format!("its approval history could not be read: {e}"),
            (None, None) => "it is not committed".to_string(),
            (None, Some(r)) if r.approvers.is_empty() => r.missing_label(),
            (None, Some(r)) => format!("approval missing from {}", r.missing_roles().join(", ")),
        };
        return Err(Error::NotEffective {
            sop: s.id.clone(),
            why,
        });
    }
    let all: Vec<Step> = doc.markdown.valid_steps().cloned().collect();
    let chosen: Vec<Step> = if opts.steps.is_empty() {
        all.clone()
    } else {
        let mut v = Vec::new();
        for want in &opts.steps {
            match all.iter().find(|st| &st.id == want) {
                Some(st) => v.push(st.clone()),
                None => {
                    return Err(Error::UnknownStep {
                        sop: s.id.clone(),
                        step: want.clone(),
                        known: all
                            .iter()
                            .map(|s| s.id.as_str())
                            .collect::<Vec<_>>()
                            .join(", "),
                    });
                }
            }
        }
        v
    };
    if chosen.is_empty() {
        return Err(Error::NoSteps { sop: s.id.clone() });
    }
    let steps = chosen
        .into_iter()
        .map(|step| plan_step(step, opts, config, doc))
        .collect::<Result<Vec<_>, _>>()?;
    let evidence_dir = crate::evidence::folder(root, &config.paths.evidence)?;
    Ok(Plan {
        root: root.to_path_buf(),
        sop: s.id.clone(),
        sop_path: doc.path().to_string(),
        commit: history.head.clone(),
        content_sha256,
        version,
        allow_draft: opts.allow_draft,
        evidence_dir,
        steps,
        all_steps: all,
        targets: config.targets.clone(),
        notify: config.notify.clone(),
        recipients: crate::notify::recipients(
            corpus,
            &s.id,
            crate::time::date_of(crate::time::now()),
        ),
    })
}

/// One chosen step, planned: its arguments read (and refused when they are not its
/// action's), its target resolved (`--target`, the step's `target=`, an action's `target:`),
/// and the environment it needs looked up.
fn plan_step(
    step: Step,
    opts: &Options,
    config: &crate::config::Config,
    doc: &crate::corpus::Document,
) -> Result<Planned, Error> {
    let target_name = opts.target.clone().or_else(|| step.target.clone());
    // Arguments that are not the action's stop the run before anything runs, with the
    // finding `check` reports for them.
    let mut args = match &step.arguments {
        None => None,
        Some(Ok(a)) => Some(a.clone()),
        Some(Err(e)) => {
            let at = doc.file.position(step.arguments_span(&doc.file, e).start);
            return Err(Error::InvalidArguments {
                at: format!("{}:{}:{}", doc.path(), at.line, at.column),
                step: step.id.clone(),
                message: e.message.clone(),
                help: e.help.clone(),
            });
        }
    };
    // An action's `target` argument: `--target` overrides it, and a step's `target=`
    // attribute supplies it when the arguments do not name one.
    if let Some(a) = &mut args {
        let named = a.target().is_some();
        let from_attr = step
            .target
            .as_ref()
            .and_then(|t| config.targets.get(t))
            .is_some_and(|t| t.kind != TargetKind::Local);
        if let Some(t) = &opts.target
            && (named || step.target.is_some())
        {
            a.set_target(t.clone());
        } else if !named && from_attr {
            a.set_target(step.target.clone().unwrap_or_default());
        }
    }
    let args_target = args.as_ref().and_then(Arguments::target);
    // The target an action works on is recorded with its evidence too.
    let target_name = target_name.or_else(|| args_target.map(str::to_string));
    let target = match &target_name {
        None => None,
        Some(t) => Some(
            config
                .targets
                .get(t)
                .cloned()
                .ok_or_else(|| Error::UnknownTarget {
                    step: step.id.clone(),
                    target: t.clone(),
                })?,
        ),
    };
    let mut names: Vec<String> = step.env.clone();
    if let Some(t) = &target {
        names.extend(env_names(t).into_iter().map(str::to_string));
    }
    if let Some(t) = args_target.and_then(|n| config.targets.get(n)) {
        names.extend(env_names(t).into_iter().map(str::to_string));
    }
    let mut secrets = Vec::new();
    let mut missing_env = Vec::new();
    for n in &names {
        match std::env::var(n) {
            Ok(v) => secrets.push(v),
            Err(_) if step.env.contains(n) => missing_env.push(n.clone()),
            Err(_) => {}
        }
    }
    Ok(Planned {
        step,
        args,
        target_name,
        target,
        secrets,
        missing_env,
    })
}

/// Why a planned step cannot run here, if it cannot.
pub fn refusal(p: &Planned) -> Option<Error> {
    let id = p.step.id.clone();
    if let Some(action) = &p.step.action
        && !action::AVAILABLE.contains(&action.as_str())
    {
        return Some(Error::UnsupportedAction {
            step: id,
            action: action.clone(),
        });
    }
    p.missing_env.first().map(|var| Error::MissingEnv {
        step: id,
        var: var.clone(),
    })
}

/// The dry-run description of a plan: what would run, where, with secrets masked.
pub fn describe(plan: &Plan) -> String {
    let mut s = format!(
        "{} ({}), {}\n",
        plan.sop,
        plan.sop_path,
        match plan.version {
            Some(v) => format!("effective version {v}"),
            None => "DRAFT (--allow-draft)".to_string(),
        }
    );
    for (i, p) in plan.steps.iter().enumerate() {
        let redactor = Redactor::new(&p.secrets);
        let target = match (&p.target_name, &p.target) {
            (Some(n), Some(t)) => format!("{n} ({})", describe_target(t)),
            _ => "this machine".to_string(),
        };
        s.push_str(&format!(
            "\nstep {} of {}: {}  on {}{}\n",
            i + 1,
            plan.steps.len(),
            p.step.id,
            target,
            p.step
                .timeout
                .map(|t| format!("  timeout {t}"))
                .unwrap_or_default()
        ));
        for v in &p.step.env {
            let state = if p.missing_env.contains(v) {
                "MISSING"
            } else {
                "set (masked)"
            };
            s.push_str(&format!("  env {v}: {state}\n"));
        }
        if let Some(e) = refusal(p) {
            s.push_str(&format!("  cannot run: {e}\n"));
        }
        for line in redactor.mask(&action::expand(&p.step.body)).lines() {
            s.push_str(&format!("  | {line}\n"));
        }
        let Some(Arguments::Prune(prune)) = &p.args else {
            continue;
        };
        if action::target_kind(prune.target.as_deref(), &plan.targets) == Some(TargetKind::S3) {
            match action::prune_objects::describe_prune(prune, &plan.targets) {
                Ok(lines) => {
                    for l in lines {
                        s.push_str(&format!("  {l}\n"));
                    }
                }
                Err(e) => s.push_str(&format!("  cannot plan the prune: {e}\n")),
            }
        } else {
            let now = crate::time::now();
            let args = action::local_prune_args(prune, &plan.targets);
            match action::prune::prune_plan(&args, &plan.root, now) {
                Ok(decisions) => {
                    for d in decisions {
                        match d.keep {
                            None => s.push_str(&format!("  would delete {}\n", d.path.display())),
                            Some(why) => {
                                s.push_str(&format!("  would keep {}: {why}\n", d.path.display()))
                            }
                        }
                    }
                }
                Err(e) => s.push_str(&format!("  cannot plan the prune: {e}\n")),
            }
        }
    }
    s
}

/// A target in a few words: its kind and where it is (never a credential).
fn describe_target(t: &Target) -> String {
    let kind = format!("{:?}", t.kind).to_lowercase();
    let port = t.port.map(|p| format!(":{p}")).unwrap_or_default();
    let user = t.user.as_ref().map(|u| format!("{u}@")).unwrap_or_default();
    let place = match t.kind {
        TargetKind::Local => t.path.clone().unwrap_or_default(),
        TargetKind::Ssh | TargetKind::Mysql => match (&t.host, &t.socket) {
            (Some(h), _) => format!("{user}{h}{port}"),
            (None, Some(sock)) => format!("{user}{sock}"),
            (None, None) => String::new(),
        },
        TargetKind::S3 => format!(
            "s3://{}/{} at {}",
            t.bucket.as_deref().unwrap_or_default(),
            t.prefix.as_deref().unwrap_or_default(),
            t.endpoint.as_deref().unwrap_or("AWS")
        ),
        TargetKind::Git => t.url.clone().unwrap_or_default(),
    };
    format!("{kind} {place}").trim_end().to_string()
}

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// Ctrl-C and SIGTERM stop the running step (its whole process group) and are recorded.
fn catch_signals() {
    // SAFETY: installing a handler has no safe equivalent in std or rustix (rustix leaves
    // signal handlers to the C library); this one only stores to an atomic, which is
    // async-signal-safe, and `on_signal` lives for the whole program.
    unsafe {
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
    }
}

/// Who runs the step: git's user.email, else `$USER`.
pub fn operator(root: &Path) -> String {
    crate::git::find(root)
        .and_then(|r| r.config().ok())
        .and_then(|c| c.get_string("user.email").ok())
        .or_else(|| std::env::var("USER").ok())
        .unwrap_or_else(|| "unknown".to_string())
}

/// This machine's host name (the node name `uname` gives, as `gethostname` does).
pub fn hostname() -> String {
    let name = rustix::system::uname();
    let name = name.nodename().to_string_lossy();
    if name.is_empty() {
        "unknown-host".to_string()
    } else {
        name.into_owned()
    }
}

/// How one step ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepResult {
    pub step: String,
    pub outcome: Outcome,
    pub exit_status: Option<i32>,
    pub record: PathBuf,
}

fn run_id(step: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    sha256_hex(format!("{}-{}-{nanos}-{step}", hostname(), std::process::id()).as_bytes())[..16]
        .to_string()
}

/// Copies one output stream to the operator and to a log file, secrets masked.
fn pump(
    mut from: impl Read,
    log: std::fs::File,
    mut echo: impl Write,
    secrets: Vec<String>,
) -> std::io::Result<capture::Captured> {
    let mut r = Redactor::new(&secrets);
    let mut log = capture::CappedLog::new(log);
    let mut buf = vec![0u8; 64 << 10];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        let out = r.push(&buf[..n]);
        log.push(&out)?;
        let _ = echo.write_all(&out);
        let _ = echo.flush();
    }
    let out = r.finish();
    log.push(&out)?;
    let _ = echo.write_all(&out);
    let (mut file, captured) = log.finish()?;
    evidence::sync(&mut file)?;
    Ok(captured)
}

/// Sends `signal` to the process group a step's shell leads (it was started in a group of
/// its own); a group that is gone already is fine.
fn kill_group(pid: u32, signal: rustix::process::Signal) {
    if let Some(pid) = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
    {
        let _ = rustix::process::kill_process_group(pid, signal);
    }
}

/// Runs the plan's steps in order, stopping at the first that does not succeed.
pub fn execute(plan: &Plan, progress: &dyn Fn(&str)) -> Result<Vec<StepResult>, Error> {
    for p in &plan.steps {
        if let Some(e) = refusal(p) {
            return Err(e);
        }
    }
    let operator = operator(&plan.root);
    let host = hostname();
    let name = evidence::writer_name(&operator, &host);
    // Each record is signed with the operator's own git signing setup and judged against the
    // policy timeline before it is written: a run nobody can be held to never starts.
    let judge = std::sync::Arc::new(evidence::signed::Judge::for_repo(&plan.root)?);
    let signer = crate::signing::Signer::from_git(&plan.root)
        .ok()
        .filter(|s| s.has_key());
    if judge.rooted() && signer.is_none() {
        if let Some(p) = plan.steps.iter().find(|p| p.step.role.is_some()) {
            return Err(Error::Unsigned {
                writer: name,
                why: format!(
                    "step `{}` must be run by a holder of role `{}`, who signs its records",
                    p.step.id,
                    p.step.role.as_deref().unwrap_or_default()
                ),
            });
        }
        if !judge.allows_unsigned_now(&name) {
            return Err(Error::Unsigned {
                writer: name,
                why: "sopkit.toml's `[evidence] unsigned_writers` does not name this writer".into(),
            });
        }
    }
    catch_signals();
    let writer = Writer::open_signed(&plan.evidence_dir, &name, signer, judge)?;
    let mut results = Vec::new();
    for (i, p) in plan.steps.iter().enumerate() {
        progress(&format!(
            "step {}/{}: {}",
            i + 1,
            plan.steps.len(),
            p.step.id
        ));
        let r = run_step(plan, p, &writer, &operator, &host);
        let r = match r {
            Ok(r) => r,
            Err(e) => {
                target::ssh::close_all();
                return Err(e);
            }
        };
        let stop = r.outcome != Outcome::Succeeded;
        results.push(r);
        if stop {
            break;
        }
    }
    target::ssh::close_all();
    Ok(results)
}

fn run_step(
    plan: &Plan,
    p: &Planned,
    writer: &Writer,
    operator: &str,
    host: &str,
) -> Result<StepResult, Error> {
    let run = run_id(&p.step.id);
    let base = Record {
        // Set by readers from the folder; the writer writes into its own.
        writer: String::new(),
        attribution: None,
        format: evidence::FORMAT,
        seq: 0,
        prev: None,
        kind: Kind::Start,
        run: run.clone(),
        sop: plan.sop.clone(),
        sop_path: plan.sop_path.clone(),
        commit: plan.commit.clone(),
        content_sha256: plan.content_sha256.clone(),
        version: plan.version,
        allow_draft: plan.allow_draft,
        step: p.step.id.clone(),
        role: p.step.role.clone(),
        target: p.target_name.clone(),
        operator: operator.to_string(),
        host: host.to_string(),
        started: crate::time::now_rfc3339(),
        ended: None,
        exit_status: None,
        outcome: None,
        files: Vec::new(),
        verification: Vec::new(),
        sopkit_version: env!("CARGO_PKG_VERSION").to_string(),
        digest: String::new(),
    };
    writer.lock()?.append(base.clone(), &[])?;

    let tmp = writer.temp_dir(&run)?;
    let out_path = tmp.join("stdout.log");
    let err_path = tmp.join("stderr.log");
    let artifacts_list = tmp.join("artifacts");
    std::fs::write(&artifacts_list, b"").map_err(io_err(&artifacts_list))?;
    let out_file = std::fs::File::create(&out_path).map_err(io_err(&out_path))?;
    let err_file = std::fs::File::create(&err_path).map_err(io_err(&err_path))?;
    let end = match &p.step.action {
        Some(name) => run_action(
            plan,
            p,
            writer.judge(),
            name,
            out_file,
            &err_file,
            &artifacts_list,
        ),
        None => run_shell(plan, p, &run, out_file, err_file, &artifacts_list)?,
    };
    finish(
        plan,
        writer,
        base,
        &tmp,
        &run,
        end,
        &artifacts_list,
        &p.secrets,
    )
}

/// How a step's execution ended, before its end record is written.
struct StepEnd {
    outcome: Outcome,
    code: Option<i32>,
    verification: Vec<String>,
    /// Files hashed elsewhere (on an ssh host), recorded as they are.
    files: Vec<FileRef>,
    /// Listed artifacts (as listed) that the action hashed while writing them.
    hashed: BTreeMap<String, (u64, String)>,
}

impl StepEnd {
    fn new(outcome: Outcome, code: Option<i32>, verification: Vec<String>) -> StepEnd {
        StepEnd {
            outcome,
            code,
            verification,
            files: Vec::new(),
            hashed: BTreeMap::new(),
        }
    }
}

/// The artifacts of the earlier steps that this step names, checked before any is used: each
/// must lie where the producing step of this SOP puts its output (under its `dest`; for a
/// step without one, inside the repository or a local target's path), and still have the
/// size and SHA-256 that its record gives. A record is only a claim: without these checks,
/// one naming `~/.ssh/id_ed25519` as an archive would make an approved copy step ship it.
fn checked_earlier(
    plan: &Plan,
    p: &Planned,
    latest: &BTreeMap<String, Vec<evidence::FileRef>>,
) -> Result<BTreeMap<String, Vec<String>>, String> {
    let mut out = BTreeMap::new();
    let named = p.step.args.values().filter_map(|v| v.as_str());
    for (id, files) in named.filter_map(|v| latest.get_key_value(v)) {
        let producer = plan.all_steps.iter().find(|s| s.id == *id);
        let dest = producer.and_then(|s| match &s.arguments {
            Some(Ok(a)) => a.dest(),
            _ => None,
        });
        let roots: Vec<PathBuf> = match dest {
            Some(dest) => vec![action::resolve(&plan.root, &action::expand(dest))],
            None => std::iter::once(plan.root.clone())
                .chain(
                    plan.targets
                        .values()
                        .filter(|t| t.kind == TargetKind::Local)
                        .filter_map(|t| t.path.as_deref().map(PathBuf::from)),
                )
                .collect(),
        };
        let roots: Vec<PathBuf> = roots
            .iter()
            .map(|r| r.canonicalize().unwrap_or_else(|_| r.clone()))
            .collect();
        let mut paths = Vec::new();
        for f in files {
            let path = action::resolve(&plan.root, &f.name);
            let real = path.canonicalize().map_err(|e| {
                format!(
                    "step {id}'s artifact {} cannot be read: {e}",
                    path.display()
                )
            })?;
            if !roots.iter().any(|r| real.starts_with(r)) {
                return Err(format!(
                    "step {id}'s recorded artifact {} lies outside where step {id} puts its \
                     output ({}); it is not used",
                    real.display(),
                    roots
                        .iter()
                        .map(|r| r.display().to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
            let (size, sha256) = evidence::hash_file(&real).map_err(|e| e.to_string())?;
            if size != f.size || sha256 != f.sha256 {
                return Err(format!(
                    "step {id}'s artifact {} changed since its run recorded it (recorded {} \
                     bytes, sha256 {}; now {size} bytes, sha256 {sha256}); it is not used",
                    real.display(),
                    f.size,
                    f.sha256.chars().take(16).collect::<String>(),
                ));
            }
            paths.push(f.name.clone());
        }
        out.insert(id.clone(), paths);
    }
    Ok(out)
}

/// A built-in action, in this process; its messages go to the stdout log and the operator.
fn run_action(
    plan: &Plan,
    p: &Planned,
    judge: &evidence::signed::Judge,
    name: &str,
    out_file: std::fs::File,
    err_file: &std::fs::File,
    artifacts_list: &Path,
) -> StepEnd {
    struct Tee(std::fs::File, Redactor);
    impl Write for Tee {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            let out = self.1.push(buf);
            self.0.write_all(&out)?;
            let _ = std::io::stdout().write_all(&out);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            let out = self.1.finish();
            self.0.write_all(&out)?;
            let _ = std::io::stdout().write_all(&out);
            self.0.flush()
        }
    }
    let mut log = Tee(out_file, Redactor::new(&p.secrets));
    let (latest, left_out) =
        evidence::log::latest_artifacts(&plan.evidence_dir, &plan.sop, &plan.content_sha256, judge);
    let earlier = checked_earlier(plan, p, &latest);
    if let Some(first) = left_out.first() {
        let _ = writeln!(
            log,
            "warning: {} evidence file(s) are not intact or not attributable (first: {}); a \
             step named as a source is taken from its latest run in the records that count \
             (`sopkit evidence verify` says what is wrong)",
            left_out.len(),
            first.display()
        );
    }
    let (earlier, earlier_problem) = match earlier {
        Ok(e) => (e, None),
        Err(why) => (BTreeMap::new(), Some(why)),
    };
    let mut cx = action::Context {
        root: &plan.root,
        sop: &plan.sop,
        step: &p.step.id,
        earlier: &earlier,
        targets: &plan.targets,
        log: &mut log,
    };
    let result = match (&earlier_problem, &p.args) {
        (Some(why), _) => Err(action::Error::Failed(why.clone())),
        (None, Some(args)) => action::run(args, &mut cx),
        (None, None) => Err(action::Error::Failed(format!(
            "`{name}` is a built-in action without arguments"
        ))),
    };
    let _ = log.flush();
    let _ = evidence::sync(&mut log.0);
    if let Ok(mut f) = err_file.try_clone() {
        let _ = evidence::sync(&mut f);
    }
    match result {
        Ok(out) => {
            let list: String = out
                .artifacts
                .iter()
                .map(|a| format!("{}\n", a.display()))
                .collect();
            let _ = std::fs::write(artifacts_list, list);
            // Paths and messages may carry an expanded `${VAR}`: no secret reaches a record.
            let mask = Redactor::new(&p.secrets);
            let checks = out.verification.iter().map(|v| mask.mask(v)).collect();
            let mut end = StepEnd::new(Outcome::Succeeded, Some(0), checks);
            end.hashed = (out.hashed.into_iter())
                .map(|(path, known)| (path.display().to_string(), known))
                .collect();
            end
        }
        Err(e) => {
            let line = format!("FAILED: {e}");
            eprintln!("{}", Redactor::new(&p.secrets).mask(&line));
            StepEnd::new(
                Outcome::Failed,
                Some(1),
                vec![Redactor::new(&p.secrets).mask(&line)],
            )
        }
    }
}

/// Environment for a step that runs here against a target: where it is (`SOPKIT_TARGET_*`)
/// and, for databases and buckets, the variables their standard clients read, with the
/// credentials taken from the variables the target names.
fn target_env(t: &Target) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = Vec::new();
    let kind = format!("{:?}", t.kind).to_lowercase();
    v.push(("SOPKIT_TARGET_KIND".into(), kind));
    let port = t.port.map(|p| p.to_string());
    let path_style = t.path_style.map(|b| b.to_string());
    for (name, value) in [
        ("PATH", &t.path),
        ("HOST", &t.host),
        ("PORT", &port),
        ("USER", &t.user),
        ("SOCKET", &t.socket),
        ("URL", &t.url),
        ("ENDPOINT", &t.endpoint),
        ("REGION", &t.region),
        ("BUCKET", &t.bucket),
        ("PREFIX", &t.prefix),
        ("PATH_STYLE", &path_style),
    ] {
        if let Some(x) = value {
            v.push((format!("SOPKIT_TARGET_{name}"), x.clone()));
        }
    }
    let from_env = |name: &Option<String>| name.as_ref().and_then(|n| std::env::var(n).ok());
    match t.kind {
        TargetKind::Mysql => {
            for (name, value) in [
                ("MYSQL_HOST", t.host.clone()),
                ("MYSQL_TCP_PORT", port.clone()),
                ("MYSQL_UNIX_PORT", t.socket.clone()),
                ("MYSQL_PWD", from_env(&t.password_env)),
            ] {
                if let Some(x) = value {
                    v.push((name.into(), x));
                }
            }
        }
        TargetKind::S3 => {
            for (name, value) in [
                ("AWS_ACCESS_KEY_ID", from_env(&t.access_key_env)),
                ("AWS_SECRET_ACCESS_KEY", from_env(&t.secret_key_env)),
                ("AWS_ENDPOINT_URL", t.endpoint.clone()),
                ("AWS_DEFAULT_REGION", t.region.clone()),
            ] {
                if let Some(x) = value {
                    v.push((name.into(), x));
                }
            }
        }
        _ => {}
    }
    v
}

/// A shell step, in its own process group: here, or on an ssh target's host.
// Long (about 170 lines): spawning, streaming both outputs through the redactor, the timeout
// and Ctrl-C handling share one child and its threads; splitting it is left to a later change.
fn run_shell(
    plan: &Plan,
    p: &Planned,
    run: &str,
    out_file: std::fs::File,
    mut err_file: std::fs::File,
    artifacts_list: &Path,
) -> Result<StepEnd, Error> {
    let shell = if p.step.lang == "bash" { "bash" } else { "sh" };
    let mut vars: Vec<(String, String)> = vec![
        ("SOPKIT_SOP".into(), plan.sop.clone()),
        ("SOPKIT_STEP".into(), p.step.id.clone()),
        ("SOPKIT_RUN".into(), run.to_string()),
    ];
    if let Some(name) = &p.target_name {
        vars.push(("SOPKIT_TARGET".into(), name.clone()));
    }
    let remote = match (&p.target_name, &p.target) {
        (Some(name), Some(t)) if t.kind == TargetKind::Ssh => {
            let host = target::ssh::Host::new(name, t).and_then(|h| h.connect().map(|()| h));
            match host {
                Ok(h) => Some((h, target::ssh::RemoteStep::new(run))),
                Err(e) => {
                    let line = format!("FAILED: {e}");
                    let _ = writeln!(err_file, "{line}");
                    let _ = evidence::sync(&mut err_file);
                    eprintln!("{line}");
                    return Ok(StepEnd::new(Outcome::Failed, Some(255), vec![line]));
                }
            }
        }
        (_, Some(t)) => {
            vars.extend(target_env(t));
            None
        }
        _ => None,
    };
    let mut cmd = match &remote {
        Some((host, step)) => {
            // The step's own variables travel inside the script, on the encrypted channel.
            for v in &p.step.env {
                if let Ok(x) = std::env::var(v) {
                    vars.push((v.clone(), x));
                }
            }
            let mut c = host.ssh();
            c.arg(step.command(shell)).stdin(Stdio::piped());
            c
        }
        None => {
            let mut c = Command::new(shell);
            c.arg("-c")
                .arg(&p.step.body)
                .current_dir(&plan.root)
                .env("SOPKIT_ARTIFACTS", artifacts_list)
                .envs(vars.iter().map(|(k, v)| (k, v)))
                .stdin(Stdio::null());
            c
        }
    };
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    // A process group of its own, so that a timeout or Ctrl-C can stop everything the step
    // started.
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    let started = Instant::now();
    let mut child = cmd.spawn().map_err(|e| Error::Io {
        path: PathBuf::from(if remote.is_some() { "ssh" } else { shell }),
        message: e.to_string(),
    })?;
    if let Some((_, step)) = &remote
        && let Some(mut stdin) = child.stdin.take()
    {
        let script = step.script(&vars, &p.step.body);
        // A write error shows as the step failing: ssh reports why on stderr.
        let _ = stdin.write_all(script.as_bytes());
    }
    let pid = child.id();
    let so = child.stdout.take().expect("piped");
    let se = child.stderr.take().expect("piped");
    let secrets = p.secrets.clone();
    let t_out = std::thread::spawn(move || pump(so, out_file, std::io::stdout(), secrets));
    let secrets = p.secrets.clone();
    let t_err = std::thread::spawn(move || pump(se, err_file, std::io::stderr(), secrets));

    let limit = p.step.timeout.map(|t| Duration::from_secs(t.seconds));
    let mut outcome = None;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) => {}
            Err(_) => break None,
        }
        let stop = if INTERRUPTED.load(Ordering::SeqCst) {
            Some(Outcome::Interrupted)
        } else if limit.is_some_and(|l| started.elapsed() >= l) {
            Some(Outcome::TimedOut)
        } else {
            None
        };
        if let Some(o) = stop {
            outcome = Some(o);
            if let Some((host, step)) = &remote {
                step.kill(host);
            }
            kill_group(pid, rustix::process::Signal::TERM);
            let grace = Instant::now();
            while grace.elapsed() < Duration::from_secs(5) {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            kill_group(pid, rustix::process::Signal::KILL);
            break child.wait().ok();
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let code = status.and_then(|s| s.code());
    let outcome = outcome.unwrap_or(if code == Some(0) {
        Outcome::Succeeded
    } else {
        Outcome::Failed
    });
    let mut end = StepEnd::new(outcome, code, Vec::new());
    // A log that could not be written shows as what it holds; a long one says it was cut.
    for (name, pumped) in [("stdout", t_out), ("stderr", t_err)] {
        if let Ok(Ok(c)) = pumped.join()
            && c.omitted > 0
        {
            end.verification.push(format!(
                "ok: {name} was {} bytes (sha256 {}); its log keeps the first and the last {} MiB",
                c.size,
                c.sha256,
                capture::KEEP >> 20
            ));
        }
    }
    if let Some((host, step)) = &remote {
        if code == Some(255) {
            end.verification.push(format!(
                "FAILED: ssh to {} exited 255 (the connection failed or was cut, or the step exited 255): see the stderr log",
                host.destination()
            ));
        }
        let mask = Redactor::new(&p.secrets);
        match step.collect(host) {
            Ok(list) => {
                for (path, found) in list {
                    let name = mask.mask(&format!("{}:{path}", host.name));
                    match found {
                        Some((size, sha256)) => end.files.push(FileRef {
                            role: "artifact".into(),
                            name,
                            size,
                            sha256,
                        }),
                        None => end
                            .verification
                            .push(format!("FAILED: artifact {name} does not exist")),
                    }
                }
            }
            Err(e) => end.verification.push(mask.mask(&format!(
                "FAILED: the step's artifacts could not be hashed on {}: {e}",
                host.name
            ))),
        }
    }
    Ok(end)
}

/// Hashes the logs and artifacts and appends the end record. A listed artifact that does
/// not exist, or any failed check, makes a step that exited 0 a failed one.
#[allow(clippy::too_many_arguments)]
fn finish(
    plan: &Plan,
    writer: &Writer,
    base: Record,
    tmp: &Path,
    run: &str,
    step_end: StepEnd,
    artifacts_list: &Path,
    secrets: &[String],
) -> Result<StepResult, Error> {
    let StepEnd {
        mut outcome,
        code,
        mut verification,
        files: remote_files,
        hashed,
    } = step_end;
    let verification = &mut verification;
    let mask = Redactor::new(secrets);
    let out_path = tmp.join("stdout.log");
    let err_path = tmp.join("stderr.log");
    // Logs and artifacts, hashed.
    let mut files = Vec::new();
    let mut moves = Vec::new();
    for (role, path) in [("stdout", &out_path), ("stderr", &err_path)] {
        let (size, sha256) = evidence::hash_file(path)?;
        let name = format!("{run}.{role}.log");
        files.push(FileRef {
            role: role.to_string(),
            name: name.clone(),
            size,
            sha256,
        });
        moves.push((path.clone(), name));
    }
    let listed = std::fs::read_to_string(artifacts_list).unwrap_or_default();
    for line in listed.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let path = if Path::new(line).is_absolute() {
            PathBuf::from(line)
        } else {
            plan.root.join(line)
        };
        // An artifact hashed as it was written is taken as hashed when its size still holds.
        let known = hashed.get(line).filter(|(size, _)| {
            std::fs::metadata(&path).is_ok_and(|m| m.is_file() && m.len() == *size)
        });
        match known
            .cloned()
            .map_or_else(|| evidence::hash_file(&path), Ok)
        {
            Ok((size, sha256)) => files.push(FileRef {
                role: "artifact".into(),
                name: mask.mask(line),
                size,
                sha256,
            }),
            Err(_) => {
                verification.push(mask.mask(&format!("FAILED: artifact {line} does not exist")))
            }
        }
    }
    files.extend(remote_files);
    if outcome == Outcome::Succeeded && verification.iter().any(|v| v.starts_with("FAILED")) {
        outcome = Outcome::Failed;
    }
    if outcome != Outcome::Succeeded && plan.notify.configured() {
        // Told before the end record is written, so that the record says who was told
        // and which delivery failed.
        let event = crate::notify::Event {
            event: format!("step-{}", outcome.as_str()),
            sop: plan.sop.clone(),
            step: Some(base.step.clone()),
            message: mask.mask(&format!(
                "{} step {} {} ({}){}",
                plan.sop,
                base.step,
                outcome.as_str(),
                code.map_or("no exit status".to_string(), |c| format!("exit {c}")),
                verification
                    .iter()
                    .find(|v| v.starts_with("FAILED"))
                    .map(|v| format!(": {v}"))
                    .unwrap_or_default()
            )),
            time: crate::time::now_rfc3339(),
            host: base.host.clone(),
            record: Some(format!("run {run} in {}", plan.evidence_dir.display())),
            recipients: plan.recipients.clone(),
            sopkit_version: env!("CARGO_PKG_VERSION").to_string(),
        };
        for d in crate::notify::send(&plan.notify, &event) {
            let line = mask.mask(&d.line());
            eprintln!("{line}");
            verification.push(line);
        }
    }
    let mut end = base;
    end.kind = Kind::End;
    end.ended = Some(crate::time::now_rfc3339());
    end.exit_status = code;
    end.outcome = Some(outcome);
    end.files = files;
    end.verification = std::mem::take(verification);
    let step = end.step.clone();
    let record = writer.lock()?.append(end, &moves)?;
    let _ = std::fs::remove_dir_all(tmp);
    Ok(StepResult {
        step,
        outcome,
        exit_status: code,
        record,
    })
}
