//! Findings from the approval history: effective SOPs without valid approvals, signatures
//! that do not count, rewritten approval commits, unauthorised policy changes and overdue
//! reviews.

use crate::approval::history::{History, Status};
use crate::corpus::front_matter::Status as SopStatus;
use crate::corpus::{Corpus, Sop};
use crate::diagnostic::{Diagnostic, Rule};
use crate::source::Span;

fn short(commit: &str) -> &str {
    &commit[..commit.len().min(12)]
}

fn id_span(corpus: &Corpus, sop: &Sop) -> Option<Span> {
    corpus.docs[sop.doc]
        .sop
        .as_ref()
        .and_then(|m| m.id.as_ref())
        .map(|i| i.span)
        .or(Some(Span::new(0, 0)))
}

/// `now` is seconds since the epoch.
// Per SOP, the findings in the order an author meets them (draft, signatures, review due),
// sharing the SOP's history entry and front matter.
pub fn check(corpus: &Corpus, history: &History, now: i64) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    for sop in &corpus.sops {
        let doc = &corpus.docs[sop.doc];
        let path = doc.path();
        let span = id_span(corpus, sop);
        let meta = doc.sop.as_ref();
        let hist = history.sops.get(&sop.id);
        if meta.is_some_and(|m| m.status == SopStatus::Effective) {
            let rev = hist.and_then(|h| h.revision_of(doc.file.text.as_bytes()));
            if rev.is_none_or(|r| r.version.is_none()) {
                let missing = match rev {
                    Some(r) => r.missing_roles(),
                    None => meta
                        .and_then(|m| m.approvers.as_ref())
                        .map(|a| a.value.iter().map(|r| r.value.clone()).collect())
                        .unwrap_or_default(),
                };
                let why = if rev.is_none() {
                    "this content is not committed or was never approved"
                } else {
                    "its approvals are incomplete"
                };
                out.push(Diagnostic::new(
                    Rule::UnapprovedChange,
                    path,
                    span,
                    format!(
                        "{} is marked effective but {why} (missing: {})",
                        sop.id,
                        missing.join(", ")
                    ),
                ));
            }
        }
        let Some(hist) = hist else { continue };
        for rev in &hist.revisions {
            for s in rev
                .signatures
                .iter()
                .filter(|s| !history.is_accepted(&s.commit))
            {
                let who = s
                    .name
                    .as_deref()
                    .or(s.signer.as_deref())
                    .unwrap_or("an unknown signer");
                match s.status {
                    Status::Valid => {}
                    Status::Unsigned => out.push(Diagnostic::new(
                        Rule::LostSignature,
                        path,
                        span,
                        format!("commit {} approves {} revision {} ({}) but is not signed", short(&s.commit), sop.id, rev.number, s.meaning),
                    )),
                    other => out.push(
                        Diagnostic::new(
                            if other.is_forgery_or_broken() {
                                Rule::InvalidSignature
                            } else {
                                Rule::UncountedSignature
                            },
                            path,
                            span,
                            format!(
                                "commit {}: the `{}` signature by {who} on {} revision {} does not count: {}",
                                short(&s.commit),
                                s.meaning,
                                sop.id,
                                rev.number,
                                other.as_str()
                            ),
                        )
                        .with_help(s.detail.clone()),
                    ),
                }
            }
        }
        if let (Some(every), Some(last)) =
            (meta.and_then(|m| m.review_every), hist.last_effective())
            && let Some(t) = last.effective_time
            && now > t + every.seconds as i64
        {
            let days = (now - t) / 86_400;
            out.push(Diagnostic::new(
                Rule::ReviewOverdue,
                path,
                span,
                format!(
                    "{} was last approved {days} days ago; it is reviewed every {every}",
                    sop.id
                ),
            ));
        }
    }
    let people = &corpus.config.paths.people;
    for c in history
        .policy_changes
        .iter()
        .filter(|c| !c.authorised && !history.is_accepted(&c.commit))
    {
        out.push(Diagnostic::new(
            Rule::UnauthorisedPolicyChange,
            people,
            None,
            format!(
                "commit {} (\"{}\") changed policy ({}) without an admin's signature ({}); the change is ignored",
                short(&c.commit),
                c.summary,
                c.paths.join(", "),
                c.detail
            ),
        ));
    }
    for p in history
        .problems
        .iter()
        .filter(|p| !history.is_accepted(&p.commit))
    {
        out.push(Diagnostic::new(
            Rule::InvalidApproval,
            people,
            None,
            format!("commit {}: {}", short(&p.commit), p.message),
        ));
    }
    out
}
