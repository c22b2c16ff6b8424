//! `git-mirror`: a mirror clone kept up to date and a bundle of it, proven whole.

use std::io::Write;
use std::path::{Path, PathBuf};

use super::{Context, Error, Output, expand, io, resolve, timestamp};
use crate::corpus::step::args;

fn git(args: &[&str], cwd: Option<&Path>, log: &mut dyn Write) -> Result<String, Error> {
    let mut cmd = std::process::Command::new("git");
    cmd.args(args).env("GIT_TERMINAL_PROMPT", "0");
    if let Some(d) = cwd {
        cmd.current_dir(d);
    }
    let out = cmd.output().map_err(|e| Error::Io {
        path: PathBuf::from("git"),
        message: e.to_string(),
    })?;
    let _ = log.write_all(&out.stderr);
    if !out.status.success() {
        return Err(Error::Failed(format!(
            "git {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `git-mirror`: `url` (a git remote) or `target` (a `kind = "git"` target) and `dest` (a
/// folder): keeps a mirror clone
/// (`dest/NAME.git`, created or updated with the system `git`), writes a bundle of all its
/// refs (`dest/NAME-<UTC time>.bundle`), then proves the bundle whole by cloning it back and
/// running `git fsck --full` on the clone, and compares its refs with the mirror's (`git
/// bundle verify` alone accepts a bundle that was cut short).
pub(super) fn git_mirror(args: &args::GitMirror, cx: &mut Context<'_>) -> Result<Output, Error> {
    let url = match (&args.url, &args.target) {
        (Some(url), _) => expand(url),
        (None, Some(name)) => {
            let name = expand(name);
            let t = cx.targets.get(&name).ok_or_else(|| Error::Argument {
                name: "target",
                message: format!("`{name}` is not defined in sopkit.toml"),
            })?;
            match (&t.kind, &t.url) {
                (crate::config::TargetKind::Git, Some(u)) => u.clone(),
                _ => {
                    return Err(Error::Argument {
                        name: "target",
                        message: format!("`{name}` is not a git target with a url"),
                    });
                }
            }
        }
        (None, None) => return Err(Error::Missing("url")),
    };
    let dest = resolve(cx.root, &expand(&args.dest));
    std::fs::create_dir_all(&dest).map_err(io(&dest))?;
    let name = url
        .trim_end_matches('/')
        .rsplit(['/', ':'])
        .next()
        .unwrap_or("repo")
        .trim_end_matches(".git")
        .to_string();
    let name = if name.is_empty() {
        "repo".to_string()
    } else {
        name
    };
    let mirror = dest.join(format!("{name}.git"));
    let mirror_s = mirror.to_string_lossy().into_owned();
    if mirror.join("HEAD").is_file() {
        git(
            &["-C", &mirror_s, "remote", "update", "--prune"],
            None,
            cx.log,
        )?;
    } else {
        git(
            &["clone", "--quiet", "--mirror", "--", &url, &mirror_s],
            None,
            cx.log,
        )?;
    }
    let bundle = dest.join(format!("{name}-{}.bundle", timestamp()));
    let bundle_s = bundle.to_string_lossy().into_owned();
    git(
        &[
            "-C", &mirror_s, "bundle", "create", "--quiet", &bundle_s, "--all",
        ],
        None,
        cx.log,
    )?;
    let refs = |text: String| -> Vec<String> {
        let mut v: Vec<String> = text
            .lines()
            .filter(|l| !l.ends_with(" HEAD") && !l.contains("refs/remotes/"))
            .map(str::to_string)
            .collect();
        v.sort();
        v
    };
    let mirror_refs = refs(git(&["-C", &mirror_s, "show-ref"], None, cx.log)?);
    let scratch = tempfile::tempdir().map_err(io(Path::new("temporary folder")))?;
    let back = scratch.path().join("back");
    let back_s = back.to_string_lossy().into_owned();
    git(
        &["clone", "--quiet", "--mirror", "--", &bundle_s, &back_s],
        None,
        cx.log,
    )?;
    git(
        &["-C", &back_s, "fsck", "--full", "--no-progress"],
        None,
        cx.log,
    )?;
    let back_refs = refs(git(&["-C", &back_s, "show-ref"], None, cx.log)?);
    if back_refs != mirror_refs {
        return Err(Error::Failed(format!(
            "the bundle's refs ({}) differ from the mirror's ({})",
            back_refs.len(),
            mirror_refs.len()
        )));
    }
    let _ = writeln!(
        cx.log,
        "mirrored {url} into {}; bundle {} cloned back, fsck --full clean, {} refs match",
        mirror.display(),
        bundle.display(),
        mirror_refs.len()
    );
    Ok(Output {
        artifacts: vec![bundle],
        verification: vec![
            "ok: bundle cloned back and git fsck --full found no problem".to_string(),
            format!("ok: {} refs match the mirror", mirror_refs.len()),
        ],
        ..Output::default()
    })
}
