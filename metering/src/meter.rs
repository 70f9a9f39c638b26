//! The meter catalog: every billable dimension of every minicloud resource.
//!
//! A usage quantity is always an integer in the meter's *base unit*; prices
//! are per *unit*; `base_per_unit` converts (e.g. memory is measured in
//! MiB-milliseconds and priced per GiB-second: 1024 × 1000 base units per
//! unit). Duration meters ([`MeterDef::per_ms`]) are the ones a run
//! interval can accrue: their base unit is "amount × millisecond".
//!
//! Meters exist here for services that do not exist yet, so that their
//! usage can be recorded and priced the day they start reporting it.

use serde::Serialize;

use crate::error::{MeteringError, Result};

/// One meter: a key used in events and in the price book.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct MeterDef {
    /// Key, e.g. `instance.vcpu`.
    pub key: &'static str,
    /// The resource type whose usage it measures.
    pub resource_type: &'static str,
    /// Priced (and displayed) unit, e.g. `vCPU-second`.
    pub unit: &'static str,
    /// Stored unit, e.g. `vCPU-millisecond`.
    pub base_unit: &'static str,
    /// Base units in one priced unit.
    pub base_per_unit: i64,
    /// True when the base unit is "amount × millisecond", so that a run
    /// interval with a rate (vCPUs, MiB...) can accrue it.
    pub per_ms: bool,
    /// One line for people.
    pub description: &'static str,
}

/// vCPU time of a running instance.
pub const INSTANCE_VCPU: &str = "instance.vcpu";
/// Memory of a running instance.
pub const INSTANCE_MEMORY: &str = "instance.memory";
/// Time an instance spends paused (per instance).
pub const INSTANCE_PAUSED: &str = "instance.paused";
/// Memory held by a paused instance.
pub const INSTANCE_PAUSED_MEMORY: &str = "instance.paused_memory";
/// Provisioned volume capacity over time.
pub const VOLUME_STORAGE: &str = "volume.storage";
/// Snapshot capacity over time.
pub const VOLUME_SNAPSHOT: &str = "volume.snapshot";
/// Object storage bytes stored over time.
pub const OBJECT_STORAGE: &str = "object.storage";
/// Object storage class-A requests: PUT, COPY, POST, LIST.
pub const OBJECT_REQUESTS_WRITE: &str = "object.requests.write";
/// Object storage class-B requests: GET, HEAD.
pub const OBJECT_REQUESTS_READ: &str = "object.requests.read";
/// Object storage bytes served out.
pub const OBJECT_BYTES_OUT: &str = "object.bytes_out";
/// Bytes produced into streams.
pub const STREAMS_BYTES_IN: &str = "streams.bytes_in";
/// Bytes consumed from streams.
pub const STREAMS_BYTES_OUT: &str = "streams.bytes_out";
/// Stream partitions over time.
pub const STREAMS_PARTITION: &str = "streams.partition";
/// Stream API requests.
pub const STREAMS_REQUESTS: &str = "streams.requests";

const MIB_MS_PER_GIB_S: i64 = 1024 * 1000;
const BYTES_PER_GIB: i64 = 1 << 30;

/// Every meter minicloud knows.
pub const CATALOG: &[MeterDef] = &[
    MeterDef {
        key: INSTANCE_VCPU,
        resource_type: "instance",
        unit: "vCPU-second",
        base_unit: "vCPU-millisecond",
        base_per_unit: 1000,
        per_ms: true,
        description: "vCPUs of a running instance, per second",
    },
    MeterDef {
        key: INSTANCE_MEMORY,
        resource_type: "instance",
        unit: "GiB-second",
        base_unit: "MiB-millisecond",
        base_per_unit: MIB_MS_PER_GIB_S,
        per_ms: true,
        description: "memory of a running instance, per second",
    },
    MeterDef {
        key: INSTANCE_PAUSED,
        resource_type: "instance",
        unit: "instance-second",
        base_unit: "instance-millisecond",
        base_per_unit: 1000,
        per_ms: true,
        description: "time an instance is paused",
    },
    MeterDef {
        key: INSTANCE_PAUSED_MEMORY,
        resource_type: "instance",
        unit: "GiB-second",
        base_unit: "MiB-millisecond",
        base_per_unit: MIB_MS_PER_GIB_S,
        per_ms: true,
        description: "memory held by a paused instance, per second",
    },
    MeterDef {
        key: VOLUME_STORAGE,
        resource_type: "volume",
        unit: "GiB-second",
        base_unit: "MiB-millisecond",
        base_per_unit: MIB_MS_PER_GIB_S,
        per_ms: true,
        description: "provisioned volume capacity",
    },
    MeterDef {
        key: VOLUME_SNAPSHOT,
        resource_type: "snapshot",
        unit: "GiB-second",
        base_unit: "MiB-millisecond",
        base_per_unit: MIB_MS_PER_GIB_S,
        per_ms: true,
        description: "volume snapshot capacity",
    },
    MeterDef {
        key: OBJECT_STORAGE,
        resource_type: "bucket",
        unit: "GiB-second",
        base_unit: "MiB-millisecond",
        base_per_unit: MIB_MS_PER_GIB_S,
        per_ms: true,
        description: "object storage stored",
    },
    MeterDef {
        key: OBJECT_REQUESTS_WRITE,
        resource_type: "bucket",
        unit: "request",
        base_unit: "request",
        base_per_unit: 1,
        per_ms: false,
        description: "PUT, COPY, POST and LIST requests",
    },
    MeterDef {
        key: OBJECT_REQUESTS_READ,
        resource_type: "bucket",
        unit: "request",
        base_unit: "request",
        base_per_unit: 1,
        per_ms: false,
        description: "GET and HEAD requests",
    },
    MeterDef {
        key: OBJECT_BYTES_OUT,
        resource_type: "bucket",
        unit: "GiB",
        base_unit: "byte",
        base_per_unit: BYTES_PER_GIB,
        per_ms: false,
        description: "object storage bytes out",
    },
    MeterDef {
        key: STREAMS_BYTES_IN,
        resource_type: "topic",
        unit: "GiB",
        base_unit: "byte",
        base_per_unit: BYTES_PER_GIB,
        per_ms: false,
        description: "bytes produced into a stream",
    },
    MeterDef {
        key: STREAMS_BYTES_OUT,
        resource_type: "topic",
        unit: "GiB",
        base_unit: "byte",
        base_per_unit: BYTES_PER_GIB,
        per_ms: false,
        description: "bytes consumed from a stream",
    },
    MeterDef {
        key: STREAMS_PARTITION,
        resource_type: "topic",
        unit: "partition-hour",
        base_unit: "partition-millisecond",
        base_per_unit: 3_600_000,
        per_ms: true,
        description: "stream partitions provisioned",
    },
    MeterDef {
        key: STREAMS_REQUESTS,
        resource_type: "topic",
        unit: "request",
        base_unit: "request",
        base_per_unit: 1,
        per_ms: false,
        description: "stream API requests",
    },
];

/// The meter with this key.
pub fn lookup(key: &str) -> Result<&'static MeterDef> {
    CATALOG
        .iter()
        .find(|m| m.key == key)
        .ok_or_else(|| MeteringError::UnknownMeter(key.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_unique() {
        for (i, m) in CATALOG.iter().enumerate() {
            assert!(CATALOG[i + 1..].iter().all(|o| o.key != m.key), "{}", m.key);
            assert!(m.base_per_unit > 0);
            assert_eq!(lookup(m.key).unwrap(), m);
        }
        assert!(lookup("instance.gpu").is_err());
    }
}
