//! `sopkit approve`: one signed commit, made by the user's own git signing setup
//! (`git commit -S`: GnuPG with its agent or smartcard, or SSH keys with `gpg.format=ssh`),
//! whose trailers name each SOP, the SHA-256 of the exact content approved and the meaning.
//! The commit carries no changes: it refuses to run while anything is staged, or while the
//! approved SOPs or the people, roles and keys have uncommitted edits.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use super::trailer::{self, Approval, Approved};
use crate::config::Config;
use crate::corpus::Corpus;
use crate::digest::sha256_hex;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("meaning `{meaning}` is not allowed; use one of: {}", allowed.join(", "))]
    UnknownMeaning {
        meaning: String,
        allowed: Vec<String>,
    },
    #[error(transparent)]
    UnknownSop(#[from] crate::corpus::FindSop),
    #[error("cannot approve `{0}`: {form}", form = crate::corpus::front_matter::SOP_ID_FORM)]
    InvalidSopId(String),
    #[error("name at least one SOP to approve")]
    NothingToApprove,
    #[error("uncommitted changes to {}: commit them first, so that the approval names committed content", .0.join(", "))]
    Dirty(Vec<String>),
    #[error("changes are staged ({}): an approval commit must carry no edits; commit or unstage them first", .0.join(", "))]
    Staged(Vec<String>),
    #[error(transparent)]
    Repository(#[from] crate::git::Error),
    #[error("`{0}` is not committed yet")]
    NotCommitted(String),
    #[error("git commit failed: {0}")]
    CommitFailed(String),
    #[error(
        "git could not sign the approval: {0}\nhelp: an approval is a commit signed with your own \
         key: `git config user.signingkey ~/.ssh/id_ed25519.pub` with `git config gpg.format ssh` \
         (or your OpenPGP key id, for GnuPG), and that public key listed under your entry in \
         roles/people.yaml"
    )]
    SigningFailed(String),
    // git2's message alone: its Display adds class and code numbers (see tree::Error).
    #[error("git: {}", .0.message())]
    Git(git2::Error),
    #[error("running git: {0}")]
    Io(#[from] std::io::Error),
}

impl From<git2::Error> for Error {
    fn from(e: git2::Error) -> Error {
        Error::Git(e)
    }
}

impl Error {
    /// Usage errors (exit 2) as opposed to failures of the commit itself.
    pub fn is_usage(&self) -> bool {
        !matches!(
            self,
            Error::CommitFailed(_) | Error::SigningFailed(_) | Error::Git(_) | Error::Io(_)
        )
    }
}

/// What `approve` signed.
#[derive(Debug)]
pub struct Signed {
    pub commit: String,
    /// (SOP id, path in the repository) of every approved SOP.
    pub sops: Vec<(String, String)>,
}

/// What an approver asks for: the SOPs (ids or paths), the meaning, a comment.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    pub sops: &'a [String],
    pub meaning: &'a str,
    pub comment: Option<&'a str>,
}

/// Creates the approval commit.
///
/// `corpus` is the working tree at `root`; `policy` the config the policy timeline trusts
/// (meanings and the policy paths are policy, never what an unsigned `sopkit.toml` says).
// The refusals come first and in the order a user fixes them, then the one commit: kept
// together so that nothing is committed before every refusal was considered.
pub fn approve(
    root: &Path,
    corpus: &Corpus,
    policy: &Config,
    request: &Request<'_>,
) -> Result<Signed, Error> {
    let Request {
        sops,
        meaning,
        comment,
    } = *request;
    let allowed = &policy.approval.meanings;
    if !allowed.iter().any(|m| m == meaning) {
        return Err(Error::UnknownMeaning {
            meaning: meaning.to_string(),
            allowed: allowed.clone(),
        });
    }
    if sops.is_empty() {
        return Err(Error::NothingToApprove);
    }
    let repo = crate::git::work_tree(root)?;
    let prefix = crate::git::prefix_in(&repo, root);
    let in_repo = |p: &str| {
        if prefix.is_empty() {
            p.to_string()
        } else {
            format!("{prefix}/{p}")
        }
    };

    let mut guarded = Vec::new();
    let mut approves = Vec::new();
    for id in sops {
        let sop = corpus.find_sop(id)?;
        if !crate::corpus::front_matter::is_valid_sop_id(&sop.id) {
            return Err(Error::InvalidSopId(sop.id.clone()));
        }
        let path = corpus.docs[sop.doc].path().to_string();
        guarded.push(in_repo(&path));
        approves.push((sop.id.clone(), in_repo(&path)));
    }
    let paths = &policy.paths;
    for p in [&paths.people, &paths.roles, &paths.keys] {
        guarded.push(in_repo(p));
    }

    let mut opts = git2::StatusOptions::new();
    opts.include_untracked(true)
        .include_ignored(false)
        .recurse_untracked_dirs(true);
    let statuses = repo.statuses(Some(&mut opts))?;
    let mut staged = Vec::new();
    let mut dirty = Vec::new();
    for e in statuses.iter() {
        let path = e.path().unwrap_or("").to_string();
        let s = e.status();
        if s.intersects(
            git2::Status::INDEX_NEW
                | git2::Status::INDEX_MODIFIED
                | git2::Status::INDEX_DELETED
                | git2::Status::INDEX_RENAMED
                | git2::Status::INDEX_TYPECHANGE,
        ) {
            staged.push(path.clone());
        }
        if guarded
            .iter()
            .any(|g| path == *g || path.starts_with(&format!("{g}/")))
        {
            dirty.push(path);
        }
    }
    if !staged.is_empty() {
        return Err(Error::Staged(staged));
    }
    if !dirty.is_empty() {
        return Err(Error::Dirty(dirty));
    }

    let head = repo.head()?.peel_to_tree()?;
    let mut approved = Vec::new();
    let signed: Vec<(String, String)> = approves.clone();
    for (id, path) in approves {
        let entry = head
            .get_path(Path::new(&path))
            .map_err(|_| Error::NotCommitted(path.clone()))?;
        let blob = repo.find_blob(entry.id())?;
        approved.push(Approved {
            sop: id,
            sha256: sha256_hex(blob.content()),
        });
    }
    let message = trailer::message(
        &Approval {
            approves: approved,
            meaning: meaning.to_string(),
        },
        comment,
    );

    let mut child = Command::new("git")
        .args([
            "commit",
            "-S",
            "--allow-empty",
            "--no-verify",
            "-q",
            "-F",
            "-",
        ])
        .current_dir(root)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    child
        .stdin
        .take()
        .expect("piped stdin")
        .write_all(message.as_bytes())?;
    let out = child.wait_with_output()?;
    if !out.status.success() {
        let said = String::from_utf8_lossy(&out.stderr).trim().to_string();
        let lower = said.to_lowercase();
        // git names the signing program's failure ("gpg failed to sign the data", or
        // ssh-keygen's "Couldn't load public key", "failed to write commit object" after it).
        let signing = [
            "failed to sign",
            "signing failed",
            "ssh-keygen",
            "load public key",
        ]
        .iter()
        .any(|m| lower.contains(m));
        return Err(if signing {
            Error::SigningFailed(said)
        } else {
            Error::CommitFailed(said)
        });
    }
    let repo = crate::git::work_tree(root)?;
    Ok(Signed {
        commit: repo.head()?.peel_to_commit()?.id().to_string(),
        sops: signed,
    })
}
