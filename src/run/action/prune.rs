//! `prune` of a folder: backup items past their retention that no keep rule or legal hold
//! keeps.

use std::path::{Path, PathBuf};

use super::archive::manifest_path;
use super::{Context, Error, Output, expand, io, required, resolve};
use crate::corpus::step::args;

/// One backup item a `prune` considers, and what becomes of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub path: PathBuf,
    /// Modification time, UTC seconds.
    pub time: i64,
    /// `None`: deleted; otherwise why it is kept.
    pub keep: Option<String>,
}

/// Refuses to prune `/`, the home folder, or a folder holding the SOP repository: prune
/// deletes whole files and folders, and a `path` one level too high would take everything.
fn refuse_broad_prune(dir: &Path, root: &Path) -> Result<(), Error> {
    let Ok(dir) = dir.canonicalize() else {
        return Ok(()); // a missing folder is reported where it is listed
    };
    let home = std::env::var_os("HOME").and_then(|h| Path::new(&h).canonicalize().ok());
    let what = if dir.parent().is_none() {
        Some("the root folder")
    } else if home.as_deref() == Some(dir.as_path()) {
        Some("the home folder")
    } else if root.canonicalize().is_ok_and(|r| r.starts_with(&dir)) {
        Some("a folder holding the SOP repository")
    } else {
        None
    };
    match what {
        Some(what) => Err(Error::Argument {
            name: "path",
            message: format!(
                "{} is {what}; prune deletes whole files and folders in `path`, so point it at \
                 the folder of backups",
                dir.display()
            ),
        }),
        None => Ok(()),
    }
}

/// What `prune` would do with the items in `path` at time `now` (UTC seconds); nothing is
/// deleted here.
pub fn prune_plan(args: &args::Prune, root: &Path, now: i64) -> Result<Vec<Decision>, Error> {
    let dir = resolve(root, &required(args.path.as_deref(), "path")?);
    refuse_broad_prune(&dir, root)?;
    let retention: crate::duration::Duration =
        expand(&args.retention)
            .parse()
            .map_err(|e| Error::Argument {
                name: "retention",
                message: format!("{e}"),
            })?;
    let glob = match &args.pattern {
        Some(p) => Some(
            globset::Glob::new(&expand(p))
                .map_err(|e| Error::Argument {
                    name: "pattern",
                    message: e.to_string(),
                })?
                .compile_matcher(),
        ),
        None => None,
    };
    let mut holds = globset::GlobSetBuilder::new();
    for g in &args.legal_hold {
        holds.add(globset::Glob::new(g).map_err(|e| Error::Argument {
            name: "legal_hold",
            message: e.to_string(),
        })?);
    }
    let holds = holds.build().map_err(|e| Error::Argument {
        name: "legal_hold",
        message: e.to_string(),
    })?;
    let rules = [
        (
            "daily",
            args.keep_daily.unwrap_or(0),
            "[year]-[month]-[day]",
        ),
        (
            "weekly",
            args.keep_weekly.unwrap_or(0),
            "[year]-W[week_number repr:iso]",
        ),
        ("monthly", args.keep_monthly.unwrap_or(0), "[year]-[month]"),
    ];
    let mut items = Vec::new();
    for e in std::fs::read_dir(&dir).map_err(io(&dir))? {
        let e = e.map_err(io(&dir))?;
        let name = e.file_name().to_string_lossy().into_owned();
        // Companions go with their item: a manifest, a legal-hold marker.
        if name.ends_with(".manifest.json")
            || name.ends_with(".legal-hold")
            || name.starts_with('.')
        {
            continue;
        }
        if glob.as_ref().is_some_and(|g| !g.is_match(&name)) {
            continue;
        }
        let meta = e.path().symlink_metadata().map_err(io(&e.path()))?;
        let time = meta
            .modified()
            .ok()
            .and_then(|m| m.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_secs() as i64);
        items.push((e.path(), name, time));
    }
    // Newest first: the keep rules keep the newest item of each period.
    items.sort_by(|a, b| b.2.cmp(&a.2).then(a.1.cmp(&b.1)));
    let mut seen: Vec<std::collections::BTreeSet<String>> = vec![Default::default(); rules.len()];
    let mut out = Vec::new();
    for (path, name, time) in items {
        let mut keep = None;
        let mut hold_marker = path.as_os_str().to_owned();
        hold_marker.push(".legal-hold");
        if Path::new(&hold_marker).exists() || holds.is_match(&name) {
            keep = Some("legal hold".to_string());
        } else if now - time < retention.seconds as i64 {
            keep = Some(format!("within retention {retention}"));
        }
        let dt = time::OffsetDateTime::from_unix_timestamp(time)
            .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
        for (i, (label, n, fmt)) in rules.iter().enumerate() {
            let Ok(desc) = time::format_description::parse_borrowed::<2>(fmt) else {
                continue;
            };
            let bucket = dt.format(&desc).unwrap_or_default();
            if *n > 0 && !seen[i].contains(&bucket) && seen[i].len() < *n {
                seen[i].insert(bucket.clone());
                keep.get_or_insert_with(|| format!("newest of {bucket} (keep_{label})"));
            }
        }
        out.push(Decision { path, time, keep });
    }
    Ok(out)
}

/// `prune`: in `path`, deletes the items (files or folders; `pattern` narrows them) older
/// than `retention` that no `keep_daily`, `keep_weekly` or `keep_monthly` rule keeps. An
/// item with a `ITEM.legal-hold` file beside it, or matching a `legal_hold` glob, is never
/// deleted; an archive's manifest goes with it.
pub(super) fn prune(args: &args::Prune, cx: &mut Context<'_>) -> Result<Output, Error> {
    let now = crate::time::now();
    let plan = prune_plan(args, cx.root, now)?;
    let mut out = Output::default();
    for d in &plan {
        match &d.keep {
            Some(why) => {
                let _ = writeln!(cx.log, "kept {}: {why}", d.path.display());
            }
            None => {
                let meta = d.path.symlink_metadata().map_err(io(&d.path))?;
                if meta.is_dir() {
                    std::fs::remove_dir_all(&d.path).map_err(io(&d.path))?;
                } else {
                    std::fs::remove_file(&d.path).map_err(io(&d.path))?;
                }
                let manifest = manifest_path(&d.path);
                if manifest.exists() {
                    std::fs::remove_file(&manifest).map_err(io(&manifest))?;
                }
                let _ = writeln!(cx.log, "deleted {}", d.path.display());
                out.verification
                    .push(format!("ok: deleted {}", d.path.display()));
            }
        }
    }
    let kept = plan.iter().filter(|d| d.keep.is_some()).count();
    out.verification
        .push(format!("ok: {kept} kept, {} deleted", plan.len() - kept));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::action::testing::*;

    #[test]
    fn prune_keeps_recent_periodic_and_held_items() {
        let d = tempfile::tempdir().unwrap();
        let day = 86_400i64;
        let now = 1_800_000_000i64; // 2027-01-15
        for age in [1, 10, 40, 41, 70, 100, 400] {
            let p = d.path().join(format!("b{age:03}.tar.zst"));
            std::fs::write(&p, "x").unwrap();
            std::fs::write(manifest_path(&p), "{}").unwrap();
            let t =
                std::time::UNIX_EPOCH + std::time::Duration::from_secs((now - age * day) as u64);
            std::fs::File::options()
                .write(true)
                .open(&p)
                .unwrap()
                .set_modified(t)
                .unwrap();
        }
        std::fs::write(d.path().join("b400.tar.zst.legal-hold"), "case 12").unwrap();
        let dir = d.path().to_str().unwrap();
        let a = prune_args(&format!("path: {dir:?}\nretention: 35d\nkeep_monthly: 2\n"));
        let repo = tempfile::tempdir().unwrap();
        let plan = prune_plan(&a, repo.path(), now).unwrap();
        let deleted: Vec<String> = plan
            .iter()
            .filter(|x| x.keep.is_none())
            .map(|x| x.path.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        // 1 and 10 days: within retention; 40 is the newest of its month, 70 of the month
        // before (keep_monthly: 2, counting the retained ones' month first); 400: legal hold.
        let kept: Vec<(String, String)> = plan
            .iter()
            .filter_map(|x| {
                x.keep.clone().map(|k| {
                    (
                        x.path.file_name().unwrap().to_string_lossy().into_owned(),
                        k,
                    )
                })
            })
            .collect();
        assert!(
            kept.iter()
                .any(|(n, k)| n == "b400.tar.zst" && k == "legal hold"),
            "{kept:?}"
        );
        assert!(!deleted.contains(&"b400.tar.zst".to_string()));
        assert!(deleted.contains(&"b100.tar.zst".to_string()), "{deleted:?}");
        assert!(
            !deleted.contains(&"b001.tar.zst".to_string())
                && !deleted.contains(&"b010.tar.zst".to_string())
        );
        // Without keep rules, everything past retention goes except the held one.
        let a = prune_args(&format!("path: {dir:?}\nretention: 35d\n"));
        let plan = prune_plan(&a, repo.path(), now).unwrap();
        let deleted = plan.iter().filter(|x| x.keep.is_none()).count();
        assert_eq!(deleted, 4);
    }

    #[test]
    fn prune_refuses_the_root_and_any_folder_holding_the_repository() {
        let d = tempfile::tempdir().unwrap();
        let repo = d.path().join("sops");
        std::fs::create_dir_all(repo.join("backups")).unwrap();
        let plan = |path: &Path| {
            let a = prune_args(&format!(
                "path: {:?}\nretention: 1d\n",
                path.to_str().unwrap()
            ));
            prune_plan(&a, &repo, 0)
        };
        for broad in [Path::new("/"), d.path(), repo.as_path(), &repo.join(".")] {
            let e = plan(broad).expect_err("refused").to_string();
            assert!(e.contains("prune deletes whole files and folders"), "{e}");
        }
        assert!(plan(&repo.join("backups")).is_ok());
    }
}
