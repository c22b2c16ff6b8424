//! `roles/people.yaml`: who the people are, which public keys are theirs, and which roles
//! they held when. The repository, not anyone's keyring, says who may sign.

use serde::Deserialize;
use serde_saphyr::Spanned;
use time::Date;
use time::macros::format_description;

use super::front_matter::{self, Located};
use crate::diagnostic::{Diagnostic, Rule};
use crate::source::SourceFile;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holding {
    pub role: Located<String>,
    pub from: Date,
    /// The last day the role was held (inclusive); open-ended when `None`.
    pub until: Option<Date>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Person {
    pub id: Located<String>,
    pub name: String,
    pub email: String,
    pub admin: bool,
    /// Key files, relative to the keys folder.
    pub keys: Vec<Located<String>>,
    pub roles: Vec<Holding>,
}

impl Person {
    /// Whether the person held `role` on `day`.
    pub fn holds(&self, role: &str, day: Date) -> bool {
        self.roles
            .iter()
            .any(|h| h.role.value == role && h.from <= day && h.until.is_none_or(|u| day <= u))
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    people: Vec<RawPerson>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPerson {
    id: Spanned<String>,
    name: String,
    email: String,
    #[serde(default)]
    admin: bool,
    #[serde(default)]
    keys: Vec<Spanned<String>>,
    #[serde(default)]
    roles: Vec<RawHolding>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHolding {
    role: Spanned<String>,
    from: Spanned<String>,
    until: Option<Spanned<String>>,
}

/// Parses people.yaml; problems are pushed as `invalid-people` findings.
pub fn parse(file: &SourceFile, problems: &mut Vec<Diagnostic>) -> Vec<Person> {
    let raw: RawFile = match front_matter::parse_file(file) {
        Ok(r) => r,
        Err(p) => {
            problems.push(Diagnostic::new(
                Rule::InvalidPeople,
                &file.path,
                Some(p.span),
                p.message,
            ));
            return Vec::new();
        }
    };
    let fmt = format_description!("[year]-[month]-[day]");
    let date = |s: Spanned<String>, problems: &mut Vec<Diagnostic>| -> Option<Date> {
        let l = front_matter::locate_in_file(file, s);
        match Date::parse(l.value.trim(), fmt) {
            Ok(d) => Some(d),
            Err(_) => {
                problems.push(Diagnostic::new(
                    Rule::InvalidPeople,
                    &file.path,
                    Some(l.span),
                    format!("`{}` is not a date; write YYYY-MM-DD", l.value),
                ));
                None
            }
        }
    };
    let mut seen = std::collections::HashMap::new();
    let mut out = Vec::new();
    for p in raw.people {
        let id = front_matter::locate_in_file(file, p.id);
        if let Some(first) = seen.insert(id.value.clone(), id.span) {
            problems.push(
                Diagnostic::new(
                    Rule::InvalidPeople,
                    &file.path,
                    Some(id.span),
                    format!("person `{}` is listed twice", id.value),
                )
                .with_related(&file.path, first, "first listed here"),
            );
        }
        let mut roles = Vec::new();
        for h in p.roles {
            let from = date(h.from, problems);
            let until = match h.until {
                Some(u) => date(u, problems),
                None => None,
            };
            if let Some(from) = from {
                roles.push(Holding {
                    role: front_matter::locate_in_file(file, h.role),
                    from,
                    until,
                });
            }
        }
        out.push(Person {
            id,
            name: p.name,
            email: p.email,
            admin: p.admin,
            keys: p
                .keys
                .into_iter()
                .map(|k| front_matter::locate_in_file(file, k))
                .collect(),
            roles,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::date;

    #[test]
    fn parses_people_and_dates() {
        let f = SourceFile::new(
            "roles/people.yaml",
            "people:\n  - id: ann\n    name: Ann\n    email: a@example.com\n    roles:\n      - { role: qa-lead, from: 2026-01-01, until: 2026-06-30 }\n",
        );
        let mut problems = Vec::new();
        let people = parse(&f, &mut problems);
        assert!(problems.is_empty(), "{problems:?}");
        assert!(people[0].holds("qa-lead", date!(2026 - 03 - 01)));
        assert!(!people[0].holds("qa-lead", date!(2026 - 07 - 01)));
        assert!(!people[0].holds("it-lead", date!(2026 - 03 - 01)));
    }

    #[test]
    fn bad_date_is_located() {
        let f = SourceFile::new(
            "roles/people.yaml",
            "people:\n  - id: ann\n    name: Ann\n    email: a@example.com\n    roles:\n      - { role: qa-lead, from: soon }\n",
        );
        let mut problems = Vec::new();
        parse(&f, &mut problems);
        assert_eq!(problems.len(), 1);
        assert_eq!(f.position(problems[0].span.unwrap().start).line, 6);
    }
}
