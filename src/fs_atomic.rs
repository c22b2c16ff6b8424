//! Writing files so that a reader never sees half of one: a temporary file in the same
//! folder, flushed to disk, then renamed over the destination; and [`StreamedFile`], for a
//! large temporary file whose pages go to the disk while it is still being written.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// Writes `bytes` to `path` atomically. The file gets the permissions of the file it replaces
/// or, when new, those of any file a program creates (0666 less the umask), not the 0600 of
/// a temporary file: a rendered PDF or an evidence record is read by others too.
pub fn write(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    if !dir.is_dir() {
        // Said plainly: tempfile's own error names the temporary file it could not create.
        return Err(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!("the folder {} does not exist", dir.display()),
        ));
    }
    let mut tmp = tempfile::Builder::new()
        .permissions(std::fs::Permissions::from_mode(0o666))
        .tempfile_in(dir)?;
    if let Ok(old) = std::fs::metadata(path) {
        tmp.as_file().set_permissions(old.permissions())?;
    }
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// [`write`] without flushing to the disk: a reader still sees the old file or the new one,
/// but after a crash the new one may be empty or torn. Only for files that check themselves
/// (a cache with a digest).
pub fn write_unsynced(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty());
    let mut tmp = tempfile::NamedTempFile::new_in(dir.unwrap_or(Path::new(".")))?;
    tmp.write_all(bytes)?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

/// A file written from start to end whose pages are handed to the disk as it grows (every
/// 32 MiB, with `sync_file_range`), so that the `fsync` ending it has little left to wait for
/// and the disk works while the writer computes.
pub struct StreamedFile {
    file: std::fs::File,
    written: u64,
    started: u64,
}

impl StreamedFile {
    const STEP: u64 = 32 << 20;

    pub fn new(file: std::fs::File) -> StreamedFile {
        StreamedFile {
            file,
            written: 0,
            started: 0,
        }
    }

    pub fn into_inner(self) -> std::fs::File {
        self.file
    }
}

impl Write for StreamedFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.file.write(buf)?;
        self.written += n as u64;
        if self.written - self.started >= Self::STEP {
            use std::os::fd::AsRawFd;
            // Only a hint: the final fsync still decides, so its result is not needed here.
            // SAFETY: a valid open descriptor and a range of it; no memory is passed. (Neither
            // std nor rustix wraps sync_file_range.)
            unsafe {
                libc::sync_file_range(
                    self.file.as_raw_fd(),
                    self.started as libc::off64_t,
                    (self.written - self.started) as libc::off64_t,
                    libc::SYNC_FILE_RANGE_WRITE,
                )
            };
            self.started = self.written;
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn a_new_file_follows_the_umask_and_a_replaced_one_keeps_its_mode() {
        let dir = tempfile::tempdir().unwrap();
        // Read without setting it: other tests create files meanwhile.
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let umask = status
            .lines()
            .find_map(|l| l.strip_prefix("Umask:"))
            .map(|v| u32::from_str_radix(v.trim(), 8).unwrap())
            .expect("Linux reports the umask");
        let new = dir.path().join("new.pdf");
        write(&new, b"one").unwrap();
        assert_eq!(mode(&new), 0o666 & !umask);
        assert_eq!(std::fs::read(&new).unwrap(), b"one");

        std::fs::set_permissions(&new, std::fs::Permissions::from_mode(0o640)).unwrap();
        write(&new, b"two").unwrap();
        assert_eq!(mode(&new), 0o640);
        assert_eq!(std::fs::read(&new).unwrap(), b"two");
        // Nothing is left beside it.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        let e = write(&dir.path().join("no/such.pdf"), b"x").unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::NotFound);
        assert!(e.to_string().ends_with("no does not exist"), "{e}");
    }

    #[test]
    fn a_streamed_file_has_every_byte() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let mut w = StreamedFile::new(std::fs::File::create(&path).unwrap());
        let block: Vec<u8> = (0..1_000_003u32).map(|i| (i % 241) as u8).collect();
        for _ in 0..70 {
            w.write_all(&block).unwrap();
        }
        w.into_inner().sync_all().unwrap();
        let back = std::fs::read(&path).unwrap();
        assert_eq!(back.len(), block.len() * 70);
        assert!(back.chunks(block.len()).all(|c| c == block.as_slice()));
    }
}
