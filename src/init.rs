//! `sopkit init DIR`: a new SOP repository that passes `sopkit check` as created.

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0} exists and is not empty; choose a new folder")]
    NotEmpty(PathBuf),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: creating a git repository: {}", .reason.message())]
    Git { path: PathBuf, reason: git2::Error },
}

/// What [`init`] made.
#[derive(Debug)]
pub struct Created {
    pub files: Vec<PathBuf>,
    /// A git repository was created in the folder (it was not inside one already).
    pub git: bool,
}

/// The files of a new repository: path and content.
pub const FILES: &[(&str, &str)] = &[
    ("sopkit.toml", include_str!("init/sopkit.toml")),
    ("glossary/glossary.md", include_str!("init/glossary.md")),
    (
        "roles/quality-lead.md",
        include_str!("init/quality-lead.md"),
    ),
    ("roles/operator.md", include_str!("init/operator.md")),
    ("roles/people.yaml", include_str!("init/people.yaml")),
    ("roles/keys/.gitkeep", ""),
    (
        "procedures/EX-001-back-up-the-shared-folder.md",
        include_str!("init/procedure.md"),
    ),
    (
        "templates/README.md",
        "# Templates\n\nPut `sop.typ.j2`, `index.typ.j2` or `jd.typ.j2` here to replace the layout that `sopkit render`,\n`sopkit build` and `sopkit roles jd` use; start from the built-in ones in sopkit's `src/render/templates/`.\n",
    ),
    (".gitignore", "/out/\n"),
    (
        "evidence/README.md",
        "# Evidence\n\nThe evidence ledger that `sopkit run` writes. Do not edit by hand.\n",
    ),
];

/// Creates the repository files under `dir` (which must be absent or empty) and, unless `dir`
/// is inside a git work tree already, a git repository there: approvals are signed commits,
/// and every revision is read from git.
pub fn init(dir: &Path) -> Result<Created, Error> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| Error::Io { path, source }
    };
    if dir.exists() {
        let mut entries = std::fs::read_dir(dir).map_err(io(dir))?;
        if entries.next().is_some() {
            return Err(Error::NotEmpty(dir.to_path_buf()));
        }
    }
    let mut written = Vec::new();
    for (rel, content) in FILES {
        let path = dir.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(io(parent))?;
        }
        std::fs::write(&path, content).map_err(io(&path))?;
        written.push(path);
    }
    let inside = crate::git::work_tree(dir).is_ok();
    if !inside {
        let git = |reason| Error::Git {
            path: dir.to_path_buf(),
            reason,
        };
        let mut opts = git2::RepositoryInitOptions::new();
        opts.initial_head("main");
        git2::Repository::init_opts(dir, &opts).map_err(git)?;
    }
    Ok(Created {
        files: written,
        git: !inside,
    })
}
