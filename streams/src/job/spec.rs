//! The stream job specification (what `POST /v1/stream-jobs` carries) and
//! its validation.
//!
//! ```json
//! {"name": "avg10s", "input": "readings", "output": "readings-avg",
//!  "key": "/sensor",
//!  "filter": {"field": "/temp", "op": "gte", "value": -50},
//!  "window": {"type": "tumbling", "size_ms": 10000, "grace_ms": 2000,
//!             "time": {"event_time": "/ts"}},
//!  "aggregates": [{"op": "count"}, {"op": "avg", "field": "/temp"}],
//!  "start": "earliest"}
//! ```

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{Error, Result};

/// A stream job: read `input`, group by `key`, window, aggregate, write
/// one record per closed window to `output`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobSpec {
    /// Job name (unique in the project).
    pub name: String,
    /// Input topic.
    pub input: String,
    /// Output topic (created with the input's partition count if missing).
    pub output: String,
    /// JSON pointer (RFC 6901) to the grouping key inside each record's
    /// JSON value, e.g. `/sensor`.
    pub key: String,
    /// Only records that pass this filter are aggregated.
    #[serde(default)]
    pub filter: Option<Filter>,
    /// The window.
    pub window: WindowSpec,
    /// What to compute per key and window.
    pub aggregates: Vec<Aggregate>,
    /// Where a new job starts reading.
    #[serde(default)]
    pub start: StartFrom,
    /// Most input records per processing batch (one checkpoint per batch).
    #[serde(default = "default_batch")]
    pub batch_records: usize,
}

fn default_batch() -> usize {
    1000
}

/// Where a new job (without a checkpoint) starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StartFrom {
    /// From the first retained record (Kappa-style reprocessing).
    #[default]
    Earliest,
    /// Only records produced after the job starts.
    Latest,
    /// From the first record with a timestamp >= this (ms).
    Timestamp(i64),
}

/// A filter on one field of the record's JSON value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Filter {
    /// JSON pointer to the field.
    pub field: String,
    /// Comparison.
    pub op: FilterOp,
    /// Value to compare with (unused by `exists`).
    #[serde(default)]
    pub value: Value,
}

/// Filter comparisons. Ordering comparisons apply to numbers and to
/// strings; a missing field fails every comparison but `ne`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FilterOp {
    /// Equal.
    Eq,
    /// Not equal.
    Ne,
    /// Greater than.
    Gt,
    /// Greater or equal.
    Gte,
    /// Less than.
    Lt,
    /// Less or equal.
    Lte,
    /// The field is present.
    Exists,
}

/// Window shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum WindowKind {
    /// Fixed, non-overlapping windows `[k·size, (k+1)·size)`.
    Tumbling {
        /// Window length (ms).
        size_ms: u64,
    },
    /// Overlapping windows of `size_ms` starting every `advance_ms`.
    Hopping {
        /// Window length (ms).
        size_ms: u64,
        /// Distance between window starts (ms), at most `size_ms`.
        advance_ms: u64,
    },
    /// Per key, events closer than `gap_ms` to each other form one window
    /// `[first, last + gap)`.
    Session {
        /// Inactivity gap (ms).
        gap_ms: u64,
    },
}

/// Which time a record is windowed by.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TimeSource {
    /// The record's timestamp in the log.
    #[default]
    AppendTime,
    /// A number of ms since the epoch at this JSON pointer in the value.
    EventTime(String),
}

/// Window settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WindowSpec {
    /// Shape and size.
    #[serde(flatten)]
    pub kind: WindowKind,
    /// How long (ms of stream time) a window stays open after its end for
    /// out-of-order records; later ones are dropped and counted.
    #[serde(default)]
    pub grace_ms: u64,
    /// Event time field or append time.
    #[serde(default)]
    pub time: TimeSource,
}

/// An aggregate function.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AggregateOp {
    /// Number of records.
    Count,
    /// Sum of the field.
    Sum,
    /// Smallest value of the field.
    Min,
    /// Largest value of the field.
    Max,
    /// Mean of the field.
    Avg,
}

/// One aggregate in the output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Aggregate {
    /// Function.
    pub op: AggregateOp,
    /// JSON pointer to a numeric field (all but `count`).
    #[serde(default)]
    pub field: Option<String>,
    /// Output field name; defaults to `op` or `op_field` (e.g. `avg_temp`).
    #[serde(default)]
    pub name: Option<String>,
}

impl Aggregate {
    /// The output field name.
    pub fn output_name(&self) -> String {
        if let Some(n) = &self.name {
            return n.clone();
        }
        let op = match self.op {
            AggregateOp::Count => "count",
            AggregateOp::Sum => "sum",
            AggregateOp::Min => "min",
            AggregateOp::Max => "max",
            AggregateOp::Avg => "avg",
        };
        match &self.field {
            Some(f) => format!("{op}_{}", f.trim_start_matches('/').replace('/', "_")),
            None => op.to_string(),
        }
    }
}

/// Longest window, gap or grace accepted (30 days).
const MAX_SPAN_MS: u64 = 30 * 24 * 3600 * 1000;

fn pointer_ok(p: &str) -> bool {
    p.is_empty() || p.starts_with('/')
}

impl JobSpec {
    /// Checks names, pointers, the window and the aggregates.
    pub fn validate(&self) -> Result<()> {
        crate::service::validate_name("job", &self.name)?;
        crate::service::validate_name("topic", &self.input)?;
        crate::service::validate_name("topic", &self.output)?;
        let bad = |m: String| Err(Error::InvalidJobSpec(m));
        if self.input == self.output {
            return bad("the output topic must differ from the input topic".into());
        }
        if !pointer_ok(&self.key) {
            return bad(format!(
                "key {:?} is not a JSON pointer (it must start with '/')",
                self.key
            ));
        }
        if let Some(f) = &self.filter
            && !pointer_ok(&f.field)
        {
            return bad(format!("filter field {:?} is not a JSON pointer", f.field));
        }
        if self.batch_records == 0 || self.batch_records > 100_000 {
            return bad(format!(
                "batch_records must be 1..=100000, not {}",
                self.batch_records
            ));
        }
        let w = &self.window;
        let span = |name: &str, v: u64| {
            if v == 0 || v > MAX_SPAN_MS {
                Err(Error::BadWindow(format!(
                    "{name} must be 1..={MAX_SPAN_MS} ms, not {v}"
                )))
            } else {
                Ok(())
            }
        };
        match w.kind {
            WindowKind::Tumbling { size_ms } => span("size_ms", size_ms)?,
            WindowKind::Hopping {
                size_ms,
                advance_ms,
            } => {
                span("size_ms", size_ms)?;
                span("advance_ms", advance_ms)?;
                if advance_ms > size_ms {
                    return Err(Error::BadWindow(format!(
                        "advance_ms ({advance_ms}) must not exceed size_ms ({size_ms})"
                    )));
                }
                if size_ms / advance_ms > 1000 {
                    return Err(Error::BadWindow(
                        "a record may fall in at most 1000 hopping windows".into(),
                    ));
                }
            }
            WindowKind::Session { gap_ms } => span("gap_ms", gap_ms)?,
        }
        if w.grace_ms > MAX_SPAN_MS {
            return Err(Error::BadWindow(format!(
                "grace_ms must be at most {MAX_SPAN_MS}"
            )));
        }
        if let TimeSource::EventTime(p) = &w.time
            && !pointer_ok(p)
        {
            return Err(Error::BadWindow(format!(
                "event_time {p:?} is not a JSON pointer"
            )));
        }
        if self.aggregates.is_empty() {
            return bad("at least one aggregate is needed".into());
        }
        let mut names = std::collections::BTreeSet::new();
        for a in &self.aggregates {
            match (&a.op, &a.field) {
                (AggregateOp::Count, _) => {}
                (_, None) => return bad(format!("aggregate {:?} needs a field", a.output_name())),
                (_, Some(f)) if !pointer_ok(f) => {
                    return bad(format!("aggregate field {f:?} is not a JSON pointer"));
                }
                _ => {}
            }
            let n = a.output_name();
            if ["key", "window_start", "window_end"].contains(&n.as_str())
                || !names.insert(n.clone())
            {
                return bad(format!("aggregate name {n:?} is reserved or repeated"));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_example_and_rejects_bad_windows() {
        let raw = r#"{"name": "avg10s", "input": "readings", "output": "readings-avg",
             "key": "/sensor",
             "filter": {"field": "/temp", "op": "gte", "value": -50},
             "window": {"type": "tumbling", "size_ms": 10000, "grace_ms": 2000,
                        "time": {"event_time": "/ts"}},
             "aggregates": [{"op": "count"}, {"op": "avg", "field": "/temp"}],
             "start": "earliest"}"#;
        let spec: JobSpec = serde_json::from_str(raw).expect("parse");
        spec.validate().expect("valid");
        assert_eq!(spec.aggregates[1].output_name(), "avg_temp");
        let mut s = spec.clone();
        s.window.kind = WindowKind::Hopping {
            size_ms: 10,
            advance_ms: 20,
        };
        assert!(matches!(s.validate(), Err(Error::BadWindow(_))));
        s.window.kind = WindowKind::Tumbling { size_ms: 0 };
        assert!(matches!(s.validate(), Err(Error::BadWindow(_))));
        let mut s = spec;
        s.aggregates.push(Aggregate {
            op: AggregateOp::Sum,
            field: None,
            name: None,
        });
        assert!(matches!(s.validate(), Err(Error::InvalidJobSpec(_))));
    }
}
