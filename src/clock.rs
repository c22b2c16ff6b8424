//! The current time. Only a test build (cargo feature `test-clock`) lets tests pin it, with
//! `SOPKIT_TEST_NOW` (RFC 3339) or `SOPKIT_NOW` (a date); the shipped binary reads the
//! system clock alone, so nobody silences a due review or an overdue SLO by setting a variable.

type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

fn system() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// Now, as UTC seconds since the epoch. A test build honours `SOPKIT_TEST_NOW`.
pub fn now() -> i64 {
    now_in(&process_env)
}

/// The time reviews are judged against. A test build honours `SOPKIT_NOW` (`YYYY-MM-DD`).
pub fn review_now() -> i64 {
    review_now_in(&process_env)
}

fn now_in(env: Env<'_>) -> i64 {
    if cfg!(feature = "test-clock")
        && let Some(s) = env("SOPKIT_TEST_NOW")
        && let Ok(t) =
            time::OffsetDateTime::parse(&s, &time::format_description::well_known::Rfc3339)
    {
        return t.unix_timestamp();
    }
    system()
}

fn review_now_in(env: Env<'_>) -> i64 {
    if cfg!(feature = "test-clock")
        && let Some(v) = env("SOPKIT_NOW")
        && let Ok(d) = time::Date::parse(
            v.trim(),
            time::macros::format_description!("[year]-[month]-[day]"),
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
}
