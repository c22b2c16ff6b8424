//! Loading a dump over several client sessions at once, the way `myloader` does: the
//! INSERT statements of the dump go to whichever session is free, so a restore test uses
//! more than the one server thread a single `mariadb < dump.sql` keeps busy. The SQL is the
//! dump's own, statement for statement; what changes is only who sends which statement:
//!
//! - `SET` statements (session settings: character set, time zone, `unique_checks`, …) and
//!   the client's sandbox-mode line go to every session, in the dump's order;
//! - INSERT statements go to one free session each;
//! - everything else (DROP/CREATE TABLE, ALTER, views, the `DELIMITER` sections of triggers
//!   and routines) goes to the first session, after every INSERT before it has run and
//!   before any INSERT after it is sent;
//! - `LOCK TABLES`/`UNLOCK TABLES` are left out: a write lock held by one session would make
//!   the others wait, and InnoDB gains nothing from them.
//!
//! Hand-written: no crate splits MySQL dump output into statements as it streams, and only
//! the boundaries matter, which the client's own lexical rules give (see [`Splitter`]).

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{ChildStdin, ChildStdout};
use std::sync::mpsc;

use crate::run::stream as pipeline;

/// What a piece of the dump is, for the sessions that load it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// An INSERT statement: any one session.
    Data,
    /// A session setting: every session.
    Session,
    /// Anything else: the first session, with nothing else running.
    Serial,
    /// Comments and table locks: no session.
    Skip,
}

const INSERT: &[u8] = b"INSERT INTO `";
const DELIMITER: &[u8] = b"DELIMITER ";
const SANDBOX: &[u8] = b"/*M!999999\\-";
/// Longer statements are refused rather than held in memory; the dump tool's own limit
/// (`net_buffer_length`, 1 MiB by default, 16 MiB at most) keeps its statements far below.
pub(crate) const MAX_STATEMENT: usize = 256 << 20;

/// Cuts a dump's SQL, as it streams, into statements of the kinds above; every byte lands in
/// exactly one piece, in order.
///
/// A statement ends where the client ends it: at the first `;` outside quoted strings
/// (`'…'`, `"…"`, with backslash escapes), quoted names (`` `…` ``) and comments (`/* … */`,
/// `-- …`, `# …`; `/*!…*/` is SQL for the server, not a comment). Its piece runs on to the end
/// of that line. Between statements, the client's own commands (`DELIMITER`, the sandbox
/// line) take whole lines, and a `DELIMITER ;;` section (trigger and routine bodies) runs to
/// `DELIMITER ;`. Splitting where the client does matters: a session is only known to be
/// done when it prints a marker sent after a whole statement.
#[derive(Default)]
pub(crate) struct Splitter {
    /// The piece being collected; bytes after `pos` are not looked at yet.
    piece: Vec<u8>,
    pos: usize,
    /// Where the current line starts in `piece`.
    line: usize,
    state: State,
}

#[derive(Default, Clone, Copy)]
enum State {
    /// Between statements (`piece` holds blank and comment lines at most).
    #[default]
    Text,
    /// Inside a `DELIMITER` section other than `;`.
    Delimited,
    /// In a statement (an INSERT when `data`), before its closing `;`.
    Statement { lex: Lex, data: bool },
    /// After a statement's `;`, up to the end of its line.
    Tail { data: bool },
}

/// Where a scan of a statement stands.
#[derive(Default, Clone, Copy)]
enum Lex {
    #[default]
    Code,
    /// In a string quoted with this byte (`'` or `"`), or a name quoted with a backtick.
    Quoted(u8),
    /// Just after a backslash in a string quoted with this byte.
    Escaped(u8),
    /// In a `/* … */` comment.
    Block,
    /// In a `-- …` or `# …` comment, up to the end of the line.
    Line,
}

/// The offset of the `;` that ends the statement in `buf[from..]`: `Ok` with it, or `Err`
/// with where to go on once more bytes have come (a `-` or `/` at the end of `buf` may start
/// a comment).
fn statement_end(buf: &[u8], from: usize, lex: &mut Lex) -> Result<usize, usize> {
    let mut i = from;
    while i < buf.len() {
        match *lex {
            Lex::Code => {
                match buf[i] {
                    b';' => return Ok(i),
                    q @ (b'\'' | b'"' | b'`') => *lex = Lex::Quoted(q),
                    b'#' => *lex = Lex::Line,
                    b'-' if buf.get(i + 1) == Some(&b'-') => match buf.get(i + 2) {
                        None => return Err(i),
                        Some(c) if c.is_ascii_whitespace() || c.is_ascii_control() => {
                            *lex = Lex::Line
                        }
                        Some(_) => {}
                    },
                    b'-' if i + 1 == buf.len() => return Err(i),
                    b'/' if buf.get(i + 1) == Some(&b'*') => match (buf.get(i + 2), buf.get(i + 3))
                    {
                        (None, _) | (Some(b'M'), None) => return Err(i),
                        (Some(b'!'), _) | (Some(b'M'), Some(b'!')) => {}
                        _ => {
                            *lex = Lex::Block;
                            i += 1;
                        }
                    },
                    b'/' if i + 1 == buf.len() => return Err(i),
                    _ => {}
                }
                i += 1;
            }
            Lex::Quoted(q) => {
                let at = if q == b'`' {
                    memchr::memchr(q, &buf[i..])
                } else {
                    memchr::memchr2(b'\\', q, &buf[i..])
                };
                let Some(at) = at.map(|at| i + at) else {
                    return Err(buf.len());
                };
                *lex = if buf[at] == q {
                    Lex::Code
                } else {
                    Lex::Escaped(q)
                };
                i = at + 1;
            }
            Lex::Escaped(q) => {
                *lex = Lex::Quoted(q);
                i += 1;
            }
            Lex::Block => match memchr::memchr(b'*', &buf[i..]).map(|at| i + at) {
                None => return Err(buf.len()),
                Some(at) if at + 1 == buf.len() => return Err(at),
                Some(at) if buf[at + 1] == b'/' => {
                    *lex = Lex::Code;
                    i = at + 2;
                }
                Some(at) => i = at + 1,
            },
            Lex::Line => match memchr::memchr(b'\n', &buf[i..]) {
                None => return Err(buf.len()),
                Some(at) => {
                    *lex = Lex::Code;
                    i += at + 1;
                }
            },
        }
    }
    Err(buf.len())
}

/// A blank line, or one that holds only a comment.
fn is_comment_line(line: &[u8]) -> bool {
    let l = line.trim_ascii();
    l.is_empty()
        || l.starts_with(b"#")
        || (l.starts_with(b"--") && l.get(2).is_none_or(|c| c.is_ascii_whitespace()))
}

type Out<'a> = dyn FnMut(Kind, Vec<u8>) -> std::io::Result<()> + 'a;

impl Splitter {
    /// Takes the next bytes of the SQL; `out` receives each piece as it is complete.
    pub(crate) fn feed(&mut self, bytes: &[u8], out: &mut Out<'_>) -> std::io::Result<()> {
        self.piece.extend_from_slice(bytes);
        while self.step(out)? {}
        if self.piece.len() > MAX_STATEMENT {
            return Err(std::io::Error::other(format!(
                "a statement longer than {} MiB; restore this dump with `jobs: 1`",
                MAX_STATEMENT >> 20
            )));
        }
        Ok(())
    }

    /// The SQL has ended: the last piece, whatever it holds.
    pub(crate) fn finish(mut self, out: &mut Out<'_>) -> std::io::Result<()> {
        if self.piece.is_empty() {
            return Ok(());
        }
        let kind = match self.state {
            State::Text => classify(&self.piece),
            State::Tail { data: true } => Kind::Data,
            State::Tail { data: false } => classify(&self.piece),
            // Cut inside a statement: the client says what it makes of it.
            State::Statement { .. } | State::Delimited => Kind::Serial,
        };
        out(kind, std::mem::take(&mut self.piece))
    }

    /// Looks at the bytes after `pos`; false when it needs more of them.
    fn step(&mut self, out: &mut Out<'_>) -> std::io::Result<bool> {
        match self.state {
            State::Statement { mut lex, data } => {
                match statement_end(&self.piece, self.pos, &mut lex) {
                    Ok(at) => {
                        self.pos = at + 1;
                        self.state = State::Tail { data };
                    }
                    Err(at) => {
                        self.pos = at;
                        self.state = State::Statement { lex, data };
                        return Ok(false);
                    }
                }
                Ok(true)
            }
            State::Tail { .. } | State::Text | State::Delimited => {
                let Some(nl) = memchr::memchr(b'\n', &self.piece[self.pos..]) else {
                    self.pos = self.piece.len();
                    return Ok(false);
                };
                let end = self.pos + nl + 1;
                self.pos = end;
                match self.state {
                    State::Tail { data } => {
                        self.state = State::Text;
                        let kind = if data {
                            Kind::Data
                        } else {
                            classify(&self.piece[..end])
                        };
                        self.emit(end, kind, out)?;
                    }
                    _ => self.end_of_line(end, out)?,
                }
                Ok(true)
            }
        }
    }

    /// Hands on `piece[..end]`; the rest starts the next piece.
    fn emit(&mut self, end: usize, kind: Kind, out: &mut Out<'_>) -> std::io::Result<()> {
        let rest = self.piece.split_off(end);
        let piece = std::mem::replace(&mut self.piece, rest);
        self.pos -= end;
        self.line = 0;
        if piece.is_empty() {
            return Ok(());
        }
        out(kind, piece)
    }

    /// A whole line, `piece[line..end]`, between statements or in a `DELIMITER` section.
    fn end_of_line(&mut self, end: usize, out: &mut Out<'_>) -> std::io::Result<()> {
        let line = &self.piece[self.line..end];
        let delimiter = line.strip_prefix(DELIMITER).map(|d| d.trim_ascii() == b";");
        if let State::Delimited = self.state {
            if delimiter == Some(true) {
                self.state = State::Text;
                return self.emit(end, Kind::Serial, out);
            }
            self.line = end;
            return Ok(());
        }
        if is_comment_line(line) {
            self.line = end;
            return Ok(());
        }
        // The blank and comment lines before this one go their own way.
        let start = self.line;
        self.emit(start, Kind::Skip, out)?;
        let end = end - start;
        match delimiter {
            Some(true) => return self.emit(end, Kind::Serial, out),
            Some(false) => {
                self.state = State::Delimited;
                self.line = end;
                return Ok(());
            }
            None => {}
        }
        if self.piece.starts_with(SANDBOX) {
            // The client's sandbox mode (no shell or file commands) in every session.
            return self.emit(end, Kind::Session, out);
        }
        let data = self.piece.starts_with(INSERT);
        let mut lex = Lex::Code;
        match statement_end(&self.piece, 0, &mut lex) {
            // The line ends the statement.
            Ok(at) if at < end => {
                let kind = if data {
                    Kind::Data
                } else {
                    classify(&self.piece[..end])
                };
                self.emit(end, kind, out)
            }
            Ok(at) => {
                self.pos = at + 1;
                self.state = State::Tail { data };
                Ok(())
            }
            Err(at) => {
                self.pos = at;
                self.state = State::Statement { lex, data };
                Ok(())
            }
        }
    }
}

/// The kind of a piece that is not an INSERT: one statement after any comment lines.
fn classify(piece: &[u8]) -> Kind {
    let mut rest = piece;
    loop {
        rest = rest.trim_ascii_start();
        if rest.starts_with(b"--") || rest.starts_with(b"#") {
            rest = memchr::memchr(b'\n', rest).map_or(&[][..], |at| &rest[at + 1..]);
        } else {
            break;
        }
    }
    if rest.is_empty() {
        return Kind::Skip;
    }
    // `/*!40101 SET … */`: a statement for servers of that version or later.
    for open in [&b"/*!"[..], b"/*M!"] {
        if let Some(r) = rest.strip_prefix(open) {
            rest = r.trim_ascii_start();
            let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
            rest = rest[digits..].trim_ascii_start();
        }
    }
    let starts = |word: &[u8]| {
        rest.len() > word.len()
            && rest[..word.len()].eq_ignore_ascii_case(word)
            && rest[word.len()].is_ascii_whitespace()
    };
    if starts(b"SET") {
        // `SET @@GLOBAL.…` (GTID_PURGED in a MySQL dump) is for the server, once.
        let global = piece.windows(6).any(|w| w.eq_ignore_ascii_case(b"GLOBAL"));
        return if global { Kind::Serial } else { Kind::Session };
    }
    if starts(b"LOCK") || starts(b"UNLOCK") {
        return Kind::Skip;
    }
    Kind::Serial
}

/// What a session is asked to do.
enum Msg {
    /// Send an INSERT, then report being free.
    Data(Vec<u8>),
    /// Send other SQL.
    Text(Vec<u8>),
    /// Wait until everything sent so far has run; answer whether it did.
    Sync(mpsc::Sender<Result<(), String>>),
}

/// One client session: its stdin, and its stdout, where only the markers of [`sync`] appear.
pub(crate) struct Pipes {
    pub pid: u32,
    pub stdin: ChildStdin,
    pub stdout: ChildStdout,
}

/// Feeds `sql` to the sessions as described at the top of this module. Returns once every
/// piece was handed on and every session's stdin is closed; an error when `sql` could not
/// be read or a session stopped taking statements (its client then says why on stderr).
pub(crate) fn feed(sql: &mut impl Read, sessions: Vec<Pipes>) -> std::io::Result<()> {
    let (ready_tx, ready_rx) = mpsc::channel();
    std::thread::scope(|scope| {
        let mut queues = Vec::new();
        for (id, pipes) in sessions.into_iter().enumerate() {
            pipeline::widen_pipe(&pipes.stdin);
            // Two queued pieces per session: enough to keep it busy, little memory.
            let (tx, rx) = mpsc::sync_channel(2);
            queues.push(tx);
            let ready = ready_tx.clone();
            let _ = ready.send(id);
            scope.spawn(move || session(id, pipes, rx, ready));
        }
        drop(ready_tx);
        let mut dispatch = Dispatch {
            queues,
            ready: ready_rx,
            serial_pending: false,
            data_pending: false,
            filled: std::collections::HashSet::new(),
        };
        let mut splitter = Splitter::default();
        let mut buf = Vec::new();
        let mut give = |kind, piece| dispatch.give(kind, piece);
        while pipeline::fill(sql, &mut buf)? > 0 {
            splitter.feed(&buf, &mut give)?;
        }
        splitter.finish(&mut give)
        // Leaving the scope drops the queues: each session sends what it holds, closes its
        // stdin and ends.
    })
}

struct Dispatch {
    queues: Vec<mpsc::SyncSender<Msg>>,
    /// Sessions that finished sending their last INSERT.
    ready: mpsc::Receiver<usize>,
    /// The first session was sent serial SQL not yet known to have run.
    serial_pending: bool,
    /// INSERTs were sent that are not yet known to have run.
    data_pending: bool,
    /// Tables whose first INSERT has run.
    filled: std::collections::HashSet<Vec<u8>>,
}

/// The table an INSERT piece names, quoted as it is (it starts with `INSERT INTO \``).
fn table_name(piece: &[u8]) -> &[u8] {
    let name = &piece[INSERT.len().min(piece.len())..];
    let mut i = 0;
    while let Some(at) = memchr::memchr(b'`', &name[i..]) {
        if name.get(i + at + 1) == Some(&b'`') {
            i += at + 2;
        } else {
            return &name[..i + at];
        }
    }
    name
}

const STOPPED: &str = "a loading session stopped taking statements";

fn stopped() -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::BrokenPipe, STOPPED)
}

fn broken(e: std::io::Error) -> String {
    format!("{STOPPED}: {e}")
}

impl Dispatch {
    fn give(&mut self, kind: Kind, piece: Vec<u8>) -> std::io::Result<()> {
        match kind {
            Kind::Skip => Ok(()),
            Kind::Session => {
                for q in &self.queues {
                    q.send(Msg::Text(piece.clone())).map_err(|_| stopped())?;
                }
                Ok(())
            }
            Kind::Serial => {
                if self.data_pending {
                    self.sync(self.queues.len())?;
                    self.data_pending = false;
                }
                self.queues[0]
                    .send(Msg::Text(piece))
                    .map_err(|_| stopped())?;
                self.serial_pending = true;
                Ok(())
            }
            Kind::Data => {
                let table = table_name(&piece);
                if !self.filled.contains(table) {
                    // Into an empty table under the dump's `unique_checks=0,
                    // foreign_key_checks=0`, MariaDB inserts in bulk under a table lock: two
                    // sessions doing that at once deadlock. So a table's first INSERT runs
                    // alone, on the first session, and the rest find the table not empty.
                    self.filled.insert(table.to_vec());
                    self.queues[0]
                        .send(Msg::Text(piece))
                        .map_err(|_| stopped())?;
                    self.sync(1)?;
                    self.serial_pending = false;
                    return Ok(());
                }
                if self.serial_pending {
                    self.sync(1)?;
                    self.serial_pending = false;
                }
                let id = self.ready.recv().map_err(|_| stopped())?;
                self.queues[id]
                    .send(Msg::Data(piece))
                    .map_err(|_| stopped())?;
                self.data_pending = true;
                Ok(())
            }
        }
    }

    /// Waits until the first `n` sessions have run everything sent to them.
    fn sync(&self, n: usize) -> std::io::Result<()> {
        let (tx, rx) = mpsc::channel();
        for q in &self.queues[..n] {
            q.send(Msg::Sync(tx.clone())).map_err(|_| stopped())?;
        }
        drop(tx);
        let mut answers = 0;
        for answer in rx {
            answer.map_err(std::io::Error::other)?;
            answers += 1;
        }
        if answers == n { Ok(()) } else { Err(stopped()) }
    }
}

/// One session's thread: sends what it is given, in order. After a write fails it keeps
/// taking messages (so the dispatcher never waits on it) and answers every sync with why.
fn session(id: usize, pipes: Pipes, rx: mpsc::Receiver<Msg>, ready: mpsc::Sender<usize>) {
    let Pipes {
        pid,
        mut stdin,
        stdout,
    } = pipes;
    let mut stdout = BufReader::new(stdout);
    let mut state: Result<(), String> = Ok(());
    let mut marker = 0u64;
    for msg in rx {
        match msg {
            Msg::Data(piece) => {
                if state.is_ok() {
                    state = stdin.write_all(&piece).map_err(broken);
                }
                let _ = ready.send(id);
            }
            Msg::Text(piece) => {
                if state.is_ok() {
                    state = stdin.write_all(&piece).map_err(broken);
                }
            }
            Msg::Sync(answer) => {
                marker += 1;
                if state.is_ok() {
                    state = sync(pid, &mut stdin, &mut stdout, marker);
                }
                let _ = answer.send(state.clone());
            }
        }
    }
}

/// Asks the client to print a marker and waits for it: the client runs statements in order,
/// so everything sent before has run once the marker arrives (it runs `--unbuffered`). A
/// client that took the marker into a statement it thinks unfinished would never print it:
/// one found waiting for input with nothing left to read, three seconds running, fails.
fn sync(
    pid: u32,
    stdin: &mut ChildStdin,
    stdout: &mut BufReader<ChildStdout>,
    n: u64,
) -> Result<(), String> {
    let marker = format!("sopkit-sync-{n}");
    // On a line of its own, whatever the last piece ended with.
    stdin
        .write_all(format!("\nSELECT '{marker}';\n").as_bytes())
        .map_err(broken)?;
    let mut line = String::new();
    let mut idle = 0;
    loop {
        if stdout.buffer().is_empty() && !readable(stdout.get_ref(), 1000) {
            idle = if waiting_for_input(pid, stdin) {
                idle + 1
            } else {
                0
            };
            if idle == 3 {
                return Err(format!(
                    "the client (pid {pid}) waits for the rest of a statement the dump does not finish where sopkit expected; restore this dump with `jobs: 1`"
                ));
            }
            continue;
        }
        line.clear();
        match stdout.read_line(&mut line) {
            Ok(0) => return Err("a loading session ended early".into()),
            Ok(_) if line.trim_end() == marker => return Ok(()),
            Ok(_) => {}
            Err(e) => return Err(format!("reading a loading session: {e}")),
        }
    }
}

/// Whether `fd` has something to read within `ms` milliseconds.
fn readable(fd: &impl std::os::fd::AsFd, ms: i32) -> bool {
    use rustix::event::{PollFd, PollFlags, Timespec};
    let mut fds = [PollFd::new(fd, PollFlags::IN)];
    let timeout = Timespec {
        tv_sec: i64::from(ms / 1000),
        tv_nsec: i64::from(ms % 1000) * 1_000_000,
    };
    // An error (an interrupted wait) counts as readable, as poll's -1 did: the caller then
    // reads and finds out.
    rustix::event::poll(&mut fds, Some(&timeout)) != Ok(0)
}

/// Whether process `pid` is blocked reading its stdin (`/proc/PID/syscall` names the system
/// call and its first argument) while the pipe to it is empty.
fn waiting_for_input(pid: u32, stdin: &ChildStdin) -> bool {
    let reading = std::fs::read_to_string(format!("/proc/{pid}/syscall"))
        .is_ok_and(|s| s.starts_with("0 0x0 "));
    // A pipe's write end answers FIONREAD like its read end.
    let queued = rustix::io::ioctl_fionread(stdin);
    reading && queued.is_ok_and(|n| n == 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A dump as `mariadb-dump --single-transaction --routines --triggers` writes it
    /// (shortened), with a string holding `;`, a quote, a backslash and a parenthesis.
    const DUMP: &str = "/*M!999999\\- enable the sandbox mode */ \n\
-- MariaDB dump 10.19\n\
--\n\
\n\
/*!40101 SET NAMES utf8mb4 */;\n\
/*!40014 SET @OLD_UNIQUE_CHECKS=@@UNIQUE_CHECKS, UNIQUE_CHECKS=0 */;\n\
\n\
--\n\
-- Table structure for table `a`\n\
--\n\
\n\
DROP TABLE IF EXISTS `a`;\n\
CREATE TABLE `a` (\n\
  `id` int(11) NOT NULL,\n\
  `s` varchar(20) DEFAULT NULL,\n\
  PRIMARY KEY (`id`)\n\
) ENGINE=InnoDB;\n\
\n\
LOCK TABLES `a` WRITE;\n\
/*!40000 ALTER TABLE `a` DISABLE KEYS */;\n\
INSERT INTO `a` VALUES\n\
(1,'x;y'),\n\
(2,'it\\'s \\\\'),\n\
(3,'(;\n');\n\
INSERT INTO `a` VALUES (4,';'),(5,NULL);\n\
/*!40000 ALTER TABLE `a` ENABLE KEYS */;\n\
UNLOCK TABLES;\n\
/*!50003 SET sql_mode              = 'STRICT_TRANS_TABLES' */ ;\n\
DELIMITER ;;\n\
/*!50003 CREATE*/ /*!50003 TRIGGER tb BEFORE INSERT ON a FOR EACH ROW\n\
INSERT INTO `b` VALUES (NEW.id);\n\
*/;;\n\
DELIMITER ;\n\
/*!50001 CREATE VIEW `v` AS SELECT\n\
 NULL AS `id` */;\n\
SET @@GLOBAL.GTID_PURGED='';\n\
-- Dump completed\n";

    fn split(sql: &[u8], chunk: usize) -> Vec<(Kind, String)> {
        let mut pieces = Vec::new();
        let mut out = |k, p: Vec<u8>| {
            pieces.push((k, String::from_utf8(p).unwrap()));
            Ok(())
        };
        let mut s = Splitter::default();
        for c in sql.chunks(chunk.max(1)) {
            s.feed(c, &mut out).unwrap();
        }
        s.finish(&mut out).unwrap();
        pieces
    }

    #[test]
    fn a_dump_is_cut_into_statements_of_the_right_kinds() {
        let pieces = split(DUMP.as_bytes(), DUMP.len());
        let seen: Vec<(Kind, &str)> = pieces
            .iter()
            .map(|(k, p)| (*k, p.trim().lines().last().unwrap_or("")))
            .collect();
        use Kind::*;
        assert_eq!(
            seen,
            [
                (Session, "/*M!999999\\- enable the sandbox mode */"),
                (Skip, "--"),
                (Session, "/*!40101 SET NAMES utf8mb4 */;"),
                (
                    Session,
                    "/*!40014 SET @OLD_UNIQUE_CHECKS=@@UNIQUE_CHECKS, UNIQUE_CHECKS=0 */;"
                ),
                (Skip, "--"),
                (Serial, "DROP TABLE IF EXISTS `a`;"),
                (Serial, ") ENGINE=InnoDB;"),
                (Skip, ""),
                (Skip, "LOCK TABLES `a` WRITE;"),
                (Serial, "/*!40000 ALTER TABLE `a` DISABLE KEYS */;"),
                (Data, "');"),
                (Data, "INSERT INTO `a` VALUES (4,';'),(5,NULL);"),
                (Serial, "/*!40000 ALTER TABLE `a` ENABLE KEYS */;"),
                (Skip, "UNLOCK TABLES;"),
                (
                    Session,
                    "/*!50003 SET sql_mode              = 'STRICT_TRANS_TABLES' */ ;"
                ),
                (Serial, "DELIMITER ;"),
                (Serial, "NULL AS `id` */;"),
                (Serial, "SET @@GLOBAL.GTID_PURGED='';"),
                (Skip, "-- Dump completed"),
            ]
        );
        // The first INSERT runs to the `;` after its string that holds a newline.
        assert!(
            pieces[10].1.ends_with("(3,'(;\n');\n"),
            "{:?}",
            pieces[10].1
        );
        // The INSERT inside the trigger stays in the DELIMITER section.
        assert!(pieces[15].1.contains("INSERT INTO `b` VALUES (NEW.id);"));
    }

    #[test]
    fn every_byte_lands_in_one_piece_whatever_the_chunks() {
        let whole = split(DUMP.as_bytes(), DUMP.len());
        for chunk in 1..DUMP.len() {
            let pieces = split(DUMP.as_bytes(), chunk);
            assert_eq!(pieces, whole, "chunks of {chunk}");
        }
        let joined: String = whole.iter().map(|(_, p)| p.as_str()).collect();
        assert_eq!(joined, DUMP);
    }

    #[test]
    fn an_insert_on_one_long_line_ends_at_its_semicolon() {
        let sql = "INSERT INTO `t` VALUES (1,'a'),(2,'b;');INSERT INTO `t` VALUES (3,'c');\nDROP TABLE x;\n";
        let pieces = split(sql.as_bytes(), 7);
        let kinds: Vec<Kind> = pieces.iter().map(|(k, _)| *k).collect();
        // The rest of the line goes with the first INSERT: a dump never writes two
        // statements on one line, and any one session may run both.
        assert_eq!(kinds, [Kind::Data, Kind::Serial]);
        assert_eq!(pieces[1].1, "DROP TABLE x;\n");
    }

    #[test]
    fn a_statement_ends_at_a_semicolon_outside_strings_names_and_comments() {
        let sql = "CREATE TABLE `t;` (a int COMMENT 'x;y\\';', b int /* ; */, c int -- ;\n, \
                   d int # ;\n, e varchar(3) DEFAULT \"q;\\\"\") ;\n\
                   /*!40101 SET x=1 */;\n\
                   INSERT INTO `t;` VALUES (1,'-- ;'),(2,\"/* ;\"); -- done\n";
        for chunk in 1..sql.len() {
            let pieces = split(sql.as_bytes(), chunk);
            let kinds: Vec<Kind> = pieces.iter().map(|(k, _)| *k).collect();
            assert_eq!(
                kinds,
                [Kind::Serial, Kind::Session, Kind::Data],
                "chunks of {chunk}"
            );
            assert!(pieces[0].1.ends_with("\") ;\n"), "{pieces:?}");
            assert!(pieces[2].1.ends_with("-- done\n"), "{pieces:?}");
        }
    }

    #[test]
    fn sql_cut_inside_a_statement_is_still_handed_on() {
        let sql = "CREATE TABLE t (\n  id int,\n";
        assert_eq!(split(sql.as_bytes(), 3), [(Kind::Serial, sql.to_string())]);
        let sql = "INSERT INTO `t` VALUES (1,'a;";
        assert_eq!(split(sql.as_bytes(), 3), [(Kind::Serial, sql.to_string())]);
    }

    #[test]
    fn the_table_of_an_insert_is_read_with_doubled_backticks() {
        assert_eq!(table_name(b"INSERT INTO `a` VALUES (1);"), b"a");
        assert_eq!(table_name(b"INSERT INTO `we``ird` VALUES"), b"we``ird");
        assert_eq!(table_name(b"INSERT INTO `cut"), b"cut");
    }

    #[test]
    fn set_statements_are_told_from_others() {
        assert_eq!(classify(b"-- x\n#y\n  set names utf8;\n"), Kind::Session);
        assert_eq!(
            classify(b"/*!50503 SET character_set_client = utf8mb4 */;"),
            Kind::Session
        );
        assert_eq!(classify(b"SET @@GLOBAL.GTID_PURGED='x';"), Kind::Serial);
        assert_eq!(classify(b"SETTINGS;"), Kind::Serial);
        assert_eq!(classify(b"unlock tables;"), Kind::Skip);
        assert_eq!(classify(b"-- only a comment;\n"), Kind::Skip);
        assert_eq!(
            classify(b"/*!40000 ALTER TABLE `a` DISABLE KEYS */;"),
            Kind::Serial
        );
    }

    proptest::proptest! {
        /// Any bytes, cut anywhere: no panic, and nothing lost or repeated.
        #[test]
        fn any_bytes_in_any_chunks(
            parts in proptest::collection::vec(
                proptest::prop_oneof![
                    proptest::strategy::Just("INSERT INTO `t` VALUES ".to_string()),
                    proptest::strategy::Just("DELIMITER ;;\n".to_string()),
                    proptest::strategy::Just("DELIMITER ;\n".to_string()),
                    proptest::strategy::Just("SET x=1;\n".to_string()),
                    "[ -~\n';\\\\()]{0,12}",
                ],
                0..24,
            ),
            chunk in 1usize..40,
        ) {
            let sql = parts.concat();
            let pieces = split(sql.as_bytes(), chunk);
            let joined: String = pieces.iter().map(|(_, p)| p.as_str()).collect();
            proptest::prop_assert_eq!(&joined, &sql);
            proptest::prop_assert_eq!(pieces, split(sql.as_bytes(), sql.len()));
        }
    }
}
