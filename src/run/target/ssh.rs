//! SSH targets through the system OpenSSH client, so that the operator's `~/.ssh/config`,
//! agent and known_hosts work as they do in a terminal. sopkit adds only what makes a run
//! safe to leave unattended: `BatchMode=yes` (never a prompt), `StrictHostKeyChecking=yes`
//! (an unknown or changed host key fails the step) and one shared connection per target
//! (`ControlMaster`), opened before the first command and closed when the run ends.

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Mutex, OnceLock};

use crate::config::{Target, TargetKind};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("ssh target `{name}` needs `host`")]
    NoHost { name: String },
    #[error("cannot connect to ssh target `{name}` ({dest}): {message}")]
    Connect {
        name: String,
        dest: String,
        message: String,
    },
    #[error("on ssh target `{name}`: {message}")]
    Remote { name: String, message: String },
    #[error("ssh: {0}")]
    Spawn(std::io::Error),
}

/// Quotes a string for a POSIX shell. Written by hand: one line of code, and the remote
/// shell's rules are the only ones that matter.
pub fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// The folder of this process's control sockets (short, private, removed at exit).
fn control_dir() -> Option<&'static Path> {
    static DIR: OnceLock<Option<tempfile::TempDir>> = OnceLock::new();
    DIR.get_or_init(|| {
        tempfile::Builder::new()
            .prefix("sopkit-ssh-")
            .tempdir_in("/tmp")
            .ok()
    })
    .as_ref()
    .map(|d| d.path())
}

/// Targets whose shared connection this process opened (closed by [`close_all`]).
static OPENED: Mutex<Vec<(String, Target)>> = Mutex::new(Vec::new());

/// One ssh target, ready to run commands.
#[derive(Debug, Clone)]
pub struct Host {
    pub name: String,
    target: Target,
}

impl Host {
    pub fn new(name: &str, target: &Target) -> Result<Host, Error> {
        if target.host.is_none() {
            return Err(Error::NoHost {
                name: name.to_string(),
            });
        }
        Ok(Host {
            name: name.to_string(),
            target: target.clone(),
        })
    }

    /// `user@host` as the operator would type it.
    pub fn destination(&self) -> String {
        let host = self.target.host.as_deref().unwrap_or_default();
        match &self.target.user {
            Some(u) => format!("{u}@{host}"),
            None => host.to_string(),
        }
    }

    /// sopkit's options and the target's config file, port and user (no host).
    fn options(&self) -> Vec<String> {
        let mut v = Vec::new();
        if let Some(cfg) = &self.target.ssh_config {
            v.extend(["-F".to_string(), cfg.clone()]);
        }
        for o in [
            "BatchMode=yes",
            "StrictHostKeyChecking=yes",
            "ServerAliveInterval=15",
            "ServerAliveCountMax=4",
        ] {
            v.extend(["-o".to_string(), o.to_string()]);
        }
        if let Some(dir) = control_dir() {
            v.extend([
                "-o".to_string(),
                format!("ControlPath={}/%C", dir.display()),
            ]);
        }
        if let Some(p) = self.target.port {
            v.extend(["-p".to_string(), p.to_string()]);
        }
        if let Some(u) = &self.target.user {
            v.extend(["-l".to_string(), u.clone()]);
        }
        v
    }

    fn host(&self) -> &str {
        self.target.host.as_deref().unwrap_or_default()
    }

    /// `ssh` through the shared connection; the caller appends the remote command.
    pub fn ssh(&self) -> Command {
        let mut cmd = Command::new("ssh");
        cmd.args(self.options())
            .args(["-o", "ControlMaster=no", "--", self.host()]);
        cmd
    }

    /// Opens the shared connection (once per process and target) and proves the host
    /// reachable, its key known and the login working; the error carries ssh's own words.
    pub fn connect(&self) -> Result<(), Error> {
        let mut opened = OPENED.lock().unwrap_or_else(|e| e.into_inner());
        if opened.iter().any(|(n, _)| n == &self.name) {
            return Ok(());
        }
        // The master goes to the background holding a file, not one of our pipes, so a
        // step's output streams end when the step does.
        let mut err_log = tempfile::tempfile().map_err(Error::Spawn)?;
        let status = Command::new("ssh")
            .args(self.options())
            .args([
                "-o",
                "ControlMaster=auto",
                "-o",
                "ControlPersist=120",
                "-o",
                "ConnectTimeout=20",
                "--",
                self.host(),
                "true",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(err_log.try_clone().map_err(Error::Spawn)?)
            .status()
            .map_err(Error::Spawn)?;
        if !status.success() {
            use std::io::Seek;
            let mut text = String::new();
            let _ = err_log.seek(std::io::SeekFrom::Start(0));
            let _ = err_log.read_to_string(&mut text);
            return Err(Error::Connect {
                name: self.name.clone(),
                dest: self.destination(),
                message: explain(text.trim(), status.code()),
            });
        }
        opened.push((self.name.clone(), self.target.clone()));
        Ok(())
    }

    /// Runs `script` with `sh -c` on the host, stdin closed, and returns its stdout; a
    /// non-zero exit is an error carrying stderr.
    pub fn output(&self, script: &str) -> Result<Vec<u8>, Error> {
        let out = self
            .ssh()
            .arg(script)
            .stdin(Stdio::null())
            .output()
            .map_err(Error::Spawn)?;
        if !out.status.success() {
            return Err(Error::Remote {
                name: self.name.clone(),
                message: format!(
                    "`{}` failed ({}): {}",
                    script.chars().take(120).collect::<String>(),
                    out.status,
                    String::from_utf8_lossy(&out.stderr).trim()
                ),
            });
        }
        Ok(out.stdout)
    }

    /// SHA-256 and size of every file below `path` on the host (paths relative to it), or
    /// of `path` itself when it is a file (its name), computed there with `sha256sum`.
    pub fn hashes(&self, path: &str) -> Result<Vec<(String, u64, String)>, Error> {
        let sum = "'for f; do printf \"%s \" \"$(wc -c < \"$f\")\"; sha256sum \"$f\"; done' sh";
        let p = quote(path);
        let script = format!(
            "if [ -d {p} ]; then cd {p} && find . -type f -exec sh -c {sum} {{}} +; else cd \"$(dirname {p})\" && sh -c {sum} \"./$(basename {p})\"; fi"
        );
        let text = String::from_utf8_lossy(&self.output(&script)?).into_owned();
        parse_sums(&text).map_err(|message| Error::Remote {
            name: self.name.clone(),
            message,
        })
    }
}

/// Lines `SIZE HASH  PATH` (sha256sum's own format after the size; a path with a newline or
/// backslash makes sha256sum prefix the line with `\` and escape them).
fn parse_sums(text: &str) -> Result<Vec<(String, u64, String)>, String> {
    let mut out = Vec::new();
    for line in text.lines().filter(|l| !l.is_empty()) {
        let (size, rest) = line
            .split_once(' ')
            .ok_or_else(|| format!("unexpected sha256sum output: {line}"))?;
        let size: u64 = size
            .trim()
            .parse()
            .map_err(|_| format!("unexpected size in: {line}"))?;
        let (escaped, rest) = match rest.strip_prefix('\\') {
            Some(r) => (true, r),
            None => (false, rest),
        };
        let (hash, path) = rest
            .split_once("  ")
            .ok_or_else(|| format!("unexpected sha256sum output: {line}"))?;
        let mut path = path.to_string();
        if escaped {
            path = unescape(&path);
        }
        let path = path.strip_prefix("./").unwrap_or(&path).to_string();
        out.push((path, size, hash.to_string()));
    }
    out.sort();
    Ok(out)
}

/// sha256sum's escaping undone: `\\` is a backslash, `\n` a newline (one pass, left to
/// right, so `\\n` stays a backslash followed by `n`).
fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some(other) => out.push(other),
            None => out.push('\\'),
        }
    }
    out
}

/// ssh's message, with what it usually means.
fn explain(stderr: &str, code: Option<i32>) -> String {
    let hint = if stderr.contains("REMOTE HOST IDENTIFICATION HAS CHANGED") {
        "the host key differs from known_hosts: a reinstalled host or someone in between; check it out of band before updating known_hosts"
    } else if stderr.contains("Host key verification failed") {
        "the host key is not in known_hosts (sopkit never accepts an unknown key): add it after checking its fingerprint"
    } else if stderr.contains("Permission denied") {
        "the login was refused: check the user and that your key is loaded (ssh-add -l) and authorized"
    } else if stderr.contains("Connection refused") || stderr.contains("timed out") {
        "the host does not answer on that port"
    } else {
        ""
    };
    let code = code.map_or("killed".to_string(), |c| format!("exit {c}"));
    match (stderr.is_empty(), hint.is_empty()) {
        (true, _) => format!("ssh failed ({code})"),
        (false, true) => format!("{stderr} ({code})"),
        (false, false) => format!("{stderr} ({code}); {hint}"),
    }
}

/// Closes every shared connection this process opened.
pub fn close_all() {
    let opened = std::mem::take(&mut *OPENED.lock().unwrap_or_else(|e| e.into_inner()));
    for (name, t) in opened {
        if let Ok(h) = Host::new(&name, &t) {
            let _ = Command::new("ssh")
                .args(h.options())
                .args(["-O", "exit", "--", h.host()])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// `TARGET:PATH` where TARGET is an ssh target of sopkit.toml: the host and the path.
pub fn remote_path<'a>(
    arg: &'a str,
    targets: &std::collections::BTreeMap<String, Target>,
) -> Option<(Host, &'a str)> {
    let (name, path) = arg.split_once(':')?;
    let t = targets.get(name)?;
    if t.kind != TargetKind::Ssh || path.is_empty() {
        return None;
    }
    Host::new(name, t).ok().map(|h| (h, path))
}

/// A file a remote step listed: its path as written, and its size and SHA-256 when it exists.
pub type Collected = (String, Option<(u64, String)>);

/// The remote side of a shell step: a private folder `${TMPDIR:-/tmp}/sopkit-RUN` holding
/// the script (sent on stdin, so secrets never appear in a process list), the pid of the
/// step's session (to stop it on timeout or Ctrl-C) and the artifacts list.
pub struct RemoteStep {
    pub work: String,
}

impl RemoteStep {
    pub fn new(run: &str) -> RemoteStep {
        RemoteStep {
            work: format!("\"${{TMPDIR:-/tmp}}\"/sopkit-{run}"),
        }
    }

    /// The command ssh runs: store the script, note the session's pid, run it with stdin
    /// closed. sshd makes the login shell a session leader, so its pid names the group.
    pub fn command(&self, shell: &str) -> String {
        let w = &self.work;
        format!(
            "umask 077 && mkdir {w} && cat > {w}/step.sh && : > {w}/artifacts && echo $$ > {w}/pid && SOPKIT_ARTIFACTS={w}/artifacts exec {shell} {w}/step.sh < /dev/null"
        )
    }

    /// The script: it deletes itself once the shell has it open, exports the step's
    /// variables, then runs the body.
    pub fn script(&self, vars: &[(String, String)], body: &str) -> String {
        let mut s = String::from("rm -f -- \"$0\"\nexport SOPKIT_ARTIFACTS\n");
        for (k, v) in vars {
            s.push_str(&format!("export {k}={}\n", quote(v)));
        }
        s.push_str(body);
        if !body.ends_with('\n') {
            s.push('\n');
        }
        s
    }

    /// Stops the step's whole session on the host.
    pub fn kill(&self, host: &Host) {
        let _ = host.output(&format!(
            "p=$(cat {w}/pid 2>/dev/null) && kill -TERM -- -\"$p\" 2>/dev/null; sleep 2; [ -n \"$p\" ] && kill -KILL -- -\"$p\" 2>/dev/null; true",
            w = self.work
        ));
    }

    /// Hashes the files the step listed in `$SOPKIT_ARTIFACTS`, on the host, then removes
    /// the folder. Paths come back as the step wrote them; missing files as `None`.
    pub fn collect(&self, host: &Host) -> Result<Vec<Collected>, Error> {
        let script = format!(
            "w={w}; [ -d \"$w\" ] || exit 0; while IFS= read -r p; do [ -n \"$p\" ] || continue; if [ -f \"$p\" ]; then printf '%s %s %s\\n' \"$(wc -c < \"$p\")\" \"$(sha256sum < \"$p\" | cut -d' ' -f1)\" \"$p\"; else printf 'missing - %s\\n' \"$p\"; fi; done < \"$w/artifacts\"; rm -rf -- \"$w\"",
            w = self.work
        );
        let text = String::from_utf8_lossy(&host.output(&script)?).into_owned();
        let mut out = Vec::new();
        for line in text.lines() {
            let mut parts = line.splitn(3, ' ');
            let (Some(size), Some(hash), Some(path)) = (parts.next(), parts.next(), parts.next())
            else {
                continue;
            };
            let found = size.parse::<u64>().ok().map(|s| (s, hash.to_string()));
            out.push((path.to_string(), found));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_survives_quotes_and_dollars() {
        let q = quote("it's $HOME `x`");
        let out = Command::new("sh")
            .arg("-c")
            .arg(format!("printf %s {q}"))
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), "it's $HOME `x`");
    }

    #[test]
    fn sums_parse_with_escaped_names() {
        let text = "5 abc  ./a.txt\n3 \\def  ./we\\nird\\\\name\n";
        let v = parse_sums(text).unwrap();
        assert_eq!(v[0], ("a.txt".to_string(), 5, "abc".to_string()));
        assert_eq!(v[1], ("we\nird\\name".to_string(), 3, "def".to_string()));
        assert!(parse_sums("garbage").is_err());
    }

    #[test]
    fn host_key_messages_are_explained() {
        let m = explain("Host key verification failed.", Some(255));
        assert!(m.contains("never accepts an unknown key"), "{m}");
        let m = explain(
            "@@@ WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED! @@@",
            Some(255),
        );
        assert!(m.contains("someone in between"), "{m}");
    }
}
