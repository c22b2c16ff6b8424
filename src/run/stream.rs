//! What the built-in actions and the targets below them share, so that neither imports the
//! other: the error an action ends with, readers and writers that hash and count what
//! passes through them, and 1 MiB copies over widened pipes to and from the tools a target
//! is driven with.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

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

/// A writer that hashes and counts what passes through it.
pub(crate) struct Hashing<W> {
    pub(crate) inner: W,
    pub(crate) hash: Sha256,
    pub(crate) count: u64,
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

/// The size of the chunks handed between threads.
pub(crate) const CHUNK: usize = 1 << 20;

/// Fills `buf` with up to `CHUNK` bytes; fewer only at the end of `from`. A recycled buffer
/// is filled in place (`read_to_end` would zero its spare capacity on every call).
pub(crate) fn fill(from: &mut impl Read, buf: &mut Vec<u8>) -> std::io::Result<usize> {
    buf.resize(CHUNK, 0);
    let mut n = 0;
    while n < CHUNK {
        match from.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => {
                buf.clear();
                return Err(e);
            }
        }
    }
    buf.truncate(n);
    Ok(n)
}

/// Copies `from` to `to` in chunks of `CHUNK` bytes (`std::io::copy` moves 8 KiB at a time
/// between a pipe and a writer that hashes and compresses).
pub(crate) fn copy_chunks(
    from: &mut impl Read,
    to: &mut impl std::io::Write,
) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(CHUNK);
    while fill(from, &mut buf)? > 0 {
        to.write_all(&buf)?;
    }
    Ok(())
}

/// Asks for a 1 MiB pipe buffer (Linux allows it to any process by default): the tool at
/// the other end and this process then hand over fewer, larger pieces. Only a hint.
pub(crate) fn widen_pipe(pipe: &impl std::os::fd::AsFd) {
    let _ = rustix::pipe::fcntl_setpipe_size(pipe, CHUNK);
}
