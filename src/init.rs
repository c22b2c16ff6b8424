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

/// Creates the repository files under `dir` (which must be absent or empty). Returns the
/// paths written.
pub fn init(dir: &Path) -> Result<Vec<PathBuf>, Error> {
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
    Ok(written)
}
