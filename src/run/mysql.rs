//! MySQL/MariaDB targets: `db-dump` and `restore-test`, through the servers' own clients
//! (`mariadb-dump`/`mysqldump` and `mariadb`/`mysql`), which know every version's SQL
//! better than any reimplementation would. Connections come from the target alone
//! (`--no-defaults`), the password from the variable the target names (passed as
//! `MYSQL_PWD`, never on a command line).
//!
//! A dump records, beside the compressed SQL, every table's row count and `CHECKSUM TABLE`
//! taken just before and just after the dump; a table that changed meanwhile is marked so,
//! because its checksum cannot be compared with the dump's snapshot. It also records the
//! rows in the dump's own INSERT statements ([`rows`]), which hold for such a table too. A
//! restore test loads the dump into a scratch database, over several client sessions at once
//! ([`load`]), compares counts and checksums with that record, and drops the scratch
//! database whatever happens.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::action::{
    Context, Error, HashingReader, Output, expanded, hex, io, pipeline, required, resolve,
    timestamp,
};
use crate::config::{Target, TargetKind};

mod load;
mod rows;

use crate::corpus::step::args;

/// One table as the dump's record keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Table {
    pub name: String,
    pub rows: u64,
    /// `CHECKSUM TABLE … EXTENDED`; `None` when the server could not compute it.
    pub checksum: Option<String>,
    /// False when the table changed while it was being dumped.
    pub stable: bool,
    /// The rows in the dump's own INSERT statements (records before this field have none,
    /// and so does a dump whose SQL the counter did not understand).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dump_rows: Option<u64>,
}

/// The record written beside a dump (`DUMP.dump.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DumpRecord {
    pub format: u32,
    pub target: String,
    pub database: String,
    pub server_version: String,
    pub tool: String,
    /// The SQL as the dump tool wrote it.
    pub sql_sha256: String,
    pub sql_size: u64,
    /// The compressed file.
    pub file_sha256: String,
    pub file_size: u64,
    pub dump_seconds: f64,
    pub tables: Vec<Table>,
}

pub fn record_path(dump: &Path) -> PathBuf {
    let mut s = dump.as_os_str().to_owned();
    s.push(".dump.json");
    PathBuf::from(s)
}

fn failed(what: impl std::fmt::Display) -> Error {
    Error::Failed(what.to_string())
}

/// Reads a child's piped stderr to its end on a thread of its own, so that the child never
/// blocks on a full pipe while its stdout is being read.
fn collect_stderr(child: &mut std::process::Child) -> std::thread::JoinHandle<String> {
    let mut stderr = child.stderr.take().expect("piped");
    std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    })
}

/// Finds the first client program of `names` that runs.
fn program(names: &[&str]) -> Result<String, Error> {
    for n in names {
        let ok = Command::new(n)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            return Ok(n.to_string());
        }
    }
    Err(failed(format!(
        "none of {} is installed (Debian: mariadb-client)",
        names.join(", ")
    )))
}

/// `name` quoted as an identifier.
fn ident(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

/// `s` quoted as a string literal.
fn literal(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "''"))
}

/// A database server named by a target.
#[derive(Clone)]
pub struct Server {
    pub name: String,
    target: Target,
    password: Option<String>,
}

impl Server {
    /// The mysql target named `target` (a `target` argument).
    pub fn named(target: Option<&str>, cx: &Context<'_>) -> Result<Server, Error> {
        let name = required(target, "target")?;
        let target = cx.targets.get(&name).ok_or_else(|| Error::Argument {
            name: "target",
            message: format!("`{name}` is not defined in sopkit.toml"),
        })?;
        if target.kind != TargetKind::Mysql {
            return Err(Error::Argument {
                name: "target",
                message: format!("`{name}` is not a mysql target"),
            });
        }
        let password = match &target.password_env {
            None => None,
            Some(var) => Some(std::env::var(var).map_err(|_| Error::Argument {
                name: "target",
                message: format!("`{name}` takes its password from ${var}, which is not set"),
            })?),
        };
        Ok(Server {
            name,
            target: target.clone(),
            password,
        })
    }

    /// A client program with this server's connection options.
    fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new(program);
        cmd.arg("--no-defaults");
        match (&self.target.socket, &self.target.host) {
            (Some(sock), None) => {
                cmd.arg(format!("--socket={sock}"));
            }
            (_, Some(host)) => {
                cmd.arg(format!("--host={host}")).arg("--protocol=TCP");
                if let Some(p) = self.target.port {
                    cmd.arg(format!("--port={p}"));
                }
            }
            (None, None) => {}
        }
        if let Some(u) = &self.target.user {
            cmd.arg(format!("--user={u}"));
        }
        match &self.password {
            Some(pw) => cmd.env("MYSQL_PWD", pw),
            None => cmd.env_remove("MYSQL_PWD"),
        };
        cmd
    }

    /// Runs SQL and returns the rows, tab-separated fields.
    fn query(&self, sql: &str) -> Result<Vec<Vec<String>>, Error> {
        let client = program(&["mariadb", "mysql"])?;
        let out = self
            .command(&client)
            .args(["--batch", "--skip-column-names", "--raw", "-e", sql])
            .stdin(Stdio::null())
            .output()
            .map_err(|e| failed(format!("{client}: {e}")))?;
        if !out.status.success() {
            return Err(failed(format!(
                "{} on `{}`: {}",
                client,
                self.name,
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        Ok(String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| l.split('\t').map(str::to_string).collect())
            .collect())
    }

    fn version(&self) -> Result<String, Error> {
        Ok(self
            .query("SELECT VERSION()")?
            .first()
            .and_then(|r| r.first().cloned())
            .unwrap_or_default())
    }

    /// The base tables of `db`, by name (asking for sizes too would open every table).
    fn list(&self, db: &str) -> Result<Vec<String>, Error> {
        Ok(self
            .query(&format!(
                "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = {} AND TABLE_TYPE = 'BASE TABLE' ORDER BY TABLE_NAME",
                literal(db)
            ))?
            .into_iter()
            .filter_map(|r| r.into_iter().next())
            .collect())
    }

    /// Runs `work` over `tables` dealt round-robin into `groups` groups, each on its own
    /// connection, so the server scans them in parallel.
    fn in_groups<T: Send>(
        &self,
        tables: &[String],
        groups: usize,
        work: impl Fn(&[String]) -> Result<T, Error> + Sync,
    ) -> Result<Vec<T>, Error> {
        let mut groups: Vec<Vec<String>> = vec![Vec::new(); groups.max(1)];
        let n = groups.len();
        for (i, name) in tables.iter().enumerate() {
            groups[i % n].push(name.clone());
        }
        std::thread::scope(|scope| {
            let handles: Vec<_> = groups
                .iter()
                .filter(|g| !g.is_empty())
                .map(|g| scope.spawn(|| work(g)))
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| Err(failed("counting tables stopped unexpectedly")))
                })
                .collect()
        })
    }

    /// Row counts and checksums of every base table of `db`, over `connections` connections.
    fn tables(&self, db: &str, connections: usize) -> Result<Vec<Table>, Error> {
        let listed = self.list(db)?;
        let (mut counts, mut sums) = (BTreeMap::new(), BTreeMap::new());
        for (c, s) in self.in_groups(&listed, connections, |g| {
            Ok((self.count_rows(db, g)?, self.checksum(db, g)?))
        })? {
            counts.extend(c);
            sums.extend(s);
        }
        Ok(listed
            .into_iter()
            .map(|n| Table {
                rows: counts.get(&n).copied().unwrap_or(0),
                checksum: sums.get(&n).filter(|c| *c != "NULL").cloned(),
                stable: true,
                dump_rows: None,
                name: n,
            })
            .collect())
    }

    /// The checksum of every base table of `db` (`None` where the server has none), without
    /// counting rows: one scan per table where [`Server::tables`] makes two.
    fn checksums(&self, db: &str) -> Result<BTreeMap<String, Option<String>>, Error> {
        let listed = self.list(db)?;
        let mut sums = BTreeMap::new();
        for s in self.in_groups(&listed, parallel_scans(), |g| self.checksum(db, g))? {
            sums.extend(s);
        }
        Ok(listed
            .into_iter()
            .map(|n| {
                let sum = sums.get(&n).filter(|c| *c != "NULL").cloned();
                (n, sum)
            })
            .collect())
    }

    /// Row counts of `names` in `db`, in one query.
    fn count_rows(&self, db: &str, names: &[String]) -> Result<BTreeMap<String, u64>, Error> {
        let counts = names
            .iter()
            .map(|t| {
                format!(
                    "SELECT {}, COUNT(*) FROM {}.{}",
                    literal(t),
                    ident(db),
                    ident(t)
                )
            })
            .collect::<Vec<_>>()
            .join(" UNION ALL ");
        Ok(self
            .query(&counts)?
            .into_iter()
            .filter_map(|r| Some((r.first()?.clone(), r.get(1)?.parse().ok()?)))
            .collect())
    }

    /// `CHECKSUM TABLE … EXTENDED` of `names` in `db`, as the server prints them.
    fn checksum(&self, db: &str, names: &[String]) -> Result<BTreeMap<String, String>, Error> {
        let list = names
            .iter()
            .map(|t| format!("{}.{}", ident(db), ident(t)))
            .collect::<Vec<_>>()
            .join(", ");
        Ok(self
            .query(&format!("CHECKSUM TABLE {list} EXTENDED"))?
            .into_iter()
            .filter_map(|r| {
                let full = r.first()?;
                let table = full.split_once('.').map_or(full.as_str(), |(_, t)| t);
                Some((table.to_string(), r.get(1)?.clone()))
            })
            .collect())
    }
}

/// Connections for a table scan when nothing else runs on the server for us: one per core,
/// at most four.
fn parallel_scans() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get().clamp(1, 4))
}

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
pub fn db_dump(args: &args::DbDump, cx: &mut Context<'_>) -> Result<Output, Error> {
    let server = Server::named(args.target.as_deref(), cx)?;
    let database = expanded(&args.database);
    let dest_arg = resolve(cx.root, &expanded(&args.dest));
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
    pipeline::widen_pipe(&stdout);
    let copied = pipeline::copy_chunks(&mut stdout, &mut sql);
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
pub fn restore_test(args: &args::RestoreTest, cx: &mut Context<'_>) -> Result<Output, Error> {
    let arg = expanded(&args.dump);
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
    let server = Server::named(Some(target), cx)?;
    let jobs = args.jobs.unwrap_or(DEFAULT_JOBS);
    let client = program(&["mariadb", "mysql"])?;
    // Only the dump its record describes is loaded: a changed file fails here, before any
    // of its SQL reaches a server (the SQL is hashed as it streams, which catches a change
    // made meanwhile).
    let (_, file_sha) = super::action::hash_path(&dump)?;
    if file_sha != record.file_sha256 {
        return super::action::conclude(
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
            pipeline::widen_pipe(&stdin);
            pipeline::copy_chunks(&mut sql, &mut stdin)?;
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
    super::action::conclude(cx.log, &failures, checks)
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

    #[test]
    fn identifiers_and_literals_are_quoted() {
        assert_eq!(ident("we`ird"), "`we``ird`");
        assert_eq!(literal("o'k\\"), "'o''k\\\\'");
    }
}
