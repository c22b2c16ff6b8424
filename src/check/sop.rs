//! SOP front matter, ids, roles named in front matter, steps, SLOs, and people.yaml.

use std::collections::HashMap;

use crate::approval::signature::{KeyError, Keyring};
use crate::corpus::{Corpus, Document, Mode, Sop};
use crate::diagnostic::{Diagnostic, Rule};
use crate::source::Span;

/// Key files are small; a larger one is not a key.
const KEY_FILE_LIMIT: u64 = 1 << 20;

fn role_exists(corpus: &Corpus, id: &str) -> bool {
    corpus.roles.contains_key(id)
}

fn undefined_role(corpus: &Corpus, path: &str, span: Span, id: &str, what: &str) -> Diagnostic {
    let d = Diagnostic::new(
        Rule::UndefinedRole,
        path,
        Some(span),
        format!("{what} `{id}` is not a defined role"),
    );
    let best = corpus
        .roles
        .keys()
        .map(|r| (strsim::jaro_winkler(r, id), r))
        .filter(|(s, _)| *s >= 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0));
    match best {
        Some((_, r)) => d.with_help(format!("did you mean `{r}`?")),
        None => d.with_help(format!(
            "create `{}/{id}.md`, or use one of: {}",
            corpus.config.paths.roles,
            corpus.roles.keys().cloned().collect::<Vec<_>>().join(", ")
        )),
    }
}

/// Front matter of one SOP (required keys, roles, SLOs) and its steps.
pub fn check_sop(corpus: &Corpus, sop: &Sop) -> Vec<Diagnostic> {
    let doc = &corpus.docs[sop.doc];
    let path = doc.path();
    let mut out = Vec::new();
    let fm_span = Span::new(0, doc.body_start.min(3));
    if doc.front_matter_error {
        out.extend(check_steps(corpus, doc));
        return out;
    }
    match &doc.sop {
        None if corpus.mode == Mode::Configured => out.push(
            Diagnostic::new(
                Rule::InvalidFrontMatter,
                path,
                Some(Span::new(0, 0)),
                "this SOP has no front matter",
            )
            .with_help("start the file with a `---` block naming id, title, owner and approvers"),
        ),
        None => {}
        Some(meta) => {
            for (key, present) in [
                ("id", meta.id.is_some()),
                ("title", meta.title.is_some()),
                ("owner", meta.owner.is_some()),
                ("approvers", meta.approvers.is_some()),
            ] {
                if !present {
                    out.push(
                        Diagnostic::new(Rule::InvalidFrontMatter, path, Some(fm_span), format!("front matter lacks `{key}`"))
                            .with_help(format!("add `{key}:` to the front matter; every SOP needs id, title, owner and approvers")),
                    );
                }
            }
            let check_roles = corpus.mode != Mode::ZeroConfig;
            if let Some(owner) = &meta.owner
                && check_roles
                && !role_exists(corpus, &owner.value)
            {
                out.push(undefined_role(
                    corpus,
                    path,
                    owner.span,
                    &owner.value,
                    "owner",
                ));
            }
            if let Some(approvers) = &meta.approvers {
                if approvers.value.is_empty() {
                    out.push(Diagnostic::new(
                        Rule::InvalidFrontMatter,
                        path,
                        Some(approvers.span),
                        "`approvers` is empty: name at least one role",
                    ));
                }
                for a in &approvers.value {
                    if check_roles && !role_exists(corpus, &a.value) {
                        out.push(undefined_role(corpus, path, a.span, &a.value, "approver"));
                    }
                }
            }
            let step_ids: Vec<&str> = doc.markdown.valid_steps().map(|s| s.id.as_str()).collect();
            for slo in &meta.slos {
                if !step_ids.contains(&slo.step.value.as_str()) {
                    let d = Diagnostic::new(
                        Rule::UnknownSloStep,
                        path,
                        Some(slo.step.span),
                        format!(
                            "SLO names step `{}`, which this SOP does not contain",
                            slo.step.value
                        ),
                    );
                    let d = if step_ids.is_empty() {
                        d.with_help(
                            "this SOP has no steps; add a step block such as ```sh {step=ID}",
                        )
                    } else {
                        d.with_help(format!("steps of this SOP: {}", step_ids.join(", ")))
                    };
                    out.push(d);
                }
            }
        }
    }
    out.extend(check_steps(corpus, doc));
    out
}

/// Step blocks: syntax, duplicate ids and targets.
pub fn check_steps(corpus: &Corpus, doc: &Document) -> Vec<Diagnostic> {
    let path = doc.path();
    let mut out = Vec::new();
    let mut seen: HashMap<&str, Span> = HashMap::new();
    for step in &doc.markdown.steps {
        let step = match step {
            Ok(s) => s,
            Err(e) => {
                out.push(Diagnostic::new(
                    Rule::MalformedStep,
                    path,
                    Some(e.span),
                    e.message.clone(),
                ));
                continue;
            }
        };
        if let Some(first) = seen.insert(&step.id, step.info_span) {
            out.push(
                Diagnostic::new(
                    Rule::DuplicateStepId,
                    path,
                    Some(step.info_span),
                    format!("step id `{}` is used twice in this SOP", step.id),
                )
                .with_related(path, first, "first used here"),
            );
        }
        if let Some(role) = &step.role
            && !corpus.roles.contains_key(role)
        {
            let what = format!("step `{}` requires role", step.id);
            out.push(undefined_role(corpus, path, step.info_span, role, &what));
        }
        let arguments = match &step.arguments {
            Some(Ok(a)) => Some(a),
            Some(Err(e)) => {
                out.push(
                    Diagnostic::new(
                        Rule::InvalidStepArguments,
                        path,
                        Some(step.arguments_span(&doc.file, e)),
                        format!("step `{}`: {}", step.id, e.message),
                    )
                    .with_help(e.help.clone()),
                );
                None
            }
            None => None,
        };
        let arg_target = arguments.and_then(|a| a.target());
        for (target, span) in [
            (step.target.as_deref(), step.info_span),
            (arg_target, step.span),
        ] {
            let Some(t) = target else { continue };
            if !corpus.config_valid || t.contains("${") || corpus.config.targets.contains_key(t) {
                continue;
            }
            let known: Vec<&str> = corpus.config.targets.keys().map(String::as_str).collect();
            let help = if known.is_empty() {
                format!("add `[targets.{t}]` to sopkit.toml")
            } else {
                format!(
                    "add `[targets.{t}]` to sopkit.toml, or use one of: {}",
                    known.join(", ")
                )
            };
            out.push(
                Diagnostic::new(
                    Rule::UnknownTarget,
                    path,
                    Some(span),
                    format!(
                        "step `{}` names target `{t}`, which sopkit.toml does not define",
                        step.id
                    ),
                )
                .with_help(help),
            );
        }
    }
    out
}

/// SOP ids must be unique.
pub fn check_ids(corpus: &Corpus) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    let mut first: HashMap<&str, (&str, Option<Span>)> = HashMap::new();
    for sop in &corpus.sops {
        let doc = &corpus.docs[sop.doc];
        let span = doc.sop.as_ref().and_then(|m| m.id.as_ref()).map(|i| i.span);
        match first.get(sop.id.as_str()) {
            Some((p, s)) => {
                let mut d = Diagnostic::new(
                    Rule::DuplicateSopId,
                    doc.path(),
                    span,
                    format!("SOP id `{}` is already used by `{p}`", sop.id),
                );
                if let Some(s) = s {
                    d = d.with_related(*p, *s, "first declared here");
                }
                out.push(d);
            }
            None => {
                first.insert(&sop.id, (doc.path(), span));
            }
        }
    }
    out
}

/// `reports_to` of roles, and the roles and key files in people.yaml.
pub fn check_roles_and_people(corpus: &Corpus) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    if corpus.mode == Mode::ZeroConfig {
        return out;
    }
    for role in corpus.roles.values() {
        if let Some(r) = &role.reports_to
            && !role_exists(corpus, &r.value)
        {
            out.push(undefined_role(
                corpus,
                &role.path,
                r.span,
                &r.value,
                "reports_to",
            ));
        }
    }
    let Some(file) = &corpus.people_file else {
        return out;
    };
    let keys = &corpus.config.paths.keys;
    let mut keyring = Keyring::default();
    let mut listed = std::collections::HashSet::new();
    for person in &corpus.people {
        for h in &person.roles {
            if !role_exists(corpus, &h.role.value) {
                out.push(undefined_role(
                    corpus,
                    &file.path,
                    h.role.span,
                    &h.role.value,
                    &format!("{}'s role", person.id.value),
                ));
            }
        }
        for k in &person.keys {
            let full = crate::tree::normalize(&format!("{keys}/{}", k.value));
            match full {
                Some(f) if corpus.tree.is_file(&f) && crate::corpus::under(&f, keys) => {
                    listed.insert(f.clone());
                    // The key as verification will read it: a file that is not a public key
                    // (or holds a private one) would make every signature by it "unknown key".
                    let problem = match corpus.tree.read(&f, KEY_FILE_LIMIT) {
                        Ok(bytes) => keyring.add_file(&person.id.value, &f, &bytes).err(),
                        Err(e) => Some(KeyError::Unreadable {
                            label: f.clone(),
                            reason: e.to_string(),
                        }),
                    };
                    if let Some(e) = problem {
                        out.push(
                            Diagnostic::new(
                                Rule::InvalidPeople,
                                &file.path,
                                Some(k.span),
                                format!("key file of `{}`: {e}", person.id.value),
                            )
                            .with_help(
                                "list OpenPGP certificates (gpg --export --armor) or OpenSSH public \
                                 keys (.pub); never a private key",
                            ),
                        );
                    }
                }
                Some(f) => out.push(
                    Diagnostic::new(
                        Rule::InvalidPeople,
                        &file.path,
                        Some(k.span),
                        format!("key file `{f}` of `{}` does not exist", person.id.value),
                    )
                    .with_help(format!(
                        "put the public key under `{keys}/` or fix the file name"
                    )),
                ),
                None => out.push(Diagnostic::new(
                    Rule::InvalidPeople,
                    &file.path,
                    Some(k.span),
                    format!("key file `{}` leaves the repository", k.value),
                )),
            }
        }
    }
    // A private key anywhere under the keys folder, listed or not, is a leak to report.
    for f in corpus
        .tree
        .files()
        .filter(|f| crate::corpus::under(f, keys) && !listed.contains(*f))
    {
        if let Ok(bytes) = corpus.tree.read(f, KEY_FILE_LIMIT)
            && let Err(e @ KeyError::PrivateKey { .. }) = Keyring::default().add_file("", f, &bytes)
        {
            out.push(Diagnostic::new(Rule::InvalidPeople, f, None, e.to_string()));
        }
    }
    out
}
