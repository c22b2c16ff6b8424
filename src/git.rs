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

/// A commit's summary as git gives it: its first paragraph (leading empty lines skipped), each
/// run of white space that holds a line break made one space. Written by hand because
/// libgit2's builds the text a byte at a time and keeps it on every cached commit (a twentieth
/// of a cold walk of a long history).
pub fn summary(commit: &git2::Commit<'_>) -> String {
    summary_of(commit.message_bytes())
}

/// [`summary`] of a commit message's bytes (libgit2's form: leading line breaks removed).
pub fn summary_of(message: &[u8]) -> String {
    let start = message
        .iter()
        .position(|&b| b != b'\n')
        .unwrap_or(message.len());
    let msg = &message[start..];
    let is_space = |b: u8| matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r');
    let mut out = Vec::with_capacity(msg.len().min(96));
    // The run of white space met last: where it began, and whether it held a line break.
    let mut space: Option<(usize, bool)> = None;
    for (i, &c) in msg.iter().enumerate() {
        // A line that is empty or only white space ends the paragraph.
        if c == b'\n'
            && msg[i + 1..]
                .iter()
                .take_while(|&&b| b != b'\n')
                .all(|&b| is_space(b))
        {
            break;
        }
        if is_space(c) {
            space.get_or_insert((i, false)).1 |= c == b'\n';
            continue;
        }
        match space.take() {
            Some((_, true)) => out.push(b' '),
            Some((from, false)) => out.extend_from_slice(&msg[from..i]),
            None => {}
        }
        out.push(c);
    }
    String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_summary_is_what_libgit2_gives() {
        let d = tempfile::tempdir().unwrap();
        let repo = git2::Repository::init(d.path()).unwrap();
        let who = git2::Signature::new("A", "a@example.com", &git2::Time::new(0, 0)).unwrap();
        let tree = repo
            .find_tree(repo.treebuilder(None).unwrap().write().unwrap())
            .unwrap();
        let messages = [
            "one line",
            "one line\n",
            "\n\nafter empty lines\n\nbody",
            "first\nsecond line\n\nbody",
            "  indented  and\t tabbed \n  next   \n \t \nbody",
            "trailing space   \n",
            "crlf\r\nline two\r\n\r\nbody",
            "caf\u{e9} \u{2014} ok\n",
            "",
            "\n",
            "   \nstarts blank",
            "a\n \nb",
        ];
        for m in messages {
            let id = repo.commit(None, &who, &who, m, &tree, &[]).unwrap();
            let c = repo.find_commit(id).unwrap();
            let ours = summary(&c);
            let theirs = repo
                .find_commit(id)
                .unwrap()
                .summary()
                .unwrap()
                .unwrap_or("")
                .to_string();
            assert_eq!(ours, theirs, "message {m:?}");
        }
    }

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
