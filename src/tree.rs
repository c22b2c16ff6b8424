//! [`Tree`]: one read-only view of a repository, either the working tree on disk or the tree
//! of a git revision. Everything sopkit reads goes through it, so `check --base`, rendering
//! `--at REV` and approval policy "as of the parent commit" all share one code path.
//!
//! Paths are repository-relative strings with `/` separators. Nothing read through a tree
//! can leave the repository: symbolic links that point outside are recorded as
//! [`Escape`]s and never followed, and [`normalize`] refuses `..` above the root.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    // git2's message alone, and not as the error's source: its Display adds class and code
    // numbers, and a source would be printed a second time after the message.
    #[error("git: {}", .0.message())]
    Git(git2::Error),
    #[error(transparent)]
    Repository(#[from] crate::git::Error),
    #[error("revision `{rev}` not found: {}", .reason.message())]
    BadRevision { rev: String, reason: git2::Error },
    #[error("{path}: no such file in the tree")]
    NotFound { path: String },
    #[error("{path}: {size} bytes is larger than the limit of {limit} bytes")]
    TooLarge { path: String, size: u64, limit: u64 },
    #[error("{0} is not a directory")]
    NotADirectory(PathBuf),
}

impl From<git2::Error> for Error {
    fn from(e: git2::Error) -> Error {
        Error::Git(e)
    }
}

/// What a path in the tree is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A file. Its size is checked when it is read, so listing a large tree (an evidence
    /// ledger of 100,000 records) costs no `stat` per file.
    File,
    Dir,
}

/// A symbolic link that is not followed: it points outside the repository or, when
/// `dangling`, resolves to nothing (a missing target, or a loop of links).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Escape {
    pub path: String,
    pub target: String,
    pub dangling: bool,
}

/// A file or folder the walk of a working tree could not read (a folder: nothing below it
/// is in the tree). Reported, never skipped in silence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unreadable {
    pub path: String,
    pub reason: String,
    pub folder: bool,
}

enum Backing {
    /// `links` maps entries that are symbolic links (inside the root) to their real path.
    Disk {
        root: PathBuf,
        links: BTreeMap<String, PathBuf>,
    },
    Git {
        repo: Mutex<git2::Repository>,
        blobs: BTreeMap<String, git2::Oid>,
    },
}

pub struct Tree {
    backing: Backing,
    entries: BTreeMap<String, Kind>,
    escapes: Vec<Escape>,
    unreadable: Vec<Unreadable>,
    /// Entries directly in the root that `.gitignore` (or `.ignore`) leaves out of a working
    /// tree, folders with a trailing `/`.
    ignored: Vec<String>,
    /// What this tree shows, for messages: a directory or `REV (commit)`.
    pub label: String,
    /// The commit a revision tree was read from.
    pub commit: Option<String>,
}

impl std::fmt::Debug for Tree {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tree")
            .field("label", &self.label)
            .field("entries", &self.entries.len())
            .finish()
    }
}

impl Tree {
    /// The working tree under `root`, honouring `.gitignore` (so build output such as
    /// `target/` or `out/` is not part of the corpus), without following symlinks out.
    pub fn open_dir(root: &Path) -> Result<Tree, Error> {
        let meta = std::fs::metadata(root).map_err(|source| Error::Io {
            path: root.into(),
            source,
        })?;
        if !meta.is_dir() {
            return Err(Error::NotADirectory(root.into()));
        }
        let root = root.canonicalize().map_err(|source| Error::Io {
            path: root.into(),
            source,
        })?;
        // Walked in parallel (a ledger folder may hold 100,000 files); each thread collects
        // its entries and hands them over when it finishes.
        let found: Mutex<Vec<(String, Walked)>> = Mutex::new(Vec::new());
        ignore::WalkBuilder::new(&root)
            .hidden(false)
            .follow_links(false)
            .require_git(false)
            .filter_entry(|e| e.file_name() != ".git")
            .build_parallel()
            .run(|| {
                let mut batch = Batch {
                    items: Vec::new(),
                    sink: &found,
                };
                let root = &root;
                Box::new(move |entry| {
                    match entry {
                        Ok(e) => batch.items.extend(walked(root, &e)),
                        Err(e) => batch.items.extend(walk_error(root, &e)),
                    }
                    ignore::WalkState::Continue
                })
            });
        let mut found = found.into_inner().unwrap_or_else(|e| e.into_inner());
        // Sorted first: a map built from sorted entries is built in one pass.
        found.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        let mut escapes = Vec::new();
        let mut unreadable = Vec::new();
        let mut links = BTreeMap::new();
        let entries: BTreeMap<String, Kind> = std::iter::once((String::new(), Kind::Dir))
            .chain(found.into_iter().filter_map(|(rel, w)| match w {
                Walked::Unreadable(reason, folder) => {
                    unreadable.push(Unreadable {
                        path: rel,
                        reason,
                        folder,
                    });
                    None
                }
                Walked::Kind(kind) => Some((rel, kind)),
                Walked::Link(kind, real) => {
                    links.insert(rel.clone(), real);
                    Some((rel, kind))
                }
                Walked::Escape(target, dangling) => {
                    escapes.push(Escape {
                        path: rel,
                        target,
                        dangling,
                    });
                    None
                }
            }))
            .collect();
        escapes.sort_by(|a: &Escape, b: &Escape| a.path.cmp(&b.path));
        // What the walk left out at the top: ignored (escapes and unreadable entries are
        // reported on their own).
        let mut ignored: Vec<String> = std::fs::read_dir(&root)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                let seen = name == ".git"
                    || entries.contains_key(&name)
                    || escapes.iter().any(|x| x.path == name)
                    || unreadable.iter().any(|x| x.path == name);
                let dir = e.file_type().is_ok_and(|t| t.is_dir());
                (!seen).then(|| if dir { format!("{name}/") } else { name })
            })
            .collect();
        ignored.sort();
        Ok(Tree {
            ignored,
            label: root.display().to_string(),
            backing: Backing::Disk { root, links },
            entries,
            escapes,
            unreadable,
            commit: None,
        })
    }

    /// The tree of `rev` in the git repository that contains `dir`, limited to the part of
    /// it below `dir` (so a repository of SOPs may live in a sub-folder of a larger one).
    pub fn open_revision(dir: &Path, rev: &str) -> Result<Tree, Error> {
        let dir = dir.canonicalize().map_err(|source| Error::Io {
            path: dir.into(),
            source,
        })?;
        let repo = crate::git::work_tree(&dir)?;
        let workdir = repo
            .workdir()
            .unwrap_or(&dir)
            .canonicalize()
            .map_err(|source| Error::Io {
                path: dir.clone(),
                source,
            })?;
        let prefix = crate::git::repo_path(dir.strip_prefix(&workdir).unwrap_or(Path::new("")));
        let object = repo
            .revparse_single(rev)
            .map_err(|reason| Error::BadRevision {
                rev: rev.to_string(),
                reason,
            })?;
        let commit = object
            .peel_to_commit()
            .map_err(|reason| Error::BadRevision {
                rev: rev.to_string(),
                reason,
            })?;
        let mut tree = commit.tree()?;
        if !prefix.is_empty() {
            let entry = tree.get_path(Path::new(&prefix))?;
            tree = entry.to_object(&repo)?.peel_to_tree()?;
        }
        let mut entries = BTreeMap::new();
        let mut blobs = BTreeMap::new();
        let mut links = Vec::new();
        entries.insert(String::new(), Kind::Dir);
        tree.walk(git2::TreeWalkMode::PreOrder, |parent, e| {
            let path = format!("{parent}{}", e.name().unwrap_or(""));
            match e.filemode() {
                0o040000 | 0o160000 => {
                    entries.insert(path, Kind::Dir);
                }
                0o120000 => links.push((path, e.id())),
                _ => {
                    blobs.insert(path.clone(), e.id());
                    entries.insert(path, Kind::File);
                }
            }
            git2::TreeWalkResult::Ok
        })?;
        let mut escapes = Vec::new();
        for (path, oid) in links {
            let target = repo
                .find_blob(oid)
                .map(|b| String::from_utf8_lossy(b.content()).into_owned())
                .unwrap_or_default();
            let resolved = normalize(&format!("{}/{}", parent_of(&path), target));
            let inside = resolved.as_ref().filter(|_| !target.starts_with('/'));
            match inside.and_then(|r| entries.get(r).map(|k| (r.clone(), *k))) {
                Some((r, kind)) => {
                    if let Some(oid) = blobs.get(&r).copied() {
                        blobs.insert(path.clone(), oid);
                    }
                    entries.insert(path, kind);
                }
                None => escapes.push(Escape {
                    path,
                    dangling: inside.is_some(),
                    target,
                }),
            }
        }
        let id = commit.id().to_string();
        drop(tree);
        drop(commit);
        drop(object);
        Ok(Tree {
            // A commit holds nothing ignored.
            ignored: Vec::new(),
            label: format!("{rev} ({})", &id[..12]),
            backing: Backing::Git {
                repo: Mutex::new(repo),
                blobs,
            },
            entries,
            escapes,
            unreadable: Vec::new(),
            commit: Some(id),
        })
    }

    pub fn kind(&self, path: &str) -> Option<Kind> {
        self.entries.get(path).copied()
    }

    pub fn is_file(&self, path: &str) -> bool {
        matches!(self.kind(path), Some(Kind::File))
    }

    pub fn is_dir(&self, path: &str) -> bool {
        matches!(self.kind(path), Some(Kind::Dir))
    }

    /// Every file path, sorted.
    pub fn files(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().filter_map(|(p, k)| match k {
            Kind::File => Some(p.as_str()),
            Kind::Dir => None,
        })
    }

    /// The entries directly inside a folder (names only).
    pub fn children<'a>(&'a self, dir: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        let prefix = if dir.is_empty() {
            String::new()
        } else {
            format!("{dir}/")
        };
        let len = prefix.len();
        self.entries
            .range(prefix.clone()..)
            .take_while(move |(p, _)| p.starts_with(&prefix))
            .filter_map(move |(p, _)| {
                let rest = &p[len..];
                (!rest.is_empty() && !rest.contains('/')).then_some(rest)
            })
    }

    /// Entries directly in the root of a working tree that `.gitignore` leaves out (folders
    /// end with `/`); none for a revision.
    pub fn ignored(&self) -> &[String] {
        &self.ignored
    }

    /// Symbolic links that point outside the repository.
    pub fn escapes(&self) -> &[Escape] {
        &self.escapes
    }

    /// Files and folders of a working tree that could not be read while it was walked.
    pub fn unreadable(&self) -> &[Unreadable] {
        &self.unreadable
    }

    /// Reads a file, refusing files larger than `limit` bytes.
    pub fn read(&self, path: &str, limit: u64) -> Result<Vec<u8>, Error> {
        if self.kind(path) != Some(Kind::File) {
            return Err(Error::NotFound {
                path: path.to_string(),
            });
        }
        let too_large = |size: u64| Error::TooLarge {
            path: path.to_string(),
            size,
            limit,
        };
        match &self.backing {
            Backing::Disk { root, links } => {
                use std::io::Read;
                use std::os::unix::fs::OpenOptionsExt;
                // A symlink was resolved (and found inside the root) during the walk. Anything
                // else is opened with O_NOFOLLOW, so a file swapped for a symlink since the
                // walk is refused rather than followed out of the repository.
                let full = links.get(path).cloned().unwrap_or_else(|| root.join(path));
                let io = |source| Error::Io {
                    path: full.clone(),
                    source,
                };
                let mut file = std::fs::OpenOptions::new()
                    .read(true)
                    .custom_flags(libc::O_NOFOLLOW)
                    .open(&full)
                    .map_err(io)?;
                let size = file.metadata().map_err(io)?.len();
                if size > limit {
                    return Err(too_large(size));
                }
                let mut bytes = Vec::with_capacity(size as usize);
                // The file may have grown since: read at most one byte past the limit.
                file.by_ref()
                    .take(limit + 1)
                    .read_to_end(&mut bytes)
                    .map_err(io)?;
                if bytes.len() as u64 > limit {
                    return Err(too_large(bytes.len() as u64));
                }
                Ok(bytes)
            }
            Backing::Git { repo, blobs } => {
                let oid = blobs.get(path).ok_or_else(|| Error::NotFound {
                    path: path.to_string(),
                })?;
                let repo = repo.lock().unwrap_or_else(|e| e.into_inner());
                // The object header gives the size without inflating a huge blob.
                let (size, _) = repo.odb()?.read_header(*oid)?;
                if size as u64 > limit {
                    return Err(too_large(size as u64));
                }
                let blob = repo.find_blob(*oid)?;
                Ok(blob.content().to_vec())
            }
        }
    }
}

/// One walked entry, as the tree records it.
enum Walked {
    Kind(Kind),
    /// A symlink resolved inside the root.
    Link(Kind, PathBuf),
    /// A symlink out of the root or (`true`) resolving to nothing, with its target as
    /// written.
    Escape(String, bool),
    /// An entry that could not be read, why, and whether it is a folder.
    Unreadable(String, bool),
}

/// A walking thread's entries, handed to `sink` when the thread's visitor is dropped.
struct Batch<'a> {
    items: Vec<(String, Walked)>,
    sink: &'a Mutex<Vec<(String, Walked)>>,
}

impl Drop for Batch<'_> {
    fn drop(&mut self) {
        let mut sink = self.sink.lock().unwrap_or_else(|e| e.into_inner());
        sink.append(&mut self.items);
    }
}

/// An I/O error of the walk (a folder it could not list, an entry it could not stat), as an
/// unreadable path. Errors that are not about reading (a bad glob in a `.gitignore`) are not
/// about the tree's content and are left to git.
fn walk_error(root: &Path, e: &ignore::Error) -> Option<(String, Walked)> {
    let reason = e.io_error()?.to_string();
    let mut inner = e;
    let path = loop {
        match inner {
            ignore::Error::WithPath { path, .. } => break path,
            ignore::Error::WithDepth { err, .. } | ignore::Error::WithLineNumber { err, .. } => {
                inner = err
            }
            _ => return None,
        }
    };
    let rel = crate::git::repo_path(path.strip_prefix(root).ok()?);
    let folder = std::fs::symlink_metadata(path).is_ok_and(|m| m.is_dir());
    Some((rel, Walked::Unreadable(reason, folder)))
}

/// What the walk learns from one entry.
fn walked(root: &Path, entry: &ignore::DirEntry) -> Option<(String, Walked)> {
    let rel = crate::git::repo_path(entry.path().strip_prefix(root).ok()?);
    if rel.is_empty() {
        return None;
    }
    let ft = entry.file_type()?;
    let w = if ft.is_symlink() {
        match resolve_disk_symlink(root, entry.path()) {
            Some((kind, real)) => Walked::Link(kind, real),
            None => Walked::Escape(
                std::fs::read_link(entry.path())
                    .map(|t| t.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                entry.path().canonicalize().is_err(),
            ),
        }
    } else if ft.is_dir() {
        Walked::Kind(Kind::Dir)
    } else if ft.is_file() {
        Walked::Kind(Kind::File)
    } else {
        return None;
    };
    Some((rel, w))
}

/// The folder part of a repository path (`""` for the root).
pub fn parent_of(path: &str) -> &str {
    path.rfind('/').map_or("", |i| &path[..i])
}

/// Joins `rel` onto folder `base` and resolves `.` and `..` lexically. `None` when the
/// result would leave the repository root.
pub fn normalize(path: &str) -> Option<String> {
    let mut parts: Vec<&str> = Vec::new();
    for seg in path.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            s => parts.push(s),
        }
    }
    Some(parts.join("/"))
}

fn resolve_disk_symlink(root: &Path, link: &Path) -> Option<(Kind, PathBuf)> {
    let real = link.canonicalize().ok()?;
    if !real.starts_with(root) {
        return None;
    }
    let meta = std::fs::metadata(&real).ok()?;
    let kind = if meta.is_dir() { Kind::Dir } else { Kind::File };
    Some((kind, real))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn git_errors_say_gits_message_without_class_and_code() {
        let e = || {
            git2::Error::new(
                git2::ErrorCode::NotFound,
                git2::ErrorClass::Reference,
                "reference 'refs/heads/x' not found",
            )
        };
        assert!(e().to_string().contains("class="), "git2's own Display");
        let said = [
            Error::from(e()).to_string(),
            crate::render::Error::from(e()).to_string(),
            crate::signing::Error::from(e()).to_string(),
            crate::approval::history::Error::from(e()).to_string(),
            crate::approval::approve::Error::from(e()).to_string(),
        ];
        for s in said {
            assert_eq!(s, "git: reference 'refs/heads/x' not found");
        }
    }

    #[test]
    fn normalize_stays_inside() {
        assert_eq!(normalize("a/b/../c").as_deref(), Some("a/c"));
        assert_eq!(normalize("./a//b/.").as_deref(), Some("a/b"));
        assert_eq!(normalize("a/../.."), None);
        assert_eq!(normalize("../x"), None);
        assert_eq!(normalize("").as_deref(), Some(""));
    }

    #[test]
    fn disk_tree_reports_escaping_symlinks_and_does_not_read_them() {
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret.md"), "secret").unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.md"), "# A").unwrap();
        std::os::unix::fs::symlink(outside.path().join("secret.md"), dir.path().join("leak.md"))
            .unwrap();
        std::os::unix::fs::symlink("a.md", dir.path().join("alias.md")).unwrap();
        let tree = Tree::open_dir(dir.path()).unwrap();
        assert!(tree.is_file("a.md"));
        assert!(tree.is_file("alias.md"));
        assert!(!tree.is_file("leak.md"));
        assert_eq!(tree.escapes().len(), 1);
        assert_eq!(tree.escapes()[0].path, "leak.md");
        assert!(tree.read("leak.md", 1 << 20).is_err());
        assert_eq!(tree.read("alias.md", 1 << 20).unwrap(), b"# A");
        assert!(matches!(tree.read("a.md", 2), Err(Error::TooLarge { .. })));
        assert_eq!(
            tree.children("").collect::<Vec<_>>(),
            vec!["a.md", "alias.md"]
        );
    }
    #[test]
    fn links_that_resolve_to_nothing_are_told_from_links_out_of_the_repository() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.md"), "# A").unwrap();
        let link = |target: &str, name: &str| {
            std::os::unix::fs::symlink(target, dir.path().join(name)).unwrap();
        };
        link("/etc/hostname", "out.md");
        link("gone.md", "missing.md");
        link("loop2.md", "loop1.md");
        link("loop1.md", "loop2.md");
        let want = vec![
            ("loop1.md".to_string(), true),
            ("loop2.md".to_string(), true),
            ("missing.md".to_string(), true),
            ("out.md".to_string(), false),
        ];
        let seen = |t: &Tree| {
            let mut v: Vec<(String, bool)> = t
                .escapes()
                .iter()
                .map(|e| (e.path.clone(), e.dangling))
                .collect();
            v.sort();
            v
        };
        assert_eq!(seen(&Tree::open_dir(dir.path()).unwrap()), want);
        // The same links committed: a revision tells them apart the same way.
        let repo = git2::Repository::init(dir.path()).unwrap();
        let mut index = repo.index().unwrap();
        index
            .add_all(["*"], git2::IndexAddOption::DEFAULT, None)
            .unwrap();
        let tree_id = index.write_tree().unwrap();
        let who = git2::Signature::now("T", "t@example.com").unwrap();
        let tree = repo.find_tree(tree_id).unwrap();
        repo.commit(Some("HEAD"), &who, &who, "links", &tree, &[])
            .unwrap();
        assert_eq!(
            seen(&Tree::open_revision(dir.path(), "HEAD").unwrap()),
            want
        );
    }
}
