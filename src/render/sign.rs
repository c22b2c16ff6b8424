//! Detached signatures of rendered PDFs, made with the user's own git signing setup and
//! checked against the keys the repository's people file lists (as of `HEAD`). SSH
//! signatures use the namespace `sopkit-pdf`, so a commit signature (namespace `git`) can
//! never pass for a PDF signature.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::approval::signature::{self, Status};

pub const SSH_NAMESPACE: &str = "sopkit-pdf";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    // git2's message alone: its Display adds class and code numbers (see tree::Error).
    #[error("git: {}", .0.message())]
    Git(git2::Error),
    #[error(
        "no signing key: set `git config user.signingkey` (and `gpg.format ssh` for an SSH key)"
    )]
    NoKey,
    #[error("{program} failed: {message}")]
    Signer { program: String, message: String },
    #[error("writing {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Config(#[from] crate::corpus::Error),
    #[error(transparent)]
    Tree(#[from] crate::tree::Error),
    #[error(transparent)]
    History(#[from] crate::approval::history::Error),
}

impl From<git2::Error> for Error {
    fn from(e: git2::Error) -> Error {
        Error::Git(e)
    }
}

fn run(program: &str, args: &[&str], input: &[u8]) -> Result<Vec<u8>, Error> {
    use std::io::Write;
    let err = |message: String| Error::Signer {
        program: program.to_string(),
        message,
    };
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| err(e.to_string()))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(input).map_err(|e| err(e.to_string()))?;
    }
    let out = child.wait_with_output().map_err(|e| err(e.to_string()))?;
    if !out.status.success() {
        return Err(err(String::from_utf8_lossy(&out.stderr).trim().to_string()));
    }
    Ok(out.stdout)
}

/// Signs `pdf` with the signing key git would use in the repository at `dir`; writes
/// `PDF.sig` (SSH) or `PDF.asc` (OpenPGP) atomically and returns its path.
pub fn sign(dir: &Path, pdf: &Path) -> Result<PathBuf, Error> {
    let repo = git2::Repository::discover(dir)?;
    let config = repo.config()?.snapshot()?;
    let format = config
        .get_string("gpg.format")
        .unwrap_or_else(|_| "openpgp".into());
    let key = config.get_string("user.signingkey").ok();
    let bytes = std::fs::read(pdf).map_err(|source| Error::Write {
        path: pdf.to_path_buf(),
        source,
    })?;
    let (sig, ext) = if format == "ssh" {
        let key = key.ok_or(Error::NoKey)?;
        let program = config
            .get_string("gpg.ssh.program")
            .unwrap_or_else(|_| "ssh-keygen".into());
        // A literal key (`key::ssh-ed25519 …`) goes through a file, as git does it.
        let tmp;
        let key_file = match key.strip_prefix("key::") {
            Some(literal) => {
                tmp = tempfile::NamedTempFile::new().map_err(|source| Error::Write {
                    path: std::env::temp_dir(),
                    source,
                })?;
                std::fs::write(tmp.path(), literal).map_err(|source| Error::Write {
                    path: tmp.path().to_path_buf(),
                    source,
                })?;
                tmp.path().to_string_lossy().into_owned()
            }
            None => match key.strip_prefix("~/") {
                Some(rest) => format!("{}/{rest}", std::env::var("HOME").unwrap_or_default()),
                None => key,
            },
        };
        let sig = run(
            &program,
            &["-Y", "sign", "-n", SSH_NAMESPACE, "-f", &key_file],
            &bytes,
        )?;
        (sig, "sig")
    } else {
        let program = config
            .get_string("gpg.program")
            .unwrap_or_else(|_| "gpg".into());
        let mut args = vec![
            "--batch",
            "--yes",
            "--detach-sign",
            "--armor",
            "--output",
            "-",
        ];
        if let Some(k) = &key {
            args.push("--local-user");
            args.push(k);
        }
        (run(&program, &args, &bytes)?, "asc")
    };
    let mut out = pdf.as_os_str().to_owned();
    out.push(format!(".{ext}"));
    let out = PathBuf::from(out);
    crate::fs_atomic::write(&out, &sig).map_err(|source| Error::Write {
        path: out.clone(),
        source,
    })?;
    Ok(out)
}

/// The result of checking a PDF's detached signature.
#[derive(Debug)]
pub struct Checked {
    pub file: PathBuf,
    pub valid: bool,
    pub detail: String,
}

/// Checks `PDF.sig` or `PDF.asc` beside `pdf` against the keys that the policy timeline
/// trusts at `commit` (the commit the PDF records), in the repository at `dir`; `None` when
/// neither file exists.
pub fn verify(
    dir: &Path,
    commit: &str,
    pdf: &Path,
    bytes: &[u8],
) -> Result<Option<Checked>, Error> {
    let candidates = ["sig", "asc"].map(|ext| {
        let mut p = pdf.as_os_str().to_owned();
        p.push(format!(".{ext}"));
        PathBuf::from(p)
    });
    let Some(file) = candidates.into_iter().find(|p| p.is_file()) else {
        return Ok(None);
    };
    let signature = std::fs::read(&file).map_err(|source| Error::Write {
        path: file.clone(),
        source,
    })?;
    let Some(trusted) = crate::approval::history::policy_at(dir, commit)? else {
        return Ok(Some(Checked {
            file,
            valid: false,
            detail: format!(
                "signature NOT valid: no trusted people.yaml at commit {commit} (it comes before \
                 the trust root)"
            ),
        }));
    };
    let policy = &trusted.policy;
    let v = signature::verify_in(&policy.keyring, &signature, bytes, SSH_NAMESPACE);
    let who = v
        .owner
        .as_deref()
        .and_then(|o| policy.person(o))
        .map(|p| format!("{} ({})", p.name, p.id.value));
    // A key the policy has since removed or revoked (a leaked key, say) signs nothing new:
    // the signature must also hold, for the same person, under the policy in force now.
    let still = match crate::approval::history::policy_at(dir, "HEAD")? {
        Some(now) => {
            let w = signature::verify_in(&now.policy.keyring, &signature, bytes, SSH_NAMESPACE);
            w.status == Status::Valid && w.owner == v.owner
        }
        None => false,
    };
    let valid = v.status == Status::Valid && who.is_some() && still;
    let detail = match (v.status == Status::Valid, who) {
        (true, Some(who)) if still => format!(
            "valid signature by {who}, key {}",
            v.fingerprint.as_deref().unwrap_or("-")
        ),
        (true, Some(who)) => format!(
            "signature NOT valid: made by {who}'s key {}, which the policy no longer gives \
             them (removed or revoked after commit {commit})",
            v.fingerprint.as_deref().unwrap_or("-")
        ),
        _ => format!("signature NOT valid: {}", v.detail),
    };
    Ok(Some(Checked {
        file,
        valid,
        detail,
    }))
}
