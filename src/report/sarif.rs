//! SARIF 2.1.0 output: one run, every rule in the driver, one result per finding with a
//! physical location. Written with serde over the few SARIF objects we emit (the crates that
//! model all of SARIF pull in far more than we use).

use std::io::{self, Write};

use serde_json::{Value, json};

use super::Finding;
use crate::diagnostic::{Rule, Severity};

pub const SCHEMA: &str = "https://json.schemastore.org/sarif-2.1.0.json";

fn level(s: Severity) -> &'static str {
    match s {
        Severity::Error => "error",
        Severity::Warning => "warning",
    }
}

pub fn document(findings: &[Finding]) -> Value {
    let rules: Vec<Value> = Rule::ALL
        .iter()
        .map(|r| {
            json!({
                "id": r.id(),
                "name": r.id(),
                "shortDescription": { "text": r.description() },
                "fullDescription": { "text": r.description() },
                "help": { "text": r.help() },
                "defaultConfiguration": { "level": level(r.severity()) },
            })
        })
        .collect();
    let results: Vec<Value> = findings
        .iter()
        .map(|f| {
            let index = Rule::ALL.iter().position(|r| r.id() == f.rule).unwrap_or(0);
            let mut region = serde_json::Map::new();
            region.insert("startLine".into(), json!(f.line.unwrap_or(1)));
            if let Some(c) = f.column {
                region.insert("startColumn".into(), json!(c));
            }
            if let (Some(el), Some(ec)) = (f.end_line, f.end_column) {
                region.insert("endLine".into(), json!(el));
                region.insert("endColumn".into(), json!(ec.max(if Some(el) == f.line { f.column.unwrap_or(1) } else { 1 })));
            }
            let related: Vec<Value> = f
                .related
                .iter()
                .enumerate()
                .map(|(i, r)| {
                    json!({
                        "id": i,
                        "message": { "text": r.message },
                        "physicalLocation": {
                            "artifactLocation": { "uri": r.path, "uriBaseId": "%SRCROOT%" },
                            "region": { "startLine": r.line.unwrap_or(1), "startColumn": r.column.unwrap_or(1) },
                        }
                    })
                })
                .collect();
            let mut result = json!({
                "ruleId": f.rule,
                "ruleIndex": index,
                "level": level(f.severity),
                "message": { "text": format!("{}\nhelp: {}", f.message, f.help) },
                "locations": [{
                    "physicalLocation": {
                        "artifactLocation": { "uri": f.path, "uriBaseId": "%SRCROOT%" },
                        "region": region,
                    }
                }],
                "partialFingerprints": { "sopkitFinding/v1": fingerprint(f) },
            });
            if !related.is_empty() {
                result["relatedLocations"] = Value::Array(related);
            }
            result
        })
        .collect();
    json!({
        "$schema": SCHEMA,
        "version": "2.1.0",
        "runs": [{
            "tool": { "driver": {
                "name": "sopkit",
                "version": crate::VERSION,
                "semanticVersion": crate::VERSION,
                "rules": rules,
            }},
            "columnKind": "unicodeCodePoints",
            "originalUriBaseIds": { "%SRCROOT%": { "description": { "text": "The root of the SOP repository." } } },
            "results": results,
        }]
    })
}

/// A stable fingerprint (rule, file, message), so code scanning tracks a finding across
/// edits that move it.
fn fingerprint(f: &Finding) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for part in [f.rule, f.path.as_str(), f.message.as_str()] {
        h.update(part.as_bytes());
        h.update([0]);
    }
    let digest = h.finalize();
    crate::digest::hex(&digest[..16])
}

pub fn write(findings: &[Finding], out: &mut dyn Write) -> io::Result<()> {
    serde_json::to_writer_pretty(&mut *out, &document(findings))?;
    writeln!(out)
}
