//! Detached signatures of rendered PDFs, made with the user's own git signing setup and
//! checked against the keys the repository's people file lists (as of `HEAD`). SSH
//! signatures use the namespace `sopkit-pdf`, so a commit signature (namespace `git`) can
//! never pass for a PDF signature.

use std::path::{Path, PathBuf};

use crate::approval::signature::{self, Status};

pub const SSH_NAMESPACE: &str = "sopkit-pdf";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Signing(#[from] crate::signing::Error),
    #[error("writing {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Tree(#[from] crate::tree::Error),
    #[error(transparent)]
    History(#[from] crate::approval::history::Error),
}

/// Signs `pdf` with the signing key git would use in the repository at `dir`; writes
/// `PDF.sig` (SSH) or `PDF.asc` (OpenPGP) atomically and returns its path.
pub fn sign(dir: &Path, pdf: &Path) -> Result<PathBuf, Error> {
    sign_in(dir, pdf, SSH_NAMESPACE)
}

/// [`sign`] for any file, in SSH signature namespace `namespace` (`sopkit-audit` for an
/// audit package's manifest).
pub fn sign_in(dir: &Path, pdf: &Path, namespace: &str) -> Result<PathBuf, Error> {
    let signer = crate::signing::Signer::from_git(dir)?;
    let bytes = std::fs::read(pdf).map_err(|source| Error::Write {
        path: pdf.to_path_buf(),
        source,
    })?;
    let sig = signer.sign(&bytes, namespace)?;
    let mut out = pdf.as_os_str().to_owned();
    out.push(format!(".{}", signer.extension()));
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
    verify_in(dir, commit, pdf, bytes, SSH_NAMESPACE)
}

/// [`verify`] for any file signed in SSH signature namespace `namespace`.
pub fn verify_in(
    dir: &Path,
    commit: &str,
    pdf: &Path,
    bytes: &[u8],
    namespace: &str,
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
    let v = signature::verify_in(&policy.keyring, &signature, bytes, namespace);
    let who = v
        .owner
        .as_deref()
        .and_then(|o| policy.person(o))
        .map(|p| format!("{} ({})", p.name, p.id.value));
    // A key the policy has since removed or revoked (a leaked key, say) signs nothing new:
    // the signature must also hold, for the same person, under the policy in force now.
    let still = match crate::approval::history::policy_at(dir, "HEAD")? {
        Some(now) => {
            let w = signature::verify_in(&now.policy.keyring, &signature, bytes, namespace);
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
