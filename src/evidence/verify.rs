//! `sopkit evidence verify`: every record, every chain, every log, every file.

use std::borrow::Borrow;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::io::Read;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use super::signed::Judge;
use super::{Record, Records, parse_seq, record_name};
use crate::digest::sha256_hex;

/// Something wrong in the ledger, naming the file.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Problem {
    pub path: PathBuf,
    pub message: String,
}

/// What was checked.
#[derive(Debug, Default, serde::Serialize)]
pub struct Report {
    pub writers: usize,
    pub records: usize,
    pub logs: usize,
    pub problems: Vec<Problem>,
    /// Who wrote the records that count, per writer folder.
    pub attributed: Vec<Attributed>,
}

impl Report {
    /// The report as `evidence verify` prints it: each problem, who wrote each writer's
    /// records, then the counts and the verdict.
    pub fn text(&self) -> String {
        let mut out = String::new();
        for p in &self.problems {
            out.push_str(&format!("{}: {}\n", p.path.display(), p.message));
        }
        for a in &self.attributed {
            out.push_str(&format!(
                "{}: {} records by {}\n",
                a.writer, a.records, a.by
            ));
        }
        out.push_str(&format!(
            "{} writers, {} records, {} logs: {}\n",
            self.writers,
            self.records,
            self.logs,
            if self.problems.is_empty() {
                "intact".to_string()
            } else {
                format!("{} problems", self.problems.len())
            }
        ));
        out
    }
}

/// How many counted records of one writer folder one signer wrote.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Attributed {
    pub writer: String,
    /// "Name (id)" from people.yaml, or "unattributed".
    pub by: String,
    pub records: usize,
}

fn problem(out: &mut Vec<Problem>, path: &Path, message: impl Into<String>) {
    out.push(Problem {
        path: path.to_path_buf(),
        message: message.into(),
    });
}

/// Verifies the ledger in `evidence` (a folder of writer folders). `tracked` lists files under
/// it that git's `HEAD` holds (relative to `evidence`): one of them missing is a deletion.
/// `judge` says who wrote each record; one it cannot attribute is a problem.
pub fn verify(evidence: &Path, tracked: &BTreeSet<String>, judge: &Judge) -> Report {
    verify_and_read(evidence, || tracked, judge).0
}

/// [`verify`], also returning the records that count: each parsed, in its chain's order, and
/// attributed (a record written out of time order, or that cannot be attributed, is left
/// out), so a reader of the ledger such as `status` reads each file once. `tracked` is
/// computed while the writers' folders are read (reading git's tree is one thread's work
/// beside the files).
pub fn verify_and_read<T: Borrow<BTreeSet<String>> + Send>(
    evidence: &Path,
    tracked: impl FnOnce() -> T + Send,
    judge: &Judge,
) -> (Report, Records) {
    let mut report = Report::default();
    let mut records = Vec::new();
    let Ok(entries) = std::fs::read_dir(evidence) else {
        problem(
            &mut report.problems,
            evidence,
            "the evidence folder cannot be read",
        );
        return (report, records);
    };
    let mut names: Vec<(String, bool)> = entries
        .flatten()
        .map(|e| {
            (
                e.file_name().to_string_lossy().into_owned(),
                e.file_type().is_ok_and(|t| t.is_dir()),
            )
        })
        .collect();
    names.sort();
    // Writers' chains are independent: checked in parallel, reported in name order.
    let (tracked, writers): (T, Vec<Writer>) = rayon::join(tracked, || {
        use rayon::prelude::*;
        names
            .par_iter()
            .filter(|(_, is_dir)| *is_dir)
            .map(|(name, _)| {
                let mut r = Report::default();
                let mut parsed = Vec::new();
                let listed = verify_writer(&evidence.join(name), name, judge, &mut r, &mut parsed);
                (name.as_str(), r, parsed, listed)
            })
            .collect()
    });
    records.reserve_exact(writers.iter().map(|w| w.2.len()).sum());
    let mut listed: HashMap<&str, HashSet<String>> = HashMap::new();
    for (name, w, parsed, files) in writers {
        report.writers += 1;
        report.records += w.records;
        report.logs += w.logs;
        report.problems.extend(w.problems);
        let mut by: BTreeMap<String, usize> = BTreeMap::new();
        for r in &parsed {
            let label = r
                .attribution
                .as_ref()
                .map_or("not judged".into(), |a| a.label());
            *by.entry(label).or_default() += 1;
        }
        report
            .attributed
            .extend(by.into_iter().map(|(by, records)| Attributed {
                writer: name.to_string(),
                by,
                records,
            }));
        records.extend(parsed.into_iter().map(|mut r| {
            r.writer = name.to_string();
            r
        }));
        listed.insert(name, files);
    }
    for (name, is_dir) in &names {
        let path = evidence.join(name);
        if *is_dir {
            continue;
        } else if !matches!(name.as_str(), "README.md" | ".gitignore" | ".gitkeep") {
            problem(
                &mut report.problems,
                &path,
                "a file that is not part of any evidence chain",
            );
        }
    }
    // What the walk above listed answers for files directly in a writer's folder (no `stat`
    // per committed record); anything else is looked up.
    let present = |t: &str| match t.split_once('/') {
        Some((w, file)) if !file.contains('/') && listed.contains_key(w) => {
            listed[w].contains(file)
        }
        _ => evidence.join(t).exists(),
    };
    for t in tracked.borrow() {
        let p = evidence.join(t);
        if !present(t) {
            problem(
                &mut report.problems,
                &p,
                "committed at HEAD but deleted from the working tree",
            );
        }
    }
    judge.save_memo();
    (report, records)
}

/// A writer's folder checked: its name, its problems, its records and the files it holds.
type Writer<'a> = (&'a str, Report, Records, HashSet<String>);

/// One record file read, hashed, parsed and checked on its own (the chain is checked after).
struct Checked {
    /// SHA-256 of the file, when it could be read (the next record must name it).
    hash: Option<String>,
    record: Option<Box<Record>>,
    /// Why the record cannot be attributed to anyone allowed to write it (it then never
    /// counts).
    unattributable: Option<String>,
    /// Problems of the file itself, then of the logs it names.
    own: Vec<Problem>,
    logs: Vec<Problem>,
    referenced: Vec<String>,
}

/// Reads a record: opened relative to its writer's folder (one path component to look up,
/// and a symlink in its place is refused), without the `stat` that `std::fs::read` makes
/// to size its buffer (records are small).
fn read_record(folder: Option<&OwnedFd>, path: &Path) -> std::io::Result<Vec<u8>> {
    use rustix::fs::{Mode, OFlags};
    let flags = OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOFOLLOW;
    let fd = match (folder, path.file_name()) {
        (Some(dir), Some(name)) => rustix::fs::openat(dir, name, flags, Mode::empty())?,
        _ => rustix::fs::open(path, flags, Mode::empty())?,
    };
    let mut bytes = Vec::with_capacity(4096);
    std::fs::File::from(fd)
        .take(u64::MAX)
        .read_to_end(&mut bytes)?;
    Ok(bytes)
}

fn check_record(
    dir: &Path,
    folder: Option<&OwnedFd>,
    seq: u64,
    path: &Path,
    who: (&str, &Judge),
) -> Checked {
    let mut c = Checked {
        hash: None,
        record: None,
        unattributable: None,
        own: Vec::new(),
        logs: Vec::new(),
        referenced: Vec::new(),
    };
    let bytes = match read_record(folder, path) {
        Ok(b) => b,
        Err(e) => {
            problem(&mut c.own, path, format!("cannot be read: {e}"));
            return c;
        }
    };
    let record: Record = match serde_json::from_slice(&bytes) {
        Ok(r) => r,
        Err(e) => {
            c.hash = Some(sha256_hex(&bytes));
            problem(&mut c.own, path, format!("is not a valid record: {e}"));
            return c;
        }
    };
    let (hash, as_written) = record.hash_and_check(&bytes);
    c.hash = Some(hash);
    if !as_written {
        problem(
            &mut c.own,
            path,
            "was changed after it was written (its digest does not match its content)",
        );
    }
    for f in record.files.iter().filter(|f| f.role != "artifact") {
        if f.name.contains('/') || f.name.starts_with('.') {
            problem(
                &mut c.logs,
                path,
                format!("references a log outside its folder: {}", f.name),
            );
            continue;
        }
        c.referenced.push(f.name.clone());
        let log = dir.join(&f.name);
        match super::hash_file(&log) {
            Ok((size, sha)) if size == f.size && sha == f.sha256 => {}
            Ok(_) => problem(
                &mut c.logs,
                &log,
                format!(
                    "was changed: it does not match the hash in {}",
                    record_name(seq)
                ),
            ),
            Err(_) => problem(
                &mut c.logs,
                &log,
                format!("is missing (named by {})", record_name(seq)),
            ),
        }
    }
    let sig_path = dir.join(super::signed::sig_name(seq));
    let sig = read_record(folder, &sig_path).ok();
    let mut record = Box::new(record);
    match who.1.judge(who.0, &record, &bytes, sig.as_deref()) {
        Ok(a) => record.attribution = Some(a),
        Err(m) => c.unattributable = Some(m),
    }
    c.record = Some(record);
    c
}

/// Verifies one writer's folder (named `name`); returns the names of the files in it.
// One pass over the chain in order: each record is checked against the one before it, so
// the checks share the running state (previous hash, time, open runs).
fn verify_writer(
    dir: &Path,
    name: &str,
    judge: &Judge,
    report: &mut Report,
    parsed: &mut Records,
) -> HashSet<String> {
    use rayon::prelude::*;
    let out = &mut report.problems;
    let mut records: BTreeMap<u64, PathBuf> = BTreeMap::new();
    let mut logs: BTreeSet<String> = BTreeSet::new();
    let mut sigs: BTreeMap<u64, PathBuf> = BTreeMap::new();
    let mut tokens: BTreeMap<u64, PathBuf> = BTreeMap::new();
    let mut listed = HashSet::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        problem(out, dir, "cannot be read");
        return listed;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        listed.insert(name.clone());
        let path = dir.join(&name);
        if name == ".lock" || name.starts_with(".tmp-") {
            continue;
        }
        if let Some(seq) = parse_seq(&name) {
            records.insert(seq, path);
        } else if let Some(seq) = name.strip_suffix(".sig").and_then(parse_seq) {
            sigs.insert(seq, path);
        } else if let Some(seq) = name.strip_suffix(".tsr").and_then(parse_seq) {
            tokens.insert(seq, path);
        } else if name.ends_with(".log") {
            logs.insert(name);
        } else {
            problem(out, &path, "a file that is not part of the evidence chain");
        }
    }
    // Reading, hashing and parsing each record is independent (and most of the work): done
    // in parallel, so one writer with a long chain uses every core. The chain is then
    // followed in order.
    // A signature is written just before its record: one past the last record is what a
    // crash in between leaves (the next append replaces it); any other needs its record.
    let last = records.keys().next_back().copied().unwrap_or(0);
    for (seq, path) in &sigs {
        if !records.contains_key(seq) && *seq != last + 1 {
            problem(
                out,
                path,
                format!("a signature whose record {} is missing", record_name(*seq)),
            );
        }
    }
    let records: Vec<(u64, PathBuf)> = records.into_iter().collect();
    let folder = rustix::fs::open(
        dir,
        rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )
    .ok();
    let checked: Vec<Checked> = records
        .par_iter()
        .map(|(seq, path)| check_record(dir, folder.as_ref(), *seq, path, (name, judge)))
        .collect();
    let mut referenced: BTreeSet<String> = BTreeSet::new();
    let mut prev_hash: Option<String> = None;
    let mut expected = 1u64;
    // The latest time the chain has reached: a record is written after the one before it.
    let mut reached: Option<(i64, u64)> = None;
    // Each record's seq, the time it says it was written, and its path (for the tokens).
    let mut written_at: Vec<(u64, Option<i64>, PathBuf)> = Vec::new();
    parsed.reserve_exact(checked.len());
    for ((seq, path), c) in records.iter().zip(checked) {
        let seq = *seq;
        report.records += 1;
        if seq != expected {
            problem(
                out,
                &dir.join(record_name(expected)),
                format!(
                    "record {expected} is missing (deleted?): the chain jumps to {}",
                    record_name(seq)
                ),
            );
            prev_hash = None; // the next link cannot be checked against a missing record
        }
        expected = seq + 1;
        out.extend(c.own);
        let Some(hash) = c.hash else {
            continue;
        };
        let Some(record) = c.record else {
            prev_hash = Some(hash);
            continue;
        };
        if record.seq != seq {
            problem(
                out,
                path,
                format!("says it is record {} (moved or reordered)", record.seq),
            );
        }
        match (&prev_hash, &record.prev) {
            (Some(p), Some(r)) if p != r => problem(
                out,
                path,
                format!(
                    "does not follow {}: the previous record was changed, replaced or reordered",
                    record_name(seq.saturating_sub(1))
                ),
            ),
            (None, Some(_)) if seq == 1 => {
                problem(out, path, "the first record names a predecessor")
            }
            (Some(_), None) => problem(
                out,
                path,
                "names no predecessor but is not the first record",
            ),
            _ => {}
        }
        out.extend(c.logs);
        referenced.extend(c.referenced);
        prev_hash = Some(hash);
        let rfc3339 = |t: &str| {
            time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339)
                .ok()
                .map(|d| d.unix_timestamp())
        };
        // When the record was written: a start record when its run started, an end record
        // when its run ended (an end record's `started` is its run's, which may be older than
        // records of other runs written in between).
        let written = match record.kind {
            crate::evidence::Kind::Start => rfc3339(&record.started),
            crate::evidence::Kind::End => record.ended.as_deref().and_then(rfc3339),
        };
        if let (Some(t), Some((before, at))) = (written, reached)
            && t + CLOCK_SKEW < before
        {
            // Dated before a record written earlier in the same chain: its time cannot be
            // true, so it is reported and left out of what readers count.
            problem(
                out,
                path,
                format!(
                    "was written at {}, before record {} of the same chain: a record cannot \
                     be older than one written before it",
                    crate::approval::utc(t),
                    record_name(at)
                ),
            );
            continue;
        }
        if let Some(t) = written
            && reached.is_none_or(|(r, _)| t > r)
        {
            reached = Some((t, seq));
        }
        written_at.push((seq, written, path.clone()));
        if let Some(why) = c.unattributable {
            problem(out, path, format!("cannot count: it {why}"));
            continue;
        }
        parsed.push(record);
    }
    check_tokens(dir, &tokens, &records, &written_at, judge, out);
    same_signer(dir, parsed, out);
    for l in logs {
        report.logs += 1;
        if !referenced.contains(&l) {
            problem(out, &dir.join(&l), "a log that no record names");
        }
    }
    listed
}

/// A run's end record must be signed by whoever signed its start: an end that someone else
/// appended to another person's run proves nothing of that run, and is left out.
fn same_signer(dir: &Path, parsed: &mut Records, out: &mut Vec<Problem>) {
    let starts: HashMap<String, Option<super::signed::Attribution>> = parsed
        .iter()
        .filter(|r| r.kind == super::Kind::Start)
        .map(|r| (r.run.clone(), r.attribution.clone()))
        .collect();
    parsed.retain(|r| {
        let person = |a: &Option<super::signed::Attribution>| match a {
            Some(super::signed::Attribution::Person { id, .. }) => Some(id.clone()),
            _ => None,
        };
        let Some(start) = starts.get(&r.run).filter(|_| r.kind == super::Kind::End) else {
            return true;
        };
        if person(start) == person(&r.attribution) {
            return true;
        }
        let label = |a: &Option<super::signed::Attribution>| {
            a.as_ref().map_or("nobody".into(), |a| a.label())
        };
        problem(
            out,
            &dir.join(record_name(r.seq)),
            format!(
                "cannot count: it ends run {} for {}, but its start record is signed by {}",
                r.run,
                label(&r.attribution),
                label(start)
            ),
        );
        false
    });
}

/// Checks each RFC 3161 token of a writer's folder: against the TSA certificate the policy
/// trusts, over the record it lies beside; and no record it covers (that one and every one
/// before it in the chain, which it dates through their hashes) may say it was written
/// after the time the token states.
fn check_tokens(
    dir: &Path,
    tokens: &BTreeMap<u64, PathBuf>,
    records: &[(u64, PathBuf)],
    written_at: &[(u64, Option<i64>, PathBuf)],
    judge: &Judge,
    out: &mut Vec<Problem>,
) {
    for (seq, token) in tokens {
        if !records.iter().any(|(s, _)| s == seq) {
            problem(
                out,
                token,
                format!(
                    "a timestamp token whose record {} is missing",
                    record_name(*seq)
                ),
            );
            continue;
        }
        let Some((_, ca)) = &judge.tsa_certificate else {
            problem(
                out,
                token,
                "a timestamp token, but the policy names no `[evidence] tsa_certificate` (or \
                 does not hold the file it names) to check it against",
            );
            continue;
        };
        let stated = match super::stamp::check(&dir.join(record_name(*seq)), token, ca) {
            Ok(t) => t,
            Err(e) => {
                problem(
                    out,
                    token,
                    format!("the timestamp token does not verify: {e}"),
                );
                continue;
            }
        };
        for (_, written, path) in written_at.iter().filter(|(s, _, _)| s <= seq) {
            if let Some(w) = written
                && *w > stated + CLOCK_SKEW
            {
                problem(
                    out,
                    path,
                    format!(
                        "says it was written at {}, after the time-stamping authority dated \
                         record {} ({}), which covers it",
                        crate::approval::utc(*w),
                        record_name(*seq),
                        crate::approval::utc(stated)
                    ),
                );
            }
        }
    }
}

/// How far one machine's clock may be behind another's: two runs on one writer's chain may
/// come from the same person on two machines.
const CLOCK_SKEW: i64 = 300;

/// Files under `evidence` (relative to it) that git's HEAD holds, for the repository at `root`.
pub fn tracked_at_head(root: &Path, evidence: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let Some(repo) = crate::git::find(root) else {
        return out;
    };
    let prefix = crate::git::prefix_in(&repo, root);
    let full = if prefix.is_empty() {
        evidence.to_string()
    } else {
        format!("{prefix}/{evidence}")
    };
    let Ok(tree) = repo.head().and_then(|h| h.peel_to_tree()) else {
        return out;
    };
    let Ok(entry) = tree.get_path(Path::new(&full)) else {
        return out;
    };
    let Ok(sub) = entry.to_object(&repo).and_then(|o| o.peel_to_tree()) else {
        return out;
    };
    let _ = sub.walk(git2::TreeWalkMode::PreOrder, |parent, e| {
        if e.kind() == Some(git2::ObjectType::Blob) {
            out.insert(format!("{parent}{}", e.name().unwrap_or("")));
        }
        git2::TreeWalkResult::Ok
    });
    out
}

#[cfg(test)]
mod tests {
    use super::super::tests::record;
    use super::super::{FileRef, Writer};
    use super::*;

    fn ledger() -> (tempfile::TempDir, PathBuf) {
        let d = tempfile::tempdir().unwrap();
        let w = Writer::open(d.path(), "ann@h").unwrap();
        let l = w.lock().unwrap();
        for i in 0..3 {
            let tmp = w.temp_dir(&format!("r{i}")).unwrap();
            let log = tmp.join("out");
            std::fs::write(&log, format!("output {i}\n")).unwrap();
            let (size, sha256) = super::super::hash_file(&log).unwrap();
            let mut r = record();
            r.files.push(FileRef {
                role: "stdout".into(),
                name: format!("r{i}.stdout.log"),
                size,
                sha256,
            });
            l.append(r, &[(log, format!("r{i}.stdout.log"))]).unwrap();
        }
        let dir = w.dir.clone();
        (d, dir)
    }

    #[test]
    fn a_clean_ledger_verifies() {
        let (d, _) = ledger();
        let r = verify(d.path(), &BTreeSet::new(), &Judge::none());
        assert_eq!(r.problems, vec![]);
        assert_eq!((r.writers, r.records, r.logs), (1, 3, 3));
    }

    #[test]
    fn every_single_byte_edit_of_every_file_is_found() {
        let (d, dir) = ledger();
        let files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.is_file() && !p.ends_with(".lock"))
            .collect();
        assert_eq!(files.len(), 6);
        for f in files {
            let original = std::fs::read(&f).unwrap();
            for i in 0..original.len() {
                let mut b = original.clone();
                b[i] ^= 0x01;
                std::fs::write(&f, &b).unwrap();
                let r = verify(d.path(), &BTreeSet::new(), &Judge::none());
                assert!(
                    r.problems.iter().any(|p| p.path == f),
                    "edit of byte {i} of {} not found: {:?}",
                    f.display(),
                    r.problems
                );
            }
            std::fs::write(&f, &original).unwrap();
        }
    }

    #[test]
    fn a_record_replaced_by_a_symlink_is_not_followed() {
        let (d, dir) = ledger();
        let elsewhere = d.path().join("copy.json");
        std::fs::rename(dir.join("000003.json"), &elsewhere).unwrap();
        std::os::unix::fs::symlink(&elsewhere, dir.join("000003.json")).unwrap();
        let r = verify(d.path(), &BTreeSet::new(), &Judge::none());
        assert!(
            r.problems
                .iter()
                .any(|p| p.path == dir.join("000003.json") && p.message.contains("cannot be read")),
            "{:?}",
            r.problems
        );
    }

    #[test]
    fn a_committed_file_deleted_from_the_working_tree_is_found() {
        let (d, dir) = ledger();
        let writer = dir.file_name().unwrap().to_string_lossy().into_owned();
        std::fs::write(d.path().join("README.md"), "ledger\n").unwrap();
        let tracked: BTreeSet<String> = [
            "README.md".to_string(),
            format!("{writer}/000001.json"),
            format!("{writer}/r0.stdout.log"),
            format!("{writer}/000009.json"),
            format!("{writer}/old/notes.txt"),
            "gone.md".to_string(),
        ]
        .into();
        let r = verify(d.path(), &tracked, &Judge::none());
        let deleted: Vec<String> = r
            .problems
            .iter()
            .filter(|p| p.message.contains("deleted from the working tree"))
            .map(|p| p.path.strip_prefix(d.path()).unwrap().display().to_string())
            .collect();
        assert_eq!(
            deleted,
            vec![
                format!("{writer}/000009.json"),
                format!("{writer}/old/notes.txt"),
                "gone.md".to_string(),
            ]
        );
    }

    #[test]
    fn deleted_and_reordered_records_are_found() {
        let (d, dir) = ledger();
        std::fs::remove_file(dir.join("000002.json")).unwrap();
        let r = verify(d.path(), &BTreeSet::new(), &Judge::none());
        assert!(
            r.problems
                .iter()
                .any(|p| p.message.contains("record 2 is missing")),
            "{:?}",
            r.problems
        );

        let (d, dir) = ledger();
        let a = std::fs::read(dir.join("000001.json")).unwrap();
        let b = std::fs::read(dir.join("000002.json")).unwrap();
        std::fs::write(dir.join("000001.json"), b).unwrap();
        std::fs::write(dir.join("000002.json"), a).unwrap();
        assert!(
            !verify(d.path(), &BTreeSet::new(), &Judge::none())
                .problems
                .is_empty()
        );

        // The last record deleted: found when git's HEAD holds it.
        let (d, dir) = ledger();
        std::fs::remove_file(dir.join("000003.json")).unwrap();
        let tracked: BTreeSet<String> = ["ann@h/000003.json".to_string()].into();
        let r = verify(d.path(), &tracked, &Judge::none());
        assert!(
            r.problems.iter().any(|p| p.message.contains("deleted")),
            "{:?}",
            r.problems
        );
    }
}
