//! Built-in actions (```` ```sopkit {step=ID action=NAME} ```` blocks, YAML arguments):
//! `archive` and `verify`. Each streams its data with constant memory, hashes as it reads or
//! writes, and reports what it produced and what it checked for the evidence record.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The built-in actions this version runs.
pub const AVAILABLE: &[&str] = &["archive", "verify", "copy", "git-mirror", "prune"];

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
    /// The targets of `sopkit.toml` (an argument `target: NAME` names one).
    pub targets: &'a BTreeMap<String, crate::config::Target>,
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
        "copy" => copy(args, cx),
        "git-mirror" => git_mirror(args, cx),
        "prune" => prune(args, cx),
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

/// Files named by an argument: the artifacts of an earlier step of this SOP, or a path (a
/// file, or every file below a folder).
fn sources(arg: &str, cx: &Context<'_>) -> Result<Vec<PathBuf>, Error> {
    if let Some(paths) = cx.earlier.get(arg) {
        return Ok(paths.iter().map(PathBuf::from).collect());
    }
    let p = resolve(cx.root, arg);
    if p.is_file() {
        return Ok(vec![p]);
    }
    if !p.is_dir() {
        return Err(Error::Argument {
            name: "source",
            message: format!(
                "{} is neither a file, a folder nor an earlier step",
                p.display()
            ),
        });
    }
    let mut out = Vec::new();
    for e in walkdir::WalkDir::new(&p)
        .follow_links(false)
        .sort_by_file_name()
    {
        let e = e.map_err(|e| Error::Io {
            path: p.clone(),
            message: e.to_string(),
        })?;
        if e.file_type().is_file() {
            out.push(e.into_path());
        }
    }
    Ok(out)
}

fn hash_path(path: &Path) -> Result<(u64, String), Error> {
    let f = std::fs::File::open(path).map_err(io(path))?;
    let mut h = HashingReader {
        inner: f,
        hash: Sha256::new(),
        count: 0,
    };
    std::io::copy(&mut h, &mut std::io::sink()).map_err(io(path))?;
    Ok((h.count, hex(h.hash.finalize())))
}

/// `copy`: `source` (a file, a folder, or an earlier step's artifacts) → `dest` (a folder,
/// e.g. an off-site or offline mount). Each file is hashed while it is read, written under a
/// temporary name, synced and renamed, then read back from the destination and hashed again;
/// any difference fails.
fn copy(args: &BTreeMap<String, serde_json::Value>, cx: &mut Context<'_>) -> Result<Output, Error> {
    let source_arg = string_arg(args, "source")?;
    let dest = resolve(cx.root, &string_arg(args, "dest")?);
    std::fs::create_dir_all(&dest).map_err(io(&dest))?;
    let files = sources(&source_arg, cx)?;
    let base = resolve(cx.root, &source_arg);
    let mut out = Output::default();
    for src in files {
        let rel = src
            .strip_prefix(&base)
            .ok()
            .filter(|r| !r.as_os_str().is_empty())
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from(src.file_name().unwrap_or_default()));
        let to = dest.join(&rel);
        let dir = to.parent().unwrap_or(&dest).to_path_buf();
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        let mut tmp = tempfile::Builder::new()
            .prefix(".sopkit-copy-")
            .tempfile_in(&dir)
            .map_err(io(&dir))?;
        let f = std::fs::File::open(&src).map_err(io(&src))?;
        let mut reader = HashingReader {
            inner: f,
            hash: Sha256::new(),
            count: 0,
        };
        std::io::copy(&mut reader, tmp.as_file_mut()).map_err(io(&to))?;
        tmp.as_file().sync_all().map_err(io(&to))?;
        tmp.persist(&to).map_err(|e| Error::Io {
            path: to.clone(),
            message: e.to_string(),
        })?;
        let wrote = (reader.count, hex(reader.hash.finalize()));
        let read_back = hash_path(&to)?;
        if wrote != read_back {
            return Err(Error::Failed(format!(
                "{} reads back as sha256 {} ({} bytes), not {} ({} bytes)",
                to.display(),
                read_back.1,
                read_back.0,
                wrote.1,
                wrote.0
            )));
        }
        let _ = writeln!(
            cx.log,
            "copied {} -> {} (sha256 {})",
            src.display(),
            to.display(),
            wrote.1
        );
        out.verification.push(format!(
            "ok: {} read back with sha256 {}",
            to.display(),
            wrote.1
        ));
        out.artifacts.push(to);
    }
    if out.artifacts.is_empty() {
        return Err(Error::Argument {
            name: "source",
            message: format!("{source_arg} has no files to copy"),
        });
    }
    Ok(out)
}

fn git(args: &[&str], cwd: Option<&Path>, log: &mut dyn Write) -> Result<String, Error> {
    let mut cmd = std::process::Command::new("git");
    cmd.args(args).env("GIT_TERMINAL_PROMPT", "0");
    if let Some(d) = cwd {
        cmd.current_dir(d);
    }
    let out = cmd.output().map_err(|e| Error::Io {
        path: PathBuf::from("git"),
        message: e.to_string(),
    })?;
    let _ = log.write_all(&out.stderr);
    if !out.status.success() {
        return Err(Error::Failed(format!(
            "git {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `git-mirror`: `url` (a git remote) or `target` (a `kind = "git"` target) and `dest` (a
/// folder): keeps a mirror clone
/// (`dest/NAME.git`, created or updated with the system `git`), writes a bundle of all its
/// refs (`dest/NAME-<UTC time>.bundle`), then proves the bundle whole by cloning it back and
/// running `git fsck --full` on the clone, and compares its refs with the mirror's (`git
/// bundle verify` alone accepts a bundle that was cut short).
fn git_mirror(
    args: &BTreeMap<String, serde_json::Value>,
    cx: &mut Context<'_>,
) -> Result<Output, Error> {
    let url = match (args.get("url"), args.get("target")) {
        (Some(_), _) => string_arg(args, "url")?,
        (None, Some(_)) => {
            let name = string_arg(args, "target")?;
            let t = cx.targets.get(&name).ok_or_else(|| Error::Argument {
                name: "target",
                message: format!("`{name}` is not defined in sopkit.toml"),
            })?;
            match (&t.kind, &t.url) {
                (crate::config::TargetKind::Git, Some(u)) => u.clone(),
                _ => {
                    return Err(Error::Argument {
                        name: "target",
                        message: format!("`{name}` is not a git target with a url"),
                    });
                }
            }
        }
        (None, None) => return Err(Error::Missing("url")),
    };
    let dest = resolve(cx.root, &string_arg(args, "dest")?);
    std::fs::create_dir_all(&dest).map_err(io(&dest))?;
    let name = url
        .trim_end_matches('/')
        .rsplit(['/', ':'])
        .next()
        .unwrap_or("repo")
        .trim_end_matches(".git")
        .to_string();
    let name = if name.is_empty() {
        "repo".to_string()
    } else {
        name
    };
    let mirror = dest.join(format!("{name}.git"));
    let mirror_s = mirror.to_string_lossy().into_owned();
    if mirror.join("HEAD").is_file() {
        git(
            &["-C", &mirror_s, "remote", "update", "--prune"],
            None,
            cx.log,
        )?;
    } else {
        git(
            &["clone", "--quiet", "--mirror", "--", &url, &mirror_s],
            None,
            cx.log,
        )?;
    }
    let bundle = dest.join(format!("{name}-{}.bundle", timestamp()));
    let bundle_s = bundle.to_string_lossy().into_owned();
    git(
        &[
            "-C", &mirror_s, "bundle", "create", "--quiet", &bundle_s, "--all",
        ],
        None,
        cx.log,
    )?;
    let refs = |text: String| -> Vec<String> {
        let mut v: Vec<String> = text
            .lines()
            .filter(|l| !l.ends_with(" HEAD") && !l.contains("refs/remotes/"))
            .map(str::to_string)
            .collect();
        v.sort();
        v
    };
    let mirror_refs = refs(git(&["-C", &mirror_s, "show-ref"], None, cx.log)?);
    let scratch = tempfile::tempdir().map_err(io(Path::new("temporary folder")))?;
    let back = scratch.path().join("back");
    let back_s = back.to_string_lossy().into_owned();
    git(
        &["clone", "--quiet", "--mirror", "--", &bundle_s, &back_s],
        None,
        cx.log,
    )?;
    git(
        &["-C", &back_s, "fsck", "--full", "--no-progress"],
        None,
        cx.log,
    )?;
    let back_refs = refs(git(&["-C", &back_s, "show-ref"], None, cx.log)?);
    if back_refs != mirror_refs {
        return Err(Error::Failed(format!(
            "the bundle's refs ({}) differ from the mirror's ({})",
            back_refs.len(),
            mirror_refs.len()
        )));
    }
    let _ = writeln!(
        cx.log,
        "mirrored {url} into {}; bundle {} cloned back, fsck --full clean, {} refs match",
        mirror.display(),
        bundle.display(),
        mirror_refs.len()
    );
    Ok(Output {
        artifacts: vec![bundle],
        verification: vec![
            "ok: bundle cloned back and git fsck --full found no problem".to_string(),
            format!("ok: {} refs match the mirror", mirror_refs.len()),
        ],
    })
}

/// One backup item a `prune` considers, and what becomes of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub path: PathBuf,
    /// Modification time, UTC seconds.
    pub time: i64,
    /// `None`: deleted; otherwise why it is kept.
    pub keep: Option<String>,
}

fn count_arg(
    args: &BTreeMap<String, serde_json::Value>,
    name: &'static str,
) -> Result<usize, Error> {
    match args.get(name) {
        None => Ok(0),
        Some(v) => v.as_u64().map(|n| n as usize).ok_or(Error::Argument {
            name,
            message: "expected a whole number".into(),
        }),
    }
}

/// What `prune` would do with the items in `path` at time `now` (UTC seconds); nothing is
/// deleted here.
pub fn prune_plan(
    args: &BTreeMap<String, serde_json::Value>,
    root: &Path,
    now: i64,
) -> Result<Vec<Decision>, Error> {
    let dir = resolve(root, &string_arg(args, "path")?);
    let retention: crate::duration::Duration =
        string_arg(args, "retention")?
            .parse()
            .map_err(|e| Error::Argument {
                name: "retention",
                message: format!("{e}"),
            })?;
    let glob = match args.get("pattern") {
        Some(_) => Some(
            globset::Glob::new(&string_arg(args, "pattern")?)
                .map_err(|e| Error::Argument {
                    name: "pattern",
                    message: e.to_string(),
                })?
                .compile_matcher(),
        ),
        None => None,
    };
    let mut holds = globset::GlobSetBuilder::new();
    if let Some(serde_json::Value::Array(list)) = args.get("legal_hold") {
        for g in list.iter().filter_map(|v| v.as_str()) {
            holds.add(globset::Glob::new(g).map_err(|e| Error::Argument {
                name: "legal_hold",
                message: e.to_string(),
            })?);
        }
    }
    let holds = holds.build().map_err(|e| Error::Argument {
        name: "legal_hold",
        message: e.to_string(),
    })?;
    let rules = [
        (
            "daily",
            count_arg(args, "keep_daily")?,
            "[year]-[month]-[day]",
        ),
        (
            "weekly",
            count_arg(args, "keep_weekly")?,
            "[year]-W[week_number repr:iso]",
        ),
        (
            "monthly",
            count_arg(args, "keep_monthly")?,
            "[year]-[month]",
        ),
    ];
    let mut items = Vec::new();
    for e in std::fs::read_dir(&dir).map_err(io(&dir))? {
        let e = e.map_err(io(&dir))?;
        let name = e.file_name().to_string_lossy().into_owned();
        // Companions go with their item: a manifest, a legal-hold marker.
        if name.ends_with(".manifest.json")
            || name.ends_with(".legal-hold")
            || name.starts_with('.')
        {
            continue;
        }
        if glob.as_ref().is_some_and(|g| !g.is_match(&name)) {
            continue;
        }
        let meta = e.path().symlink_metadata().map_err(io(&e.path()))?;
        let time = meta
            .modified()
            .ok()
            .and_then(|m| m.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_secs() as i64);
        items.push((e.path(), name, time));
    }
    // Newest first: the keep rules keep the newest item of each period.
    items.sort_by(|a, b| b.2.cmp(&a.2).then(a.1.cmp(&b.1)));
    let mut seen: Vec<std::collections::BTreeSet<String>> = vec![Default::default(); rules.len()];
    let mut out = Vec::new();
    for (path, name, time) in items {
        let mut keep = None;
        let mut hold_marker = path.as_os_str().to_owned();
        hold_marker.push(".legal-hold");
        if Path::new(&hold_marker).exists() || holds.is_match(&name) {
            keep = Some("legal hold".to_string());
        } else if now - time < retention.seconds as i64 {
            keep = Some(format!("within retention {retention}"));
        }
        let dt = time::OffsetDateTime::from_unix_timestamp(time)
            .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
        for (i, (label, n, fmt)) in rules.iter().enumerate() {
            let Ok(desc) = time::format_description::parse_borrowed::<2>(fmt) else {
                continue;
            };
            let bucket = dt.format(&desc).unwrap_or_default();
            if *n > 0 && !seen[i].contains(&bucket) && seen[i].len() < *n {
                seen[i].insert(bucket.clone());
                keep.get_or_insert_with(|| format!("newest of {bucket} (keep_{label})"));
            }
        }
        out.push(Decision { path, time, keep });
    }
    Ok(out)
}

/// `prune`: in `path`, deletes the items (files or folders; `pattern` narrows them) older
/// than `retention` that no `keep_daily`, `keep_weekly` or `keep_monthly` rule keeps. An
/// item with a `ITEM.legal-hold` file beside it, or matching a `legal_hold` glob, is never
/// deleted; an archive's manifest goes with it.
fn prune(
    args: &BTreeMap<String, serde_json::Value>,
    cx: &mut Context<'_>,
) -> Result<Output, Error> {
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let plan = prune_plan(args, cx.root, now)?;
    let mut out = Output::default();
    for d in &plan {
        match &d.keep {
            Some(why) => {
                let _ = writeln!(cx.log, "kept {}: {why}", d.path.display());
            }
            None => {
                let meta = d.path.symlink_metadata().map_err(io(&d.path))?;
                if meta.is_dir() {
                    std::fs::remove_dir_all(&d.path).map_err(io(&d.path))?;
                } else {
                    std::fs::remove_file(&d.path).map_err(io(&d.path))?;
                }
                let manifest = manifest_path(&d.path);
                if manifest.exists() {
                    std::fs::remove_file(&manifest).map_err(io(&manifest))?;
                }
                let _ = writeln!(cx.log, "deleted {}", d.path.display());
                out.verification
                    .push(format!("ok: deleted {}", d.path.display()));
            }
        }
    }
    let kept = plan.iter().filter(|d| d.keep.is_some()).count();
    out.verification
        .push(format!("ok: {kept} kept, {} deleted", plan.len() - kept));
    Ok(out)
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

    /// Runs `action` with `pairs` in a context with no earlier steps and no targets.
    fn act(root: &Path, action: &str, pairs: &[(&str, &str)]) -> Result<Output, Error> {
        let (earlier, targets) = (BTreeMap::new(), BTreeMap::new());
        let mut log = Vec::new();
        let mut cx = Context {
            root,
            sop: "IT-1",
            step: action,
            earlier: &earlier,
            targets: &targets,
            log: &mut log,
        };
        run(action, &args(pairs), &mut cx)
    }

    fn archive_of(root: &Path) -> PathBuf {
        tree(&root.join("data"));
        let out = act(root, "archive", &[("source", "data"), ("dest", "backups")]).unwrap();
        out.artifacts[0].clone()
    }

    fn verify_path(root: &Path, a: &Path) -> Result<Output, Error> {
        act(root, "verify", &[("archive", a.to_str().unwrap())])
    }

    #[test]
    fn prune_keeps_recent_periodic_and_held_items() {
        let d = tempfile::tempdir().unwrap();
        let day = 86_400i64;
        let now = 1_800_000_000i64; // 2027-01-15
        for age in [1, 10, 40, 41, 70, 100, 400] {
            let p = d.path().join(format!("b{age:03}.tar.zst"));
            std::fs::write(&p, "x").unwrap();
            std::fs::write(manifest_path(&p), "{}").unwrap();
            let t =
                std::time::UNIX_EPOCH + std::time::Duration::from_secs((now - age * day) as u64);
            std::fs::File::options()
                .write(true)
                .open(&p)
                .unwrap()
                .set_modified(t)
                .unwrap();
        }
        std::fs::write(d.path().join("b400.tar.zst.legal-hold"), "case 12").unwrap();
        let mut a = args(&[("path", d.path().to_str().unwrap()), ("retention", "35d")]);
        a.insert("keep_monthly".into(), serde_json::json!(2));
        let plan = prune_plan(&a, d.path(), now).unwrap();
        let deleted: Vec<String> = plan
            .iter()
            .filter(|x| x.keep.is_none())
            .map(|x| x.path.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        // 1 and 10 days: within retention; 40 is the newest of its month, 70 of the month
        // before (keep_monthly: 2, counting the retained ones' month first); 400: legal hold.
        let kept: Vec<(String, String)> = plan
            .iter()
            .filter_map(|x| {
                x.keep.clone().map(|k| {
                    (
                        x.path.file_name().unwrap().to_string_lossy().into_owned(),
                        k,
                    )
                })
            })
            .collect();
        assert!(
            kept.iter()
                .any(|(n, k)| n == "b400.tar.zst" && k == "legal hold"),
            "{kept:?}"
        );
        assert!(!deleted.contains(&"b400.tar.zst".to_string()));
        assert!(deleted.contains(&"b100.tar.zst".to_string()), "{deleted:?}");
        assert!(
            !deleted.contains(&"b001.tar.zst".to_string())
                && !deleted.contains(&"b010.tar.zst".to_string())
        );
        // Without keep rules, everything past retention goes except the held one.
        let a = args(&[("path", d.path().to_str().unwrap()), ("retention", "35d")]);
        let plan = prune_plan(&a, d.path(), now).unwrap();
        let deleted = plan.iter().filter(|x| x.keep.is_none()).count();
        assert_eq!(deleted, 4);
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
