//! YAML front matter: finding it, parsing it with budgets (alias bombs and huge blocks are
//! refused), and turning parser positions into spans of the `.md` file so that a type error
//! on line 3 of the YAML is reported on line 4 of the SOP.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_saphyr::Spanned;

use crate::duration::Duration;
use crate::source::{SourceFile, Span};

/// Front matter larger than this is refused before parsing.
pub const MAX_FRONT_MATTER: usize = 256 * 1024;

/// Where the front matter sits in a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Block {
    /// Byte range of the YAML text (between the fences).
    pub yaml: Span,
    /// 1-based line of the first YAML line.
    pub first_line: usize,
    /// Where the Markdown body starts.
    pub body_start: usize,
}

/// Finds a front matter block opened by `---` on the first line. `Err` with the span of the
/// opening fence when it is never closed.
pub fn split(text: &str) -> Result<Option<Block>, Span> {
    let start = if text.starts_with('\u{feff}') { 3 } else { 0 };
    let rest = &text[start..];
    let first_end = rest.find('\n').unwrap_or(rest.len());
    if rest[..first_end].trim_end() != "---" {
        return Ok(None);
    }
    let yaml_start = start + first_end + 1;
    if yaml_start > text.len() {
        return Err(Span::new(start, start + 3));
    }
    let mut offset = yaml_start;
    for line in text[yaml_start..].split_inclusive('\n') {
        let t = line.trim_end();
        if t == "---" || t == "..." {
            return Ok(Some(Block {
                yaml: Span::new(yaml_start, offset),
                first_line: 2,
                body_start: offset + line.len(),
            }));
        }
        offset += line.len();
    }
    Err(Span::new(start, start + 3))
}

/// A front matter block that lost its opening `---`: the file starts with `key: value` lines
/// (with lists and comments among them) closed by a `---` line, which Markdown reads as a
/// heading. The span of the first line and where the body starts (after the `---`), when the
/// text looks like that.
pub fn missing_opening(text: &str) -> Option<(Span, usize)> {
    let start = if text.starts_with('\u{feff}') { 3 } else { 0 };
    let rest = &text[start..];
    let first = rest.lines().next()?;
    let is_key = |l: &str| {
        let (key, _) = l.split_once(':')?;
        (!key.is_empty()
            && key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-'))
        .then_some(())
    };
    is_key(first)?;
    let mut offset = start;
    for (n, line) in rest.split_inclusive('\n').enumerate().take(200) {
        offset += line.len();
        if n == 0 {
            continue;
        }
        let t = line.trim_end();
        if t == "---" {
            return Some((Span::new(start, start + first.len()), offset));
        }
        let indented = line.starts_with(' ') || line.starts_with('\t');
        if !(indented || t.starts_with('#') || t.starts_with("- ") || is_key(t).is_some()) {
            return None;
        }
    }
    None
}

/// A value and where it was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Located<T> {
    pub value: T,
    pub span: Span,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    #[default]
    Draft,
    Effective,
    Retired,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Slo {
    pub step: Located<String>,
    pub every: Duration,
}

/// The typed front matter of an SOP. Missing required keys are reported by the checker;
/// the fields are optional here so that one mistake does not hide the rest.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SopMeta {
    pub id: Option<Located<String>>,
    pub title: Option<Located<String>>,
    pub status: Status,
    pub owner: Option<Located<String>>,
    pub approvers: Option<Located<Vec<Located<String>>>>,
    pub review_every: Option<Duration>,
    pub retention: Option<Duration>,
    pub slos: Vec<Slo>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct RoleMeta {
    pub id: Option<Located<String>>,
    pub title: Option<String>,
    pub acronym: Option<String>,
    pub levels: Vec<String>,
    pub reports_to: Option<Located<String>>,
}

/// A front matter problem, located in the `.md` file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub message: String,
    pub span: Span,
}

fn options() -> serde_saphyr::Options {
    let mut o = serde_saphyr::Options::default();
    o.strict_booleans = true;
    o.duplicate_keys = serde_saphyr::DuplicateKeyPolicy::Error;
    o.with_snippet = false;
    o
}

/// Parses a YAML mapping of arbitrary values (step arguments, unknown keys).
pub fn parse_yaml_mapping(yaml: &str) -> Result<BTreeMap<String, serde_json::Value>, String> {
    serde_saphyr::from_str_with_options::<BTreeMap<String, serde_json::Value>>(yaml, options())
        .map_err(|e| message_of(&e))
}

fn message_of(e: &serde_saphyr::Error) -> String {
    let text = e.without_snippet().to_string();
    // The parser appends its own position; we report positions in the .md file instead.
    let text = match text.find(" at line ") {
        Some(i) => text[..i].to_string(),
        None => text,
    };
    text.trim().to_string()
}

/// Maps YAML positions onto the containing file.
struct Locator<'a> {
    file: &'a SourceFile,
    block: Block,
}

impl Locator<'_> {
    fn span(&self, loc: &serde_saphyr::Location) -> Span {
        if loc.line() == 0 {
            return self.block.yaml;
        }
        // The parser gives byte offsets for text it parsed from a string; lines and columns
        // are the fallback (and need the file's line index).
        let start = match loc.span().byte_offset() {
            Some(b) => (self.block.yaml.start + b as usize).min(self.block.yaml.end),
            None => {
                let line = loc.line() as usize + self.block.first_line - 1;
                self.file.offset(line, loc.column() as usize)
            }
        }
        .max(self.block.yaml.start);
        let rest = &self.file.text[start..self.block.yaml.end.max(start)];
        let end = start + rest.find('\n').unwrap_or(rest.len());
        let token = self.file.text[start..end].trim_end();
        Span::new(start, start + token.len().max(1).min(end - start))
    }

    fn located<T>(&self, s: Spanned<T>) -> Located<T> {
        Located {
            span: self.span(&s.referenced),
            value: s.value,
        }
    }

    fn parse<T: DeserializeOwned>(&self, yaml: &str) -> Result<T, Problem> {
        serde_saphyr::from_str_with_options::<T>(yaml, options()).map_err(|e| Problem {
            message: message_of(&e),
            span: e.location().map_or(self.block.yaml, |l| self.span(&l)),
        })
    }
}

#[derive(Deserialize)]
struct RawSlo {
    step: Spanned<String>,
    every: Spanned<String>,
}

#[derive(Deserialize)]
struct RawSop {
    id: Option<Spanned<String>>,
    title: Option<Spanned<String>>,
    status: Option<Spanned<String>>,
    owner: Option<Spanned<String>>,
    approvers: Option<Spanned<Vec<Spanned<String>>>>,
    review_every: Option<Spanned<String>>,
    retention: Option<Spanned<String>>,
    slos: Option<Vec<RawSlo>>,
}

fn check_yaml_size(block: Block) -> Result<(), Problem> {
    let len = block.yaml.end - block.yaml.start;
    if len > MAX_FRONT_MATTER {
        return Err(Problem {
            message: format!(
                "front matter is {len} bytes, more than the limit of {MAX_FRONT_MATTER}"
            ),
            span: Span::new(block.yaml.start, block.yaml.start),
        });
    }
    Ok(())
}

/// What an SOP id may hold, said where one is refused.
pub const SOP_ID_FORM: &str = "an SOP id may hold only the letters A-Z and a-z, digits, `-`, `_` and `.`, \
     and starts with a letter or digit (approval trailers, evidence and PDF file names carry it)";

/// Whether `id` can name an SOP everywhere sopkit writes it: an approval trailer splits on
/// whitespace, and two ids must never map to one PDF file name.
pub fn is_valid_sop_id(id: &str) -> bool {
    id.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// Parses an SOP's front matter. Hard errors (syntax, types) come back as `Err`; value
/// problems (a bad duration or status) as a list beside the metadata.
pub fn parse_sop(file: &SourceFile, block: Block) -> Result<(SopMeta, Vec<Problem>), Problem> {
    check_yaml_size(block)?;
    let yaml = &file.text[block.yaml.start..block.yaml.end];
    let loc = Locator { file, block };
    if yaml.trim().is_empty() {
        return Ok((SopMeta::default(), Vec::new()));
    }
    let raw: RawSop = loc.parse(yaml)?;
    let mut problems = Vec::new();
    let mut duration = |v: Option<Spanned<String>>, key: &str| -> Option<Duration> {
        let v = loc.located(v?);
        match v.value.parse::<Duration>() {
            Ok(d) => Some(d),
            Err(e) => {
                problems.push(Problem {
                    message: format!("{key}: {e}"),
                    span: v.span,
                });
                None
            }
        }
    };
    let review_every = duration(raw.review_every, "review_every");
    let retention = duration(raw.retention, "retention");
    let mut slos = Vec::new();
    for s in raw.slos.unwrap_or_default() {
        if let Some(every) = duration(Some(s.every), "slos.every") {
            slos.push(Slo {
                step: loc.located(s.step),
                every,
            });
        }
    }
    let status = match raw.status.map(|s| loc.located(s)) {
        None => Status::Draft,
        Some(s) => match s.value.as_str() {
            "draft" => Status::Draft,
            "effective" => Status::Effective,
            "retired" => Status::Retired,
            other => {
                problems.push(Problem {
                    message: format!("status is `{other}`, expected draft, effective or retired"),
                    span: s.span,
                });
                Status::Draft
            }
        },
    };
    let id = raw.id.map(|v| loc.located(v));
    if let Some(id) = id.as_ref().filter(|id| !is_valid_sop_id(&id.value)) {
        problems.push(Problem {
            message: format!("id `{}`: {SOP_ID_FORM}", id.value),
            span: id.span,
        });
    }
    let meta = SopMeta {
        id,
        title: raw.title.map(|v| loc.located(v)),
        status,
        owner: raw.owner.map(|v| loc.located(v)),
        approvers: raw.approvers.map(|a| {
            let span = loc.span(&a.referenced);
            Located {
                value: a.value.into_iter().map(|r| loc.located(r)).collect(),
                span,
            }
        }),
        review_every,
        retention,
        slos,
    };
    Ok((meta, problems))
}

/// Every key of a front matter block, known or not, as plain data (for templates). Parsed on
/// demand: checking needs only the typed keys.
pub fn values(
    file: &SourceFile,
    block: Block,
) -> Result<BTreeMap<String, serde_json::Value>, Problem> {
    check_yaml_size(block)?;
    let yaml = &file.text[block.yaml.start..block.yaml.end];
    if yaml.trim().is_empty() {
        return Ok(BTreeMap::new());
    }
    Locator { file, block }.parse(yaml)
}

#[derive(Deserialize)]
struct RawRole {
    id: Option<Spanned<String>>,
    title: Option<String>,
    acronym: Option<String>,
    #[serde(default)]
    levels: Vec<String>,
    reports_to: Option<Spanned<String>>,
}

pub fn parse_role(file: &SourceFile, block: Block) -> Result<RoleMeta, Problem> {
    check_yaml_size(block)?;
    let yaml = &file.text[block.yaml.start..block.yaml.end];
    if yaml.trim().is_empty() {
        return Ok(RoleMeta::default());
    }
    let loc = Locator { file, block };
    let raw: RawRole = loc.parse(yaml)?;
    Ok(RoleMeta {
        id: raw.id.map(|v| loc.located(v)),
        title: raw.title,
        acronym: raw.acronym,
        levels: raw.levels,
        reports_to: raw.reports_to.map(|v| loc.located(v)),
    })
}

/// Parses a whole YAML file (people.yaml) into `T`, with problems located in that file.
pub fn parse_file<T: DeserializeOwned>(file: &SourceFile) -> Result<T, Problem> {
    let block = Block {
        yaml: Span::new(0, file.text.len()),
        first_line: 1,
        body_start: file.text.len(),
    };
    check_yaml_size(block)?;
    Locator { file, block }.parse(&file.text)
}

/// Converts a `Spanned` value of a whole-file parse into a located value.
pub fn locate_in_file<T>(file: &SourceFile, s: Spanned<T>) -> Located<T> {
    let block = Block {
        yaml: Span::new(0, file.text.len()),
        first_line: 1,
        body_start: file.text.len(),
    };
    Locator { file, block }.located(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn front_matter_without_its_opening_fence_is_recognised() {
        let lost = "id: QA-1\ntitle: Demo\napprovers:\n  - qa-lead\n# a comment\n---\n\n# Demo\n";
        assert_eq!(
            missing_opening(lost),
            Some((Span::new(0, 8), lost.find("\n\n# Demo").unwrap() + 1))
        );
        // Prose that happens to hold a colon, a table, a real heading: not front matter.
        assert_eq!(
            missing_opening("Note: read this.\nThen go on.\n---\n"),
            None
        );
        assert_eq!(missing_opening("# Title\n\nkey: value\n---\n"), None);
        assert_eq!(missing_opening("id: QA-1\ntitle: no closing fence\n"), None);
        assert_eq!(missing_opening("---\nid: QA-1\n---\n"), None);
    }

    fn sop(text: &str) -> (SourceFile, Result<(SopMeta, Vec<Problem>), Problem>) {
        let f = SourceFile::new("p.md", text);
        let block = split(&f.text).unwrap().unwrap();
        let r = parse_sop(&f, block);
        (f, r)
    }

    #[test]
    fn splits() {
        assert_eq!(split("# x\n").unwrap(), None);
        let b = split("---\nid: a\n---\n# T\n").unwrap().unwrap();
        assert_eq!(b.yaml, Span::new(4, 10));
        assert_eq!(b.body_start, 14);
        assert!(split("---\nid: a\n").is_err());
        assert!(split("---").is_err());
    }

    #[test]
    fn parses_and_keeps_unknown_keys() {
        let (_, r) = sop(
            "---\nid: IT-1\ntitle: T\nowner: o\napprovers: [a, b]\nreview_every: 365d\nslos:\n  - { step: s, every: 1d }\ncustom: { x: 1 }\n---\n",
        );
        let (m, problems) = r.unwrap();
        assert!(problems.is_empty());
        assert_eq!(m.id.unwrap().value, "IT-1");
        assert_eq!(m.approvers.unwrap().value.len(), 2);
        assert_eq!(m.slos[0].every.seconds, 86_400);
        let f = SourceFile::new("p.md", "---\nid: a\ncustom: { x: 1 }\n---\n");
        let values = values(&f, split(&f.text).unwrap().unwrap()).unwrap();
        assert_eq!(values["custom"]["x"], serde_json::json!(1));
    }

    #[test]
    fn values_are_located_on_their_own_bytes() {
        // Multi-byte characters before a value, in a flow sequence and in an SLO.
        let text = "---\ntitle: \"Sicherung für Äpfel\"\nowner: it-lead\napprovers: [qa, \"é\"]\nslos:\n  - { step: dump, every: 1d }\n---\n";
        let (f, r) = sop(text);
        let (m, problems) = r.unwrap();
        assert!(problems.is_empty(), "{problems:?}");
        // A span runs from the value to the end of its line.
        let at = |s: Span| &f.text[s.start..s.end];
        assert_eq!(at(m.owner.unwrap().span), "it-lead");
        let approvers = m.approvers.unwrap();
        assert_eq!(at(approvers.value[0].span), "qa, \"é\"]");
        assert_eq!(at(approvers.value[1].span), "\"é\"]");
        assert_eq!(at(m.slos[0].step.span), "dump, every: 1d }");
        // The same positions as the line and column the parser reports.
        assert_eq!(f.position(m.slos[0].step.span.start).line, 6);
    }

    #[test]
    fn type_error_is_located_in_the_md_file() {
        let (f, r) = sop("---\nid: IT-1\ntitle: T\napprovers: 5\n---\n");
        let p = r.unwrap_err();
        let pos = f.position(p.span.start);
        assert_eq!((pos.line, pos.column), (4, 12), "{p:?}");
    }

    #[test]
    fn syntax_error_is_located() {
        let (f, r) = sop("---\nid: IT-1\ntitle: [unclosed\nowner: x\n---\n");
        let p = r.unwrap_err();
        assert!(f.position(p.span.start).line >= 3, "{p:?}");
    }

    #[test]
    fn bad_values_are_problems_not_errors() {
        let (f, r) = sop("---\nid: IT-1\nstatus: live\nreview_every: yearly\n---\n");
        let (_, problems) = r.unwrap();
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert_eq!(f.position(problems[0].span.start).line, 4);
        assert_eq!(f.position(problems[1].span.start).line, 3);
    }

    #[test]
    fn alias_bomb_is_refused_quickly() {
        let mut y = String::from("---\na0: &a0 [x, x, x, x, x, x, x, x, x]\n");
        for i in 1..9 {
            let p = i - 1;
            y.push_str(&format!(
                "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
            ));
        }
        y.push_str("---\n");
        let (_, r) = sop(&y);
        let p = r.unwrap_err();
        assert!(p.message.contains("budget"), "{p:?}");
    }

    #[test]
    fn duplicate_keys_are_errors() {
        let (_, r) = sop("---\nid: a\nid: b\n---\n");
        assert!(r.is_err());
    }
}
