//! Threads that let reading, hashing and writing run beside compression on the other core:
//! a file read and hashed ahead of its reader ([`ReadAhead`]), a folder walked, read and
//! hashed ahead of the archive writer ([`TreeReader`]), and restored files written behind
//! the verifier ([`WriteBehind`]). Each hands 1 MiB chunks over a bounded channel (memory
//! stays constant) and gets the used buffers back to fill again. Hand-written: a bounded
//! channel between two threads is all each of them takes.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;

use sha2::{Digest, Sha256};

use crate::run::stream::{CHUNK, fill, hex};

/// Chunks in flight between two threads (besides the one each side holds). Two left the
/// threads waiting on each other on a busy 2-core machine; six kept both cores fuller
/// (verify of 1 GiB: 1.41 -> 1.34 s, archive 2.58 -> 2.44 s; 6 MiB more per channel).
const DEPTH: usize = 6;

/// Buffers going back to the thread that fills them.
#[derive(Clone)]
struct Spare(SyncSender<Vec<u8>>);

impl Spare {
    fn give(&self, buf: Vec<u8>) {
        if buf.capacity() >= CHUNK {
            let _ = self.0.try_send(buf); // a full pool drops the buffer
        }
    }
}

/// A buffer with room for `CHUNK` bytes, a used one when there is one: its length is what
/// its last user left, so [`fill`] it (which keeps its bytes initialised) or clear it.
fn take(pool: &Receiver<Vec<u8>>) -> Vec<u8> {
    pool.try_recv()
        .unwrap_or_else(|_| Vec::with_capacity(CHUNK))
}

/// Reads `file` to its end in chunks (buffers from `pool`), hashing each before `send` hands
/// it over; `send` answers false when the consumer is gone, and then `None` is returned.
fn read_hashed(
    file: &mut std::fs::File,
    pool: &Receiver<Vec<u8>>,
    mut send: impl FnMut(Vec<u8>) -> bool,
) -> std::io::Result<Option<(Sha256, u64)>> {
    let (mut hash, mut size) = (Sha256::new(), 0u64);
    // Once the length the file had when it was opened is read, a one-byte read finds its
    // end, rather than a chunk taken from the pool (and grown, zeroing 1 MiB) for nothing.
    let mut expected = file.metadata()?.len();
    loop {
        if size >= expected {
            let mut probe = [0u8; 1];
            let k = loop {
                match file.read(&mut probe) {
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    r => break r?,
                }
            };
            if k == 0 {
                return Ok(Some((hash, size)));
            }
            // The file grew since: the rest is read in chunks, as much as there is.
            hash.update(&probe[..k]);
            size += k as u64;
            if !send(probe[..k].to_vec()) {
                return Ok(None);
            }
            expected = u64::MAX;
            continue;
        }
        let mut buf = take(pool);
        let n = fill(file, &mut buf)?;
        if n == 0 {
            return Ok(Some((hash, size)));
        }
        hash.update(&buf);
        size += n as u64;
        if !send(buf) {
            return Ok(None);
        }
    }
}

/// A file read and hashed on its own thread; its consumer (decompression, say) and SHA-256
/// of the file use two cores.
pub(crate) struct ReadAhead {
    chunks: Receiver<std::io::Result<Vec<u8>>>,
    spare: Spare,
    current: Vec<u8>,
    pos: usize,
    reader: Option<JoinHandle<(Sha256, u64)>>,
}

impl ReadAhead {
    pub(crate) fn open(path: &Path) -> std::io::Result<ReadAhead> {
        let mut file = std::fs::File::open(path)?;
        let (tx, chunks) = sync_channel(DEPTH);
        let (spare, pool) = sync_channel(DEPTH + 2);
        let reader = std::thread::spawn(move || {
            match read_hashed(&mut file, &pool, |chunk| tx.send(Ok(chunk)).is_ok()) {
                Ok(Some(done)) => done,
                Ok(None) => (Sha256::new(), 0), // the consumer is gone
                Err(e) => {
                    let _ = tx.send(Err(e));
                    (Sha256::new(), 0)
                }
            }
        });
        Ok(ReadAhead {
            chunks,
            spare: Spare(spare),
            current: Vec::new(),
            pos: 0,
            reader: Some(reader),
        })
    }

    /// Reads the rest of the file and returns its SHA-256 (hex) and size.
    pub(crate) fn finish(mut self) -> std::io::Result<(String, u64)> {
        std::io::copy(&mut self, &mut std::io::sink())?;
        let (hash, count) = self
            .reader
            .take()
            .expect("joined once")
            .join()
            .map_err(|_| std::io::Error::other("the reading thread stopped unexpectedly"))?;
        Ok((hex(hash.finalize()), count))
    }
}

impl std::io::BufRead for ReadAhead {
    fn fill_buf(&mut self) -> std::io::Result<&[u8]> {
        if self.pos == self.current.len() {
            match self.chunks.recv() {
                Ok(chunk) => {
                    let used = std::mem::replace(&mut self.current, chunk?);
                    self.spare.give(used);
                    self.pos = 0;
                }
                Err(_) => return Ok(&[]), // the reader finished: end of file
            }
        }
        Ok(&self.current[self.pos..])
    }

    fn consume(&mut self, n: usize) {
        self.pos = (self.pos + n).min(self.current.len());
    }
}

impl Read for ReadAhead {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        read_buffered(self, out)
    }
}

/// `Read::read` for a reader whose chunks `BufRead` already holds.
fn read_buffered(from: &mut impl std::io::BufRead, out: &mut [u8]) -> std::io::Result<usize> {
    let available = from.fill_buf()?;
    let n = out.len().min(available.len());
    out[..n].copy_from_slice(&available[..n]);
    from.consume(n);
    Ok(n)
}

/// What [`TreeReader`] hands over, in walk order (sorted by name, parents first).
pub(crate) enum Walked {
    /// An entry below the folder: its path, its path relative to the folder, its metadata
    /// (not following symlinks). A file's bytes follow as chunks and an `End`.
    Entry {
        path: PathBuf,
        rel: String,
        meta: std::fs::Metadata,
    },
    Chunk(Vec<u8>),
    /// The end of the file announced last: the size read and its SHA-256 (hex).
    End {
        size: u64,
        sha256: String,
    },
    /// Reading stopped here: the path and what went wrong.
    Failed {
        path: PathBuf,
        message: String,
    },
}

/// A folder walked, its files read and hashed on their own thread.
pub(crate) struct TreeReader {
    items: Receiver<Walked>,
    spare: Spare,
    walker: Option<JoinHandle<()>>,
}

impl TreeReader {
    pub(crate) fn spawn(source: &Path) -> TreeReader {
        let source = source.to_path_buf();
        let (tx, items) = sync_channel(DEPTH);
        let (spare, pool) = sync_channel(DEPTH + 2);
        let walker = std::thread::spawn(move || {
            let failed = |path: &Path, message: String| Walked::Failed {
                path: path.to_path_buf(),
                message,
            };
            let walker = walkdir::WalkDir::new(&source)
                .follow_links(false)
                .sort_by_file_name()
                .min_depth(1);
            for e in walker {
                let e = match e {
                    Ok(e) => e,
                    Err(e) => {
                        let _ = tx.send(failed(&source, e.to_string()));
                        return;
                    }
                };
                let path = e.path().to_path_buf();
                let meta = match path.symlink_metadata() {
                    Ok(m) => m,
                    Err(e) => {
                        let _ = tx.send(failed(&path, e.to_string()));
                        return;
                    }
                };
                let rel = path
                    .strip_prefix(&source)
                    .unwrap_or(&path)
                    .to_string_lossy()
                    .replace('\\', "/");
                let is_file = meta.is_file();
                let entry = Walked::Entry {
                    path: path.clone(),
                    rel,
                    meta,
                };
                if tx.send(entry).is_err() {
                    return; // the archive writer stopped
                }
                if !is_file {
                    continue;
                }
                let mut file = match std::fs::File::open(&path) {
                    Ok(f) => f,
                    Err(e) => {
                        let _ = tx.send(failed(&path, e.to_string()));
                        return;
                    }
                };
                match read_hashed(&mut file, &pool, |c| tx.send(Walked::Chunk(c)).is_ok()) {
                    Ok(Some((hash, size))) => {
                        let sha256 = hex(hash.finalize());
                        if tx.send(Walked::End { size, sha256 }).is_err() {
                            return;
                        }
                    }
                    Ok(None) => return, // the archive writer stopped
                    Err(e) => {
                        let _ = tx.send(failed(&path, e.to_string()));
                        return;
                    }
                }
            }
        });
        TreeReader {
            items,
            spare: Spare(spare),
            walker: Some(walker),
        }
    }

    /// The next entry, chunk or end; `None` when the walk is over.
    pub(crate) fn next(&self) -> Option<Walked> {
        self.items.recv().ok()
    }

    /// A reader of the current file's chunks, up to its `End`.
    pub(crate) fn file(&mut self) -> FileChunks<'_> {
        FileChunks {
            tree: self,
            current: Vec::new(),
            pos: 0,
            end: None,
        }
    }
}

impl Drop for TreeReader {
    fn drop(&mut self) {
        // Unblock the walker (its sends fail once the receiver is gone), then wait for it.
        let (_, closed) = sync_channel(0);
        drop(std::mem::replace(&mut self.items, closed));
        if let Some(w) = self.walker.take() {
            let _ = w.join();
        }
    }
}

/// The bytes of the file [`TreeReader`] announced last; at its end, its size and hash.
pub(crate) struct FileChunks<'a> {
    tree: &'a mut TreeReader,
    current: Vec<u8>,
    pos: usize,
    end: Option<(u64, String)>,
}

impl FileChunks<'_> {
    /// The size and SHA-256 of the file as it was read, once it has been read to its end.
    pub(crate) fn digest(mut self) -> std::io::Result<(u64, String)> {
        self.end
            .take()
            .ok_or_else(|| std::io::Error::other("the file was not read to its end"))
    }
}

impl Drop for FileChunks<'_> {
    fn drop(&mut self) {
        self.tree.spare.give(std::mem::take(&mut self.current));
    }
}

impl std::io::BufRead for FileChunks<'_> {
    fn fill_buf(&mut self) -> std::io::Result<&[u8]> {
        while self.pos == self.current.len() {
            if self.end.is_some() {
                return Ok(&[]);
            }
            match self.tree.next() {
                Some(Walked::Chunk(c)) => {
                    let used = std::mem::replace(&mut self.current, c);
                    self.tree.spare.give(used);
                    self.pos = 0;
                }
                Some(Walked::End { size, sha256 }) => self.end = Some((size, sha256)),
                Some(Walked::Failed { path, message }) => {
                    return Err(std::io::Error::other(format!(
                        "{}: {message}",
                        path.display()
                    )));
                }
                Some(Walked::Entry { .. }) | None => {
                    return Err(std::io::Error::other("the folder reader stopped mid-file"));
                }
            }
        }
        Ok(&self.current[self.pos..])
    }

    fn consume(&mut self, n: usize) {
        self.pos = (self.pos + n).min(self.current.len());
    }
}

impl Read for FileChunks<'_> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        read_buffered(self, out)
    }
}

enum Restore {
    Create(PathBuf),
    Chunk(Vec<u8>),
}

/// Restored files hashed and written on their own thread, behind the thread that
/// decompresses them (SHA-256 of every file is the larger half of a verify's work); each is
/// removed once written in full. [`WriteBehind::finish`] returns each file's size and hash
/// in the order the files were created, and the writes that failed.
pub(crate) struct WriteBehind {
    tx: Option<SyncSender<Restore>>,
    pool: Receiver<Vec<u8>>,
    writer: Option<JoinHandle<Restored>>,
}

/// What the restoring thread did.
#[derive(Debug, Default)]
pub(crate) struct Restored {
    /// Size and SHA-256 of each file, in the order they were created.
    pub files: Vec<(u64, String)>,
    pub failures: Vec<String>,
}

impl WriteBehind {
    pub(crate) fn spawn() -> WriteBehind {
        let (tx, rx) = sync_channel::<Restore>(DEPTH);
        let (spare, pool) = sync_channel(DEPTH + 2);
        let spare = Spare(spare);
        let writer = std::thread::spawn(move || {
            use std::io::Write;
            let mut out = Restored::default();
            let mut current: Option<(PathBuf, std::fs::File)> = None;
            let mut digest: Option<(Sha256, u64)> = None;
            // A file written in full has been restored; it is removed then, so that a verify
            // needs free space for its largest file, not for the whole tree, and the clean-up
            // runs beside the decompression instead of after it.
            let done = |current: Option<(PathBuf, std::fs::File)>,
                        digest: Option<(Sha256, u64)>,
                        out: &mut Restored| {
                if let Some((hash, size)) = digest {
                    out.files.push((size, hex(hash.finalize())));
                }
                if let Some((path, file)) = current {
                    drop(file);
                    let _ = std::fs::remove_file(path); // else the temporary folder's removal
                }
            };
            for msg in rx {
                match msg {
                    Restore::Create(path) => {
                        done(current.take(), digest.take(), &mut out);
                        digest = Some((Sha256::new(), 0));
                        current = match std::fs::File::create(&path) {
                            Ok(f) => Some((path, f)),
                            Err(e) => {
                                let message = format!("FAILED: restoring {}: {e}", path.display());
                                out.failures.push(message);
                                None
                            }
                        }
                    }
                    Restore::Chunk(buf) => {
                        if let Some((hash, size)) = &mut digest {
                            hash.update(&buf);
                            *size += buf.len() as u64;
                        }
                        if let Some((path, f)) = &mut current
                            && let Err(e) = f.write_all(&buf)
                        {
                            let message = format!("FAILED: restoring {}: {e}", path.display());
                            out.failures.push(message);
                            current = None;
                        }
                        spare.give(buf);
                    }
                }
            }
            done(current, digest, &mut out);
            out
        });
        WriteBehind {
            tx: Some(tx),
            pool,
            writer: Some(writer),
        }
    }

    /// A buffer to [`fill`] and hand to [`WriteBehind::write`] (see [`take`]).
    pub(crate) fn buffer(&self) -> Vec<u8> {
        take(&self.pool)
    }

    fn send(&self, msg: Restore) {
        if let Some(tx) = &self.tx {
            let _ = tx.send(msg); // a writer that stopped has its reason in `finish`
        }
    }

    /// Starts hashing and writing a new file at `path` (its folder exists).
    pub(crate) fn create(&self, path: PathBuf) {
        self.send(Restore::Create(path));
    }

    /// Appends `chunk` to the file created last.
    pub(crate) fn write(&self, chunk: Vec<u8>) {
        self.send(Restore::Chunk(chunk));
    }

    /// Waits for every write; returns the files' sizes and hashes and the failed writes.
    pub(crate) fn finish(mut self) -> Restored {
        self.tx.take();
        match self.writer.take().map(JoinHandle::join) {
            Some(Ok(restored)) => restored,
            _ => Restored {
                files: Vec::new(),
                failures: vec!["FAILED: the restoring thread stopped unexpectedly".into()],
            },
        }
    }
}

impl Drop for WriteBehind {
    fn drop(&mut self) {
        self.tx.take();
        if let Some(w) = self.writer.take() {
            let _ = w.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tree_is_read_in_order_with_every_file_hashed() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("b")).unwrap();
        let big: Vec<u8> = (0..(CHUNK * 2 + 7)).map(|i| (i % 251) as u8).collect();
        std::fs::write(dir.path().join("b/big"), &big).unwrap();
        std::fs::write(dir.path().join("a"), b"hello").unwrap();
        let mut tree = TreeReader::spawn(dir.path());
        let mut seen = Vec::new();
        while let Some(item) = tree.next() {
            let Walked::Entry { rel, meta, .. } = item else {
                panic!("an entry was expected");
            };
            if meta.is_file() {
                let mut chunks = tree.file();
                let mut data = Vec::new();
                chunks.read_to_end(&mut data).unwrap();
                let (size, sha) = chunks.digest().unwrap();
                assert_eq!(size, data.len() as u64);
                assert_eq!(sha, hex(Sha256::digest(&data)));
                seen.push((rel, data.len()));
            } else {
                seen.push((rel, 0));
            }
        }
        let want = [("a", 5), ("b", 0), ("b/big", big.len())];
        let want: Vec<(String, usize)> = want.iter().map(|(p, n)| (p.to_string(), *n)).collect();
        assert_eq!(seen, want);
    }

    /// Reads `path` with [`read_hashed`]; `change` runs on the file after the first chunk.
    fn read_changing(path: &Path, change: impl Fn(&Path)) -> (Vec<u8>, u64, String) {
        let mut file = std::fs::File::open(path).unwrap();
        let (_spare, pool) = sync_channel(DEPTH + 2);
        let mut got = Vec::new();
        let (hash, size) = read_hashed(&mut file, &pool, |chunk| {
            if got.is_empty() {
                change(path);
            }
            got.extend_from_slice(&chunk);
            true
        })
        .unwrap()
        .expect("read to the end");
        (got, size, hex(hash.finalize()))
    }

    #[test]
    fn a_file_that_grows_or_shrinks_while_read_is_read_to_its_new_end() {
        use std::io::Write;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let data: Vec<u8> = (0..CHUNK).map(|i| (i % 7) as u8).collect();
        // Exactly one chunk long when opened: the end probe finds the bytes added since.
        std::fs::write(&path, &data).unwrap();
        let append = |p: &Path| {
            let mut f = std::fs::OpenOptions::new().append(true).open(p).unwrap();
            f.write_all(b"xyz").unwrap();
        };
        let (got, size, sha) = read_changing(&path, append);
        let mut want = data.clone();
        want.extend_from_slice(b"xyz");
        assert!(
            got == want,
            "read {} bytes, {} expected",
            got.len(),
            want.len()
        );
        assert_eq!(size, want.len() as u64);
        assert_eq!(sha, hex(Sha256::digest(&want)));
        // Cut short after the first chunk: what is left is what is read.
        std::fs::write(&path, [&data[..], b"tail"].concat()).unwrap();
        let cut = |p: &Path| {
            let f = std::fs::OpenOptions::new().write(true).open(p).unwrap();
            f.set_len(CHUNK as u64).unwrap();
        };
        let (got, size, sha) = read_changing(&path, cut);
        assert!(got == data, "read {} bytes, {CHUNK} expected", got.len());
        assert_eq!(size, CHUNK as u64);
        assert_eq!(sha, hex(Sha256::digest(&data)));
    }

    #[test]
    fn restored_files_are_hashed_written_then_removed_and_failed_writes_are_reported() {
        let dir = tempfile::tempdir().unwrap();
        let chunk = |w: &WriteBehind, part: &[u8]| {
            let mut buf = w.buffer();
            buf.clear();
            buf.extend_from_slice(part);
            w.write(buf);
        };
        // `one` is a link to `kept`: its content outlives the removal of `one`.
        std::os::unix::fs::symlink(dir.path().join("kept"), dir.path().join("one")).unwrap();
        // `full` is a link to /dev/full: every write to it fails with ENOSPC.
        std::os::unix::fs::symlink("/dev/full", dir.path().join("full")).unwrap();
        let w = WriteBehind::spawn();
        w.create(dir.path().join("one"));
        chunk(&w, b"abc");
        chunk(&w, b"def");
        w.create(dir.path().join("missing-folder/two"));
        chunk(&w, b"x");
        w.create(dir.path().join("full"));
        chunk(&w, b"y");
        w.create(dir.path().join("three"));
        chunk(&w, b"ghi");
        let Restored { files, failures } = w.finish();
        assert_eq!(std::fs::read(dir.path().join("kept")).unwrap(), b"abcdef");
        // Every file is hashed, whether or not it could be written.
        let digest = |data: &[u8]| (data.len() as u64, hex(Sha256::digest(data)));
        let want = [
            digest(b"abcdef"),
            digest(b"x"),
            digest(b"y"),
            digest(b"ghi"),
        ];
        assert_eq!(files, want);
        assert!(
            !dir.path().join("one").exists(),
            "written files are removed"
        );
        assert!(!dir.path().join("three").exists(), "the last one too");
        assert_eq!(failures.len(), 2, "{failures:?}");
        assert!(failures[0].contains("missing-folder/two"), "{failures:?}");
        assert!(failures[1].contains("No space left"), "{failures:?}");
    }

    #[test]
    fn read_ahead_hashes_the_whole_file() {
        let dir = tempfile::tempdir().unwrap();
        let data: Vec<u8> = (0..(CHUNK * 3 + 1)).map(|i| (i % 13) as u8).collect();
        let path = dir.path().join("f");
        std::fs::write(&path, &data).unwrap();
        let mut r = ReadAhead::open(&path).unwrap();
        let mut head = vec![0u8; 10];
        r.read_exact(&mut head).unwrap();
        assert_eq!(head, &data[..10]);
        let (sha, size) = r.finish().unwrap();
        assert_eq!(size, data.len() as u64);
        assert_eq!(sha, hex(Sha256::digest(&data)));
    }
}
