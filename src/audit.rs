//! `sopkit audit`: everything an auditor asks for about a period, in one folder and one zip.
//!
//! - `sops/ID-vN.pdf`: every SOP revision effective at some time in the period, rendered at
//!   the commit that made it effective (so `verify-pdf` rebuilds it), and
//!   `sops/ID-vN-changes.pdf`, its redline against the version before it;
//! - `signatures.csv`: every signature on those revisions, with signer, role, meaning, time,
//!   key and status;
//! - `evidence.csv` and `evidence/log-NNNN.pdf`: the runs of the period with who signed each, and
//!   `evidence-verify.txt`: what `evidence verify` finds in the whole ledger;
//! - `training.csv`: per effective revision, who acknowledged it and who has not yet;
//! - `check.txt`, `status.txt` and `status.json`: the open findings and alerts;
//! - `regulatory-map.md`: the map of the clauses sopkit helps with (from its README);
//! - `README.txt`, and `MANIFEST.sha256` over every file, signed with `--sign`.
//!
//! The folder is written beside its final place and renamed into it, so a failed run leaves
//! nothing half-made; `audit verify` checks a package against its manifest and signature.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::approval::history::{History, Revision, SopHistory, Status as SigStatus};
use crate::evidence::log::{self, csv_field};
use crate::render::markup::escape;
use crate::workspace::Workspace;

/// The SSH signature namespace of a package's manifest.
pub const SSH_NAMESPACE: &str = "sopkit-audit";
const MANIFEST: &str = "MANIFEST.sha256";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path} exists and is not empty: give a new folder for the package")]
    NotEmpty { path: PathBuf },
    #[error("--{what} {given}: expected a day (YYYY-MM-DD)")]
    BadDate { what: &'static str, given: String },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("writing the zip {path}: {message}")]
    Zip { path: PathBuf, message: String },
    #[error(transparent)]
    History(#[from] crate::approval::history::Error),
    #[error(transparent)]
    Render(#[from] crate::render::Error),
    #[error(transparent)]
    Diff(#[from] crate::diff::Error),
    #[error(transparent)]
    Ledger(#[from] crate::evidence::repository::Error),
    #[error(transparent)]
    Status(#[from] crate::status::Error),
    #[error(transparent)]
    Check(#[from] crate::check::Error),
    #[error(transparent)]
    Sign(#[from] crate::render::sign::Error),
    #[error("{0} names no SOP of this repository")]
    UnknownSop(String),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// A day given on the command line as the start of that day (UTC); with `end`, as the start
/// of the next, so that `--until` includes its day.
pub fn day_bound(what: &'static str, given: &str, end: bool) -> Result<i64, Error> {
    let fmt = time::macros::format_description!("[year]-[month]-[day]");
    let day = time::Date::parse(given, fmt).map_err(|_| Error::BadDate {
        what,
        given: given.to_string(),
    })?;
    let t = day.midnight().assume_utc().unix_timestamp();
    Ok(if end { t + 86_400 } else { t })
}

/// What the auditor asks for.
#[derive(Debug, Clone)]
pub struct Request {
    /// The period: from (inclusive) and to (exclusive), UTC seconds.
    pub since: Option<i64>,
    pub until: Option<i64>,
    /// Only these SOPs (ids); all when empty.
    pub sops: Vec<String>,
    pub out: PathBuf,
    /// Sign the manifest with the git signing setup of the repository.
    pub sign: bool,
}

/// One SOP revision effective in the period.
#[derive(Debug, Clone)]
pub struct Effective {
    pub sop: String,
    pub version: u32,
    pub revision: Revision,
    /// The effective version before it, for its redline.
    pub previous: Option<Revision>,
}

/// The revisions of `history` effective at some time in the request's period: from the
/// time a revision became effective until the next content change of its SOP.
pub fn effective_in(history: &History, req: &Request) -> Result<Vec<Effective>, Error> {
    for id in &req.sops {
        if !history.sops.contains_key(id) {
            return Err(Error::UnknownSop(id.clone()));
        }
    }
    let mut out = Vec::new();
    for (id, sop) in &history.sops {
        if !req.sops.is_empty() && !req.sops.contains(id) {
            continue;
        }
        out.extend(effective_revisions(id, sop, req));
    }
    Ok(out)
}

fn effective_revisions(id: &str, sop: &SopHistory, req: &Request) -> Vec<Effective> {
    let mut out = Vec::new();
    let mut previous: Option<&Revision> = None;
    for (i, rev) in sop.revisions.iter().enumerate() {
        let (Some(version), Some(from)) = (rev.version, rev.effective_time) else {
            continue;
        };
        let to = sop.revisions.get(i + 1).map(|next| next.time.max(from));
        let starts_in = req.until.is_none_or(|u| from < u);
        let ends_in = match (to, req.since) {
            (Some(to), Some(since)) => to > since,
            _ => true,
        };
        if starts_in && ends_in {
            out.push(Effective {
                sop: id.to_string(),
                version,
                revision: rev.clone(),
                previous: previous.cloned(),
            });
        }
        previous = Some(rev);
    }
    out
}

/// What `make` wrote.
#[derive(Debug)]
pub struct Made {
    pub dir: PathBuf,
    pub zip: PathBuf,
    pub files: usize,
    pub revisions: usize,
    pub runs: usize,
    pub evidence_problems: usize,
    pub findings: usize,
    pub alerts: usize,
    pub signature: Option<PathBuf>,
}

/// A package being made: its files are written as they come into a folder beside its final
/// place, and only their hashes are kept.
struct Package {
    dir: tempfile::TempDir,
    hashes: BTreeMap<String, String>,
}

impl Package {
    fn new(out: &Path) -> Result<Package, Error> {
        let parent = out
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        std::fs::create_dir_all(parent).map_err(io(parent))?;
        let name = out
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "audit".into());
        let dir = tempfile::Builder::new()
            .prefix(&format!(".{name}.partial-"))
            .tempdir_in(parent)
            .map_err(io(parent))?;
        Ok(Package {
            dir,
            hashes: BTreeMap::new(),
        })
    }

    fn add(&mut self, path: impl Into<String>, bytes: impl AsRef<[u8]>) -> Result<(), Error> {
        let path = path.into();
        let file = self.dir.path().join(&path);
        if let Some(parent) = file.parent() {
            std::fs::create_dir_all(parent).map_err(io(parent))?;
        }
        crate::fs_atomic::write(&file, bytes.as_ref()).map_err(io(&file))?;
        self.hashes
            .insert(path, crate::digest::sha256_hex(bytes.as_ref()));
        Ok(())
    }

    /// Writes the manifest and moves the folder to `out` (an empty folder of that name, made
    /// by hand, is replaced; a non-empty one was refused before anything was made).
    fn finish(mut self, out: &Path) -> Result<(PathBuf, usize), Error> {
        let manifest: String = self
            .hashes
            .iter()
            .map(|(path, hash)| format!("{hash}  {path}\n"))
            .collect();
        self.add(MANIFEST, manifest)?;
        if out.is_dir() {
            std::fs::remove_dir(out).map_err(io(out))?;
        }
        let kept = self.dir.keep();
        std::fs::rename(&kept, out).map_err(io(out))?;
        Ok((out.to_path_buf(), self.hashes.len()))
    }
}

/// Files a job made: path in the package, bytes.
type Files = Vec<(String, Vec<u8>)>;

/// Runs `job(0..n)` on as many plain threads as there are cores, adding the files each job
/// makes. Plain threads, not rayon: typst runs its own work on rayon's pool (see
/// `render::build`).
fn in_parallel(
    n: usize,
    pkg: &std::sync::Mutex<&mut Package>,
    job: &(dyn Fn(usize) -> Result<Files, Error> + Sync),
) -> Result<(), Error> {
    let workers = std::thread::available_parallelism()
        .map_or(1, |c| c.get())
        .min(n.max(1));
    let next = std::sync::atomic::AtomicUsize::new(0);
    let failed: std::sync::Mutex<Option<Error>> = std::sync::Mutex::new(None);
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if i >= n || failed.lock().map_or(true, |f| f.is_some()) {
                        break;
                    }
                    let made = job(i).and_then(|files| {
                        let mut pkg = pkg.lock().unwrap_or_else(|p| p.into_inner());
                        files.into_iter().try_for_each(|(p, b)| pkg.add(p, b))
                    });
                    if let Err(e) = made
                        && let Ok(mut f) = failed.lock()
                    {
                        f.get_or_insert(e);
                    }
                }
            });
        }
    });
    match failed.into_inner().unwrap_or_else(|p| p.into_inner()) {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Makes the package of `req` for the repository `ws` read. `progress` is told each SOP
/// revision as it is rendered.
pub fn make(
    ws: &Workspace,
    req: &Request,
    progress: &(dyn Fn(&str) + Sync),
) -> Result<Made, Error> {
    if std::fs::read_dir(&req.out).is_ok_and(|mut d| d.next().is_some()) {
        return Err(Error::NotEmpty {
            path: req.out.clone(),
        });
    }
    let history = ws.history()?;
    let effective = effective_in(history, req)?;
    let mut pkg = Package::new(&req.out)?;
    add_revisions(ws, &effective, &mut pkg, progress)?;
    pkg.add("signatures.csv", signatures_csv(&effective))?;
    let (runs, evidence_problems) = add_evidence(ws, req, &mut pkg)?;
    let (findings, alerts) = add_findings_and_status(ws, &effective, &mut pkg)?;
    pkg.add("regulatory-map.md", regulatory_map())?;
    pkg.add(
        "README.txt",
        readme(
            ws,
            req,
            effective.len(),
            runs,
            evidence_problems,
            findings,
            alerts,
        ),
    )?;
    let (dir, files) = pkg.finish(&req.out)?;
    let signature = if req.sign {
        Some(crate::render::sign::sign_in(
            &ws.root,
            &dir.join(MANIFEST),
            SSH_NAMESPACE,
        )?)
    } else {
        None
    };
    let zip = write_zip(&dir)?;
    Ok(Made {
        files: files + usize::from(signature.is_some()),
        dir,
        zip,
        revisions: effective.len(),
        runs,
        evidence_problems,
        findings,
        alerts,
        signature,
    })
}

/// Each effective revision's PDF, and its redline against the version before it, made in
/// parallel.
fn add_revisions(
    ws: &Workspace,
    effective: &[Effective],
    pkg: &mut Package,
    progress: &(dyn Fn(&str) + Sync),
) -> Result<(), Error> {
    // One snapshot per commit: revisions made effective by one approval share it.
    let commit_of = |e: &Effective| {
        e.revision
            .effective_commit
            .clone()
            .unwrap_or_else(|| e.revision.commit.clone())
    };
    let mut snapshots: BTreeMap<String, crate::render::Snapshot> = BTreeMap::new();
    for e in effective {
        let commit = commit_of(e);
        if let std::collections::btree_map::Entry::Vacant(slot) = snapshots.entry(commit) {
            let snap = crate::render::Snapshot::open(&ws.root, Some(slot.key()))?;
            slot.insert(snap);
        }
    }
    crate::render::typeset::warm_up();
    let job = |i: usize| -> Result<Files, Error> {
        let e = &effective[i];
        let snap = &snapshots[&commit_of(e)];
        let index = snap.find_sop(&e.sop)?;
        let rendered = crate::render::render(snap, index)?;
        let mut files = vec![(format!("sops/{}-v{}.pdf", e.sop, e.version), rendered.pdf)];
        if let Some(prev) = &e.previous {
            let pv = prev.version.unwrap_or_default();
            let from = crate::diff::revision_side(ws, prev, &format!("version {pv}"))?;
            let to =
                crate::diff::revision_side(ws, &e.revision, &format!("version {}", e.version))?;
            let d = crate::diff::compare(&e.sop, &rendered.title, from, to);
            files.push((
                format!("sops/{}-v{}-changes.pdf", e.sop, e.version),
                crate::render::render_redline(snap, index, &d)?.pdf,
            ));
        }
        progress(&format!("{} v{}", e.sop, e.version));
        Ok(files)
    };
    in_parallel(effective.len(), &std::sync::Mutex::new(pkg), &job)
}

/// Every signature on the effective revisions.
fn signatures_csv(effective: &[Effective]) -> String {
    let mut s = String::from(
        "sop,version,content_commit,signature_commit,signer,name,role,meaning,time,key,status,detail\n",
    );
    for e in effective {
        for sig in &e.revision.signatures {
            let fields = [
                e.sop.clone(),
                e.version.to_string(),
                e.revision.commit.clone(),
                sig.commit.clone(),
                sig.signer.clone().unwrap_or_default(),
                sig.name.clone().unwrap_or_default(),
                sig.role.clone().unwrap_or_default(),
                sig.meaning.clone(),
                crate::time::rfc3339(sig.time),
                sig.fingerprint.clone().unwrap_or_default(),
                sig.status.as_str().to_string(),
                sig.detail.clone(),
            ];
            s.push_str(&fields.map(|f| csv_field(&f)).join(","));
            s.push('\n');
        }
    }
    s
}

/// The runs of the period (CSV and PDF) and the ledger's verification; returns the number
/// of runs and of ledger problems.
fn add_evidence(ws: &Workspace, req: &Request, pkg: &mut Package) -> Result<(usize, usize), Error> {
    let ledger = crate::evidence::repository::Ledger::of(ws)?;
    let read = log::read(&ledger.dir, &log::Filter::default(), Some(&ledger.judge));
    let rows: Vec<log::Row> = read
        .rows
        .into_iter()
        .filter(|r| req.sops.is_empty() || req.sops.contains(&r.sop))
        .filter(|r| {
            let t = crate::time::parse_rfc3339(&r.started).unwrap_or(i64::MIN);
            req.since.is_none_or(|s| t >= s) && req.until.is_none_or(|u| t < u)
        })
        .collect();
    pkg.add("evidence.csv", log::csv(&rows))?;
    // Typesetting a table costs memory for every row at once (about 180 KiB a row, measured):
    // the log is cut into PDFs of RUNS_PER_PDF runs, each typeset on its own.
    let chunks: Vec<&[log::Row]> = rows.chunks(RUNS_PER_PDF).collect();
    let total = rows.len();
    let time = ws.commit_time;
    let job = |i: usize| -> Result<Files, Error> {
        let first = i * RUNS_PER_PDF + 1;
        let title = format!(
            "Evidence log: runs {first} to {} of {total}",
            first + chunks[i].len() - 1
        );
        Ok(vec![(
            format!("evidence/log-{:04}.pdf", i + 1),
            evidence_pdf(&title, chunks[i], time)?,
        )])
    };
    if rows.is_empty() {
        pkg.add(
            "evidence/log-0001.pdf",
            evidence_pdf("Evidence log: no runs", &[], time)?,
        )?;
    } else {
        in_parallel(chunks.len(), &std::sync::Mutex::new(&mut *pkg), &job)?;
    }
    let report = ledger.verify()?;
    let mut text = report.text();
    for p in &read.unreadable {
        text.push_str(&format!(
            "{}: could not be read as an evidence record\n",
            p.display()
        ));
    }
    pkg.add("evidence-verify.txt", text)?;
    Ok((rows.len(), report.problems.len() + read.unreadable.len()))
}

/// Runs per PDF of the evidence log: about 180 MiB of memory to typeset one.
const RUNS_PER_PDF: usize = 1_000;

/// Runs as a PDF table titled `title`, typeset like every sopkit PDF.
fn evidence_pdf(title: &str, rows: &[log::Row], time: i64) -> Result<Vec<u8>, Error> {
    let mut src = format!(
        "#set page(paper: \"a4\", flipped: true, margin: 1.2cm)\n#set text(size: 7pt)\n= {}\n\n#table(",
        escape(title)
    );
    src.push_str(
        "columns: (auto, auto, auto, auto, auto, auto, auto, 1fr), inset: 3pt, stroke: 0.3pt + luma(170),\n  table.header([*Started*], [*SOP*], [*Version*], [*Step*], [*Target*], [*Result*], [*Signed by*], [*Issues*]),\n",
    );
    for r in rows {
        let cells = [
            r.started.clone(),
            r.sop.clone(),
            r.version
                .map_or_else(|| "draft".to_string(), |v| v.to_string()),
            r.step.clone(),
            r.target.clone().unwrap_or_default(),
            r.result.clone(),
            r.signed_by.clone(),
            r.issues.join("; "),
        ];
        src.push_str("  ");
        for c in cells {
            src.push_str(&format!("[{}], ", escape(&c)));
        }
        src.push('\n');
    }
    src.push_str(")\n");
    crate::render::typeset::pdf(crate::render::typeset::Job {
        source: src,
        files: Default::default(),
        time,
        ident: format!("evidence-log:{title}"),
    })
    .map_err(|error| {
        crate::render::Error::Typeset {
            sop: "evidence log".into(),
            error,
        }
        .into()
    })
}

/// `check`'s findings, `status`'s alerts, and the training matrix; returns the number of
/// findings and of alerts.
fn add_findings_and_status(
    ws: &Workspace,
    effective: &[Effective],
    pkg: &mut Package,
) -> Result<(usize, usize), Error> {
    let checked = crate::check::run(ws, None)?;
    let cx = crate::report::Context {
        corpus: &ws.corpus,
        summary: checked.summary,
        color: false,
    };
    let findings = crate::report::locate(&checked.diagnostics, &ws.corpus);
    for (name, format) in [
        ("check.txt", crate::report::Format::Human),
        ("check.json", crate::report::Format::Json),
    ] {
        let mut buf = Vec::new();
        // Writing into memory cannot fail.
        let _ = crate::report::write(format, &findings, &cx, &mut buf);
        pkg.add(name, buf)?;
    }
    let status = crate::status::status(ws)?;
    pkg.add("status.txt", crate::status::human(&status, false))?;
    pkg.add(
        "status.json",
        serde_json::to_vec_pretty(&status).unwrap_or_default(),
    )?;
    pkg.add("training.csv", training_csv(effective, &status))?;
    Ok((checked.diagnostics.len(), status.alerts.len()))
}

/// Per effective revision, each valid acknowledgement, and each role holder `status` says
/// has not acknowledged it yet.
fn training_csv(effective: &[Effective], status: &crate::status::Status) -> String {
    let mut s = String::from("sop,version,person,role,acknowledged\n");
    for e in effective {
        for sig in e
            .revision
            .signatures
            .iter()
            .filter(|g| g.meaning == "acknowledged" && g.status == SigStatus::Valid)
        {
            let fields = [
                e.sop.clone(),
                e.version.to_string(),
                sig.signer.clone().unwrap_or_default(),
                sig.role.clone().unwrap_or_default(),
                crate::time::rfc3339(sig.time),
            ];
            s.push_str(&fields.map(|f| csv_field(&f)).join(","));
            s.push('\n');
        }
        for gap in status
            .training
            .iter()
            .filter(|g| g.sop == e.sop && g.version == e.version)
        {
            let fields = [
                e.sop.clone(),
                e.version.to_string(),
                gap.person.clone(),
                gap.role.clone(),
                "not yet".to_string(),
            ];
            s.push_str(&fields.map(|f| csv_field(&f)).join(","));
            s.push('\n');
        }
    }
    s
}

/// The README's regulatory map, as this sopkit was built with it.
fn regulatory_map() -> String {
    let readme = include_str!("../README.md");
    let start = "<!-- regulatory-map:start -->";
    let end = "<!-- regulatory-map:end -->";
    match (readme.find(start), readme.find(end)) {
        (Some(a), Some(b)) if a < b => format!(
            "# Regulatory map (sopkit {})\n{}\n",
            crate::VERSION,
            &readme[a + start.len()..b]
        ),
        _ => String::from("# Regulatory map\n\nNot found in this build.\n"),
    }
}

#[allow(clippy::too_many_arguments)]
fn readme(
    ws: &Workspace,
    req: &Request,
    revisions: usize,
    runs: usize,
    evidence_problems: usize,
    findings: usize,
    alerts: usize,
) -> String {
    let day = |t: Option<i64>| {
        t.map_or("-".to_string(), |t| {
            crate::time::rfc3339(t)[..10].to_string()
        })
    };
    let until = req.until.map(|u| u - 1);
    format!(
        "sopkit audit package\n\nRepository commit: {}\nPeriod: {} to {} (UTC)\nSOPs: {}\nMade by sopkit {} at {}\n\n\
         {revisions} SOP revision(s) effective in the period (sops/, each with its redline against the version before)\n\
         {runs} run(s) in the evidence log of the period (evidence.csv, evidence/log-NNNN.pdf)\n\
         {evidence_problems} problem(s) found in the evidence ledger (evidence-verify.txt){}\n\
         {findings} open finding(s) of check (check.txt, check.json)\n\
         {alerts} alert(s) of status (status.txt, status.json)\n\n\
         signatures.csv: every signature on those revisions; training.csv: who acknowledged each\n\
         revision and who has not yet; regulatory-map.md: the clauses sopkit helps with.\n\
         MANIFEST.sha256 holds the SHA-256 of every file; `sopkit audit verify DIR` checks them\n\
         (and MANIFEST.sha256.sig or .asc, when the package was signed).\n",
        ws.commit.as_deref().unwrap_or("none"),
        day(req.since),
        day(until),
        if req.sops.is_empty() {
            "all".to_string()
        } else {
            req.sops.join(", ")
        },
        crate::VERSION,
        crate::time::rfc3339(ws.now),
        if evidence_problems > 0 {
            ": THE LEDGER IS NOT INTACT"
        } else {
            ""
        },
    )
}

/// `DIR.zip` of the folder, its files in path order with a fixed date, so the same package
/// gives the same zip.
fn write_zip(dir: &Path) -> Result<PathBuf, Error> {
    let mut zip_path = dir.as_os_str().to_owned();
    zip_path.push(".zip");
    let zip_path = PathBuf::from(zip_path);
    let top = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "audit".into());
    let zip_err = |e: &dyn std::fmt::Display| Error::Zip {
        path: zip_path.clone(),
        message: e.to_string(),
    };
    let mut files: Vec<PathBuf> = walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file())
        .map(|e| e.path().to_path_buf())
        .collect();
    files.sort();
    let parent = zip_path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let tmp = tempfile::NamedTempFile::new_in(parent).map_err(io(parent))?;
    let mut zip = zip::ZipWriter::new(tmp);
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .last_modified_time(zip::DateTime::default())
        .unix_permissions(0o644);
    for f in &files {
        let rel = crate::git::repo_path(f.strip_prefix(dir).unwrap_or(f));
        zip.start_file(format!("{top}/{rel}"), options)
            .map_err(|e| zip_err(&e))?;
        let mut file = std::fs::File::open(f).map_err(io(f))?;
        std::io::copy(&mut file, &mut zip).map_err(io(f))?;
    }
    let tmp = zip.finish().map_err(|e| zip_err(&e))?;
    tmp.as_file().sync_all().map_err(io(&zip_path))?;
    tmp.persist(&zip_path).map_err(|e| zip_err(&e.error))?;
    Ok(zip_path)
}

/// What `audit verify` found.
#[derive(Debug, Default)]
pub struct Verified {
    pub files: usize,
    pub problems: Vec<String>,
    /// The manifest's signature, when there is one: whether it is valid, and what it says.
    pub signature: Option<(bool, String)>,
    /// Whether a package without a signature may pass (hashes checked alone).
    pub unsigned_allowed: bool,
}

impl Verified {
    /// Every file as the manifest says, and the manifest validly signed. Without a
    /// signature anyone who can write the folder can rewrite the manifest to match (or strip
    /// the signature of a signed package), so an unsigned one passes only when allowed.
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
            && match &self.signature {
                Some((valid, _)) => *valid,
                None => self.unsigned_allowed,
            }
    }
}

/// Checks the package in `dir` against its manifest, and the manifest's signature against
/// the keys the repository at `repo` trusts at `HEAD`. A package holds plain files only: a
/// symbolic link (which could show content from outside it) is a problem.
pub fn verify(dir: &Path, repo: &Path, unsigned_allowed: bool) -> Result<Verified, Error> {
    let manifest_path = dir.join(MANIFEST);
    let text = std::fs::read_to_string(&manifest_path).map_err(io(&manifest_path))?;
    let root = dir.canonicalize().map_err(io(dir))?;
    let mut out = Verified {
        unsigned_allowed,
        ..Verified::default()
    };
    let mut listed = std::collections::BTreeSet::new();
    for (n, line) in text.lines().enumerate() {
        let Some((hash, path)) = line.split_once("  ") else {
            out.problems
                .push(format!("{MANIFEST} line {}: not `HASH  PATH`", n + 1));
            continue;
        };
        listed.insert(path.to_string());
        let file = dir.join(path);
        if path.split('/').any(|p| p == ".." || p.is_empty()) {
            out.problems.push(format!(
                "{MANIFEST} line {}: `{path}` leaves the package",
                n + 1
            ));
            continue;
        }
        // Reached through a link, the file's canonical path is not its place in the package.
        if file
            .canonicalize()
            .is_ok_and(|real| real != root.join(path))
        {
            out.problems.push(format!(
                "{path}: a symbolic link, not a file of the package"
            ));
            continue;
        }
        match crate::digest::sha256_file(&file) {
            Ok((_, got)) if got == hash => out.files += 1,
            Ok(_) => out.problems.push(format!(
                "{path}: changed (its SHA-256 is not the manifest's)"
            )),
            Err(e) => out.problems.push(format!("{path}: {e}")),
        }
    }
    for entry in walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_map(Result::ok)
    {
        let rel = crate::git::repo_path(entry.path().strip_prefix(dir).unwrap_or(entry.path()));
        if entry.file_type().is_symlink() {
            if !listed.contains(&rel) {
                out.problems
                    .push(format!("{rel}: a symbolic link, not a file of the package"));
            }
            continue;
        }
        if !entry.file_type().is_file() {
            continue;
        }
        let is_manifest =
            rel == MANIFEST || rel == format!("{MANIFEST}.sig") || rel == format!("{MANIFEST}.asc");
        if !is_manifest && !listed.contains(&rel) {
            out.problems.push(format!("{rel}: not in the manifest"));
        }
    }
    let bytes = text.into_bytes();
    if let Some(checked) =
        crate::render::sign::verify_in(repo, "HEAD", &manifest_path, &bytes, SSH_NAMESPACE)?
    {
        out.signature = Some((checked.valid, checked.detail));
    }
    Ok(out)
}
