//! The approval history of every SOP, derived from git and never typed by hand.
//!
//! Commits are read oldest first. Who may sign comes from the policy timeline
//! ([`super::timeline`]): each commit is judged by the policy in force just before the point
//! where it enters the main line. Each change of an SOP's content starts a new revision;
//! approval commits (trailers, see [`super::trailer`]) add signatures to the revision whose
//! content hash they name. A revision becomes effective, with the next version number, once
//! every approver role has a valid `approved` signature from someone who is not one of its
//! authors (and, when an author is unknown, from two different people). The walk is cached
//! under `.git/` ([`super::cache`]) so that the next run reads only new commits.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::cache;
use super::signature::{self, KeyKind};
use super::timeline::{self, Timeline, Trusted};
use super::trailer;
use crate::digest::sha256_hex;

pub use super::timeline::PolicyChange;
use crate::config::Config;
use crate::corpus::{front_matter, id_from_file_name, is_sop_path};
use crate::source::SourceFile;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    // git2's message alone: its Display adds class and code numbers (see tree::Error).
    #[error("git: {}", .0.message())]
    Git(git2::Error),
    #[error(transparent)]
    Repository(#[from] crate::git::Error),
    #[error(
        "sopkit.toml asks for `backend = \"gnupg\"`, but this sopkit was built without the `gpgme` feature"
    )]
    NoGnupg,
}

impl From<git2::Error> for Error {
    fn from(e: git2::Error) -> Error {
        Error::Git(e)
    }
}

/// How one signature on an SOP revision was judged. Exactly one applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    Valid,
    /// Approval trailers on an unsigned commit: a squash or rebase merge rewrote it.
    Unsigned,
    BadSignature,
    UnknownKey,
    ExpiredKey,
    RevokedKey,
    /// The signer did not hold a required role on the day of signing.
    RoleNotHeld,
    MeaningNotAllowed,
    /// Separation of duties: the signer authored the revision.
    SelfApproval,
    /// The trailer names content the SOP did not have in that commit.
    WrongContent,
    Unsupported,
    /// Dated after the commit that brought it into the main line (or after now).
    FutureDated,
    /// An approval commit committed again by someone else (rebase, cherry-pick).
    Recommitted,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Valid => "valid",
            Status::Unsigned => "unsigned",
            Status::BadSignature => "bad signature",
            Status::UnknownKey => "unknown key",
            Status::ExpiredKey => "expired key",
            Status::RevokedKey => "revoked key",
            Status::RoleNotHeld => "signer does not hold a required role",
            Status::MeaningNotAllowed => "meaning not allowed",
            Status::SelfApproval => "self-approval",
            Status::WrongContent => "approves other content",
            Status::Unsupported => "unsupported signature",
            Status::FutureDated => "dated in the future",
            Status::Recommitted => "re-committed by someone else",
        }
    }

    /// Whether this is a forged or broken signature (an error that stays), rather than a good
    /// signature that merely does not count here (a warning).
    pub fn is_forgery_or_broken(self) -> bool {
        matches!(
            self,
            Status::BadSignature
                | Status::UnknownKey
                | Status::ExpiredKey
                | Status::RevokedKey
                | Status::Unsupported
        )
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SignatureRecord {
    pub commit: String,
    /// Seconds since the epoch (UTC): the OpenPGP signature time, else the commit time.
    pub time: i64,
    pub signer: Option<String>,
    pub name: Option<String>,
    pub role: Option<String>,
    pub meaning: String,
    pub fingerprint: Option<String>,
    pub kind: Option<KeyKind>,
    pub status: Status,
    pub detail: String,
    /// For a valid `approved` signature: every approver role of the revision the signer held
    /// that day. `role` is the one the signature counts for (see [`Revision::assign_roles`]).
    #[serde(default)]
    pub eligible: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Revision {
    /// 1-based count of content changes.
    pub number: usize,
    pub commit: String,
    pub time: i64,
    pub author: String,
    pub summary: String,
    pub path: String,
    /// Earlier paths of this content, oldest first (renames that changed nothing else).
    pub renamed_from: Vec<String>,
    pub sha256: String,
    /// The git blob id of that content.
    #[serde(default)]
    pub blob: String,
    /// The roles that must approve: those the SOP names, and when that list changed, also
    /// those of the last effective revision.
    pub approvers: Vec<String>,
    /// The roles the SOP's front matter names.
    pub declared_approvers: Vec<String>,
    /// People who changed the SOP since the last effective revision, known by the key that
    /// signed their content commit.
    pub authors: BTreeSet<String>,
    /// Authors of unsigned (or badly signed) content commits since the last effective
    /// revision, as the commits name them: any approver could be one of them.
    pub unattributed: BTreeSet<String>,
    pub separation_of_duties: bool,
    /// The version this revision became, once effective.
    pub version: Option<u32>,
    pub effective_time: Option<i64>,
    pub effective_commit: Option<String>,
    pub signatures: Vec<SignatureRecord>,
}

impl Revision {
    /// Gives each valid `approved` signature the approver role it counts for, so that as many
    /// roles as possible are covered, each by a different person: a maximum matching of
    /// signers to the roles they held (Kuhn's augmenting paths; a handful of roles needs
    /// nothing more). Taking each signer's first role instead would leave a revision a draft
    /// when Ann (qa-lead and it-lead) signs before Bob (qa-lead only), although Ann covers
    /// it-lead and Bob qa-lead.
    pub fn assign_roles(&mut self) {
        let mut signers: Vec<(&str, Vec<&str>)> = Vec::new();
        for s in self
            .signatures
            .iter()
            .filter(|s| s.status == Status::Valid && s.meaning == "approved")
        {
            let Some(who) = s.signer.as_deref() else {
                continue;
            };
            if !signers.iter().any(|(w, _)| *w == who) {
                signers.push((who, s.eligible.iter().map(String::as_str).collect()));
            }
        }
        fn augment<'a>(
            i: usize,
            signers: &[(&'a str, Vec<&'a str>)],
            holder: &mut BTreeMap<&'a str, usize>,
            seen: &mut BTreeSet<&'a str>,
        ) -> bool {
            for &role in &signers[i].1 {
                if !seen.insert(role) {
                    continue;
                }
                let free = match holder.get(role) {
                    None => true,
                    Some(&j) => augment(j, signers, holder, seen),
                };
                if free {
                    holder.insert(role, i);
                    return true;
                }
            }
            false
        }
        let mut holder: BTreeMap<&str, usize> = BTreeMap::new();
        for i in 0..signers.len() {
            augment(i, &signers, &mut holder, &mut BTreeSet::new());
        }
        let matched: BTreeMap<String, String> = holder
            .into_iter()
            .map(|(role, i)| (signers[i].0.to_string(), role.to_string()))
            .collect();
        for s in &mut self.signatures {
            if s.status == Status::Valid
                && s.meaning == "approved"
                && let Some(role) = s.signer.as_ref().and_then(|w| matched.get(w))
            {
                s.role = Some(role.clone());
            }
        }
    }

    /// What keeps this revision a draft, in words: the roles still to approve, or that it
    /// names none (an empty `approvers` can never make content effective).
    pub fn missing_label(&self) -> String {
        if self.approvers.is_empty() {
            "no approver roles: `approvers` is empty".to_string()
        } else {
            format!("missing: {}", self.missing().join(", "))
        }
    }

    /// Whether every approver role is covered and separation of duties holds.
    pub fn complete(&self) -> bool {
        !self.approvers.is_empty() && self.missing().is_empty()
    }

    /// Everything still needed: the uncovered roles, and a second approver when unsigned
    /// content commits leave open who wrote the revision.
    pub fn missing(&self) -> Vec<String> {
        let mut m = self.missing_roles();
        if self.needs_second_approver() {
            m.push(format!(
                "a second approver (unsigned content commits by {} could be any approver's)",
                self.unattributed
                    .iter()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        m
    }

    /// Separation of duties when some content commits are unsigned: their author could be
    /// any approver, so nobody may approve such a revision alone.
    fn needs_second_approver(&self) -> bool {
        if !self.separation_of_duties || self.unattributed.is_empty() {
            return false;
        }
        let signers: BTreeSet<&str> = self
            .signatures
            .iter()
            .filter(|s| s.status == Status::Valid && s.meaning == "approved")
            .filter(|s| !s.eligible.is_empty())
            .filter_map(|s| s.signer.as_deref())
            .collect();
        signers.len() < 2
    }

    /// Approver roles not yet covered by a valid `approved` signature.
    pub fn missing_roles(&self) -> Vec<String> {
        let covered = covered_roles(&self.signatures, &self.approvers);
        self.approvers
            .iter()
            .filter(|r| !covered.contains(*r))
            .cloned()
            .collect()
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SopHistory {
    pub id: String,
    pub revisions: Vec<Revision>,
}

impl SopHistory {
    /// The latest revision whose content is `content`. Drafts that no approval names carry no
    /// SHA-256 after a walk (see `load`): they are recognised by their git blob id.
    pub fn revision_of(&self, content: &[u8]) -> Option<&Revision> {
        let sha256 = sha256_hex(content);
        let blob = git2::Oid::hash_object(git2::ObjectType::Blob, content)
            .map(|b| b.to_string())
            .unwrap_or_default();
        self.revisions
            .iter()
            .rev()
            .find(|r| r.sha256 == sha256 || (r.sha256.is_empty() && r.blob == blob))
    }

    pub fn last_effective(&self) -> Option<&Revision> {
        self.revisions.iter().rev().find(|r| r.version.is_some())
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Problem {
    pub commit: String,
    pub message: String,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct History {
    pub head: Option<String>,
    pub trust_root: Option<String>,
    pub sops: BTreeMap<String, SopHistory>,
    pub policy_changes: Vec<PolicyChange>,
    pub problems: Vec<Problem>,
    /// Commit ids whose historical findings an admin accepted (`[approval] accepted_findings`).
    #[serde(skip)]
    pub accepted: Vec<String>,
    /// The config in force at the head: its policy parts from the timeline.
    #[serde(skip)]
    pub config: Config,
    /// Once there is a trust root: the template files the timeline trusts at the head, by
    /// path from the SOP folder.
    #[serde(skip)]
    pub templates: Option<BTreeMap<String, Vec<u8>>>,
}

impl History {
    /// Whether an admin accepted the findings of this commit.
    pub fn is_accepted(&self, commit: &str) -> bool {
        self.accepted
            .iter()
            .any(|a| a.len() >= 7 && commit.starts_with(a.as_str()))
    }
}

/// Assigns valid `approved` signatures to approver roles, one signer per role.
fn covered_roles(signatures: &[SignatureRecord], approvers: &[String]) -> BTreeSet<String> {
    let mut covered = BTreeSet::new();
    let mut used = BTreeSet::new();
    for s in signatures
        .iter()
        .filter(|s| s.status == Status::Valid && s.meaning == "approved")
    {
        let (Some(signer), Some(role)) = (&s.signer, &s.role) else {
            continue;
        };
        if approvers.contains(role) && !covered.contains(role) && used.insert(signer.clone()) {
            covered.insert(role.clone());
        }
    }
    covered
}

fn date_of(t: i64) -> time::Date {
    time::OffsetDateTime::from_unix_timestamp(t).map_or(time::Date::MIN, |d| d.date())
}

/// What an SOP file says about itself at one commit.
#[derive(Clone)]
struct SopState {
    id: String,
    /// Equal blob ids are equal content, so nothing needs hashing to see a change.
    blob: git2::Oid,
    approvers: Vec<String>,
}

/// Reads SOP files met in history. A long history edits the same files over and over, mostly
/// below their front matter: the YAML is parsed once per distinct front matter, and a blob is
/// hashed (SHA-256) only when an approval names content or a revision needs its hash shown.
struct SopReader {
    /// Front matter text → the id and approvers it declares.
    metas: HashMap<String, (Option<String>, Vec<String>)>,
    /// Blob id → SHA-256 of its bytes.
    hashes: HashMap<git2::Oid, String>,
}

impl SopReader {
    fn new() -> SopReader {
        SopReader {
            metas: HashMap::new(),
            hashes: HashMap::new(),
        }
    }

    fn read(&mut self, path: &str, blob: git2::Oid, bytes: &[u8]) -> SopState {
        // Validation is fast; the lossy decoder only for the rare file that is not UTF-8.
        let text = match std::str::from_utf8(bytes) {
            Ok(t) => std::borrow::Cow::Borrowed(t),
            Err(_) => String::from_utf8_lossy(bytes),
        };
        let (id, approvers) = match front_matter::split(&text) {
            Ok(Some(b)) => {
                let fm = &text[..b.body_start];
                if let Some(m) = self.metas.get(fm) {
                    m.clone()
                } else {
                    let file = SourceFile::new(path, fm.to_string());
                    let meta = front_matter::parse_sop(&file, b).ok().map(|(m, _)| m);
                    let id = meta
                        .as_ref()
                        .and_then(|m| m.id.as_ref())
                        .map(|i| i.value.clone());
                    let approvers: Vec<String> = meta
                        .and_then(|m| m.approvers)
                        .map(|a| a.value.into_iter().map(|r| r.value).collect())
                        .unwrap_or_default();
                    self.metas
                        .insert(fm.to_string(), (id.clone(), approvers.clone()));
                    (id, approvers)
                }
            }
            _ => (None, Vec::new()),
        };
        SopState {
            id: id.unwrap_or_else(|| id_from_file_name(path)),
            blob,
            approvers,
        }
    }

    /// The content hash of a blob, now.
    fn sha(&mut self, repo: &git2::Repository, blob: git2::Oid) -> Option<String> {
        if let Some(h) = self.hashes.get(&blob) {
            return Some(h.clone());
        }
        let h = sha256_hex(repo.find_blob(blob).ok()?.content());
        self.hashes.insert(blob, h.clone());
        Some(h)
    }
}

impl Error {
    /// Whether the folder lies outside any git work tree (so it has no history at all).
    pub fn outside_git(&self) -> bool {
        matches!(
            self,
            Error::Repository(
                crate::git::Error::NotARepository { .. } | crate::git::Error::Bare(_)
            )
        )
    }

    /// Whether the history was refused as shallow.
    pub fn is_shallow(&self) -> bool {
        matches!(self, Error::Repository(crate::git::Error::Shallow))
    }
}

/// How much a signature's own date may run ahead of the commit that brings it into the main
/// line: git stamps the commit and the signer's clock stamps the signature a moment apart.
const CLOCK_SKEW: i64 = 300;

/// Opens the repository containing `dir` (a work tree, not shallow) and resolves `rev`.
fn open(dir: &Path, rev: Option<&str>) -> Result<(git2::Repository, Option<git2::Oid>), Error> {
    // Like git itself, do not hash every object again on each read (a quarter of a history
    // walk): objects are checked when they are fetched (index-pack) and by `git fsck`.
    // Signatures are checked over the commit bytes read, SOP content by its SHA-256, and the
    // policy files by their blob ids (`policy::verified_blob`); trees and unsigned commits
    // are taken from the local object store as git takes them (README: the local `.git/` is
    // trusted like the sopkit binary itself).
    git2::opts::strict_hash_verification(false);
    let repo = crate::git::whole_history(dir)?;
    let head = match repo
        .revparse_single(rev.unwrap_or("HEAD"))
        .and_then(|o| o.peel_to_commit())
    {
        Ok(c) => Some(c.id()),
        Err(_) if rev.is_none() => None, // no commits yet
        Err(e) => return Err(e.into()),
    };
    Ok((repo, head))
}

/// The config in force at `HEAD`: its policy parts (targets, notify, approval, paths) as the
/// timeline trusts them, `[links]` from `tree_config`. Outside git, or before the trust root,
/// the tree's own config.
pub fn trusted_config(dir: &Path, tree_config: &Config) -> Result<Config, Error> {
    let (repo, head) = match open(dir, None) {
        Err(e) if e.outside_git() => return Ok(tree_config.clone()),
        other => other?,
    };
    let Some(head) = head else {
        return Ok(tree_config.clone());
    };
    let prefix = crate::git::prefix_in(&repo, dir);
    let timeline = Timeline::build(&repo, head, &prefix, crate::time::now(), None)?;
    Ok(timeline.effective_config(tree_config))
}

/// The policy timeline of `HEAD` in the repository containing `dir` (`None` outside git or
/// before the first commit).
pub fn timeline(dir: &Path) -> Result<Option<Timeline>, Error> {
    let (repo, head) = match open(dir, None) {
        Err(e) if e.outside_git() => return Ok(None),
        other => other?,
    };
    let Some(head) = head else { return Ok(None) };
    let prefix = crate::git::prefix_in(&repo, dir);
    Ok(Some(Timeline::build(
        &repo,
        head,
        &prefix,
        crate::time::now(),
        None,
    )?))
}

/// The policy the timeline trusts once `rev` is on the main line (`None` before the root).
pub fn policy_at(dir: &Path, rev: &str) -> Result<Option<Arc<Trusted>>, Error> {
    let (repo, head) = open(dir, Some(rev))?;
    let Some(head) = head else { return Ok(None) };
    let prefix = crate::git::prefix_in(&repo, dir);
    let timeline = Timeline::build(&repo, head, &prefix, crate::time::now(), None)?;
    Ok(timeline.at_head().cloned())
}

/// Gives every revision of `sop` its SHA-256 (a walk leaves drafts that no approval names
/// without one), reading the blobs from the repository containing `dir`.
pub fn fill_hashes(dir: &Path, sop: &mut SopHistory) -> Result<(), Error> {
    let (repo, _) = open(dir, None)?;
    for rev in sop.revisions.iter_mut().filter(|r| r.sha256.is_empty()) {
        let blob = repo.find_blob(git2::Oid::from_str(&rev.blob)?)?;
        rev.sha256 = sha256_hex(blob.content());
    }
    Ok(())
}

/// Reads the history of the repository containing `dir`, up to `rev` (default `HEAD`).
/// `dir` may be a sub-folder: paths are then relative to it. `config` is the tree's own
/// `sopkit.toml`; its policy parts count only where the timeline has no root.
pub fn load(dir: &Path, rev: Option<&str>, config: &Config) -> Result<History, Error> {
    let (repo, head) = open(dir, rev)?;
    let Some(head) = head else {
        return Ok(History::default());
    };
    let prefix = crate::git::prefix_in(&repo, dir);
    let now = crate::time::now();
    // Only the history of HEAD is cached (a `--base` or `--at` revision before it is read in
    // full); a revision that is HEAD's commit, as `render` and `build` name it, is HEAD.
    let at_head = rev.is_none()
        || repo
            .head()
            .ok()
            .and_then(|h| h.peel_to_commit().ok())
            .is_some_and(|c| c.id() == head);
    let cache_file = at_head.then(|| cache::path(&repo, &prefix));
    let strip = |p: &str| {
        p.strip_prefix(&format!("{prefix}/"))
            .unwrap_or(p)
            .to_string()
    };
    // The SOP folder as the tree's own config names it: a walk from the start scans it while
    // the timeline is built (it is scanned again should the timeline trust another).
    let guessed = timeline::rooted(&config.paths, &prefix).procedures;
    let (timeline, saved, order, early) =
        match resume(&repo, head, &prefix, now, cache_file.as_deref(), config)? {
            Some((timeline, saved, order)) => (timeline, saved, order, None),
            None => {
                // One walk: the timeline's, which lists the commits it met in an order that
                // has parents first.
                let (mut timeline, scan) =
                    timeline_and_scan(&repo, head, &prefix, now, &guessed, &strip)?;
                let order = std::mem::take(&mut timeline.order);
                (timeline, None, order, Some(scan))
            }
        };
    let config = timeline.effective_config(config);
    let paths = timeline::rooted(&config.paths, &prefix);
    let h = History {
        head: Some(head.to_string()),
        trust_root: timeline.root.map(|r| r.to_string()),
        policy_changes: timeline.changes.clone(),
        accepted: config.approval.accepted_findings.clone(),
        config: config.clone(),
        templates: timeline.at_head().map(|t| {
            t.files
                .iter()
                .filter(|(p, _)| crate::corpus::under(p, &paths.templates))
                .filter_map(|(p, id)| {
                    let bytes = super::policy::verified_blob(&repo, *id)?;
                    let rel = p.strip_prefix(&format!("{prefix}/")).unwrap_or(p);
                    Some((rel.to_string(), bytes))
                })
                .collect()
        }),
        ..History::default()
    };

    let judge_of = |oid: git2::Oid| timeline.entry_of(oid).and_then(|i| timeline.before(i));
    let verified = verify_signed(&repo, &order, &judge_of, &config)?;
    let (mut walk, head_paths) = Walk::resume(h, saved);
    // First what the commits hold (the costly half), then what the policy makes of it.
    let mut scan = match early {
        Some(scan) if paths.procedures == guessed => scan?,
        _ => scan(&repo, &order, &paths.procedures, head_paths, &strip)?,
    };
    let mut reader = SopReader::new();
    // In order: revisions (following renames) and approvals.
    for oid in &order {
        let Some(mut step) = scan.steps.remove(oid) else {
            continue;
        };
        scan.resolve(&mut step);
        let verification = verified.get(&step.oid);
        walk.record_changes(
            &mut step,
            author_identity(verification),
            config.approval.separation_of_duties,
        );
        let Some(approval) = walk.approval_of(&step) else {
            continue;
        };
        let judged = Judged {
            repo: &repo,
            judge: judge_of(step.oid).cloned(),
            verification,
            entry_time: timeline.entry_time(step.oid).unwrap_or(now),
        };
        walk.record_approval(&step, &approval, &judged, &mut reader);
    }
    let Walk {
        mut h,
        states,
        last_effective: _,
    } = walk;
    hash_shown_revisions(&mut h, &repo, &mut reader);
    if let Some(file) = cache_file {
        let head_paths = scan.ids_at(head, &strip);
        save_cache(&file, &timeline, &config, head, &mut h, states, head_paths);
    }
    // libgit2 frees its caches of a long walk one object at a time (a tenth of a cold walk of
    // 100,000 commits): that happens on a thread of its own, after the answer is ready.
    std::thread::spawn(move || drop(repo));
    // The timeline's own findings come first, then those of the walk.
    let mut problems: Vec<Problem> = timeline
        .problems
        .iter()
        .cloned()
        .chain(timeline.pin_problem())
        .map(|(commit, message)| Problem { commit, message })
        .collect();
    problems.append(&mut h.problems);
    h.problems = problems;
    Ok(h)
}

/// Saves what the walk up to `head` found, so that the next run reads only newer commits;
/// nothing is saved when a commit time was cut back to now (a later run would judge it
/// differently).
fn save_cache(
    file: &Path,
    timeline: &Timeline,
    config: &Config,
    head: git2::Oid,
    h: &mut History,
    states: HashMap<String, SopState>,
    head_paths: BTreeMap<String, String>,
) {
    let Some(point) = timeline.points.last().filter(|_| !timeline.clamped) else {
        return;
    };
    let trusted = point.trusted.as_ref();
    let saved = cache::Saved {
        key: cache::key(config),
        head: head.to_string(),
        time: point.time,
        root: timeline.root.map(|r| r.to_string()),
        files: trusted
            .map(|t| {
                t.files
                    .iter()
                    .map(|(p, id)| (p.clone(), id.to_string()))
                    .collect()
            })
            .unwrap_or_default(),
        config_blob: trusted.and_then(|t| t.config_blob).map(|b| b.to_string()),
        changes: timeline.changes.clone(),
        timeline_problems: timeline.problems.clone(),
        sops: std::mem::take(&mut h.sops),
        problems: h.problems.clone(),
        states: states
            .into_values()
            .map(|s| (s.id, s.blob.to_string(), s.approvers))
            .collect(),
        head_paths,
    };
    cache::write(file, &saved);
    h.sops = saved.sops;
}

/// Every signed commit that enters the main line after the root, verified (in parallel for
/// the in-process backend) against the keys in force just before it entered.
fn verify_signed<'t>(
    repo: &git2::Repository,
    order: &[git2::Oid],
    judge_of: &(dyn Fn(git2::Oid) -> Option<&'t Arc<Trusted>> + Sync),
    config: &Config,
) -> Result<HashMap<git2::Oid, signature::Verification>, Error> {
    let mut signed: Vec<(git2::Oid, Vec<u8>, Vec<u8>)> = Vec::new();
    for &oid in order {
        if judge_of(oid).is_some()
            && let Ok((sig, payload)) = repo.extract_signature(&oid, None)
        {
            signed.push((oid, sig.to_vec(), payload.to_vec()));
        }
    }
    let keyring = |oid: &git2::Oid| &judge_of(*oid).expect("only judged commits").policy.keyring;
    Ok(match config.approval.backend {
        crate::config::Backend::InProcess => {
            use rayon::prelude::*;
            signed
                .par_iter()
                .map(|(oid, sig, payload)| (*oid, signature::verify(keyring(oid), sig, payload)))
                .collect()
        }
        #[cfg(feature = "gpgme")]
        crate::config::Backend::Gnupg => {
            let home = config.approval.gnupg_home.as_deref().map(Path::new);
            signed
                .iter()
                .map(|(oid, sig, payload)| {
                    (*oid, super::gnupg::verify(home, keyring(oid), sig, payload))
                })
                .collect()
        }
        #[cfg(not(feature = "gpgme"))]
        crate::config::Backend::Gnupg => return Err(Error::NoGnupg),
    })
}

/// What the walk has built so far: the history, and per SOP id its current content and the
/// index of its last effective revision (a search per revision would make a long history of
/// drafts quadratic).
struct Walk {
    h: History,
    states: HashMap<String, SopState>,
    last_effective: HashMap<String, usize>,
}

/// What an approval commit is judged with: the policy in force before it entered the main
/// line, its signature's verification, and when it entered.
struct Judged<'r> {
    repo: &'r git2::Repository,
    judge: Option<Arc<Trusted>>,
    verification: Option<&'r signature::Verification>,
    entry_time: i64,
}

impl Walk {
    /// A walk from the start (`saved` is `None`) or continued from the cache, with the SOP
    /// files of the cached head.
    #[allow(clippy::type_complexity)]
    fn resume(
        mut h: History,
        saved: Option<cache::Saved>,
    ) -> (Walk, Option<(git2::Oid, BTreeMap<String, String>)>) {
        let mut walk = Walk {
            h: History::default(),
            states: HashMap::new(),
            last_effective: HashMap::new(),
        };
        let mut head_paths = None;
        if let Some(saved) = saved {
            h.sops = saved.sops;
            for (id, sop) in &h.sops {
                if let Some(i) = sop.revisions.iter().rposition(|r| r.version.is_some()) {
                    walk.last_effective.insert(id.clone(), i);
                }
            }
            h.problems = saved.problems;
            walk.states = saved
                .states
                .into_iter()
                .filter_map(|(id, blob, approvers)| {
                    let state = SopState {
                        id: id.clone(),
                        blob: git2::Oid::from_str(&blob).ok()?,
                        approvers,
                    };
                    Some((id, state))
                })
                .collect();
            head_paths = git2::Oid::from_str(&saved.head)
                .ok()
                .map(|oid| (oid, saved.head_paths));
        }
        walk.h = h;
        (walk, head_paths)
    }

    /// The SOP files `step` added or changed: a new revision for new content, a rename
    /// followed for the same content.
    fn record_changes(
        &mut self,
        step: &mut Step,
        author_person: Option<String>,
        separation_of_duties: bool,
    ) {
        let (oid, time) = (step.oid, step.time);
        let (h, states, last_effective) = (&mut self.h, &mut self.states, &self.last_effective);
        for (rel, state) in std::mem::take(&mut step.changed) {
            let entry = h
                .sops
                .entry(state.id.clone())
                .or_insert_with(|| SopHistory {
                    id: state.id.clone(),
                    revisions: Vec::new(),
                });
            let changed = states.get(&state.id).is_none_or(|s| s.blob != state.blob);
            if changed {
                let draft = entry.revisions.last().filter(|r| r.version.is_none());
                let mut authors = draft.map(|r| r.authors.clone()).unwrap_or_default();
                let mut unattributed = draft.map(|r| r.unattributed.clone()).unwrap_or_default();
                match &author_person {
                    Some(p) => authors.insert(p.clone()),
                    None => unattributed.insert(step.author_label.clone()),
                };
                // A change of approvers needs the approvers of the last effective revision too.
                let mut approvers = state.approvers.clone();
                if let Some(last) = last_effective.get(&state.id).map(|&i| &entry.revisions[i])
                    && last.declared_approvers != state.approvers
                {
                    for r in &last.declared_approvers {
                        if !approvers.contains(r) {
                            approvers.push(r.clone());
                        }
                    }
                }
                entry.revisions.push(Revision {
                    number: entry.revisions.len() + 1,
                    commit: oid.to_string(),
                    time,
                    author: step.author_label.clone(),
                    summary: step.summary.clone(),
                    path: rel.clone(),
                    renamed_from: Vec::new(),
                    // Filled in after the walk where it is needed (see `SopReader`).
                    sha256: String::new(),
                    blob: state.blob.to_string(),
                    approvers,
                    declared_approvers: state.approvers.clone(),
                    authors,
                    unattributed,
                    separation_of_duties,
                    version: None,
                    effective_time: None,
                    effective_commit: None,
                    signatures: Vec::new(),
                });
            } else if let Some(r) = entry.revisions.last_mut()
                && r.path != rel
            {
                // A rename without a content change: the revision now lives at `rel`.
                r.renamed_from
                    .push(std::mem::replace(&mut r.path, rel.clone()));
            }
            states.insert(state.id.clone(), state);
        }
    }

    /// The approval `step`'s trailers claim, if they are well formed and the commit changes
    /// no files; otherwise a problem is recorded.
    fn approval_of(&mut self, step: &Step) -> Option<trailer::Approval> {
        let oid = step.oid;
        let h = &mut self.h;
        match &step.trailers {
            None => None,
            Some(Ok(a)) if step.changes_files => {
                h.problems.push(Problem {
                    commit: oid.to_string(),
                    message: format!(
                        "approval trailers for {} in a commit that changes files: an approval \
                         commit carries no changes, so this is not an approval",
                        a.approves
                            .iter()
                            .map(|x| x.sop.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                });
                None
            }
            Some(Ok(a)) => Some(a.clone()),
            Some(Err(message)) => {
                h.problems.push(Problem {
                    commit: oid.to_string(),
                    message: message.clone(),
                });
                None
            }
        }
    }

    /// An approval: each SOP it names gets the signature judged, and a revision whose every
    /// approver role has signed becomes effective with the next version.
    fn record_approval(
        &mut self,
        step: &Step,
        approval: &trailer::Approval,
        judged: &Judged<'_>,
        reader: &mut SopReader,
    ) {
        let (oid, time, repo) = (step.oid, step.time, judged.repo);
        let (h, last_effective) = (&mut self.h, &mut self.last_effective);
        let is_signed = repo.extract_signature(&oid, None).is_ok();
        for a in &approval.approves {
            // The blobs and hashes of the SOP's files in this commit's own tree.
            let current: Vec<(String, String)> = step
                .content
                .get(&a.sop)
                .into_iter()
                .flatten()
                .filter_map(|&blob| Some((blob.to_string(), reader.sha(repo, blob)?)))
                .collect();
            let Some(sop) = h.sops.get_mut(&a.sop) else {
                h.problems.push(Problem {
                    commit: oid.to_string(),
                    message: format!("approval names SOP `{}`, which does not exist", a.sop),
                });
                continue;
            };
            // The approved content is normally what this commit holds: found by its blob, with
            // no hashing of the revisions; otherwise the revisions are hashed, latest first.
            let matching = current.iter().find(|(_, h)| *h == a.sha256).map(|(b, _)| b);
            let rev_index = match matching {
                Some(b) => sop.revisions.iter().rposition(|r| r.blob == *b),
                None => sop.revisions.iter().rposition(|r| {
                    r.sha256 == a.sha256
                        || (r.sha256.is_empty()
                            && git2::Oid::from_str(&r.blob)
                                .ok()
                                .and_then(|b| reader.sha(repo, b))
                                .is_some_and(|h| h == a.sha256))
                }),
            };
            let record = judge_signature(
                &Signed {
                    oid,
                    commit_time: time,
                    entry_time: judged.entry_time,
                    meaning: &approval.meaning,
                    signed: is_signed,
                    recommitted: step.recommitted,
                    verification: judged.verification,
                    content_matches: matching.is_some(),
                },
                judged.judge.as_deref(),
                rev_index.map(|i| &sop.revisions[i]),
            );
            let Some(i) = rev_index else {
                h.problems.push(Problem {
                    commit: oid.to_string(),
                    message: format!(
                        "approval of `{}` names content sha256:{} that the SOP never had",
                        a.sop,
                        &a.sha256[..12]
                    ),
                });
                continue;
            };
            let rev = &mut sop.revisions[i];
            rev.signatures.push(record);
            rev.assign_roles();
            if rev.version.is_none() && rev.complete() {
                let version = sop
                    .revisions
                    .iter()
                    .filter_map(|r| r.version)
                    .max()
                    .unwrap_or(0)
                    + 1;
                let rev = &mut sop.revisions[i];
                rev.version = Some(version);
                // Never before the content existed, whatever the approval commit's clock says.
                rev.effective_time = Some(time.min(judged.entry_time).max(rev.time));
                rev.effective_commit = Some(oid.to_string());
                let last = last_effective.entry(a.sop.clone()).or_insert(i);
                *last = (*last).max(i);
            }
        }
    }
}

/// Hashes for what is shown and compared: each SOP's latest revision, and every revision
/// that is effective or signed. Other drafts keep their blob id only (`fill_hashes`).
fn hash_shown_revisions(h: &mut History, repo: &git2::Repository, reader: &mut SopReader) {
    for sop in h.sops.values_mut() {
        let last = sop.revisions.len().saturating_sub(1);
        for (i, rev) in sop.revisions.iter_mut().enumerate() {
            if rev.sha256.is_empty()
                && (i == last || rev.version.is_some() || !rev.signatures.is_empty())
                && let Some(hash) = git2::Oid::from_str(&rev.blob)
                    .ok()
                    .and_then(|b| reader.sha(repo, b))
            {
                rev.sha256 = hash;
            }
        }
    }
}

/// One commit of the walk, as far as it is read without the policy: the SOP files it added
/// or changed, and the approvals its trailers claim.
struct Step {
    oid: git2::Oid,
    time: i64,
    summary: String,
    author_label: String,
    /// Committed by someone other than its author (a rebase or cherry-pick).
    recommitted: bool,
    /// The SOP files added or changed (path relative to the config's folder), removals left
    /// out, in the order met; filled by [`Scan::resolve`] from `added`.
    changed: Vec<(String, SopState)>,
    /// The SOP files added or changed, before their blobs are read: (relative path, blob).
    added: Vec<(String, git2::Oid)>,
    /// The trailers, when there are any: what they approve, or what is wrong with them.
    trailers: Option<Result<trailer::Approval, String>>,
    /// The commit's tree differs from its first parent's.
    changes_files: bool,
    /// For a commit with approval trailers: every SOP file in its tree (relative path, blob).
    files: Vec<(String, git2::Oid)>,
    /// Per SOP id the trailers name: the blobs of its files in this commit's own tree; filled
    /// by [`Scan::resolve`] from `files`.
    content: HashMap<String, Vec<git2::Oid>>,
}

/// The commits of a walk read, and each SOP file's blob per commit whose children are still
/// to come (the head's is cached).
struct Scan {
    steps: HashMap<git2::Oid, Step>,
    paths: HashMap<git2::Oid, BTreeMap<String, git2::Oid>>,
    /// What the SOP files read say about themselves, by (blob, relative path).
    states: HashMap<(git2::Oid, String), SopState>,
    /// SOP ids known without reading (the cached head's files), by (blob, relative path).
    known_ids: HashMap<(git2::Oid, String), String>,
}

impl Scan {
    /// The SOP id of a file, when its blob could be read (or it was known).
    fn id_of(&self, blob: git2::Oid, rel: &str) -> Option<&str> {
        let key = (blob, rel.to_string());
        self.states
            .get(&key)
            .map(|s| s.id.as_str())
            .or_else(|| self.known_ids.get(&key).map(String::as_str))
    }

    /// Gives a step what its files say: its changed files' states and, for an approval, the
    /// blobs of each SOP it names. A file whose blob could not be read is left out.
    fn resolve(&self, step: &mut Step) {
        for (rel, blob) in std::mem::take(&mut step.added) {
            if let Some(state) = self.states.get(&(blob, rel.clone())) {
                step.changed.push((rel, state.clone()));
            }
        }
        if let Some(Ok(a)) = &step.trailers {
            for id in a.approves.iter().map(|x| &x.sop) {
                let blobs = step
                    .files
                    .iter()
                    .filter(|(rel, blob)| self.id_of(*blob, rel) == Some(id.as_str()))
                    .map(|(_, blob)| *blob)
                    .collect();
                step.content.insert(id.clone(), blobs);
            }
        }
    }

    /// The SOP files of a commit still in `paths` (the head), path → id.
    fn ids_at(
        &mut self,
        commit: git2::Oid,
        strip: &dyn Fn(&str) -> String,
    ) -> BTreeMap<String, String> {
        let files = self.paths.remove(&commit).unwrap_or_default();
        files
            .into_iter()
            .filter_map(|(path, blob)| {
                Some((path.clone(), self.id_of(blob, &strip(&path))?.to_string()))
            })
            .collect()
    }
}

/// Asks for SOP files to be read, each (blob, relative path) once, by a thread that reads the
/// object store through packs of its own (see [`own_odb`]): reading every version of every
/// SOP is the costliest part of a long walk, and so runs beside the walk of trees.
struct Reads {
    to_reader: std::sync::mpsc::Sender<(git2::Oid, String)>,
    asked: std::collections::HashSet<(git2::Oid, String)>,
}

impl Reads {
    fn ask(&mut self, blob: git2::Oid, rel: String) {
        if self.asked.insert((blob, rel.clone())) {
            // The reader only stops when this side hangs up.
            let _ = self.to_reader.send((blob, rel));
        }
    }
}

/// The object store of `repo` opened once more, sharing no lock with `repo`'s nor with the
/// store opened with another `n` (1 or more).
///
/// libgit2 keeps one structure per pack file for the whole process, keyed by the pack's path,
/// and holds that structure's lock while it finds an object in the pack's index: two threads
/// reading one pack, even through two repository handles, mostly wait for each other
/// (measured on 100,000 commits: the tree walk and the SOP reads took as long on two threads
/// as on one, with 40,000 context switches). The object folder named by a path of its own,
/// `objects/.` (`objects/./.` for `n` = 2), is the same folder (loose objects, packs and
/// alternates alike) but gets pack structures of its own. Should libgit2 ever normalise the
/// path, this is only slower.
fn own_odb(repo: &git2::Repository, n: usize) -> Result<git2::Odb<'static>, git2::Error> {
    let objects = (0..n).fold(repo.commondir().join("objects"), |p, _| p.join("."));
    let objects = objects
        .to_str()
        .ok_or_else(|| git2::Error::from_str("the object folder's path is not UTF-8"))?;
    let odb = git2::Odb::new()?;
    odb.add_disk_alternate(objects)?;
    Ok(odb)
}

/// The reading thread's side: each asked file's front matter, until the asking side hangs up.
fn read_asked(
    odb: &git2::Odb<'_>,
    asked: std::sync::mpsc::Receiver<(git2::Oid, String)>,
) -> HashMap<(git2::Oid, String), SopState> {
    let mut reader = SopReader::new();
    let mut states = HashMap::new();
    for (blob, rel) in asked {
        // A blob that cannot be read leaves its file out, as a walk without it would.
        match odb.read(blob) {
            Ok(b) if b.kind() == git2::ObjectType::Blob => {
                let state = reader.read(&rel, blob, b.data());
                states.insert((blob, rel), state);
            }
            _ => {}
        }
    }
    states
}

/// Reads `order` (parents before children): per commit, which SOP files under `procedures`
/// it changed, their front matter, and its trailers. `known` is a commit already read (the
/// cached head) with its SOP files (path → id). The files' blobs are read on a second thread
/// while the trees are walked.
fn scan(
    repo: &git2::Repository,
    order: &[git2::Oid],
    procedures: &str,
    known: Option<(git2::Oid, BTreeMap<String, String>)>,
    strip: &(dyn Fn(&str) -> String + Sync),
) -> Result<Scan, Error> {
    // Should the store not open a second time, its reads share the walk's handle (slower).
    let odb = match own_odb(repo, 1) {
        Ok(odb) => odb,
        Err(_) => repo.odb()?,
    };
    let facts = Facts::read(repo, order, procedures);
    reading_blobs(odb, |reads| {
        walk_trees(repo, facts, procedures, known, strip, reads)
    })
}

/// The whole history's timeline and [`scan`] at once: the timeline is built on this thread and
/// tells a second thread of each commit it meets, which walks its trees (through an object
/// store of its own) while a third reads the SOP files. The scan is of `procedures`, the SOP
/// folder as the tree's own config names it: the caller scans again should the timeline
/// trust another.
fn timeline_and_scan(
    repo: &git2::Repository,
    head: git2::Oid,
    prefix: &str,
    now: i64,
    procedures: &str,
    strip: &(dyn Fn(&str) -> String + Sync),
) -> Result<(Timeline, Result<Scan, Error>), Error> {
    let (Ok(blobs), Ok(trees)) = (own_odb(repo, 1), own_odb(repo, 2)) else {
        // A store that does not open a second time: one step after the other.
        let timeline = Timeline::build(repo, head, prefix, now, None)?;
        let scan = scan(repo, &timeline.order, procedures, None, strip);
        return Ok((timeline, scan));
    };
    let trees = git2::Repository::from_odb(trees)?;
    let (tell, told) = std::sync::mpsc::channel();
    std::thread::scope(|s| {
        let walker = s.spawn(move || {
            reading_blobs(blobs, |reads| {
                walk_trees(&trees, told, procedures, None, strip, reads)
            })
        });
        let mut met = |commit: &git2::Commit<'_>, tree: &git2::Tree<'_>| {
            // The walker only stops early when it failed, which its result says.
            let _ = tell.send(Ok(Told::Commit(Facts::of(commit, tree, procedures))));
        };
        let timeline = Timeline::build(repo, head, prefix, now, Some(&mut met));
        if let Ok(t) = &timeline {
            let _ = tell.send(Ok(Told::Order(t.order.clone())));
        }
        drop(tell);
        let scan = walker
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        Ok((timeline?, scan))
    })
}

/// Runs `walk` (a walk of trees that asks for SOP files) beside a thread that reads the files
/// asked from `odb`, and gives the walk's result what they say.
fn reading_blobs(
    odb: git2::Odb<'_>,
    walk: impl FnOnce(&mut Reads) -> Result<Scan, Error>,
) -> Result<Scan, Error> {
    let (to_reader, asked) = std::sync::mpsc::channel();
    let mut reads = Reads {
        to_reader,
        asked: Default::default(),
    };
    std::thread::scope(|s| {
        let reader = s.spawn(|| read_asked(&odb, asked));
        let walked = walk(&mut reads);
        drop(reads);
        let states = reader
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        let mut scan = walked?;
        scan.states = states;
        Ok(scan)
    })
}

/// What the tree walk needs of a commit: taken from the commit and its tree by whoever read
/// them (the timeline, on another thread), so that the walk reads neither again.
struct Facts {
    oid: git2::Oid,
    tree: git2::Oid,
    /// The id of the procedures folder in the commit's tree.
    folder: Option<git2::Oid>,
    parents: Vec<git2::Oid>,
    time: i64,
    message: Vec<u8>,
    author_name: String,
    author_email: String,
    committer_email: String,
}

impl Facts {
    /// The facts of `commit`, whose tree is `tree`, for the SOP folder `procedures`.
    fn of(commit: &git2::Commit<'_>, tree: &git2::Tree<'_>, procedures: &str) -> Facts {
        let author = commit.author();
        Facts {
            oid: commit.id(),
            tree: tree.id(),
            folder: folder_in(tree, procedures),
            parents: commit.parent_ids().collect(),
            time: commit.time().seconds(),
            message: commit.message_bytes().to_vec(),
            author_name: author.name().unwrap_or("").to_string(),
            author_email: author.email().unwrap_or("").to_string(),
            committer_email: commit.committer().email().unwrap_or("").to_string(),
        }
    }

    /// The facts of each commit of `order`, read from `repo`, then `order` itself.
    fn read<'a>(
        repo: &'a git2::Repository,
        order: &'a [git2::Oid],
        procedures: &'a str,
    ) -> impl Iterator<Item = Result<Told, git2::Error>> + 'a {
        let commits = order.iter().map(move |&oid| {
            let commit = repo.find_commit(oid)?;
            Ok(Told::Commit(Facts::of(
                &commit,
                &commit.tree()?,
                procedures,
            )))
        });
        commits.chain(std::iter::once_with(|| Ok(Told::Order(order.to_vec()))))
    }
}

/// The id of folder `procedures` (the whole tree when empty) in `tree`.
fn folder_in(tree: &git2::Tree<'_>, procedures: &str) -> Option<git2::Oid> {
    let base = procedures.trim_end_matches('/');
    if base.is_empty() {
        Some(tree.id())
    } else {
        tree.get_path(Path::new(base)).ok().map(|e| e.id())
    }
}

/// What the tree walk is told: each commit's facts, in any order, then the order in which
/// to walk them (parents first).
enum Told {
    Commit(Facts),
    Order(Vec<git2::Oid>),
}

/// The tree half of [`scan`]: what each commit changed, with every SOP file's blob asked of
/// `reads`. What a commit changed is found as soon as its facts and its first parent's are
/// both told; the commits are then put together in the order told last.
fn walk_trees(
    repo: &git2::Repository,
    told: impl IntoIterator<Item = Result<Told, git2::Error>>,
    procedures: &str,
    known: Option<(git2::Oid, BTreeMap<String, String>)>,
    strip: &dyn Fn(&str) -> String,
    reads: &mut Reads,
) -> Result<Scan, Error> {
    let mut known_ids = HashMap::new();
    let mut sop_paths: HashMap<git2::Oid, BTreeMap<String, git2::Oid>> = HashMap::new();
    if let Some((commit, ids)) = known
        && let Ok(tree) = repo.find_commit(commit).and_then(|c| c.tree())
    {
        let mut files = BTreeMap::new();
        for (path, id) in ids {
            if let Ok(e) = tree.get_path(Path::new(&path)) {
                known_ids.insert((e.id(), strip(&path)), id);
                files.insert(path, e.id());
            }
        }
        sop_paths.insert(commit, files);
    }
    let base = procedures.trim_end_matches('/');
    let prefix_of = if base.is_empty() {
        String::new()
    } else {
        format!("{base}/")
    };
    let parent_tree = |p: git2::Oid| repo.find_commit(p).and_then(|c| c.tree());
    // The files that differ between two procedures folders, each SOP file asked of `reads`.
    let mut diff = |old: Option<git2::Oid>, new: Option<git2::Oid>| {
        let mut changes = Vec::new();
        if old != new {
            let load = |id: Option<git2::Oid>| id.and_then(|id| repo.find_tree(id).ok());
            let (old, new) = (load(old), load(new));
            changed_files(repo, old.as_ref(), new.as_ref(), &prefix_of, &mut changes);
        }
        for (path, blob) in &changes {
            if let Some(blob) = blob
                && is_sop_path(path, procedures)
            {
                reads.ask(*blob, strip(path));
            }
        }
        changes
    };
    // Every commit told: its facts, the procedures folder of its tree, and (once its first
    // parent's folder is known too) the files it changed there.
    let mut facts: HashMap<git2::Oid, Facts> = HashMap::new();
    let mut folders: HashMap<git2::Oid, Option<git2::Oid>> = HashMap::new();
    let mut changed: HashMap<git2::Oid, Vec<(String, Option<git2::Oid>)>> = HashMap::new();
    // First parent → the children told before it.
    let mut waiting: HashMap<git2::Oid, Vec<git2::Oid>> = HashMap::new();
    let mut order = Vec::new();
    for t in told {
        let f = match t? {
            Told::Commit(f) => f,
            Told::Order(o) => {
                order = o;
                continue;
            }
        };
        folders.insert(f.oid, f.folder);
        match f.parents.first() {
            None => {
                changed.insert(f.oid, diff(None, f.folder));
            }
            Some(p) => match folders.get(p) {
                Some(&before) => {
                    changed.insert(f.oid, diff(before, f.folder));
                }
                None => waiting.entry(*p).or_default().push(f.oid),
            },
        }
        for child in waiting.remove(&f.oid).unwrap_or_default() {
            changed.insert(child, diff(f.folder, folders[&child]));
        }
        facts.insert(f.oid, f);
    }
    // Children of commits never told (the walk resumed after them): their folders are read.
    for (parent, children) in waiting {
        let before = folder_in(&parent_tree(parent)?, procedures);
        for child in children {
            changed.insert(child, diff(before, folders[&child]));
        }
    }
    let mut steps = HashMap::with_capacity(order.len());
    for oid in order {
        let Some(f) = facts.remove(&oid) else {
            continue;
        };
        let parent_id = f.parents.first().copied();
        // The parent's SOP files, known from its own step: taken over, since most commits
        // have one child. A second child (a branch point), or an old commit met by a resumed
        // walk, reads them from the parent's tree instead.
        for p in f.parents.iter().skip(1) {
            sop_paths.remove(p);
        }
        let mut map = match parent_id {
            Some(p) => match sop_paths.remove(&p) {
                Some(m) => m,
                None => sops_in(repo, &parent_tree(p)?, procedures, strip, reads),
            },
            None => BTreeMap::new(),
        };
        let mut changes = changed.remove(&oid).unwrap_or_default();
        // Removals first: a file moved within one commit is removed, then added.
        changes.sort_by_key(|(_, new)| new.is_some());
        let mut added = Vec::new();
        for (path, new) in changes {
            map.remove(&path);
            let Some(new) = new else { continue };
            if !is_sop_path(&path, procedures) {
                continue;
            }
            let rel = strip(&path);
            map.insert(path, new);
            added.push((rel, new));
        }
        let trailers = trailer::parse(std::str::from_utf8(&f.message).unwrap_or(""));
        let mut files = Vec::new();
        let mut changes_files = true;
        if let Some(Ok(_)) = &trailers {
            files = map.iter().map(|(p, blob)| (strip(p), *blob)).collect();
            if let Some(p) = parent_id {
                changes_files = repo.find_commit(p)?.tree_id() != f.tree;
            }
        }
        steps.insert(
            oid,
            Step {
                oid,
                time: f.time,
                summary: crate::git::summary_of(&f.message),
                author_label: format!("{} <{}>", f.author_name, f.author_email),
                recommitted: !f.author_email.eq_ignore_ascii_case(&f.committer_email),
                changed: Vec::new(),
                added,
                trailers,
                changes_files,
                files,
                content: HashMap::new(),
            },
        );
        sop_paths.insert(oid, map);
    }
    Ok(Scan {
        steps,
        paths: sop_paths,
        states: HashMap::new(),
        known_ids,
    })
}

/// The files that differ between two versions of a folder, with their new blob (`None` when
/// removed), descending only into sub-folders whose ids differ. Written by hand because
/// libgit2's diff builds a config snapshot and iterators on every call, a fifth of the time of
/// a long walk; following renames needs nothing more, since revisions follow the SOP id.
fn changed_files(
    repo: &git2::Repository,
    old: Option<&git2::Tree<'_>>,
    new: Option<&git2::Tree<'_>>,
    base: &str,
    out: &mut Vec<(String, Option<git2::Oid>)>,
) {
    if old.map(|t| t.id()) == new.map(|t| t.id()) {
        return;
    }
    type Entry = (Option<git2::ObjectType>, git2::Oid);
    let entries = |t: Option<&git2::Tree<'_>>| -> BTreeMap<String, Entry> {
        t.map(|t| {
            t.iter()
                .filter_map(|e| Some((e.name().ok()?.to_string(), (e.kind(), e.id()))))
                .collect()
        })
        .unwrap_or_default()
    };
    let (before, after) = (entries(old), entries(new));
    let names: BTreeSet<&String> = before.keys().chain(after.keys()).collect();
    let blob = Some(git2::ObjectType::Blob);
    let tree = Some(git2::ObjectType::Tree);
    for name in names {
        let (b, a) = (before.get(name), after.get(name));
        if b == a {
            continue;
        }
        let path = format!("{base}{name}");
        let sub = |e: Option<&Entry>| {
            e.filter(|e| e.0 == tree)
                .and_then(|e| repo.find_tree(e.1).ok())
        };
        let (old_sub, new_sub) = (sub(b), sub(a));
        if old_sub.is_some() || new_sub.is_some() {
            changed_files(
                repo,
                old_sub.as_ref(),
                new_sub.as_ref(),
                &format!("{path}/"),
                out,
            );
        }
        match (b.filter(|e| e.0 == blob), a.filter(|e| e.0 == blob)) {
            (_, Some(a)) => out.push((path, Some(a.1))),
            (Some(_), None) => out.push((path, None)),
            (None, None) => {}
        }
    }
}

/// The SOP files (path → blob) in a commit's tree, each asked of `reads`.
fn sops_in(
    repo: &git2::Repository,
    tree: &git2::Tree<'_>,
    procedures: &str,
    strip: &dyn Fn(&str) -> String,
    reads: &mut Reads,
) -> BTreeMap<String, git2::Oid> {
    let mut out = BTreeMap::new();
    let folder = if procedures.is_empty() {
        Some(tree.clone())
    } else {
        tree.get_path(Path::new(procedures))
            .ok()
            .and_then(|e| repo.find_tree(e.id()).ok())
    };
    let Some(folder) = folder else { return out };
    let base = if procedures.is_empty() {
        String::new()
    } else {
        format!("{}/", procedures.trim_end_matches('/'))
    };
    let _ = folder.walk(git2::TreeWalkMode::PreOrder, |dir, e| {
        let path = format!("{base}{dir}{}", e.name().unwrap_or(""));
        if e.kind() == Some(git2::ObjectType::Blob) && is_sop_path(&path, procedures) {
            reads.ask(e.id(), strip(&path));
            out.insert(path, e.id());
        }
        git2::TreeWalkResult::Ok
    });
    out
}

/// The timeline and the commits still to walk, continued from the cache when it is usable.
#[allow(clippy::type_complexity)]
fn resume(
    repo: &git2::Repository,
    head: git2::Oid,
    prefix: &str,
    now: i64,
    file: Option<&Path>,
    tree_config: &Config,
) -> Result<Option<(Timeline, Option<cache::Saved>, Vec<git2::Oid>)>, Error> {
    let Some(file) = file else { return Ok(None) };
    // The key needs the settings at the head, which come from the timeline itself: read the
    // cache first, continue the timeline, then check the key against its head.
    let Some(saved) = cache::read(file) else {
        return Ok(None);
    };
    let Ok(start) = git2::Oid::from_str(&saved.head) else {
        return Ok(None);
    };
    let root = match saved.root.as_deref().map(git2::Oid::from_str) {
        Some(Ok(r)) => Some(r),
        Some(Err(_)) => return Ok(None),
        None => None,
    };
    let mut files = super::policy::Files::new();
    for (p, id) in &saved.files {
        let Ok(id) = git2::Oid::from_str(id) else {
            return Ok(None);
        };
        files.insert(p.clone(), id);
    }
    let config_blob = match saved.config_blob.as_deref().map(git2::Oid::from_str) {
        Some(Ok(id)) => Some(id),
        Some(Err(_)) => return Ok(None),
        None => None,
    };
    let trusted = match root {
        Some(_) => match Trusted::rebuild(repo, files, config_blob, prefix) {
            Some(t) => Some(Arc::new(t)),
            None => return Ok(None),
        },
        None => None,
    };
    if repo.find_commit(start).is_err() {
        return Ok(None);
    }
    let mut walk = repo.revwalk()?;
    walk.push(head)?;
    walk.hide(start)?;
    walk.set_sorting(git2::Sort::TOPOLOGICAL | git2::Sort::REVERSE)?;
    let order: Vec<git2::Oid> = walk.collect::<Result<_, _>>()?;
    let new: std::collections::HashSet<git2::Oid> = order.iter().copied().collect();
    let from = timeline::Resume {
        commit: start,
        time: saved.time,
        root,
        trusted,
        changes: saved.changes.clone(),
        problems: saved.timeline_problems.clone(),
    };
    let Some(timeline) =
        Timeline::build_from(repo, head, prefix, now, Some(from), Some(&new), None)?
    else {
        return Ok(None);
    };
    if saved.key != cache::key(&timeline.effective_config(tree_config)) {
        return Ok(None);
    }
    Ok(Some((timeline, Some(saved), order)))
}

/// The person behind a content commit: the owner of the key that validly signed it under the
/// policy in force where it entered the main line. An unsigned or badly signed commit has no
/// known author (an e-mail address is whatever the committer typed).
fn author_identity(v: Option<&signature::Verification>) -> Option<String> {
    v.filter(|v| v.status == signature::Status::Valid)
        .and_then(|v| v.owner.clone())
}

/// What one approval commit brings to [`judge_signature`].
struct Signed<'a> {
    oid: git2::Oid,
    commit_time: i64,
    /// When it entered the main line (see [`Timeline`]).
    entry_time: i64,
    meaning: &'a str,
    signed: bool,
    /// Committed by someone other than its author (a rebase or cherry-pick).
    recommitted: bool,
    verification: Option<&'a signature::Verification>,
    /// The commit's own tree holds the approved content under this SOP id.
    content_matches: bool,
}

// One ordered list of rules, each ending in a verdict, read top to bottom as an auditor
// would check them: splitting it would scatter the order that decides the outcome.
fn judge_signature(
    a: &Signed<'_>,
    judge: Option<&Trusted>,
    revision: Option<&Revision>,
) -> SignatureRecord {
    let v = a.verification;
    let mut r = SignatureRecord {
        commit: a.oid.to_string(),
        time: a.commit_time,
        signer: None,
        name: None,
        role: None,
        meaning: a.meaning.to_string(),
        fingerprint: v.and_then(|v| v.fingerprint.clone()),
        kind: v.and_then(|v| v.kind),
        status: Status::Valid,
        detail: String::new(),
        eligible: Vec::new(),
    };
    let status = |s: Status, d: String, r: &mut SignatureRecord| {
        r.status = s;
        r.detail = d;
    };
    if !a.signed {
        status(Status::Unsigned, "approval trailers on an unsigned commit (a squash or rebase merge may have rewritten it)".into(), &mut r);
        return r;
    }
    let (Some(v), Some(judge)) = (v, judge) else {
        status(
            Status::UnknownKey,
            "no trusted policy where this commit enters the main line (it comes before the \
             trust root)"
                .into(),
            &mut r,
        );
        return r;
    };
    let policy = &judge.policy;
    let signed_at = v.signed_at.unwrap_or(a.commit_time);
    // Shown no earlier than the content it signs: nobody signed content before it existed.
    r.time = revision.map_or(signed_at, |rev| signed_at.max(rev.time));
    let mapped = match v.status {
        signature::Status::Valid => None,
        signature::Status::Bad => Some(Status::BadSignature),
        signature::Status::UnknownKey => Some(Status::UnknownKey),
        signature::Status::ExpiredKey => Some(Status::ExpiredKey),
        signature::Status::RevokedKey => Some(Status::RevokedKey),
        signature::Status::Unsupported => Some(Status::Unsupported),
    };
    let person = v.owner.as_deref().and_then(|o| policy.person(o));
    r.signer = v.owner.clone();
    r.name = person.map(|p| p.name.clone());
    if let Some(s) = mapped {
        status(s, v.detail.clone(), &mut r);
        return r;
    }
    let Some(person) = person else {
        status(
            Status::UnknownKey,
            "the key's owner is not in people.yaml".into(),
            &mut r,
        );
        return r;
    };
    if signed_at > a.entry_time + CLOCK_SKEW {
        status(
            Status::FutureDated,
            format!(
                "the signature is dated {}, after it entered the main line ({}): a date nobody \
                 has reached yet cannot be checked",
                crate::approval::utc(signed_at),
                crate::approval::utc(a.entry_time)
            ),
            &mut r,
        );
        return r;
    }
    // An OpenPGP signature is judged at the time it claims, which the signer's clock sets;
    // content committed later cannot have been signed with a certificate that had expired
    // or been revoked by then.
    if let (Some(rev), Some(KeyKind::OpenPgp), Some(fpr)) =
        (revision, v.kind, v.fingerprint.as_deref())
        && signed_at < rev.time
        && let Err((s, why)) =
            policy
                .keyring
                .pgp_cert_valid_at(fpr, v.signing_key.as_deref(), rev.time)
    {
        let s = match s {
            signature::Status::ExpiredKey => Status::ExpiredKey,
            signature::Status::RevokedKey => Status::RevokedKey,
            _ => Status::BadSignature,
        };
        status(
            s,
            format!(
                "the signature is dated {}, before the content it signs was committed ({}), \
                 when {why}",
                crate::approval::utc(signed_at),
                crate::approval::utc(rev.time)
            ),
            &mut r,
        );
        return r;
    }
    if a.recommitted {
        status(
            Status::Recommitted,
            "the approval commit was committed again by someone other than its author (a rebase \
             or cherry-pick): an approval counts only in the commit its signer made"
                .into(),
            &mut r,
        );
        return r;
    }
    let meanings = &judge.config.approval.meanings;
    if !meanings.iter().any(|m| m == a.meaning) {
        status(
            Status::MeaningNotAllowed,
            format!("meaning `{}` is not in the vocabulary", a.meaning),
            &mut r,
        );
        return r;
    }
    if !a.content_matches {
        status(
            Status::WrongContent,
            "the approved content hash is not the SOP's content in this commit".into(),
            &mut r,
        );
        return r;
    }
    // Roles are judged when the signature enters the main line, under the policy in force
    // there: a role ended (or a key removed) before then cannot be brought back by signing on
    // a branch cut off before the change, nor by a backdated signature.
    let day = date_of(a.entry_time);
    let approvers = revision.map(|rev| rev.approvers.as_slice()).unwrap_or(&[]);
    let role = if a.meaning == "approved" {
        r.eligible = approvers
            .iter()
            .filter(|role| person.holds(role, day))
            .cloned()
            .collect();
        r.eligible.first().cloned()
    } else {
        person
            .roles
            .iter()
            .find(|h| person.holds(&h.role.value, day))
            .map(|h| h.role.value.clone())
    };
    let Some(role) = role else {
        let need = if a.meaning == "approved" {
            approvers.join(", ")
        } else {
            "any role".into()
        };
        status(
            Status::RoleNotHeld,
            format!(
                "{} held none of: {need} on {day}, when the signature entered the main line",
                person.name
            ),
            &mut r,
        );
        return r;
    };
    r.role = Some(role);
    if judge.config.approval.separation_of_duties
        && a.meaning == "approved"
        && revision.is_some_and(|rev| rev.authors.contains(&person.id.value))
    {
        status(
            Status::SelfApproval,
            format!("{} authored this revision", person.name),
            &mut r,
        );
        return r;
    }
    r.detail = format!("good signature by {}", person.name);
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_second_object_store_holds_what_the_repository_holds() {
        let d = tempfile::tempdir().unwrap();
        let shared = git2::Repository::init(d.path().join("shared")).unwrap();
        let in_alternate = shared.blob(b"kept by another object store\n").unwrap();
        let repo = git2::Repository::init(d.path().join("repo")).unwrap();
        let loose = repo.blob(b"a loose object\n").unwrap();
        std::fs::write(
            repo.path().join("objects/info/alternates"),
            format!("{}\n", shared.path().join("objects").display()),
        )
        .unwrap();
        // A linked worktree keeps its objects in the main repository's folder.
        let tree = repo.treebuilder(None).unwrap().write().unwrap();
        let sig = git2::Signature::now("t", "t@example.com").unwrap();
        let tree = repo.find_tree(tree).unwrap();
        repo.commit(Some("HEAD"), &sig, &sig, "root", &tree, &[])
            .unwrap();
        repo.worktree("wt", &d.path().join("wt"), None).unwrap();
        let worktree = git2::Repository::open(d.path().join("wt")).unwrap();
        for (r, n) in [(&repo, 1), (&repo, 2), (&worktree, 1), (&worktree, 2)] {
            let odb = own_odb(r, n).unwrap();
            assert_eq!(odb.read(loose).unwrap().data(), b"a loose object\n");
            assert_eq!(
                odb.read(in_alternate).unwrap().data(),
                b"kept by another object store\n"
            );
            assert!(
                odb.read(git2::Oid::hash_object(git2::ObjectType::Blob, b"none").unwrap())
                    .is_err()
            );
        }
    }

    fn signed(signer: &str, eligible: &[&str]) -> SignatureRecord {
        SignatureRecord {
            commit: format!("c-{signer}"),
            time: 0,
            signer: Some(signer.into()),
            name: None,
            role: eligible.first().map(|r| r.to_string()),
            meaning: "approved".into(),
            fingerprint: None,
            kind: None,
            status: Status::Valid,
            detail: String::new(),
            eligible: eligible.iter().map(|r| r.to_string()).collect(),
        }
    }

    fn revision(approvers: &[&str], signatures: Vec<SignatureRecord>) -> Revision {
        Revision {
            number: 1,
            commit: "c".into(),
            time: 0,
            author: "a".into(),
            summary: "s".into(),
            path: "p.md".into(),
            renamed_from: Vec::new(),
            sha256: "00".into(),
            blob: String::new(),
            approvers: approvers.iter().map(|r| r.to_string()).collect(),
            declared_approvers: approvers.iter().map(|r| r.to_string()).collect(),
            authors: BTreeSet::new(),
            unattributed: BTreeSet::new(),
            separation_of_duties: true,
            version: None,
            effective_time: None,
            effective_commit: None,
            signatures,
        }
    }

    #[test]
    fn each_role_goes_to_a_different_signer_who_held_it() {
        // Ann holds both roles and signs first; Bob holds only qa-lead.
        let mut r = revision(
            &["qa-lead", "it-lead"],
            vec![
                signed("ann", &["qa-lead", "it-lead"]),
                signed("bob", &["qa-lead"]),
            ],
        );
        // The first role of each is not enough: both would count for qa-lead.
        assert_eq!(r.missing_roles(), ["it-lead"]);
        r.assign_roles();
        assert!(r.missing_roles().is_empty());
        assert_eq!(r.signatures[0].role.as_deref(), Some("it-lead"));
        assert_eq!(r.signatures[1].role.as_deref(), Some("qa-lead"));

        // One person never covers two roles, however many roles they hold or times they sign.
        let mut r = revision(
            &["qa-lead", "it-lead"],
            vec![
                signed("ann", &["qa-lead", "it-lead"]),
                signed("ann", &["qa-lead", "it-lead"]),
            ],
        );
        r.assign_roles();
        assert_eq!(r.missing_roles().len(), 1);
    }
}
