//! `restore-test`: a dump loaded into a scratch database and compared with its record.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::PathBuf;

use sha2::{Digest, Sha256};

use super::{Context, Error, Output, conclude, expand, io, resolve};
use crate::corpus::step::args;
use crate::run::stream::{self, HashingReader, hash_path, hex};
use crate::run::target::mysql;
use mysql::{DumpRecord, Server, collect_stderr, failed, ident, load, program, record_path};
use std::process::Stdio;
use std::time::Instant;

/// How many client sessions load a dump at once (the `jobs` argument of `restore-test`).
/// Four, as `myloader` does by default: on two cores the restore of the benchmark database
/// took 6.4 to 7.3 s with two to four sessions against 11.6 to 13.2 s with one.
const DEFAULT_JOBS: usize = 4;

/// Drops the scratch database when the restore test ends, however it ends.
struct Scratch<'a> {
    server: &'a Server,
    name: String,
    dropped: bool,
}

impl Scratch<'_> {
    fn drop_now(&mut self) -> Result<(), Error> {
        self.dropped = true;
        self.server
            .query(&format!("DROP DATABASE IF EXISTS {}", ident(&self.name)))
            .map(|_| ())
    }
}

impl Drop for Scratch<'_> {
    fn drop(&mut self) {
        if !self.dropped {
            let _ = self.drop_now();
        }
    }
}

/// `restore-test`: `dump` (the id of an earlier `db-dump` step of this SOP, or a path to a
/// `.sql.zst` with its record) and `target` (the server to restore on; default the one the
/// dump came from). Restores into a new scratch database, checks the file's and the SQL's
/// hashes against the record as they stream, compares every table's row count and checksum
/// with the dump's record, drops the scratch database, and records how long the restore took.
// Long (about 220 lines): the scratch database, the loading sessions and the comparison share
// one guard that drops the database however it ends; splitting it is left to a later change.
pub fn restore_test(args: &args::RestoreTest, cx: &mut Context<'_>) -> Result<Output, Error> {
    let arg = expand(&args.dump);
    let dump = match cx.earlier.get(&arg) {
        Some(paths) => PathBuf::from(paths.iter().find(|p| p.ends_with(".sql.zst")).ok_or_else(
            || Error::Argument {
                name: "dump",
                message: format!("step {arg} recorded no dump"),
            },
        )?),
        None => resolve(cx.root, &arg),
    };
    let record_file = record_path(&dump);
    let record: DumpRecord = serde_json::from_slice(
        &std::fs::read(&record_file).map_err(io(&record_file))?,
    )
    .map_err(|e| Error::Io {
        path: record_file.clone(),
        message: format!("not a dump record: {e}"),
    })?;
    let target = args.target.as_deref().unwrap_or(&record.target);
    let server = Server::named(expand(target), cx.targets)?;
    let jobs = args.jobs.unwrap_or(DEFAULT_JOBS);
    let client = program(&["mariadb", "mysql"])?;
    // Only the dump its record describes is loaded: a changed file fails here, before any
    // of its SQL reaches a server (the SQL is hashed as it streams, which catches a change
    // made meanwhile).
    let (_, file_sha) = hash_path(&dump)?;
    if file_sha != record.file_sha256 {
        return conclude(
            cx.log,
            &[format!(
                "FAILED: {} has sha256 {file_sha}; its record says {}; it was not loaded",
                dump.display(),
                record.file_sha256
            )],
            Vec::new(),
        );
    }
    let mut suffix = [0u8; 6];
    getrandom_bytes(&mut suffix);
    let mut scratch = Scratch {
        server: &server,
        name: format!("sopkit_restore_{}", hex(suffix)),
        dropped: false,
    };
    server.query(&format!("CREATE DATABASE {}", ident(&scratch.name)))?;

    let started = Instant::now();
    let mut sessions = Vec::new();
    for _ in 0..jobs {
        let mut child = server
            .command(&client)
            .args(["--batch", "--skip-column-names", "--unbuffered", "--"])
            .arg(&scratch.name)
            .stdin(Stdio::piped())
            .stdout(if jobs > 1 {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| failed(format!("{client}: {e}")))?;
        let errors = collect_stderr(&mut child);
        sessions.push((child, errors));
    }
    let file = std::fs::File::open(&dump).map_err(io(&dump))?;
    let file_reader = std::io::BufReader::with_capacity(1 << 20, file);
    let fed = zstd::stream::read::Decoder::with_buffer(file_reader).and_then(|dec| {
        let mut sql = HashingReader {
            inner: dec,
            hash: Sha256::new(),
            count: 0,
        };
        if let [(child, _)] = &mut sessions[..] {
            // One session reads the dump exactly as `mariadb DB < dump.sql` would.
            let mut stdin = child.stdin.take().expect("piped");
            stream::widen_pipe(&stdin);
            stream::copy_chunks(&mut sql, &mut stdin)?;
        } else {
            let pipes = sessions
                .iter_mut()
                .map(|(child, _)| load::Pipes {
                    pid: child.id(),
                    stdin: child.stdin.take().expect("piped"),
                    stdout: child.stdout.take().expect("piped"),
                })
                .collect();
            load::feed(&mut sql, pipes)?;
        }
        Ok((hex(sql.hash.finalize()), sql.count))
    });
    let mut load_failures = Vec::new();
    for (i, (mut child, errors)) in sessions.into_iter().enumerate() {
        // Any stdin still open (the dump could not be opened) is closed here.
        drop(child.stdin.take());
        let status = child.wait().map_err(|e| failed(format!("{client}: {e}")))?;
        let errors = errors.join().unwrap_or_default();
        if !status.success() {
            let which = if jobs > 1 {
                format!(" (session {} of {jobs})", i + 1)
            } else {
                String::new()
            };
            load_failures.push(format!(
                "FAILED: {client}{which} could not load the dump ({status}): {}",
                errors.trim()
            ));
        }
    }
    let restore_seconds = started.elapsed().as_secs_f64();

    let mut failures = Vec::new();
    let mut checks = vec![format!("ok: dump file sha256 {file_sha}")];
    match &fed {
        Ok((sha, size)) if *sha == record.sql_sha256 && *size == record.sql_size => {
            checks.push(format!("ok: {size} bytes of SQL with sha256 {sha}"))
        }
        Ok((sha, size)) => failures.push(format!(
            "FAILED: the SQL decompresses to {size} bytes with sha256 {sha}; the record says {} bytes, {}",
            record.sql_size, record.sql_sha256
        )),
        Err(e) => failures.push(format!("FAILED: restoring {}: {e}", dump.display())),
    }
    failures.extend(load_failures);
    let mut matched = 0;
    if failures.is_empty() {
        // Checksums decide; rows are counted only where they cannot: tables that changed
        // during the dump, that have no checksum, or whose checksum differs.
        let restored = server.checksums(&scratch.name)?;
        let to_count: Vec<String> = record
            .tables
            .iter()
            .filter(|w| {
                restored
                    .get(&w.name)
                    .is_some_and(|got| !w.stable || w.checksum.is_none() || *got != w.checksum)
            })
            .map(|w| w.name.clone())
            .collect();
        let counts = if to_count.is_empty() {
            BTreeMap::new()
        } else {
            server.count_rows(&scratch.name, &to_count)?
        };
        for want in &record.tables {
            let rows = counts.get(&want.name).copied().unwrap_or(0);
            match restored.get(&want.name) {
                None => failures.push(format!(
                    "FAILED: table {} is missing after the restore",
                    want.name
                )),
                // Changed during the dump: its checksum says nothing about the dump, but the
                // rows counted in the dump's own INSERTs do.
                Some(_) if !want.stable => match want.dump_rows {
                    Some(n) if n == rows => {
                        matched += 1;
                        checks.push(format!(
                            "ok: {} restored with the {rows} rows of the dump; it changed during the dump, so its checksum is not compared",
                            want.name
                        ));
                    }
                    Some(n) => failures.push(format!(
                        "FAILED: table {}: {rows} rows after the restore; the dump holds {n}",
                        want.name
                    )),
                    None => {
                        matched += 1;
                        checks.push(format!(
                            "warning: {} restored with {rows} rows; it changed during the dump, so its checksum is not compared",
                            want.name
                        ));
                    }
                },
                Some(got) if want.checksum.is_some() && *got == want.checksum => matched += 1,
                Some(got) if rows != want.rows || *got != want.checksum => failures.push(format!(
                    "FAILED: table {}: {rows} rows, checksum {} after the restore; the dump recorded {} rows, checksum {}",
                    want.name,
                    got.as_deref().unwrap_or("none"),
                    want.rows,
                    want.checksum.as_deref().unwrap_or("none")
                )),
                Some(_) => matched += 1,
            }
        }
        for extra in restored
            .keys()
            .filter(|n| !record.tables.iter().any(|w| &w.name == *n))
        {
            failures.push(format!(
                "FAILED: table {extra} appeared in the restore but not in the dump's record"
            ));
        }
        checks.push(format!(
            "ok: {matched} of {} tables match the dump's row counts and checksums",
            record.tables.len()
        ));
    }
    let dropped = scratch.drop_now();
    match dropped {
        Ok(()) => checks.push(format!("ok: scratch database {} dropped", scratch.name)),
        Err(e) => failures.push(format!(
            "FAILED: scratch database {} could not be dropped: {e}",
            scratch.name
        )),
    }
    checks.push(format!(
        "ok: restore took {restore_seconds:.2} s on `{}` over {jobs} client session{}",
        server.name,
        if jobs == 1 { "" } else { "s" }
    ));
    let _ = writeln!(
        cx.log,
        "restore test of {} on `{}` into {}: {restore_seconds:.2} s, {matched} of {} tables match, {} problems",
        dump.display(),
        server.name,
        scratch.name,
        record.tables.len(),
        failures.len()
    );
    conclude(cx.log, &failures, checks)
}

/// Random bytes for a scratch database's name (from the kernel).
fn getrandom_bytes(buf: &mut [u8]) {
    let ok = std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(buf))
        .is_ok();
    if !ok {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        for (i, b) in buf.iter_mut().enumerate() {
            *b = (nanos >> (i * 8)) as u8 ^ std::process::id() as u8;
        }
    }
}
