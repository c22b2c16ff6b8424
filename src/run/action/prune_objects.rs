//! `prune` on an s3 target: object versions past their retention that no keep rule, legal
//! hold or object lock keeps.

use std::collections::BTreeMap;

use super::{Context, Error, Output, expand, required};
use crate::corpus::step::args;
use crate::run::target::s3;
use s3::{Remote, Version, list_versions, lock_possible, lock_reason};

/// The rules of a prune, from its arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rules {
    pub retention: crate::duration::Duration,
    pub keep_daily: usize,
    pub keep_weekly: usize,
    pub keep_monthly: usize,
    /// Whether the latest version of a key follows the retention too.
    pub expire_latest: bool,
}

impl Rules {
    pub fn from_args(args: &args::Prune) -> Result<Rules, Error> {
        Ok(Rules {
            retention: expand(&args.retention)
                .parse()
                .map_err(|e| Error::Argument {
                    name: "retention",
                    message: format!("{e}"),
                })?,
            keep_daily: args.keep_daily.unwrap_or(0),
            keep_weekly: args.keep_weekly.unwrap_or(0),
            keep_monthly: args.keep_monthly.unwrap_or(0),
            expire_latest: args.expire_latest.unwrap_or(false),
        })
    }
}

/// What the retention rules alone decide for each version and delete marker (`None`:
/// delete; otherwise why it stays). Object lock is checked afterwards, only for the
/// versions these rules would delete.
///
/// The choice an auditor can rely on:
/// - A version younger than `retention` (counted from when it was written) stays.
/// - The newest version of each day, ISO week and month stays while `keep_daily`,
///   `keep_weekly`, `keep_monthly` allow (counting from the newest, across all keys under
///   the prefix, like the local `prune`).
/// - The latest version of a key is what the key holds now: it stays whatever its age,
///   so a backup job that stopped running never lets `prune` empty the store. Only with
///   `expire_latest: true` (for layouts where every backup is a key of its own, which
///   otherwise would never be pruned) does it follow the rules above, and even then the
///   newest object version under the prefix stays.
/// - Delete markers stay: they record that someone deleted the object.
pub fn plan(versions: &[Version], rules: &Rules, now: i64) -> Vec<(Version, Option<String>)> {
    let mut order: Vec<&Version> = versions.iter().collect();
    order.sort_by(|a, b| {
        b.time
            .cmp(&a.time)
            .then(b.latest.cmp(&a.latest))
            .then(a.key.cmp(&b.key))
            .then(a.id.cmp(&b.id))
    });
    let periods = [
        ("daily", rules.keep_daily, "[year]-[month]-[day]"),
        (
            "weekly",
            rules.keep_weekly,
            "[year]-W[week_number repr:iso]",
        ),
        ("monthly", rules.keep_monthly, "[year]-[month]"),
    ];
    let mut seen: Vec<std::collections::BTreeSet<String>> = vec![Default::default(); 3];
    let mut newest_object_seen = false;
    let mut out = Vec::new();
    for v in order {
        if v.delete_marker {
            out.push((
                v.clone(),
                Some("delete marker (it records the deletion)".to_string()),
            ));
            continue;
        }
        let mut keep = None;
        if !newest_object_seen {
            newest_object_seen = true;
            keep = Some("newest version under the prefix".to_string());
        }
        if v.latest && !rules.expire_latest {
            keep = Some("latest version of the key".to_string());
        }
        if now.saturating_sub(v.time) < i64::try_from(rules.retention.seconds).unwrap_or(i64::MAX) {
            keep.get_or_insert_with(|| format!("within retention {}", rules.retention));
        }
        let dt = time::OffsetDateTime::from_unix_timestamp(v.time)
            .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
        for (i, (label, n, fmt)) in periods.iter().enumerate() {
            let Ok(desc) = time::format_description::parse_borrowed::<2>(fmt) else {
                continue;
            };
            let period = dt.format(&desc).unwrap_or_default();
            if *n > 0 && !seen[i].contains(&period) && seen[i].len() < *n {
                seen[i].insert(period.clone());
                keep.get_or_insert_with(|| format!("newest of {period} (keep_{label})"));
            }
        }
        out.push((v.clone(), keep));
    }
    out.sort_by(|a, b| {
        a.0.key
            .cmp(&b.0.key)
            .then(b.0.time.cmp(&a.0.time))
            .then(a.0.id.cmp(&b.0.id))
    });
    out
}

/// The full plan: rules, then object lock for what the rules would delete.
async fn full_plan(
    remote: &Remote,
    args: &args::Prune,
    now: i64,
) -> Result<Vec<(Version, Option<String>)>, Error> {
    let rules = Rules::from_args(args)?;
    let sub = args.prefix.as_deref().map(expand).unwrap_or_default();
    let sub = sub.trim_matches('/');
    let prefix = match (remote.prefix.is_empty(), sub.is_empty()) {
        (true, true) => String::new(),
        (true, false) => sub.to_string(),
        (false, true) => format!("{}/", remote.prefix),
        (false, false) => format!("{}/{sub}", remote.prefix),
    };
    let versions = list_versions(remote, &prefix).await?;
    let mut decisions = plan(&versions, &rules, now);
    if decisions.iter().any(|d| d.1.is_none()) && lock_possible(remote).await? {
        for d in decisions.iter_mut().filter(|d| d.1.is_none()) {
            d.1 = lock_reason(remote, &d.0, now).await?;
        }
    }
    Ok(decisions)
}

fn describe_line(v: &Version, keep: &Option<String>, dry: bool) -> String {
    let what = if v.delete_marker {
        "delete marker"
    } else {
        "version"
    };
    let verb = |d: &str, k: &str| if dry { d.to_string() } else { k.to_string() };
    match keep {
        None => format!(
            "{} {} {what} {} (written {})",
            verb("would delete", "delete"),
            v.key,
            v.id,
            crate::time::rfc3339(v.time)
        ),
        Some(why) => format!(
            "{} {} {what} {}: {why}",
            verb("would keep", "keep"),
            v.key,
            v.id
        ),
    }
}

/// `prune` of objects: `target`, `prefix` (optional, under the target's prefix),
/// `retention` (e.g. `35d`), optional `keep_daily` / `keep_weekly` / `keep_monthly`
/// counts, `expire_latest` (default false) and `dry_run`. Deletes the object versions that
/// [`plan`] gives up, except any under a legal hold or an object lock retention whose
/// retain-until date is in the future (checked per version with GetObjectLegalHold and
/// GetObjectRetention). Each deletion is one request for one version id; the ones that
/// fail are named and fail the step after the others were tried.
pub fn prune(args: &args::Prune, cx: &mut Context<'_>) -> Result<Output, Error> {
    let remote = Remote::connect(required(args.target.as_deref(), "target")?, cx.targets)?;
    let dry = args.dry_run.unwrap_or(false);
    let now = crate::time::now();
    let decisions = remote.rt.block_on(full_plan(&remote, args, now))?;
    let mut out = Output::default();
    let mut deleted = 0usize;
    let mut failed = Vec::new();
    for (v, keep) in &decisions {
        let line = describe_line(v, keep, dry);
        if keep.is_some() || dry {
            let _ = writeln!(cx.log, "{line}");
            if dry && keep.is_none() {
                out.verification.push(format!("ok: {line}"));
            }
            continue;
        }
        let r = remote.rt.block_on(
            remote
                .client
                .delete_object()
                .bucket(&remote.bucket)
                .key(&v.key)
                .version_id(&v.id)
                .send(),
        );
        match r {
            Ok(_) => {
                deleted += 1;
                let _ = writeln!(cx.log, "deleted {} version {}", v.key, v.id);
                out.verification
                    .push(format!("ok: deleted {} version {}", v.key, v.id));
            }
            Err(e) => {
                let msg = format!("{} version {}: {}", v.key, v.id, remote.explain(&e));
                let _ = writeln!(cx.log, "FAILED to delete {}", remote.mask(&msg));
                failed.push(remote.mask(&msg));
            }
        }
    }
    let kept = decisions.iter().filter(|d| d.1.is_some()).count();
    if !failed.is_empty() {
        return Err(Error::Failed(format!(
            "{} of {} deletions failed ({deleted} done): {}",
            failed.len(),
            failed.len() + deleted,
            failed.join("; ")
        )));
    }
    out.verification.push(if dry {
        format!(
            "ok: dry run: {} would be deleted, {kept} kept",
            decisions.len() - kept
        )
    } else {
        format!("ok: {kept} kept, {deleted} deleted")
    });
    Ok(out)
}

/// For `--dry-run`: one line per object version, what `prune` would do with it ("would
/// delete KEY version V (written ...)", "would keep KEY version V: legal hold", ...).
/// Reads the bucket; deletes nothing.
pub fn describe_prune(
    args: &args::Prune,
    targets: &BTreeMap<String, crate::config::Target>,
) -> Result<Vec<String>, Error> {
    let remote = Remote::connect(required(args.target.as_deref(), "target")?, targets)?;
    let now = crate::time::now();
    let decisions = remote.rt.block_on(full_plan(&remote, args, now))?;
    Ok(decisions
        .iter()
        .map(|(v, keep)| describe_line(v, keep, true))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 86_400;

    fn v(key: &str, id: &str, age_days: i64, latest: bool, now: i64) -> Version {
        Version {
            key: key.into(),
            id: id.into(),
            time: now - age_days * DAY,
            latest,
            delete_marker: false,
        }
    }

    fn rules(retention: &str) -> Rules {
        Rules {
            retention: retention.parse().unwrap(),
            keep_daily: 0,
            keep_weekly: 0,
            keep_monthly: 0,
            expire_latest: false,
        }
    }

    fn deleted(p: &[(Version, Option<String>)]) -> Vec<String> {
        p.iter()
            .filter(|d| d.1.is_none())
            .map(|d| d.0.id.clone())
            .collect()
    }

    #[test]
    fn prune_keeps_the_latest_version_and_recent_ones() {
        let now = 1_800_000_000;
        let versions = vec![
            v("db/dump.sql", "v4", 1, true, now),
            v("db/dump.sql", "v3", 10, false, now),
            v("db/dump.sql", "v2", 40, false, now),
            v("db/dump.sql", "v1", 100, false, now),
            // A key written once, long ago: its only version is its latest.
            v("db/old.sql", "o1", 400, true, now),
        ];
        let p = plan(&versions, &rules("35d"), now);
        assert_eq!(deleted(&p), ["v2", "v1"]);
        let why = |id: &str| p.iter().find(|d| d.0.id == id).unwrap().1.clone().unwrap();
        assert_eq!(why("o1"), "latest version of the key");
        assert_eq!(why("v3"), "within retention 35d");
    }

    #[test]
    fn expire_latest_prunes_old_keys_but_never_the_newest_backup() {
        let now = 1_800_000_000;
        let mut r = rules("35d");
        r.expire_latest = true;
        // Every backup a key of its own, and the job stopped 50 days ago.
        let versions = vec![
            v("b/2026-01-01", "a", 50, true, now),
            v("b/2025-12-01", "b", 80, true, now),
            v("b/2025-11-01", "c", 110, true, now),
        ];
        let p = plan(&versions, &r, now);
        assert_eq!(deleted(&p), ["c", "b"]);
        assert!(p.iter().any(|d| d.0.id == "a" && d.1.is_some()));
    }

    #[test]
    fn keep_rules_keep_the_newest_of_each_period_and_markers_stay() {
        let now = 1_800_000_000; // 2027-01-15T08:00:00Z
        let mut versions: Vec<Version> = (0..12)
            .map(|i| v("k", &format!("v{i:02}"), 40 + i, i == 0, now))
            .collect();
        versions[0].latest = false;
        versions.push(Version {
            key: "k".into(),
            id: "dm".into(),
            time: now - 30 * DAY,
            latest: true,
            delete_marker: true,
        });
        let mut r = rules("35d");
        r.keep_daily = 3;
        let p = plan(&versions, &r, now);
        let kept: Vec<&str> = p
            .iter()
            .filter(|d| d.1.is_some())
            .map(|d| d.0.id.as_str())
            .collect();
        // The delete marker, the newest object version, and the newest of 3 days (the
        // newest version's own day counts first).
        assert!(kept.contains(&"dm"), "{kept:?}");
        assert!(kept.contains(&"v00") && kept.contains(&"v01") && kept.contains(&"v02"));
        assert_eq!(kept.len(), 4, "{p:?}");
        assert_eq!(deleted(&p).len(), 9);
    }
}
