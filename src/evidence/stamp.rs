//! Trusted time: RFC 3161 timestamp tokens from a time-stamping authority (TSA). A token on
//! a writer's latest record also dates every record before it in its chain, since each
//! record names the SHA-256 of the one before: `sopkit evidence stamp` asks the TSA of
//! `[evidence] tsa_url` for a token on each writer's newest record that has none, and
//! `evidence verify` checks every token against the TSA certificate the policy trusts
//! (`[evidence] tsa_certificate`) and that no record it covers claims a later time.
//!
//! The request, the token's signature check and the reading of its time go through the
//! system `openssl ts` (as SSH signing goes through `ssh-keygen`): it is the reference
//! implementation of RFC 3161 that every TSA is tested against, and a Rust stack for
//! CMS signed data with certificate path validation would be far more code to trust.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The token file of record `seq`: the TSA's whole response, DER.
pub fn token_name(seq: u64) -> String {
    format!("{}.tsr", super::record_name(seq))
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("openssl ts {what}: {message}")]
    Openssl { what: String, message: String },
    #[error("the time-stamping authority at {url}: {message}")]
    Tsa { url: String, message: String },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

fn openssl(what: &str, args: &[&std::ffi::OsStr]) -> Result<Vec<u8>, Error> {
    let out = Command::new("openssl")
        .arg("ts")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| Error::Openssl {
            what: what.into(),
            message: e.to_string(),
        })?;
    if !out.status.success() {
        return Err(Error::Openssl {
            what: what.into(),
            message: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(out.stdout)
}

/// A certificate file for `openssl -CAfile`: the trusted bytes, written to a temporary file.
fn ca_file(ca: &[u8]) -> Result<tempfile::NamedTempFile, Error> {
    let io = |source| Error::Io {
        path: std::env::temp_dir(),
        source,
    };
    let mut f = tempfile::NamedTempFile::new().map_err(io)?;
    std::io::Write::write_all(&mut f, ca).map_err(io)?;
    Ok(f)
}

/// Checks token `tsr` over the file `data` against the TSA certificate(s) `ca`; returns the
/// time it states (seconds since the epoch).
pub fn check(data: &Path, tsr: &Path, ca: &[u8]) -> Result<i64, Error> {
    let ca = ca_file(ca)?;
    openssl(
        "-verify",
        &[
            "-verify".as_ref(),
            "-data".as_ref(),
            data.as_os_str(),
            "-in".as_ref(),
            tsr.as_os_str(),
            "-CAfile".as_ref(),
            ca.path().as_os_str(),
        ],
    )?;
    let text = openssl(
        "-reply -text",
        &[
            "-reply".as_ref(),
            "-in".as_ref(),
            tsr.as_os_str(),
            "-text".as_ref(),
        ],
    )?;
    let text = String::from_utf8_lossy(&text);
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix("Time stamp: "))
        .ok_or_else(|| Error::Openssl {
            what: "-reply -text".into(),
            message: "the token states no time".into(),
        })?;
    parse_time(line).ok_or_else(|| Error::Openssl {
        what: "-reply -text".into(),
        message: format!("cannot read the token's time `{line}`"),
    })
}

/// `Dec  6 23:40:00 2026 GMT` (OpenSSL's form; fractions of a second, if any, dropped).
fn parse_time(s: &str) -> Option<i64> {
    let mut parts = s.split_whitespace();
    let (month, day, clock, year) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let month = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ]
    .iter()
    .position(|m| *m == month)?;
    let clock = clock.split('.').next()?;
    let mut hms = clock.split(':').map(|x| x.parse::<u8>().ok());
    let (h, m, sec) = (hms.next()??, hms.next()??, hms.next()??);
    let date = time::Date::from_calendar_date(
        year.parse().ok()?,
        time::Month::try_from(month as u8 + 1).ok()?,
        day.parse().ok()?,
    )
    .ok()?;
    let t = time::Time::from_hms(h, m, sec).ok()?;
    Some(
        time::PrimitiveDateTime::new(date, t)
            .assume_utc()
            .unix_timestamp(),
    )
}

/// A token obtained: the record it is on and the time the TSA stated.
#[derive(Debug)]
pub struct Stamped {
    pub record: PathBuf,
    pub time: i64,
}

/// For each writer folder under `evidence`: when its newest record has no token, obtains one
/// from the TSA at `url`, checks it against `ca`, and writes it beside the record.
pub fn stamp(evidence: &Path, url: &str, ca: &[u8]) -> Result<Vec<Stamped>, Error> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| Error::Io { path, source }
    };
    let mut out = Vec::new();
    let mut writers: Vec<PathBuf> = std::fs::read_dir(evidence)
        .map_err(io(evidence))?
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.path())
        .collect();
    writers.sort();
    for dir in writers {
        let newest = std::fs::read_dir(&dir)
            .map_err(io(&dir))?
            .flatten()
            .filter_map(|e| super::parse_seq(&e.file_name().to_string_lossy()))
            .max();
        let Some(seq) = newest else { continue };
        let record = dir.join(super::record_name(seq));
        let token = dir.join(token_name(seq));
        if token.exists() {
            continue;
        }
        let query = openssl(
            "-query",
            &[
                "-query".as_ref(),
                "-data".as_ref(),
                record.as_os_str(),
                "-sha256".as_ref(),
                "-cert".as_ref(),
            ],
        )?;
        let tsa = |message: String| Error::Tsa {
            url: url.to_string(),
            message,
        };
        let mut response = ureq::post(url)
            .header("Content-Type", "application/timestamp-query")
            .send(&query[..])
            .map_err(|e| tsa(e.to_string()))?;
        let reply = response
            .body_mut()
            .with_config()
            .limit(1 << 20)
            .read_to_vec()
            .map_err(|e| tsa(e.to_string()))?;
        // Checked before it is kept: a token that does not verify is not evidence.
        let tmp = tempfile::NamedTempFile::new_in(&dir).map_err(io(&dir))?;
        std::fs::write(tmp.path(), &reply).map_err(io(tmp.path()))?;
        let time = check(&record, tmp.path(), ca)?;
        crate::fs_atomic::write(&token, &reply).map_err(io(&token))?;
        out.push(Stamped { record, time });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openssl_times_are_read_as_utc() {
        assert_eq!(parse_time("Dec  6 23:40:00 2026 GMT"), Some(1796600400));
        assert_eq!(parse_time("Jan 10 01:02:03.5 2027 GMT"), Some(1799542923));
        assert_eq!(parse_time("Foo 10 01:02:03 2027 GMT"), None);
    }
}
