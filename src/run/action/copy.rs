//! `copy`: files to a folder here or on an ssh host, each read back (or hashed on the host)
//! before it counts.

use std::io::Read;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::refuse_dest_inside;
use super::{Context, Error, Output, expand, io, resolve, sources};
use crate::corpus::step::args;
use crate::run::stream::{HashingReader, hash_path, hex};
use crate::run::target::ssh;

/// `copy`: `source` (a file, a folder, or an earlier step's artifacts) → `dest` (a folder,
/// e.g. an off-site or offline mount). Each file is hashed while it is read, written under a
/// temporary name, synced, dropped from the page cache and renamed, then read back from the
/// destination and hashed again; any difference fails. Either side may be `TARGET:/path` on
/// an ssh target: the file then travels over ssh and is hashed on the host with `sha256sum`
/// before it gets its name.
pub(super) fn copy(args: &args::Copy, cx: &mut Context<'_>) -> Result<Output, Error> {
    let source_arg = expand(&args.source);
    let dest_arg = expand(&args.dest);
    let from = ssh::remote_path(&source_arg, cx.targets);
    let to = ssh::remote_path(&dest_arg, cx.targets);
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
    let _ = rustix::fs::fadvise(file, 0, None, rustix::fs::Advice::DontNeed);
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
    host: &ssh::Host,
    dir: &str,
    cx: &mut Context<'_>,
) -> Result<Output, Error> {
    use ssh::quote;
    let remote_err = |e: ssh::Error| Error::Failed(e.to_string());
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
    host: &ssh::Host,
    path: &str,
    dest: &Path,
    cx: &mut Context<'_>,
) -> Result<Output, Error> {
    let remote_err = |e: ssh::Error| Error::Failed(e.to_string());
    host.connect().map_err(remote_err)?;
    let listed = host.hashes(path).map_err(remote_err)?;
    let is_dir = host
        .output(&format!("test -d {}", ssh::quote(path)))
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
            .arg(format!("cat -- {}", ssh::quote(&remote_file)))
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

#[cfg(test)]
mod tests {
    use super::*;

    /// How many of the first `len` bytes' pages of `file` are in the page cache.
    fn resident_pages(file: &std::fs::File, len: usize) -> usize {
        use std::os::fd::AsRawFd;
        let pages = len.div_ceil(4096);
        let mut vec = vec![0u8; pages];
        // SAFETY: no safe equivalent (neither std nor rustix offers mincore): a read-only
        // shared mapping of `len` bytes of an open file, queried with mincore into a vector of
        // one byte per page, then unmapped; nothing is dereferenced.
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
}
