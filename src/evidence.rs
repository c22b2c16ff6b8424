//! The evidence ledger: one chain of records per writer (operator@host) under `evidence/`,
//! so that engineers on several machines merge their evidence through git without
//! conflicts. Each record names the SHA-256 of the previous record file of its writer and
//! carries a digest of its own canonical bytes; the logs it references are hashed in it.
//! `verify` finds any changed byte, any deleted, added or reordered record, and any file it
//! cannot account for.
//!
//! Layout: `evidence/<writer>/<seq>.json` (six digits), logs `evidence/<writer>/<run>.<stream>.log`,
//! `evidence/<writer>/.lock` (serialises appends), `evidence/<writer>/.tmp-<run>/` (the logs
//! of a step that is still running, or of one that was killed).

pub mod committed;
pub mod export;
pub mod log;
pub mod repository;
pub mod signed;
pub mod stamp;
pub mod verify;

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The record format this sopkit writes.
pub const FORMAT: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: not a sopkit evidence record: {message}")]
    Record { path: PathBuf, message: String },
    #[error("{path} was not written: the record {message}")]
    NotAttributable { path: PathBuf, message: String },
    #[error(
        "sopkit.toml: [paths] evidence = \"{rel}\" {why}; the evidence folder must lie inside the repository"
    )]
    OutsideRepository { rel: String, why: String },
}

/// The evidence folder `rel` (from `[paths] evidence`) under `root`. Refused when it could
/// lead outside the repository: an absolute path, `..` past the root, or a symbolic link (the
/// folder itself or one on the way to it) that resolves elsewhere, since records, logs and the
/// files of later steps are written there.
pub fn folder(root: &Path, rel: &str) -> Result<PathBuf, Error> {
    let outside = |why: &str| Error::OutsideRepository {
        rel: rel.to_string(),
        why: why.to_string(),
    };
    if Path::new(rel).is_absolute() {
        return Err(outside("is an absolute path"));
    }
    let Some(clean) = crate::tree::normalize(rel).filter(|c| !c.is_empty()) else {
        return Err(outside(
            "leaves the repository with `..` (or names its root)",
        ));
    };
    let root_real = root.canonicalize().map_err(io(root))?;
    // The deepest part of the path that exists must resolve inside the repository.
    let mut probe = root.join(&clean);
    loop {
        match probe.canonicalize() {
            Ok(real) if real.starts_with(&root_real) && real != root_real => break,
            Ok(_) if probe.as_path() == root => break,
            Ok(real) => {
                return Err(outside(&format!(
                    "resolves to {}, through a symbolic link",
                    real.display()
                )));
            }
            Err(_) => match probe.parent() {
                Some(p) if p.starts_with(root) => probe = p.to_path_buf(),
                _ => break,
            },
        }
    }
    Ok(root.join(clean))
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_path_buf(),
        source,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// Written before the step starts: a start without an end is an interrupted run.
    Start,
    End,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    Succeeded,
    Failed,
    TimedOut,
    Interrupted,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Succeeded => "succeeded",
            Outcome::Failed => "failed",
            Outcome::TimedOut => "timed out",
            Outcome::Interrupted => "interrupted",
        }
    }
}

/// A file a record vouches for: a captured log (beside the record) or an artifact.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileRef {
    /// `stdout`, `stderr` or `artifact`.
    pub role: String,
    /// Logs: the file name beside the record; artifacts: the path as the step reported it.
    pub name: String,
    pub size: u64,
    pub sha256: String,
}

/// Records as a reader of the whole ledger holds them: boxed, because a ledger has 100,000
/// of them and its readers move them between stages (measured: moving the ~600-byte records
/// themselves cost a tenth of `status`'s time).
#[allow(clippy::vec_box)]
pub type Records = Vec<Box<Record>>;

/// One evidence record. Field order is the file's order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Record {
    /// The writer folder the record was read from: not part of the file, set by readers.
    /// Runs are told apart by writer and run id, so a record in one writer's folder never
    /// completes another writer's run.
    #[serde(skip)]
    pub writer: String,
    /// Who wrote it, as its signature and the policy say: not part of the file, set by
    /// readers that judged it (`None`: not judged).
    #[serde(skip)]
    pub attribution: Option<signed::Attribution>,
    pub format: u32,
    pub seq: u64,
    /// SHA-256 of the previous record file of this writer (`None` for the first).
    pub prev: Option<String>,
    pub kind: Kind,
    /// Identifies one execution of one step; its start and end records share it.
    pub run: String,
    pub sop: String,
    pub sop_path: String,
    /// The commit the SOP was read from, and its content hash.
    pub commit: Option<String>,
    pub content_sha256: String,
    /// The effective version that ran; `None` for a draft run with `--allow-draft`.
    pub version: Option<u32>,
    pub allow_draft: bool,
    pub step: String,
    /// The role the step requires (`role=`); the record's signer must hold it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    pub target: Option<String>,
    pub operator: String,
    pub host: String,
    /// UTC, RFC 3339.
    pub started: String,
    pub ended: Option<String>,
    pub exit_status: Option<i32>,
    pub outcome: Option<Outcome>,
    pub files: Vec<FileRef>,
    /// Checks the step made of its own output (e.g. an archive re-read against its manifest).
    pub verification: Vec<String>,
    pub sopkit_version: String,
    /// SHA-256 of this record's canonical bytes with `digest` empty.
    pub digest: String,
}

impl Record {
    /// The canonical bytes of the record (pretty JSON, a final newline), digest filled in.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut r = self.clone();
        r.digest = String::new();
        let unsigned = canonical(&r);
        r.digest = crate::digest::sha256_hex(&unsigned);
        canonical(&r)
    }

    /// Whether `digest` matches the record's content, by serializing it: the definition
    /// that the tests hold [`Record::is_as_written`] to.
    #[cfg(test)]
    pub fn digest_ok(&self) -> bool {
        let mut r = self.clone();
        r.digest = String::new();
        crate::digest::sha256_hex(&canonical(&r)) == self.digest
    }

    /// Whether `bytes` (the file this record was parsed from) are exactly the bytes its
    /// writer digested: the file with the digest's value emptied hashes to `digest`. The
    /// writer only ever digests canonical bytes, so this says what
    /// `to_bytes() == bytes && digest_ok()` says without serializing anything: `digest` is the
    /// last field, so only the file's tail has to be replaced.
    pub fn is_as_written(&self, bytes: &[u8]) -> bool {
        self.hash_and_check(bytes).1
    }

    /// The SHA-256 of `bytes` (what the next record's `prev` names) and whether they are as
    /// written ([`Record::is_as_written`]): both hashes share all but the tail, so the bytes
    /// are hashed once.
    pub fn hash_and_check(&self, bytes: &[u8]) -> (String, bool) {
        use sha2::{Digest, Sha256};
        // The digest as the record's last JSON value; lower-case hex (the only valid form)
        // needs no escaping, so the general encoder runs only for a digest that fails anyway.
        let lower_hex = self
            .digest
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        let quoted = if lower_hex {
            format!("\"{}\"", self.digest)
        } else {
            serde_json::to_string(&self.digest).unwrap_or_default()
        };
        let tail = format!("\"digest\": {quoted}\n}}\n");
        let Some(head) = bytes.strip_suffix(tail.as_bytes()) else {
            return (crate::digest::sha256_hex(bytes), false);
        };
        let mut file = Sha256::new();
        file.update(head);
        let mut unsigned = file.clone();
        unsigned.update(UNSIGNED_TAIL);
        file.update(tail.as_bytes());
        // Compared as bytes: no hex string is made for the digest.
        let mut expected = [0u8; 32];
        let digest_ok = lower_hex
            && hex::decode_to_slice(&self.digest, &mut expected).is_ok()
            && unsigned.finalize().as_slice() == expected;
        (crate::digest::hex(&file.finalize()), digest_ok)
    }
}

/// How the canonical bytes of a record with an empty digest end.
const UNSIGNED_TAIL: &[u8] = b"\"digest\": \"\"\n}\n";

fn canonical(r: &Record) -> Vec<u8> {
    let mut v = serde_json::to_vec_pretty(r).unwrap_or_default();
    v.push(b'\n');
    v
}

/// The size and SHA-256 of a file, hashed as it is read (constant memory).
pub fn hash_file(path: &Path) -> Result<(u64, String), Error> {
    crate::digest::sha256_file(path).map_err(io(path))
}

/// A writer name safe as a folder name: `operator@host` with anything unusual replaced.
pub fn writer_name(operator: &str, host: &str) -> String {
    format!("{operator}@{host}")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '@' | '.' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// The file name of record `seq`.
pub fn record_name(seq: u64) -> String {
    format!("{seq:06}.json")
}

fn parse_seq(name: &str) -> Option<u64> {
    let stem = name.strip_suffix(".json")?;
    (stem.len() == 6 && stem.bytes().all(|b| b.is_ascii_digit()))
        .then(|| stem.parse().ok())
        .flatten()
}

/// One writer's chain in a ledger folder.
pub struct Writer {
    pub dir: PathBuf,
    name: String,
    /// Signs each record (none: records are written unsigned).
    signer: Option<crate::signing::Signer>,
    /// Must accept each record, signed or not, before anything is written.
    judge: std::sync::Arc<signed::Judge>,
}

/// Holds the writer's lock; appends happen only while it is held.
pub struct Locked<'a> {
    writer: &'a Writer,
    _file: std::fs::File,
}

impl Writer {
    /// A writer that signs nothing and whose records no policy judges (tests, benchmarks).
    pub fn open(evidence: &Path, name: &str) -> Result<Writer, Error> {
        Writer::open_signed(evidence, name, None, Default::default())
    }

    /// A writer whose records `signer` signs and `judge` accepts before each is written.
    pub fn open_signed(
        evidence: &Path,
        name: &str,
        signer: Option<crate::signing::Signer>,
        judge: std::sync::Arc<signed::Judge>,
    ) -> Result<Writer, Error> {
        let dir = evidence.join(name);
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        let ignore = evidence.join(".gitignore");
        if !ignore.exists() {
            crate::fs_atomic::write(
                &ignore,
                b"# running steps and locks, never evidence\n.tmp-*/\n.lock\n",
            )
            .map_err(io(&ignore))?;
        }
        Ok(Writer {
            dir,
            name: name.to_string(),
            signer,
            judge,
        })
    }

    /// What judges this writer's records (and so which records of others count).
    pub fn judge(&self) -> &signed::Judge {
        &self.judge
    }

    /// Waits for the writer's lock (other runs of this writer append in turn).
    pub fn lock(&self) -> Result<Locked<'_>, Error> {
        let path = self.dir.join(".lock");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io(&path))?;
        file.lock().map_err(io(&path))?;
        Ok(Locked {
            writer: self,
            _file: file,
        })
    }

    /// The folder for a running step's logs.
    pub fn temp_dir(&self, run: &str) -> Result<PathBuf, Error> {
        let d = self.dir.join(format!(".tmp-{run}"));
        std::fs::create_dir_all(&d).map_err(io(&d))?;
        Ok(d)
    }
}

impl Locked<'_> {
    /// The last record's sequence number and file hash.
    fn last(&self) -> Result<Option<(u64, String)>, Error> {
        let dir = &self.writer.dir;
        let mut best: Option<u64> = None;
        for e in std::fs::read_dir(dir).map_err(io(dir))? {
            let e = e.map_err(io(dir))?;
            if let Some(seq) = e.file_name().to_str().and_then(parse_seq) {
                best = best.max(Some(seq));
            }
        }
        match best {
            None => Ok(None),
            Some(seq) => {
                let path = dir.join(record_name(seq));
                let bytes = std::fs::read(&path).map_err(io(&path))?;
                Ok(Some((seq, crate::digest::sha256_hex(&bytes))))
            }
        }
    }

    /// Moves finished logs into the ledger (named by run), then appends `record` with the
    /// next sequence number and the previous record's hash. Returns the record's path.
    pub fn append(&self, mut record: Record, logs: &[(PathBuf, String)]) -> Result<PathBuf, Error> {
        for (from, name) in logs {
            let to = self.writer.dir.join(name);
            std::fs::rename(from, &to).map_err(io(from))?;
        }
        let (seq, prev) = match self.last()? {
            Some((s, h)) => (s + 1, Some(h)),
            None => (1, None),
        };
        record.seq = seq;
        record.prev = prev;
        record.format = FORMAT;
        let path = self.writer.dir.join(record_name(seq));
        let bytes = record.to_bytes();
        let w = self.writer;
        let sig = match &w.signer {
            Some(s) => {
                Some(
                    s.sign(&bytes, signed::NAMESPACE)
                        .map_err(|e| Error::NotAttributable {
                            path: path.clone(),
                            message: format!("signing it failed: {e}"),
                        })?,
                )
            }
            None => None,
        };
        w.judge
            .judge(&w.name, &record, &bytes, sig.as_deref())
            .map_err(|message| Error::NotAttributable {
                path: path.clone(),
                message,
            })?;
        // The signature first: a crash in between leaves a signature with no record, which
        // the next append replaces, never a record that seems unsigned.
        if let Some(sig) = sig {
            let sig_path = w.dir.join(signed::sig_name(seq));
            crate::fs_atomic::write(&sig_path, &sig).map_err(io(&sig_path))?;
        }
        crate::fs_atomic::write(&path, &bytes).map_err(io(&path))?;
        Ok(path)
    }
}

/// Writes `bytes` and syncs (logs are flushed before they are hashed).
pub fn sync(file: &mut std::fs::File) -> std::io::Result<()> {
    file.flush()?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn record() -> Record {
        Record {
            writer: String::new(),
            attribution: None,
            format: FORMAT,
            seq: 0,
            prev: None,
            kind: Kind::Start,
            run: "r1".into(),
            sop: "IT-1".into(),
            sop_path: "procedures/IT-1.md".into(),
            commit: Some("abc".into()),
            content_sha256: "00".into(),
            version: Some(1),
            allow_draft: false,
            step: "s".into(),
            role: None,
            target: None,
            operator: "ann".into(),
            host: "h".into(),
            started: "2026-01-01T00:00:00Z".into(),
            ended: None,
            exit_status: None,
            outcome: None,
            files: vec![],
            verification: vec![],
            sopkit_version: "0".into(),
            digest: String::new(),
        }
    }

    #[test]
    fn records_chain_and_carry_their_digest() {
        let d = tempfile::tempdir().unwrap();
        let w = Writer::open(d.path(), "ann@h").unwrap();
        let l = w.lock().unwrap();
        let p1 = l.append(record(), &[]).unwrap();
        let p2 = l.append(record(), &[]).unwrap();
        let r2: Record = serde_json::from_slice(&std::fs::read(&p2).unwrap()).unwrap();
        assert_eq!(r2.seq, 2);
        assert_eq!(
            r2.prev,
            Some(crate::digest::sha256_hex(&std::fs::read(&p1).unwrap()))
        );
        assert!(r2.digest_ok());
        assert_eq!(r2.to_bytes(), std::fs::read(&p2).unwrap());
    }

    #[test]
    fn is_as_written_agrees_with_the_full_check() {
        let mut r = record();
        r.files.push(FileRef {
            role: "artifact".into(),
            name: "a \"quoted\" name".into(),
            size: 3,
            sha256: "ab".into(),
        });
        let bytes = r.to_bytes();
        let signed: Record = serde_json::from_slice(&bytes).unwrap();
        assert!(signed.digest_ok() && signed.is_as_written(&bytes));
        assert_eq!(
            signed.hash_and_check(&bytes).0,
            crate::digest::sha256_hex(&bytes)
        );
        let edited_bytes = [&bytes[..], b" "].concat();
        assert_eq!(
            signed.hash_and_check(&edited_bytes),
            (crate::digest::sha256_hex(&edited_bytes), false)
        );
        // The unsigned form the shortcut hashes is the one the digest was made from.
        let mut unsigned = signed.clone();
        unsigned.digest = String::new();
        assert!(canonical(&unsigned).ends_with(UNSIGNED_TAIL));
        // A changed digest, a changed field, and re-indented bytes are all refused.
        let mut wrong = signed.clone();
        wrong.digest = "0".repeat(64);
        assert!(!wrong.is_as_written(&canonical(&wrong)));
        let mut edited = signed.clone();
        edited.step = "other".into();
        assert!(!edited.is_as_written(&canonical(&edited)));
        let compact = serde_json::to_vec(&signed).unwrap();
        assert!(!signed.is_as_written(&compact));
        // The right digest in upper case is not the digest the record was written with.
        let mut upper = signed.clone();
        upper.digest = signed.digest.to_ascii_uppercase();
        assert!(!upper.digest_ok() && !upper.is_as_written(&canonical(&upper)));
    }

    #[test]
    fn writer_names_are_safe() {
        assert_eq!(writer_name("ann/x", "host 1"), "ann_x@host_1");
        assert_eq!(parse_seq("000012.json"), Some(12));
        assert_eq!(parse_seq("12.json"), None);
    }
}
