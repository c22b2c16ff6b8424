//! Step blocks: fenced code blocks whose info string carries attributes in braces,
//! ```` ```sh {step=dump-db target=app-db timeout=30m env=A,B} ```` or
//! ```` ```sopkit {step=verify action=verify} ````. The block still renders as code on a forge.

pub mod args;

use std::collections::BTreeMap;

use crate::duration::Duration;
use crate::source::{SourceFile, Span};

/// Actions built into `sopkit` blocks.
pub const ACTIONS: &[&str] = &[
    "archive",
    "verify",
    "copy",
    "prune",
    "git-mirror",
    "db-dump",
    "restore-test",
    "upload",
    "restore",
];

const ATTRIBUTES: &[&str] = &["step", "target", "timeout", "env", "action", "role"];

/// A step as written in an SOP.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    pub id: String,
    /// The block's language (`sh`, `bash`, `sopkit`, ...).
    pub lang: String,
    pub action: Option<String>,
    pub target: Option<String>,
    pub timeout: Option<Duration>,
    pub env: Vec<String>,
    /// The role whose holder must run the step (`role=`): the run is signed by them.
    pub role: Option<String>,
    /// The block's code (shell script or YAML arguments).
    pub body: String,
    /// The whole fenced block.
    pub span: Span,
    /// The info string (the text after the opening fence).
    pub info_span: Span,
    /// For `sopkit` blocks: the YAML arguments.
    pub args: BTreeMap<String, serde_json::Value>,
    /// For `sopkit` blocks: the arguments read as those of the action, or why they are not.
    pub arguments: Option<Result<args::Arguments, args::ArgsError>>,
}

impl Step {
    /// Where an argument error is in the SOP file `file`: from its line and column in the
    /// block's body (line 1 follows the opening fence) to the end of the token there. A block
    /// indented in a list or quoted has its body lines at the end of the file's lines, so
    /// the column counts from where the body line starts in the file line.
    pub fn arguments_span(&self, file: &SourceFile, e: &args::ArgsError) -> Span {
        let fence_line = file.position(self.span.start).line;
        let start = file.offset(fence_line + e.line, 1).min(self.span.end);
        let rest = &file.text[start..];
        let line_text = &rest[..rest.find('\n').unwrap_or(rest.len())];
        let body_line = self
            .body
            .lines()
            .nth(e.line.saturating_sub(1))
            .unwrap_or("");
        let indent = if line_text.ends_with(body_line) {
            line_text.len() - body_line.len()
        } else {
            0
        };
        let within = &line_text[indent..];
        let at = within
            .char_indices()
            .nth(e.column.saturating_sub(1))
            .map_or(within.len(), |(i, _)| i);
        let begin = start + indent + at;
        let token = within[at..].trim_end();
        Span::new(begin, begin + token.len().max(1).min(within.len() - at))
    }
}

/// Why an info string or a step's arguments could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepError {
    pub message: String,
    pub span: Span,
}

/// Splits an info string into its language and attributes. `Ok(None)` when the block is
/// plain code (no braces).
/// A block's language and its `key=value` attributes.
pub type Info = (String, BTreeMap<String, String>);

pub fn parse_info(info: &str) -> Result<Option<Info>, String> {
    let info = info.trim();
    let Some(open) = info.find('{') else {
        return Ok(None);
    };
    let lang = info[..open].trim();
    if lang.contains(char::is_whitespace) {
        return Err(format!(
            "expected one language word before `{{`, found `{lang}`"
        ));
    }
    let rest = info[open + 1..].trim_end();
    let Some(inner) = rest.strip_suffix('}') else {
        return Err("the attribute list is not closed with `}`".into());
    };
    let mut attrs = BTreeMap::new();
    let mut chars = inner.char_indices().peekable();
    loop {
        while chars.next_if(|(_, c)| c.is_whitespace()).is_some() {}
        let Some(&(start, _)) = chars.peek() else {
            break;
        };
        let mut key_end = inner.len();
        while let Some(&(i, c)) = chars.peek() {
            if c == '=' || c.is_whitespace() {
                key_end = i;
                break;
            }
            chars.next();
        }
        let key = &inner[start..key_end.min(inner.len())];
        if chars.next_if(|(_, c)| *c == '=').is_none() {
            return Err(format!(
                "attribute `{key}` has no value: write `{key}=VALUE`"
            ));
        }
        if key.is_empty() {
            return Err("an attribute has no name before `=`".into());
        }
        let value = if chars.next_if(|(_, c)| *c == '"').is_some() {
            let mut v = String::new();
            let mut closed = false;
            while let Some((_, c)) = chars.next() {
                match c {
                    '"' => {
                        closed = true;
                        break;
                    }
                    '\\' => {
                        if let Some((_, n)) = chars.next() {
                            v.push(n);
                        }
                    }
                    c => v.push(c),
                }
            }
            if !closed {
                return Err(format!("the quoted value of `{key}` is not closed"));
            }
            v
        } else {
            let mut v = String::new();
            while let Some((_, c)) = chars.next_if(|(_, c)| !c.is_whitespace()) {
                v.push(c);
            }
            v
        };
        if !ATTRIBUTES.contains(&key) {
            return Err(format!(
                "unknown attribute `{key}` (known: {})",
                ATTRIBUTES.join(", ")
            ));
        }
        if attrs.insert(key.to_string(), value).is_some() {
            return Err(format!("attribute `{key}` is given twice"));
        }
    }
    Ok(Some((lang.to_string(), attrs)))
}

/// Whether a step id is well formed: lower-case letters, digits and `-`, starting with a
/// letter or digit.
pub fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && !id.starts_with('-')
        && id
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// Builds a [`Step`] from a fenced block. `Ok(None)` for plain code blocks.
pub fn from_block(
    info: &str,
    body: &str,
    span: Span,
    info_span: Span,
) -> Result<Option<Step>, StepError> {
    let err = |message: String| StepError {
        message,
        span: info_span,
    };
    let Some((lang, mut attrs)) = parse_info(info).map_err(err)? else {
        return Ok(None);
    };
    let id = attrs
        .remove("step")
        .ok_or_else(|| err("the step has no id: add `step=ID`".into()))?;
    if !valid_id(&id) {
        return Err(err(format!(
            "step id `{id}` must use lower-case letters, digits and `-` only"
        )));
    }
    let timeout = match attrs.remove("timeout") {
        Some(t) => Some(
            t.parse::<Duration>()
                .map_err(|e| err(format!("timeout: {e}")))?,
        ),
        None => None,
    };
    let env: Vec<String> = attrs
        .remove("env")
        .map(|e| {
            e.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect()
        })
        .unwrap_or_default();
    if let Some(bad) = env
        .iter()
        .find(|v| !v.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
    {
        return Err(err(format!(
            "env: `{bad}` is not an environment variable name"
        )));
    }
    let action = attrs.remove("action");
    let mut args = BTreeMap::new();
    let mut arguments = None;
    if lang == "sopkit" {
        let Some(a) = &action else {
            return Err(err(format!(
                "a `sopkit` block needs `action=` (one of {})",
                ACTIONS.join(", ")
            )));
        };
        if !ACTIONS.contains(&a.as_str()) {
            return Err(err(format!(
                "unknown action `{a}` (known: {})",
                ACTIONS.join(", ")
            )));
        }
        if !body.trim().is_empty() {
            args =
                crate::corpus::front_matter::parse_yaml_mapping(body).map_err(|msg| StepError {
                    message: format!("the arguments of step `{id}` are not a YAML mapping: {msg}"),
                    span,
                })?;
        }
        arguments = Some(args::Arguments::parse(a, body));
    } else if let Some(a) = &action {
        return Err(err(format!(
            "`action={a}` is only allowed in ```sopkit blocks"
        )));
    }
    Ok(Some(Step {
        id,
        lang,
        action,
        target: attrs.remove("target"),
        timeout,
        env,
        role: attrs.remove("role"),
        body: body.to_string(),
        span,
        info_span,
        args,
        arguments,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_strings() {
        let (lang, a) = parse_info("sh {step=dump-db target=app-db timeout=30m env=A,B}")
            .unwrap()
            .unwrap();
        assert_eq!(lang, "sh");
        assert_eq!(a["step"], "dump-db");
        assert_eq!(a["env"], "A,B");
        let (_, a) = parse_info(r#"sh {step=x target="with space" }"#)
            .unwrap()
            .unwrap();
        assert_eq!(a["target"], "with space");
        assert_eq!(parse_info("rust").unwrap(), None);
        for bad in [
            "sh {step=x",
            "sh {step}",
            "sh {=x}",
            "sh {step=x step=y}",
            "sh {colour=red}",
            "a b {step=x}",
            r#"sh {step="x}"#,
        ] {
            assert!(parse_info(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn steps() {
        let s = Span::new(0, 10);
        let step = from_block("sh {step=a timeout=5m env=X}", "echo", s, s)
            .unwrap()
            .unwrap();
        assert_eq!(step.timeout.unwrap().seconds, 300);
        assert_eq!(step.env, vec!["X"]);
        let step = from_block("sopkit {step=v action=verify}", "archive: a\n", s, s)
            .unwrap()
            .unwrap();
        assert_eq!(step.args["archive"], serde_json::json!("a"));
        assert!(from_block("sopkit {step=v action=explode}", "", s, s).is_err());
        assert!(from_block("sopkit {step=v}", "", s, s).is_err());
        assert!(from_block("sopkit {step=v action=verify}", "- a\n- b\n", s, s).is_err());
        assert!(from_block("sh {target=x}", "", s, s).is_err());
        assert!(from_block("sh {step=Bad_Id}", "", s, s).is_err());
        assert!(from_block("sh {step=a timeout=soon}", "", s, s).is_err());
    }
}
