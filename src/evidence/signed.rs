//! Signed records: each record file `NNNNNN.json` may have a detached signature
//! `NNNNNN.json.sig` beside it, made by the operator with their own git signing setup (SSH in
//! the namespace `sopkit-evidence`, or OpenPGP). A [`Judge`] says who wrote a record: the
//! person whose key the policy timeline held when the run started, holding the role the step
//! requires on that day; or nobody, for writers that `[evidence] unsigned_writers` allows to
//! write unsigned records. A record that cannot be attributed where it must be never counts.

use std::path::Path;
use std::sync::Arc;

use crate::approval::signature::{self, Status};
use crate::approval::timeline::{Timeline, Trusted};

use super::Record;

/// The sshsig namespace of evidence signatures (commits use `git`, PDFs `sopkit-pdf`).
pub const NAMESPACE: &str = "sopkit-evidence";

/// The signature file of record `seq`.
pub fn sig_name(seq: u64) -> String {
    format!("{}.sig", super::record_name(seq))
}

/// How far the clock of the machine that ran a step may be behind the committer's.
const CLOCK_SKEW: i64 = 300;

/// Who wrote a record.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum Attribution {
    /// Signed by this person (id and name from people.yaml), key fingerprint.
    Person {
        id: String,
        name: String,
        key: String,
    },
    /// Unsigned, from a writer allowed to write unsigned records (or no policy exists).
    Unattributed,
}

impl Attribution {
    /// "Ann Example (ann)", or "unattributed".
    pub fn label(&self) -> String {
        match self {
            Attribution::Person { id, name, .. } => format!("{name} ({id})"),
            Attribution::Unattributed => "unattributed".into(),
        }
    }
}

/// Step id → the role `role=` requires, of one SOP revision.
type Roles = std::collections::HashMap<String, String>;

/// Judges records against the policy timeline of a repository's `HEAD`.
#[derive(Default)]
pub struct Judge {
    /// The policy after each main-line commit from the root on, with its time (ascending).
    trusted: Vec<(i64, Arc<Trusted>)>,
    /// (SOP id, step id) → the role its SOP says must run it (`role=`), from the corpus: a
    /// record cannot drop the requirement by leaving its own `role` out. For a record of
    /// another revision, that revision's own steps decide (see [`Judge::required_role`]).
    required: std::collections::HashMap<(String, String), String>,
    /// The repository, to read the SOP revision a record names, and the folder of the
    /// repository the SOP paths are relative to.
    repo: Option<std::sync::Mutex<git2::Repository>>,
    prefix: String,
    /// (commit, SOP path, content hash) → that revision's step → role, `None` when git does
    /// not hold that content there.
    revisions: std::sync::Mutex<std::collections::HashMap<(String, String, String), Option<Roles>>>,
    /// Commit id → commit time, for every commit of `HEAD`'s history.
    commit_times: std::collections::HashMap<String, i64>,
    /// The TSA certificate the policy at `HEAD` trusts (`[evidence] tsa_certificate`), and
    /// the path it names.
    pub tsa_certificate: Option<(String, Vec<u8>)>,
    /// Signatures this machine already found good (see [`signature::Memo`]): kept under
    /// `.git/` for a judge of a repository.
    memo: Option<signature::Memo>,
}

impl Judge {
    /// A judge with no policy: outside git, or before any trust root. Nothing can be
    /// attributed, so every record is taken as unattributed.
    pub fn none() -> Judge {
        Judge::default()
    }

    pub fn from_timeline(timeline: &Timeline) -> Judge {
        Judge {
            trusted: timeline
                .points
                .iter()
                .filter_map(|p| Some((p.time, p.trusted.clone()?)))
                .collect(),
            commit_times: timeline
                .times
                .iter()
                .map(|(c, t)| (c.to_string(), *t))
                .collect(),
            ..Judge::default()
        }
    }

    /// Also holds records to the `role=` of each step of `corpus`'s SOPs.
    pub fn with_roles_of(mut self, corpus: &crate::corpus::Corpus) -> Judge {
        for sop in &corpus.sops {
            let steps = corpus.docs[sop.doc].markdown.steps.iter().flatten();
            for step in steps {
                if let Some(role) = &step.role {
                    self.required
                        .insert((sop.id.clone(), step.id.clone()), role.clone());
                }
            }
        }
        self
    }

    /// The judge of the repository containing `dir` (no policy outside git).
    pub fn for_repo(dir: &Path) -> Result<Judge, crate::approval::history::Error> {
        Ok(match crate::approval::history::timeline(dir)? {
            Some(t) => Judge::of_repo(dir, &t),
            None => Judge::default(),
        })
    }

    /// The judge of the repository containing `dir`, whose policy timeline is `timeline`.
    pub fn of_repo(dir: &Path, timeline: &Timeline) -> Judge {
        let mut judge = Judge::from_timeline(timeline);
        let Some(repo) = crate::git::find(dir) else {
            return judge;
        };
        judge.prefix = crate::git::prefix_in(&repo, dir);
        // The TSA certificate as the policy at HEAD holds it (checked against its blob id).
        let at_head = judge.trusted.last().map(|(_, t)| t.clone());
        judge.tsa_certificate = at_head.and_then(|t| {
            let path = t.config.evidence.tsa_certificate.clone()?;
            let full = if judge.prefix.is_empty() {
                path.clone()
            } else {
                format!("{}/{path}", judge.prefix)
            };
            let bytes = crate::approval::policy::verified_blob(&repo, *t.files.get(&full)?)?;
            Some((path, bytes))
        });
        judge.memo = Some(signature::Memo::load(
            repo.path().join("sopkit-cache").join("signatures.bin"),
        ));
        judge.repo = Some(std::sync::Mutex::new(repo));
        judge
    }

    /// Keeps the signatures found good by this judge for the next run.
    pub fn save_memo(&self) {
        if let Some(memo) = &self.memo {
            memo.save();
        }
    }

    /// The role the step of `record` requires: as the SOP revision it ran from says, when git
    /// holds that content at the commit the record names; otherwise as the SOP says now.
    fn required_role(&self, record: &Record) -> Option<String> {
        let now = || {
            self.required
                .get(&(record.sop.clone(), record.step.clone()))
                .cloned()
        };
        let (Some(repo), Some(commit)) = (&self.repo, &record.commit) else {
            return now();
        };
        let key = (
            commit.clone(),
            record.sop_path.clone(),
            record.content_sha256.clone(),
        );
        let mut cache = self.revisions.lock().unwrap_or_else(|p| p.into_inner());
        let roles = cache.entry(key).or_insert_with(|| {
            let repo = repo.lock().unwrap_or_else(|p| p.into_inner());
            let path = if self.prefix.is_empty() {
                record.sop_path.clone()
            } else {
                format!("{}/{}", self.prefix, record.sop_path)
            };
            revision_roles(&repo, commit, &path, &record.content_sha256)
        });
        match roles {
            Some(roles) => roles.get(&record.step).cloned(),
            None => now(),
        }
    }

    /// Whether a policy exists: records must then be signed or allowed unsigned.
    pub fn rooted(&self) -> bool {
        !self.trusted.is_empty()
    }

    /// The policy in force at `t` (the first one for times before the root).
    fn at(&self, t: i64) -> Option<&Trusted> {
        let i = self.trusted.partition_point(|(time, _)| *time <= t);
        self.trusted.get(i.saturating_sub(1)).map(|(_, p)| &**p)
    }

    /// Whether the policy in force now lets `writer` write unsigned records.
    pub fn allows_unsigned_now(&self, writer: &str) -> bool {
        self.trusted
            .last()
            .is_none_or(|(_, p)| p.config.evidence.allows_unsigned(writer))
    }

    /// Who wrote `record` (read from `bytes`, in writer folder `writer`), given its detached
    /// signature; `Err` says why it cannot count.
    pub fn judge(
        &self,
        writer: &str,
        record: &Record,
        bytes: &[u8],
        sig: Option<&[u8]>,
    ) -> Result<Attribution, String> {
        let Some(t) = crate::time::parse_rfc3339(&record.started) else {
            return Err(format!(
                "has a start time `{}` that is not an RFC 3339 time",
                record.started
            ));
        };
        // A run starts after the commit it ran from was made (give or take a clock's skew).
        if let Some(made) = record
            .commit
            .as_ref()
            .and_then(|c| self.commit_times.get(c))
            && t + CLOCK_SKEW < *made
        {
            return Err(format!(
                "says it started at {}, before commit {} it ran from was made ({})",
                record.started,
                record.commit.as_deref().unwrap_or_default(),
                crate::approval::utc(*made)
            ));
        }
        // Keys and roles are those in force when the record was written: for an end record
        // when its run ended (a key revoked during the run signs no end), never earlier than
        // the start it claims.
        let t = match (&record.kind, &record.ended) {
            (super::Kind::End, Some(ended)) => match crate::time::parse_rfc3339(ended) {
                Some(e) => e.max(t),
                None => {
                    return Err(format!(
                        "has an end time `{ended}` that is not an RFC 3339 time"
                    ));
                }
            },
            _ => t,
        };
        let Some(trusted) = self.at(t) else {
            return Ok(Attribution::Unattributed);
        };
        let required = self.required_role(record);
        if let Some(role) = &required
            && record.role.as_ref() != Some(role)
        {
            return Err(format!(
                "does not name role `{role}`, which step `{}` of {} requires",
                record.step, record.sop
            ));
        }
        let Some(sig) = sig else {
            if !trusted.config.evidence.allows_unsigned(writer) {
                return Err(format!(
                    "is not signed, and sopkit.toml's `[evidence] unsigned_writers` does not \
                     name writer `{writer}`"
                ));
            }
            if let Some(role) = &record.role {
                return Err(format!(
                    "is not signed, but step `{}` must be run by a holder of role `{role}`",
                    record.step
                ));
            }
            return Ok(Attribution::Unattributed);
        };
        let policy = &trusted.policy;
        let v = signature::verify_remembered(
            &policy.keyring,
            sig,
            bytes,
            NAMESPACE,
            self.memo.as_ref(),
        );
        match v.status {
            Status::Valid => {}
            Status::UnknownKey => {
                return Err(format!(
                    "has a signature by a key no person in people.yaml holds ({})",
                    v.detail
                ));
            }
            _ => return Err(format!("has a signature that is not valid: {}", v.detail)),
        }
        let Some(person) = v.owner.as_deref().and_then(|o| policy.person(o)) else {
            return Err("has a signature by a key no person in people.yaml holds".into());
        };
        let day =
            time::OffsetDateTime::from_unix_timestamp(t).map_or(time::Date::MIN, |d| d.date());
        if let Some(role) = &record.role
            && !person.holds(role, day)
        {
            return Err(format!(
                "was signed by {} ({}), who did not hold role `{role}` on {day}, which step `{}` \
                 requires",
                person.name, person.id.value, record.step
            ));
        }
        Ok(Attribution::Person {
            id: person.id.value.clone(),
            name: person.name.clone(),
            key: v.fingerprint.unwrap_or_default(),
        })
    }
}

/// The `role=` of each step of the SOP at `path` (from the repository's root) in `commit`,
/// when its content there hashes to `sha256`.
fn revision_roles(
    repo: &git2::Repository,
    commit: &str,
    path: &str,
    sha256: &str,
) -> Option<Roles> {
    let commit = repo.find_commit(git2::Oid::from_str(commit).ok()?).ok()?;
    let entry = commit.tree().ok()?.get_path(Path::new(path)).ok()?;
    let blob = repo.find_blob(entry.id()).ok()?;
    let text = std::str::from_utf8(blob.content()).ok()?;
    if crate::digest::sha256_hex(text.as_bytes()) != sha256 {
        return None;
    }
    let body_start = match crate::corpus::front_matter::split(text) {
        Ok(Some(b)) => b.body_start,
        _ => 0,
    };
    let md = crate::corpus::markdown::parse(text, body_start);
    Some(
        md.steps
            .into_iter()
            .flatten()
            .filter_map(|s| Some((s.id, s.role?)))
            .collect(),
    )
}
