//! `upload`: files to an s3 target, with SHA-256 checksums the server checks.

use std::path::Path;

use super::{Context, Error, Output, expand, required, resolve, sources};
use crate::corpus::step::args;
use crate::run::target::s3;
use s3::{DEFAULT_PART, Remote, preflight, upload_keys, upload_one};

/// `upload`: `source` (a file, a folder, or the id of an earlier step of this SOP whose
/// artifacts to send) → `target` (an S3 target), under `key` (optional: one file's object
/// key, or the prefix for several; default the file names, or paths inside a folder).
///
/// Each file is hashed once before sending (whole content and each part) so that its
/// SHA-256 can be stored as `sopkit-sha256` metadata and every request carries a SHA-256
/// checksum the server checks. Files up to `part_size` (default 16MiB) go in one PUT,
/// larger ones as a multipart upload streamed from disk, a few parts at a time; a failed
/// multipart upload is aborted so that no partial object remains. An upload that gets no
/// version id back (the bucket has no versioning enabled) comes with a warning: a later
/// upload replaces the object for good.
pub fn upload(args: &args::Upload, cx: &mut Context<'_>) -> Result<Output, Error> {
    let remote = Remote::connect(required(args.target.as_deref(), "target")?, cx.targets)?;
    let source_arg = expand(&args.source);
    let key_arg = args.key.as_deref().map(expand);
    let part_size = args.part_size.unwrap_or(DEFAULT_PART);
    let mut files = sources(&source_arg, cx)?;
    if let Some(glob) = args.pattern.as_deref().map(expand) {
        let matcher = globset::Glob::new(&glob)
            .map_err(|e| Error::Argument {
                name: "pattern",
                message: e.to_string(),
            })?
            .compile_matcher();
        files.retain(|f| f.file_name().is_some_and(|n| matcher.is_match(n)));
    }
    if files.is_empty() {
        return Err(Error::Argument {
            name: "source",
            message: format!("{source_arg}: no files to upload"),
        });
    }
    // Names relative to the folder named as the source; artifacts and single files by
    // their file name.
    let base = resolve(cx.root, &source_arg);
    let from_folder = !cx.earlier.contains_key(&source_arg) && base.is_dir();
    let names: Vec<String> = files
        .iter()
        .map(|f| {
            let rel = if from_folder {
                f.strip_prefix(&base).unwrap_or(f.as_path())
            } else {
                Path::new(f.file_name().unwrap_or(f.as_os_str()))
            };
            rel.to_string_lossy().replace('\\', "/")
        })
        .collect();
    let keys = upload_keys(&names, key_arg.as_deref())?
        .iter()
        .map(|k| remote.key(k))
        .collect::<Result<Vec<_>, _>>()?;

    let mut out = Output::default();
    remote.rt.block_on(preflight(&remote))?;
    let mut done: Vec<String> = Vec::new();
    let mut unversioned = false;
    for (file, key) in files.iter().zip(&keys) {
        let result = remote
            .rt
            .block_on(upload_one(&remote, file, key, part_size));
        let u = match result {
            Ok(u) => u,
            Err(e) if done.is_empty() => return Err(e),
            Err(e) => {
                return Err(Error::Failed(format!(
                    "{e} (uploaded before the failure: {})",
                    done.join(", ")
                )));
            }
        };
        let _ = writeln!(
            cx.log,
            "uploaded {} to {} version {} ({} bytes in {} part{}, sha256 {})",
            file.display(),
            remote.url(&u.key),
            u.version,
            u.size,
            u.parts,
            if u.parts == 1 { "" } else { "s" },
            u.sha256
        );
        out.verification.push(format!(
            "ok: uploaded {} version {} ({} bytes, sha256 {})",
            remote.url(&u.key),
            u.version,
            u.size,
            u.sha256
        ));
        done.push(format!("{} version {}", remote.url(&u.key), u.version));
        unversioned |= u.version == "null";
    }
    // A versioned bucket gives every new object a version id; S3 says `null` (or nothing)
    // when versioning is off or suspended. (Read from the uploads themselves rather than
    // GetBucketVersioning, whose answer some S3-compatible servers shape differently.)
    if unversioned {
        let w = format!(
            "warning: bucket {} (target `{}`) has no versioning enabled: a later upload to the same key replaces the object for good, and no earlier version can be restored",
            remote.bucket, remote.name
        );
        let _ = writeln!(cx.log, "{w}");
        out.verification.insert(0, w);
    }
    Ok(out)
}
