//! `sopkit evidence export --format in-toto`: each run that counts (its records intact and
//! attributed) as an in-toto Statement (v1) with the link predicate (v0.3), wrapped in a DSSE
//! envelope signed with the exporter's ed25519 key, one envelope per line (the `.intoto.jsonl`
//! bundle form), so that in-toto and DSSE verifiers check it without sopkit.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use base64::Engine;
use serde_json::json;

use super::signed::Judge;
use super::{Kind, Record};

/// DSSE's payload type for in-toto statements.
pub const PAYLOAD_TYPE: &str = "application/vnd.in-toto+json";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {message}")]
    Key { path: PathBuf, message: String },
}

/// DSSE's pre-authentication encoding of a payload: what the signature covers.
pub fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "DSSEv1 {} {} {} ",
        payload_type.len(),
        payload_type,
        payload.len()
    )
    .into_bytes();
    out.extend_from_slice(payload);
    out
}

/// An exporter's signing key: an unencrypted OpenSSH ed25519 private key file.
pub struct ExportKey {
    key: ed25519_dalek::SigningKey,
    /// `SHA256:…`, as `ssh-keygen -l` shows it.
    pub keyid: String,
}

impl ExportKey {
    pub fn read(path: &Path) -> Result<ExportKey, Error> {
        let err = |message: String| Error::Key {
            path: path.to_path_buf(),
            message,
        };
        let key = ssh_key::PrivateKey::read_openssh_file(path).map_err(|e| err(e.to_string()))?;
        if key.is_encrypted() {
            return Err(err(
                "the key is encrypted: export signs with an unencrypted ed25519 key (one made \
                 for the purpose, `ssh-keygen -t ed25519 -N ''`)"
                    .into(),
            ));
        }
        let Some(pair) = key.key_data().ed25519() else {
            return Err(err(format!(
                "a {} key: DSSE envelopes are signed with ed25519 keys",
                key.algorithm()
            )));
        };
        Ok(ExportKey {
            key: ed25519_dalek::SigningKey::from_bytes(&pair.private.to_bytes()),
            keyid: key
                .public_key()
                .fingerprint(ssh_key::HashAlg::Sha256)
                .to_string(),
        })
    }
}

/// One envelope per run that counts in the ledger at `evidence`, oldest first.
pub fn in_toto(evidence: &Path, judge: &Judge, key: &ExportKey) -> Vec<serde_json::Value> {
    use ed25519_dalek::Signer;
    let (_, records) =
        super::verify::verify_and_read(evidence, std::collections::BTreeSet::new, judge);
    // (writer, run id) → its start and end records.
    type Run<'a> = (Option<&'a Record>, Option<&'a Record>);
    let mut runs: BTreeMap<(String, String), Run<'_>> = BTreeMap::new();
    for r in &records {
        let run = runs.entry((r.writer.clone(), r.run.clone())).or_default();
        match r.kind {
            Kind::Start => run.0 = Some(r),
            Kind::End => run.1 = Some(r),
        }
    }
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut out: Vec<(String, serde_json::Value)> = Vec::new();
    for ((writer, _), (start, end)) in runs {
        // A run with no start record is not one (`status` says so too).
        let Some(start) = start else { continue };
        let statement = statement(&writer, start, end);
        let payload = serde_json::to_vec(&statement).expect("JSON values serialize");
        let sig = key.key.sign(&pae(PAYLOAD_TYPE, &payload));
        out.push((
            start.started.clone(),
            json!({
                "payloadType": PAYLOAD_TYPE,
                "payload": b64.encode(&payload),
                "signatures": [{ "keyid": key.keyid, "sig": b64.encode(sig.to_bytes()) }],
            }),
        ));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out.into_iter().map(|(_, e)| e).collect()
}

fn file_of(writer: &str, r: &Record) -> serde_json::Value {
    json!({
        "name": format!("evidence/{writer}/{}", super::record_name(r.seq)),
        "digest": { "sha256": crate::digest::sha256_hex(&r.to_bytes()) },
    })
}

/// The in-toto Statement of one run: its artifacts (and its records) as subjects, and a link
/// predicate naming the step, how it ended, and who ran which SOP revision.
fn statement(writer: &str, start: &Record, end: Option<&Record>) -> serde_json::Value {
    let last = end.unwrap_or(start);
    let mut subject: Vec<serde_json::Value> = last
        .files
        .iter()
        .filter(|f| f.role == "artifact")
        .map(|f| json!({ "name": f.name, "digest": { "sha256": f.sha256 } }))
        .collect();
    subject.push(file_of(writer, start));
    if let Some(e) = end {
        subject.push(file_of(writer, e));
    }
    let logs: serde_json::Map<String, serde_json::Value> = last
        .files
        .iter()
        .filter(|f| f.role != "artifact")
        .map(|f| {
            (
                f.role.clone(),
                json!({ "name": f.name, "size": f.size, "digest": { "sha256": f.sha256 } }),
            )
        })
        .collect();
    let who = last.attribution.as_ref().map(|a| a.label());
    json!({
        "_type": "https://in-toto.io/Statement/v1",
        "subject": subject,
        "predicateType": "https://in-toto.io/attestation/link/v0.3",
        "predicate": {
            "name": start.step,
            "command": [],
            "materials": [],
            "byproducts": {
                "outcome": end.and_then(|e| e.outcome).map_or("interrupted", |o| o.as_str()),
                "exit-status": end.and_then(|e| e.exit_status),
                "verification": last.verification,
                "logs": logs,
            },
            "environment": {
                "sop": start.sop,
                "sop_path": start.sop_path,
                "version": start.version,
                "allow_draft": start.allow_draft,
                "commit": start.commit,
                "content_sha256": start.content_sha256,
                "target": start.target,
                "role": start.role,
                "writer": writer,
                "operator": start.operator,
                "host": start.host,
                "signed_by": who,
                "started": start.started,
                "ended": end.and_then(|e| e.ended.clone()),
                "run": start.run,
                "sopkit_version": start.sopkit_version,
            },
        },
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn pae_is_dsse_v1() {
        // The example of the DSSE specification (protocol.md).
        assert_eq!(
            super::pae("http://example.com/HelloWorld", b"hello world"),
            b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"
        );
    }
}
