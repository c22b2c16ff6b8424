//! Generates a repository for `scripts/bench-status`: N SOPs with SLOs and targets, and an
//! evidence ledger of M records (start and end of M/2 runs) spread over the last 60 days
//! among 10 writers, chained and digested exactly as `sopkit run` writes them.
//!
//! With KEYS (a folder holding OpenSSH private keys `admin`, `op0` … `op9` and their `.pub`
//! files, as `ssh-keygen -t ed25519 -N ''` writes them), the repository also gets a policy
//! (`roles/people.yaml`: an admin and ten operators, one per writer, each with their key) and
//! every record is signed by its writer's key in the namespace `sopkit-evidence`, as `run`
//! signs it (`NNNNNN.json.sig` beside it).
//!
//! Usage: cargo run --release --example gen_ledger -- DIR SOPS RECORDS [KEYS]

use std::path::Path;

use sopkit::digest::sha256_hex;
use sopkit::evidence::{FORMAT, FileRef, Kind, Outcome, Record, record_name};

fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if !(4..=5).contains(&args.len()) {
        eprintln!("usage: gen_ledger DIR SOPS RECORDS [KEYS]");
        std::process::exit(2);
    }
    let dir = Path::new(&args[1]);
    let sops: usize = args[2].parse().expect("SOPS is a number");
    let records: usize = args[3].parse().expect("RECORDS is a number");
    std::fs::create_dir_all(dir.join("procedures"))?;
    let mut toml = String::new();
    for (name, medium, location, connectivity) in [
        ("disk", "disk", "on-site", "online"),
        ("usb", "usb", "on-site", "offline"),
        ("cloud", "object-storage", "off-site", "online"),
    ] {
        toml.push_str(&format!(
            "[targets.{name}]\nkind = \"local\"\npath = \"/srv/{name}\"\nmedium = \"{medium}\"\nlocation = \"{location}\"\nconnectivity = \"{connectivity}\"\n\n"
        ));
    }
    std::fs::write(dir.join("sopkit.toml"), toml)?;
    let steps = ["backup", "copy-offline", "copy-offsite", "verify-backup"];
    let targets = ["disk", "usb", "cloud", "disk"];
    for i in 0..sops {
        let mut body = format!(
            "---\nid: BENCH-{i:04}\ntitle: Bench {i}\nretention: 35d\nslos:\n  - {{ step: backup, every: 1d }}\n  - {{ step: verify-backup, every: 7d }}\n---\n\n# Bench {i}\n\n## Steps\n"
        );
        for (s, t) in steps.iter().zip(targets) {
            body.push_str(&format!("\n```sh {{step={s} target={t}}}\necho {s}\n```\n"));
        }
        std::fs::write(dir.join(format!("procedures/BENCH-{i:04}.md")), body)?;
    }
    // A small deterministic generator (xorshift): the same ledger on every run.
    let mut x: u64 = 0x2545_F491_4F6C_DD1D;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let fmt = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");
    let at = |t: i64| {
        time::OffsetDateTime::from_unix_timestamp(t)
            .unwrap()
            .format(fmt)
            .unwrap()
    };
    let writers = 10;
    let signers = match args.get(4) {
        Some(keys) => Some(policy(dir, Path::new(keys), writers)?),
        None => None,
    };
    let runs = records / 2;
    let mut chains: Vec<(u64, Option<String>)> = vec![(0, None); writers];
    // Each writer's last end: a writer appends in time order, so its next run starts later.
    let mut last_end: Vec<i64> = vec![i64::MIN; writers];
    // Runs in time order, so each writer's chain is in time order too.
    let mut times: Vec<i64> = (0..runs)
        .map(|_| now - (next() % (60 * 86_400)) as i64)
        .collect();
    times.sort();
    for (n, started) in times.into_iter().enumerate() {
        let w = n % writers;
        let started = started.max(last_end[w].saturating_add(1));
        let sop = (next() % sops as u64) as usize;
        let k = (next() % steps.len() as u64) as usize;
        let ok = next() % 20 != 0;
        let host = format!("host{w}");
        let operator = format!("op{w}@example.com");
        let wdir = dir.join(format!("evidence/{operator}@{host}"));
        std::fs::create_dir_all(&wdir)?;
        let base = Record {
            writer: String::new(),
            attribution: None,
            format: FORMAT,
            seq: 0,
            prev: None,
            kind: Kind::Start,
            run: format!("{n:016x}"),
            sop: format!("BENCH-{sop:04}"),
            sop_path: format!("procedures/BENCH-{sop:04}.md"),
            commit: Some("0".repeat(40)),
            content_sha256: "0".repeat(64),
            version: Some(1),
            allow_draft: false,
            step: steps[k].to_string(),
            role: None,
            target: Some(targets[k].to_string()),
            operator,
            host,
            started: at(started),
            ended: None,
            exit_status: None,
            outcome: None,
            files: Vec::new(),
            verification: Vec::new(),
            sopkit_version: sopkit::VERSION.to_string(),
            digest: String::new(),
        };
        let mut end = base.clone();
        end.kind = Kind::End;
        let ended = started + 60 + (next() % 600) as i64;
        last_end[w] = ended;
        end.ended = Some(at(ended));
        end.exit_status = Some(if ok { 0 } else { 1 });
        end.outcome = Some(if ok {
            Outcome::Succeeded
        } else {
            Outcome::Failed
        });
        end.files = vec![FileRef {
            role: "artifact".into(),
            name: format!("/srv/{}/bench-{n}.tar.zst", targets[k]),
            size: 1 + next() % (1 << 30),
            sha256: "0".repeat(64),
        }];
        for mut r in [base, end] {
            let (seq, prev) = &mut chains[w];
            *seq += 1;
            r.seq = *seq;
            r.prev = prev.clone();
            let bytes = r.to_bytes();
            *prev = Some(sha256_hex(&bytes));
            if let Some(keys) = &signers {
                let sig = keys[w]
                    .sign("sopkit-evidence", ssh_key::HashAlg::Sha512, &bytes)
                    .and_then(|s| s.to_pem(ssh_key::LineEnding::LF))
                    .map_err(std::io::Error::other)?;
                std::fs::write(wdir.join(format!("{}.sig", record_name(*seq))), sig)?;
            }
            std::fs::write(wdir.join(record_name(*seq)), bytes)?;
        }
    }
    Ok(())
}

/// Writes the policy (people, the operator role, the public keys) and returns the writers'
/// private keys, writer `w` being person `op{w}`.
fn policy(dir: &Path, keys: &Path, writers: usize) -> std::io::Result<Vec<ssh_key::PrivateKey>> {
    std::fs::create_dir_all(dir.join("roles/keys"))?;
    std::fs::write(
        dir.join("roles/operator.md"),
        "---\nid: operator\ntitle: Operator\n---\n\n# Operator\n\n- Runs the backups.\n",
    )?;
    let mut people = String::from(
        "people:\n  - id: admin\n    name: Admin\n    email: admin@example.com\n    admin: true\n    keys: [admin.pub]\n    roles: []\n",
    );
    std::fs::copy(keys.join("admin.pub"), dir.join("roles/keys/admin.pub"))?;
    let mut private = Vec::new();
    for w in 0..writers {
        std::fs::copy(
            keys.join(format!("op{w}.pub")),
            dir.join(format!("roles/keys/op{w}.pub")),
        )?;
        people.push_str(&format!(
            "  - id: op{w}\n    name: Operator {w}\n    email: op{w}@example.com\n    keys: [op{w}.pub]\n    roles:\n      - {{ role: operator, from: 2019-01-01 }}\n"
        ));
        private.push(
            ssh_key::PrivateKey::read_openssh_file(&keys.join(format!("op{w}")))
                .map_err(std::io::Error::other)?,
        );
    }
    std::fs::write(dir.join("roles/people.yaml"), people)?;
    Ok(private)
}
