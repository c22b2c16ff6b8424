//! Git, for all of sopkit: finding the repository around a folder, the folder's place in
//! it, and whether its history is whole. A foundation module: it imports nothing from the
//! rest of the crate, and its errors carry git's own message.

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{} is not inside a git repository ({message})", path.display())]
    NotARepository { path: PathBuf, message: String },
    #[error("{} is in a bare git repository; sopkit needs a work tree", .0.display())]
    Bare(PathBuf),
    #[error(
        "the history is shallow (a `git clone --depth` or a CI checkout): approvals are judged \
         along the whole chain of policy, so fetch it all (`git fetch --unshallow`, or \
         `fetch-depth: 0` with actions/checkout)"
    )]
    Shallow,
    #[error("git: {}", .0.message())]
    Git(git2::Error),
}

impl From<git2::Error> for Error {
    fn from(e: git2::Error) -> Error {
        Error::Git(e)
    }
}

/// The repository that contains `dir` (a work tree or a bare one).
pub fn discover(dir: &Path) -> Result<git2::Repository, Error> {
    git2::Repository::discover(dir).map_err(|e| Error::NotARepository {
        path: dir.to_path_buf(),
        message: e.message().to_string(),
    })
}

/// The repository that contains `dir`, or `None` outside git: for the readers to whom a
/// folder outside git simply has no history.
pub fn find(dir: &Path) -> Option<git2::Repository> {
    git2::Repository::discover(dir).ok()
}

/// The repository with a work tree that contains `dir`.
pub fn work_tree(dir: &Path) -> Result<git2::Repository, Error> {
    let repo = discover(dir)?;
    if repo.workdir().is_none() {
        return Err(Error::Bare(dir.to_path_buf()));
    }
    Ok(repo)
}

/// [`work_tree`], refused when the history is shallow: a trust decision needs it whole.
pub fn whole_history(dir: &Path) -> Result<git2::Repository, Error> {
    let repo = work_tree(dir)?;
    if repo.is_shallow() {
        return Err(Error::Shallow);
    }
    Ok(repo)
}

/// Where `dir` lies in `repo`'s work tree, as a repository path (`""` at its root, or
/// where it cannot be said).
pub fn prefix_in(repo: &git2::Repository, dir: &Path) -> String {
    repo.workdir()
        .and_then(|w| w.canonicalize().ok())
        .and_then(|w| {
            dir.canonicalize()
                .ok()
                .and_then(|d| d.strip_prefix(&w).ok().map(repo_path))
        })
        .unwrap_or_default()
}

/// A relative file-system path as a repository path (`/` between its parts).
pub fn repo_path(p: &Path) -> String {
    p.components()
        .map(|c| c.as_os_str().to_string_lossy())
        .collect::<Vec<_>>()
        .join("/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_folder_is_found_in_its_repository_with_gits_own_reason_when_not() {
        let d = tempfile::tempdir().unwrap();
        let outside = d.path().join("plain");
        std::fs::create_dir_all(&outside).unwrap();
        match discover(&outside) {
            Err(Error::NotARepository { message, .. }) => assert!(!message.is_empty()),
            Err(other) => panic!("{other}"),
            Ok(_) => panic!("a plain folder taken for a repository"),
        }
        assert!(find(&outside).is_none());

        let repo_dir = d.path().join("repo");
        let repo = git2::Repository::init(&repo_dir).unwrap();
        std::fs::create_dir_all(repo_dir.join("qms/procedures")).unwrap();
        let inner = repo_dir.join("qms/procedures");
        assert_eq!(prefix_in(&repo, &inner), "qms/procedures");
        assert_eq!(prefix_in(&repo, &repo_dir), "");
        assert!(work_tree(&inner).is_ok());
        assert!(whole_history(&inner).is_ok());

        let bare_dir = d.path().join("bare.git");
        git2::Repository::init_bare(&bare_dir).unwrap();
        assert!(matches!(work_tree(&bare_dir), Err(Error::Bare(_))));
    }
}
