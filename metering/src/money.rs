//! Exact money: integer micro-units, decimal unit prices, one rounding rule.
//!
//! **Rounding rule (the only one in the crate):** a line item's amount is
//! `quantity × unit price`, computed exactly as a rational number and then
//! rounded *once*, half to even, to the currency's micro-unit (0.000001).
//! Totals are exact integer sums of rounded line amounts. Nothing is ever a
//! float.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::{MeteringError, Result};

/// Micro-units in one currency unit.
pub const MICROS_PER_UNIT: i64 = 1_000_000;

/// An amount of money in integer micro-units (1 USD = 1,000,000).
/// Displays and serializes as a decimal string with six places, e.g.
/// `"12.345678"`, so that JSON consumers never see a float.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Money(i64);

impl Money {
    /// Zero.
    pub const ZERO: Money = Money(0);

    /// From micro-units.
    pub const fn from_micros(micros: i64) -> Self {
        Money(micros)
    }

    /// The amount in micro-units.
    pub const fn micros(self) -> i64 {
        self.0
    }

    /// Exact sum, or an overflow error.
    pub fn checked_add(self, other: Money) -> Result<Money> {
        self.0
            .checked_add(other.0)
            .map(Money)
            .ok_or(MeteringError::Overflow("money sum"))
    }

    /// The amount rounded half to even to cents, as a string with two
    /// places (for display only; stored amounts keep micro-units).
    pub fn to_cents_string(self) -> String {
        let cents = div_round_half_even(i128::from(self.0), 10_000);
        let sign = if cents < 0 { "-" } else { "" };
        let c = cents.unsigned_abs();
        format!("{sign}{}.{:02}", c / 100, c % 100)
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.0 < 0 { "-" } else { "" };
        let m = self.0.unsigned_abs();
        write!(f, "{sign}{}.{:06}", m / 1_000_000, m % 1_000_000)
    }
}

impl FromStr for Money {
    type Err = MeteringError;

    /// Parses a decimal with at most six places, e.g. `100`, `-2.5`.
    fn from_str(s: &str) -> Result<Self> {
        let d = Decimal::parse(s)?;
        if d.scale > 6 {
            return Err(MeteringError::InvalidAmount(
                s.to_owned(),
                "more than 6 decimal places",
            ));
        }
        let micros = d
            .mantissa
            .checked_mul(10i128.pow(6 - d.scale))
            .and_then(|m| i64::try_from(m).ok())
            .ok_or(MeteringError::InvalidAmount(s.to_owned(), "too large"))?;
        Ok(Money(micros))
    }
}

impl Serialize for Money {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Money {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// A parsed non-float decimal: `mantissa × 10^-scale`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Decimal {
    mantissa: i128,
    scale: u32,
}

impl Decimal {
    fn parse(text: &str) -> Result<Decimal> {
        let bad = |why| MeteringError::InvalidAmount(text.to_owned(), why);
        let s = text.trim();
        let (neg, s) = match s.strip_prefix('-') {
            Some(r) => (true, r),
            None => (false, s.strip_prefix('+').unwrap_or(s)),
        };
        let (int, frac) = s.split_once('.').unwrap_or((s, ""));
        if int.is_empty() && frac.is_empty() {
            return Err(bad("empty"));
        }
        if !int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit()) {
            return Err(bad("expected a decimal number like 0.0001"));
        }
        if frac.len() > 18 {
            return Err(bad("more than 18 decimal places"));
        }
        let mut mantissa: i128 = 0;
        for b in int.bytes().chain(frac.bytes()) {
            mantissa = mantissa
                .checked_mul(10)
                .and_then(|m| m.checked_add(i128::from(b - b'0')))
                .filter(|m| *m < 10i128.pow(30))
                .ok_or(bad("too many digits"))?;
        }
        Ok(Decimal {
            mantissa: if neg { -mantissa } else { mantissa },
            scale: frac.len() as u32,
        })
    }
}

/// A price per unit of a meter: an exact decimal, non-negative, with at most
/// 18 decimal places (e.g. `0.0000112` per vCPU-second). Serializes as a
/// string.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct UnitPrice {
    mantissa: i128,
    scale: u32,
}

impl UnitPrice {
    /// The price zero (an unpriced meter).
    pub const ZERO: UnitPrice = UnitPrice {
        mantissa: 0,
        scale: 0,
    };

    /// The exact amount of `base_quantity` base units of a meter with
    /// `base_per_unit` base units per priced unit, rounded once (half to
    /// even) to micro-units. This is the crate's only rounding.
    pub fn amount(self, base_quantity: i128, base_per_unit: i64) -> Result<Money> {
        let num = base_quantity
            .checked_mul(self.mantissa)
            .and_then(|n| n.checked_mul(i128::from(MICROS_PER_UNIT)))
            .ok_or(MeteringError::Overflow("line amount"))?;
        let den = i128::from(base_per_unit)
            .checked_mul(10i128.pow(self.scale))
            .ok_or(MeteringError::Overflow("line amount"))?;
        if den <= 0 {
            return Err(MeteringError::Overflow("line amount (unit)"));
        }
        i64::try_from(div_round_half_even(num, den))
            .map(Money)
            .map_err(|_| MeteringError::Overflow("line amount"))
    }

    /// `base_quantity × price` as an integer at [`EXACT_SCALE`] decimal
    /// places of currency × base units (exact; add several, then
    /// [`round_exact`] once).
    pub(crate) fn exact(self, base_quantity: i128) -> Result<i128> {
        base_quantity
            .checked_mul(self.mantissa)
            .and_then(|n| n.checked_mul(10i128.pow(EXACT_SCALE - self.scale)))
            .ok_or(MeteringError::Overflow("exact amount"))
    }

    /// True for the zero price.
    pub fn is_zero(self) -> bool {
        self.mantissa == 0
    }
}

impl FromStr for UnitPrice {
    type Err = MeteringError;

    fn from_str(s: &str) -> Result<Self> {
        let d = Decimal::parse(s)?;
        if d.mantissa < 0 {
            return Err(MeteringError::InvalidAmount(
                s.to_owned(),
                "prices cannot be negative",
            ));
        }
        // Canonical form: no trailing zeros, so equal prices compare equal.
        let (mut mantissa, mut scale) = (d.mantissa, d.scale);
        while scale > 0 && mantissa % 10 == 0 {
            mantissa /= 10;
            scale -= 1;
        }
        Ok(UnitPrice { mantissa, scale })
    }
}

impl fmt::Display for UnitPrice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&format_scaled(self.mantissa, self.scale))
    }
}

impl Serialize for UnitPrice {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for UnitPrice {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

fn format_scaled(mantissa: i128, scale: u32) -> String {
    let sign = if mantissa < 0 { "-" } else { "" };
    let m = mantissa.unsigned_abs();
    if scale == 0 {
        return format!("{sign}{m}");
    }
    let p = 10u128.pow(scale);
    format!("{sign}{}.{:0width$}", m / p, m % p, width = scale as usize)
}

/// Decimal places of [`UnitPrice::exact`] sums (the most a price may have).
pub(crate) const EXACT_SCALE: u32 = 18;

/// Rounds an exact sum from [`UnitPrice::exact`] of one meter (with
/// `base_per_unit`) once, half to even, to micro-units.
pub(crate) fn round_exact(exact: i128, base_per_unit: i64) -> Result<Money> {
    let den = i128::from(base_per_unit.max(1)) * 10i128.pow(EXACT_SCALE - 6);
    i64::try_from(div_round_half_even(exact, den))
        .map(Money)
        .map_err(|_| MeteringError::Overflow("amount"))
}

/// `num / den` rounded half to even; `den` must be positive.
pub fn div_round_half_even(num: i128, den: i128) -> i128 {
    let q = num.div_euclid(den);
    let r = num.rem_euclid(den);
    match (2 * r).cmp(&den) {
        std::cmp::Ordering::Less => q,
        std::cmp::Ordering::Greater => q + 1,
        std::cmp::Ordering::Equal => q + (q & 1),
    }
}

/// A base quantity in priced units, as a decimal string rounded half to
/// even to at most nine places, trailing zeros removed (display only: every
/// computation uses the exact base quantity).
pub fn format_quantity(base: i128, base_per_unit: i64) -> String {
    const PLACES: u32 = 9;
    let scaled = div_round_half_even(
        base.saturating_mul(10i128.pow(PLACES)),
        i128::from(base_per_unit.max(1)),
    );
    let s = format_scaled(scaled, PLACES);
    let s = s.trim_end_matches('0');
    s.strip_suffix('.').unwrap_or(s).to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn half_even() {
        assert_eq!(div_round_half_even(5, 2), 2);
        assert_eq!(div_round_half_even(7, 2), 4);
        assert_eq!(div_round_half_even(-5, 2), -2);
        assert_eq!(div_round_half_even(-7, 2), -4);
        assert_eq!(div_round_half_even(10, 3), 3);
        assert_eq!(div_round_half_even(11, 3), 4);
    }

    #[test]
    fn money_text() {
        assert_eq!(Money::from_micros(12_345_678).to_string(), "12.345678");
        assert_eq!(Money::from_micros(-5).to_string(), "-0.000005");
        assert_eq!("12.5".parse::<Money>().unwrap().micros(), 12_500_000);
        assert_eq!("-0.000001".parse::<Money>().unwrap().micros(), -1);
        assert!("1.0000001".parse::<Money>().is_err());
        assert!("1e3".parse::<Money>().is_err());
        assert!("".parse::<Money>().is_err());
        assert_eq!(Money::from_micros(1_005_000).to_cents_string(), "1.00");
        assert_eq!(Money::from_micros(1_015_000).to_cents_string(), "1.02");
        assert_eq!(
            serde_json::to_string(&Money::from_micros(1)).unwrap(),
            "\"0.000001\""
        );
    }

    #[test]
    fn unit_price_amounts_are_exact() {
        let p: UnitPrice = "0.0000112".parse().unwrap();
        assert_eq!(p.to_string(), "0.0000112");
        // 75 vCPU-seconds = 75,000 vCPU-ms at 0.0000112 per vCPU-second = 0.00084
        assert_eq!(p.amount(75_000, 1000).unwrap().micros(), 840);
        // 1 vCPU-ms: 0.0000000112 → rounds to 0 micros
        assert_eq!(p.amount(1, 1000).unwrap().micros(), 0);
        // half-even at exactly half a micro
        let half: UnitPrice = "0.0000005".parse().unwrap();
        assert_eq!(half.amount(1, 1).unwrap().micros(), 0);
        assert_eq!(half.amount(3, 1).unwrap().micros(), 2);
        assert_eq!("1.50".parse::<UnitPrice>().unwrap(), "1.5".parse().unwrap());
        assert!("-1".parse::<UnitPrice>().is_err());
        assert!("0.1234567890123456789".parse::<UnitPrice>().is_err());
        assert!(p.amount(i128::MAX / 2, 1).is_err());
        // The exact path agrees with the one-shot path.
        let e = p.exact(75_000).unwrap() + p.exact(25_000).unwrap();
        assert_eq!(
            round_exact(e, 1000).unwrap(),
            p.amount(100_000, 1000).unwrap()
        );
    }

    #[test]
    fn quantities() {
        assert_eq!(format_quantity(75_000, 1000), "75");
        assert_eq!(format_quantity(75_500, 1000), "75.5");
        assert_eq!(format_quantity(256 * 1000, 1024 * 1000), "0.25");
        assert_eq!(format_quantity(1, 3), "0.333333333");
        assert_eq!(format_quantity(0, 1000), "0");
    }
}
