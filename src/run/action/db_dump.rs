//! `db-dump`: one database of a mysql target into a `.sql.zst` and its record of tables,
//! counts and checksums.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use sha2::{Digest, Sha256};

use super::{Context, Error, Output, expand, io, required, resolve, timestamp};
use crate::corpus::step::args;
use crate::run::stream::{self, hex};
use crate::run::target::mysql;
use mysql::{
    DumpRecord, Server, Table, collect_stderr, failed, literal, parallel_scans, program,
    record_path, rows,
};
use std::process::Stdio;
use std::time::Instant;

/// A writer that hashes and counts what passes through it.
struct Tally<W> {
    inner: W,
    hash: Sha256,
    count: u64,
    /// The last bytes written (to find the dump tool's completion line).
    tail: Vec<u8>,
    /// Counts the rows of each table, when what passes is the dump tool's SQL.
    rows: Option<rows::RowCounter>,
}

impl<W: Write> Write for Tally<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        self.count += n as u64;
        if let Some(rows) = &mut self.rows {
            rows.feed(&buf[..n]);
        }
        const KEEP: usize = 256;
        if n >= KEEP {
            self.tail.clear();
            self.tail.extend_from_slice(&buf[n - KEEP..n]);
        } else {
            self.tail.extend_from_slice(&buf[..n]);
            let extra = self.tail.len().saturating_sub(KEEP);
            self.tail.drain(..extra);
        }
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// `db-dump`: `target` (a mysql target), `database`, `dest` (a folder, or a `.sql.zst` file
/// name). Dumps with `--single-transaction` (a consistent snapshot without locking InnoDB
/// tables), compresses with zstd as it streams, hashes the SQL and the file, checks the dump
/// tool finished (its exit status and its closing `-- Dump completed` line), and writes the
/// record of tables, counts and checksums beside it. Nothing is left under the final name
/// unless all of that succeeded.
// Long (about 190 lines): the dump, its checksums before and after and the record share one
// child process and its hashing writers; splitting it is left to a later change.
pub fn db_dump(args: &args::DbDump, cx: &mut Context<'_>) -> Result<Output, Error> {
    let server = Server::named(required(args.target.as_deref(), "target")?, cx.targets)?;
    let database = expand(&args.database);
    let dest_arg = resolve(cx.root, &expand(&args.dest));
    let exists = server.query(&format!(
        "SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = {}",
        literal(&database)
    ))?;
    if exists.is_empty() {
        return Err(failed(format!(
            "database `{database}` does not exist on `{}` (or the user cannot see it)",
            server.name
        )));
    }
    let dest = if dest_arg.to_string_lossy().ends_with(".sql.zst") {
        dest_arg
    } else {
        std::fs::create_dir_all(&dest_arg).map_err(io(&dest_arg))?;
        dest_arg.join(format!(
            "{}-{}-{}-{}.sql.zst",
            cx.sop,
            cx.step,
            database,
            timestamp()
        ))
    };
    let dir = dest.parent().unwrap_or(Path::new(".")).to_path_buf();
    std::fs::create_dir_all(&dir).map_err(io(&dir))?;
    let version = server.version()?;
    // The tables are counted and checksummed while the dump runs (the server has the
    // cores for it), and again after: equal twice means nothing changed meanwhile.
    let before = {
        let (srv, db) = (server.clone(), database.clone());
        // One connection while the dump runs: the server and the dump tool need the cores.
        std::thread::spawn(move || srv.tables(&db, 1))
    };

    let tool = program(&["mariadb-dump", "mysqldump"])?;
    let tmp = tempfile::Builder::new()
        .prefix(".sopkit-dump-")
        .tempfile_in(&dir)
        .map_err(io(&dir))?;
    let started = Instant::now();
    let mut child = server
        .command(&tool)
        .args([
            "--single-transaction",
            "--routines",
            "--triggers",
            "--events",
            "--hex-blob",
            "--quick",
        ])
        .arg("--")
        .arg(&database)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| failed(format!("{tool}: {e}")))?;
    let err_thread = collect_stderr(&mut child);
    let file = tmp.reopen().map_err(io(&dest))?;
    let compressed = Tally {
        inner: std::io::BufWriter::with_capacity(
            1 << 20,
            crate::fs_atomic::StreamedFile::new(file),
        ),
        hash: Sha256::new(),
        count: 0,
        tail: Vec::new(),
        rows: None,
    };
    // Level 1 on one worker thread keeps up with the dump tool (which, with the server,
    // needs the other cores) and still shrinks SQL about 2.5 times.
    let mut enc = zstd::stream::write::Encoder::new(compressed, 1).map_err(io(&dest))?;
    let _ = enc.multithread(1);
    let mut sql = Tally {
        inner: enc,
        hash: Sha256::new(),
        count: 0,
        tail: Vec::new(),
        rows: Some(rows::RowCounter::default()),
    };
    let mut stdout = child.stdout.take().expect("piped");
    stream::widen_pipe(&stdout);
    let copied = stream::copy_chunks(&mut stdout, &mut sql);
    if copied.is_err() {
        let _ = child.kill();
    }
    let status = child.wait().map_err(|e| failed(format!("{tool}: {e}")))?;
    let errors = err_thread.join().unwrap_or_default();
    copied.map_err(io(&dest))?;
    if !status.success() {
        return Err(failed(format!(
            "{tool} of `{database}` on `{}` failed ({status}): {}",
            server.name,
            errors.trim()
        )));
    }
    let tail = String::from_utf8_lossy(&sql.tail).into_owned();
    if !tail.contains("-- Dump completed") {
        return Err(failed(format!(
            "{tool} exited 0 but the dump does not end with its `-- Dump completed` line: it is incomplete"
        )));
    }
    let dump_seconds = started.elapsed().as_secs_f64();
    let checks_started = Instant::now();
    let (sql_sha256, sql_size) = (hex(sql.hash.finalize()), sql.count);
    let dumped = sql.rows.take().and_then(rows::RowCounter::finish);
    let mut compressed = sql.inner.finish().map_err(io(&dest))?;
    compressed.flush().map_err(io(&dest))?;
    let (file_sha256, file_size) = (hex(compressed.hash.finalize()), compressed.count);
    let file = compressed.inner.into_inner().map_err(|e| Error::Io {
        path: dest.clone(),
        message: e.to_string(),
    })?;
    file.into_inner().sync_all().map_err(io(&dest))?;

    let before = before
        .join()
        .map_err(|_| failed("counting the tables stopped unexpectedly"))??;
    // Unchanged since the dump began: the same checksum (equal checksums make equal counts
    // go without saying, so the second pass scans once); tables without one are compared in
    // full.
    let unchanged: Vec<bool> = if before.iter().all(|t| t.checksum.is_some()) {
        let after = server.checksums(&database)?;
        before
            .iter()
            .map(|t| after.get(&t.name).is_some_and(|c| *c == t.checksum))
            .collect()
    } else {
        let after = server.tables(&database, parallel_scans())?;
        before.iter().map(|t| after.contains(t)).collect()
    };
    let check_seconds = checks_started.elapsed().as_secs_f64();
    let mut tables = before;
    let changed = settle(&mut tables, &unchanged, dumped.as_ref());
    tmp.persist(&dest).map_err(|e| Error::Io {
        path: dest.clone(),
        message: e.to_string(),
    })?;
    let record = DumpRecord {
        format: 1,
        target: server.name.clone(),
        database: database.clone(),
        server_version: version,
        tool: tool.clone(),
        sql_sha256,
        sql_size,
        file_sha256: file_sha256.clone(),
        file_size,
        dump_seconds,
        tables,
    };
    let record_file = record_path(&dest);
    let mut json = serde_json::to_vec_pretty(&record).unwrap_or_default();
    json.push(b'\n');
    crate::fs_atomic::write(&record_file, &json).map_err(io(&record_file))?;
    let rows: u64 = record.tables.iter().map(|t| t.rows).sum();
    let _ = writeln!(
        cx.log,
        "dumped `{database}` from `{}` ({} tables, {rows} rows, {sql_size} bytes of SQL) into {} ({file_size} bytes, sha256 {file_sha256}) in {dump_seconds:.2} s (tables counted and checksummed during it and again after, {check_seconds:.2} s)",
        server.name,
        record.tables.len(),
        dest.display()
    );
    let mut verification = vec![
        format!("ok: {tool} exited 0 and wrote its completion line"),
        format!(
            "ok: {} tables, {rows} rows counted and checksummed at dump time",
            record.tables.len()
        ),
    ];
    if dumped.is_none() {
        verification.push(
            "warning: the rows in the dump's INSERT statements could not be counted; a restore test compares rows and checksums with the server's counts only".to_string(),
        );
    }
    if !changed.is_empty() {
        let line = format!(
            "warning: {} changed while being dumped; a restore test cannot compare their checksums, only the rows in the dump",
            changed.join(", ")
        );
        let _ = writeln!(cx.log, "{line}");
        verification.push(line);
    }
    Ok(Output {
        hashed: BTreeMap::from([(dest.clone(), (file_size, file_sha256))]),
        artifacts: vec![dest, record_file],
        verification,
    })
}

/// Gives every table of a dump its rows in the dump (`dumped`, when they could be counted)
/// and marks unstable the ones whose checksum changed during the dump (`unchanged` false)
/// or whose rows in the dump differ from the server's count: such a table changed between
/// the dump's snapshot and the count, which the second checksum cannot see, so its checksum
/// does not describe the dump either. Returns the names of the unstable tables.
fn settle(
    tables: &mut [Table],
    unchanged: &[bool],
    dumped: Option<&BTreeMap<String, u64>>,
) -> Vec<String> {
    let mut changed = Vec::new();
    for (t, &same) in tables.iter_mut().zip(unchanged) {
        t.dump_rows = dumped.map(|d| d.get(&t.name).copied().unwrap_or(0));
        if !same || t.dump_rows.is_some_and(|n| n != t.rows) {
            t.stable = false;
            changed.push(t.name.clone());
        }
    }
    changed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_table_is_stable_only_when_its_checksum_and_its_rows_in_the_dump_agree() {
        let table = |name: &str, rows: u64| Table {
            name: name.into(),
            rows,
            checksum: Some("1".into()),
            stable: true,
            dump_rows: None,
        };
        let dumped: BTreeMap<String, u64> = [("a", 5), ("b", 6), ("c", 7)]
            .map(|(t, n)| (t.to_string(), n))
            .into();
        // a: nothing changed; b: its checksum changed; c: written after the dump's
        // snapshot, before the count; d: no rows in the dump (no INSERT at all).
        let mut tables = vec![table("a", 5), table("b", 6), table("c", 8), table("d", 0)];
        let changed = settle(&mut tables, &[true, false, true, true], Some(&dumped));
        assert_eq!(changed, ["b", "c"]);
        let stable: Vec<bool> = tables.iter().map(|t| t.stable).collect();
        assert_eq!(stable, [true, false, false, true]);
        let rows: Vec<Option<u64>> = tables.iter().map(|t| t.dump_rows).collect();
        assert_eq!(rows, [Some(5), Some(6), Some(7), Some(0)]);
        // Without a count of the dump, only the checksums decide.
        let mut tables = vec![table("a", 5), table("c", 8)];
        assert_eq!(settle(&mut tables, &[true, false], None), ["c"]);
        assert!(tables.iter().all(|t| t.dump_rows.is_none()));
    }
}
