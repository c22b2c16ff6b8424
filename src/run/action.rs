//! Built-in actions (```` ```sopkit {step=ID action=NAME} ```` blocks, YAML arguments):
//! `archive` and `verify`. Each streams its data with constant memory, hashes as it reads or
//! writes, and reports what it produced and what it checked for the evidence record.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The built-in actions this version runs.
pub const AVAILABLE: &[&str] = &["archive", "verify"];

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("argument `{0}` is required")]
    Missing(&'static str),
    #[error("argument `{name}`: {message}")]
    Argument { name: &'static str, message: String },
    #[error("{path}: {message}")]
    Io { path: PathBuf, message: String },
    #[error("verification failed: {0}")]
    Failed(String),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |e| Error::Io {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

/// What an action produced and checked.
#[derive(Debug, Default)]
pub struct Output {
    /// Files produced (their paths), to be hashed into the evidence.
    pub artifacts: Vec<PathBuf>,
    /// One line per check made, `ok: …` or `FAILED: …`.
    pub verification: Vec<String>,
}

/// Where a run is: the repository root, names for file names, and what earlier runs left
/// (`STEP-ID` → artifact paths of its latest successful run).
pub struct Context<'a> {
    pub root: &'a Path,
    pub sop: &'a str,
    pub step: &'a str,
    pub earlier: &'a BTreeMap<String, Vec<String>>,
    pub log: &'a mut dyn Write,
}

fn string_arg(
    args: &BTreeMap<String, serde_json::Value>,
    name: &'static str,
) -> Result<String, Error> {
    match args.get(name) {
        None | Some(serde_json::Value::Null) => Err(Error::Missing(name)),
        Some(serde_json::Value::String(s)) => Ok(super::expand(s)),
        Some(other) => Err(Error::Argument {
            name,
            message: format!("expected a string, found {other}"),
        }),
    }
}

fn resolve(root: &Path, p: &str) -> PathBuf {
    let p = Path::new(p);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        root.join(p)
    }
}

pub fn run(
    action: &str,
    args: &BTreeMap<String, serde_json::Value>,
    cx: &mut Context<'_>,
) -> Result<Output, Error> {
    match action {
        "archive" => archive(args, cx),
        "verify" => verify(args, cx),
        other => Err(Error::Argument {
            name: "action",
            message: format!("`{other}` is not available in this version"),
        }),
    }
}

/// One file of an archive, as the manifest records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub path: String,
    /// `file`, `dir` or `symlink`.
    pub kind: String,
    pub size: u64,
    pub mode: u32,
    /// Files: SHA-256 of the content; symlinks: the link target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
}

/// The manifest written beside an archive (`ARCHIVE.manifest.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    pub source: String,
    pub archive_sha256: String,
    pub archive_size: u64,
    pub files: u64,
    pub bytes: u64,
    pub entries: Vec<Entry>,
}

/// A writer that hashes and counts what passes through it.
struct Hashing<W> {
    inner: W,
    hash: Sha256,
    count: u64,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// A reader that hashes what passes through it.
struct HashingReader<R> {
    inner: R,
    hash: Sha256,
    count: u64,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hash.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
}

fn hex(d: impl AsRef<[u8]>) -> String {
    d.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

fn timestamp() -> String {
    let fmt = time::macros::format_description!("[year][month][day]T[hour][minute][second]Z");
    time::OffsetDateTime::now_utc()
        .format(fmt)
        .unwrap_or_default()
}

/// `archive`: `source` (a folder) → `dest` (a folder, or a `.tar.zst` file name): tar +
/// zstd in one streaming pass that hashes every file as it is read and the archive as it is
/// written, plus a manifest of per-file SHA-256 beside it.
fn archive(
    args: &BTreeMap<String, serde_json::Value>,
    cx: &mut Context<'_>,
) -> Result<Output, Error> {
    let source = resolve(cx.root, &string_arg(args, "source")?);
    let dest_arg = resolve(cx.root, &string_arg(args, "dest")?);
    let level = match args.get("level") {
        Some(v) => v.as_i64().ok_or(Error::Argument {
            name: "level",
            message: "expected a number (zstd level 1 to 19)".into(),
        })? as i32,
        // Level 1 compresses text well at disk speed; a policy that wants smaller archives
        // sets `level`.
        None => 1,
    };
    if !source.is_dir() {
        return Err(Error::Argument {
            name: "source",
            message: format!("{} is not a folder", source.display()),
        });
    }
    let dest = if dest_arg.extension().is_some_and(|e| e == "zst") {
        dest_arg
    } else {
        std::fs::create_dir_all(&dest_arg).map_err(io(&dest_arg))?;
        dest_arg.join(format!("{}-{}-{}.tar.zst", cx.sop, cx.step, timestamp()))
    };
    if let Some(parent) = dest.parent() {
        std::fs::create_dir_all(parent).map_err(io(parent))?;
    }
    // Written under a temporary name in the same folder, renamed when complete.
    let tmp = tempfile::Builder::new()
        .prefix(".sopkit-archive-")
        .tempfile_in(dest.parent().unwrap_or(Path::new(".")))
        .map_err(io(&dest))?;
    let file = tmp.reopen().map_err(io(&dest))?;
    let hashing = Hashing {
        inner: std::io::BufWriter::with_capacity(1 << 20, file),
        hash: Sha256::new(),
        count: 0,
    };
    let mut enc = zstd::stream::write::Encoder::new(hashing, level).map_err(io(&dest))?;
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()) as u32;
    let _ = enc.multithread(threads);
    let mut tar = tar::Builder::new(enc);
    tar.follow_symlinks(false);
    let mut entries = Vec::new();
    let (mut files, mut bytes) = (0u64, 0u64);
    let walker = walkdir::WalkDir::new(&source)
        .follow_links(false)
        .sort_by_file_name()
        .min_depth(1);
    for e in walker {
        let e = e.map_err(|e| Error::Io {
            path: source.clone(),
            message: e.to_string(),
        })?;
        let rel = e
            .path()
            .strip_prefix(&source)
            .unwrap_or(e.path())
            .to_string_lossy()
            .replace('\\', "/");
        let meta = e.path().symlink_metadata().map_err(io(e.path()))?;
        let mode = std::os::unix::fs::PermissionsExt::mode(&meta.permissions());
        let mut header = tar::Header::new_gnu();
        header.set_metadata_in_mode(&meta, tar::HeaderMode::Complete);
        header.set_mode(mode & 0o7777);
        if meta.file_type().is_symlink() {
            let target = std::fs::read_link(e.path()).map_err(io(e.path()))?;
            header.set_size(0);
            tar.append_link(&mut header, &rel, &target)
                .map_err(io(e.path()))?;
            entries.push(Entry {
                path: rel,
                kind: "symlink".into(),
                size: 0,
                mode,
                sha256: None,
                target: Some(target.to_string_lossy().into_owned()),
            });
        } else if meta.is_dir() {
            header.set_size(0);
            tar.append_data(&mut header, format!("{rel}/"), std::io::empty())
                .map_err(io(e.path()))?;
            entries.push(Entry {
                path: rel,
                kind: "dir".into(),
                size: 0,
                mode,
                sha256: None,
                target: None,
            });
        } else if meta.is_file() {
            let f = std::fs::File::open(e.path()).map_err(io(e.path()))?;
            let mut reader = HashingReader {
                inner: f,
                hash: Sha256::new(),
                count: 0,
            };
            header.set_size(meta.len());
            tar.append_data(&mut header, &rel, &mut reader)
                .map_err(io(e.path()))?;
            if reader.count != meta.len() {
                return Err(Error::Io {
                    path: e.path().to_path_buf(),
                    message: "changed size while being archived".into(),
                });
            }
            files += 1;
            bytes += reader.count;
            entries.push(Entry {
                path: rel,
                kind: "file".into(),
                size: reader.count,
                mode,
                sha256: Some(hex(reader.hash.finalize())),
                target: None,
            });
        }
    }
    let enc = tar.into_inner().map_err(io(&dest))?;
    let mut hashing = enc.finish().map_err(io(&dest))?;
    hashing.flush().map_err(io(&dest))?;
    let archive_sha256 = hex(hashing.hash.finalize());
    let archive_size = hashing.count;
    let file = hashing.inner.into_inner().map_err(|e| Error::Io {
        path: dest.clone(),
        message: e.to_string(),
    })?;
    file.sync_all().map_err(io(&dest))?;
    tmp.persist(&dest).map_err(|e| Error::Io {
        path: dest.clone(),
        message: e.to_string(),
    })?;
    let manifest = Manifest {
        format: 1,
        source: source.to_string_lossy().into_owned(),
        archive_sha256: archive_sha256.clone(),
        archive_size,
        files,
        bytes,
        entries,
    };
    let manifest_path = manifest_path(&dest);
    let mut json = serde_json::to_vec_pretty(&manifest).unwrap_or_default();
    json.push(b'\n');
    crate::fs_atomic::write(&manifest_path, &json).map_err(io(&manifest_path))?;
    let _ = writeln!(
        cx.log,
        "archived {files} files ({bytes} bytes) from {} into {} ({archive_size} bytes, sha256 {archive_sha256})",
        source.display(),
        dest.display()
    );
    Ok(Output {
        artifacts: vec![dest, manifest_path],
        verification: vec![format!("ok: {files} files hashed while archiving")],
    })
}

pub fn manifest_path(archive: &Path) -> PathBuf {
    let mut s = archive.as_os_str().to_owned();
    s.push(".manifest.json");
    PathBuf::from(s)
}

/// `verify`: `archive` (a path, or the id of an earlier step of this SOP whose latest
/// successful run made one): the archive's own hash against its manifest, then every entry
/// restored into a temporary folder and each file's hash, size and kind compared with the
/// manifest; any difference, missing or extra entry, or decoding error fails.
fn verify(
    args: &BTreeMap<String, serde_json::Value>,
    cx: &mut Context<'_>,
) -> Result<Output, Error> {
    let arg = string_arg(args, "archive")?;
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

    let f = std::fs::File::open(&archive).map_err(io(&archive))?;
    let mut reader = HashingReader {
        inner: std::io::BufReader::with_capacity(1 << 20, f),
        hash: Sha256::new(),
        count: 0,
    };
    let scratch = tempfile::tempdir().map_err(io(Path::new("temporary folder")))?;
    let mut seen: BTreeMap<String, Entry> = BTreeMap::new();
    {
        let dec = zstd::stream::read::Decoder::with_buffer(std::io::BufReader::new(&mut reader))
            .map_err(io(&archive))?;
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
            let restored = scratch.path().join(&path);
            if let Some(parent) = restored.parent() {
                std::fs::create_dir_all(parent).map_err(io(parent))?;
            }
            let record = if kind.is_file() {
                let mut out = std::fs::File::create(&restored).map_err(io(&restored))?;
                let mut h = HashingReader {
                    inner: &mut entry,
                    hash: Sha256::new(),
                    count: 0,
                };
                std::io::copy(&mut h, &mut out)
                    .map_err(|e| Error::Failed(format!("restoring {path}: {e}")))?;
                Entry {
                    path: path.clone(),
                    kind: "file".into(),
                    size: h.count,
                    mode,
                    sha256: Some(hex(h.hash.finalize())),
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
    std::io::copy(&mut reader, &mut std::io::sink()).map_err(io(&archive))?;
    let sha = hex(reader.hash.finalize());
    if sha != manifest.archive_sha256 || reader.count != manifest.archive_size {
        failures.push(format!(
            "FAILED: {} has sha256 {sha} ({} bytes); the manifest says {} ({} bytes)",
            archive.display(),
            reader.count,
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
    for f in &failures {
        let _ = writeln!(cx.log, "{f}");
    }
    if !failures.is_empty() {
        return Err(Error::Failed(failures.join("; ")));
    }
    Ok(Output {
        artifacts: Vec::new(),
        verification: checks,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(pairs: &[(&str, &str)]) -> BTreeMap<String, serde_json::Value> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), serde_json::Value::String(v.to_string())))
            .collect()
    }

    fn tree(dir: &Path) {
        std::fs::create_dir_all(dir.join("sub/deeper")).unwrap();
        std::fs::write(dir.join("a.txt"), "alpha\n").unwrap();
        std::fs::write(dir.join("sub/b.bin"), vec![7u8; 300_000]).unwrap();
        std::fs::write(dir.join("sub/deeper/c"), "").unwrap();
        std::os::unix::fs::symlink("../a.txt", dir.join("sub/link")).unwrap();
    }

    fn archive_of(root: &Path) -> PathBuf {
        tree(&root.join("data"));
        let earlier = BTreeMap::new();
        let mut log = Vec::new();
        let mut cx = Context {
            root,
            sop: "IT-1",
            step: "pack",
            earlier: &earlier,
            log: &mut log,
        };
        let out = run(
            "archive",
            &args(&[("source", "data"), ("dest", "backups")]),
            &mut cx,
        )
        .unwrap();
        out.artifacts[0].clone()
    }

    fn verify_path(root: &Path, a: &Path) -> Result<Output, Error> {
        let earlier = BTreeMap::new();
        let mut log = Vec::new();
        let mut cx = Context {
            root,
            sop: "IT-1",
            step: "check",
            earlier: &earlier,
            log: &mut log,
        };
        run(
            "verify",
            &args(&[("archive", a.to_str().unwrap())]),
            &mut cx,
        )
    }

    #[test]
    fn an_archive_verifies_and_its_manifest_lists_every_file() {
        let d = tempfile::tempdir().unwrap();
        let a = archive_of(d.path());
        let m: Manifest =
            serde_json::from_slice(&std::fs::read(manifest_path(&a)).unwrap()).unwrap();
        assert_eq!(m.files, 3);
        assert_eq!(m.bytes, 6 + 300_000);
        assert!(
            m.entries
                .iter()
                .any(|e| e.path == "sub/link" && e.target.as_deref() == Some("../a.txt"))
        );
        let out = verify_path(d.path(), &a).unwrap();
        assert!(
            out.verification.iter().all(|v| v.starts_with("ok")),
            "{:?}",
            out.verification
        );
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
