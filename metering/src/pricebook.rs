//! The price book: prices per meter with effective dates, from TOML.
//!
//! ```toml
//! currency = "USD"
//!
//! [[period]]
//! effective = 2026-01-01            # a date (midnight UTC) or an RFC 3339 time
//! [period.prices]
//! "instance.vcpu" = "0.0000112"     # per unit of the meter (vCPU-second)
//! "instance.memory" = "0.0000015"
//!
//! [[period]]
//! effective = 2026-03-15T00:00:00Z  # a price change: later periods override
//! [period.prices]                   # only the meters they list
//! "instance.vcpu" = "0.0000100"
//! ```
//!
//! Prices are decimal *strings* (a TOML float is refused: money is never a
//! float). A meter's price at time `t` is the one from the latest period
//! whose `effective` is `<= t` and that lists the meter; a meter with no such
//! period is free (price 0) at `t`. Usage is priced at the time it happened,
//! so a change mid-month splits that month's line items at the effective
//! time.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::calendar::{UnixMillis, format_rfc3339, parse_time};
use crate::error::{MeteringError, Result};
use crate::meter;
use crate::money::UnitPrice;

/// The default price book shipped with minicloud
/// (`metering/pricebook.default.toml`).
pub const DEFAULT_PRICE_BOOK: &str = include_str!("../pricebook.default.toml");

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBook {
    currency: String,
    #[serde(default)]
    description: Option<String>,
    period: Vec<RawPeriod>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPeriod {
    effective: toml::Value,
    #[serde(default)]
    prices: BTreeMap<String, String>,
}

/// One price of one meter from a time on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PriceEntry {
    /// Meter key.
    pub meter: String,
    /// When the price takes effect (inclusive).
    pub effective: UnixMillis,
    /// Price per unit of the meter.
    pub unit_price: UnitPrice,
}

/// Prices per meter over time, in one currency.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PriceBook {
    currency: String,
    description: Option<String>,
    /// Per meter: (effective, price), sorted by effective.
    schedules: HashMap<String, Vec<(UnixMillis, UnitPrice)>>,
    /// Every effective time of any meter, sorted.
    changes: Vec<UnixMillis>,
}

impl PriceBook {
    /// Parses and validates a price book.
    pub fn from_toml_str(text: &str) -> Result<Self> {
        let raw: RawBook =
            toml::from_str(text).map_err(|e| MeteringError::PriceBook(e.to_string()))?;
        let cur = raw.currency.trim();
        if cur.len() != 3 || !cur.bytes().all(|b| b.is_ascii_uppercase()) {
            return Err(MeteringError::PriceBook(format!(
                "currency {cur:?} must be an ISO 4217 code like \"USD\""
            )));
        }
        if raw.period.is_empty() {
            return Err(MeteringError::PriceBook(
                "at least one [[period]] is required".into(),
            ));
        }
        let mut schedules: HashMap<String, Vec<(UnixMillis, UnitPrice)>> = HashMap::new();
        let mut changes = BTreeSet::new();
        for (i, p) in raw.period.iter().enumerate() {
            let text = match &p.effective {
                toml::Value::Datetime(d) => d.to_string(),
                toml::Value::String(s) => s.clone(),
                other => {
                    return Err(MeteringError::PriceBook(format!(
                        "period {}: effective must be a date or time, not {}",
                        i + 1,
                        other.type_str()
                    )));
                }
            };
            let effective = parse_time(&text).map_err(|e| {
                MeteringError::PriceBook(format!("period {}: effective: {e}", i + 1))
            })?;
            if !changes.insert(effective) {
                return Err(MeteringError::PriceBook(format!(
                    "period {}: another period is already effective at {}",
                    i + 1,
                    format_rfc3339(effective)
                )));
            }
            for (key, price) in &p.prices {
                meter::lookup(key)
                    .map_err(|e| MeteringError::PriceBook(format!("period {}: {e}", i + 1)))?;
                let price: UnitPrice = price.parse().map_err(|e| {
                    MeteringError::PriceBook(format!("period {}: {key}: {e}", i + 1))
                })?;
                schedules
                    .entry(key.clone())
                    .or_default()
                    .push((effective, price));
            }
        }
        for s in schedules.values_mut() {
            s.sort_by_key(|(t, _)| *t);
        }
        Ok(PriceBook {
            currency: cur.to_owned(),
            description: raw.description,
            schedules,
            changes: changes.into_iter().collect(),
        })
    }

    /// Reads and parses a price book file.
    pub fn from_path(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| MeteringError::Io {
            path: path.to_owned(),
            source,
        })?;
        Self::from_toml_str(&text)
    }

    /// The default price book ([`DEFAULT_PRICE_BOOK`]).
    pub fn default_book() -> Result<Self> {
        Self::from_toml_str(DEFAULT_PRICE_BOOK)
    }

    /// ISO 4217 currency code of every price.
    pub fn currency(&self) -> &str {
        &self.currency
    }

    /// The book's free-text description, if any.
    pub fn description(&self) -> Option<&str> {
        self.description.as_deref()
    }

    /// The price of `meter` at `t` (zero when the book has none).
    pub fn price_at(&self, meter: &str, t: UnixMillis) -> UnitPrice {
        let Some(s) = self.schedules.get(meter) else {
            return UnitPrice::ZERO;
        };
        match s.partition_point(|(e, _)| *e <= t) {
            0 => UnitPrice::ZERO,
            i => s[i - 1].1,
        }
    }

    /// `[from, to)` cut at every price change inside it: within each piece
    /// every meter has one price.
    pub fn segments(&self, from: UnixMillis, to: UnixMillis) -> Vec<(UnixMillis, UnixMillis)> {
        let mut out = Vec::new();
        let mut start = from;
        for &c in &self.changes {
            if c > start && c < to {
                out.push((start, c));
                start = c;
            }
        }
        if start < to {
            out.push((start, to));
        }
        out
    }

    /// Every price entry, by meter then time.
    pub fn entries(&self) -> Vec<PriceEntry> {
        let mut v: Vec<PriceEntry> = self
            .schedules
            .iter()
            .flat_map(|(m, s)| {
                s.iter().map(|(t, p)| PriceEntry {
                    meter: m.clone(),
                    effective: *t,
                    unit_price: *p,
                })
            })
            .collect();
        v.sort_by(|a, b| (&a.meter, a.effective).cmp(&(&b.meter, b.effective)));
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOOK: &str = r#"
currency = "EUR"
[[period]]
effective = 2026-01-01
[period.prices]
"instance.vcpu" = "0.00001"
"instance.memory" = "0.000002"

[[period]]
effective = 2026-03-15T12:00:00Z
[period.prices]
"instance.vcpu" = "0.00002"
"#;

    #[test]
    fn prices_follow_effective_dates() {
        let b = PriceBook::from_toml_str(BOOK).unwrap();
        assert_eq!(b.currency(), "EUR");
        let change = parse_time("2026-03-15T12:00:00Z").unwrap();
        assert_eq!(
            b.price_at("instance.vcpu", change - 1).to_string(),
            "0.00001"
        );
        assert_eq!(b.price_at("instance.vcpu", change).to_string(), "0.00002");
        assert_eq!(
            b.price_at("instance.memory", change).to_string(),
            "0.000002"
        );
        assert!(
            b.price_at("instance.vcpu", parse_time("2025-12-31").unwrap())
                .is_zero()
        );
        assert!(b.price_at("volume.storage", change).is_zero());
        let march = (
            parse_time("2026-03-01").unwrap(),
            parse_time("2026-04-01").unwrap(),
        );
        assert_eq!(
            b.segments(march.0, march.1),
            vec![(march.0, change), (change, march.1)]
        );
        assert_eq!(b.segments(change, march.1), vec![(change, march.1)]);
        assert_eq!(b.entries().len(), 3);
    }

    #[test]
    fn refuses_bad_books() {
        let bad = [
            BOOK.replace("\"0.00001\"", "0.00001"),
            BOOK.replace("EUR", "euro"),
            BOOK.replace("instance.vcpu\" = \"0.00002", "instance.gpu\" = \"1"),
            BOOK.replace("2026-03-15T12:00:00Z", "2026-01-01"),
            BOOK.replace("2026-03-15T12:00:00Z", "2026-03-15T12:00:00"),
            BOOK.replace("\"0.00002\"", "\"-1\""),
            "currency = \"USD\"\nperiod = []".to_owned(),
            BOOK.replace("[period.prices]", "[period.pricez]"),
        ];
        for b in bad {
            assert!(PriceBook::from_toml_str(&b).is_err(), "{b}");
        }
    }

    #[test]
    fn default_book_parses_and_prices_every_meter() {
        let b = PriceBook::default_book().unwrap();
        let t = parse_time("2030-01-01").unwrap();
        for m in meter::CATALOG {
            assert!(b.schedules.contains_key(m.key), "{} unpriced", m.key);
            let _ = b.price_at(m.key, t);
        }
    }
}
