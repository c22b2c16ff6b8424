//! `verify` of an archive: restored into a temporary folder and compared, entry by entry,
//! with its manifest.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::archive::{Entry, Manifest, manifest_path};
use super::pipeline::{self, ReadAhead};
use super::{Context, Error, Output, conclude, io, required, resolve};
use crate::corpus::step::args;
use crate::run::stream;

/// `verify`: `archive` (a path, or the id of an earlier step of this SOP whose latest
/// successful run made one): the archive's own hash against its manifest, then every entry
/// restored into a temporary folder and each file's hash, size and kind compared with the
/// manifest; any difference, missing or extra entry, or decoding error fails.
// Long (about 190 lines): one pass decodes, restores and hashes every entry with the state
// of the restoring thread; splitting it is left to a later change.
pub(super) fn verify(args: &args::Verify, cx: &mut Context<'_>) -> Result<Output, Error> {
    let arg = required(args.archive.as_deref(), "archive")?;
    let archive = match cx.earlier.get(&arg) {
        Some(paths) => PathBuf::from(paths.iter().find(|p| p.ends_with(".tar.zst")).ok_or_else(
            || Error::Argument {
                name: "archive",
                message: format!("step {arg} recorded no archive"),
            },
        )?),
        None => resolve(cx.root, &arg),
    };
    let manifest_file = manifest_path(&archive);
    let manifest: Manifest =
        serde_json::from_slice(&std::fs::read(&manifest_file).map_err(io(&manifest_file))?)
            .map_err(|e| Error::Io {
                path: manifest_file.clone(),
                message: format!("not a manifest: {e}"),
            })?;
    let mut checks = Vec::new();
    let mut failures = Vec::new();

    let mut reader = ReadAhead::open(&archive).map_err(io(&archive))?;
    let scratch = tempfile::tempdir().map_err(io(Path::new("temporary folder")))?;
    let mut seen: BTreeMap<String, Entry> = BTreeMap::new();
    let restore = pipeline::WriteBehind::spawn();
    // The files handed to the restoring thread, in order: it gives their sizes and hashes
    // back in the same order.
    let mut restored_paths: Vec<String> = Vec::new();
    let mut links = std::collections::BTreeSet::new();
    {
        let dec = zstd::stream::read::Decoder::with_buffer(&mut reader).map_err(io(&archive))?;
        let mut tar = tar::Archive::new(dec);
        tar.set_preserve_permissions(false);
        tar.set_unpack_xattrs(false);
        let entries = tar.entries().map_err(io(&archive))?;
        for entry in entries {
            let mut entry =
                entry.map_err(|e| Error::Failed(format!("{}: {e}", archive.display())))?;
            let path = entry
                .path()
                .map_err(|e| Error::Failed(e.to_string()))?
                .to_string_lossy()
                .trim_end_matches('/')
                .to_string();
            let kind = entry.header().entry_type();
            let mode = entry.header().mode().unwrap_or(0);
            // Restored by hand, hashing each file as it is written (one pass over the data);
            // only plain relative paths are accepted, so nothing lands outside the folder.
            let safe = Path::new(&path)
                .components()
                .all(|c| matches!(c, std::path::Component::Normal(_)));
            if !safe || path.is_empty() {
                failures.push(format!(
                    "FAILED: {path} would be restored outside the target folder"
                ));
                continue;
            }
            // Nor through a symlink restored earlier (`x -> /etc`, then `x/passwd`).
            if let Some(link) = Path::new(&path).ancestors().find(|a| links.contains(*a)) {
                failures.push(format!(
                    "FAILED: {path} would be restored through the symlink {}",
                    link.display()
                ));
                continue;
            }
            let restored = scratch.path().join(&path);
            if let Some(parent) = restored.parent() {
                std::fs::create_dir_all(parent).map_err(io(parent))?;
            }
            let record = if kind.is_file() {
                // Decompressed here; hashed and written to disk by the restoring thread, which
                // gives the size and hash back at the end (the record waits for them).
                restore.create(restored);
                restored_paths.push(path.clone());
                // The entry's size bounds the reads: no buffer is taken just to find its end.
                let mut left = entry.size();
                while left > 0 {
                    let mut buf = restore.buffer();
                    let n = stream::fill(&mut entry, &mut buf)
                        .map_err(|e| Error::Failed(format!("restoring {path}: {e}")))?;
                    if n == 0 {
                        break;
                    }
                    left = left.saturating_sub(n as u64);
                    restore.write(buf);
                }
                Entry {
                    path: path.clone(),
                    kind: "file".into(),
                    size: 0,
                    mode,
                    sha256: None,
                    target: None,
                }
            } else if kind.is_symlink() {
                let target = entry
                    .link_name()
                    .ok()
                    .flatten()
                    .map(|t| t.to_string_lossy().into_owned());
                if let Some(t) = &target {
                    let _ = std::os::unix::fs::symlink(t, &restored);
                }
                links.insert(PathBuf::from(&path));
                Entry {
                    path: path.clone(),
                    kind: "symlink".into(),
                    size: 0,
                    mode,
                    sha256: None,
                    target,
                }
            } else {
                std::fs::create_dir_all(&restored).map_err(io(&restored))?;
                Entry {
                    path: path.clone(),
                    kind: "dir".into(),
                    size: 0,
                    mode,
                    sha256: None,
                    target: None,
                }
            };
            seen.insert(path, record);
        }
        // Read to the end, so that the whole file is hashed (and zstd checks its frame).
        let mut rest = tar.into_inner();
        std::io::copy(&mut rest, &mut std::io::sink())
            .map_err(|e| Error::Failed(format!("{}: {e}", archive.display())))?;
    }
    let restored = restore.finish();
    failures.extend(restored.failures);
    // A path the archive holds twice keeps its last entry; a restoring thread that stopped
    // early leaves files without a hash, which then differ from the manifest.
    for (path, (size, sha256)) in restored_paths.iter().zip(restored.files) {
        if let Some(got) = seen.get_mut(path)
            && got.kind == "file"
        {
            got.size = size;
            got.sha256 = Some(sha256);
        }
    }
    let (sha, count) = reader.finish().map_err(io(&archive))?;
    if sha != manifest.archive_sha256 || count != manifest.archive_size {
        failures.push(format!(
            "FAILED: {} has sha256 {sha} ({} bytes); the manifest says {} ({} bytes)",
            archive.display(),
            count,
            manifest.archive_sha256,
            manifest.archive_size
        ));
    } else {
        checks.push(format!("ok: archive sha256 {sha}"));
    }
    let mut matched = 0u64;
    for want in &manifest.entries {
        match seen.remove(&want.path) {
            None => failures.push(format!("FAILED: {} is missing from the archive", want.path)),
            Some(got) => {
                let same = got.kind == want.kind
                    && got.sha256 == want.sha256
                    && got.size == want.size
                    && (want.kind != "symlink" || got.target == want.target);
                if same {
                    matched += 1;
                } else {
                    failures.push(format!("FAILED: {} differs from the manifest", want.path));
                }
            }
        }
    }
    for extra in seen.keys() {
        failures.push(format!(
            "FAILED: {extra} is in the archive but not in the manifest"
        ));
    }
    checks.push(format!(
        "ok: {matched} of {} entries restored and compared",
        manifest.entries.len()
    ));
    let _ = writeln!(
        cx.log,
        "verified {}: {} entries restored and compared, {} problems",
        archive.display(),
        manifest.entries.len(),
        failures.len()
    );
    conclude(cx.log, &failures, checks)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::action::archive::ArchiveWriter;
    use crate::run::action::testing::*;

    #[test]
    fn an_archive_cannot_restore_through_its_own_symlink() {
        let d = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        // `x -> outside`, then `x/evil`: both in the manifest, so only the guard stops it.
        let mut w = ArchiveWriter::create(d.path().join("backups/evil.tar.zst"), 1).unwrap();
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Symlink);
        w.add_symlink(&mut h, "x".into(), outside.path(), 0o777)
            .unwrap();
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Regular);
        w.add_file(
            &mut h,
            "x/evil".into(),
            &b"owned"[..],
            5,
            0o644,
            Path::new("evil"),
        )
        .unwrap();
        let (a, _, _) = w.finish("test".into()).unwrap();
        let e = verify_path(d.path(), &a).unwrap_err().to_string();
        assert!(
            e.contains("x/evil would be restored through the symlink x"),
            "{e}"
        );
        assert!(!outside.path().join("evil").exists());
    }

    #[test]
    fn any_corruption_of_the_archive_fails_verification() {
        let d = tempfile::tempdir().unwrap();
        let a = archive_of(d.path());
        let original = std::fs::read(&a).unwrap();
        for at in [
            0,
            original.len() / 3,
            original.len() / 2,
            original.len() - 1,
        ] {
            let mut b = original.clone();
            b[at] ^= 0x10;
            std::fs::write(&a, &b).unwrap();
            assert!(
                verify_path(d.path(), &a).is_err(),
                "a flipped byte at {at} passed"
            );
        }
        // Cut short.
        std::fs::write(&a, &original[..original.len() - 10]).unwrap();
        assert!(verify_path(d.path(), &a).is_err());
        // A manifest that does not match the files.
        std::fs::write(&a, &original).unwrap();
        let mp = manifest_path(&a);
        let text = std::fs::read_to_string(&mp).unwrap();
        let mut m: Manifest = serde_json::from_str(&text).unwrap();
        m.entries.retain(|e| e.path != "a.txt");
        std::fs::write(&mp, serde_json::to_vec(&m).unwrap()).unwrap();
        let e = verify_path(d.path(), &a).unwrap_err().to_string();
        assert!(
            e.contains("a.txt is in the archive but not in the manifest"),
            "{e}"
        );
    }
}
