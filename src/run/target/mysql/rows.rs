//! Rows per table in the SQL a dump tool writes, counted as it streams past: the rows of the
//! dump itself, which a restore test can compare with the restored tables even when a table
//! changed while it was being dumped (its checksum then says nothing about the dump).
//!
//! Hand-written: no crate reads MySQL dump output as a stream, and only a sliver of it
//! matters: lines that begin `INSERT INTO `name` VALUES`, outside the `DELIMITER ;;`
//! sections that hold triggers and routines (whose bodies may contain INSERTs). In the
//! values, a row is a `(` at nesting depth zero outside a quoted string. Strings are
//! single-quoted with backslash escapes (the dump tool clears `SQL_MODE` on its connection,
//! so NO_BACKSLASH_ESCAPES never applies) and binary columns are hex (`--hex-blob`). Anything
//! else at the start of an INSERT makes the count unknown rather than wrong.

use std::collections::BTreeMap;

const INSERT: &[u8] = b"INSERT INTO `";
const DELIMITER: &[u8] = b"DELIMITER ";
const VALUES: &[u8] = b" VALUES";

#[derive(Default)]
pub(crate) struct RowCounter {
    state: State,
    /// The first bytes of the current line, while they may still begin a statement that
    /// matters here.
    head: Vec<u8>,
    /// Inside a `DELIMITER` section other than `;`.
    delimited: bool,
    /// An INSERT this counter does not understand was seen: the counts are unknown.
    unsure: bool,
    rows: BTreeMap<String, u64>,
}

#[derive(Default)]
enum State {
    /// At the start of a line, collecting `head`.
    #[default]
    LineStart,
    /// In a line that does not matter here, up to its end.
    Skip,
    /// In a `DELIMITER` line, up to its end (`head` holds it).
    Delimiter,
    /// In the backtick-quoted name after `INSERT INTO`; `tick` when the last byte was a
    /// backtick that may be the first of a doubled one.
    Name { name: Vec<u8>, tick: bool },
    /// After the name: the bytes of ` VALUES` matched so far.
    Keyword { table: String, matched: usize },
    /// In the values of `table`, `rows` of them counted so far in this statement.
    Values {
        table: String,
        rows: u64,
        depth: u32,
        quoted: bool,
        escaped: bool,
    },
}

impl RowCounter {
    pub(crate) fn feed(&mut self, bytes: &[u8]) {
        let mut i = 0;
        while i < bytes.len() {
            let b = bytes[i];
            i += 1;
            self.state = match std::mem::take(&mut self.state) {
                State::LineStart => self.line_start(b),
                State::Skip => match memchr::memchr(b'\n', &bytes[i - 1..]) {
                    Some(at) => {
                        i += at;
                        State::LineStart
                    }
                    None => {
                        i = bytes.len();
                        State::Skip
                    }
                },
                State::Delimiter if b == b'\n' => {
                    let delimiter = self.head[DELIMITER.len()..].trim_ascii();
                    self.delimited = delimiter != b";";
                    self.head.clear();
                    State::LineStart
                }
                State::Delimiter => {
                    self.head.push(b);
                    State::Delimiter
                }
                State::Name { mut name, tick } => match (b, tick) {
                    (b'`', false) => State::Name { name, tick: true },
                    (b'`', true) => {
                        name.push(b'`');
                        State::Name { name, tick: false }
                    }
                    (_, true) => {
                        let table = String::from_utf8_lossy(&name).into_owned();
                        self.keyword(table, 0, b)
                    }
                    (_, false) => {
                        name.push(b);
                        State::Name { name, tick: false }
                    }
                },
                State::Keyword { table, matched } => self.keyword(table, matched, b),
                State::Values {
                    table,
                    mut rows,
                    mut depth,
                    mut quoted,
                    mut escaped,
                } => {
                    if quoted {
                        if escaped {
                            escaped = false;
                        } else if b == b'\\' {
                            escaped = true;
                        } else if b == b'\'' {
                            quoted = false;
                        } else {
                            // Straight on to the next byte that can end or escape the string.
                            i = memchr::memchr2(b'\\', b'\'', &bytes[i..])
                                .map_or(bytes.len(), |at| i + at);
                        }
                    } else {
                        match b {
                            b'\'' => quoted = true,
                            b'(' => {
                                rows += u64::from(depth == 0);
                                depth += 1;
                            }
                            b')' => depth = depth.saturating_sub(1),
                            _ => {}
                        }
                    }
                    if !quoted && b == b';' && depth == 0 {
                        // The end of the statement; the rest of its line is skipped.
                        *self.rows.entry(table).or_default() += rows;
                        State::Skip
                    } else {
                        State::Values {
                            table,
                            rows,
                            depth,
                            quoted,
                            escaped,
                        }
                    }
                }
            };
        }
    }

    fn line_start(&mut self, b: u8) -> State {
        if b == b'\n' {
            self.head.clear();
            return State::LineStart;
        }
        self.head.push(b);
        let head = self.head.as_slice();
        if head == INSERT && !self.delimited {
            self.head.clear();
            return State::Name {
                name: Vec::new(),
                tick: false,
            };
        }
        if head == DELIMITER {
            return State::Delimiter;
        }
        if INSERT.starts_with(head) || DELIMITER.starts_with(head) {
            return State::LineStart;
        }
        self.head.clear();
        State::Skip
    }

    /// `b` follows the table name and the first `matched` bytes of ` VALUES`.
    fn keyword(&mut self, table: String, matched: usize, b: u8) -> State {
        if b == VALUES[matched] {
            if matched + 1 == VALUES.len() {
                return State::Values {
                    table,
                    rows: 0,
                    depth: 0,
                    quoted: false,
                    escaped: false,
                };
            }
            return State::Keyword {
                table,
                matched: matched + 1,
            };
        }
        // A column list, `INSERT IGNORE`-style options or anything else: not counted.
        self.unsure = true;
        State::Skip
    }

    /// The rows of every table that has an INSERT in the dump; `None` when the counts are
    /// unknown (an INSERT not understood, or the SQL ends inside one).
    pub(crate) fn finish(self) -> Option<BTreeMap<String, u64>> {
        let inside = matches!(
            self.state,
            State::Name { .. } | State::Keyword { .. } | State::Values { .. }
        );
        (!self.unsure && !inside).then_some(self.rows)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(sql: &str) -> Option<BTreeMap<String, u64>> {
        let mut c = RowCounter::default();
        c.feed(sql.as_bytes());
        c.finish()
    }

    fn rows(pairs: &[(&str, u64)]) -> Option<BTreeMap<String, u64>> {
        Some(pairs.iter().map(|(t, n)| (t.to_string(), *n)).collect())
    }

    /// A dump in the shape `mariadb-dump` writes, with strings that look like SQL.
    const DUMP: &str = "-- MariaDB dump\n\
/*!40101 SET NAMES utf8mb4 */;\n\
DROP TABLE IF EXISTS `items`;\n\
CREATE TABLE `items` (\n  `id` int(11) NOT NULL,\n  `name` varchar(64) DEFAULT NULL\n);\n\
LOCK TABLES `items` WRITE;\n\
INSERT INTO `items` VALUES\n(1,'a (b) c'),\n(2,'it\\'s; (x'),\n(3,'back\\\\'),\n(4,'two''quotes ('),\n(5,NULL);\n\
UNLOCK TABLES;\n\
INSERT INTO `odd``name` VALUES (1,0x2829),(2,'\\n-- INSERT INTO `items` VALUES (9)');\n\
DELIMITER ;;\n\
/*!50003 CREATE*/ /*!50003 TRIGGER t AFTER INSERT ON items FOR EACH ROW BEGIN\n\
INSERT INTO `items` VALUES (100,'not a row of the dump');\n\
END */;;\n\
DELIMITER ;\n\
INSERT INTO `items` VALUES (6,'six');\n\
INSERT INTO `empty` VALUES ;\n\
-- Dump completed\n";

    #[test]
    fn rows_are_counted_per_table_outside_strings_and_trigger_bodies() {
        assert_eq!(
            count(DUMP),
            rows(&[("empty", 0), ("items", 6), ("odd`name", 2)])
        );
    }

    #[test]
    fn the_count_does_not_depend_on_where_the_stream_is_cut() {
        let whole = count(DUMP);
        let bytes = DUMP.as_bytes();
        for cut in 0..bytes.len() {
            let mut c = RowCounter::default();
            c.feed(&bytes[..cut]);
            c.feed(&bytes[cut..]);
            assert_eq!(c.finish(), whole, "cut at {cut}");
        }
        let mut c = RowCounter::default();
        for b in bytes {
            c.feed(std::slice::from_ref(b));
        }
        assert_eq!(c.finish(), whole);
    }

    proptest::proptest! {
        /// Pieces of dump syntax in any order: never a panic, and the same counts however
        /// the stream is cut.
        #[test]
        fn any_sql_in_any_pieces(
            pieces in proptest::collection::vec(proptest::sample::select(vec![
                "INSERT INTO `t` VALUES ", "INSERT INTO `u``v` VALUES\n", "INSERT INTO `", "(",
                ")", "'", "\\", ";", "\n", "DELIMITER ;;\n", "DELIMITER ;\n", "1,", "`", "x",
                "é",
            ]), 0..60),
            cut in 0usize..400,
        ) {
            let sql = pieces.concat();
            let cut = cut.min(sql.len());
            let mut c = RowCounter::default();
            c.feed(&sql.as_bytes()[..cut]);
            c.feed(&sql.as_bytes()[cut..]);
            proptest::prop_assert_eq!(c.finish(), count(&sql));
        }
    }

    #[test]
    fn an_insert_not_understood_or_cut_short_makes_the_count_unknown() {
        assert_eq!(count("INSERT INTO `t` (`a`) VALUES (1);\n"), None);
        assert_eq!(count("INSERT INTO `t` VALUES (1,'x"), None);
        assert_eq!(count("INSERT INTO `t` VALUES (1),(2)"), None);
        assert_eq!(count("INSERT INTO `t"), None);
        // Not INSERT statements of the dump: nothing to count, nothing unknown.
        assert_eq!(
            count("INSERTED INTO `t` VALUES (1);\n  INSERT INTO `t` VALUES (1);\n"),
            rows(&[])
        );
    }
}
