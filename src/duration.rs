//! Durations as written in SOPs and steps: a whole number and a unit (`30m`, `1d`, `365d`).

use std::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Duration {
    pub seconds: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "`{0}` is not a duration: write a whole number and a unit s, m, h, d, w or y (for example 30m, 1d, 365d)"
)]
pub struct ParseError(pub String);

impl std::str::FromStr for Duration {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
        let (num, unit) = t.split_at(split);
        let n: u64 = num.parse().map_err(|_| ParseError(s.to_string()))?;
        let mult = match unit {
            "s" => 1,
            "m" => 60,
            "h" => 3600,
            "d" => 86_400,
            "w" => 7 * 86_400,
            "y" => 365 * 86_400,
            _ => return Err(ParseError(s.to_string())),
        };
        let seconds = n
            .checked_mul(mult)
            .ok_or_else(|| ParseError(s.to_string()))?;
        Ok(Duration { seconds })
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.seconds;
        for (unit, len) in [("d", 86_400), ("h", 3600), ("m", 60)] {
            if s != 0 && s.is_multiple_of(len) {
                return write!(f, "{}{unit}", s / len);
            }
        }
        write!(f, "{s}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units_and_rejects_junk() {
        assert_eq!("30m".parse::<Duration>().unwrap().seconds, 1800);
        assert_eq!("365d".parse::<Duration>().unwrap().seconds, 365 * 86_400);
        assert_eq!("1y".parse::<Duration>().unwrap(), "365d".parse().unwrap());
        for bad in [
            "",
            "d",
            "5",
            "5x",
            "-1d",
            "1.5d",
            "99999999999999999999d",
            "18446744073709551615y",
        ] {
            assert!(bad.parse::<Duration>().is_err(), "{bad}");
        }
        assert_eq!("48h".parse::<Duration>().unwrap().to_string(), "2d");
    }
}
