//! The trailers of an approval commit: which SOPs (by id and by the SHA-256 of the exact
//! content approved) and the meaning of the signature. Written by `sopkit approve`, read back
//! from history by verification.
//!
//! ```text
//! Approve IT-245 (approved)
//!
//! Optional comment.
//!
//! Sopkit-Approves: IT-245 sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
//! Sopkit-Meaning: approved
//! ```

pub const APPROVES: &str = "Sopkit-Approves";
pub const MEANING: &str = "Sopkit-Meaning";

/// One approved SOP revision.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Approved {
    pub sop: String,
    /// Lower-case hex SHA-256 of the SOP file's bytes.
    pub sha256: String,
}

/// What an approval commit says.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Approval {
    pub approves: Vec<Approved>,
    pub meaning: String,
}

/// The trailer block of a commit message: its last paragraph (after line ends are made
/// `\n`), when every line of it is a `Key: value` trailer (a line starting with white space
/// continues the one before, as git allows) and a paragraph comes before it. Anything less is
/// no trailer block: `Key: value` lines in the middle of a text never count.
fn trailers(message: &str) -> Vec<(String, String)> {
    let normal = message.replace("\r\n", "\n").replace('\r', "\n");
    let trimmed = normal.trim_end();
    let Some((_, last)) = trimmed.rsplit_once("\n\n") else {
        return Vec::new();
    };
    let mut out: Vec<(String, String)> = Vec::new();
    for line in last.lines() {
        if line.starts_with([' ', '\t']) {
            let Some((_, v)) = out.last_mut() else {
                return Vec::new();
            };
            v.push(' ');
            v.push_str(line.trim());
            continue;
        }
        let Some((k, v)) = line.split_once(':') else {
            return Vec::new();
        };
        if k.is_empty() || !k.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
            return Vec::new();
        }
        out.push((k.to_string(), v.trim().to_string()));
    }
    out
}

/// Parses the approval trailers of a commit message; `None` when it has none. Malformed
/// `Sopkit-Approves` values are returned as errors so they can be reported.
pub fn parse(message: &str) -> Option<Result<Approval, String>> {
    let t = trailers(message);
    if !t
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case(APPROVES) || k.eq_ignore_ascii_case(MEANING))
    {
        return None;
    }
    let mut approves = Vec::new();
    let mut meanings = Vec::new();
    for (k, v) in t {
        if k.eq_ignore_ascii_case(APPROVES) {
            let mut parts = v.split_whitespace();
            let (Some(sop), Some(hash), None) = (parts.next(), parts.next(), parts.next()) else {
                return Some(Err(format!("`{APPROVES}: {v}` is not `SOP-ID sha256:HEX`")));
            };
            let Some(hex) = hash
                .strip_prefix("sha256:")
                .filter(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
            else {
                return Some(Err(format!(
                    "`{hash}` is not `sha256:` followed by 64 hex digits"
                )));
            };
            approves.push(Approved {
                sop: sop.to_string(),
                sha256: hex.to_ascii_lowercase(),
            });
        } else if k.eq_ignore_ascii_case(MEANING) {
            meanings.push(v.to_string());
        }
    }
    match (approves.is_empty(), meanings.as_slice()) {
        (true, _) => Some(Err(format!("`{MEANING}` without any `{APPROVES}` trailer"))),
        (false, [m]) => Some(Ok(Approval {
            approves,
            meaning: m.clone(),
        })),
        (false, []) => Some(Err(format!("no `{MEANING}` trailer"))),
        (false, _) => Some(Err(format!("more than one `{MEANING}` trailer"))),
    }
}

/// The message `sopkit approve` commits.
pub fn message(approval: &Approval, comment: Option<&str>) -> String {
    let ids: Vec<&str> = approval.approves.iter().map(|a| a.sop.as_str()).collect();
    let mut m = format!("Approve {} ({})\n\n", ids.join(", "), approval.meaning);
    if let Some(c) = comment.map(str::trim).filter(|c| !c.is_empty()) {
        m.push_str(c);
        m.push_str("\n\n");
    }
    for a in &approval.approves {
        m.push_str(&format!("{APPROVES}: {} sha256:{}\n", a.sop, a.sha256));
    }
    m.push_str(&format!("{MEANING}: {}\n", approval.meaning));
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let a = Approval {
            approves: vec![Approved {
                sop: "IT-245".into(),
                sha256: "ab".repeat(32),
            }],
            meaning: "approved".into(),
        };
        let m = message(&a, Some("Looks right.\n\nSecond: paragraph"));
        assert_eq!(parse(&m), Some(Ok(a)));
        assert_eq!(parse("Fix a typo\n\nSigned-off-by: x <x@y>"), None);
    }

    #[test]
    fn malformed() {
        assert!(
            parse("x\n\nSopkit-Approves: IT-1 md5:abc\nSopkit-Meaning: approved")
                .unwrap()
                .is_err()
        );
        assert!(
            parse(&format!(
                "x\n\nSopkit-Approves: IT-1 sha256:{}",
                "a".repeat(64)
            ))
            .unwrap()
            .is_err()
        );
        assert!(parse("x\n\nSopkit-Meaning: approved").unwrap().is_err());
    }

    #[test]
    fn only_a_well_formed_last_paragraph_is_a_trailer_block() {
        let hash = "ab".repeat(32);
        let block = format!("Sopkit-Approves: IT-1 sha256:{hash}\nSopkit-Meaning: approved");
        // CRLF line ends: the body's lines are not a trailer block; the real one still is.
        let crlf = format!(
            "Fix\r\n\r\nSopkit-Approves: IT-1 sha256:{hash}\r\nSopkit-Meaning: approved\r\n\r\nThanks"
        );
        assert_eq!(
            parse(&crlf),
            None,
            "trailers in the middle of a CRLF message"
        );
        let crlf_block = format!("Approve IT-1\r\n\r\n{}", block.replace('\n', "\r\n"));
        assert!(matches!(parse(&crlf_block), Some(Ok(_))));
        // A last paragraph that mixes prose and trailer lines is no trailer block.
        let mixed = format!("Approve\n\nI looked at it.\n{block}");
        assert_eq!(parse(&mixed), None);
        // A message that is only trailers (no subject paragraph before them) carries none.
        assert_eq!(parse(&block), None);
        // A folded trailer value continues the line before.
        let folded =
            format!("Approve\n\nSopkit-Approves: IT-1\n  sha256:{hash}\nSopkit-Meaning: approved");
        assert_eq!(parse(&folded).unwrap().unwrap().approves[0].sop, "IT-1");
    }
}
