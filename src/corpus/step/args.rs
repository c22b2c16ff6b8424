//! The arguments of the built-in actions: the YAML mapping in a ```` ```sopkit ```` block,
//! read into one struct per action. Part of the SOP file format, so `check` validates them
//! (without knowing how an action runs) and `run` reads them again before a step starts.
//!
//! Every struct denies unknown fields: a typo (`keep_dayly: 7`) is an error, never ignored.
//! Arguments that name paths, keys or targets stay strings, so `${VAR}` in them is expanded
//! when the action uses them.

use serde::Deserialize;
use serde::de::DeserializeOwned;

/// `archive`: a folder (here, or `TARGET:/path` on an ssh target) into a `.tar.zst`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Archive {
    pub source: String,
    /// A folder, or a `.tar.zst` file name.
    pub dest: String,
    /// zstd level (1 to 19); default 1.
    #[serde(default, deserialize_with = "zstd_level")]
    pub level: Option<i32>,
}

/// `verify`: an archive (`archive`), or objects in a bucket (`target` and `key`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Verify {
    /// A path, or the id of an earlier step that made an archive.
    pub archive: Option<String>,
    pub target: Option<String>,
    pub key: Option<String>,
    pub version: Option<String>,
    pub all_versions: Option<bool>,
}

/// `copy`: files to a folder (either side may be `TARGET:/path` on an ssh target).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Copy {
    /// A file, a folder, or the id of an earlier step.
    pub source: String,
    pub dest: String,
}

/// `prune`: backup items in a folder (`path`, or a local `target`), or object versions in a
/// bucket (an s3 `target`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Prune {
    pub path: Option<String>,
    pub target: Option<String>,
    /// A duration such as `35d`.
    #[serde(deserialize_with = "duration")]
    pub retention: String,
    /// A glob narrowing the items of a folder.
    pub pattern: Option<String>,
    /// Globs of items in a folder that are never deleted.
    #[serde(default)]
    pub legal_hold: Vec<String>,
    pub keep_daily: Option<usize>,
    pub keep_weekly: Option<usize>,
    pub keep_monthly: Option<usize>,
    /// Objects only: keys under this prefix (below the target's).
    pub prefix: Option<String>,
    /// Objects only: whether the latest version of a key follows the retention too.
    pub expire_latest: Option<bool>,
    /// Objects only: list what would be deleted, delete nothing.
    pub dry_run: Option<bool>,
}

/// `git-mirror`: a remote (`url`, or a git `target`) mirrored and bundled into `dest`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GitMirror {
    pub url: Option<String>,
    pub target: Option<String>,
    pub dest: String,
}

/// `db-dump`: one database of a mysql target into a `.sql.zst`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DbDump {
    /// The server; a step's `target=` attribute supplies it when this is not given.
    pub target: Option<String>,
    pub database: String,
    pub dest: String,
}

/// `restore-test`: a dump loaded into a scratch database and compared with its record.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RestoreTest {
    /// The id of an earlier `db-dump` step, or a path.
    pub dump: String,
    pub target: Option<String>,
    /// Client sessions loading the dump at once, 1 to 64; default 4.
    #[serde(default, deserialize_with = "jobs")]
    pub jobs: Option<usize>,
}

/// `upload`: files to an s3 target.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Upload {
    /// A file, a folder, or the id of an earlier step.
    pub source: String,
    pub target: Option<String>,
    pub key: Option<String>,
    pub pattern: Option<String>,
    /// Multipart part size in bytes (`64MiB`, or a number), 5 MiB to 5 GiB.
    #[serde(default, deserialize_with = "part_size")]
    pub part_size: Option<u64>,
}

/// `restore`: objects of an s3 target back into files.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Restore {
    pub target: Option<String>,
    pub key: String,
    pub version: Option<String>,
    pub versions_back: Option<u64>,
    pub dest: String,
}

/// The arguments of one step, by action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Arguments {
    Archive(Archive),
    Verify(Verify),
    Copy(Copy),
    Prune(Prune),
    GitMirror(GitMirror),
    DbDump(DbDump),
    RestoreTest(RestoreTest),
    Upload(Upload),
    Restore(Restore),
}

/// Why a step's arguments are not those of its action, with the position in the step's
/// body (1-based line and column; line 1 is the line after the opening fence).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArgsError {
    pub message: String,
    pub help: String,
    pub line: usize,
    pub column: usize,
}

impl std::fmt::Display for ArgsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// Size limits of S3 multipart parts.
pub const MIN_PART: u64 = 5 << 20;
pub const MAX_PART: u64 = 5 << 30;

impl Arguments {
    /// Reads the arguments of `action` from a step block's body (YAML). An empty body is an
    /// empty mapping.
    pub fn parse(action: &str, body: &str) -> Result<Arguments, ArgsError> {
        let body = if body.trim().is_empty() { "{}" } else { body };
        Ok(match action {
            "archive" => Arguments::Archive(read(action, body)?),
            "verify" => Arguments::Verify(read(action, body)?),
            "copy" => Arguments::Copy(read(action, body)?),
            "prune" => Arguments::Prune(read(action, body)?),
            "git-mirror" => Arguments::GitMirror(read(action, body)?),
            "db-dump" => Arguments::DbDump(read(action, body)?),
            "restore-test" => Arguments::RestoreTest(read(action, body)?),
            "upload" => Arguments::Upload(read(action, body)?),
            "restore" => Arguments::Restore(read(action, body)?),
            other => {
                return Err(ArgsError {
                    message: format!("unknown action `{other}`"),
                    help: format!("known actions: {}", super::ACTIONS.join(", ")),
                    line: 1,
                    column: 1,
                });
            }
        })
    }

    /// The arguments each action accepts, as written in a step block.
    pub fn fields(action: &str) -> &'static [&'static str] {
        match action {
            "archive" => fields_of::<Archive>(),
            "verify" => fields_of::<Verify>(),
            "copy" => fields_of::<Copy>(),
            "prune" => fields_of::<Prune>(),
            "git-mirror" => fields_of::<GitMirror>(),
            "db-dump" => fields_of::<DbDump>(),
            "restore-test" => fields_of::<RestoreTest>(),
            "upload" => fields_of::<Upload>(),
            "restore" => fields_of::<Restore>(),
            _ => &[],
        }
    }

    /// The `target` argument, for actions that take one.
    pub fn target(&self) -> Option<&str> {
        match self {
            Arguments::Verify(a) => a.target.as_deref(),
            Arguments::Prune(a) => a.target.as_deref(),
            Arguments::GitMirror(a) => a.target.as_deref(),
            Arguments::DbDump(a) => a.target.as_deref(),
            Arguments::RestoreTest(a) => a.target.as_deref(),
            Arguments::Upload(a) => a.target.as_deref(),
            Arguments::Restore(a) => a.target.as_deref(),
            Arguments::Archive(_) | Arguments::Copy(_) => None,
        }
    }

    /// Sets the `target` argument of an action that takes one (a step's `target=` or
    /// `run --target`); a no-op for the others.
    pub fn set_target(&mut self, name: String) {
        let slot = match self {
            Arguments::Verify(a) => &mut a.target,
            Arguments::Prune(a) => &mut a.target,
            Arguments::GitMirror(a) => &mut a.target,
            Arguments::DbDump(a) => &mut a.target,
            Arguments::RestoreTest(a) => &mut a.target,
            Arguments::Upload(a) => &mut a.target,
            Arguments::Restore(a) => &mut a.target,
            Arguments::Archive(_) | Arguments::Copy(_) => return,
        };
        *slot = Some(name);
    }

    /// Where the action writes its output (`dest`), if it names a folder or file.
    pub fn dest(&self) -> Option<&str> {
        match self {
            Arguments::Archive(a) => Some(&a.dest),
            Arguments::Copy(a) => Some(&a.dest),
            Arguments::GitMirror(a) => Some(&a.dest),
            Arguments::DbDump(a) => Some(&a.dest),
            Arguments::Restore(a) => Some(&a.dest),
            _ => None,
        }
    }
}

fn options() -> serde_saphyr::Options {
    // As for front matter: `yes`/`no` are strings, a key given twice is an error, and the
    // parser's budgets (alias bombs, depth) stay on.
    let mut o = serde_saphyr::Options::default();
    o.strict_booleans = true;
    o.duplicate_keys = serde_saphyr::DuplicateKeyPolicy::Error;
    o.with_snippet = false;
    o
}

fn read<T: DeserializeOwned>(action: &str, body: &str) -> Result<T, ArgsError> {
    serde_saphyr::from_str_with_options::<T>(body, options()).map_err(|e| {
        let text = e.without_snippet().to_string();
        // The parser appends its own position; the caller reports one in the SOP file.
        let message = match text.find(" at line ") {
            Some(i) => text[..i].trim().to_string(),
            None => text.trim().to_string(),
        };
        let (line, column) = e
            .location()
            .filter(|l| l.line() > 0)
            .map_or((1, 1), |l| (l.line() as usize, l.column().max(1) as usize));
        // The parser's words for a scalar of the wrong type, said for an SOP's author.
        let message = if message.starts_with("invalid i") || message.starts_with("invalid u") {
            "expected a whole number".to_string()
        } else if message.starts_with("invalid bool") {
            "expected true or false".to_string()
        } else {
            message
        };
        // The key on the offending line, for errors that do not name it (a wrong type).
        let key = body
            .lines()
            .nth(line - 1)
            .and_then(|l| l.trim_start().trim_start_matches("- ").split_once(':'))
            .map(|(k, _)| k.trim().trim_matches(['"', '\'']).to_string())
            .filter(|k| Arguments::fields(action).contains(&k.as_str()));
        let message = match (&key, message.contains("sequence")) {
            (Some(k), true) => format!("`{k}` must be a list"),
            (Some(k), false) if !message.contains(&format!("`{k}`")) => {
                format!("`{k}`: {message}")
            }
            _ => message,
        };
        let help = help_for(action, key.as_deref(), &message);
        ArgsError {
            message: format!("arguments of `{action}`: {message}"),
            help,
            line,
            column,
        }
    })
}

fn help_for(action: &str, key: Option<&str>, message: &str) -> String {
    let accepted = format!(
        "`{action}` accepts: {}",
        Arguments::fields(action).join(", ")
    );
    if message.contains("unknown field") || message.contains("missing field") {
        accepted
    } else if message.contains("must be a list") {
        let k = key.unwrap_or("the argument");
        format!(
            "write a YAML list, `{k}: [\"a\", \"b\"]` or one `- item` per line; a single \
             string is not a list (and would hold nothing)"
        )
    } else {
        format!("check the value's type; {accepted}")
    }
}

/// The field names of a `#[derive(Deserialize)]` struct, as serde knows them (read by
/// asking the type to deserialize itself from a deserializer that only notes them).
fn fields_of<T: DeserializeOwned>() -> &'static [&'static str] {
    struct Names(Option<&'static [&'static str]>);
    #[derive(Debug)]
    struct Stop;
    impl std::fmt::Display for Stop {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("names noted")
        }
    }
    impl std::error::Error for Stop {}
    impl serde::de::Error for Stop {
        fn custom<M: std::fmt::Display>(_: M) -> Stop {
            Stop
        }
    }
    impl<'de> serde::Deserializer<'de> for &mut Names {
        type Error = Stop;
        fn deserialize_any<V: serde::de::Visitor<'de>>(self, _: V) -> Result<V::Value, Stop> {
            Err(Stop)
        }
        fn deserialize_struct<V: serde::de::Visitor<'de>>(
            self,
            _: &'static str,
            fields: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, Stop> {
            self.0 = Some(fields);
            Err(Stop)
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes
            byte_buf option unit unit_struct newtype_struct seq tuple tuple_struct map enum
            identifier ignored_any
        }
    }
    let mut names = Names(None);
    let _ = T::deserialize(&mut names);
    names.0.unwrap_or(&[])
}

/// A duration such as `35d` (kept as written; `${VAR}` is checked when it is expanded).
fn duration<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let s = String::deserialize(d)?;
    if !s.contains("${") {
        s.parse::<crate::duration::Duration>()
            .map_err(serde::de::Error::custom)?;
    }
    Ok(s)
}

fn zstd_level<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<i32>, D::Error> {
    let n = i64::deserialize(d)?;
    match i32::try_from(n) {
        Ok(n) if (1..=19).contains(&n) => Ok(Some(n)),
        _ => Err(serde::de::Error::custom(format!(
            "level {n} is not a zstd level from 1 to 19"
        ))),
    }
}

fn jobs<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<usize>, D::Error> {
    let n = i64::deserialize(d)?;
    match usize::try_from(n) {
        Ok(n) if (1..=64).contains(&n) => Ok(Some(n)),
        _ => Err(serde::de::Error::custom(format!(
            "jobs: {n} is not from 1 to 64 (client sessions loading the dump at once)"
        ))),
    }
}

/// A size in bytes: a number, or a number and a unit (`5MiB`, `64MiB`, `1GiB`, `8MB`).
pub fn parse_size(text: &str) -> Option<u64> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num.parse().ok()?;
    let mult: u64 = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "KB" | "kB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        _ => return None,
    };
    n.checked_mul(mult)
}

fn part_size<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    struct Size;
    impl serde::de::Visitor<'_> for Size {
        type Value = Option<u64>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a size from 5MiB to 5GiB (a number of bytes, or e.g. 64MiB)")
        }
        fn visit_u64<E: serde::de::Error>(self, n: u64) -> Result<Option<u64>, E> {
            if (MIN_PART..=MAX_PART).contains(&n) {
                Ok(Some(n))
            } else {
                Err(E::custom(format!(
                    "part_size {n} is not a size from 5MiB to 5GiB"
                )))
            }
        }
        fn visit_i64<E: serde::de::Error>(self, n: i64) -> Result<Option<u64>, E> {
            self.visit_u64(u64::try_from(n).unwrap_or(0))
        }
        fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Option<u64>, E> {
            match parse_size(s) {
                Some(n) => self.visit_u64(n),
                None => Err(E::custom(format!(
                    "part_size `{s}` is not a size from 5MiB to 5GiB (a number of bytes, or \
                     e.g. 64MiB)"
                ))),
            }
        }
    }
    d.deserialize_any(Size)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(action: &str, body: &str) -> ArgsError {
        Arguments::parse(action, body).expect_err(body)
    }

    #[test]
    fn a_typo_is_an_error_at_its_key_with_the_accepted_fields() {
        let e = err("prune", "path: backups\nretention: 35d\nkeep_dayly: 7\n");
        assert_eq!((e.line, e.column), (3, 1), "{e:?}");
        assert!(e.message.contains("keep_dayly"), "{e:?}");
        assert!(
            e.help.contains("keep_daily") && e.help.contains("legal_hold"),
            "{e:?}"
        );
    }

    #[test]
    fn a_legal_hold_written_as_a_string_is_an_error() {
        let e = err("prune", "path: b\nretention: 35d\nlegal_hold: \"*.keep\"\n");
        assert_eq!(e.line, 3, "{e:?}");
        assert!(e.help.contains("list"), "{e:?}");
        let Arguments::Prune(p) = Arguments::parse(
            "prune",
            "path: b\nretention: 1d\nlegal_hold: [\"*.keep\"]\n",
        )
        .unwrap() else {
            panic!()
        };
        assert_eq!(p.legal_hold, vec!["*.keep"]);
    }

    #[test]
    fn values_are_typed() {
        assert!(Arguments::parse("archive", "source: a\ndest: b\nlevel: 3\n").is_ok());
        for (action, body) in [
            ("archive", "source: a\ndest: b\nlevel: fast\n"),
            ("archive", "source: a\ndest: b\nlevel: 30\n"),
            ("archive", "source: a\n"),
            ("prune", "path: a\nretention: soon\n"),
            ("prune", "path: a\nretention: 1d\nkeep_daily: -1\n"),
            ("restore-test", "dump: d\njobs: 0\n"),
            ("restore-test", "dump: d\njobs: 65\n"),
            ("upload", "source: a\npart_size: 1MiB\n"),
            ("upload", "source: a\npart_size: lots\n"),
            ("verify", "all_versions: yes\n"),
            ("restore", "key: k\ndest: d\nversions_back: latest\n"),
            ("copy", "source: a\ndest: b\nsource: c\n"),
        ] {
            err(action, body);
        }
        let Arguments::Upload(u) =
            Arguments::parse("upload", "source: a\npart_size: 6MiB\n").unwrap()
        else {
            panic!()
        };
        assert_eq!(u.part_size, Some(6 << 20));
        let Arguments::Upload(u) =
            Arguments::parse("upload", "source: a\npart_size: 6291456\n").unwrap()
        else {
            panic!()
        };
        assert_eq!(u.part_size, Some(6 << 20));
        // `${VAR}` stays for the run to expand.
        assert!(Arguments::parse("prune", "path: a\nretention: ${KEEP}\n").is_ok());
    }

    #[test]
    fn wrong_types_are_named_in_an_authors_words() {
        let e = err("archive", "source: a\ndest: b\nlevel: fast\n");
        assert_eq!(
            e.message,
            "arguments of `archive`: `level`: expected a whole number"
        );
        assert_eq!((e.line, e.column), (3, 8));
        let e = err("verify", "key: k\nall_versions: yes\n");
        assert_eq!(
            e.message,
            "arguments of `verify`: `all_versions`: expected true or false"
        );
    }

    #[test]
    fn every_action_lists_its_fields() {
        for a in super::super::ACTIONS {
            assert!(!Arguments::fields(a).is_empty(), "{a}");
        }
        assert_eq!(Arguments::fields("copy"), ["source", "dest"]);
    }
}
