//! A step's captured output as its evidence log keeps it: all of it up to a limit, and past
//! the limit its beginning and its end around a line that says how much was left out. The
//! operator still sees every byte as it streams; the record gives the whole stream's size and
//! SHA-256. A step that prints gigabytes would otherwise put them into the repository (git
//! forges refuse files over 100 MB).

use std::io::Write;

use sha2::{Digest, Sha256};

/// Bytes kept from the start of a stream, and again from its end.
pub const KEEP: usize = 8 << 20;

/// What went through a [`CappedLog`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Captured {
    /// Size and SHA-256 of the whole stream (as redacted).
    pub size: u64,
    pub sha256: String,
    /// Bytes not in the log.
    pub omitted: u64,
}

/// A log written through up to `keep` bytes, then holding the stream's last `keep` bytes.
pub struct CappedLog<W: Write> {
    out: W,
    keep: usize,
    seen: u64,
    hash: Sha256,
    /// The last `keep` bytes once the head is full: a ring whose oldest byte is at `at`.
    tail: Vec<u8>,
    at: usize,
}

impl<W: Write> CappedLog<W> {
    pub fn new(out: W) -> CappedLog<W> {
        CappedLog::with_keep(out, KEEP)
    }

    pub fn with_keep(out: W, keep: usize) -> CappedLog<W> {
        CappedLog {
            out,
            keep,
            seen: 0,
            hash: Sha256::new(),
            tail: Vec::new(),
            at: 0,
        }
    }

    /// Writes the kept head straight through; beyond it, keeps the most recent bytes.
    pub fn push(&mut self, mut data: &[u8]) -> std::io::Result<()> {
        self.hash.update(data);
        let written = self.seen.min(self.keep as u64) as usize;
        self.seen += data.len() as u64;
        if written < self.keep {
            let n = data.len().min(self.keep - written);
            self.out.write_all(&data[..n])?;
            data = &data[n..];
        }
        if data.is_empty() {
            return Ok(());
        }
        if self.tail.len() < self.keep {
            let n = data.len().min(self.keep - self.tail.len());
            self.tail.extend_from_slice(&data[..n]);
            data = &data[n..];
        }
        // The ring is full: the newest bytes overwrite the oldest.
        if data.len() >= self.keep {
            data = &data[data.len() - self.keep..];
        }
        while !data.is_empty() {
            let n = data.len().min(self.keep - self.at);
            self.tail[self.at..self.at + n].copy_from_slice(&data[..n]);
            self.at = (self.at + n) % self.keep;
            data = &data[n..];
        }
        Ok(())
    }

    /// Writes what is kept of the end and returns the writer and what the stream was.
    pub fn finish(mut self) -> std::io::Result<(W, Captured)> {
        let kept = self.seen.min(self.keep as u64) + self.tail.len() as u64;
        let omitted = self.seen - kept;
        if omitted > 0 {
            write!(
                self.out,
                "\n[sopkit: {omitted} bytes of this output are not kept here; the evidence record \
                 gives the whole stream's size and SHA-256]\n"
            )?;
        }
        let (newer, older) = self.tail.split_at(self.at);
        self.out.write_all(older)?;
        self.out.write_all(newer)?;
        let captured = Captured {
            size: self.seen,
            sha256: hex::encode(self.hash.finalize()),
            omitted,
        };
        Ok((self.out, captured))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn capture(stream: &[u8], keep: usize, pieces: usize) -> (Vec<u8>, Captured) {
        let mut log = CappedLog::with_keep(Vec::new(), keep);
        for part in stream.chunks(pieces.max(1)) {
            log.push(part).unwrap();
        }
        log.finish().unwrap()
    }

    #[test]
    fn a_short_stream_is_kept_whole() {
        let stream = b"hello\nworld\n";
        let (log, c) = capture(stream, 8, 3);
        assert_eq!(log, stream);
        assert_eq!(c.omitted, 0);
        assert_eq!(c.size, 12);
        assert_eq!(c.sha256, hex::encode(Sha256::digest(stream)));
    }

    #[test]
    fn a_long_stream_keeps_its_head_and_tail_whatever_the_pieces() {
        let stream: Vec<u8> = (0..1000u32).map(|i| (i % 251) as u8).collect();
        for pieces in [1, 7, 64, 100, 999, 1000] {
            let (log, c) = capture(&stream, 100, pieces);
            assert_eq!(&log[..100], &stream[..100], "head, pieces of {pieces}");
            assert_eq!(
                &log[log.len() - 100..],
                &stream[900..],
                "tail, pieces of {pieces}"
            );
            assert_eq!(c.omitted, 800);
            assert_eq!(c.size, 1000);
            assert_eq!(c.sha256, hex::encode(Sha256::digest(&stream)));
            let middle = String::from_utf8_lossy(&log[100..log.len() - 100]).into_owned();
            assert!(middle.contains("800 bytes"), "{middle}");
        }
        // Just over the head: the rest is all tail, nothing is left out.
        let (log, c) = capture(&stream[..150], 100, 10);
        assert_eq!(log, &stream[..150]);
        assert_eq!(c.omitted, 0);
    }
}
