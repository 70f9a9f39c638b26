//! UTC time as unix milliseconds, calendar months and days.
//!
//! Every time in this crate is an `i64` count of milliseconds since
//! 1970-01-01T00:00:00Z ([`UnixMillis`]). The civil-date conversions are
//! Howard Hinnant's `days_from_civil` / `civil_from_days` (proleptic
//! Gregorian calendar, no leap seconds), so no time-zone database is needed.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::{MeteringError, Result};

/// Milliseconds since the unix epoch, UTC.
pub type UnixMillis = i64;

/// Milliseconds in one UTC day.
pub const DAY_MS: i64 = 86_400_000;

/// Earliest accepted time: 1970-01-01T00:00:00Z.
pub const MIN_TIME: UnixMillis = 0;
/// Latest accepted time (exclusive): 10000-01-01T00:00:00Z.
pub const MAX_TIME: UnixMillis = 253_402_300_800_000;

/// Days since 1970-01-01 of a civil date.
pub fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Civil date `(year, month 1-12, day 1-31)` of a day count since 1970-01-01.
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        _ => 28,
    }
}

/// Start of the UTC day containing `t`.
pub fn day_floor(t: UnixMillis) -> UnixMillis {
    t.div_euclid(DAY_MS) * DAY_MS
}

/// The date of `t` as `YYYY-MM-DD`.
pub fn format_date(t: UnixMillis) -> String {
    let (y, m, d) = civil_from_days(t.div_euclid(DAY_MS));
    format!("{y:04}-{m:02}-{d:02}")
}

/// `t` as RFC 3339 with milliseconds, e.g. `2026-03-01T12:00:00.000Z`.
pub fn format_rfc3339(t: UnixMillis) -> String {
    let ms = t.rem_euclid(DAY_MS);
    let (h, rest) = (ms / 3_600_000, ms % 3_600_000);
    let (min, rest) = (rest / 60_000, rest % 60_000);
    let (s, milli) = (rest / 1000, rest % 1000);
    format!("{}T{h:02}:{min:02}:{s:02}.{milli:03}Z", format_date(t))
}

fn bad(s: &str, why: &str) -> MeteringError {
    MeteringError::InvalidTime(format!("{s:?}: {why}"))
}

fn digits(s: &str, text: &str) -> Result<u32> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad(text, "expected digits"));
    }
    s.parse().map_err(|_| bad(text, "number out of range"))
}

fn check_range(t: UnixMillis, text: &str) -> Result<UnixMillis> {
    if (MIN_TIME..MAX_TIME).contains(&t) {
        Ok(t)
    } else {
        Err(bad(text, "outside 1970..9999"))
    }
}

/// Parses `YYYY-MM-DD` (midnight UTC), or RFC 3339
/// `YYYY-MM-DDTHH:MM:SS[.fff…](Z|±HH:MM)`, or a plain integer of unix
/// milliseconds. Fractions beyond milliseconds are truncated.
pub fn parse_time(text: &str) -> Result<UnixMillis> {
    let s = text.trim();
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        let t: i64 = s.parse().map_err(|_| bad(text, "number out of range"))?;
        return check_range(t, text);
    }
    let (date, rest) = match s.find(['T', 't', ' ']) {
        Some(i) => (&s[..i], Some(&s[i + 1..])),
        None => (s, None),
    };
    let mut parts = date.split('-');
    let (Some(y), Some(m), Some(d), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(bad(text, "expected YYYY-MM-DD"));
    };
    if y.len() != 4 || m.len() != 2 || d.len() != 2 {
        return Err(bad(text, "expected YYYY-MM-DD"));
    }
    let (y, m, d) = (
        i64::from(digits(y, text)?),
        digits(m, text)?,
        digits(d, text)?,
    );
    if !(1..=12).contains(&m) || d == 0 || d > days_in_month(y, m) {
        return Err(bad(text, "no such date"));
    }
    let mut t = days_from_civil(y, m, d) * DAY_MS;
    if let Some(rest) = rest {
        let (clock, offset_ms) = if let Some(c) = rest.strip_suffix(['Z', 'z']) {
            (c, 0)
        } else if let Some(i) = rest.rfind(['+', '-']) {
            let off = &rest[i + 1..];
            let (oh, om) = off
                .split_once(':')
                .ok_or_else(|| bad(text, "offset must be ±HH:MM"))?;
            let mins = i64::from(digits(oh, text)?) * 60 + i64::from(digits(om, text)?);
            if mins >= 24 * 60 {
                return Err(bad(text, "offset out of range"));
            }
            let sign = if rest.as_bytes()[i] == b'-' { -1 } else { 1 };
            (&rest[..i], sign * mins * 60_000)
        } else {
            return Err(bad(text, "a time needs Z or an offset"));
        };
        let (hms, frac) = match clock.split_once('.') {
            Some((a, b)) => (a, Some(b)),
            None => (clock, None),
        };
        let mut f = hms.split(':');
        let (Some(h), Some(mi), Some(sec), None) = (f.next(), f.next(), f.next(), f.next()) else {
            return Err(bad(text, "expected HH:MM:SS"));
        };
        let (h, mi, sec) = (digits(h, text)?, digits(mi, text)?, digits(sec, text)?);
        if h > 23 || mi > 59 || sec > 59 {
            return Err(bad(text, "no such time of day"));
        }
        let mut ms = 0;
        if let Some(frac) = frac {
            digits(frac, text)?;
            let mut scale = 100;
            for b in frac.bytes().take(3) {
                ms += i64::from(b - b'0') * scale;
                scale /= 10;
            }
        }
        t += (i64::from(h) * 3600 + i64::from(mi) * 60 + i64::from(sec)) * 1000 + ms - offset_ms;
    }
    check_range(t, text)
}

/// A calendar month in UTC, the billing period of an invoice.
/// Displays and parses as `YYYY-MM`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Month {
    year: i32,
    month: u8,
}

impl Month {
    /// The month `year`-`month` (1-12), if valid and within 1970..9999.
    pub fn new(year: i32, month: u32) -> Result<Self> {
        if !(1970..=9999).contains(&year) || !(1..=12).contains(&month) {
            return Err(MeteringError::InvalidTime(format!(
                "no month {year}-{month}"
            )));
        }
        Ok(Month {
            year,
            month: month as u8,
        })
    }

    /// The month containing `t`.
    pub fn containing(t: UnixMillis) -> Self {
        let (y, m, _) = civil_from_days(t.div_euclid(DAY_MS));
        Month {
            year: y as i32,
            month: m as u8,
        }
    }

    /// The year.
    pub fn year(self) -> i32 {
        self.year
    }

    /// The month number, 1-12.
    pub fn month(self) -> u32 {
        u32::from(self.month)
    }

    /// First millisecond of the month.
    pub fn start(self) -> UnixMillis {
        days_from_civil(i64::from(self.year), self.month(), 1) * DAY_MS
    }

    /// First millisecond after the month (the next month's start).
    pub fn end(self) -> UnixMillis {
        self.next().start()
    }

    /// The following month.
    pub fn next(self) -> Self {
        if self.month == 12 {
            Month {
                year: self.year + 1,
                month: 1,
            }
        } else {
            Month {
                year: self.year,
                month: self.month + 1,
            }
        }
    }

    /// The preceding month.
    pub fn prev(self) -> Self {
        if self.month == 1 {
            Month {
                year: self.year - 1,
                month: 12,
            }
        } else {
            Month {
                year: self.year,
                month: self.month - 1,
            }
        }
    }
}

impl fmt::Display for Month {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}", self.year, self.month)
    }
}

impl FromStr for Month {
    type Err = MeteringError;

    fn from_str(s: &str) -> Result<Self> {
        let err = || MeteringError::InvalidTime(format!("{s:?}: expected YYYY-MM"));
        let (y, m) = s.trim().split_once('-').ok_or_else(err)?;
        if y.len() != 4 || m.len() != 2 {
            return Err(err());
        }
        let y = digits(y, s)? as i32;
        Month::new(y, digits(m, s)?)
    }
}

impl Serialize for Month {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Month {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_round_trip_over_centuries() {
        for days in (-800_000..3_000_000).step_by(97) {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
            assert!(d >= 1 && d <= days_in_month(y, m));
        }
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
    }

    #[test]
    fn months() {
        let feb: Month = "2024-02".parse().unwrap();
        assert_eq!(feb.end() - feb.start(), 29 * DAY_MS);
        assert_eq!(feb.start(), parse_time("2024-02-01").unwrap());
        assert_eq!(
            "2023-12".parse::<Month>().unwrap().next(),
            "2024-01".parse().unwrap()
        );
        assert_eq!(Month::containing(feb.end() - 1), feb);
        assert_eq!(Month::containing(feb.end()), feb.next());
        assert_eq!(feb.prev().to_string(), "2024-01");
        assert!("2024-13".parse::<Month>().is_err());
        assert!("24-01".parse::<Month>().is_err());
    }

    #[test]
    fn parse_and_format() {
        let t = parse_time("2026-03-01T12:34:56.789Z").unwrap();
        assert_eq!(format_rfc3339(t), "2026-03-01T12:34:56.789Z");
        assert_eq!(parse_time("2026-03-01T14:34:56.789+02:00").unwrap(), t);
        assert_eq!(parse_time("2026-03-01T11:34:56.789-01:00").unwrap(), t);
        assert_eq!(parse_time(&t.to_string()).unwrap(), t);
        assert_eq!(format_date(t), "2026-03-01");
        assert_eq!(day_floor(t), parse_time("2026-03-01").unwrap());
        for bad in [
            "",
            "2026-02-30",
            "2026-3-01",
            "2026-03-01T25:00:00Z",
            "2026-03-01T10:00:00",
            "x",
            "-5",
        ] {
            assert!(parse_time(bad).is_err(), "{bad}");
        }
    }
}
