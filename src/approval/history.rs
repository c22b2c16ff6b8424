//! The approval history of every SOP, derived from git and never typed by hand.
//!
//! Commits are read oldest first. The policy (people, roles, keys) is trusted from the trust
//! root on, and a later change to it counts only when an admin of the policy then in force
//! signed the commit that makes it. Each change of an SOP's content starts a new revision;
//! approval commits (trailers, see [`super::trailer`]) add signatures to the revision whose
//! content hash they name, each classified against the policy as of the commit's parent. A
//! revision becomes effective, with the next version number, once every approver role has a
//! valid `approved` signature from someone who is not one of its authors.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::sync::Arc;

use serde::Serialize;
use sha2::{Digest, Sha256};

use super::policy::{self, Policy};
use super::signature::{self, KeyKind};
use super::trailer;
use crate::config::Config;
use crate::corpus::{front_matter, id_from_file_name, under};
use crate::source::SourceFile;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    // git2's message alone: its Display adds class and code numbers (see tree::Error).
    #[error("git: {}", .0.message())]
    Git(git2::Error),
    #[error("{0} is not inside a git repository")]
    NotARepository(std::path::PathBuf),
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
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
        }
    }
}

#[derive(Debug, Clone, Serialize)]
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
    #[serde(skip)]
    pub eligible: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
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
    pub approvers: Vec<String>,
    /// People (or e-mail addresses) who changed the SOP since the last effective revision.
    pub authors: BTreeSet<String>,
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
            format!("missing: {}", self.missing_roles().join(", "))
        }
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

#[derive(Debug, Clone, Serialize)]
pub struct SopHistory {
    pub id: String,
    pub revisions: Vec<Revision>,
}

impl SopHistory {
    pub fn revision_with(&self, sha256: &str) -> Option<&Revision> {
        self.revisions.iter().rev().find(|r| r.sha256 == sha256)
    }

    pub fn last_effective(&self) -> Option<&Revision> {
        self.revisions.iter().rev().find(|r| r.version.is_some())
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct PolicyChange {
    pub commit: String,
    pub time: i64,
    pub summary: String,
    pub authorised: bool,
    pub detail: String,
}

#[derive(Debug, Clone, Serialize)]
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

pub fn sha256_hex(bytes: &[u8]) -> String {
    crate::evidence::hex_lower(&Sha256::digest(bytes))
}

fn date_of(t: i64) -> time::Date {
    time::OffsetDateTime::from_unix_timestamp(t).map_or(time::Date::MIN, |d| d.date())
}

/// What an SOP file says about itself at one commit.
struct SopState {
    id: String,
    sha256: String,
    approvers: Vec<String>,
}

fn read_sop(path: &str, bytes: &[u8]) -> SopState {
    let text = String::from_utf8_lossy(bytes).into_owned();
    let file = SourceFile::new(path, text);
    let meta = match front_matter::split(&file.text) {
        Ok(Some(b)) => front_matter::parse_sop(&file, b).ok().map(|(m, _)| m),
        _ => None,
    };
    let id = meta
        .as_ref()
        .and_then(|m| m.id.as_ref())
        .map_or_else(|| id_from_file_name(path), |i| i.value.clone());
    let approvers = meta
        .and_then(|m| m.approvers)
        .map(|a| a.value.into_iter().map(|r| r.value).collect())
        .unwrap_or_default();
    SopState {
        id,
        sha256: sha256_hex(bytes),
        approvers,
    }
}

fn is_sop_path(path: &str, procedures: &str) -> bool {
    let lower = path.to_ascii_lowercase();
    let name = lower.rsplit('/').next().unwrap_or(&lower);
    under(path, procedures) && lower.ends_with(".md") && name != "readme.md" && name != "index.md"
}

/// [`load`], where a folder outside git simply has no history (nothing is approved there);
/// every other failure stays an error, never to be taken for "nothing approved".
pub fn load_if_in_git(dir: &Path, rev: Option<&str>, config: &Config) -> Result<History, Error> {
    match load(dir, rev, config) {
        Err(Error::NotARepository(_)) => Ok(History::default()),
        other => other,
    }
}

/// Reads the history of the repository containing `dir`, up to `rev` (default `HEAD`).
/// `dir` may be a sub-folder: paths are then relative to it.
pub fn load(dir: &Path, rev: Option<&str>, config: &Config) -> Result<History, Error> {
    let repo =
        git2::Repository::discover(dir).map_err(|_| Error::NotARepository(dir.to_path_buf()))?;
    if repo.workdir().is_none() {
        return Err(Error::NotARepository(dir.to_path_buf()));
    }
    let prefix = crate::tree::prefix_in(&repo, dir);
    let mut paths = config.paths.clone();
    if !prefix.is_empty() {
        for p in [
            &mut paths.procedures,
            &mut paths.roles,
            &mut paths.people,
            &mut paths.keys,
        ] {
            *p = format!("{prefix}/{p}");
        }
    }
    let head = match repo
        .revparse_single(rev.unwrap_or("HEAD"))
        .and_then(|o| o.peel_to_commit())
    {
        Ok(c) => c.id(),
        Err(_) if rev.is_none() => return Ok(History::default()), // no commits yet
        Err(e) => return Err(e.into()),
    };
    let mut walk = repo.revwalk()?;
    walk.push(head)?;
    walk.set_sorting(git2::Sort::TOPOLOGICAL | git2::Sort::REVERSE)?;

    let meanings: BTreeSet<&str> = config
        .approval
        .meanings
        .iter()
        .map(String::as_str)
        .collect();
    let mut h = History {
        head: Some(head.to_string()),
        ..History::default()
    };
    let order: Vec<git2::Oid> = walk.collect::<Result<_, _>>()?;

    // Phase 1, in order: the trust chain. `judges` holds, per commit, the policy its
    // signatures are judged against (its parent's trusted policy; the root's own).
    let mut trusted: HashMap<git2::Oid, Option<Arc<Policy>>> = HashMap::new();
    let mut judges: HashMap<git2::Oid, Arc<Policy>> = HashMap::new();
    let mut fingerprints: HashMap<git2::Oid, policy::Fingerprint> = HashMap::new();
    let mut policies: HashMap<policy::Fingerprint, Arc<Policy>> = HashMap::new();
    let mut signed: Vec<(git2::Oid, Vec<u8>, Vec<u8>)> = Vec::new();
    for &oid in &order {
        let commit = repo.find_commit(oid)?;
        let tree = commit.tree()?;
        let parent_id = commit.parent_ids().next();
        let fp = policy::fingerprint(&tree, &paths);
        fingerprints.insert(oid, fp);
        let mut load_policy = |fp: policy::Fingerprint| {
            policies
                .entry(fp)
                .or_insert_with(|| Arc::new(Policy::load(&repo, &tree, &paths)))
                .clone()
        };
        let before: Option<Arc<Policy>> =
            parent_id.and_then(|p| trusted.get(&p).cloned().flatten());
        let signature = repo
            .extract_signature(&oid, None)
            .ok()
            .map(|(s, p)| (s.to_vec(), p.to_vec()));
        let now_trusted = match &before {
            None => {
                let is_root = match &config.approval.trust_root {
                    Some(root) => oid.to_string().starts_with(root.as_str()),
                    None => fp[0].is_some(),
                };
                if is_root {
                    h.trust_root = Some(oid.to_string());
                    Some(load_policy(fp))
                } else {
                    None
                }
            }
            Some(prev) => {
                let changed = parent_id.and_then(|p| fingerprints.get(&p)) != Some(&fp);
                if !changed {
                    Some(prev.clone())
                } else {
                    let (ok, detail) = match &signature {
                        None => (false, "the commit is not signed".to_string()),
                        Some((sig, payload)) => {
                            let v = signature::verify(&prev.keyring, sig, payload);
                            match (&v.status, v.owner.as_deref().and_then(|o| prev.person(o))) {
                                (signature::Status::Valid, Some(p)) if p.admin => {
                                    (true, format!("signed by admin {}", p.name))
                                }
                                (signature::Status::Valid, Some(p)) => {
                                    (false, format!("signed by {}, who is not an admin", p.name))
                                }
                                _ => (false, format!("signature not valid: {}", v.detail)),
                            }
                        }
                    };
                    h.policy_changes.push(PolicyChange {
                        commit: oid.to_string(),
                        time: commit.time().seconds(),
                        summary: commit.summary().ok().flatten().unwrap_or("").to_string(),
                        authorised: ok,
                        detail,
                    });
                    if ok {
                        Some(load_policy(fp))
                    } else {
                        Some(prev.clone())
                    }
                }
            }
        };
        trusted.insert(oid, now_trusted.clone());
        if let Some(judge) = before.or(now_trusted) {
            judges.insert(oid, judge);
            if let Some((sig, payload)) = signature {
                signed.push((oid, sig, payload));
            }
        }
    }

    // Phase 2: every signature, verified in parallel against its judging policy (keys were
    // parsed once per distinct policy).
    let verified: HashMap<git2::Oid, signature::Verification> = match config.approval.backend {
        crate::config::Backend::InProcess => {
            use rayon::prelude::*;
            signed
                .par_iter()
                .map(|(oid, sig, payload)| {
                    (*oid, signature::verify(&judges[oid].keyring, sig, payload))
                })
                .collect()
        }
        #[cfg(feature = "gpgme")]
        crate::config::Backend::Gnupg => {
            let home = config.approval.gnupg_home.as_deref().map(Path::new);
            signed
                .iter()
                .map(|(oid, sig, payload)| {
                    (
                        *oid,
                        super::gnupg::verify(home, &judges[oid].keyring, sig, payload),
                    )
                })
                .collect()
        }
        #[cfg(not(feature = "gpgme"))]
        crate::config::Backend::Gnupg => return Err(Error::NoGnupg),
    };

    // Phase 3, in order: revisions (following renames) and approvals.
    let mut sop_paths: HashMap<git2::Oid, BTreeMap<String, String>> = HashMap::new();
    let mut states: HashMap<String, SopState> = HashMap::new();
    let strip = |p: &str| {
        p.strip_prefix(&format!("{prefix}/"))
            .unwrap_or(p)
            .to_string()
    };
    for &oid in &order {
        let commit = repo.find_commit(oid)?;
        let tree = commit.tree()?;
        let time = commit.time().seconds();
        let summary = commit.summary().ok().flatten().unwrap_or("").to_string();
        let parent = commit.parents().next();
        let parent_id = parent.as_ref().map(|p| p.id());
        let judge = judges.get(&oid).cloned();
        let verification = verified.get(&oid);

        let mut map = parent_id
            .and_then(|p| sop_paths.get(&p).cloned())
            .unwrap_or_default();
        let parent_tree = parent.as_ref().map(|p| p.tree()).transpose()?;
        let mut opts = git2::DiffOptions::new();
        if !paths.procedures.is_empty() {
            opts.pathspec(&paths.procedures);
        }
        let mut diff =
            repo.diff_tree_to_tree(parent_tree.as_ref(), Some(&tree), Some(&mut opts))?;
        diff.find_similar(Some(git2::DiffFindOptions::new().renames(true)))?;
        let author = commit.author();
        let author_label = format!(
            "{} <{}>",
            author.name().unwrap_or(""),
            author.email().unwrap_or("")
        );
        let author_person =
            author_identity(verification, judge.as_deref(), author.email().unwrap_or(""));
        for delta in diff.deltas() {
            let old = delta
                .old_file()
                .path()
                .map(|p| p.to_string_lossy().replace('\\', "/"));
            let new = delta
                .new_file()
                .path()
                .map(|p| p.to_string_lossy().replace('\\', "/"));
            if let Some(o) = &old
                && delta.status() != git2::Delta::Added
            {
                map.remove(o);
            }
            if delta.status() == git2::Delta::Deleted {
                continue;
            }
            let Some(path) = new.filter(|p| is_sop_path(p, &paths.procedures)) else {
                continue;
            };
            let Ok(blob) = repo.find_blob(delta.new_file().id()) else {
                continue;
            };
            let rel = strip(&path);
            let state = read_sop(&rel, blob.content());
            map.insert(path.clone(), state.id.clone());
            let entry = h
                .sops
                .entry(state.id.clone())
                .or_insert_with(|| SopHistory {
                    id: state.id.clone(),
                    revisions: Vec::new(),
                });
            let changed = states
                .get(&state.id)
                .is_none_or(|s| s.sha256 != state.sha256);
            if changed {
                let mut authors = entry
                    .revisions
                    .last()
                    .filter(|r| r.version.is_none())
                    .map(|r| r.authors.clone())
                    .unwrap_or_default();
                authors.insert(author_person.clone());
                entry.revisions.push(Revision {
                    number: entry.revisions.len() + 1,
                    commit: oid.to_string(),
                    time,
                    author: author_label.clone(),
                    summary: summary.clone(),
                    path: rel.clone(),
                    renamed_from: Vec::new(),
                    sha256: state.sha256.clone(),
                    approvers: state.approvers.clone(),
                    authors,
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
        sop_paths.insert(oid, map);

        // Approval trailers.
        let Some(parsed) = trailer::parse(commit.message().unwrap_or("")) else {
            continue;
        };
        let approval = match parsed {
            Ok(a) => a,
            Err(message) => {
                h.problems.push(Problem {
                    commit: oid.to_string(),
                    message,
                });
                continue;
            }
        };
        let is_signed = repo.extract_signature(&oid, None).is_ok();
        for a in &approval.approves {
            let Some(sop) = h.sops.get_mut(&a.sop) else {
                h.problems.push(Problem {
                    commit: oid.to_string(),
                    message: format!("approval names SOP `{}`, which does not exist", a.sop),
                });
                continue;
            };
            let current = states.get(&a.sop);
            let rev_index = sop.revisions.iter().rposition(|r| r.sha256 == a.sha256);
            let record = judge_signature(
                oid,
                time,
                &approval.meaning,
                &meanings,
                is_signed,
                verification,
                judge.as_deref(),
                current.map(|s| s.sha256 == a.sha256).unwrap_or(false),
                rev_index.map(|i| &sop.revisions[i]),
                config.approval.separation_of_duties,
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
            if rev.version.is_none() && !rev.approvers.is_empty() && rev.missing_roles().is_empty()
            {
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
                rev.effective_time = Some(time.max(rev.time));
                rev.effective_commit = Some(oid.to_string());
            }
        }
    }
    Ok(h)
}

/// The person behind a commit: its signing key's owner when signed and valid, else the
/// person with the author's e-mail, else the e-mail itself.
fn author_identity(
    v: Option<&signature::Verification>,
    policy: Option<&Policy>,
    email: &str,
) -> String {
    if let Some(v) = v
        && v.status == signature::Status::Valid
        && let Some(owner) = &v.owner
    {
        return owner.clone();
    }
    if let Some(person) = policy.and_then(|p| p.person_by_email(email)) {
        return person.id.value.clone();
    }
    email.to_string()
}

#[allow(clippy::too_many_arguments)]
fn judge_signature(
    oid: git2::Oid,
    commit_time: i64,
    meaning: &str,
    meanings: &BTreeSet<&str>,
    signed: bool,
    v: Option<&signature::Verification>,
    policy: Option<&Policy>,
    content_matches: bool,
    revision: Option<&Revision>,
    separation_of_duties: bool,
) -> SignatureRecord {
    let mut r = SignatureRecord {
        commit: oid.to_string(),
        time: commit_time,
        signer: None,
        name: None,
        role: None,
        meaning: meaning.to_string(),
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
    if !signed {
        status(Status::Unsigned, "approval trailers on an unsigned commit (a squash or rebase merge may have rewritten it)".into(), &mut r);
        return r;
    }
    let (Some(v), Some(policy)) = (v, policy) else {
        status(
            Status::UnknownKey,
            "no trusted people.yaml at this point of history".into(),
            &mut r,
        );
        return r;
    };
    if let Some(t) = v.signed_at {
        r.time = t;
    }
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
    // An OpenPGP signature is judged at the time it claims, which the signer's clock sets;
    // content committed later cannot have been signed with a certificate that had expired
    // or been revoked by then.
    if let (Some(rev), Some(KeyKind::OpenPgp), Some(fpr)) =
        (revision, v.kind, v.fingerprint.as_deref())
        && r.time < rev.time
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
                crate::approval::utc(r.time),
                crate::approval::utc(rev.time)
            ),
            &mut r,
        );
        return r;
    }
    if !meanings.contains(meaning) {
        status(
            Status::MeaningNotAllowed,
            format!("meaning `{meaning}` is not in the vocabulary"),
            &mut r,
        );
        return r;
    }
    if !content_matches {
        status(
            Status::WrongContent,
            "the approved content hash is not the SOP's content in this commit".into(),
            &mut r,
        );
        return r;
    }
    // The signing time comes from the signer's own clock. Nobody signs content before it
    // was committed, so roles are judged no earlier than that: a backdated approval by
    // someone whose role has since ended does not count for content written after it did.
    let day = date_of(revision.map_or(r.time, |rev| r.time.max(rev.time)));
    let approvers = revision.map(|rev| rev.approvers.as_slice()).unwrap_or(&[]);
    let role = if meaning == "approved" {
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
        let need = if meaning == "approved" {
            approvers.join(", ")
        } else {
            "any role".into()
        };
        status(
            Status::RoleNotHeld,
            format!("{} held none of: {need} on {day}", person.name),
            &mut r,
        );
        return r;
    };
    r.role = Some(role);
    if separation_of_duties
        && meaning == "approved"
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
            approvers: approvers.iter().map(|r| r.to_string()).collect(),
            authors: BTreeSet::new(),
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
