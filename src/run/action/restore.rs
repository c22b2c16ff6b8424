//! `restore`: object versions of an s3 target back into files, checked before they get
//! their names.

use std::io::Write;
use std::path::{Path, PathBuf};

use super::{Context, Error, Output, expand, io, required, resolve};
use crate::corpus::step::args;
use crate::run::target::s3;
use s3::{BUF, Remote, download, keys_named, object_key, versions_of};

/// `restore`: `target`, `key`, `version` (an id) or `versions_back` (0 = the latest, 1 =
/// the one before, ...; delete markers do not count, so 0 after a deletion is the last
/// content written), and `dest` (a folder, where the file takes the key's last segment as
/// its name, or a file path). The download goes to a temporary file beside the
/// destination, hashed as it streams; only when it matches the `sopkit-sha256` metadata
/// (and size and stored checksum) is it synced and renamed into place. The restored file is
/// the step's artifact.
pub fn restore(args: &args::Restore, cx: &mut Context<'_>) -> Result<Output, Error> {
    let remote = Remote::connect(required(args.target.as_deref(), "target")?, cx.targets)?;
    let key = remote.key(&expand(&args.key))?;
    let version = args.version.as_deref().map(expand);
    let back = args.versions_back;
    if version.is_some() && back.is_some() {
        return Err(Error::Argument {
            name: "version",
            message: "give either `version` or `versions_back`, not both".into(),
        });
    }
    let dest_arg = expand(&args.dest);
    let dest_path = resolve(cx.root, &dest_arg);
    // The key `upload` took: one object, or the prefix it put several files under.
    let keys = remote.rt.block_on(keys_named(&remote, &key))?;
    let mut out = Output::default();
    if keys.len() == 1 && keys[0] == key {
        let dest = if dest_path.is_dir() || dest_arg.ends_with('/') {
            let name = key.rsplit('/').next().unwrap_or(&key);
            dest_path.join(name)
        } else {
            dest_path
        };
        restore_one(&remote, &key, version, back, &dest, cx, &mut out)?;
        return Ok(out);
    }
    if version.is_some() {
        return Err(Error::Argument {
            name: "version",
            message: format!(
                "`{key}` is a prefix of {} objects; a version id names one (use versions_back)",
                keys.len()
            ),
        });
    }
    // Each object under the prefix, to the same path under `dest` (a folder).
    let prefix = format!("{}/", key.trim_end_matches('/'));
    for k in &keys {
        let rel = k.strip_prefix(&prefix).unwrap_or(k);
        object_key("", rel)?; // no `..` or empty segments on the way into `dest`
        restore_one(&remote, k, None, back, &dest_path.join(rel), cx, &mut out)?;
    }
    Ok(out)
}

/// Restores one object's version (`version`, or `versions_back`, or the latest) into the
/// file `dest`: downloaded to a temporary file beside it, hashed as it streams, and renamed
/// into place only when it matches what was stored with it.
fn restore_one(
    remote: &Remote,
    key: &str,
    version: Option<String>,
    back: Option<u64>,
    dest: &Path,
    cx: &mut Context<'_>,
    out: &mut Output,
) -> Result<(), Error> {
    let dir = match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&dir).map_err(io(&dir))?;

    let (d, tmp) = remote.rt.block_on(async {
        let version = match (version, back) {
            (Some(v), _) => Some(v),
            (None, None) | (None, Some(0)) => None,
            (None, Some(n)) => {
                let all = versions_of(remote, key).await?;
                let v = all.get(n as usize).ok_or_else(|| {
                    Error::Failed(format!(
                        "{}: versions_back {n} asked for, but it has {} version{}",
                        remote.url(key),
                        all.len(),
                        if all.len() == 1 { "" } else { "s" }
                    ))
                })?;
                Some(v.id.clone())
            }
        };
        let tmp = tempfile::Builder::new()
            .prefix(".sopkit-restore-")
            .tempfile_in(&dir)
            .map_err(io(&dir))?;
        let mut w = std::io::BufWriter::with_capacity(BUF, tmp.as_file());
        let d = download(remote, key, version.as_deref(), &mut w, dest).await?;
        w.flush().map_err(io(dest))?;
        drop(w);
        Ok::<_, Error>((d, tmp))
    })?;
    let name = format!("{} version {}", remote.url(key), d.version);
    if !d.problems.is_empty() {
        // `tmp` is removed when dropped: nothing partial is left.
        drop(tmp);
        return Err(Error::Failed(format!(
            "{name}: {}; nothing was restored",
            d.problems.join("; ")
        )));
    }
    tmp.as_file().sync_all().map_err(io(dest))?;
    tmp.persist(dest).map_err(|e| Error::Io {
        path: dest.to_path_buf(),
        message: e.error.to_string(),
    })?;
    if let Ok(f) = std::fs::File::open(&dir) {
        let _ = f.sync_all();
    }
    let said = format!(
        "restored {name} into {} ({} bytes, sha256 {} matches {})",
        dest.display(),
        d.size,
        d.sha256,
        d.checked.join(" and ")
    );
    let _ = writeln!(cx.log, "{said}");
    out.artifacts.push(dest.to_path_buf());
    out.hashed
        .insert(dest.to_path_buf(), (d.size, d.sha256.clone()));
    out.verification.push(format!("ok: {said}"));
    Ok(())
}
