//! Where a link points: a Markdown link destination written in one file, resolved to a path
//! in the repository (through `[links]` routes and the web root for `/…` links), a fragment
//! of the same document, or something outside (a URL, `..` past the root). Resolution is
//! data that `check`, `render`, `roles` and `status` all read; judging it is `check`'s.

use std::sync::LazyLock;

use percent_encoding::percent_decode_str;
use regex::Regex;

use super::Corpus;
use crate::tree;

/// Where a link destination points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A URL with a scheme (`https:`, `mailto:` …) or a protocol-relative `//host` URL.
    External,
    Empty,
    /// `#fragment` in the same document.
    SameDocument {
        fragment: String,
    },
    /// A path in the repository (normalised, no leading `/`).
    Path {
        path: String,
        fragment: Option<String>,
        trailing_slash: bool,
    },
    /// `..` segments leave the repository.
    Outside,
}

static SCHEME: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[A-Za-z][A-Za-z0-9+.\-]*:").expect("static regex"));
pub(crate) fn decode(s: &str) -> String {
    percent_decode_str(s).decode_utf8_lossy().into_owned()
}

/// Resolves a link destination written in `from` (a repository path).
pub fn resolve(corpus: &Corpus, from: &str, dest: &str) -> Target {
    let dest = dest.trim();
    if dest.is_empty() {
        return Target::Empty;
    }
    if let Some(frag) = dest.strip_prefix('#') {
        return Target::SameDocument {
            fragment: decode(frag),
        };
    }
    if dest.starts_with("//") || SCHEME.is_match(dest) {
        return Target::External;
    }
    let (rest, fragment) = match dest.split_once('#') {
        Some((p, f)) => (p, Some(decode(f))),
        None => (dest, None),
    };
    let rest = rest.split_once('?').map_or(rest, |(p, _)| p);
    let path = decode(rest);
    if path.is_empty() {
        return Target::SameDocument {
            fragment: fragment.unwrap_or_default(),
        };
    }
    let mut trailing_slash = path.ends_with('/');
    let joined = if let Some(rooted) = path.strip_prefix('/') {
        let (p, via_route) = rooted_path(corpus, rooted);
        trailing_slash &= !via_route;
        p
    } else {
        format!("{}/{}", tree::parent_of(from), path)
    };
    match tree::normalize(&joined) {
        Some(path) => Target::Path {
            path,
            fragment,
            trailing_slash,
        },
        None => Target::Outside,
    }
}

/// A path that starts with `/`: a configured web route, then the web root, then the
/// repository root. The flag tells whether a route answered.
fn rooted_path(corpus: &Corpus, rooted: &str) -> (String, bool) {
    let links = &corpus.config.links;
    let with_slash = format!("/{rooted}");
    for (route, file) in &links.routes {
        if with_slash == *route || with_slash.trim_end_matches('/') == route.trim_end_matches('/') {
            return (file.clone(), true);
        }
        if route.ends_with('/')
            && let Some(rest) = with_slash.strip_prefix(route.as_str())
        {
            return (format!("{}/{rest}", file.trim_end_matches('/')), true);
        }
    }
    if let Some(root) = &links.web_root {
        let candidate = format!("{}/{rooted}", root.trim_matches('/'));
        if let Some(n) = tree::normalize(&candidate)
            && corpus.tree.kind(&n).is_some()
        {
            return (n, false);
        }
    }
    (rooted.to_string(), false)
}
