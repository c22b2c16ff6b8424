//! Real servers on 127.0.0.1 for the target tests: MariaDB, OpenSSH's sshd and moto's S3
//! server, each in a temp dir on a free port, waited for until it answers, stopped on drop.
//! A server that cannot start fails the test with its log; nothing is skipped.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port on 127.0.0.1")
}

/// A server process, killed (and reaped) when dropped.
pub struct Server {
    pub child: Child,
    pub port: u16,
    pub dir: tempfile::TempDir,
    pub log: PathBuf,
}

impl Server {
    fn wait_until(&mut self, what: &str, ready: impl Fn(&Server) -> bool) {
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(60) {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "{what} exited ({status}) before it was ready:\n{}",
                    std::fs::read_to_string(&self.log).unwrap_or_default()
                );
            }
            if ready(self) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "{what} was not ready after 60 s:\n{}",
            std::fs::read_to_string(&self.log).unwrap_or_default()
        );
    }

    /// Stops the server now (SIGTERM, then SIGKILL after 10 s).
    pub fn stop(&mut self) {
        if let Ok(Some(_)) = self.child.try_wait() {
            return;
        }
        let pid = self.child.id() as i32;
        let _ = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status();
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(10) {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

fn listening(port: u16) -> bool {
    TcpStream::connect_timeout(
        &SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_millis(200),
    )
    .is_ok()
}

fn tool(name: &str) -> PathBuf {
    for dir in ["/usr/sbin", "/usr/bin", "/usr/local/bin", "/sbin"] {
        let p = Path::new(dir).join(name);
        if p.exists() {
            return p;
        }
    }
    // Anything else on PATH (moto_server under pyenv, for instance).
    PathBuf::from(name)
}

fn spawn(cmd: &mut Command, log: &Path, what: &str) -> Child {
    let f = std::fs::File::create(log).unwrap();
    cmd.stdin(Stdio::null())
        .stdout(f.try_clone().unwrap())
        .stderr(f)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {what} ({e}); scripts/test installs it"))
}

/// moto's S3 server, in memory.
pub fn moto() -> Server {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let log = dir.path().join("moto.log");
    let child = spawn(
        Command::new(tool("moto_server")).args(["-H", "127.0.0.1", "-p", &port.to_string()]),
        &log,
        "moto_server",
    );
    let mut s = Server {
        child,
        port,
        dir,
        log,
    };
    s.wait_until("moto_server", |s| listening(s.port));
    s
}

impl Server {
    /// `http://127.0.0.1:PORT`
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

/// A throwaway sshd, its client key and known_hosts, and an ssh_config that uses them.
pub struct Sshd {
    pub server: Server,
    /// `ssh -F` file for sopkit's target: the client key, known_hosts, IdentitiesOnly.
    pub config: PathBuf,
    pub known_hosts: PathBuf,
}

fn keygen(path: &Path) {
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(path)
        .output()
        .expect("ssh-keygen");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// sshd on a free 127.0.0.1 port, logging in as root with a fresh key.
pub fn sshd_full() -> Sshd {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir_all("/run/sshd").expect("/run/sshd (run the tests as root)");
    keygen(&d.join("host_key"));
    keygen(&d.join("client_key"));
    std::fs::copy(d.join("client_key.pub"), d.join("authorized_keys")).unwrap();
    let port = free_port();
    let config = d.join("sshd_config");
    std::fs::write(
        &config,
        format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {d}/host_key\nPidFile {d}/sshd.pid\nAuthorizedKeysFile {d}/authorized_keys\nPermitRootLogin prohibit-password\nPasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\n",
            d = d.display()
        ),
    )
    .unwrap();
    let host_pub = std::fs::read_to_string(d.join("host_key.pub")).unwrap();
    let key: Vec<&str> = host_pub.split_whitespace().take(2).collect();
    let known_hosts = d.join("known_hosts");
    std::fs::write(
        &known_hosts,
        format!("[127.0.0.1]:{port} {}\n", key.join(" ")),
    )
    .unwrap();
    let client = d.join("ssh_config");
    std::fs::write(
        &client,
        format!(
            "Host *\n  IdentityFile {d}/client_key\n  IdentitiesOnly yes\n  UserKnownHostsFile {d}/known_hosts\n  KexAlgorithms curve25519-sha256\n  LogLevel ERROR\n",
            d = d.display()
        ),
    )
    .unwrap();
    let log = d.join("sshd.log");
    let child = spawn(
        Command::new(tool("sshd"))
            .args(["-D", "-e", "-f"])
            .arg(&config),
        &log,
        "sshd",
    );
    let mut server = Server {
        child,
        port,
        dir,
        log,
    };
    server.wait_until("sshd", |s| listening(s.port));
    Sshd {
        server,
        config: client,
        known_hosts,
    }
}

/// A throwaway MariaDB with a TCP user `sopkit`@127.0.0.1 (password `MARIADB_PASSWORD`)
/// that may do anything.
pub fn mariadb() -> Server {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // Each server keeps its temporary tables in its own folder: a starting mariadbd deletes
    // every `#sql*` file in its tmpdir, so servers sharing /tmp delete each other's tables
    // (we saw bootstraps fail and servers crash in `ha_maria::drop_table` that way).
    let tmp = d.join("tmp");
    std::fs::create_dir_all(&tmp).unwrap();
    let tmpdir = format!("--tmpdir={}", tmp.display());
    let install = Command::new(tool("mariadb-install-db"))
        .args([
            "--no-defaults",
            "--user=root",
            "--auth-root-authentication-method=socket",
            "--skip-test-db",
        ])
        .arg(format!("--datadir={}", d.join("data").display()))
        .arg(&tmpdir)
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run mariadb-install-db ({e}); scripts/test installs it")
        });
    assert!(
        install.status.success(),
        "mariadb-install-db failed:\n{}{}",
        String::from_utf8_lossy(&install.stdout),
        String::from_utf8_lossy(&install.stderr)
    );
    let port = free_port();
    let log = d.join("err.log");
    let child = spawn(
        Command::new(tool("mariadbd"))
            .arg("--no-defaults")
            .arg("--user=root")
            .arg(format!("--datadir={}/data", d.display()))
            .arg(format!("--socket={}/sock", d.display()))
            .arg(format!("--port={port}"))
            .arg("--bind-address=127.0.0.1")
            .arg("--skip-name-resolve")
            .arg(format!("--pid-file={}/pid", d.display()))
            .arg(&tmpdir)
            .arg("--innodb-buffer-pool-size=64M"),
        &log,
        "mariadbd",
    );
    let mut s = Server {
        child,
        port,
        dir,
        log,
    };
    s.wait_until("mariadbd", |s| {
        Command::new(tool("mariadb-admin"))
            .arg("--no-defaults")
            .arg(format!("--socket={}/sock", s.dir.path().display()))
            .args(["-uroot", "ping"])
            .output()
            .is_ok_and(|o| o.status.success())
    });
    s.root_sql(&format!(
        "CREATE USER 'sopkit'@'127.0.0.1' IDENTIFIED BY '{MARIADB_PASSWORD}'; GRANT ALL ON *.* TO 'sopkit'@'127.0.0.1';"
    ));
    s
}

pub const MARIADB_PASSWORD: &str = "pw-Zq81-unique";

impl Server {
    /// Runs SQL as root through the socket; returns stdout.
    pub fn root_sql(&self, sql: &str) -> String {
        let out = Command::new(tool("mariadb"))
            .arg("--no-defaults")
            .arg(format!("--socket={}/sock", self.dir.path().display()))
            .args(["-uroot", "--batch", "--skip-column-names", "-e", sql])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "SQL failed: {sql}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

/// A Python process running `script` with the port and the server's folder as arguments.
fn python_server(what: &str, script: &str, ready_file: &str) -> Server {
    python_server_with(what, script, ready_file, &[])
}

/// [`python_server`] with `extra` arguments after the port and the folder.
fn python_server_with(
    what: &str,
    script: &str,
    ready_file: &str,
    extra: &[&std::ffi::OsStr],
) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let log = dir.path().join(format!("{what}.log"));
    let child = spawn(
        Command::new("python3")
            .args(["-c", script, &port.to_string()])
            .arg(dir.path())
            .args(extra),
        &log,
        what,
    );
    let mut s = Server {
        child,
        port,
        dir,
        log,
    };
    let ready = s.dir.path().join(ready_file);
    s.wait_until(what, move |s| listening(s.port) && ready.exists());
    s
}

/// An SMTP server (aiosmtpd) that stores each message as `NNNN.eml` with its envelope
/// recipients in `NNNN.rcpt`, in its folder.
pub fn smtp() -> Server {
    python_server("aiosmtpd", SMTP_SERVER, "ready")
}

/// [`smtp`] that accepts mail only after STARTTLS, with the certificate in `certs` (see
/// [`tls_certificates`]), and only from the login `SMTP_LOGIN` / `SMTP_PASSWORD`.
pub fn smtp_starttls(certs: &Path) -> Server {
    python_server_with(
        "aiosmtpd-starttls",
        SMTP_SERVER,
        "ready",
        &[
            certs.as_os_str(),
            SMTP_LOGIN.as_ref(),
            SMTP_PASSWORD.as_ref(),
        ],
    )
}

pub const SMTP_LOGIN: &str = "mailer";
pub const SMTP_PASSWORD: &str = "pw-smtp-31x";

/// A test CA (`ca.pem`) and a server certificate it issued for 127.0.0.1 (`cert.pem`,
/// `key.pem`), made with openssl in `dir`.
pub fn tls_certificates(dir: &Path) {
    std::fs::write(
        dir.join("leaf.ext"),
        "subjectAltName = IP:127.0.0.1\nbasicConstraints = critical, CA:FALSE\nextendedKeyUsage = serverAuth\n",
    )
    .unwrap();
    for command in [
        "req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout ca.key -out ca.pem -days 2 -subj /CN=sopkit-test-CA -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign",
        "req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout key.pem -out leaf.csr -subj /CN=127.0.0.1",
        "x509 -req -in leaf.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out cert.pem -days 2 -extfile leaf.ext",
    ] {
        let args: Vec<&str> = command.split(' ').collect();
        let out = Command::new("openssl")
            .args(args.iter())
            .current_dir(dir)
            .output()
            .unwrap_or_else(|e| panic!("cannot run openssl ({e}); scripts/test installs it"));
        assert!(
            out.status.success(),
            "openssl {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

const SMTP_SERVER: &str = r#"
import os, sys, time
from aiosmtpd.controller import Controller
port, d = int(sys.argv[1]), sys.argv[2]
class Store:
    async def handle_DATA(self, server, session, envelope):
        n = len([f for f in os.listdir(d) if f.endswith(".eml")])
        with open(os.path.join(d, "%04d.rcpt" % n), "w") as f:
            f.write("\n".join(envelope.rcpt_tos))
        with open(os.path.join(d, ".tmp"), "wb") as f:
            f.write(envelope.content)
        os.rename(os.path.join(d, ".tmp"), os.path.join(d, "%04d.eml" % n))
        return "250 OK"
if len(sys.argv) > 3:
    import ssl
    from aiosmtpd.smtp import AuthResult
    certs, account = sys.argv[3], (sys.argv[4].encode(), sys.argv[5].encode())
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(os.path.join(certs, "cert.pem"), os.path.join(certs, "key.pem"))
    def login(server, session, envelope, mechanism, data):
        ok = (data.login, data.password) == account
        return AuthResult(success=ok, handled=False)  # not handled: the server answers 535
    c = Controller(Store(), hostname="127.0.0.1", port=port, tls_context=tls,
                   require_starttls=True, authenticator=login, auth_required=True)
else:
    c = Controller(Store(), hostname="127.0.0.1", port=port)
c.start()
open(os.path.join(d, "ready"), "w").close()
while True:
    time.sleep(3600)
"#;

/// An HTTP server that answers every POST with 200 and appends its body, one line each,
/// to `posts.jsonl` in its folder.
pub fn webhook() -> Server {
    python_server(
        "webhook",
        r#"
import os, sys
from http.server import BaseHTTPRequestHandler, HTTPServer
port, d = int(sys.argv[1]), sys.argv[2]
class H(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        with open(os.path.join(d, "posts.jsonl"), "ab") as f:
            f.write(body.replace(b"\n", b" ") + b"\n")
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"ok")
s = HTTPServer(("127.0.0.1", port), H)
open(os.path.join(d, "ready"), "w").close()
s.serve_forever()
"#,
        "ready",
    )
}

impl Server {
    /// Lines of `posts.jsonl` (a webhook's bodies) as JSON.
    pub fn posts(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(self.dir.path().join("posts.jsonl"))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// The messages an SMTP server received: (recipients, message text).
    pub fn mails(&self) -> Vec<(String, String)> {
        let mut names: Vec<PathBuf> = std::fs::read_dir(self.dir.path())
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "eml"))
            .collect();
        names.sort();
        names
            .iter()
            .map(|p| {
                (
                    std::fs::read_to_string(p.with_extension("rcpt")).unwrap_or_default(),
                    std::fs::read_to_string(p).unwrap(),
                )
            })
            .collect()
    }
}
