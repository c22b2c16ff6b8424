//! A cache of the approval history under `.git/`, so that a second run walks only the commits
//! that came since. It is machine-local (git never commits or sends what lies in `.git/`),
//! keyed by sopkit's version, the SOP folder and the policy settings in force at the head,
//! and checked before use:
//!
//! - its first line carries the SHA-256 of the rest, so a torn or edited file is ignored;
//! - the cached head must lie on the first-parent chain of the new head (a rewritten history,
//!   or a head merged in as a side branch, means a walk from the start);
//! - nothing is cached when a commit's time was after now (a later now judges it otherwise).
//!
//! Reading or writing it never fails a command: a cache that cannot be used is rebuilt.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::history::{PolicyChange, Problem, SopHistory};
use crate::digest::sha256_hex;

/// The first line is `MAGIC <SHA-256 of the body in hex>`; the body is postcard, a compact
/// binary form of serde (a tenth of a cold walk went into writing JSON, and more than the walk
/// itself into reading it back on a warm one).
const MAGIC: &str = "sopkit-history-cache 4";

/// What the walk of a history knew at its head.
#[derive(Debug, Serialize, Deserialize)]
pub struct Saved {
    /// Identifies the policy settings at the head (`[paths]`, `[approval]`, ...): a change
    /// there means a walk from the start.
    pub key: String,
    pub head: String,
    /// The head's time on the main line.
    pub time: i64,
    /// The trust root, when the history has one.
    pub root: Option<String>,
    /// The trusted policy files at the head (path, blob id) and the blob of the trusted
    /// `sopkit.toml`.
    pub files: Vec<(String, String)>,
    pub config_blob: Option<String>,
    pub changes: Vec<PolicyChange>,
    pub timeline_problems: Vec<(String, String)>,
    pub sops: BTreeMap<String, SopHistory>,
    pub problems: Vec<Problem>,
    /// Per SOP id: the blob id and approver roles of its last content.
    pub states: Vec<(String, String, Vec<String>)>,
    /// SOP file path → id at the head.
    pub head_paths: BTreeMap<String, String>,
}

/// The cache file for the SOP folder `prefix` of a repository.
pub fn path(repo: &git2::Repository, prefix: &str) -> PathBuf {
    let tag = &sha256_hex(prefix.as_bytes())[..12];
    repo.path()
        .join("sopkit-cache")
        .join(format!("history-{tag}.bin"))
}

/// The key of a cache: sopkit's version and the policy settings in force at the head.
pub fn key(config: &crate::config::Config) -> String {
    let settings = format!(
        "{:?}{:?}{:?}",
        config.paths, config.approval, config.targets
    );
    format!(
        "{} {}",
        env!("CARGO_PKG_VERSION"),
        &sha256_hex(settings.as_bytes())[..16]
    )
}

/// The cached walk, when the file exists and is intact. Its key is for the caller to check
/// against the settings at the head, which only the continued timeline knows.
pub fn read(file: &std::path::Path) -> Option<Saved> {
    let bytes = std::fs::read(file).ok()?;
    postcard::from_bytes(crate::digest::unseal(MAGIC, &bytes)?).ok()
}

/// Writes the cache: replaced in one rename, but not flushed to the disk, since a cache torn
/// by a crash fails its digest and is rebuilt.
pub fn write(file: &std::path::Path, saved: &Saved) {
    let Ok(body) = postcard::to_allocvec(saved) else {
        return;
    };
    let Some(dir) = file.parent() else { return };
    let _ = std::fs::create_dir_all(dir);
    let _ = crate::fs_atomic::write_unsynced(file, &crate::digest::seal(MAGIC, &body));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn saved(key: &str) -> Saved {
        Saved {
            key: key.into(),
            head: "h".into(),
            time: 1,
            root: Some("r".into()),
            files: vec![("roles/people.yaml".into(), "ab".into())],
            config_blob: None,
            changes: Vec::new(),
            timeline_problems: Vec::new(),
            sops: BTreeMap::new(),
            problems: Vec::new(),
            states: vec![("IT-1".into(), "00".into(), vec!["qa".into()])],
            head_paths: BTreeMap::new(),
        }
    }

    #[test]
    fn a_cache_is_used_only_when_intact() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("sopkit/history.json");
        write(&file, &saved("k1"));
        let back = read(&file).unwrap();
        assert_eq!(
            (back.key.as_str(), back.states[0].0.as_str()),
            ("k1", "IT-1")
        );
        // One byte changed in the body: the digest no longer matches.
        let bytes = std::fs::read(&file).unwrap();
        let at = bytes.windows(4).rposition(|w| w == b"IT-1").unwrap();
        let mut edited = bytes.clone();
        edited[at + 3] = b'2';
        std::fs::write(&file, &edited).unwrap();
        assert!(read(&file).is_none());
        // Torn in the middle.
        std::fs::write(&file, &bytes[..bytes.len() / 2]).unwrap();
        assert!(read(&file).is_none());
        // Intact again.
        std::fs::write(&file, &bytes).unwrap();
        assert!(read(&file).is_some());
    }
}
