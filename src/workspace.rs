//! The one way every command reads a repository: the files at one revision (or in the
//! working tree) parsed once into a [`Corpus`], the git repository around them, one reading
//! of the clock, and, when a command asks, the approval history and the evidence ledger.
//! Commands are functions of a [`Workspace`]; none opens git or reads `sopkit.toml` itself.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use crate::approval::history::{self, History};
use crate::config::Config;
use crate::corpus::{Corpus, Mode};
use crate::tree::Tree;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Tree(#[from] crate::tree::Error),
    #[error(transparent)]
    Repository(#[from] crate::git::Error),
    #[error("revision `{rev}` not found: {}", .reason.message())]
    BadRevision { rev: String, reason: git2::Error },
    #[error(transparent)]
    History(#[from] history::Error),
    #[error(transparent)]
    Ambiguous(crate::corpus::FindSop),
    #[error("no history for SOP `{0}`")]
    NoHistory(String),
}

/// Which state of the repository a command reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Revision<'a> {
    /// The files as they are on disk: what `check`, `status`, `run` and `approve` judge.
    WorkingTree,
    /// One commit (`--at`, `--base`).
    At(&'a str),
    /// What a PDF is made of: `HEAD` when the working tree holds no change a render reads,
    /// else the working tree itself, marked uncommitted.
    Published,
}

impl<'a> Revision<'a> {
    /// `--at REV` when given, else `otherwise`.
    pub fn at_or(at: Option<&'a str>, otherwise: Revision<'a>) -> Revision<'a> {
        at.map_or(otherwise, Revision::At)
    }
}

/// A repository read once, for one command.
pub struct Workspace {
    /// The folder the command was given.
    pub root: PathBuf,
    pub corpus: Corpus,
    /// The commit read; for the working tree, `HEAD` (if the repository has commits).
    pub commit: Option<String>,
    /// That commit's time (UTC seconds): every date a PDF prints comes from here.
    pub commit_time: i64,
    /// The files read differ from `commit` (or there is no commit).
    pub uncommitted: bool,
    /// Now, read once: every judgement of this command is made at this time.
    pub now: i64,
    /// The time reviews are judged against.
    pub review_now: i64,
    /// The revision asked for (`--at`), `None` for the working tree or `HEAD`.
    at: Option<String>,
    in_git: bool,
    history: OnceLock<History>,
}

impl Workspace {
    /// Reads the repository at `dir` as `revision` says.
    pub fn open(dir: &Path, revision: Revision<'_>) -> Result<Workspace, Error> {
        let root = dir.to_path_buf();
        let repo = crate::git::find(&root).filter(|r| r.workdir().is_some());
        let head = repo
            .as_ref()
            .and_then(|r| r.head().ok())
            .and_then(|h| h.peel_to_commit().ok())
            .map(|c| (c.id().to_string(), c.time().seconds()));
        let (tree, commit, uncommitted, at) = match (revision, &repo) {
            (Revision::At(rev), Some(repo)) => {
                let c = repo
                    .revparse_single(rev)
                    .and_then(|o| o.peel_to_commit())
                    .map_err(|reason| Error::BadRevision {
                        rev: rev.to_string(),
                        reason,
                    })?;
                let id = c.id().to_string();
                let tree = Tree::open_revision(&root, &id)?;
                (tree, Some((id, c.time().seconds())), false, Some(rev))
            }
            (Revision::At(_), None) => {
                return Err(crate::git::work_tree(&root).err().map_or_else(
                    || Error::Repository(crate::git::Error::Bare(root.clone())),
                    Error::from,
                ));
            }
            (Revision::WorkingTree, _) => (Tree::open_dir(&root)?, head, true, None),
            (Revision::Published, Some(r)) if head.is_some() => {
                let id = head.as_ref().map(|(id, _)| id.clone()).unwrap_or_default();
                let committed = Tree::open_revision(&root, &id)?;
                // The folders that matter are the committed config's: a changed `sopkit.toml`
                // is itself a change to a tracked file.
                let prefix = crate::git::prefix_in(r, &root);
                if working_tree_dirty(r, &prefix, &Config::of_tree(&committed).paths) {
                    (Tree::open_dir(&root)?, head, true, None)
                } else {
                    (committed, head, false, None)
                }
            }
            (Revision::Published, _) => (Tree::open_dir(&root)?, head, true, None),
        };
        let (commit, commit_time) = commit.map_or((None, 0), |(id, t)| (Some(id), t));
        Ok(Workspace {
            corpus: Corpus::read(tree),
            uncommitted: uncommitted || commit.is_none(),
            commit,
            commit_time,
            now: crate::time::now(),
            review_now: crate::time::review_now(),
            at: at.map(str::to_string),
            in_git: repo.is_some(),
            history: OnceLock::new(),
            root,
        })
    }

    /// Whether the folder lies in a git work tree.
    pub fn in_git(&self) -> bool {
        self.in_git
    }

    /// The revision asked for, `None` for `HEAD` and the working tree.
    pub fn at(&self) -> Option<&str> {
        self.at.as_deref()
    }

    /// The approval history up to the commit read (empty outside git or before the first
    /// commit), read on first use. Without `sopkit.toml` it follows every Markdown file, so
    /// a file named like an SOP keeps its revisions across renames.
    pub fn history(&self) -> Result<&History, history::Error> {
        if let Some(h) = self.history.get() {
            return Ok(h);
        }
        let h = match (&self.commit, self.in_git) {
            (Some(c), true) => {
                // The working tree is judged against HEAD's history, which is cached.
                let rev = self.at.as_ref().map(|_| c.as_str());
                history::load(&self.root, rev, &self.history_config())?
            }
            _ => History::default(),
        };
        Ok(self.history.get_or_init(|| h))
    }

    fn history_config(&self) -> Config {
        let mut c = self.corpus.config.clone();
        if self.corpus.mode == Mode::ZeroConfig {
            c.paths.procedures = String::new();
        }
        c
    }

    /// The config whose policy parts count: the timeline's at the commit read, or the tree's
    /// own where there is no history.
    pub fn policy_config(&self) -> Result<&Config, history::Error> {
        let h = self.history()?;
        Ok(if h.head.is_some() {
            &h.config
        } else {
            &self.corpus.config
        })
    }

    /// The approval history of one SOP, named by id or path (an SOP no longer in the files
    /// read is still found by its id).
    pub fn sop_history(&self, name: &str) -> Result<history::SopHistory, Error> {
        let id = match self.corpus.find_sop(name) {
            Ok(sop) => sop.id.clone(),
            Err(e @ crate::corpus::FindSop::Ambiguous { .. }) => return Err(Error::Ambiguous(e)),
            Err(_) => name.to_string(),
        };
        self.history()?
            .sops
            .get(&id)
            .cloned()
            .ok_or(Error::NoHistory(id))
    }

    /// Takes the history out (for a reader that owns it), reading it first if need be.
    pub fn take_history(&mut self) -> Result<History, history::Error> {
        self.history()?;
        Ok(self.history.take().unwrap_or_default())
    }
}

/// Whether the working tree of `repo` differs from `HEAD` in anything a render reads: any
/// change to a tracked file, and new Markdown, configuration and image files or anything new
/// in the SOP folders. New PDFs and other output do not count, so rendering into the
/// repository does not make the next render "uncommitted".
fn working_tree_dirty(repo: &git2::Repository, prefix: &str, paths: &crate::config::Paths) -> bool {
    let prefix = if prefix.is_empty() {
        String::new()
    } else {
        format!("{prefix}/")
    };
    let mut opts = git2::StatusOptions::new();
    opts.include_untracked(true)
        .recurse_untracked_dirs(true)
        .include_ignored(false);
    let Ok(statuses) = repo.statuses(Some(&mut opts)) else {
        return true;
    };
    let folders = [
        &paths.procedures,
        &paths.glossary,
        &paths.roles,
        &paths.templates,
    ];
    statuses.iter().any(|s| {
        let path = s.path().unwrap_or("");
        let Some(rel) = path.strip_prefix(&prefix) else {
            return false;
        };
        if !s.status().is_wt_new() {
            return true;
        }
        let lower = rel.to_ascii_lowercase();
        [
            ".md", ".toml", ".yaml", ".yml", ".png", ".jpg", ".jpeg", ".svg",
        ]
        .iter()
        .any(|e| lower.ends_with(e))
            || folders
                .iter()
                .any(|f| !f.is_empty() && crate::corpus::under(rel, f))
    })
}
