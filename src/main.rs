//! The `sopkit` binary: parse arguments, call the library, print, exit.

mod cli;

// Parsing a corpus makes many small allocations from several threads; mimalloc does that
// with less contention and fewer system calls than the system allocator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use anyhow::Context;
use clap::{CommandFactory, Parser};
use cli::{
    ApproveArgs, AuditArgs, AuditCommand, BuildArgs, CheckArgs, Cli, Command, DiffArgs, DiffFormat,
    EvidenceCommand, EvidenceLogArgs, HistoryArgs, HistoryFormat, JdArgs, LogFormat, RenderArgs,
    RolesCommand, RunArgs, ScheduleArgs, StatusArgs, StatusFormat, VerifyPdfArgs,
};
use sopkit::exit::Exit;
use sopkit::report::{self, Format};
use sopkit::workspace::{Revision, Workspace};

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The one error path: every failure is printed here, once, and exits 2.
    match run(cli) {
        Ok(exit) => exit.into(),
        Err(e) => {
            if let Some(io) = e.downcast_ref::<std::io::Error>()
                && io.kind() == std::io::ErrorKind::BrokenPipe
            {
                return Exit::Clean.into();
            }
            eprintln!("error: {}", describe(&e));
            Exit::Fatal.into()
        }
    }
}

/// The error and its causes joined by ": ", leaving out a cause whose text is already said
/// (several library errors name their cause in their own message, and `{:#}` repeats it).
fn describe(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if out.contains(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}

fn run(cli: Cli) -> anyhow::Result<Exit> {
    match cli.command {
        Command::Check(args) => check(args),
        Command::Approve(args) => approve(args),
        Command::History(args) => history(args),
        Command::Diff(args) => diff(args),
        Command::Audit(args) => audit(args),
        Command::Render(args) => render(args),
        Command::Build(args) => build(args),
        Command::VerifyPdf(args) => verify_pdf(args),
        Command::Run(args) => run_steps(args),
        Command::Evidence(EvidenceCommand::Verify { path }) => evidence_verify(&path),
        Command::Evidence(EvidenceCommand::Log(args)) => evidence_log(args),
        Command::Evidence(EvidenceCommand::Stamp { path }) => evidence_stamp(&path),
        Command::Evidence(EvidenceCommand::Export {
            path,
            format: _,
            key,
            output,
        }) => evidence_export(&path, &key, output.as_deref()),
        Command::Status(args) => status(args),
        Command::Schedule(args) => schedule(args),
        Command::Roles(RolesCommand::Jd(args)) => roles_jd(args),
        Command::Init { dir } => {
            let created = sopkit::init::init(&dir)?;
            println!(
                "created {} files{} in {}; run `sopkit check {}`, then commit them",
                created.files.len(),
                if created.git {
                    " and a git repository"
                } else {
                    ""
                },
                dir.display(),
                dir.display()
            );
            Ok(Exit::Clean)
        }
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "sopkit", &mut std::io::stdout());
            Ok(Exit::Clean)
        }
        Command::Man { out } => {
            let cmd = Cli::command();
            match out {
                Some(dir) => {
                    std::fs::create_dir_all(&dir)
                        .with_context(|| format!("creating {}", dir.display()))?;
                    clap_mangen::generate_to(cmd, &dir)
                        .with_context(|| format!("writing pages to {}", dir.display()))?;
                }
                None => clap_mangen::Man::new(cmd).render(&mut std::io::stdout())?,
            }
            Ok(Exit::Clean)
        }
    }
}

fn check(args: CheckArgs) -> anyhow::Result<Exit> {
    let ws = Workspace::open(&args.path, Revision::WorkingTree)?;
    let checked = sopkit::check::run(&ws, args.base.as_deref())?;
    let to_terminal = args.output.is_none() && std::io::stdout().is_terminal();
    let buf = findings_report(&ws.corpus, &checked, args.format, to_terminal)?;
    emit(args.output.as_deref(), &buf)?;
    let exit = Exit::findings_unless(checked.summary.errors == 0);
    // The process ends here: returning the corpus's memory piece by piece would only cost time.
    std::mem::forget(ws);
    Ok(exit)
}

/// The findings of `checked` in `format`, coloured when they go to a terminal.
fn findings_report(
    corpus: &sopkit::corpus::Corpus,
    checked: &sopkit::check::Checked,
    format: Format,
    to_terminal: bool,
) -> anyhow::Result<Vec<u8>> {
    let cx = report::Context {
        corpus,
        summary: checked.summary,
        color: format == Format::Human && report::colour(to_terminal),
    };
    let findings = report::locate(&checked.diagnostics, corpus);
    let mut buf = Vec::new();
    report::write(format, &findings, &cx, &mut buf)?;
    Ok(buf)
}

fn approve(args: ApproveArgs) -> anyhow::Result<Exit> {
    let ws = Workspace::open(&args.path, Revision::WorkingTree)?;
    let request = sopkit::approval::approve::Request {
        sops: &args.sops,
        meaning: &args.meaning,
        comment: args.comment.as_deref(),
    };
    match sopkit::approval::approve::approve(&ws.root, &ws.corpus, ws.policy_config()?, &request) {
        Ok(signed) => {
            let what: Vec<String> = signed
                .sops
                .iter()
                .map(|(id, path)| format!("{id} ({path})"))
                .collect();
            println!(
                "approved {} as {} in signed commit {}",
                what.join(", "),
                args.meaning,
                &signed.commit[..12]
            );
            Ok(Exit::Clean)
        }
        Err(e) => Err(e.into()),
    }
}

fn history(args: HistoryArgs) -> anyhow::Result<Exit> {
    let ws = Workspace::open(
        &args.path,
        Revision::at_or(args.at.as_deref(), Revision::WorkingTree),
    )?;
    let mut sop = ws.sop_history(&args.sop)?;
    sopkit::approval::history::fill_hashes(&args.path, &mut sop)?;
    let sop = &sop;
    let mut out = std::io::stdout().lock();
    match args.format {
        HistoryFormat::Json => {
            serde_json::to_writer_pretty(&mut out, sop)?;
            writeln!(out)?;
        }
        HistoryFormat::Human => write!(out, "{}", sopkit::approval::render_history(sop))?,
    }
    Ok(Exit::Clean)
}

fn audit(args: AuditArgs) -> anyhow::Result<Exit> {
    use sopkit::audit;
    if let Some(AuditCommand::Verify {
        dir,
        path,
        allow_unsigned,
    }) = &args.command
    {
        let v = audit::verify(dir, path, *allow_unsigned)?;
        for p in &v.problems {
            println!("{}: {p}", dir.display());
        }
        match &v.signature {
            Some((_, detail)) => println!("{}/MANIFEST.sha256: {detail}", dir.display()),
            None if v.unsigned_allowed => {
                println!("{}: the manifest is not signed", dir.display())
            }
            None => println!(
                "{}: the manifest is NOT signed, so anyone who can write the folder can rewrite \
                 it to match (--allow-unsigned checks the hashes alone)",
                dir.display()
            ),
        }
        println!(
            "{} files match the manifest; {}",
            v.files,
            if v.ok() {
                "the package is intact".to_string()
            } else if v.problems.is_empty() {
                "the package cannot be trusted".to_string()
            } else {
                format!("{} problem(s)", v.problems.len())
            }
        );
        return Ok(Exit::findings_unless(v.ok()));
    }
    let Some(out) = args.out.clone() else {
        anyhow::bail!("name the package folder: --out DIR (or check one: sopkit audit verify DIR)");
    };
    let req = audit::Request {
        since: args
            .since
            .as_deref()
            .map(|d| audit::day_bound("since", d, false))
            .transpose()?,
        until: args
            .until
            .as_deref()
            .map(|d| audit::day_bound("until", d, true))
            .transpose()?,
        sops: args.sops.clone(),
        out,
        sign: args.sign,
    };
    let ws = Workspace::open(&args.path, Revision::WorkingTree)?;
    let total = audit::effective_in(ws.history()?, &req)?.len() as u64;
    let bar = progress_bar(total, "{bar:40} {pos}/{len} SOP revisions  {msg}");
    let made = audit::make(&ws, &req, &|what: &str| {
        bar.set_message(what.to_string());
        bar.inc(1);
    })?;
    bar.finish_and_clear();
    println!(
        "{} SOP revision(s), {} run(s), {} finding(s), {} alert(s), {} ledger problem(s); {} files -> {} and {}",
        made.revisions,
        made.runs,
        made.findings,
        made.alerts,
        made.evidence_problems,
        made.files,
        made.dir.display(),
        made.zip.display()
    );
    if let Some(sig) = &made.signature {
        println!("manifest signature -> {}", sig.display());
    }
    Ok(Exit::Clean)
}

fn diff(args: DiffArgs) -> anyhow::Result<Exit> {
    use sopkit::diff;
    if args.format == DiffFormat::Pdf && args.output.is_none() {
        anyhow::bail!("--format pdf needs an output file: add -o FILE.pdf");
    }
    let ws = Workspace::open(&args.path, Revision::WorkingTree)?;
    let d = diff::diff(&ws, &args.sop, args.from.as_deref(), args.to.as_deref())?;
    let bytes = match args.format {
        DiffFormat::Human => diff::human(
            &d,
            report::colour(args.output.is_none() && std::io::stdout().is_terminal()),
        )
        .into_bytes(),
        DiffFormat::Md => diff::markdown(&d).into_bytes(),
        DiffFormat::Pdf => sopkit::render::redline_pdf(&ws.root, &d)?,
    };
    emit(args.output.as_deref(), &bytes)?;
    if let Some(path) = &args.output {
        eprintln!(
            "{} changed section(s) of {} -> {}",
            d.changed_sections().count(),
            d.sop,
            path.display()
        );
    }
    Ok(Exit::Clean)
}

fn render(args: RenderArgs) -> anyhow::Result<Exit> {
    use sopkit::render::{self, Snapshot};
    let mut snap = Snapshot::open(&args.path, args.at.as_deref())?;
    let index = match snap.find_or_take(&args.sop) {
        Ok((i, note)) => {
            if let Some(note) = note {
                eprintln!("note: {note}");
            }
            i
        }
        Err(e) => {
            return Err(e.into());
        }
    };
    let rendered = render::render_with(&snap, index, args.with_changes)?;
    let out = args
        .output
        .unwrap_or_else(|| std::path::PathBuf::from(render::pdf_name(&rendered.id)));
    sopkit::fs_atomic::write(&out, &rendered.pdf)
        .with_context(|| format!("writing {}", out.display()))?;
    println!(
        "{} {} ({}) -> {}",
        rendered.id,
        rendered.title,
        rendered.state(),
        out.display()
    );
    if snap.uncommitted {
        eprintln!(
            "note: rendered from uncommitted changes; `sopkit verify-pdf` can only verify a render of a commit"
        );
    }
    if args.sign {
        let sig = sopkit::render::sign::sign(&args.path, &out)?;
        println!("signature -> {}", sig.display());
    }
    Ok(Exit::Clean)
}

fn build(args: BuildArgs) -> anyhow::Result<Exit> {
    use sopkit::render::{self, Snapshot};
    let mut snap = Snapshot::open(&args.path, args.at.as_deref())?;
    // The findings `sopkit check` gives, for this snapshot.
    let checked = snap.check();
    if !checked.diagnostics.is_empty() {
        let buf = findings_report(
            &snap.corpus,
            &checked,
            Format::Human,
            std::io::stderr().is_terminal(),
        )?;
        std::io::stderr().write_all(&buf)?;
    }
    let out = if args.out.is_absolute() {
        args.out.clone()
    } else {
        args.path.join(&args.out)
    };
    // Without sopkit.toml: what was taken as an SOP, said once per file.
    for note in snap.take_zero_config_sops(true) {
        eprintln!("note: {note}");
    }
    let bar = progress_bar(
        snap.corpus.sops.len() as u64,
        "{bar:40} {pos}/{len} SOPs  {msg}",
    );
    let built = render::build(&snap, &out, &|id: &str| {
        bar.set_message(id.to_string());
        bar.inc(1);
    })?;
    bar.finish_and_clear();
    for (r, path) in &built.rendered {
        println!(
            "{:<12} {:<28} {:<30} {}",
            r.id,
            r.version_label,
            r.status_label,
            path.display()
        );
    }
    for (id, e) in &built.failures {
        eprintln!("error: {id}: {e}");
    }
    let summary = checked.summary;
    println!(
        "{} SOPs rendered, {} failed, index -> {}; check: {} errors, {} warnings",
        built.rendered.len(),
        built.failures.len(),
        built.index.display(),
        summary.errors,
        summary.warnings
    );
    Ok(Exit::findings_unless(
        summary.errors == 0 && built.failures.is_empty(),
    ))
}

/// `bytes` into `output` (written whole or not at all), or to standard output.
fn emit(output: Option<&std::path::Path>, bytes: &[u8]) -> anyhow::Result<()> {
    match output {
        Some(path) => sopkit::fs_atomic::write(path, bytes)
            .with_context(|| format!("writing {}", path.display()))?,
        None => {
            let mut out = std::io::stdout().lock();
            out.write_all(bytes)?;
            out.flush()?;
        }
    }
    Ok(())
}

/// A progress bar on standard error when it is a terminal, else one that draws nothing.
fn progress_bar(total: u64, template: &str) -> indicatif::ProgressBar {
    let bar = if std::io::stderr().is_terminal() {
        indicatif::ProgressBar::new(total)
    } else {
        indicatif::ProgressBar::hidden()
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template(template)
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar
}

fn verify_pdf(args: VerifyPdfArgs) -> anyhow::Result<Exit> {
    use sopkit::render::{self, Verdict};
    let bytes =
        std::fs::read(&args.file).with_context(|| format!("reading {}", args.file.display()))?;
    let mut ok = match render::verify_pdf(&args.path, &bytes)? {
        Verdict::Identical { sop, commit } => {
            println!(
                "{}: identical to the rebuild of {sop} at commit {commit}",
                args.file.display()
            );
            true
        }
        Verdict::Differs {
            sop,
            commit,
            detail,
        } => {
            println!(
                "{}: NOT identical to the rebuild of {sop} at commit {commit}: {detail}",
                args.file.display()
            );
            false
        }
        Verdict::NotReproducible(why) => {
            println!("{}: cannot be verified: {why}", args.file.display());
            false
        }
    };
    // The signature is judged by the policy in force at the commit the PDF records.
    let commit = sopkit::render::pdf_meta::read(&bytes)
        .map(|p| p.commit.trim_end_matches("+uncommitted").to_string())
        .unwrap_or_else(|| "HEAD".into());
    match sopkit::render::sign::verify(&args.path, &commit, &args.file, &bytes)? {
        None => println!(
            "{}: no detached signature (.sig or .asc) beside it",
            args.file.display()
        ),
        Some(v) => {
            println!("{}: {}", v.file.display(), v.detail);
            ok &= v.valid;
        }
    }
    Ok(Exit::findings_unless(ok))
}

fn run_steps(args: RunArgs) -> anyhow::Result<Exit> {
    use sopkit::evidence::Outcome;
    use sopkit::run;
    let opts = run::Options {
        steps: args.steps.clone(),
        target: args.target.clone(),
        allow_draft: args.allow_draft,
    };
    let ws = Workspace::open(&args.path, Revision::WorkingTree)?;
    let plan = run::plan(&ws, &args.sop, &opts)?;
    if args.dry_run {
        print!("{}", run::describe(&plan));
        return Ok(Exit::Clean);
    }
    if let Some(e) = plan.steps.iter().find_map(run::refusal) {
        return Err(e.into());
    }
    if !args.yes {
        if !std::io::stdin().is_terminal() {
            anyhow::bail!("standard input is not a terminal; pass --yes to run without asking");
        }
        eprint!(
            "{}\nRun these {} step(s)? [y/N] ",
            run::describe(&plan),
            plan.steps.len()
        );
        let mut answer = String::new();
        std::io::stdin().read_line(&mut answer)?;
        if !matches!(answer.trim(), "y" | "Y" | "yes") {
            eprintln!("nothing ran");
            return Ok(Exit::Findings);
        }
    }
    let results = run::execute(&plan, &|msg: &str| eprintln!("== {msg}"))?;
    let mut code = Exit::Clean;
    for r in &results {
        eprintln!(
            "== {}: {}{}  evidence {}",
            r.step,
            r.outcome.as_str(),
            r.exit_status
                .map(|c| format!(" (exit {c})"))
                .unwrap_or_default(),
            r.record.display()
        );
        code = match r.outcome {
            Outcome::Succeeded => code,
            Outcome::Interrupted => Exit::Interrupted,
            Outcome::Failed | Outcome::TimedOut => Exit::Findings,
        };
    }
    Ok(code)
}

/// The evidence ledger of the working tree at `path`.
fn ledger_of(path: &std::path::Path) -> anyhow::Result<sopkit::evidence::repository::Ledger> {
    let ws = Workspace::open(path, Revision::WorkingTree)?;
    Ok(sopkit::evidence::repository::Ledger::of(&ws)?)
}

fn evidence_export(
    path: &std::path::Path,
    key: &std::path::Path,
    output: Option<&std::path::Path>,
) -> anyhow::Result<Exit> {
    use sopkit::evidence::export;
    let ledger = ledger_of(path)?;
    let key = export::ExportKey::read(key)?;
    let mut bundle = Vec::new();
    for envelope in export::in_toto(&ledger.dir, &ledger.judge, &key) {
        serde_json::to_writer(&mut bundle, &envelope)?;
        bundle.push(b'\n');
    }
    emit(output, &bundle)?;
    Ok(Exit::Clean)
}

fn evidence_stamp(path: &std::path::Path) -> anyhow::Result<Exit> {
    let ledger = ledger_of(path)?;
    let url = &ledger.config.evidence.tsa_url;
    let (Some(url), Some((_, ca))) = (url, &ledger.judge.tsa_certificate) else {
        anyhow::bail!(
            "sopkit.toml needs `[evidence] tsa_url` and `tsa_certificate` (a file the policy \
             holds) to stamp evidence"
        );
    };
    let stamped = sopkit::evidence::stamp::stamp(&ledger.dir, url, ca)?;
    for s in &stamped {
        println!(
            "{}: stamped at {}",
            s.record.display(),
            sopkit::approval::utc(s.time)
        );
    }
    println!("{} token(s) obtained", stamped.len());
    Ok(Exit::Clean)
}

fn evidence_verify(path: &std::path::Path) -> anyhow::Result<Exit> {
    let report = ledger_of(path)?.verify()?;
    print!("{}", report.text());
    Ok(Exit::findings_unless(report.problems.is_empty()))
}

fn evidence_log(args: EvidenceLogArgs) -> anyhow::Result<Exit> {
    use sopkit::evidence::log;
    let since = match &args.since {
        None => None,
        Some(d) => match log::since_bound(d) {
            Some(bound) => Some(bound),
            None => anyhow::bail!(
                "--since {d}: expected a day (YYYY-MM-DD) or an RFC 3339 time \
                 (2026-12-01T09:30:00Z, or with an offset such as +01:00)"
            ),
        },
    };
    let ledger = ledger_of(&args.path)?;
    let log = log::read(
        &ledger.dir,
        &log::Filter {
            sop: args.sop,
            step: args.step,
            since,
        },
        Some(&ledger.judge),
    );
    let rows = log.rows;
    // Buffered: the JSON serializer writes many small pieces.
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    match args.format {
        LogFormat::Human => write!(out, "{}", log::human(&rows))?,
        LogFormat::Csv => write!(out, "{}", log::csv(&rows))?,
        LogFormat::Json => {
            serde_json::to_writer_pretty(&mut out, &rows)?;
            writeln!(out)?;
        }
    }
    out.flush()?;
    if log.unreadable.is_empty() {
        return Ok(Exit::Clean);
    }
    // A record left out of an audit log must not go unnoticed.
    for p in &log.unreadable {
        eprintln!(
            "error: {} could not be read as an evidence record; its run is not in this log",
            p.display()
        );
    }
    eprintln!(
        "{} record file(s) left out; `sopkit evidence verify` says what is wrong with them",
        log.unreadable.len()
    );
    Ok(Exit::Findings)
}

fn status(args: StatusArgs) -> anyhow::Result<Exit> {
    use sopkit::status;
    // Reading a large ledger touches a few hundred MB once: without transparent huge pages
    // the kernel zeroes only the pages used, which measured ~10% faster over 100,000 records.
    // (Inherited by a notification command, where it does no harm.)
    // Only a tuning: a kernel that refuses it changes nothing else.
    let _ = rustix::thread::disable_transparent_huge_pages(true);
    let ws = Workspace::open(
        &args.path,
        Revision::at_or(args.at.as_deref(), Revision::WorkingTree),
    )?;
    let s = status::status(&ws)?;
    let text = match args.format {
        StatusFormat::Json => {
            let mut t = serde_json::to_string_pretty(&s)?;
            t.push('\n');
            t
        }
        StatusFormat::Prometheus => status::prometheus::render(&s),
        StatusFormat::Human => status::human(
            &s,
            report::colour(args.out.is_none() && std::io::stdout().is_terminal()),
        ),
    };
    emit(args.out.as_deref(), text.as_bytes())?;
    if let Some(dir) = &args.html {
        // Each run with who signed it, when the ledger's policy can be read.
        let ledger = sopkit::evidence::repository::Ledger::of(&ws).ok();
        let judge = ledger.as_ref().map(|l| &l.judge);
        let rows = sopkit::evidence::log::rows(&s.evidence_dir, &Default::default(), judge);
        let page = status::html::render(&s, &rows);
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let file = dir.join("index.html");
        sopkit::fs_atomic::write(&file, page.as_bytes())
            .with_context(|| format!("writing {}", file.display()))?;
        eprintln!("dashboard: {}", file.display());
    }
    let mut undelivered = 0;
    if args.notify {
        let told = status::notify_new(&ws, &s)?;
        for (alert, d) in told.deliveries {
            if !d.ok {
                undelivered += 1;
            }
            eprintln!("{} ({alert})", d.line());
        }
        for w in &told.warnings {
            eprintln!("warning: {w}");
        }
        undelivered += told.warnings.len();
    }
    let exit = Exit::findings_unless(s.alerts.is_empty() && undelivered == 0);
    // The process ends here: freeing a large corpus and history piece by piece only costs time.
    std::mem::forget(ws);
    Ok(exit)
}

fn schedule(args: ScheduleArgs) -> anyhow::Result<Exit> {
    use sopkit::schedule;
    let window: schedule::Window = args.window.parse()?;
    let plan = schedule::plan(&Workspace::open(&args.path, Revision::WorkingTree)?)?;
    for w in &plan.warnings {
        eprintln!("warning: {w}");
    }
    if plan.jobs.is_empty() {
        eprintln!(
            "no SLOs to schedule in {}: add `slos: [{{ step: STEP, every: 1d }}]` to an SOP's front matter",
            plan.repo.display()
        );
        return Ok(Exit::Clean);
    }
    let sopkit = match args.sopkit {
        Some(p) => std::path::absolute(&p).with_context(|| format!("--sopkit {}", p.display()))?,
        None => std::env::current_exe().context("finding the path of this sopkit binary")?,
    };
    let opts = schedule::Options {
        emit: args.emit,
        window,
        sopkit,
        image: args.image,
        workdir: args.workdir,
    };
    let files = schedule::emit(&plan, &opts)?;
    match &args.out {
        Some(dir) => {
            for path in schedule::write_files(dir, &files)? {
                println!("{}", path.display());
            }
            eprintln!(
                "{} SLO job(s) from {} written to {}",
                plan.jobs.len(),
                plan.repo.display(),
                dir.display()
            );
        }
        None => {
            let mut out = std::io::stdout().lock();
            out.write_all(schedule::to_text(args.emit, &files).as_bytes())?;
            out.flush()?;
        }
    }
    Ok(Exit::Clean)
}

fn roles_jd(args: JdArgs) -> anyhow::Result<Exit> {
    use sopkit::roles::{self, Format};
    if args.format == Format::Pdf && args.output.is_none() {
        anyhow::bail!("--format pdf needs an output file: add -o FILE.pdf");
    }
    let snap = roles::open(&args.path)?;
    let jd = match roles::job_description(&snap, &args.role) {
        Ok(jd) => jd,
        Err(e) => {
            return Err(e.into());
        }
    };
    let bytes = match args.format {
        Format::Md => roles::markdown(&jd).into_bytes(),
        Format::Pdf => roles::pdf(&snap, &jd)?,
    };
    emit(args.output.as_deref(), &bytes)?;
    if let Some(path) = &args.output {
        eprintln!(
            "job description of {} ({}) -> {}",
            jd.role.title,
            jd.role.id,
            path.display()
        );
    }
    Ok(Exit::Clean)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("reading {path}: {source}")]
    struct Said {
        path: &'static str,
        source: std::io::Error,
    }

    #[test]
    fn a_cause_already_in_the_message_is_not_repeated() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "no such file");
        let e = anyhow::Error::new(Said {
            path: "x.md",
            source: io,
        })
        .context("checking x.md");
        assert_eq!(describe(&e), "checking x.md: reading x.md: no such file");
        let plain = anyhow::anyhow!("inner").context("outer");
        assert_eq!(describe(&plain), "outer: inner");
    }
}
