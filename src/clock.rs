//! The current time. Tests pin it with `SOPKIT_TEST_NOW` (RFC 3339) so retention and
//! due dates can be checked without waiting; nothing else should set that variable.

/// Now, as UTC seconds since the epoch.
pub fn now() -> i64 {
    if let Ok(s) = std::env::var("SOPKIT_TEST_NOW")
        && let Ok(t) =
            time::OffsetDateTime::parse(&s, &time::format_description::well_known::Rfc3339)
    {
        return t.unix_timestamp();
    }
    time::OffsetDateTime::now_utc().unix_timestamp()
}
