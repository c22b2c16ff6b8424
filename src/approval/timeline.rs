//! The one policy timeline: which people, roles, keys, policy settings and templates are in
//! force at every point of the main line, computed once per history and asked by every reader
//! (approvals, `check`, `status`, `run`, `render`, `verify-pdf`).
//!
//! ```text
//!   first-parent chain (oldest → newest)
//!   A ── B ── R ── C ── M ── D ── HEAD        R: the root, the first commit whose people.yaml
//!                      /                         gives an admin a key
//!        x ── y ── z ─┘                       x, y, z enter the main line at M and are judged
//!                                             against the policy in force just before M
//! ```
//!
//! - Exactly one root, on the first-parent chain: nothing on a side branch or an orphan
//!   history can start a second one.
//! - The policy files are people.yaml, everything under the roles and keys folders, the
//!   templates folder, and the policy parts of `sopkit.toml` (everything but `[links]`).
//! - After the root, a change to them takes effect only in a first-parent commit signed by an
//!   admin of the policy in force just before it, and only for the paths that commit changed
//!   (compared with its first parent). An unsigned change is recorded and never becomes
//!   trusted later by riding along with an admin's change to some other file.
//! - Times on the main line never go backwards and never pass now: a commit that enters at a
//!   point is judged at that point's time.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;

use serde::Serialize;

use super::policy::{Files, Policy};
use super::signature;
use crate::config::{Config, Links, Paths};
use crate::corpus::under;
use crate::source::SourceFile;

/// The policy files and settings trusted at one point.
#[derive(Debug)]
pub struct Trusted {
    /// Every trusted policy file, by path from the repository root.
    pub files: Files,
    /// The trusted `sopkit.toml` (its `[links]` are not policy and are never read from here).
    pub config: Config,
    /// The blob `config` was read from (`None`: no sopkit.toml, the defaults).
    pub config_blob: Option<git2::Oid>,
    pub policy: Arc<Policy>,
}

impl Trusted {
    /// Rebuilds a trusted state from its files and the blob of its config (as saved by
    /// [`super::history`]'s cache).
    pub fn rebuild(
        repo: &git2::Repository,
        files: Files,
        config_blob: Option<git2::Oid>,
        prefix: &str,
    ) -> Option<Trusted> {
        let config = match config_blob {
            None => Config::default(),
            Some(id) => {
                let bytes = super::policy::verified_blob(repo, id)?;
                let file = SourceFile::new(
                    config_path(prefix),
                    String::from_utf8_lossy(&bytes).into_owned(),
                );
                Config::parse(&file).0?
            }
        };
        let policy = Policy::from_files(repo, &files, &rooted(&config.paths, prefix));
        Some(Trusted {
            files,
            config,
            config_blob,
            policy: Arc::new(policy),
        })
    }

    /// The trusted bytes of a policy file.
    pub fn read(&self, repo: &git2::Repository, path: &str) -> Option<Vec<u8>> {
        let id = self.files.get(path)?;
        super::policy::verified_blob(repo, *id)
    }
}

/// One commit of the first-parent chain.
#[derive(Debug)]
pub struct Point {
    pub commit: git2::Oid,
    /// The commit's time, but never before the previous point's and never after now.
    pub time: i64,
    /// The policy in force after this commit; `None` before the root.
    pub trusted: Option<Arc<Trusted>>,
}

/// A commit of the main line that changed policy files, and whether it was allowed to.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct PolicyChange {
    pub commit: String,
    pub time: i64,
    pub summary: String,
    pub authorised: bool,
    pub detail: String,
    /// The policy paths it changed.
    pub paths: Vec<String>,
}

#[derive(Debug, Default)]
pub struct Timeline {
    pub root: Option<git2::Oid>,
    /// The first-parent chain, oldest first.
    pub points: Vec<Point>,
    /// Every commit reachable from the head → the point where it enters the main line.
    entry: HashMap<git2::Oid, usize>,
    /// The commits this build met (after the one it resumed from), parents before children.
    pub order: Vec<git2::Oid>,
    /// Their commit times (as their committers' clocks said).
    pub times: HashMap<git2::Oid, i64>,
    pub changes: Vec<PolicyChange>,
    /// Things wrong with the timeline itself (a pinned root that does not match).
    pub problems: Vec<(String, String)>,
    /// The policy roots and their tree ids at the last point, so that each step reads only
    /// its own commit's tree.
    last: Option<(Vec<String>, Vec<Option<git2::Oid>>)>,
    /// Some point's commit time was after now and was cut back to now: a later run, at a
    /// later now, would judge differently, so nothing of this run may be cached.
    pub clamped: bool,
}

/// Told of each commit a timeline build meets, with its tree: the main line newest first,
/// then each side commit once its parents are told.
pub type Met<'a> = &'a mut dyn FnMut(&git2::Commit<'_>, &git2::Tree<'_>);

/// Where an earlier build stopped: a commit of the main line, its time and the policy in force
/// after it, and what the timeline had found up to there.
#[derive(Debug)]
pub struct Resume {
    pub commit: git2::Oid,
    pub time: i64,
    pub root: Option<git2::Oid>,
    pub trusted: Option<Arc<Trusted>>,
    pub changes: Vec<PolicyChange>,
    pub problems: Vec<(String, String)>,
}

/// Policy paths relative to the repository root, for a config read in folder `prefix`.
pub fn rooted(paths: &Paths, prefix: &str) -> Paths {
    let mut p = paths.clone();
    if !prefix.is_empty() {
        for x in [
            &mut p.procedures,
            &mut p.glossary,
            &mut p.roles,
            &mut p.people,
            &mut p.keys,
            &mut p.templates,
            &mut p.evidence,
        ] {
            *x = format!("{prefix}/{x}");
        }
    }
    p
}

fn config_path(prefix: &str) -> String {
    if prefix.is_empty() {
        crate::config::FILE_NAME.to_string()
    } else {
        format!("{prefix}/{}", crate::config::FILE_NAME)
    }
}

/// The parts of a config that are policy: everything but `[links]`.
fn policy_part(c: &Config) -> Config {
    Config {
        links: Links::default(),
        ..c.clone()
    }
}

/// `sopkit.toml` in a tree: `None` when absent (defaults apply), `Some(None)` when it does not
/// parse.
fn config_in(repo: &git2::Repository, tree: &git2::Tree<'_>, path: &str) -> Option<Option<Config>> {
    let entry = tree.get_path(Path::new(path)).ok()?;
    let bytes = super::policy::verified_blob(repo, entry.id())?;
    let file = SourceFile::new(path, String::from_utf8_lossy(&bytes).into_owned());
    Some(Config::parse(&file).0)
}

/// The folders and files whose content is policy, from the repository root.
fn policy_roots(paths: &Paths, prefix: &str) -> Vec<String> {
    let p = rooted(paths, prefix);
    let mut v = vec![p.people, p.roles, p.keys, p.templates, config_path(prefix)];
    v.retain(|x| !x.is_empty());
    v.sort();
    v.dedup();
    v
}

fn is_policy_path(path: &str, roots: &[String]) -> bool {
    roots.iter().any(|r| under(path, r))
}

/// Every blob under the policy paths of a tree.
fn snapshot(repo: &git2::Repository, tree: &git2::Tree<'_>, roots: &[String]) -> Files {
    let mut files = Files::new();
    for root in roots {
        let Ok(entry) = tree.get_path(Path::new(root)) else {
            continue;
        };
        match entry.kind() {
            Some(git2::ObjectType::Blob) => {
                files.insert(root.clone(), entry.id());
            }
            Some(git2::ObjectType::Tree) => {
                if let Ok(sub) = repo.find_tree(entry.id()) {
                    let _ = sub.walk(git2::TreeWalkMode::PreOrder, |dir, e| {
                        if e.kind() == Some(git2::ObjectType::Blob)
                            && let Ok(name) = e.name()
                        {
                            files.insert(format!("{root}/{dir}{name}"), e.id());
                        }
                        git2::TreeWalkResult::Ok
                    });
                }
            }
            _ => {}
        }
    }
    files
}

/// Ids that cover the policy roots in a tree: equal ids mean equal policy files.
fn fingerprint(tree: &git2::Tree<'_>, roots: &[String]) -> Vec<Option<git2::Oid>> {
    // The top-level entries that hold the roots: equal ids there mean equal files below, and
    // reading them loads no sub-tree (a commit that changes something else under the same
    // folder is then compared in full by `changed_paths`).
    roots
        .iter()
        .map(|p| {
            let first = p.split('/').next().unwrap_or(p);
            tree.get_name(first).map(|e| e.id())
        })
        .collect()
}

/// The policy paths a commit changed against its first parent: path → new blob (`None` for a
/// deletion). A `sopkit.toml` whose policy parts are the same as before and as the trusted
/// ones (only `[links]` or layout changed) is left out.
fn changed_paths(
    repo: &git2::Repository,
    parent: &git2::Tree<'_>,
    tree: &git2::Tree<'_>,
    roots: &[String],
    toml: &str,
    trusted: &Config,
) -> Result<BTreeMap<String, Option<git2::Oid>>, git2::Error> {
    let mut opts = git2::DiffOptions::new();
    for r in roots {
        opts.pathspec(r);
    }
    let diff = repo.diff_tree_to_tree(Some(parent), Some(tree), Some(&mut opts))?;
    let mut out = BTreeMap::new();
    for d in diff.deltas() {
        for file in [d.old_file(), d.new_file()] {
            let Some(path) = file.path().map(|p| p.to_string_lossy().replace('\\', "/")) else {
                continue;
            };
            if is_policy_path(&path, roots) {
                let now = tree.get_path(Path::new(&path)).ok().map(|e| e.id());
                out.insert(path, now);
            }
        }
    }
    if out.contains_key(toml) {
        let before = config_in(repo, parent, toml).map(|c| c.map(|c| policy_part(&c)));
        let after = config_in(repo, tree, toml).map(|c| c.map(|c| policy_part(&c)));
        let trusted = policy_part(trusted);
        let same_as_trusted = match &after {
            None => trusted == Config::default(),
            Some(a) => a.as_ref() == Some(&trusted),
        };
        if before == after && same_as_trusted {
            out.remove(toml);
        }
    }
    Ok(out)
}

impl Timeline {
    /// Builds the timeline of the history ending at `head`. `prefix` is the SOP folder inside
    /// the repository; `now` bounds every time on the main line. `met`, when given, is told of
    /// every commit with its tree as it is read (not in [`Timeline::order`]), so that a reader
    /// of the commits can start before the timeline is done.
    pub fn build(
        repo: &git2::Repository,
        head: git2::Oid,
        prefix: &str,
        now: i64,
        met: Option<Met<'_>>,
    ) -> Result<Timeline, git2::Error> {
        let t = Timeline::build_from(repo, head, prefix, now, None, None, met)?;
        Ok(t.expect("a build from the start always reaches the start"))
    }

    /// [`Timeline::build`], continuing from where an earlier build stopped. `new` holds every
    /// commit not reachable from `from.commit`. `None` when `from.commit` is not on the
    /// first-parent chain of `head` (history was rewritten, or it was merged in as a side
    /// branch): the caller then builds from the start.
    pub fn build_from(
        repo: &git2::Repository,
        head: git2::Oid,
        prefix: &str,
        now: i64,
        from: Option<Resume>,
        new: Option<&std::collections::HashSet<git2::Oid>>,
        mut met: Option<Met<'_>>,
    ) -> Result<Option<Timeline>, git2::Error> {
        let stop = from.as_ref().map(|f| f.commit);
        let mut chain = Vec::new();
        let mut c = repo.find_commit(head)?;
        loop {
            if Some(c.id()) == stop {
                break;
            }
            chain.push(c.id());
            if let Some(met) = met.as_mut() {
                met(&c, &c.tree()?);
            }
            match c.parent(0) {
                Ok(p) => c = p,
                Err(_) if stop.is_some() => return Ok(None),
                Err(_) => break,
            }
        }
        chain.reverse();
        let toml = config_path(prefix);
        let mut t = Timeline::default();
        let mut current: Option<Arc<Trusted>> = None;
        let mut last_candidate: Option<Vec<Option<git2::Oid>>> = None;
        let mut configs: HashMap<Option<git2::Oid>, Option<Config>> = HashMap::new();
        let mut time = i64::MIN;
        if let Some(f) = from {
            t.entry.insert(f.commit, 0);
            t.points.push(Point {
                commit: f.commit,
                time: f.time,
                trusted: f.trusted.clone(),
            });
            t.root = f.root;
            t.changes = f.changes;
            t.problems = f.problems;
            time = f.time;
            current = f.trusted;
        }
        let offset = t.points.len();
        for (i, &oid) in chain.iter().enumerate() {
            let i = i + offset;
            let commit = repo.find_commit(oid)?;
            t.entry.insert(oid, i);
            // The side commits entering here, depth first, each put in `order` once its
            // parents are (a parent met again is either done or not reachable from here).
            let mut stack: Vec<(git2::Oid, bool)> =
                commit.parent_ids().skip(1).map(|p| (p, false)).collect();
            let mut sides = HashMap::new();
            while let Some((x, parents_done)) = stack.pop() {
                if parents_done {
                    t.order.push(x);
                    if let (Some(side), Some(met)) = (sides.remove(&x), met.as_mut()) {
                        met(&side, &side.tree()?);
                    }
                    continue;
                }
                if t.entry.contains_key(&x) || new.is_some_and(|n| !n.contains(&x)) {
                    continue;
                }
                t.entry.insert(x, i);
                stack.push((x, true));
                let side = repo.find_commit(x)?;
                t.times.insert(x, side.time().seconds());
                stack.extend(side.parent_ids().map(|p| (p, false)));
                sides.insert(x, side);
            }
            t.order.push(oid);
            t.times.insert(oid, commit.time().seconds());
            t.clamped |= commit.time().seconds() > now;
            time = time.max(commit.time().seconds()).min(now);
            let tree = commit.tree()?;
            current = match current {
                None => {
                    // Before the root, each commit is a candidate: its sopkit.toml is parsed
                    // once per distinct blob, not once per commit.
                    let blob = tree.get_path(Path::new(&toml)).ok().map(|e| e.id());
                    let config = configs.entry(blob).or_insert_with(|| {
                        match config_in(repo, &tree, &toml) {
                            None => Some(Config::default()),
                            Some(c) => c,
                        }
                    });
                    let root = config.as_ref().and_then(|config| {
                        let roots = policy_roots(&config.paths, prefix);
                        let fp = fingerprint(&tree, &roots);
                        if last_candidate.as_ref() == Some(&fp) {
                            return None;
                        }
                        last_candidate = Some(fp);
                        let paths = rooted(&config.paths, prefix);
                        tree.get_path(Path::new(&paths.people)).ok()?;
                        let files = snapshot(repo, &tree, &roots);
                        let policy = Policy::from_files(repo, &files, &paths);
                        policy.has_signing_admin().then(|| {
                            Arc::new(Trusted {
                                files,
                                config: config.clone(),
                                config_blob: blob,
                                policy: Arc::new(policy),
                            })
                        })
                    });
                    if root.is_some() {
                        t.root = Some(oid);
                    }
                    root
                }
                Some(before) => Some(t.step(repo, &commit, &tree, before, prefix, &toml, time)?),
            };
            t.points.push(Point {
                commit: oid,
                time,
                trusted: current.clone(),
            });
        }
        Ok(Some(t))
    }

    /// A finding when `[approval] trust_root` (as trusted at the head) pins a root that is not
    /// the history's own: the history was rewritten, or the pin is wrong.
    pub fn pin_problem(&self) -> Option<(String, String)> {
        let pin = self.at_head()?.config.approval.trust_root.clone()?;
        let root = self.root?;
        (!root.to_string().starts_with(pin.trim())).then(|| {
            (
                root.to_string(),
                format!(
                    "sopkit.toml pins the trust root at `{pin}`, but the history's root is {root}: \
                     the history was rewritten or the pin is wrong"
                ),
            )
        })
    }

    /// One commit of the main line after the root: the policy in force after it.
    #[allow(clippy::too_many_arguments)]
    fn step(
        &mut self,
        repo: &git2::Repository,
        commit: &git2::Commit<'_>,
        tree: &git2::Tree<'_>,
        before: Arc<Trusted>,
        prefix: &str,
        toml: &str,
        time: i64,
    ) -> Result<Arc<Trusted>, git2::Error> {
        let roots = policy_roots(&before.config.paths, prefix);
        let now_fp = fingerprint(tree, &roots);
        let parent_fp = match self.last.take() {
            Some((r, fp)) if r == roots => fp,
            _ => fingerprint(&commit.parent(0)?.tree()?, &roots),
        };
        self.last = Some((roots.clone(), now_fp.clone()));
        if parent_fp == now_fp {
            return Ok(before);
        }
        let parent = commit.parent(0)?.tree()?;
        let changed = changed_paths(repo, &parent, tree, &roots, toml, &before.config)?;
        if changed.is_empty() {
            return Ok(before);
        }
        let (authorised, detail) = match repo.extract_signature(&commit.id(), None) {
            Err(_) => (false, "the commit is not signed".to_string()),
            Ok((sig, payload)) => {
                let v = signature::verify(&before.policy.keyring, &sig, &payload);
                match (
                    &v.status,
                    v.owner.as_deref().and_then(|o| before.policy.person(o)),
                ) {
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
        self.changes.push(PolicyChange {
            commit: commit.id().to_string(),
            time,
            summary: crate::git::summary(commit),
            authorised,
            detail,
            paths: changed.keys().cloned().collect(),
        });
        if !authorised {
            return Ok(before);
        }
        let mut config = before.config.clone();
        let mut config_blob = before.config_blob;
        if changed.contains_key(toml) {
            match config_in(repo, tree, toml) {
                None => (config, config_blob) = (Config::default(), None),
                Some(Some(c)) => (config, config_blob) = (c, changed[toml]),
                Some(None) => self.problems.push((
                    commit.id().to_string(),
                    "an admin signed a sopkit.toml that does not parse; the one before stays in force"
                        .into(),
                )),
            }
        }
        let files = if config.paths != before.config.paths {
            // New places for people, roles, keys or templates: the admin signed the tree.
            snapshot(repo, tree, &policy_roots(&config.paths, prefix))
        } else {
            let mut files = before.files.clone();
            for (path, now) in &changed {
                match now {
                    Some(id) => files.insert(path.clone(), *id),
                    None => files.remove(path),
                };
            }
            files
        };
        let policy = Policy::from_files(repo, &files, &rooted(&config.paths, prefix));
        Ok(Arc::new(Trusted {
            files,
            config,
            config_blob,
            policy: Arc::new(policy),
        }))
    }

    /// The point of the main line where a commit enters it.
    pub fn entry_of(&self, oid: git2::Oid) -> Option<usize> {
        self.entry.get(&oid).copied()
    }

    /// The policy a commit entering at point `i` is judged by: the one in force just before
    /// that point; at the root, the root's own (trusted by definition, and an approval commit
    /// cannot be the root, since it changes no files).
    pub fn before(&self, i: usize) -> Option<&Arc<Trusted>> {
        if self.root.is_some() && self.points.get(i).map(|p| p.commit) == self.root {
            return self.points[i].trusted.as_ref();
        }
        i.checked_sub(1)
            .and_then(|j| self.points.get(j))
            .and_then(|p| p.trusted.as_ref())
    }

    /// The policy in force at the head.
    pub fn at_head(&self) -> Option<&Arc<Trusted>> {
        self.points.last().and_then(|p| p.trusted.as_ref())
    }

    /// The policy in force once commit `oid` is on the main line.
    pub fn at_commit(&self, oid: git2::Oid) -> Option<&Arc<Trusted>> {
        let i = self.entry_of(oid)?;
        self.points[i].trusted.as_ref()
    }

    /// The time of the point where `oid` enters the main line.
    pub fn entry_time(&self, oid: git2::Oid) -> Option<i64> {
        Some(self.points[self.entry_of(oid)?].time)
    }

    /// The config every reader uses at the head: the trusted policy parts, with `[links]` from
    /// the tree being read (links are not policy). Without a root, the tree's own config.
    pub fn effective_config(&self, tree_config: &Config) -> Config {
        match self.at_head() {
            Some(t) => Config {
                links: tree_config.links.clone(),
                ..t.config.clone()
            },
            None => tree_config.clone(),
        }
    }
}
