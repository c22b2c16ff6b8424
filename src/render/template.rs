//! minijinja templates that produce typst source. Defaults are embedded in the binary; a
//! repository overrides one by putting a file of the same name in its templates folder (read
//! from the same revision as the SOP, so an old render stays reproducible).
//!
//! Every value a template prints is escaped as typst markup unless it is already markup
//! (the converted body, term definitions); `| str` prints a value as a typst string literal.

use minijinja::value::ValueKind;
use minijinja::{Environment, Value};

use super::markup;
use crate::tree::Tree;

const DEFAULTS: &[(&str, &str)] = &[
    ("sop.typ.j2", include_str!("templates/sop.typ.j2")),
    ("index.typ.j2", include_str!("templates/index.typ.j2")),
    ("jd.typ.j2", include_str!("templates/jd.typ.j2")),
];

/// The embedded default template `name`.
pub fn default(name: &str) -> Option<&'static str> {
    DEFAULTS.iter().find(|(n, _)| *n == name).map(|(_, t)| *t)
}

/// The typst lines sopkit puts before every template's output: document metadata that
/// `verify-pdf` reads back.
pub fn prelude(title: &str, keywords: &[String]) -> String {
    let kw: Vec<String> = keywords.iter().map(|k| markup::string_literal(k)).collect();
    format!(
        "#set document(title: {}, author: \"sopkit\", keywords: ({},), date: auto)",
        markup::string_literal(title),
        kw.join(", ")
    )
}

fn format_value(out: &mut minijinja::Output, value: &Value) -> std::fmt::Result {
    if value.is_safe() {
        return out.write_str(value.as_str().unwrap_or_default());
    }
    match value.kind() {
        ValueKind::Undefined | ValueKind::None => Ok(()),
        ValueKind::Bool => out.write_str(if value.is_true() { "true" } else { "false" }),
        ValueKind::Number => out.write_str(&value.to_string()),
        _ => out.write_str(&markup::escape(&value.to_string())),
    }
}

fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
    // A template from the repository is code a reviewer may not have read closely: bound it.
    env.set_fuel(Some(50_000_000));
    env.set_formatter(|out, _state, value| {
        format_value(out, value).map_err(|_| {
            minijinja::Error::new(minijinja::ErrorKind::WriteFailure, "could not write output")
        })
    });
    env.add_filter("str", |v: Value| {
        let s = if v.is_none() || v.is_undefined() {
            String::new()
        } else {
            v.to_string()
        };
        Value::from_safe_string(markup::string_literal(&s))
    });
    env.add_filter("markup", |v: Value| {
        Value::from_safe_string(markup::escape(&v.to_string()))
    });
    env
}

/// Where a repository's template overrides come from.
#[derive(Clone, Copy)]
pub enum Overrides<'a> {
    /// The tree being read (no policy timeline: nothing is approved there anyway).
    Tree(&'a Tree),
    /// The templates the policy timeline trusts: only an admin-signed override counts, so an
    /// unsigned template cannot make a draft look effective on paper.
    Trusted(&'a std::collections::BTreeMap<String, Vec<u8>>),
}

impl Overrides<'_> {
    fn read(&self, path: &str) -> Option<Result<Vec<u8>, String>> {
        match self {
            Overrides::Tree(tree) => tree
                .is_file(path)
                .then(|| tree.read(path, 4 << 20).map_err(|e| e.to_string())),
            Overrides::Trusted(files) => files.get(path).cloned().map(Ok),
        }
    }
}

/// Renders template `name`: `<folder>/<name>` from the overrides when there is one, else the
/// default.
pub fn render(
    overrides: Overrides<'_>,
    folder: &str,
    name: &str,
    ctx: Value,
) -> Result<String, super::Error> {
    let path = format!("{}/{name}", folder.trim_end_matches('/'));
    let found = overrides.read(&path);
    let err = |message: String| super::Error::Template {
        name: if found.is_some() {
            path.clone()
        } else {
            format!("{name} (built in)")
        },
        message,
    };
    let source = match &found {
        Some(bytes) => {
            let bytes = bytes.clone().map_err(err)?;
            String::from_utf8(bytes).map_err(|_| err("is not valid UTF-8".into()))?
        }
        None => default(name)
            .ok_or_else(|| err("no such template".into()))?
            .to_string(),
    };
    let env = environment();
    let template = env
        .template_from_str(&source)
        .map_err(|e| err(describe(&e)))?;
    template.render(ctx).map_err(|e| err(describe(&e)))
}

fn describe(e: &minijinja::Error) -> String {
    match e.line() {
        Some(line) => format!("line {line}: {e}"),
        None => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_escaped_unless_safe() {
        let env = environment();
        let t = env
            .template_from_str("{{ a }}|{{ b }}|{{ a | str }}|{{ n }}|{{ none }}")
            .unwrap();
        let out = t
            .render(minijinja::context! {
                a => "#read(\"x\")",
                b => Value::from_safe_string("#strong[b]".into()),
                n => 3,
                none => (),
            })
            .unwrap();
        assert_eq!(
            out,
            "\\#read\\(\\\"x\\\"\\)|#strong[b]|\"#read(\\\"x\\\")\"|3|"
        );
    }

    #[test]
    fn undefined_values_are_errors() {
        let env = environment();
        let t = env.template_from_str("{{ missing.x }}").unwrap();
        assert!(t.render(minijinja::context! {}).is_err());
    }
}
