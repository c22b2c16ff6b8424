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
use cli::{ApproveArgs, CheckArgs, Cli, Command, HistoryArgs, HistoryFormat};
use sopkit::report::{self, Format};

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            if let Some(io) = e.downcast_ref::<std::io::Error>()
                && io.kind() == std::io::ErrorKind::BrokenPipe
            {
                return ExitCode::SUCCESS;
            }
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Check(args) => check(args),
        Command::Approve(args) => approve(args),
        Command::History(args) => history(args),
        Command::Init { dir } => {
            let written = sopkit::init::init(&dir)?;
            println!(
                "created {} files in {}; run `sopkit check {}`",
                written.len(),
                dir.display(),
                dir.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "sopkit", &mut std::io::stdout());
            Ok(ExitCode::SUCCESS)
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
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn check(args: CheckArgs) -> anyhow::Result<ExitCode> {
    let outcome = sopkit::check::check_path(&args.path, args.base.as_deref())?;
    let color = args.output.is_none()
        && args.format == Format::Human
        && std::io::stdout().is_terminal()
        && std::env::var_os("NO_COLOR").is_none();
    let cx = report::Context {
        corpus: &outcome.corpus,
        summary: outcome.summary,
        color,
    };
    let findings = report::locate(&outcome.diagnostics, &outcome.corpus);
    let mut buf = Vec::new();
    report::write(args.format, &findings, &cx, &mut buf)?;
    match &args.output {
        Some(path) => sopkit::fs_atomic::write(path, &buf)
            .with_context(|| format!("writing {}", path.display()))?,
        None => {
            let mut out = std::io::stdout().lock();
            out.write_all(&buf)?;
            out.flush()?;
        }
    }
    let code = if outcome.summary.errors > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    };
    // The process ends here: returning the corpus's memory piece by piece would only cost time.
    std::mem::forget(outcome);
    Ok(code)
}

fn approve(args: ApproveArgs) -> anyhow::Result<ExitCode> {
    match sopkit::approval::approve::approve(
        &args.path,
        &args.sops,
        &args.meaning,
        args.comment.as_deref(),
    ) {
        Ok(commit) => {
            println!(
                "approved {} ({}) in signed commit {}",
                args.sops.join(", "),
                args.meaning,
                &commit[..12]
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("error: {e}");
            Ok(ExitCode::from(2))
        }
    }
}

fn history(args: HistoryArgs) -> anyhow::Result<ExitCode> {
    let corpus = sopkit::corpus::Corpus::load(sopkit::tree::Tree::open_dir(&args.path)?)?;
    let h = sopkit::approval::history::load(&args.path, args.at.as_deref(), &corpus.config)?;
    let Some(sop) = h.sops.get(&args.sop) else {
        eprintln!("error: no history for SOP `{}`", args.sop);
        return Ok(ExitCode::from(2));
    };
    let mut out = std::io::stdout().lock();
    match args.format {
        HistoryFormat::Json => {
            serde_json::to_writer_pretty(&mut out, sop)?;
            writeln!(out)?;
        }
        HistoryFormat::Human => write!(out, "{}", sopkit::approval::render_history(sop))?,
    }
    Ok(ExitCode::SUCCESS)
}
