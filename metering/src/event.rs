//! Usage events: the generic quantity record every service reports.
//!
//! The shape follows OpenMeter / Lago / CloudEvents: a unique `id` within a
//! `source`, the `project` (subject), the resource and its type, the meter
//! (event type), a quantity and the time it happened. Ingestion is
//! idempotent on `(source, id)`.

use serde::{Deserialize, Serialize};

use crate::calendar::{MAX_TIME, MIN_TIME, UnixMillis};
use crate::error::{MeteringError, Result};
use crate::meter::{self, MeterDef};

/// Source reserved for the rows metering itself writes when it settles run
/// intervals; external events may not use it.
pub const RUN_SOURCE: &str = "metering.run";

/// Longest accepted identifier (id, source, project, resource id or type).
pub const MAX_ID_LEN: usize = 256;
/// Largest accepted `data` payload, serialized.
pub const MAX_DATA_LEN: usize = 16 * 1024;

/// A usage event: `quantity` base units of `meter` used by a resource at
/// `timestamp`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UsageEvent {
    /// Unique within `source` (a UUID, or "instance-42/start"...).
    pub id: String,
    /// Who reports it, e.g. `streams@host1`.
    pub source: String,
    /// The project billed.
    pub project: String,
    /// The resource that used it.
    pub resource_id: String,
    /// The resource's type; must match the meter's
    /// ([`MeterDef::resource_type`]).
    pub resource_type: String,
    /// A key from [`crate::meter::CATALOG`].
    pub meter: String,
    /// Amount in the meter's base unit (bytes, requests, MiB-ms...), >= 0.
    pub quantity: i64,
    /// When it was used, unix milliseconds UTC.
    pub timestamp: UnixMillis,
    /// Free-form JSON kept with the event (at most 16 KiB serialized).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<serde_json::Value>,
}

fn check_id(event: &str, field: &'static str, value: &str) -> Result<()> {
    let reason = if value.is_empty() {
        "must not be empty"
    } else if value.len() > MAX_ID_LEN {
        "longer than 256 bytes"
    } else if value.chars().any(char::is_control) {
        "contains control characters"
    } else {
        return Ok(());
    };
    Err(MeteringError::InvalidEvent {
        id: event.to_owned(),
        field,
        reason: reason.to_owned(),
    })
}

impl UsageEvent {
    /// Checks every field; returns the event's meter.
    pub fn validate(&self) -> Result<&'static MeterDef> {
        let bad = |field, reason: String| MeteringError::InvalidEvent {
            id: self.id.clone(),
            field,
            reason,
        };
        check_id(&self.id, "id", &self.id)?;
        check_id(&self.id, "source", &self.source)?;
        check_id(&self.id, "project", &self.project)?;
        check_id(&self.id, "resource_id", &self.resource_id)?;
        check_id(&self.id, "resource_type", &self.resource_type)?;
        if self.source == RUN_SOURCE {
            return Err(bad(
                "source",
                format!("{RUN_SOURCE:?} is reserved for metering itself"),
            ));
        }
        let m = meter::lookup(&self.meter).map_err(|e| bad("meter", e.to_string()))?;
        if m.resource_type != self.resource_type {
            return Err(bad(
                "resource_type",
                format!("meter {} measures {:?} resources", m.key, m.resource_type),
            ));
        }
        if self.quantity < 0 {
            return Err(bad("quantity", "must not be negative".into()));
        }
        if !(MIN_TIME..MAX_TIME).contains(&self.timestamp) {
            return Err(bad("timestamp", "outside 1970..9999".into()));
        }
        if let Some(d) = &self.data
            && d.to_string().len() > MAX_DATA_LEN
        {
            return Err(bad("data", "larger than 16 KiB".into()));
        }
        Ok(m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn sample() -> UsageEvent {
        UsageEvent {
            id: "e1".into(),
            source: "storage@host".into(),
            project: "p1".into(),
            resource_id: "bucket-1".into(),
            resource_type: "bucket".into(),
            meter: meter::OBJECT_REQUESTS_READ.into(),
            quantity: 10,
            timestamp: 1_700_000_000_000,
            data: None,
        }
    }

    #[test]
    fn validation_names_the_field() {
        assert!(sample().validate().is_ok());
        type Mutation = Box<dyn Fn(&mut UsageEvent)>;
        let cases: Vec<(&str, Mutation)> = vec![
            ("id", Box::new(|e| e.id.clear())),
            ("source", Box::new(|e| e.source = RUN_SOURCE.into())),
            ("project", Box::new(|e| e.project = "a\nb".into())),
            ("resource_id", Box::new(|e| e.resource_id = "x".repeat(300))),
            ("meter", Box::new(|e| e.meter = "bucket.gpu".into())),
            (
                "resource_type",
                Box::new(|e| e.resource_type = "instance".into()),
            ),
            ("quantity", Box::new(|e| e.quantity = -1)),
            ("timestamp", Box::new(|e| e.timestamp = -1)),
            (
                "data",
                Box::new(|e| e.data = Some(serde_json::Value::String("x".repeat(20_000)))),
            ),
        ];
        for (field, f) in cases {
            let mut e = sample();
            f(&mut e);
            match e.validate() {
                Err(MeteringError::InvalidEvent { field: got, .. }) => assert_eq!(got, field),
                other => panic!("{field}: {other:?}"),
            }
        }
    }

    #[test]
    fn json_shape() {
        let e = sample();
        let j = serde_json::to_value(&e).unwrap();
        assert_eq!(j["meter"], "object.requests.read");
        let back: UsageEvent = serde_json::from_value(j).unwrap();
        assert_eq!(back, e);
        assert!(serde_json::from_str::<UsageEvent>(r#"{"id":"x","extra":1}"#).is_err());
    }
}
