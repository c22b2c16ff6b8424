//! `verify` on an s3 target: each version downloaded, hashed as it streams and compared
//! with what was stored at upload.

use std::path::Path;

use super::{Context, Error, Output, expand, required};
use crate::corpus::step::args;
use crate::run::target::s3;
use s3::{Remote, download, keys_named, versions_of};

/// `verify` of an object: `target`, `key`, and `version` (an id; default the latest) or
/// `all_versions: true`. Each version is downloaded and hashed as it streams, and its
/// content compared with the `sopkit-sha256` metadata stored at upload, its size, and the
/// stored SHA-256 checksum (the plain one of a single-part object, the composite one of a
/// multipart object uploaded by sopkit). Any mismatch fails, naming the key and version.
pub fn verify(args: &args::Verify, cx: &mut Context<'_>) -> Result<Output, Error> {
    let remote = Remote::connect(required(args.target.as_deref(), "target")?, cx.targets)?;
    let key = remote.key(&required(args.key.as_deref(), "key")?)?;
    let version = args.version.as_deref().map(expand);
    let all = args.all_versions.unwrap_or(false);
    if all && version.is_some() {
        return Err(Error::Argument {
            name: "version",
            message: "give either `version` or `all_versions: true`, not both".into(),
        });
    }
    let mut out = Output::default();
    let mut failures = Vec::new();
    remote.rt.block_on(async {
        // The key `upload` took: one object, or the prefix it put several files under.
        let keys = keys_named(&remote, &key).await?;
        if keys.len() > 1 && version.is_some() {
            return Err(Error::Argument {
                name: "version",
                message: format!(
                    "`{key}` names {} objects (a prefix); a version id names one",
                    keys.len()
                ),
            });
        }
        for key in keys {
            let versions: Vec<Option<String>> = if all {
                let v = versions_of(&remote, &key).await?;
                if v.is_empty() {
                    return Err(Error::Failed(format!(
                        "{}: no versions to verify",
                        remote.url(&key)
                    )));
                }
                v.into_iter().map(|v| Some(v.id)).collect()
            } else {
                vec![version.clone()]
            };
            for v in versions {
                let d = download(
                    &remote,
                    &key,
                    v.as_deref(),
                    &mut std::io::sink(),
                    Path::new("-"),
                )
                .await?;
                let name = format!("{} version {}", remote.url(&key), d.version);
                if d.problems.is_empty() {
                    let _ = writeln!(
                        cx.log,
                        "verified {name}: {} bytes, sha256 {} matches {}",
                        d.size,
                        d.sha256,
                        d.checked.join(" and ")
                    );
                    out.verification.push(format!(
                        "ok: {name} ({} bytes, sha256 {}) matches {}",
                        d.size,
                        d.sha256,
                        d.checked.join(" and ")
                    ));
                } else {
                    let msg = format!("{name}: {}", d.problems.join("; "));
                    let _ = writeln!(cx.log, "FAILED: {msg}");
                    failures.push(msg);
                }
            }
        }
        Ok::<(), Error>(())
    })?;
    if !failures.is_empty() {
        return Err(Error::Failed(failures.join("; ")));
    }
    Ok(out)
}
