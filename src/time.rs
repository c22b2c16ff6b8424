//! Time, for all of sopkit: the one clock and the one RFC 3339 format.
//!
//! The current time. Only a test build (cargo feature `test-clock`) lets tests pin it, with
//! `SOPKIT_TEST_NOW` (RFC 3339) or `SOPKIT_NOW` (a date); the shipped binary reads the
//! system clock alone, so nobody silences a due review or an overdue SLO by setting a variable.

use ::time::format_description::well_known::Rfc3339;

type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

fn system() -> i64 {
    ::time::OffsetDateTime::now_utc().unix_timestamp()
}

/// Now, as UTC seconds since the epoch. A test build honours `SOPKIT_TEST_NOW`.
pub fn now() -> i64 {
    now_in(&process_env)
}

/// The time reviews are judged against. A test build honours `SOPKIT_NOW` (`YYYY-MM-DD`).
pub fn review_now() -> i64 {
    review_now_in(&process_env)
}

/// `unix` (seconds since the epoch) as RFC 3339 UTC; `@SECONDS` where no calendar date
/// can hold it.
pub fn rfc3339(unix: i64) -> String {
    ::time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| format!("@{unix}"))
}

/// An RFC 3339 time as seconds since the epoch.
pub fn parse_rfc3339(text: &str) -> Option<i64> {
    ::time::OffsetDateTime::parse(text, &Rfc3339)
        .ok()
        .map(|t| t.unix_timestamp())
}

/// Now, as RFC 3339 UTC to the second (`2026-01-02T03:04:05Z`), as evidence records it.
pub fn now_rfc3339() -> String {
    rfc3339(now())
}

/// Now, compact for file names (`20260102T030405Z`).
pub fn now_compact() -> String {
    let fmt = ::time::macros::format_description!("[year][month][day]T[hour][minute][second]Z");
    ::time::OffsetDateTime::from_unix_timestamp(now())
        .ok()
        .and_then(|t| t.format(fmt).ok())
        .unwrap_or_default()
}

/// The UTC calendar date of `unix`.
pub fn date_of(unix: i64) -> ::time::Date {
    ::time::OffsetDateTime::from_unix_timestamp(unix).map_or(::time::Date::MIN, |d| d.date())
}

fn now_in(env: Env<'_>) -> i64 {
    if cfg!(feature = "test-clock")
        && let Some(s) = env("SOPKIT_TEST_NOW")
        && let Ok(t) = ::time::OffsetDateTime::parse(&s, &Rfc3339)
    {
        return t.unix_timestamp();
    }
    system()
}

fn review_now_in(env: Env<'_>) -> i64 {
    if cfg!(feature = "test-clock")
        && let Some(v) = env("SOPKIT_NOW")
        && let Ok(d) = ::time::Date::parse(
            v.trim(),
            ::time::macros::format_description!("[year]-[month]-[day]"),
        )
    {
        return d.midnight().assume_utc().unix_timestamp();
    }
    system()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_test_build_lets_the_environment_set_the_clock() {
        let env = |name: &str| match name {
            "SOPKIT_TEST_NOW" => Some("2001-02-03T04:05:06Z".to_string()),
            "SOPKIT_NOW" => Some("2001-02-03".to_string()),
            _ => None,
        };
        let pinned = cfg!(feature = "test-clock");
        assert_eq!(now_in(&env) == 981_173_106, pinned);
        assert_eq!(review_now_in(&env) == 981_158_400, pinned);
        assert!(now_in(&|_| None) > 981_173_106, "the system clock");
    }

    #[test]
    fn rfc3339_round_trips_and_names_what_no_date_can_hold() {
        assert_eq!(rfc3339(981_173_106), "2001-02-03T04:05:06Z");
        assert_eq!(parse_rfc3339("2001-02-03T04:05:06Z"), Some(981_173_106));
        assert_eq!(parse_rfc3339("2001-02-03"), None);
        assert_eq!(rfc3339(i64::MAX), format!("@{}", i64::MAX));
    }
}
