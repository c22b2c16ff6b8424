//! Built-in actions (```` ```sopkit {step=ID action=NAME} ```` blocks, YAML arguments read
//! into [`crate::corpus::step::args`]): one file per action, sharing the [`Context`] of a
//! run and the [`Output`] they report for the evidence record. Each streams its data with
//! constant memory, hashes as it reads or writes, and reports what it produced and what it
//! checked. They work on the targets through [`crate::run::target`]; nothing below them
//! imports an action.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::config::TargetKind;
use crate::corpus::step::args::{self, Arguments};

mod archive;
mod copy;
mod db_dump;
mod git_mirror;
pub(crate) mod pipeline;
pub mod prune;
pub mod prune_objects;
mod restore;
mod restore_test;
mod upload;
mod verify;
mod verify_objects;

pub use crate::run::stream::Error;
pub(crate) use crate::run::stream::io;

/// The built-in actions this version runs.
pub const AVAILABLE: &[&str] = &[
    "archive",
    "verify",
    "copy",
    "git-mirror",
    "prune",
    "db-dump",
    "restore-test",
    "upload",
    "restore",
];

/// What an action produced and checked.
#[derive(Debug, Default)]
pub struct Output {
    /// Files produced (their paths), to be hashed into the evidence.
    pub artifacts: Vec<PathBuf>,
    /// Size and SHA-256 of artifacts hashed as they were written: the record takes these
    /// instead of reading the file a second time.
    pub hashed: BTreeMap<PathBuf, (u64, String)>,
    /// One line per check made, `ok: …` or `FAILED: …`.
    pub verification: Vec<String>,
}

/// Where a run is: the repository root, names for file names, and what earlier runs left
/// (`STEP-ID` → artifact paths of its latest successful run).
pub struct Context<'a> {
    pub root: &'a Path,
    pub sop: &'a str,
    pub step: &'a str,
    pub earlier: &'a BTreeMap<String, Vec<String>>,
    /// The targets of `sopkit.toml` (an argument `target: NAME` names one).
    pub targets: &'a BTreeMap<String, crate::config::Target>,
    pub log: &'a mut dyn Write,
}

/// An argument as an action uses it (or a dry run shows it): `${VAR}` expand from the
/// environment.
pub(crate) fn expand(text: &str) -> String {
    static VAR: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
        regex::Regex::new(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}").expect("static regex")
    });
    VAR.replace_all(text, |c: &regex::Captures<'_>| {
        std::env::var(&c[1]).unwrap_or_else(|_| c[0].to_string())
    })
    .into_owned()
}

/// An argument the action needs in this form (the other form of the action takes others).
pub(crate) fn required(value: Option<&str>, name: &'static str) -> Result<String, Error> {
    value.map(expand).ok_or(Error::Missing(name))
}

pub(crate) fn resolve(root: &Path, p: &str) -> PathBuf {
    let p = Path::new(p);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        root.join(p)
    }
}

pub fn run(args: &Arguments, cx: &mut Context<'_>) -> Result<Output, Error> {
    match args {
        Arguments::Archive(a) => archive::archive(a, cx),
        // With `key`, an object in a bucket; otherwise an archive.
        Arguments::Verify(a) if a.key.is_some() => verify_objects::verify(a, cx),
        Arguments::Verify(a) => verify::verify(a, cx),
        Arguments::Copy(a) => copy::copy(a, cx),
        Arguments::GitMirror(a) => git_mirror::git_mirror(a, cx),
        // On an s3 target, object versions in a bucket; otherwise items in a folder.
        Arguments::Prune(a)
            if target_kind(a.target.as_deref(), cx.targets) == Some(TargetKind::S3) =>
        {
            prune_objects::prune(a, cx)
        }
        Arguments::Prune(a) => prune::prune(&local_prune_args(a, cx.targets), cx),
        Arguments::DbDump(a) => db_dump::db_dump(a, cx),
        Arguments::RestoreTest(a) => restore_test::restore_test(a, cx),
        Arguments::Upload(a) => upload::upload(a, cx),
        Arguments::Restore(a) => restore::restore(a, cx),
    }
}

/// The kind of the target an action's `target` argument names, if it names one.
pub fn target_kind(
    target: Option<&str>,
    targets: &BTreeMap<String, crate::config::Target>,
) -> Option<TargetKind> {
    targets.get(target?).map(|t| t.kind)
}

/// A local `prune` may name a local target instead of a `path`: its path is used.
pub fn local_prune_args(
    args: &args::Prune,
    targets: &BTreeMap<String, crate::config::Target>,
) -> args::Prune {
    let mut args = args.clone();
    if args.path.is_none()
        && let Some(path) = args
            .target
            .as_deref()
            .and_then(|n| targets.get(n))
            .and_then(|t| t.path.clone())
    {
        args.path = Some(path);
    }
    args
}

pub(crate) fn timestamp() -> String {
    crate::time::now_compact()
}

/// The end of a check: every failure to the log and, if there is any, the step fails with
/// all of them; otherwise the checks made are the output.
pub(crate) fn conclude(
    log: &mut dyn Write,
    failures: &[String],
    checks: Vec<String>,
) -> Result<Output, Error> {
    for f in failures {
        let _ = writeln!(log, "{f}");
    }
    if !failures.is_empty() {
        return Err(Error::Failed(failures.join("; ")));
    }
    Ok(Output {
        verification: checks,
        ..Output::default()
    })
}

/// Files named by an argument: the artifacts of an earlier step of this SOP, or a path (a
/// file, or every file below a folder).
pub(crate) fn sources(arg: &str, cx: &Context<'_>) -> Result<Vec<PathBuf>, Error> {
    if let Some(paths) = cx.earlier.get(arg) {
        return Ok(paths.iter().map(PathBuf::from).collect());
    }
    let p = resolve(cx.root, arg);
    if p.is_file() {
        return Ok(vec![p]);
    }
    if !p.is_dir() {
        return Err(Error::Argument {
            name: "source",
            message: format!(
                "{} is neither a file, a folder nor an earlier step",
                p.display()
            ),
        });
    }
    let mut out = Vec::new();
    for e in walkdir::WalkDir::new(&p)
        .follow_links(false)
        .sort_by_file_name()
    {
        let e = e.map_err(|e| Error::Io {
            path: p.clone(),
            message: e.to_string(),
        })?;
        if e.file_type().is_file() {
            out.push(e.into_path());
        }
    }
    Ok(out)
}

/// Refuses a destination folder inside the source folder (`/srv` backed up into
/// `/srv/backups`): each run would take in its own output and every earlier one. Symlinks are
/// resolved; a destination not created yet is judged by its nearest existing folder.
fn refuse_dest_inside(dest_dir: &Path, source: &Path) -> Result<(), Error> {
    let Ok(source) = source.canonicalize() else {
        return Ok(()); // a missing source is reported where it is read
    };
    let existing = dest_dir.ancestors().find_map(|a| {
        let a = if a.as_os_str().is_empty() {
            Path::new(".")
        } else {
            a
        };
        a.canonicalize().ok()
    });
    if existing.is_some_and(|d| d.starts_with(&source)) {
        return Err(Error::Argument {
            name: "dest",
            message: format!(
                "{} is inside the source folder {}: every run would take in its own output and \
                 all earlier ones; choose a destination outside it",
                dest_dir.display(),
                source.display()
            ),
        });
    }
    Ok(())
}

/// What the actions' tests share: arguments written as YAML, a small tree, an archive.
#[cfg(test)]
pub(crate) mod testing {
    use super::*;

    /// The arguments of `action` written as `key: "value"` lines.
    pub(crate) fn args(action: &str, pairs: &[(&str, &str)]) -> Arguments {
        let yaml: String = pairs.iter().map(|(k, v)| format!("{k}: {v:?}\n")).collect();
        Arguments::parse(action, &yaml).unwrap()
    }

    pub(crate) fn prune_args(yaml: &str) -> args::Prune {
        match Arguments::parse("prune", yaml).unwrap() {
            Arguments::Prune(a) => a,
            other => panic!("{other:?}"),
        }
    }

    pub(crate) fn tree(dir: &Path) {
        std::fs::create_dir_all(dir.join("sub/deeper")).unwrap();
        std::fs::write(dir.join("a.txt"), "alpha\n").unwrap();
        std::fs::write(dir.join("sub/b.bin"), vec![7u8; 300_000]).unwrap();
        std::fs::write(dir.join("sub/deeper/c"), "").unwrap();
        std::os::unix::fs::symlink("../a.txt", dir.join("sub/link")).unwrap();
    }

    /// Runs `action` with `pairs` in a context with no earlier steps and no targets.
    pub(crate) fn act(root: &Path, action: &str, pairs: &[(&str, &str)]) -> Result<Output, Error> {
        let (earlier, targets) = (BTreeMap::new(), BTreeMap::new());
        let mut log = Vec::new();
        let mut cx = Context {
            root,
            sop: "IT-1",
            step: action,
            earlier: &earlier,
            targets: &targets,
            log: &mut log,
        };
        run(&args(action, pairs), &mut cx)
    }

    pub(crate) fn archive_of(root: &Path) -> PathBuf {
        tree(&root.join("data"));
        let out = act(root, "archive", &[("source", "data"), ("dest", "backups")]).unwrap();
        out.artifacts[0].clone()
    }

    pub(crate) fn verify_path(root: &Path, a: &Path) -> Result<Output, Error> {
        act(root, "verify", &[("archive", a.to_str().unwrap())])
    }
}
