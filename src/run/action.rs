//! Built-in actions (```` ```sopkit {step=ID action=NAME} ```` blocks, YAML arguments):
//! `archive` and `verify`. Each streams its data with constant memory, hashes as it reads or
//! writes, and reports what it produced and what it checked for the evidence record.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::config::TargetKind;
use crate::corpus::step::args::{self, Arguments};
use crate::fs_atomic::StreamedFile;

pub(crate) mod pipeline;
pub(crate) use pipeline::ReadAhead;

/// The built-in actions this version runs.
pub const AVAILABLE: &[&str] = &[
    "archive",
    "verify",
    "copy",
    "git-mirror",
    "prune",
    "db-dump",
    "restore-test",
    "upload",
    "restore",
];

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

pub(crate) fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
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
    /// Size and SHA-256 of artifacts hashed as they were written: the record takes these
    /// instead of reading the file a second time.
    pub hashed: BTreeMap<PathBuf, (u64, String)>,
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

/// An argument as the action uses it: `${VAR}` expanded from the environment.
pub(crate) fn expanded(value: &str) -> String {
    super::expand(value)
}

/// An argument the action needs in this form (the other form of the action takes others).
pub(crate) fn required(value: Option<&str>, name: &'static str) -> Result<String, Error> {
    value.map(expanded).ok_or(Error::Missing(name))
}

pub(crate) fn resolve(root: &Path, p: &str) -> PathBuf {
    let p = Path::new(p);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        root.join(p)
    }
}

pub fn run(args: &Arguments, cx: &mut Context<'_>) -> Result<Output, Error> {
    match args {
        Arguments::Archive(a) => archive(a, cx),
        // With `key`, an object in a bucket; otherwise an archive.
        Arguments::Verify(a) if a.key.is_some() => super::s3::verify(a, cx),
        Arguments::Verify(a) => verify(a, cx),
        Arguments::Copy(a) => copy(a, cx),
        Arguments::GitMirror(a) => git_mirror(a, cx),
        // On an s3 target, object versions in a bucket; otherwise items in a folder.
        Arguments::Prune(a)
            if target_kind(a.target.as_deref(), cx.targets) == Some(TargetKind::S3) =>
        {
            super::s3::prune(a, cx)
        }
        Arguments::Prune(a) => prune(&local_prune_args(a, cx.targets), cx),
        Arguments::DbDump(a) => super::mysql::db_dump(a, cx),
        Arguments::RestoreTest(a) => super::mysql::restore_test(a, cx),
        Arguments::Upload(a) => super::s3::upload(a, cx),
        Arguments::Restore(a) => super::s3::restore(a, cx),
    }
}

/// The kind of the target an action's `target` argument names, if it names one.
pub fn target_kind(
    target: Option<&str>,
    targets: &BTreeMap<String, crate::config::Target>,
) -> Option<TargetKind> {
    targets.get(target?).map(|t| t.kind)
}

/// A local `prune` may name a local target instead of a `path`: its path is used.
pub fn local_prune_args(
    args: &args::Prune,
    targets: &BTreeMap<String, crate::config::Target>,
) -> args::Prune {
    let mut args = args.clone();
    if args.path.is_none()
        && let Some(path) = args
            .target
            .as_deref()
            .and_then(|n| targets.get(n))
            .and_then(|t| t.path.clone())
    {
        args.path = Some(path);
    }
    args
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
pub(crate) struct HashingReader<R> {
    pub inner: R,
    pub hash: Sha256,
    pub count: u64,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hash.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
}

pub(crate) fn hex(d: impl AsRef<[u8]>) -> String {
    crate::digest::hex(d.as_ref())
}

pub(crate) fn timestamp() -> String {
    crate::time::now_compact()
}

// No BufWriter: zstd hands over its output in 32 KiB blocks already, and another
// buffer would copy every compressed byte once more.
type Encoder = zstd::stream::write::Encoder<'static, Hashing<StreamedFile>>;

/// An archive being written: tar + zstd streamed into a temporary file beside its final
/// name, hashing each file as it goes in and the archive as it goes out.
struct ArchiveWriter {
    tar: tar::Builder<Encoder>,
    tmp: tempfile::NamedTempFile,
    dest: PathBuf,
    entries: Vec<Entry>,
    files: u64,
    bytes: u64,
}

impl ArchiveWriter {
    fn create(dest: PathBuf, level: i32) -> Result<ArchiveWriter, Error> {
        let dir = dest.parent().unwrap_or(Path::new(".")).to_path_buf();
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        let tmp = tempfile::Builder::new()
            .prefix(".sopkit-archive-")
            .tempfile_in(&dir)
            .map_err(io(&dest))?;
        let file = tmp.reopen().map_err(io(&dest))?;
        let hashing = Hashing {
            inner: StreamedFile::new(file),
            hash: Sha256::new(),
            count: 0,
        };
        let mut enc = zstd::stream::write::Encoder::new(hashing, level).map_err(io(&dest))?;
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get()) as u32;
        let _ = enc.multithread(threads);
        let mut tar = tar::Builder::new(enc);
        tar.follow_symlinks(false);
        Ok(ArchiveWriter {
            tar,
            tmp,
            dest,
            entries: Vec::new(),
            files: 0,
            bytes: 0,
        })
    }

    fn add_symlink(
        &mut self,
        header: &mut tar::Header,
        rel: String,
        target: &Path,
        mode: u32,
    ) -> Result<(), Error> {
        header.set_size(0);
        self.tar
            .append_link(header, &rel, target)
            .map_err(io(&self.dest))?;
        self.entries.push(Entry {
            path: rel,
            kind: "symlink".into(),
            size: 0,
            mode,
            sha256: None,
            target: Some(target.to_string_lossy().into_owned()),
        });
        Ok(())
    }

    fn add_dir(&mut self, header: &mut tar::Header, rel: String, mode: u32) -> Result<(), Error> {
        header.set_size(0);
        self.tar
            .append_data(header, format!("{rel}/"), std::io::empty())
            .map_err(io(&self.dest))?;
        self.entries.push(Entry {
            path: rel,
            kind: "dir".into(),
            size: 0,
            mode,
            sha256: None,
            target: None,
        });
        Ok(())
    }

    /// Adds a file of `size` bytes read from `data`, hashing it as it goes in; a different
    /// length is an error.
    fn add_file(
        &mut self,
        header: &mut tar::Header,
        rel: String,
        data: impl Read,
        size: u64,
        mode: u32,
        origin: &Path,
    ) -> Result<(), Error> {
        let mut reader = HashingReader {
            inner: data,
            hash: Sha256::new(),
            count: 0,
        };
        header.set_size(size);
        self.tar
            .append_data(header, &rel, &mut reader)
            .map_err(io(origin))?;
        let sha256 = hex(reader.hash.finalize());
        self.file_added(rel, (reader.count, sha256), size, mode, origin)
    }

    /// Adds the file [`pipeline::TreeReader`] announced last: its bytes and hash come from
    /// the reading thread.
    fn add_read_file(
        &mut self,
        header: &mut tar::Header,
        rel: String,
        tree: &mut pipeline::TreeReader,
        size: u64,
        mode: u32,
        origin: &Path,
    ) -> Result<(), Error> {
        use std::io::BufRead;
        // The header goes through tar; the bytes go to the compressor in whole chunks and
        // are padded to tar's 512-byte blocks here (`append_data` copies 8 KiB at a time).
        header.set_size(size);
        self.tar
            .append_data(header, &rel, std::io::empty())
            .map_err(io(origin))?;
        let mut data = tree.file();
        let out = self.tar.get_mut();
        loop {
            let chunk = data.fill_buf().map_err(io(origin))?;
            if chunk.is_empty() {
                break;
            }
            out.write_all(chunk).map_err(io(&self.dest))?;
            let n = chunk.len();
            data.consume(n);
        }
        let read = data.digest().map_err(io(origin))?;
        let pad = (512 - read.0 % 512) % 512;
        out.write_all(&[0u8; 512][..pad as usize])
            .map_err(io(&self.dest))?;
        self.file_added(rel, read, size, mode, origin)
    }

    /// Records a file appended with `size` in its header, of which `read` (size, SHA-256)
    /// went into the archive.
    fn file_added(
        &mut self,
        rel: String,
        (count, sha256): (u64, String),
        size: u64,
        mode: u32,
        origin: &Path,
    ) -> Result<(), Error> {
        if count != size {
            return Err(Error::Io {
                path: origin.to_path_buf(),
                message: "changed size while being archived".into(),
            });
        }
        self.files += 1;
        self.bytes += count;
        self.entries.push(Entry {
            path: rel,
            kind: "file".into(),
            size: count,
            mode,
            sha256: Some(sha256),
            target: None,
        });
        Ok(())
    }

    /// Completes the archive, syncs it, gives it its name and writes its manifest.
    fn finish(self, source: String) -> Result<(PathBuf, PathBuf, Manifest), Error> {
        let dest = self.dest;
        let enc = self.tar.into_inner().map_err(io(&dest))?;
        let mut hashing = enc.finish().map_err(io(&dest))?;
        hashing.flush().map_err(io(&dest))?;
        let archive_sha256 = hex(hashing.hash.finalize());
        let archive_size = hashing.count;
        hashing.inner.into_inner().sync_all().map_err(io(&dest))?;
        self.tmp.persist(&dest).map_err(|e| Error::Io {
            path: dest.clone(),
            message: e.to_string(),
        })?;
        let manifest = Manifest {
            format: 1,
            source,
            archive_sha256,
            archive_size,
            files: self.files,
            bytes: self.bytes,
            entries: self.entries,
        };
        let manifest_path = manifest_path(&dest);
        let mut json = serde_json::to_vec_pretty(&manifest).unwrap_or_default();
        json.push(b'\n');
        crate::fs_atomic::write(&manifest_path, &json).map_err(io(&manifest_path))?;
        Ok((dest, manifest_path, manifest))
    }
}

/// `archive`: `source` (a folder here, or `TARGET:/path` on an ssh target) → `dest` (a
/// folder, or a `.tar.zst` file name): tar + zstd in one streaming pass that hashes every
/// file as it is read and the archive as it is written, plus a manifest of per-file SHA-256
/// beside it. From an ssh host the files arrive as a tar stream over ssh, and every file's
/// hash is also computed on the host with `sha256sum`; the two sides must agree.
fn archive(args: &args::Archive, cx: &mut Context<'_>) -> Result<Output, Error> {
    let source_arg = expanded(&args.source);
    let dest_arg = resolve(cx.root, &expanded(&args.dest));
    // Level 1 compresses text well at disk speed; a policy that wants smaller archives sets
    // `level`.
    let level = args.level.unwrap_or(1);
    let remote = super::ssh::remote_path(&source_arg, cx.targets);
    let source = resolve(cx.root, &source_arg);
    if remote.is_none() && !source.is_dir() {
        return Err(Error::Argument {
            name: "source",
            message: format!("{} is not a folder", source.display()),
        });
    }
    let names_file = dest_arg.extension().is_some_and(|e| e == "zst");
    if remote.is_none() {
        let dest_dir = if names_file {
            dest_arg.parent().unwrap_or(Path::new("."))
        } else {
            &dest_arg
        };
        refuse_dest_inside(dest_dir, &source)?;
    }
    let dest = if names_file {
        dest_arg
    } else {
        std::fs::create_dir_all(&dest_arg).map_err(io(&dest_arg))?;
        dest_arg.join(format!("{}-{}-{}.tar.zst", cx.sop, cx.step, timestamp()))
    };
    let mut w = ArchiveWriter::create(dest, level)?;
    let (label, mut verification) = match remote {
        Some((host, path)) => {
            let checks = archive_remote(&mut w, &host, path)?;
            (format!("{}:{path}", host.name), checks)
        }
        None => {
            archive_local(&mut w, &source)?;
            (
                source.to_string_lossy().into_owned(),
                vec![format!("ok: {} files hashed while archiving", w.files)],
            )
        }
    };
    let (files, bytes) = (w.files, w.bytes);
    let (dest, manifest_path, manifest) = w.finish(label.clone())?;
    let _ = writeln!(
        cx.log,
        "archived {files} files ({bytes} bytes) from {label} into {} ({} bytes, sha256 {})",
        dest.display(),
        manifest.archive_size,
        manifest.archive_sha256
    );
    verification.push(format!("ok: archive sha256 {}", manifest.archive_sha256));
    let hashed = BTreeMap::from([(
        dest.clone(),
        (manifest.archive_size, manifest.archive_sha256),
    )]);
    Ok(Output {
        artifacts: vec![dest, manifest_path],
        verification,
        hashed,
    })
}

/// Archives a local folder; its files are read and hashed on another thread
/// ([`pipeline::TreeReader`]) while this one feeds the compressor.
fn archive_local(w: &mut ArchiveWriter, source: &Path) -> Result<(), Error> {
    let mut tree = pipeline::TreeReader::spawn(source);
    while let Some(item) = tree.next() {
        let (path, rel, meta) = match item {
            pipeline::Walked::Entry { path, rel, meta } => (path, rel, meta),
            pipeline::Walked::Failed { path, message } => {
                return Err(Error::Io { path, message });
            }
            pipeline::Walked::Chunk(_) | pipeline::Walked::End { .. } => {
                return Err(Error::Failed(
                    "the folder reader handed over data without a file".into(),
                ));
            }
        };
        let mode = std::os::unix::fs::PermissionsExt::mode(&meta.permissions());
        let mut header = tar::Header::new_gnu();
        header.set_metadata_in_mode(&meta, tar::HeaderMode::Complete);
        header.set_mode(mode & 0o7777);
        if meta.file_type().is_symlink() {
            let target = std::fs::read_link(&path).map_err(io(&path))?;
            w.add_symlink(&mut header, rel, &target, mode)?;
        } else if meta.is_dir() {
            w.add_dir(&mut header, rel, mode)?;
        } else if meta.is_file() {
            w.add_read_file(&mut header, rel, &mut tree, meta.len(), mode, &path)?;
        }
    }
    Ok(())
}

/// Streams `path` from an ssh host (`tar -c` there) into the archive, then compares every
/// file's size and hash with what `sha256sum` computed on the host.
fn archive_remote(
    w: &mut ArchiveWriter,
    host: &super::ssh::Host,
    path: &str,
) -> Result<Vec<String>, Error> {
    let remote_err = |e: super::ssh::Error| Error::Failed(e.to_string());
    host.connect().map_err(remote_err)?;
    let label = PathBuf::from(format!("{}:{path}", host.name));
    let mut child = host
        .ssh()
        .arg(format!("tar -cf - -C {} .", super::ssh::quote(path)))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(io(&label))?;
    let mut stderr = child.stderr.take().expect("piped");
    let err_thread = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let stdout = child.stdout.take().expect("piped");
    let streamed = (|| -> Result<(), Error> {
        let mut archive = tar::Archive::new(stdout);
        for entry in archive.entries().map_err(io(&label))? {
            let entry = entry.map_err(|e| Error::Failed(format!("{}: {e}", label.display())))?;
            let raw = entry
                .path()
                .map_err(|e| Error::Failed(e.to_string()))?
                .to_string_lossy()
                .into_owned();
            let rel = raw
                .trim_start_matches("./")
                .trim_end_matches('/')
                .to_string();
            if rel.is_empty() || rel == "." {
                continue;
            }
            let mut header = entry.header().clone();
            let mode = header.mode().unwrap_or(0);
            let kind = header.entry_type();
            if kind.is_symlink() {
                let target = entry
                    .link_name()
                    .map_err(|e| Error::Failed(e.to_string()))?
                    .map(|t| t.into_owned())
                    .unwrap_or_default();
                w.add_symlink(&mut header, rel, &target, mode)?;
            } else if kind.is_dir() {
                w.add_dir(&mut header, rel, mode)?;
            } else if kind.is_file() {
                let size = entry.size();
                w.add_file(&mut header, rel, entry, size, mode, &label)?;
            }
        }
        Ok(())
    })();
    if streamed.is_err() {
        let _ = child.kill();
    }
    let status = child.wait().map_err(io(&label))?;
    let errors = err_thread.join().unwrap_or_default();
    streamed?;
    if !status.success() {
        return Err(Error::Failed(format!(
            "tar on {} failed ({status}): {}",
            host.name,
            errors.trim()
        )));
    }
    let theirs = host.hashes(path).map_err(remote_err)?;
    let mut ours: Vec<(String, u64, String)> = w
        .entries
        .iter()
        .filter(|e| e.kind == "file")
        .map(|e| (e.path.clone(), e.size, e.sha256.clone().unwrap_or_default()))
        .collect();
    ours.sort();
    if ours != theirs {
        let differ: Vec<&str> = ours
            .iter()
            .filter(|o| !theirs.contains(o))
            .map(|o| o.0.as_str())
            .chain(
                theirs
                    .iter()
                    .filter(|t| !ours.contains(t))
                    .map(|t| t.0.as_str()),
            )
            .take(10)
            .collect();
        return Err(Error::Failed(format!(
            "the files received from {} differ from their hashes there (changed meanwhile, or damaged on the way): {}",
            host.name,
            differ.join(", ")
        )));
    }
    Ok(vec![format!(
        "ok: {} files hashed here and on {} with sha256sum, all equal",
        ours.len(),
        host.name
    )])
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
fn verify(args: &args::Verify, cx: &mut Context<'_>) -> Result<Output, Error> {
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
                    let n = pipeline::fill(&mut entry, &mut buf)
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

/// The end of a check: every failure to the log and, if there is any, the step fails with
/// all of them; otherwise the checks made are the output.
pub(crate) fn conclude(
    log: &mut dyn Write,
    failures: &[String],
    checks: Vec<String>,
) -> Result<Output, Error> {
    for f in failures {
        let _ = writeln!(log, "{f}");
    }
    if !failures.is_empty() {
        return Err(Error::Failed(failures.join("; ")));
    }
    Ok(Output {
        verification: checks,
        ..Output::default()
    })
}

/// Files named by an argument: the artifacts of an earlier step of this SOP, or a path (a
/// file, or every file below a folder).
pub(crate) fn sources(arg: &str, cx: &Context<'_>) -> Result<Vec<PathBuf>, Error> {
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

pub(crate) fn hash_path(path: &Path) -> Result<(u64, String), Error> {
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
/// temporary name, synced, dropped from the page cache and renamed, then read back from the
/// destination and hashed again; any difference fails. Either side may be `TARGET:/path` on
/// an ssh target: the file then travels over ssh and is hashed on the host with `sha256sum`
/// before it gets its name.
fn copy(args: &args::Copy, cx: &mut Context<'_>) -> Result<Output, Error> {
    let source_arg = expanded(&args.source);
    let dest_arg = expanded(&args.dest);
    let from = super::ssh::remote_path(&source_arg, cx.targets);
    let to = super::ssh::remote_path(&dest_arg, cx.targets);
    let out = match (from, to) {
        (Some(_), Some(_)) => {
            return Err(Error::Argument {
                name: "dest",
                message: "copying from one ssh host to another is not supported: copy to this machine first".into(),
            });
        }
        (None, Some((host, dir))) => copy_to_host(&source_arg, &host, dir, cx)?,
        (Some((host, path)), None) => {
            copy_from_host(&host, path, &resolve(cx.root, &dest_arg), cx)?
        }
        (None, None) => copy_local(&source_arg, &resolve(cx.root, &dest_arg), cx)?,
    };
    if out.artifacts.is_empty() && out.verification.is_empty() {
        return Err(Error::Argument {
            name: "source",
            message: format!("{source_arg} has no files to copy"),
        });
    }
    Ok(out)
}

/// Refuses a destination folder inside the source folder (`/srv` backed up into
/// `/srv/backups`): each run would take in its own output and every earlier one. Symlinks are
/// resolved; a destination not created yet is judged by its nearest existing folder.
fn refuse_dest_inside(dest_dir: &Path, source: &Path) -> Result<(), Error> {
    let Ok(source) = source.canonicalize() else {
        return Ok(()); // a missing source is reported where it is read
    };
    let existing = dest_dir.ancestors().find_map(|a| {
        let a = if a.as_os_str().is_empty() {
            Path::new(".")
        } else {
            a
        };
        a.canonicalize().ok()
    });
    if existing.is_some_and(|d| d.starts_with(&source)) {
        return Err(Error::Argument {
            name: "dest",
            message: format!(
                "{} is inside the source folder {}: every run would take in its own output and \
                 all earlier ones; choose a destination outside it",
                dest_dir.display(),
                source.display()
            ),
        });
    }
    Ok(())
}

/// Where a copied file goes: its path below the source folder, or its name.
fn relative_to(src: &Path, base: &Path) -> PathBuf {
    src.strip_prefix(base)
        .ok()
        .filter(|r| !r.as_os_str().is_empty())
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from(src.file_name().unwrap_or_default()))
}

/// Writes `data` to `to` through a synced temporary file and returns its size and hash;
/// with `expect`, the file gets its name only when size and hash are those.
fn receive(
    data: impl Read,
    to: &Path,
    expect: Option<&(u64, String)>,
) -> Result<(u64, String), Error> {
    let dir = to.parent().unwrap_or(Path::new(".")).to_path_buf();
    std::fs::create_dir_all(&dir).map_err(io(&dir))?;
    let mut tmp = tempfile::Builder::new()
        .prefix(".sopkit-copy-")
        .tempfile_in(&dir)
        .map_err(io(&dir))?;
    let mut reader = HashingReader {
        inner: data,
        hash: Sha256::new(),
        count: 0,
    };
    std::io::copy(&mut reader, tmp.as_file_mut()).map_err(io(to))?;
    let got = (reader.count, hex(reader.hash.finalize()));
    if let Some(want) = expect
        && *want != got
    {
        return Err(Error::Failed(format!(
            "{}: received {} bytes with sha256 {}; expected {} bytes with sha256 {}",
            to.display(),
            got.0,
            got.1,
            want.0,
            want.1
        )));
    }
    tmp.as_file().sync_all().map_err(io(to))?;
    forget_cached(tmp.as_file());
    tmp.persist(to).map_err(|e| Error::Io {
        path: to.to_path_buf(),
        message: e.to_string(),
    })?;
    Ok(got)
}

/// Drops a synced file's pages from the page cache, so that reading it back checks what the
/// device (a USB disk, a network share) holds rather than what this machine remembers
/// writing. Only advice: where the kernel keeps the pages (tmpfs), the read-back is from
/// memory, as it would be anyway.
fn forget_cached(file: &std::fs::File) {
    use std::os::fd::AsRawFd;
    // SAFETY: integer arguments on a valid open descriptor; no memory is passed.
    unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
}

fn copy_local(source_arg: &str, dest: &Path, cx: &mut Context<'_>) -> Result<Output, Error> {
    let base = resolve(cx.root, source_arg);
    if !cx.earlier.contains_key(source_arg) && base.is_dir() {
        refuse_dest_inside(dest, &base)?;
    }
    std::fs::create_dir_all(dest).map_err(io(dest))?;
    let files = sources(source_arg, cx)?;
    let mut out = Output::default();
    for src in files {
        let to = dest.join(relative_to(&src, &base));
        let f = std::fs::File::open(&src).map_err(io(&src))?;
        let wrote = receive(f, &to, None)?;
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
    Ok(out)
}

/// Sends each file with `cat` over ssh into a temporary name on the host, has the host hash
/// it, and renames it only when size and hash match what was sent.
fn copy_to_host(
    source_arg: &str,
    host: &super::ssh::Host,
    dir: &str,
    cx: &mut Context<'_>,
) -> Result<Output, Error> {
    use super::ssh::quote;
    let remote_err = |e: super::ssh::Error| Error::Failed(e.to_string());
    host.connect().map_err(remote_err)?;
    let files = sources(source_arg, cx)?;
    let base = resolve(cx.root, source_arg);
    let mut out = Output::default();
    for (i, src) in files.iter().enumerate() {
        let rel = relative_to(src, &base).to_string_lossy().into_owned();
        let final_path = format!("{}/{rel}", dir.trim_end_matches('/'));
        let tmp_path = format!(
            "{}/.sopkit-copy-{}-{i}",
            Path::new(&final_path)
                .parent()
                .map_or(String::from("."), |p| p.to_string_lossy().into_owned()),
            std::process::id()
        );
        let (t, f) = (quote(&tmp_path), quote(&final_path));
        let script = format!(
            "umask 077 && mkdir -p \"$(dirname {f})\" && cat > {t} && sync {t} && printf '%s %s\\n' \"$(wc -c < {t})\" \"$(sha256sum < {t} | cut -d' ' -f1)\""
        );
        let label = PathBuf::from(format!("{}:{final_path}", host.name));
        let mut child = host
            .ssh()
            .arg(script)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .map_err(io(&label))?;
        let mut stdin = child.stdin.take().expect("piped");
        let file = std::fs::File::open(src).map_err(io(src))?;
        let mut reader = HashingReader {
            inner: file,
            hash: Sha256::new(),
            count: 0,
        };
        let sent = std::io::copy(&mut reader, &mut stdin);
        drop(stdin);
        let result = child.wait_with_output().map_err(io(&label))?;
        let sent_sum = (reader.count, hex(reader.hash.finalize()));
        let reply = String::from_utf8_lossy(&result.stdout).trim().to_string();
        let theirs = reply
            .split_once(' ')
            .and_then(|(n, h)| Some((n.trim().parse::<u64>().ok()?, h.trim().to_string())));
        let ok = sent.is_ok() && result.status.success() && theirs.as_ref() == Some(&sent_sum);
        if !ok {
            let _ = host.output(&format!("rm -f -- {t}"));
            let why = match (&sent, result.status.success()) {
                (Err(e), _) => format!("sending failed: {e}"),
                (_, false) => format!(
                    "the host failed ({}): {}",
                    result.status,
                    String::from_utf8_lossy(&result.stderr).trim()
                ),
                _ => format!(
                    "it arrived as {reply:?}, not {} bytes with sha256 {}",
                    sent_sum.0, sent_sum.1
                ),
            };
            return Err(Error::Failed(format!(
                "copy of {} to {}: {why}",
                src.display(),
                label.display()
            )));
        }
        host.output(&format!("mv -f -- {t} {f}"))
            .map_err(remote_err)?;
        let _ = writeln!(
            cx.log,
            "copied {} -> {} (sha256 {}, checked on {})",
            src.display(),
            label.display(),
            sent_sum.1,
            host.name
        );
        out.verification.push(format!(
            "ok: {} hashed on {} with sha256 {}",
            label.display(),
            host.name,
            sent_sum.1
        ));
    }
    Ok(out)
}

/// Hashes the files on the host, fetches each with `cat` over ssh into a synced temporary
/// file here, and keeps it only when size and hash match the host's.
fn copy_from_host(
    host: &super::ssh::Host,
    path: &str,
    dest: &Path,
    cx: &mut Context<'_>,
) -> Result<Output, Error> {
    let remote_err = |e: super::ssh::Error| Error::Failed(e.to_string());
    host.connect().map_err(remote_err)?;
    let listed = host.hashes(path).map_err(remote_err)?;
    let is_dir = host
        .output(&format!("test -d {}", super::ssh::quote(path)))
        .is_ok();
    let mut out = Output::default();
    for (rel, size, sha) in listed {
        let remote_file = if is_dir {
            format!("{}/{rel}", path.trim_end_matches('/'))
        } else {
            path.to_string()
        };
        let safe = Path::new(&rel)
            .components()
            .all(|c| matches!(c, std::path::Component::Normal(_)));
        if !safe {
            return Err(Error::Failed(format!(
                "{rel} on {} would land outside {}",
                host.name,
                dest.display()
            )));
        }
        let to = dest.join(&rel);
        let label = PathBuf::from(format!("{}:{remote_file}", host.name));
        let mut child = host
            .ssh()
            .arg(format!("cat -- {}", super::ssh::quote(&remote_file)))
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .map_err(io(&label))?;
        let stdout = child.stdout.take().expect("piped");
        let got = receive(stdout, &to, Some(&(size, sha.clone())));
        let status = child.wait_with_output().map_err(io(&label))?;
        if let Err(e) = got {
            let why = if status.status.success() {
                String::new()
            } else {
                format!(
                    " ({}: {})",
                    status.status,
                    String::from_utf8_lossy(&status.stderr).trim()
                )
            };
            return Err(Error::Failed(format!(
                "copy of {} to {}: {e}{why}",
                label.display(),
                to.display()
            )));
        }
        let _ = writeln!(
            cx.log,
            "copied {} -> {} (sha256 {sha}, hashed on both sides)",
            label.display(),
            to.display()
        );
        out.verification.push(format!(
            "ok: {} matches {} (sha256 {sha})",
            to.display(),
            label.display()
        ));
        out.artifacts.push(to);
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
fn git_mirror(args: &args::GitMirror, cx: &mut Context<'_>) -> Result<Output, Error> {
    let url = match (&args.url, &args.target) {
        (Some(url), _) => expanded(url),
        (None, Some(name)) => {
            let name = expanded(name);
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
    let dest = resolve(cx.root, &expanded(&args.dest));
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
        ..Output::default()
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

/// Refuses to prune `/`, the home folder, or a folder holding the SOP repository: prune
/// deletes whole files and folders, and a `path` one level too high would take everything.
fn refuse_broad_prune(dir: &Path, root: &Path) -> Result<(), Error> {
    let Ok(dir) = dir.canonicalize() else {
        return Ok(()); // a missing folder is reported where it is listed
    };
    let home = std::env::var_os("HOME").and_then(|h| Path::new(&h).canonicalize().ok());
    let what = if dir.parent().is_none() {
        Some("the root folder")
    } else if home.as_deref() == Some(dir.as_path()) {
        Some("the home folder")
    } else if root.canonicalize().is_ok_and(|r| r.starts_with(&dir)) {
        Some("a folder holding the SOP repository")
    } else {
        None
    };
    match what {
        Some(what) => Err(Error::Argument {
            name: "path",
            message: format!(
                "{} is {what}; prune deletes whole files and folders in `path`, so point it at \
                 the folder of backups",
                dir.display()
            ),
        }),
        None => Ok(()),
    }
}

/// What `prune` would do with the items in `path` at time `now` (UTC seconds); nothing is
/// deleted here.
pub fn prune_plan(args: &args::Prune, root: &Path, now: i64) -> Result<Vec<Decision>, Error> {
    let dir = resolve(root, &required(args.path.as_deref(), "path")?);
    refuse_broad_prune(&dir, root)?;
    let retention: crate::duration::Duration =
        expanded(&args.retention)
            .parse()
            .map_err(|e| Error::Argument {
                name: "retention",
                message: format!("{e}"),
            })?;
    let glob = match &args.pattern {
        Some(p) => Some(
            globset::Glob::new(&expanded(p))
                .map_err(|e| Error::Argument {
                    name: "pattern",
                    message: e.to_string(),
                })?
                .compile_matcher(),
        ),
        None => None,
    };
    let mut holds = globset::GlobSetBuilder::new();
    for g in &args.legal_hold {
        holds.add(globset::Glob::new(g).map_err(|e| Error::Argument {
            name: "legal_hold",
            message: e.to_string(),
        })?);
    }
    let holds = holds.build().map_err(|e| Error::Argument {
        name: "legal_hold",
        message: e.to_string(),
    })?;
    let rules = [
        (
            "daily",
            args.keep_daily.unwrap_or(0),
            "[year]-[month]-[day]",
        ),
        (
            "weekly",
            args.keep_weekly.unwrap_or(0),
            "[year]-W[week_number repr:iso]",
        ),
        ("monthly", args.keep_monthly.unwrap_or(0), "[year]-[month]"),
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
fn prune(args: &args::Prune, cx: &mut Context<'_>) -> Result<Output, Error> {
    let now = crate::time::now();
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

    /// The arguments of `action` written as `key: "value"` lines.
    fn args(action: &str, pairs: &[(&str, &str)]) -> Arguments {
        let yaml: String = pairs.iter().map(|(k, v)| format!("{k}: {v:?}\n")).collect();
        Arguments::parse(action, &yaml).unwrap()
    }

    fn prune_args(yaml: &str) -> args::Prune {
        match Arguments::parse("prune", yaml).unwrap() {
            Arguments::Prune(a) => a,
            other => panic!("{other:?}"),
        }
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
        run(&args(action, pairs), &mut cx)
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
        let dir = d.path().to_str().unwrap();
        let a = prune_args(&format!("path: {dir:?}\nretention: 35d\nkeep_monthly: 2\n"));
        let repo = tempfile::tempdir().unwrap();
        let plan = prune_plan(&a, repo.path(), now).unwrap();
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
        let a = prune_args(&format!("path: {dir:?}\nretention: 35d\n"));
        let plan = prune_plan(&a, repo.path(), now).unwrap();
        let deleted = plan.iter().filter(|x| x.keep.is_none()).count();
        assert_eq!(deleted, 4);
    }

    /// How many of the first `len` bytes' pages of `file` are in the page cache.
    fn resident_pages(file: &std::fs::File, len: usize) -> usize {
        use std::os::fd::AsRawFd;
        let pages = len.div_ceil(4096);
        let mut vec = vec![0u8; pages];
        // SAFETY: a read-only shared mapping of `len` bytes of an open file, queried with
        // mincore into a vector of one byte per page, then unmapped; nothing is dereferenced.
        unsafe {
            let p = libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_SHARED,
                file.as_raw_fd(),
                0,
            );
            assert_ne!(p, libc::MAP_FAILED);
            assert_eq!(libc::mincore(p, len, vec.as_mut_ptr()), 0);
            libc::munmap(p, len);
        }
        vec.iter().filter(|&&b| b & 1 == 1).count()
    }

    #[test]
    fn a_received_file_is_read_back_from_the_device_not_the_cache() {
        // Under the package folder: a disk, where /tmp may be memory (tmpfs).
        let d = tempfile::tempdir_in(env!("CARGO_MANIFEST_DIR")).unwrap();
        let to = d.path().join("copy.bin");
        let data = vec![7u8; 1 << 20];
        let got = receive(&data[..], &to, None).unwrap();
        assert_eq!(got.0, 1 << 20);
        let f = std::fs::File::open(&to).unwrap();
        assert_eq!(resident_pages(&f, 1 << 20), 0, "pages still cached");
        // Reading it brings them back: the measure can see cached pages.
        assert_eq!(hash_path(&to).unwrap(), got);
        assert_eq!(resident_pages(&f, 1 << 20), 256);
    }

    #[test]
    fn prune_refuses_the_root_and_any_folder_holding_the_repository() {
        let d = tempfile::tempdir().unwrap();
        let repo = d.path().join("sops");
        std::fs::create_dir_all(repo.join("backups")).unwrap();
        let plan = |path: &Path| {
            let a = prune_args(&format!(
                "path: {:?}\nretention: 1d\n",
                path.to_str().unwrap()
            ));
            prune_plan(&a, &repo, 0)
        };
        for broad in [Path::new("/"), d.path(), repo.as_path(), &repo.join(".")] {
            let e = plan(broad).expect_err("refused").to_string();
            assert!(e.contains("prune deletes whole files and folders"), "{e}");
        }
        assert!(plan(&repo.join("backups")).is_ok());
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
