//! `archive`: a folder (here, or on an ssh host) into a tar + zstd archive and its
//! manifest of per-file SHA-256, in one streaming pass.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::{Context, Error, Output, expand, io, resolve, timestamp};
use super::{pipeline, refuse_dest_inside};
use crate::corpus::step::args;
use crate::fs_atomic::StreamedFile;
use crate::run::stream::{Hashing, HashingReader, hex};
use crate::run::target::ssh;
use serde::{Deserialize, Serialize};

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

// No BufWriter: zstd hands over its output in 32 KiB blocks already, and another
// buffer would copy every compressed byte once more.
type Encoder = zstd::stream::write::Encoder<'static, Hashing<StreamedFile>>;

/// An archive being written: tar + zstd streamed into a temporary file beside its final
/// name, hashing each file as it goes in and the archive as it goes out.
pub(super) struct ArchiveWriter {
    tar: tar::Builder<Encoder>,
    tmp: tempfile::NamedTempFile,
    dest: PathBuf,
    entries: Vec<Entry>,
    files: u64,
    bytes: u64,
}

impl ArchiveWriter {
    pub(super) fn create(dest: PathBuf, level: i32) -> Result<ArchiveWriter, Error> {
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

    pub(super) fn add_symlink(
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
    pub(super) fn add_file(
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
    pub(super) fn finish(self, source: String) -> Result<(PathBuf, PathBuf, Manifest), Error> {
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
pub(super) fn archive(args: &args::Archive, cx: &mut Context<'_>) -> Result<Output, Error> {
    let source_arg = expand(&args.source);
    let dest_arg = resolve(cx.root, &expand(&args.dest));
    // Level 1 compresses text well at disk speed; a policy that wants smaller archives sets
    // `level`.
    let level = args.level.unwrap_or(1);
    let remote = ssh::remote_path(&source_arg, cx.targets);
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
    host: &ssh::Host,
    path: &str,
) -> Result<Vec<String>, Error> {
    let remote_err = |e: ssh::Error| Error::Failed(e.to_string());
    host.connect().map_err(remote_err)?;
    let label = PathBuf::from(format!("{}:{path}", host.name));
    let mut child = host
        .ssh()
        .arg(format!("tar -cf - -C {} .", ssh::quote(path)))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::action::testing::*;

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
}
