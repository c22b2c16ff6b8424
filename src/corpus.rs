//! [`Corpus`]: a repository parsed once into plain data. Every command reads this; none
//! re-parses Markdown. Loading never fails because of what authors wrote: problems found
//! while parsing become [`Diagnostic`]s in [`Corpus::problems`].

pub mod front_matter;
pub mod links;
pub mod markdown;
pub mod people;
pub mod slug;
pub mod step;
pub mod terms;

use std::collections::BTreeMap;
use std::sync::LazyLock;

// Keys are one repository's paths and slugs: FxHash, not SipHash, whose DoS resistance
// buys nothing here and costs time on every link.
use rustc_hash::FxHashMap as HashMap;

use rayon::prelude::*;
use regex::Regex;

use crate::config::{self, Config};
use crate::diagnostic::{Diagnostic, Rule};
use crate::source::{SourceFile, Span};
use crate::tree::{self, Tree};
use front_matter::{Located, RoleMeta, SopMeta};
use markdown::Markdown;
pub use people::{Holding, Person};

/// Markdown files larger than this are not read.
pub const MAX_MARKDOWN: u64 = 10 * 1024 * 1024;

/// How the repository was understood.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// A `sopkit.toml` exists.
    Configured,
    /// No `sopkit.toml`, but the default `procedures/` folder exists.
    DefaultLayout,
    /// Neither: every Markdown file is checked like a link checker would.
    ZeroConfig,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DocKind {
    Sop,
    Glossary,
    Role,
    Other,
}

#[derive(Debug)]
pub struct Document {
    pub file: SourceFile,
    pub kind: DocKind,
    pub markdown: Markdown,
    pub body_start: usize,
    /// SOP front matter (also for SOPs without any: then everything is `None`).
    pub sop: Option<SopMeta>,
    pub role: Option<RoleMeta>,
    /// Whether the file had a front matter block at all.
    pub has_front_matter: bool,
    /// Whether its front matter could not be read (already reported; later checks skip it).
    pub front_matter_error: bool,
}

impl Document {
    pub fn path(&self) -> &str {
        &self.file.path
    }
}

/// An SOP: a document in the procedures folder, with its id and title resolved (from the
/// front matter, else from the file name and first heading).
#[derive(Debug, Clone)]
pub struct Sop {
    pub doc: usize,
    pub id: String,
    pub title: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Term {
    pub name: String,
    pub acronym: Option<String>,
    pub slug: String,
    pub doc: usize,
    pub span: Span,
}

impl Term {
    /// The heading as written: `Recovery Point Objective (RPO)`.
    pub fn name_with_acronym(&self) -> String {
        match &self.acronym {
            Some(a) => format!("{} ({a})", self.name),
            None => self.name.clone(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Role {
    pub id: String,
    pub title: Option<String>,
    pub acronym: Option<String>,
    pub levels: Vec<String>,
    pub reports_to: Option<Located<String>>,
    pub path: String,
    pub doc: Option<usize>,
}

/// Why a name does not pick out one SOP.
#[derive(Debug, Clone, thiserror::Error)]
pub enum FindSop {
    #[error("no SOP `{0}` in this repository")]
    Unknown(String),
    #[error("two or more SOPs carry the id `{id}`: {}; give each a unique id, or name the file by its path", paths.join(" and "))]
    Ambiguous { id: String, paths: Vec<String> },
}

#[derive(Debug)]
pub struct Corpus {
    pub config: Config,
    pub mode: Mode,
    pub tree: Tree,
    pub docs: Vec<Document>,
    doc_index: HashMap<String, usize>,
    pub sops: Vec<Sop>,
    pub terms: Vec<Term>,
    /// Glossary document → heading slug → index into `terms`.
    term_index: HashMap<usize, HashMap<String, usize>>,
    pub roles: BTreeMap<String, Role>,
    pub people: Vec<Person>,
    /// people.yaml, when it exists (for locating findings in it).
    pub people_file: Option<SourceFile>,
    pub config_file: Option<SourceFile>,
    /// False when sopkit.toml could not be parsed (defaults are used; target checks are skipped).
    pub config_valid: bool,
    pub problems: Vec<Diagnostic>,
}

fn is_markdown(path: &str) -> bool {
    let lower = path.to_ascii_lowercase();
    lower.ends_with(".md") || lower.ends_with(".markdown")
}

fn file_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

fn is_index(path: &str) -> bool {
    let name = file_name(path).to_ascii_lowercase();
    let stem = name
        .rsplit_once('.')
        .map_or(name.as_str(), |(stem, _)| stem);
    is_markdown(&name) && matches!(stem, "readme" | "index")
}

/// Whether `path` is an SOP file under the procedures folder `procedures`: the one answer
/// that the corpus and the approval history both use.
pub fn is_sop_path(path: &str, procedures: &str) -> bool {
    is_markdown(path) && under(path, procedures) && !is_index(path)
}

/// Whether `path` is `base` or lies below it.
pub fn under(path: &str, base: &str) -> bool {
    let base = base.trim_matches('/');
    base.is_empty()
        || path == base
        || (path.starts_with(base) && path.as_bytes().get(base.len()) == Some(&b'/'))
}

static ID_FROM_NAME: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^([A-Za-z][A-Za-z0-9]*-\d+)").expect("static regex"));
static ACRONYM: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^(.+?)\s*\(([^()\s]+)\)$").expect("static regex"));

/// The id an SOP gets from its file name (`IT-245-System Backup.md` → `IT-245`).
/// The SOP id a file name carries (`IT-245-Backup.md` → `IT-245`), if it carries one.
pub fn id_in_file_name(path: &str) -> Option<String> {
    let name = file_name(path);
    let stem = name.rsplit_once('.').map_or(name, |(s, _)| s);
    ID_FROM_NAME.captures(stem).map(|c| c[1].to_string())
}

pub fn id_from_file_name(path: &str) -> String {
    let name = file_name(path);
    let stem = name.rsplit_once('.').map_or(name, |(s, _)| s);
    ID_FROM_NAME
        .captures(stem)
        .map_or_else(|| stem.to_string(), |c| c[1].to_string())
}

fn decode(path: &str, bytes: Vec<u8>, problems: &mut Vec<Diagnostic>) -> Option<String> {
    match String::from_utf8(bytes) {
        Ok(s) => Some(s),
        Err(e) => {
            let at = e.utf8_error().valid_up_to();
            problems.push(Diagnostic::new(
                Rule::InvalidEncoding,
                path,
                None,
                format!("{path} is not valid UTF-8 (first bad byte at offset {at})"),
            ));
            None
        }
    }
}

fn read_text(
    tree: &Tree,
    path: &str,
    limit: u64,
    problems: &mut Vec<Diagnostic>,
) -> Option<String> {
    match tree.read(path, limit) {
        Ok(bytes) => decode(path, bytes, problems),
        Err(tree::Error::TooLarge { size, limit, .. }) => {
            problems.push(Diagnostic::new(
                Rule::FileTooLarge,
                path,
                None,
                format!("{path} is {size} bytes; sopkit reads files of at most {limit} bytes"),
            ));
            None
        }
        // Never skipped in silence: an SOP that cannot be read would otherwise go unchecked.
        Err(e) => {
            let why = match e {
                tree::Error::Io { source, .. } => source.to_string(),
                other => other.to_string(),
            };
            problems.push(Diagnostic::new(
                Rule::UnreadableFile,
                path,
                None,
                format!("{path} could not be read: {why}"),
            ));
            None
        }
    }
}

impl Corpus {
    /// Reads and parses everything in `tree`.
    /// Reads every Markdown file, the config and the people of `tree` into a corpus. Nothing
    /// here fails: what cannot be read is a finding in [`Corpus::problems`].
    pub fn read(tree: Tree) -> Corpus {
        let mut problems = escape_findings(&tree);

        let (config, config_file, mode, config_valid) = read_config(&tree, &mut problems);

        let exclude = excluded(&tree, &config, &mut problems);

        let paths = &config.paths;
        let docs = parse_documents(&tree, &config, mode, &exclude, &mut problems);
        let doc_index = docs
            .iter()
            .enumerate()
            .map(|(i, d)| (d.file.path.clone(), i))
            .collect();

        let sops = sops_of(&docs);

        let (terms, term_index) = collect_terms(&docs);
        let roles = collect_roles(&tree, &config, &docs, &mut problems);

        let (people, people_file) = if mode != Mode::ZeroConfig && tree.is_file(&paths.people) {
            let text = read_text(&tree, &paths.people, 1 << 20, &mut problems).unwrap_or_default();
            let file = SourceFile::new(paths.people.clone(), text);
            let people = people::parse(&file, &mut problems);
            (people, Some(file))
        } else {
            (Vec::new(), None)
        };

        Corpus {
            config,
            mode,
            tree,
            docs,
            doc_index,
            sops,
            terms,
            term_index,
            roles,
            people,
            people_file,
            config_file,
            config_valid,
            problems,
        }
    }

    pub fn doc(&self, path: &str) -> Option<&Document> {
        self.doc_index.get(path).map(|&i| &self.docs[i])
    }

    pub fn doc_id(&self, path: &str) -> Option<usize> {
        self.doc_index.get(path).copied()
    }

    /// The index (into [`Corpus::terms`]) of the term defined by heading `slug` in glossary
    /// document `doc`.
    pub fn term_index_at(&self, doc: usize, slug: &str) -> Option<usize> {
        self.term_index.get(&doc)?.get(slug).copied()
    }

    /// The one SOP named by an id or a repository path. Two SOPs carrying one id are never
    /// resolved to either: signing or running "the other file" must not happen silently.
    pub fn find_sop(&self, name: &str) -> Result<&Sop, FindSop> {
        self.find_sop_index(name).map(|i| &self.sops[i])
    }

    /// [`Corpus::find_sop`], as an index into [`Corpus::sops`]: the one way every command
    /// finds an SOP. A path matches whole, or as the end of an SOP's path (`IT-245.md` for
    /// `procedures/IT-245.md`) where no SOP has that text as its id.
    pub fn find_sop_index(&self, name: &str) -> Result<usize, FindSop> {
        let wanted = name.trim_start_matches("./").replace('\\', "/");
        let path_of = |s: &Sop| self.docs[s.doc].path();
        if let Some(i) = self.sops.iter().position(|s| path_of(s) == wanted) {
            return Ok(i);
        }
        let found: Vec<usize> = (0..self.sops.len())
            .filter(|&i| self.sops[i].id == name)
            .collect();
        match found.as_slice() {
            [] => {
                let suffix = format!("/{wanted}");
                self.sops
                    .iter()
                    .position(|s| path_of(s).ends_with(&suffix))
                    .ok_or_else(|| FindSop::Unknown(name.to_string()))
            }
            [one] => Ok(*one),
            many => Err(FindSop::Ambiguous {
                id: name.to_string(),
                paths: many
                    .iter()
                    .map(|&i| path_of(&self.sops[i]).to_string())
                    .collect(),
            }),
        }
    }

    /// The text of a file the corpus read (for printing snippets).
    pub fn source(&self, path: &str) -> Option<&SourceFile> {
        if let Some(d) = self.doc(path) {
            return Some(&d.file);
        }
        [self.people_file.as_ref(), self.config_file.as_ref()]
            .into_iter()
            .flatten()
            .find(|f| f.path == path)
    }
}

/// A finding for each symbolic link that is not followed (dangling, or out of the tree).
fn escape_findings(tree: &Tree) -> Vec<Diagnostic> {
    let mut problems = Vec::new();
    for e in tree.escapes() {
        let (rule, what) = if e.dangling {
            (
                Rule::BrokenSymlink,
                "which does not resolve (missing, or a loop)",
            )
        } else {
            (Rule::SymlinkOutsideRepository, "outside the repository")
        };
        problems.push(Diagnostic::new(
            rule,
            &e.path,
            None,
            format!(
                "{} is a symbolic link to `{}`, {what}; it is not followed",
                e.path, e.target
            ),
        ));
    }
    problems
}

/// `sopkit.toml` (or the defaults) and the mode it puts the corpus in; whether it parsed.
fn read_config(
    tree: &Tree,
    problems: &mut Vec<Diagnostic>,
) -> (Config, Option<SourceFile>, Mode, bool) {
    if tree.is_file(config::FILE_NAME) {
        let text = read_text(tree, config::FILE_NAME, 1 << 20, problems).unwrap_or_default();
        let file = SourceFile::new(config::FILE_NAME, text);
        let (cfg, p) = Config::parse(&file);
        let valid = cfg.is_some();
        problems.extend(p);
        (cfg.unwrap_or_default(), Some(file), Mode::Configured, valid)
    } else if tree.is_dir(&Config::default().paths.procedures) {
        (Config::default(), None, Mode::DefaultLayout, true)
    } else {
        (Config::default(), None, Mode::ZeroConfig, true)
    }
}

/// The `[links] exclude` globs (an invalid one is a finding), and a finding for each file or
/// folder that could not be read and is not excluded.
fn excluded(tree: &Tree, config: &Config, problems: &mut Vec<Diagnostic>) -> globset::GlobSet {
    let exclude = {
        let mut b = globset::GlobSetBuilder::new();
        for pat in &config.links.exclude {
            match globset::Glob::new(pat) {
                Ok(g) => {
                    b.add(g);
                }
                Err(e) => problems.push(Diagnostic::new(
                    Rule::InvalidConfig,
                    config::FILE_NAME,
                    None,
                    format!("links.exclude: `{pat}` is not a valid glob: {e}"),
                )),
            }
        }
        b.build().unwrap_or_else(|_| globset::GlobSet::empty())
    };
    for u in tree
        .unreadable()
        .iter()
        .filter(|u| !exclude.is_match(&u.path))
    {
        problems.push(Diagnostic::new(
            Rule::UnreadableFile,
            &u.path,
            None,
            if u.folder {
                format!(
                    "the folder {} could not be read: {}; nothing in it was checked",
                    u.path, u.reason
                )
            } else {
                format!("{} could not be read: {}", u.path, u.reason)
            },
        ));
    }
    exclude
}

/// Every Markdown file the corpus reads, parsed in parallel, as the kind of document its
/// place makes it; what could not be read or parsed is a finding.
fn parse_documents(
    tree: &Tree,
    config: &Config,
    mode: Mode,
    exclude: &globset::GlobSet,
    problems: &mut Vec<Diagnostic>,
) -> Vec<Document> {
    let paths = &config.paths;
    let kind_of = |path: &str| -> DocKind {
        match mode {
            Mode::ZeroConfig => {
                if file_name(path).eq_ignore_ascii_case("glossary.md") {
                    DocKind::Glossary
                } else {
                    DocKind::Other
                }
            }
            _ if is_sop_path(path, &paths.procedures) => DocKind::Sop,
            _ if under(path, &paths.glossary) => DocKind::Glossary,
            _ if tree.is_dir(&paths.roles) && under(path, &paths.roles) && !is_index(path) => {
                DocKind::Role
            }
            _ => DocKind::Other,
        }
    };
    let md_paths: Vec<(String, DocKind)> = tree
        .files()
        .filter(|p| is_markdown(p) && !exclude.is_match(p))
        .filter(|p| mode == Mode::ZeroConfig || !under(p, &paths.templates))
        .map(|p| (p.to_string(), kind_of(p)))
        .collect();

    let parsed: Vec<(Option<Document>, Vec<Diagnostic>)> = md_paths
        .par_iter()
        .map(|(path, kind)| {
            let mut problems = Vec::new();
            let doc = read_text(tree, path, MAX_MARKDOWN, &mut problems).map(|text| {
                parse_document(SourceFile::new(path.clone(), text), *kind, &mut problems)
            });
            (doc, problems)
        })
        .collect();
    let mut docs = Vec::with_capacity(parsed.len());
    for (doc, p) in parsed {
        problems.extend(p);
        docs.extend(doc);
    }
    docs
}

/// The SOPs among `docs`: id and title from front matter, else from the file name and the
/// first heading.
fn sops_of(docs: &[Document]) -> Vec<Sop> {
    docs.iter()
        .enumerate()
        .filter(|(_, d)| d.kind == DocKind::Sop)
        .map(|(i, d)| {
            let meta = d.sop.as_ref();
            let id = meta
                .and_then(|m| m.id.as_ref())
                .map_or_else(|| id_from_file_name(d.path()), |v| v.value.clone());
            let title = meta
                .and_then(|m| m.title.as_ref())
                .map(|t| t.value.clone())
                .or_else(|| {
                    d.markdown
                        .headings
                        .first()
                        .map(|h| h.text.trim().to_string())
                })
                .unwrap_or_else(|| id.clone());
            Sop { doc: i, id, title }
        })
        .collect()
}

fn invalid_front_matter(path: &str, p: front_matter::Problem) -> Diagnostic {
    Diagnostic::new(Rule::InvalidFrontMatter, path, Some(p.span), p.message)
}

fn parse_document(file: SourceFile, kind: DocKind, problems: &mut Vec<Diagnostic>) -> Document {
    let path = file.path.clone();
    let mut front_matter_error = false;
    let (block, body_start) = match front_matter::split(&file.text) {
        Ok(Some(b)) => (Some(b), b.body_start),
        Ok(None) => match front_matter::missing_opening(&file.text) {
            // Read as front matter that could not be parsed: it is no heading of the body.
            Some((span, body_start)) => {
                front_matter_error = true;
                problems.push(
                    Diagnostic::new(
                        Rule::InvalidFrontMatter,
                        &path,
                        Some(span),
                        "this looks like front matter without its opening `---`: Markdown reads \
                         it as a heading",
                    )
                    .with_help("add a line holding only `---` above the first line"),
                );
                (None, body_start)
            }
            None => (None, 0),
        },
        Err(span) => {
            front_matter_error = true;
            problems.push(
                Diagnostic::new(
                    Rule::InvalidFrontMatter,
                    &path,
                    Some(span),
                    "front matter is opened with `---` but never closed",
                )
                .with_help("close the front matter with a line that holds only `---`"),
            );
            (None, 0)
        }
    };
    let mut sop = None;
    let mut role = None;
    if let Some(block) = block {
        match kind {
            DocKind::Sop => match front_matter::parse_sop(&file, block) {
                Ok((meta, ps)) => {
                    problems.extend(ps.into_iter().map(|p| invalid_front_matter(&path, p)));
                    sop = Some(meta);
                }
                Err(p) => {
                    problems.push(invalid_front_matter(&path, p));
                    front_matter_error = true;
                }
            },
            DocKind::Role => match front_matter::parse_role(&file, block) {
                Ok(meta) => role = Some(meta),
                Err(p) => {
                    problems.push(invalid_front_matter(&path, p));
                    front_matter_error = true;
                }
            },
            _ => {
                // Other documents may carry any front matter; it only has to be valid YAML.
                let yaml = &file.text[block.yaml.start..block.yaml.end];
                if !yaml.trim().is_empty()
                    && let Err(msg) = front_matter::parse_yaml_mapping(yaml)
                {
                    problems.push(Diagnostic::new(
                        Rule::InvalidFrontMatter,
                        &path,
                        Some(block.yaml),
                        msg,
                    ));
                }
            }
        }
    }
    let markdown = markdown::parse(&file.text, body_start);
    Document {
        file,
        kind,
        markdown,
        body_start,
        sop,
        role,
        has_front_matter: block.is_some(),
        front_matter_error,
    }
}

fn collect_terms(docs: &[Document]) -> (Vec<Term>, HashMap<usize, HashMap<String, usize>>) {
    let mut terms = Vec::new();
    let mut index: HashMap<usize, HashMap<String, usize>> = HashMap::default();
    for (i, d) in docs
        .iter()
        .enumerate()
        .filter(|(_, d)| d.kind == DocKind::Glossary)
    {
        let has_title = d.markdown.headings.iter().any(|h| h.level == 1);
        for h in &d.markdown.headings {
            if !h.has_body || (has_title && h.level == 1) {
                continue;
            }
            let text = h.text.trim();
            let (name, acronym) = match ACRONYM.captures(text) {
                Some(c) => (c[1].to_string(), Some(c[2].to_string())),
                None => (text.to_string(), None),
            };
            index
                .entry(i)
                .or_default()
                .insert(h.slug.clone(), terms.len());
            terms.push(Term {
                name,
                acronym,
                slug: h.slug.clone(),
                doc: i,
                span: h.span,
            });
        }
    }
    (terms, index)
}

fn collect_roles(
    tree: &Tree,
    config: &Config,
    docs: &[Document],
    problems: &mut Vec<Diagnostic>,
) -> BTreeMap<String, Role> {
    let mut roles = BTreeMap::new();
    let roles_path = &config.paths.roles;
    if tree.is_file(roles_path) {
        // One file with a heading per role: the heading's slug is the role id.
        if let Some((i, d)) = docs
            .iter()
            .enumerate()
            .find(|(_, d)| d.path() == roles_path)
        {
            for h in d.markdown.headings.iter().filter(|h| h.level >= 2) {
                roles.insert(
                    h.slug.clone(),
                    Role {
                        id: h.slug.clone(),
                        title: Some(h.text.trim().to_string()),
                        acronym: None,
                        levels: Vec::new(),
                        reports_to: None,
                        path: roles_path.clone(),
                        doc: Some(i),
                    },
                );
            }
        }
        return roles;
    }
    for (i, d) in docs
        .iter()
        .enumerate()
        .filter(|(_, d)| d.kind == DocKind::Role)
    {
        let stem = file_name(d.path())
            .rsplit_once('.')
            .map_or(file_name(d.path()), |(s, _)| s)
            .to_string();
        let meta = d.role.clone().unwrap_or_default();
        if let Some(id) = &meta.id
            && id.value != stem
        {
            problems.push(
                Diagnostic::new(
                    Rule::InvalidFrontMatter,
                    d.path(),
                    Some(id.span),
                    format!("role id `{}` differs from the file name `{stem}`", id.value),
                )
                .with_help(format!(
                    "rename the file to `{}.md` or set `id: {stem}`",
                    id.value
                )),
            );
        }
        roles.insert(
            stem.clone(),
            Role {
                id: stem,
                title: meta.title.or_else(|| {
                    d.markdown
                        .headings
                        .first()
                        .map(|h| h.text.trim().to_string())
                }),
                acronym: meta.acronym,
                levels: meta.levels,
                reports_to: meta.reports_to,
                path: d.path().to_string(),
                doc: Some(i),
            },
        );
    }
    roles
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_from_file_names() {
        assert_eq!(
            id_from_file_name("qms/procedures/IT-245-System Backup and Recovery.md"),
            "IT-245"
        );
        assert_eq!(id_from_file_name("procedures/backup.md"), "backup");
    }

    #[test]
    fn under_folders() {
        assert!(under("procedures/a.md", "procedures"));
        assert!(under("procedures/a.md", "procedures/"));
        assert!(!under("procedures2/a.md", "procedures"));
        assert!(under("glossary.md", "glossary.md"));
    }
}
