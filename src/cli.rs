//! The command line: clap derive types only. Doc comments are the help text.

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use sopkit::report::Format;

/// Standard operating procedures as code: check, approve, render and run SOPs kept in git.
#[derive(Debug, Parser)]
#[command(name = "sopkit", version, about, long_about = None, max_term_width = 100)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check every link, anchor, term, role, front matter and step of a repository.
    ///
    /// Exit status: 0 when there are no errors (warnings allowed), 1 when there are errors,
    /// 2 on a usage or fatal error.
    Check(CheckArgs),
    /// Approve SOPs: one signed commit (through git's own signing setup) naming each SOP, the
    /// SHA-256 of the exact content approved, and the meaning of the signature.
    Approve(ApproveArgs),
    /// List an SOP's revisions with every signature and whether it counts.
    History(HistoryArgs),
    /// Show what changed in an SOP between two revisions, section by section and word by
    /// word: for a terminal, as Markdown for a pull request, or as a redline PDF.
    ///
    /// FROM and TO are each `vN` (an approved version), a commit or other git revision, or
    /// `worktree`. By default FROM is the last effective version and TO the working tree.
    Diff(DiffArgs),
    /// Render one SOP to PDF as it stood at a revision (default: HEAD, or the working tree
    /// when it has uncommitted changes).
    Render(RenderArgs),
    /// The main job: check everything, verify approvals, render every SOP and an index to
    /// the output folder.
    ///
    /// Exit status: 0 when all went well, 1 when check found errors or an SOP could not be
    /// rendered (the other PDFs are still written), 2 on a usage or fatal error.
    Build(BuildArgs),
    /// Check that a PDF is genuine: rebuild it from the commit it records and compare the
    /// bytes; check its detached signature (FILE.sig or FILE.asc) when there is one.
    ///
    /// Exit status: 0 when identical (and any signature valid), 1 otherwise, 2 on error.
    VerifyPdf(VerifyPdfArgs),
    /// Run an SOP's steps (all, in order, or those named) and record evidence of each.
    ///
    /// Only an effective (approved) revision runs, unless --allow-draft. Exit status: 0 when
    /// every step succeeded, 1 when one failed or timed out, 130 when interrupted, 2 on a
    /// usage or fatal error.
    Run(RunArgs),
    /// The evidence ledger: verify it, or print the log of executed steps.
    #[command(subcommand)]
    Evidence(EvidenceCommand),
    /// Everything an auditor asks for about a period, in one folder and one zip: the PDF of
    /// every SOP revision effective in it with its redline, the signatures, the evidence log,
    /// the training matrix, open findings and alerts, and a manifest of SHA-256 hashes
    /// (signed with --sign). `sopkit audit verify DIR` checks a package.
    Audit(AuditArgs),
    /// Is the system of procedures being followed? Per SOP: version, effective or draft,
    /// pending approvals and who could sign, next review; per SLO: last success, due,
    /// overdue; 3-2-1-1-0 per backup set; retention; training; ledger integrity.
    ///
    /// Exit status: 0 when nothing is overdue or broken, 1 otherwise (the alerts say what),
    /// 2 on a usage or fatal error.
    Status(StatusArgs),
    /// Emit what runs every SLO's step on time in an off-peak window: systemd units, crontab
    /// lines or Kubernetes CronJobs running `sopkit run SOP --step STEP --yes`.
    ///
    /// Exit status: 0 (also when there are no SLOs: a note on standard error), 2 on a usage
    /// or fatal error.
    Schedule(ScheduleArgs),
    /// Roles: generate job descriptions.
    #[command(subcommand)]
    Roles(RolesCommand),
    /// Create a new SOP repository in DIR that passes `sopkit check`.
    Init {
        /// The folder to create (must be absent or empty).
        dir: PathBuf,
    },
    /// Print a shell completion script.
    Completions {
        /// The shell to complete for.
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff) to standard output, or write one page per command to DIR.
    Man {
        /// Write `sopkit.1` and `sopkit-COMMAND.1` files here instead of printing.
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// The repository to check (its root folder).
    #[arg(default_value = ".")]
    pub path: PathBuf,
    /// Report only findings that are new compared to this git revision (for pull requests).
    #[arg(long, value_name = "REV")]
    pub base: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Human, env = "SOPKIT_FORMAT")]
    pub format: Format,
    /// Write the report to this file instead of standard output (written atomically).
    #[arg(long, short = 'o', value_name = "FILE")]
    pub output: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub struct ApproveArgs {
    /// The SOP ids to approve (their committed content).
    #[arg(required = true, value_name = "SOP")]
    pub sops: Vec<String>,
    /// What the signature means: authored, reviewed, approved or acknowledged (configurable).
    #[arg(long)]
    pub meaning: String,
    /// A comment recorded in the commit message.
    #[arg(long)]
    pub comment: Option<String>,
    /// The repository (its root folder).
    #[arg(long, short = 'C', default_value = ".")]
    pub path: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DiffFormat {
    Human,
    Md,
    Pdf,
}

#[derive(Debug, clap::Args)]
pub struct DiffArgs {
    /// The SOP: its id (IT-245) or its path.
    #[arg(value_name = "SOP")]
    pub sop: String,
    /// Compare from here (default: the last effective version).
    #[arg(value_name = "FROM")]
    pub from: Option<String>,
    /// Compare to here (default: the working tree).
    #[arg(value_name = "TO")]
    pub to: Option<String>,
    #[arg(long, value_enum, default_value_t = DiffFormat::Human)]
    pub format: DiffFormat,
    /// Write to this file instead of standard output (needed for `--format pdf`).
    #[arg(long, short = 'o', value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// The repository (its root folder).
    #[arg(long, short = 'C', default_value = ".")]
    pub path: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum HistoryFormat {
    Human,
    Json,
}

#[derive(Debug, clap::Args)]
pub struct HistoryArgs {
    /// The SOP id.
    pub sop: String,
    #[arg(long, value_enum, default_value_t = HistoryFormat::Human)]
    pub format: HistoryFormat,
    /// Read history up to this revision instead of HEAD.
    #[arg(long, value_name = "REV")]
    pub at: Option<String>,
    /// The repository (its root folder).
    #[arg(long, short = 'C', default_value = ".")]
    pub path: PathBuf,
}

#[derive(Debug, clap::Args)]
pub struct RenderArgs {
    /// The SOP: its id (IT-245) or its path.
    #[arg(value_name = "SOP")]
    pub sop: String,
    /// Render the SOP as it stood at this git revision.
    #[arg(long, value_name = "REV")]
    pub at: Option<String>,
    /// Where to write the PDF (default: `<ID>.pdf` in the current folder).
    #[arg(long, short = 'o', value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Also write a detached signature (FILE.sig for SSH, FILE.asc for OpenPGP) with your git
    /// signing key (`gpg.format`, `user.signingkey`).
    #[arg(long)]
    pub sign: bool,
    /// Append the redline against the effective version before this one (for a draft under
    /// approval: the last effective version).
    #[arg(long)]
    pub with_changes: bool,
    /// The repository (its root folder).
    #[arg(long, short = 'C', default_value = ".")]
    pub path: PathBuf,
}

#[derive(Debug, clap::Args)]
pub struct BuildArgs {
    /// Build the repository as it stood at this git revision.
    #[arg(long, value_name = "REV")]
    pub at: Option<String>,
    /// The output folder (created when missing).
    #[arg(long, value_name = "DIR", default_value = "out")]
    pub out: PathBuf,
    /// The repository (its root folder).
    #[arg(long, short = 'C', default_value = ".")]
    pub path: PathBuf,
}

#[derive(Debug, clap::Args)]
pub struct VerifyPdfArgs {
    /// The PDF to check.
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    /// The repository the PDF was rendered from.
    #[arg(long, short = 'C', default_value = ".")]
    pub path: PathBuf,
}

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// The SOP: its id (IT-245) or its path.
    #[arg(value_name = "SOP")]
    pub sop: String,
    /// Run only this step (repeatable; in the order given).
    #[arg(long = "step", value_name = "ID")]
    pub steps: Vec<String>,
    /// Run against this target instead of the one each step names.
    #[arg(long, value_name = "NAME")]
    pub target: Option<String>,
    /// Show what would run, where, with which arguments (secrets masked); run nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Do not ask for confirmation (needed when standard input is not a terminal).
    #[arg(long)]
    pub yes: bool,
    /// Run a revision that is not effective; the evidence records that it was a draft.
    #[arg(long)]
    pub allow_draft: bool,
    /// The repository (its root folder).
    #[arg(long, short = 'C', default_value = ".")]
    pub path: PathBuf,
}

#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct AuditArgs {
    #[command(subcommand)]
    pub command: Option<AuditCommand>,
    /// The first day of the period (YYYY-MM-DD, UTC); default: from the start.
    #[arg(long, value_name = "DATE")]
    pub since: Option<String>,
    /// The last day of the period (YYYY-MM-DD, UTC, included); default: up to now.
    #[arg(long, value_name = "DATE")]
    pub until: Option<String>,
    /// Only this SOP (an id); may be given more than once.
    #[arg(long = "sop", value_name = "ID")]
    pub sops: Vec<String>,
    /// The package folder (new or empty); DIR.zip is written beside it.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Sign MANIFEST.sha256 with your git signing key (`gpg.format`, `user.signingkey`).
    #[arg(long)]
    pub sign: bool,
    /// The repository (its root folder).
    #[arg(long, short = 'C', default_value = ".")]
    pub path: PathBuf,
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Check a package against its MANIFEST.sha256, and the manifest's signature against the
    /// repository's keys; exit 1 naming each changed, missing or unlisted file.
    Verify {
        /// The package folder.
        dir: PathBuf,
        /// Check the hashes of a package whose manifest is not signed (without a signature,
        /// anyone who can write the folder can rewrite the manifest to match).
        #[arg(long)]
        allow_unsigned: bool,
        /// The repository whose keys the signature is checked against.
        #[arg(long, short = 'C', default_value = ".")]
        path: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub enum EvidenceCommand {
    /// Check every record, chain and log under evidence/; exit 1 naming each problem.
    Verify {
        /// The repository (its root folder).
        #[arg(long, short = 'C', default_value = ".")]
        path: PathBuf,
    },
    /// The log of executed steps: date and time, SOP, step, target, size, result, issues.
    Log(EvidenceLogArgs),
    /// Export each run that counts as an in-toto Statement (link predicate) in a DSSE
    /// envelope signed with an ed25519 key, one envelope per line.
    Export {
        /// The repository (its root folder).
        #[arg(long, short = 'C', default_value = ".")]
        path: PathBuf,
        #[arg(long, value_enum, default_value = "in-toto")]
        format: ExportFormat,
        /// An unencrypted OpenSSH ed25519 private key to sign the envelopes with.
        #[arg(long, value_name = "FILE")]
        key: PathBuf,
        /// Where to write the bundle (default: standard output).
        #[arg(long, short = 'o', value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// Obtain an RFC 3161 timestamp token for each writer's newest record from the
    /// time-stamping authority of `[evidence] tsa_url` (one token dates the whole chain).
    Stamp {
        /// The repository (its root folder).
        #[arg(long, short = 'C', default_value = ".")]
        path: PathBuf,
    },
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum ExportFormat {
    /// in-toto Statements in DSSE envelopes (`.intoto.jsonl`).
    InToto,
}

#[derive(Debug, clap::Args)]
pub struct EvidenceLogArgs {
    #[arg(long, value_name = "ID")]
    pub sop: Option<String>,
    #[arg(long, value_name = "ID")]
    pub step: Option<String>,
    /// Only runs started on or after this day (YYYY-MM-DD) or time (RFC 3339, any offset).
    #[arg(long, value_name = "DATE")]
    pub since: Option<String>,
    #[arg(long, value_enum, default_value_t = LogFormat::Human)]
    pub format: LogFormat,
    /// The repository (its root folder).
    #[arg(long, short = 'C', default_value = ".")]
    pub path: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Human,
    Json,
    Csv,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum StatusFormat {
    Human,
    Json,
    Prometheus,
}

#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    /// Read the SOPs, roles and approvals as they stood at this revision (default: the
    /// working tree). The evidence is always the ledger as it is now.
    #[arg(long, value_name = "REV")]
    pub at: Option<String>,
    #[arg(long, value_enum, default_value_t = StatusFormat::Human)]
    pub format: StatusFormat,
    /// Write to FILE (replaced atomically) instead of standard output.
    #[arg(short, long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Also write a static dashboard, DIR/index.html (no server, no scripts).
    #[arg(long, value_name = "DIR")]
    pub html: Option<PathBuf>,
    /// Tell the holders of the responsible roles about every alert not told before, as
    /// `[notify]` in sopkit.toml says (SMTP, webhook, command).
    #[arg(long)]
    pub notify: bool,
    /// The repository (its root folder).
    #[arg(default_value = ".")]
    pub path: PathBuf,
}

#[derive(Debug, clap::Args)]
pub struct ScheduleArgs {
    /// What to emit.
    #[arg(long, value_enum)]
    pub emit: sopkit::schedule::Emit,
    /// The off-peak window, HH:MM-HH:MM in UTC (may cross midnight).
    #[arg(long, value_name = "HH:MM-HH:MM", default_value = "01:00-05:00")]
    pub window: String,
    /// Write the files into DIR (created when missing) instead of standard output.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// The sopkit binary systemd and cron run (default: this binary's absolute path).
    #[arg(long, value_name = "PATH")]
    pub sopkit: Option<PathBuf>,
    /// The container image of the Kubernetes CronJobs.
    #[arg(long, value_name = "IMAGE", default_value = "sopkit:latest")]
    pub image: String,
    /// The repository's folder inside the container (default: its absolute path here).
    #[arg(long, value_name = "DIR")]
    pub workdir: Option<PathBuf>,
    /// The repository (its root folder).
    #[arg(default_value = ".")]
    pub path: PathBuf,
}

#[derive(Debug, Subcommand)]
pub enum RolesCommand {
    /// A job description of ROLE: its file (title, acronym, levels, reports_to, text) and every
    /// responsibility the SOPs give it (sections and steps that link to it, SOPs it owns or
    /// approves).
    ///
    /// Exit status: 0, or 2 for an unknown role (the known ones are listed) or another error.
    Jd(JdArgs),
}

#[derive(Debug, clap::Args)]
pub struct JdArgs {
    /// The role: its id (it-lead), acronym or title.
    pub role: String,
    /// Output format (pdf needs -o).
    #[arg(long, value_enum, default_value_t = sopkit::roles::Format::Md)]
    pub format: sopkit::roles::Format,
    /// Write to this file (atomically) instead of standard output.
    #[arg(long, short = 'o', value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// The repository (its root folder).
    #[arg(default_value = ".")]
    pub path: PathBuf,
}
