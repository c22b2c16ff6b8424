//! Committed evidence is append-only: once a commit on the main line holds a record, its
//! signature or a log, no later commit may change or remove it, and the working tree may not
//! change it either. A ledger whose chains are consistent today can still have lost a run,
//! a whole writer, or the tail of a chain in some commit: only git's history tells, so this
//! walks it (the first-parent chain, each commit against its first parent, which is where a
//! change lands on the main line, merges included).

use std::collections::BTreeMap;
use std::path::Path;

use super::verify::Problem;

/// Files directly in the evidence folder that may change (they are not evidence).
const NOT_EVIDENCE: &[&str] = &["README.md", ".gitignore", ".gitkeep"];

/// Every change or removal, by a commit of `HEAD`'s main line or in the working tree, of a
/// file under the evidence folder `rel` (of the repository containing `root`) that an
/// earlier commit held. Outside git, or before the first commit, nothing.
pub fn changes(root: &Path, rel: &str) -> Result<Vec<Problem>, git2::Error> {
    let mut out = Vec::new();
    let Some(repo) = crate::git::find(root) else {
        return Ok(out);
    };
    let prefix = crate::git::prefix_in(&repo, root);
    let full = if prefix.is_empty() {
        rel.trim_end_matches('/').to_string()
    } else {
        format!("{prefix}/{}", rel.trim_end_matches('/'))
    };
    let Ok(head) = repo.head().and_then(|h| h.peel_to_commit()) else {
        return Ok(out);
    };
    let folder = |c: &git2::Commit<'_>| -> Result<Option<git2::Oid>, git2::Error> {
        Ok(c.tree()?.get_path(Path::new(&full)).ok().map(|e| e.id()))
    };
    let mut chain = vec![head];
    while let Ok(p) = chain.last().expect("never empty").parent(0) {
        chain.push(p);
    }
    chain.reverse();
    let path_of = |file: &str| root.join(rel).join(file);
    let mut before = folder(&chain[0])?;
    for commit in &chain[1..] {
        let now = folder(commit)?;
        if now != before {
            let mut lost = Vec::new();
            lost_files(&repo, before, now, "", &mut lost)?;
            let short = &commit.id().to_string()[..12];
            // A writer folder gone as a whole is one finding, not one per file.
            let mut by_writer: BTreeMap<&str, Vec<&(String, bool)>> = BTreeMap::new();
            for l in &lost {
                let writer = l.0.split_once('/').map_or("", |(w, _)| w);
                by_writer.entry(writer).or_default().push(l);
            }
            for (writer, files) in by_writer {
                let whole = !writer.is_empty()
                    && now.is_none_or(|n| {
                        repo.find_tree(n)
                            .is_ok_and(|t| t.get_name(writer).is_none())
                    });
                if whole {
                    out.push(Problem {
                        path: path_of(writer),
                        message: format!(
                            "writer folder removed by commit {short} ({} committed files): \
                             committed evidence is never removed",
                            files.len()
                        ),
                    });
                    continue;
                }
                for (file, removed) in files {
                    if NOT_EVIDENCE.contains(&file.as_str()) {
                        continue;
                    }
                    out.push(Problem {
                        path: path_of(file),
                        message: format!(
                            "{} by commit {short} after it was committed: committed evidence is \
                             append-only",
                            if *removed { "removed" } else { "changed" }
                        ),
                    });
                }
            }
        }
        before = now;
    }
    // The working tree (and the index) against HEAD: a committed file changed in place.
    let mut opts = git2::StatusOptions::new();
    opts.pathspec(&full)
        .include_untracked(false)
        .include_ignored(false);
    for s in repo.statuses(Some(&mut opts))?.iter() {
        let st = s.status();
        if !st.intersects(git2::Status::WT_MODIFIED | git2::Status::INDEX_MODIFIED) {
            continue;
        }
        let Ok(path) = s.path() else { continue };
        let file = path
            .strip_prefix(&full)
            .map(|f| f.trim_start_matches('/'))
            .unwrap_or(path);
        if NOT_EVIDENCE.contains(&file) {
            continue;
        }
        out.push(Problem {
            path: path_of(file),
            message: "changed since it was committed (HEAD holds another version): committed \
                      evidence is append-only"
                .into(),
        });
    }
    Ok(out)
}

/// The files of folder `old` that folder `new` changed (`false`) or no longer has (`true`),
/// descending only into sub-folders whose ids differ.
fn lost_files(
    repo: &git2::Repository,
    old: Option<git2::Oid>,
    new: Option<git2::Oid>,
    base: &str,
    out: &mut Vec<(String, bool)>,
) -> Result<(), git2::Error> {
    let Some(old) = old else { return Ok(()) };
    if Some(old) == new {
        return Ok(());
    }
    let old_tree = repo.find_tree(old)?;
    let new_tree = match new {
        Some(n) => repo.find_tree(n).ok(),
        None => None,
    };
    for e in old_tree.iter() {
        let Ok(name) = e.name() else { continue };
        let path = format!("{base}{name}");
        let after = new_tree.as_ref().and_then(|t| t.get_name(name));
        match e.kind() {
            Some(git2::ObjectType::Tree) => {
                let sub = after
                    .filter(|a| a.kind() == Some(git2::ObjectType::Tree))
                    .map(|a| a.id());
                lost_files(repo, Some(e.id()), sub, &format!("{path}/"), out)?;
            }
            Some(git2::ObjectType::Blob) => match after {
                None => out.push((path, true)),
                Some(a) if a.id() != e.id() || a.kind() != e.kind() => out.push((path, false)),
                Some(_) => {}
            },
            _ => {}
        }
    }
    Ok(())
}
