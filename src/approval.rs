//! Approvals: signed git commits as electronic signatures.

pub mod approve;
pub mod cache;
#[cfg(feature = "gpgme")]
pub mod gnupg;
pub mod history;
pub mod policy;
pub mod signature;
pub mod timeline;
pub mod trailer;

use history::SopHistory;

/// Formats seconds since the epoch as `YYYY-MM-DD HH:MM:SS UTC`.
pub fn utc(t: i64) -> String {
    let fmt =
        time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second] UTC");
    time::OffsetDateTime::from_unix_timestamp(t)
        .ok()
        .and_then(|d| d.format(fmt).ok())
        .unwrap_or_else(|| t.to_string())
}

/// The human form of `sopkit history`.
pub fn render_history(sop: &SopHistory) -> String {
    let mut s = format!("{}\n", sop.id);
    for r in &sop.revisions {
        let state = match (r.version, r.effective_time) {
            (Some(v), Some(t)) => format!("version {v}, effective {}", utc(t)),
            _ => format!("draft ({})", r.missing_label()),
        };
        s.push_str(&format!(
            "  revision {}  {}  {}  {}  {}\n    \"{}\"  {}  sha256:{}\n",
            r.number,
            r.commit.get(..12).unwrap_or(&r.commit),
            utc(r.time),
            r.author,
            state,
            r.summary,
            r.path,
            r.sha256.get(..16).unwrap_or(&r.sha256)
        ));
        for g in &r.signatures {
            s.push_str(&format!(
                "    - {:<12} {} ({})  {}  {}  key {}  {}\n",
                g.meaning,
                g.name
                    .as_deref()
                    .or(g.signer.as_deref())
                    .unwrap_or("unknown"),
                g.role.as_deref().unwrap_or("no role"),
                utc(g.time),
                g.commit.get(..12).unwrap_or(&g.commit),
                g.fingerprint.as_deref().unwrap_or("-"),
                g.status.as_str()
            ));
        }
    }
    s
}
