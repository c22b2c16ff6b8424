//! Detached signatures made with the user's own git signing setup (`gpg.format`,
//! `user.signingkey`, `gpg.ssh.program`, `gpg.program`), the same setup `approve` signs
//! commits with: `ssh-keygen -Y sign` for SSH keys (in a namespace of sopkit's, so that a
//! signature made for one purpose never passes for another), `gpg --detach-sign` for
//! OpenPGP. Used for PDFs (`render --sign`) and evidence records (`run`).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    // git2's message alone: its Display adds class and code numbers (see tree::Error).
    #[error("git: {}", .0.message())]
    Git(#[from] git2::Error),
    #[error(transparent)]
    Repository(#[from] crate::git::Error),
    #[error(
        "no signing key: set `git config user.signingkey` (and `gpg.format ssh` for an SSH key)"
    )]
    NoKey,
    #[error("{program} failed: {message}")]
    Signer { program: String, message: String },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// How this user signs, as git would for the repository they work in.
#[derive(Debug, Clone)]
pub struct Signer {
    ssh: bool,
    program: String,
    /// `user.signingkey`: an SSH key file (or `key::` literal), or an OpenPGP key id.
    key: Option<String>,
}

impl Signer {
    /// The signing setup git would use in the repository containing `dir`.
    pub fn from_git(dir: &Path) -> Result<Signer, Error> {
        let repo = crate::git::discover(dir)?;
        let config = repo.config()?.snapshot()?;
        let ssh = config.get_string("gpg.format").is_ok_and(|f| f == "ssh");
        let program = if ssh {
            config.get_string("gpg.ssh.program")
        } else {
            config.get_string("gpg.program")
        }
        .unwrap_or_else(|_| if ssh { "ssh-keygen" } else { "gpg" }.into());
        Ok(Signer {
            ssh,
            program,
            key: config.get_string("user.signingkey").ok(),
        })
    }

    /// Whether a key is named (OpenPGP can also sign with GnuPG's default key).
    pub fn has_key(&self) -> bool {
        self.key.is_some()
    }

    /// File extension for a detached signature of this kind.
    pub fn extension(&self) -> &'static str {
        if self.ssh { "sig" } else { "asc" }
    }

    /// An armored detached signature of `bytes`; SSH signatures in `namespace`.
    pub fn sign(&self, bytes: &[u8], namespace: &str) -> Result<Vec<u8>, Error> {
        if !self.ssh {
            let mut args = vec![
                "--batch",
                "--yes",
                "--detach-sign",
                "--armor",
                "--output",
                "-",
            ];
            if let Some(k) = &self.key {
                args.push("--local-user");
                args.push(k);
            }
            return run(&self.program, &args, bytes);
        }
        let key = self.key.clone().ok_or(Error::NoKey)?;
        // A literal key (`key::ssh-ed25519 …`) goes through a file, as git does it.
        let tmp;
        let key_file = match key.strip_prefix("key::") {
            Some(literal) => {
                tmp = tempfile::NamedTempFile::new().map_err(|source| Error::Io {
                    path: std::env::temp_dir(),
                    source,
                })?;
                std::fs::write(tmp.path(), literal).map_err(|source| Error::Io {
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
        run(
            &self.program,
            &["-Y", "sign", "-n", namespace, "-f", &key_file],
            bytes,
        )
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
