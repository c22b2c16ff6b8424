//! Printing findings. [`Finding`] is a diagnostic with its line and column worked out; each
//! output format is one function over a list of findings. The JSON form is the documented
//! machine interface:
//!
//! ```json
//! { "tool": "sopkit", "version": "0.1.0", "root": "...", "mode": "configured",
//!   "summary": { "errors": 1, "warnings": 0, "files": 12 },
//!   "findings": [ { "rule": "broken-link", "severity": "error", "path": "procedures/a.md",
//!                   "line": 3, "column": 5, "end_line": 3, "end_column": 21,
//!                   "message": "...", "help": "...", "related": [] } ] }
//! ```
//!
//! `line`/`column` are 1-based (columns count characters) and are `null` for findings about
//! a whole file.

pub mod sarif;

use std::io::{self, Write};

use serde::Serialize;

use crate::check::Summary;
use crate::corpus::Corpus;
use crate::diagnostic::{Diagnostic, Rule, Severity};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Format {
    /// Source snippets with the finding underlined (for people).
    #[default]
    Human,
    /// One line per finding: `path:line:col: severity[rule]: message`.
    Short,
    /// One JSON document (see the README for its fields).
    Json,
    /// GitHub Actions workflow commands (`::error file=…,line=…::message`).
    Github,
    /// SARIF 2.1.0, for code scanning.
    Sarif,
    /// JUnit XML, one failing test case per finding.
    Junit,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct RelatedFinding {
    pub path: String,
    pub line: Option<usize>,
    pub column: Option<usize>,
    pub message: String,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Finding {
    pub rule: &'static str,
    pub severity: Severity,
    pub path: String,
    pub line: Option<usize>,
    pub column: Option<usize>,
    pub end_line: Option<usize>,
    pub end_column: Option<usize>,
    pub message: String,
    pub help: String,
    pub related: Vec<RelatedFinding>,
    #[serde(skip)]
    pub diagnostic: Diagnostic,
}

/// Works out lines and columns (from the corpus's copy of each file).
pub fn locate(diags: &[Diagnostic], corpus: &Corpus) -> Vec<Finding> {
    let pos = |path: &str, offset: usize| corpus.source(path).map(|f| f.position(offset));
    diags
        .iter()
        .map(|d| {
            let start = d.span.and_then(|s| pos(&d.path, s.start));
            let end = d.span.and_then(|s| pos(&d.path, s.end));
            Finding {
                rule: d.rule.id(),
                severity: d.severity,
                path: d.path.clone(),
                line: start.map(|p| p.line),
                column: start.map(|p| p.column),
                end_line: end.map(|p| p.line),
                end_column: end.map(|p| p.column),
                message: d.message.clone(),
                help: d.help_text().to_string(),
                related: d
                    .related
                    .iter()
                    .map(|r| {
                        let p = pos(&r.path, r.span.start);
                        RelatedFinding {
                            path: r.path.clone(),
                            line: p.map(|p| p.line),
                            column: p.map(|p| p.column),
                            message: r.message.clone(),
                        }
                    })
                    .collect(),
                diagnostic: d.clone(),
            }
        })
        .collect()
}

/// Everything a printer may need besides the findings.
pub struct Context<'a> {
    pub corpus: &'a Corpus,
    pub summary: Summary,
    /// Whether the human format may use colour.
    pub color: bool,
}

pub fn write(
    format: Format,
    findings: &[Finding],
    cx: &Context<'_>,
    out: &mut dyn Write,
) -> io::Result<()> {
    match format {
        Format::Human => human(findings, cx, out),
        Format::Short => short(findings, out),
        Format::Json => json(findings, cx, out),
        Format::Github => github(findings, out),
        Format::Sarif => sarif::write(findings, out),
        Format::Junit => junit(findings, cx, out),
    }
}

fn location(f: &Finding) -> String {
    match (f.line, f.column) {
        (Some(l), Some(c)) => format!("{}:{l}:{c}", f.path),
        _ => f.path.clone(),
    }
}

fn short(findings: &[Finding], out: &mut dyn Write) -> io::Result<()> {
    for f in findings {
        writeln!(
            out,
            "{}: {}[{}]: {}",
            location(f),
            f.severity.as_str(),
            f.rule,
            f.message
        )?;
    }
    Ok(())
}

fn summary_line(s: &Summary) -> String {
    let plural = |n: usize, w: &str| format!("{n} {w}{}", if n == 1 { "" } else { "s" });
    if s.errors == 0 && s.warnings == 0 {
        format!("no findings in {}", plural(s.files, "file"))
    } else {
        format!(
            "{}, {} in {}",
            plural(s.errors, "error"),
            plural(s.warnings, "warning"),
            plural(s.files, "file")
        )
    }
}

fn human(findings: &[Finding], cx: &Context<'_>, out: &mut dyn Write) -> io::Result<()> {
    use codespan_reporting::diagnostic::{Diagnostic as CsDiagnostic, Label};
    use codespan_reporting::files::SimpleFiles;
    use codespan_reporting::term::{self, Config, Styles, StylesWriter, termcolor};

    let mut files = SimpleFiles::new();
    let mut ids = std::collections::HashMap::new();
    let mut file_id = |path: &str| -> Option<usize> {
        if let Some(id) = ids.get(path) {
            return Some(*id);
        }
        let src = cx.corpus.source(path)?;
        let id = files.add(path.to_string(), src.text.as_str());
        ids.insert(path.to_string(), id);
        Some(id)
    };
    let mut prepared = Vec::new();
    for f in findings {
        let d = &f.diagnostic;
        let mut cs = match f.severity {
            Severity::Error => CsDiagnostic::error(),
            Severity::Warning => CsDiagnostic::warning(),
        }
        .with_code(f.rule);
        let mut labels = Vec::new();
        if let (Some(span), Some(id)) = (d.span, file_id(&d.path)) {
            labels.push(Label::primary(id, span.start..span.end));
        }
        cs = if labels.is_empty() {
            cs.with_message(format!("{}: {}", f.path, f.message))
        } else {
            cs.with_message(&f.message)
        };
        for r in &d.related {
            if let Some(id) = file_id(&r.path) {
                labels
                    .push(Label::secondary(id, r.span.start..r.span.end).with_message(&r.message));
            }
        }
        prepared.push(
            cs.with_labels(labels)
                .with_notes(vec![format!("help: {}", f.help)]),
        );
    }
    let config = Config::default();
    let styles = Styles::default();
    let mut buffer = if cx.color {
        termcolor::Buffer::ansi()
    } else {
        termcolor::Buffer::no_color()
    };
    for cs in &prepared {
        let mut w = StylesWriter::new(&mut buffer, &styles);
        term::emit_to_write_style(&mut w, &config, &files, cs).map_err(io::Error::other)?;
    }
    out.write_all(buffer.as_slice())?;
    writeln!(out, "{}", summary_line(&cx.summary))?;
    writeln!(out, "{}", crate::check::scope_line(cx.corpus))
}

/// The JSON document (see the module docs).
#[derive(Serialize)]
pub struct JsonReport<'a> {
    pub tool: &'static str,
    pub version: &'static str,
    pub root: &'a str,
    pub mode: crate::corpus::Mode,
    pub summary: Summary,
    pub findings: &'a [Finding],
}

fn json(findings: &[Finding], cx: &Context<'_>, out: &mut dyn Write) -> io::Result<()> {
    let report = JsonReport {
        tool: "sopkit",
        version: crate::VERSION,
        root: &cx.corpus.tree.label,
        mode: cx.corpus.mode,
        summary: cx.summary,
        findings,
    };
    serde_json::to_writer_pretty(&mut *out, &report)?;
    writeln!(out)
}

/// Escapes for GitHub workflow command data and properties.
fn gh_escape(s: &str, property: bool) -> String {
    let mut o = s
        .replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A");
    if property {
        o = o.replace(':', "%3A").replace(',', "%2C");
    }
    o
}

fn github(findings: &[Finding], out: &mut dyn Write) -> io::Result<()> {
    for f in findings {
        let level = match f.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        let mut props = vec![format!("file={}", gh_escape(&f.path, true))];
        if let (Some(l), Some(c)) = (f.line, f.column) {
            props.push(format!("line={l}"));
            props.push(format!("col={c}"));
            if let (Some(el), Some(ec)) = (f.end_line, f.end_column) {
                props.push(format!("endLine={el}"));
                props.push(format!("endColumn={ec}"));
            }
        }
        props.push(format!("title={}", gh_escape(f.rule, true)));
        let msg = format!("{}\nhelp: {}", f.message, f.help);
        writeln!(
            out,
            "::{level} {}::{}",
            props.join(","),
            gh_escape(&msg, false)
        )?;
    }
    Ok(())
}

fn junit(findings: &[Finding], cx: &Context<'_>, out: &mut dyn Write) -> io::Result<()> {
    use quick_junit::{NonSuccessKind, Report, TestCase, TestCaseStatus, TestSuite};
    let mut suite = TestSuite::new("sopkit check");
    let mut with_findings = std::collections::BTreeSet::new();
    for f in findings {
        with_findings.insert(f.path.as_str());
        let mut status = TestCaseStatus::non_success(NonSuccessKind::Failure);
        status.set_message(f.message.as_str());
        status.set_type(format!("{}[{}]", f.severity.as_str(), f.rule));
        status.set_description(format!("{}: {}\nhelp: {}", location(f), f.message, f.help));
        let mut case = TestCase::new(format!("{} {}", f.rule, location(f)), status);
        case.set_classname(f.path.as_str());
        suite.add_test_case(case);
    }
    // Files without findings pass, so a clean run is not an empty report.
    for doc in &cx.corpus.docs {
        if !with_findings.contains(doc.path()) {
            let mut case = TestCase::new(
                format!("links and references {}", doc.path()),
                TestCaseStatus::success(),
            );
            case.set_classname(doc.path());
            suite.add_test_case(case);
        }
    }
    let mut report = Report::new("sopkit");
    report.add_test_suite(suite);
    report.serialize(&mut *out).map_err(io::Error::other)?;
    writeln!(out)
}

/// Every rule, for documentation and SARIF.
pub fn rules() -> &'static [Rule] {
    Rule::ALL
}

/// Whether to print in colour: only to a terminal (`terminal`), and never when `NO_COLOR`
/// is set (<https://no-color.org>).
pub fn colour(terminal: bool) -> bool {
    terminal && std::env::var_os("NO_COLOR").is_none()
}
