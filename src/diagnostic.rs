//! Findings as data. The library never prints: checks return [`Diagnostic`]s, and the
//! printers in [`crate::report`] turn them into human, JSON, SARIF, JUnit or GitHub output.

use serde::Serialize;

use crate::source::Span;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        }
    }
}

macro_rules! rules {
    ($( $(#[$doc:meta])* $variant:ident = $id:literal, $sev:ident, $desc:literal, $help:literal; )*) => {
        /// Every rule `sopkit check` can report. Ids are stable, kebab-case, and documented
        /// in the README one by one.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Rule { $( $(#[$doc])* $variant, )* }

        impl Rule {
            pub const ALL: &'static [Rule] = &[ $( Rule::$variant, )* ];

            /// The stable id, as printed and as used in SARIF and JUnit.
            pub fn id(self) -> &'static str {
                match self { $( Rule::$variant => $id, )* }
            }

            pub fn severity(self) -> Severity {
                match self { $( Rule::$variant => Severity::$sev, )* }
            }

            /// One line: what the rule finds.
            pub fn description(self) -> &'static str {
                match self { $( Rule::$variant => $desc, )* }
            }

            /// How to fix a finding of this rule, in general terms.
            pub fn help(self) -> &'static str {
                match self { $( Rule::$variant => $help, )* }
            }
        }
    };
}

rules! {
    BrokenLink = "broken-link", Error,
        "A link points to a file that does not exist in the repository.",
        "Fix the path (relative to the file, or from the repository root when it starts with `/`), or add the missing file.";
    BrokenAnchor = "broken-anchor", Error,
        "A link's `#anchor` matches no heading slug or explicit anchor in the target document.",
        "Use the GitHub slug of the heading (lower case, punctuation removed, spaces as `-`, repeats as `-1`, `-2`) or add an `<a id=\"...\"></a>` anchor.";
    AnchorCase = "anchor-case", Warning,
        "A link's `#anchor` matches a heading slug only when case is ignored: GitHub resolves it, other renderers and tools may not.",
        "Write the anchor exactly as the heading's slug (all lower case).";
    BrokenImage = "broken-image", Error,
        "An image points to a file that does not exist in the repository.",
        "Fix the image path or add the image file to the repository.";
    MissingFolder = "missing-folder", Error,
        "A link points to a folder that does not exist.",
        "Fix the folder path, or link to a file inside an existing folder.";
    LinkOutsideRepository = "link-outside-repository", Error,
        "A link's `..` segments leave the repository, so nothing in the repository can answer it.",
        "Link to a file inside the repository, or use a full https:// URL for anything outside it.";
    SymlinkOutsideRepository = "symlink-outside-repository", Error,
        "A symbolic link in the repository points outside it; sopkit does not follow it.",
        "Replace the symbolic link with the file itself or with a link inside the repository.";
    BrokenSymlink = "broken-symlink", Error,
        "A symbolic link in the repository does not resolve: its target is missing, or links lead round in a loop.",
        "Point the symbolic link at an existing file in the repository, or remove it.";
    UndefinedReference = "undefined-reference", Error,
        "A reference-style link or footnote uses a label that is never defined.",
        "Add a definition such as `[label]: path.md#anchor` (or a footnote `[^label]: text`), or fix the label.";
    DuplicateReference = "duplicate-reference", Error,
        "A reference label is defined more than once in one file; only the first definition counts.",
        "Remove or rename the repeated definition.";
    UnusedReference = "unused-reference", Warning,
        "A reference definition is never used by any link in its file.",
        "Remove the definition, or use it as `[text][label]`.";
    UndefinedTerm = "undefined-term", Error,
        "A link into the glossary names a term that the glossary does not define.",
        "Link to the term heading's slug (for `## Recovery Point Objective (RPO)` that is `#recovery-point-objective-rpo`) or add the term to the glossary.";
    UnlinkedTerm = "unlinked-term", Warning,
        "A glossary term is used in an SOP's prose but never linked to its definition in that SOP.",
        "Link at least one use of the term (the first is best) to its glossary entry.";
    UndefinedRole = "undefined-role", Error,
        "A role id (in a link, `owner`, `approvers`, `reports_to` or people.yaml) has no role file.",
        "Create `roles/<role-id>.md` with that id, or use the id of an existing role.";
    InvalidFrontMatter = "invalid-front-matter", Error,
        "Front matter is not valid YAML, has a value of the wrong type, or lacks a required key.",
        "An SOP needs `id`, `title`, `owner` and `approvers`; see the README for every key and its type.";
    DuplicateSopId = "duplicate-sop-id", Error,
        "Two SOPs declare the same `id`.",
        "Give every SOP a unique id; the id is how approvals, evidence and PDFs name it.";
    MalformedStep = "malformed-step", Error,
        "A step block's info string or arguments cannot be understood.",
        "Write steps as ```sh {step=ID target=NAME timeout=30m env=VAR} or ```sopkit {step=ID action=NAME} with a YAML mapping as body.";
    /// A built-in action's arguments that are not the ones it takes: an unknown argument
    /// (a typo such as `keep_dayly`), a missing required one, or a value of the wrong type
    /// (a `legal_hold` string instead of a list).
    InvalidStepArguments = "invalid-step-arguments", Error,
        "A built-in action's arguments are not the ones it accepts.",
        "Use only the arguments the action lists, with values of their type (numbers, true/false, lists); a misspelt argument would otherwise be ignored.";
    DuplicateStepId = "duplicate-step-id", Error,
        "Two steps in one SOP have the same id.",
        "Give every step of an SOP a unique id; evidence and SLOs refer to steps by id.";
    UnknownTarget = "unknown-target", Error,
        "A step names a target that `sopkit.toml` does not define.",
        "Add `[targets.NAME]` to sopkit.toml or fix the target name.";
    UnknownSloStep = "unknown-slo-step", Error,
        "An SLO in the front matter names a step that the SOP does not contain.",
        "Name a step id of this SOP in `slos: [{ step: ..., every: ... }]`.";
    InvalidPeople = "invalid-people", Error,
        "roles/people.yaml is not valid, names a key file that does not exist or holds no public key, or a private key lies under roles/keys/.",
        "Each person needs `id`, `name`, `email`, `keys` (files under roles/keys/) and `roles` with `from` dates (YYYY-MM-DD).";
    InvalidConfig = "invalid-config", Error,
        "sopkit.toml is not valid.",
        "See the README for every key of sopkit.toml; the file is checked strictly so that typos do not go unnoticed.";
    UnapprovedChange = "unapproved-change", Error,
        "An SOP marked `effective` has content that no complete set of valid approvals covers.",
        "Have every approver role sign this exact content with `sopkit approve ID --meaning approved`, or set `status: draft`.";
    InvalidSignature = "invalid-signature", Error,
        "An approval signature in history is forged or broken: a bad signature, an unknown, expired or revoked key, or a format sopkit cannot check.",
        "The signature does not count. Approve again with a key listed in people.yaml; if an admin has reviewed this historical commit, list its id in `[approval] accepted_findings`.";
    UncountedSignature = "uncounted-signature", Warning,
        "A good signature that does not count for this revision: the signer held no required role, authored the revision, signed other content, used a meaning outside the vocabulary, dated it in the future, or re-committed someone else's approval.",
        "Nothing to fix in history; have someone entitled approve the content with `sopkit approve`.";
    LostSignature = "lost-signature", Warning,
        "A commit carries approval trailers but no signature, so a squash or rebase merge probably rewrote it.",
        "Merge approval commits with a merge commit or a fast-forward (not squash or rebase), or approve again.";
    UnauthorisedPolicyChange = "unauthorised-policy-change", Error,
        "people.yaml, roles/ or roles/keys/ changed in a commit not signed by an admin of the policy then in force; the change is ignored.",
        "Have a person marked `admin: true` make (or re-make) the change in a commit they sign.";
    InvalidApproval = "invalid-approval", Error,
        "Approval trailers that cannot be read or that name an SOP or content that does not exist.",
        "Create approvals with `sopkit approve`, which writes the trailers.";
    ReviewOverdue = "review-overdue", Warning,
        "An SOP's `review_every` has elapsed since its last effective approval.",
        "Review the SOP and approve it again (even unchanged) to start a new review period.";
    FileTooLarge = "file-too-large", Error,
        "A file is larger than sopkit reads (10 MiB for Markdown, 256 KiB for front matter).",
        "Split the document; no real SOP needs to be this large.";
    InvalidEncoding = "invalid-encoding", Error,
        "A Markdown, YAML or TOML file is not valid UTF-8.",
        "Save the file as UTF-8.";
    UnreadableFile = "unreadable-file", Error,
        "A file or folder that sopkit must check could not be read: no permission, an I/O error, or it was deleted or replaced during the check.",
        "Make it readable by the user running sopkit, then check again.";
}

/// A secondary location that explains a finding (for example the first definition of a
/// duplicated id).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Related {
    pub path: String,
    pub span: Span,
    pub message: String,
}

/// One finding. `span` is `None` when the finding is about a whole file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    pub rule: Rule,
    pub severity: Severity,
    pub path: String,
    pub span: Option<Span>,
    pub message: String,
    /// A help text specific to this finding; the rule's general help is used when absent.
    pub help: Option<String>,
    pub related: Vec<Related>,
}

impl Diagnostic {
    pub fn new(
        rule: Rule,
        path: impl Into<String>,
        span: Option<Span>,
        message: impl Into<String>,
    ) -> Self {
        Diagnostic {
            rule,
            severity: rule.severity(),
            path: path.into(),
            span,
            message: message.into(),
            help: None,
            related: Vec::new(),
        }
    }

    pub fn with_help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    pub fn with_related(
        mut self,
        path: impl Into<String>,
        span: Span,
        message: impl Into<String>,
    ) -> Self {
        self.related.push(Related {
            path: path.into(),
            span,
            message: message.into(),
        });
        self
    }

    /// The help text to show: the finding's own, else the rule's.
    pub fn help_text(&self) -> &str {
        self.help.as_deref().unwrap_or(self.rule.help())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn rule_ids_are_unique_kebab_case() {
        let mut seen = BTreeSet::new();
        for rule in Rule::ALL {
            let id = rule.id();
            assert!(seen.insert(id), "duplicate rule id {id}");
            assert!(
                id.chars().all(|c| c.is_ascii_lowercase() || c == '-') && !id.starts_with('-'),
                "{id} is not kebab-case"
            );
            assert!(rule.description().ends_with('.'), "{id}");
            assert!(!rule.help().is_empty(), "{id}");
        }
        insta::assert_debug_snapshot!(seen);
    }
}
