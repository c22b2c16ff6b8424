//! `sopkit.toml`: where things are, how links map onto a web site, and the targets that
//! steps run against. Parsed strictly (unknown keys are errors) so typos surface.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::diagnostic::{Diagnostic, Rule};
use crate::source::{SourceFile, Span};

pub const FILE_NAME: &str = "sopkit.toml";

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Paths {
    pub procedures: String,
    /// A folder of Markdown files or a single Markdown file.
    pub glossary: String,
    /// A folder with one file per role, or a single Markdown file with a heading per role.
    pub roles: String,
    pub people: String,
    pub keys: String,
    pub templates: String,
    pub evidence: String,
}

impl Default for Paths {
    fn default() -> Self {
        Paths {
            procedures: "procedures".into(),
            glossary: "glossary".into(),
            roles: "roles".into(),
            people: "roles/people.yaml".into(),
            keys: "roles/keys".into(),
            templates: "templates".into(),
            evidence: "evidence".into(),
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Links {
    /// A folder that a web site serves at `/`: links starting with `/` are looked up there
    /// first, then at the repository root.
    #[serde(alias = "link_root")]
    pub web_root: Option<String>,
    /// Web routes that are not files, mapped to the file that answers them
    /// (`"/qms/glossary/" = "qms/glossary.md"`). A route ending in `/` maps a prefix.
    pub routes: BTreeMap<String, String>,
    /// Glob patterns of files whose links are not checked.
    pub exclude: Vec<String>,
}

/// Who checks the cryptography of OpenPGP signatures.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Backend {
    /// sequoia-openpgp, in-process, against the repository's key files (the default).
    #[default]
    InProcess,
    /// The user's GnuPG through gpgme (needs a sopkit built with the `gpgme` feature).
    Gnupg,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Approval {
    pub meanings: Vec<String>,
    pub separation_of_duties: bool,
    pub trust_root: Option<String>,
    pub backend: Backend,
    /// GNUPGHOME for the `gnupg` backend (default: GnuPG's own).
    pub gnupg_home: Option<String>,
    /// Commit ids (7 or more hex digits) whose historical approval findings were reviewed and
    /// accepted: `check` no longer reports them. Policy like the rest of `[approval]`.
    pub accepted_findings: Vec<String>,
}

impl Default for Approval {
    fn default() -> Self {
        Approval {
            meanings: ["authored", "reviewed", "approved", "acknowledged"]
                .map(String::from)
                .to_vec(),
            separation_of_duties: true,
            trust_root: None,
            backend: Backend::InProcess,
            gnupg_home: None,
            accepted_findings: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum TargetKind {
    Local,
    Ssh,
    Mysql,
    S3,
    Git,
}

/// A place steps run against. Credentials are only ever named (`*_env`), never stored.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Target {
    pub kind: TargetKind,
    pub path: Option<String>,
    pub host: Option<String>,
    pub port: Option<u16>,
    pub user: Option<String>,
    pub ssh_config: Option<String>,
    pub password_env: Option<String>,
    pub socket: Option<String>,
    pub endpoint: Option<String>,
    pub region: Option<String>,
    pub bucket: Option<String>,
    pub prefix: Option<String>,
    pub path_style: Option<bool>,
    pub access_key_env: Option<String>,
    pub secret_key_env: Option<String>,
    pub url: Option<String>,
    /// disk, usb, object-storage, tape, ... (for the 3-2-1-1-0 rule)
    pub medium: Option<String>,
    /// on-site or off-site
    pub location: Option<String>,
    /// online or offline
    pub connectivity: Option<String>,
}

/// An SMTP relay for notifications. The password is only ever named (`password_env`).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Smtp {
    pub host: String,
    /// Default 587 with STARTTLS, 25 without.
    pub port: Option<u16>,
    pub from: String,
    /// STARTTLS (default true). `false` sends in clear text: only for a relay on the same
    /// machine or network segment.
    #[serde(default = "yes")]
    pub starttls: bool,
    pub user_env: Option<String>,
    pub password_env: Option<String>,
}

fn yes() -> bool {
    true
}

/// Who is told when a step fails or is interrupted, or an SLO becomes overdue, and how.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Notify {
    /// Roles whose holders are told (default: the SOP's owner role).
    pub roles: Vec<String>,
    pub smtp: Option<Smtp>,
    /// A URL that receives an HTTP POST of the event as JSON.
    pub webhook: Option<String>,
    /// A command (`sh -c`) that receives the event as JSON on standard input.
    pub command: Option<String>,
}

impl Notify {
    pub fn configured(&self) -> bool {
        self.smtp.is_some() || self.webhook.is_some() || self.command.is_some()
    }
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub paths: Paths,
    pub links: Links,
    pub approval: Approval,
    pub targets: BTreeMap<String, Target>,
    pub notify: Notify,
    pub evidence: EvidencePolicy,
}

/// `[evidence]`: policy for the records `run` writes.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct EvidencePolicy {
    /// Writer folders (`operator@host`, `*` and `?` as wildcards) whose records may be
    /// unsigned, e.g. a scheduled job with no key of its own. Their runs are unattributed.
    pub unsigned_writers: Vec<String>,
    /// The RFC 3161 time-stamping authority that `sopkit evidence stamp` asks (an http(s)
    /// URL taking `application/timestamp-query`).
    pub tsa_url: Option<String>,
    /// The certificate (PEM, its chain up to a root) that tokens of the TSA must verify
    /// against: a file of the repository (under the roles folder, so that it is policy).
    pub tsa_certificate: Option<String>,
}

impl EvidencePolicy {
    /// Whether records of writer folder `writer` may be unsigned.
    pub fn allows_unsigned(&self, writer: &str) -> bool {
        self.unsigned_writers
            .iter()
            .any(|p| globset::Glob::new(p).is_ok_and(|g| g.compile_matcher().is_match(writer)))
    }
}

impl Config {
    /// The config that `tree` holds (`sopkit.toml`), or the defaults where it holds none or
    /// one that cannot be read (the corpus reports why).
    pub fn of_tree(tree: &crate::tree::Tree) -> Config {
        tree.read(FILE_NAME, 1 << 20)
            .ok()
            .and_then(|bytes| String::from_utf8(bytes).ok())
            .and_then(|text| Config::parse(&SourceFile::new(FILE_NAME, text)).0)
            .unwrap_or_default()
    }

    /// Parses `sopkit.toml`. When it cannot be parsed at all, `None` comes back with a
    /// located finding; otherwise the config and any problems with its values.
    pub fn parse(file: &SourceFile) -> (Option<Config>, Vec<Diagnostic>) {
        match toml::from_str::<Config>(&file.text) {
            Ok(cfg) => {
                let problems = cfg.validate(file);
                (Some(cfg), problems)
            }
            Err(e) => {
                let span = e.span().map(Span::from_range);
                let msg = format!("sopkit.toml: {}", e.message().trim());
                (
                    None,
                    vec![Diagnostic::new(Rule::InvalidConfig, &file.path, span, msg)],
                )
            }
        }
    }

    fn validate(&self, file: &SourceFile) -> Vec<Diagnostic> {
        let mut out = Vec::new();
        let at = |needle: &str| {
            file.text
                .find(needle)
                .map(|i| Span::new(i, i + needle.len()))
        };
        for p in &self.evidence.unsigned_writers {
            if let Err(e) = globset::Glob::new(p) {
                out.push(Diagnostic::new(
                    Rule::InvalidConfig,
                    &file.path,
                    at(p),
                    format!("[evidence] unsigned_writers: `{p}` is not a pattern: {e}"),
                ));
            }
        }
        for (name, t) in &self.targets {
            let required: &[(&str, bool)] = match t.kind {
                TargetKind::Local => &[("path", t.path.is_some())],
                TargetKind::Ssh => &[("host", t.host.is_some())],
                TargetKind::Mysql => &[("host or socket", t.host.is_some() || t.socket.is_some())],
                TargetKind::S3 => &[("bucket", t.bucket.is_some())],
                TargetKind::Git => &[("url", t.url.is_some())],
            };
            for (field, present) in required {
                if !present {
                    out.push(Diagnostic::new(
                        Rule::InvalidConfig,
                        &file.path,
                        at(&format!("[targets.{name}]")),
                        format!("target `{name}` needs `{field}`"),
                    ));
                }
            }
            for (field, value) in [("location", &t.location), ("connectivity", &t.connectivity)] {
                let allowed: &[&str] = if field == "location" {
                    &["on-site", "off-site"]
                } else {
                    &["online", "offline"]
                };
                if let Some(v) = value
                    && !allowed.contains(&v.as_str())
                {
                    out.push(Diagnostic::new(
                        Rule::InvalidConfig,
                        &file.path,
                        at(&format!("[targets.{name}]")),
                        format!(
                            "target `{name}`: {field} is `{v}`, expected one of {}",
                            allowed.join(", ")
                        ),
                    ));
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_targets() {
        let f = SourceFile::new(
            "sopkit.toml",
            "[links]\nlink_root = \"site\"\n[targets.db]\nkind = \"mysql\"\nhost = \"127.0.0.1\"\npassword_env = \"PW\"\n",
        );
        let (cfg, problems) = Config::parse(&f);
        assert!(problems.is_empty(), "{problems:?}");
        let cfg = cfg.unwrap();
        assert_eq!(cfg.paths.procedures, "procedures");
        assert_eq!(cfg.links.web_root.as_deref(), Some("site"));
        assert_eq!(cfg.targets["db"].kind, TargetKind::Mysql);
    }

    #[test]
    fn unknown_key_is_located() {
        let f = SourceFile::new("sopkit.toml", "[paths]\nprocedure = \"x\"\n");
        let (_, problems) = Config::parse(&f);
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].rule, Rule::InvalidConfig);
        let pos = f.position(problems[0].span.unwrap().start);
        assert_eq!(pos.line, 2, "{problems:?}");
        assert!(
            problems[0].message.contains("procedure"),
            "{}",
            problems[0].message
        );
    }

    #[test]
    fn target_missing_field() {
        let f = SourceFile::new(
            "sopkit.toml",
            "[targets.x]\nkind = \"local\"\nlocation = \"moon\"\n",
        );
        let (_, problems) = Config::parse(&f);
        let msgs: Vec<_> = problems.iter().map(|d| d.message.as_str()).collect();
        assert!(msgs.iter().any(|m| m.contains("needs `path`")), "{msgs:?}");
        assert!(msgs.iter().any(|m| m.contains("moon")), "{msgs:?}");
    }
}
