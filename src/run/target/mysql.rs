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
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde::{Deserialize, Serialize};

use crate::config::{Target, TargetKind};
use crate::run::stream::Error;

pub(crate) mod load;
pub(crate) mod rows;

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

pub(crate) fn failed(what: impl std::fmt::Display) -> Error {
    Error::Failed(what.to_string())
}

/// Reads a child's piped stderr to its end on a thread of its own, so that the child never
/// blocks on a full pipe while its stdout is being read.
pub(crate) fn collect_stderr(child: &mut std::process::Child) -> std::thread::JoinHandle<String> {
    let mut stderr = child.stderr.take().expect("piped");
    std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    })
}

/// Finds the first client program of `names` that runs.
pub(crate) fn program(names: &[&str]) -> Result<String, Error> {
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
pub(crate) fn ident(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

/// `s` quoted as a string literal.
pub(crate) fn literal(s: &str) -> String {
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
    /// The mysql target `name` of `sopkit.toml`, with its password from the environment.
    pub fn named(name: String, targets: &BTreeMap<String, Target>) -> Result<Server, Error> {
        let target = targets.get(&name).ok_or_else(|| Error::Argument {
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
    pub(crate) fn command(&self, program: &str) -> Command {
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
    pub(crate) fn query(&self, sql: &str) -> Result<Vec<Vec<String>>, Error> {
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

    pub(crate) fn version(&self) -> Result<String, Error> {
        Ok(self
            .query("SELECT VERSION()")?
            .first()
            .and_then(|r| r.first().cloned())
            .unwrap_or_default())
    }

    /// The base tables of `db`, by name (asking for sizes too would open every table).
    pub(crate) fn list(&self, db: &str) -> Result<Vec<String>, Error> {
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
    pub(crate) fn in_groups<T: Send>(
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
    pub(crate) fn tables(&self, db: &str, connections: usize) -> Result<Vec<Table>, Error> {
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
    pub(crate) fn checksums(&self, db: &str) -> Result<BTreeMap<String, Option<String>>, Error> {
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
    pub(crate) fn count_rows(
        &self,
        db: &str,
        names: &[String],
    ) -> Result<BTreeMap<String, u64>, Error> {
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
    pub(crate) fn checksum(
        &self,
        db: &str,
        names: &[String],
    ) -> Result<BTreeMap<String, String>, Error> {
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
pub(crate) fn parallel_scans() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get().clamp(1, 4))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_and_literals_are_quoted() {
        assert_eq!(ident("we`ird"), "`we``ird`");
        assert_eq!(literal("o'k\\"), "'o''k\\\\'");
    }
}
