//! Weighers: how the hosts that pass the filters are ranked.
//!
//! Both policies rank on the free resources left on a host, memory first
//! (the resource that is not overcommitted by default, as OpenStack's
//! `RAMWeigher` does), then shared vCPUs, then the host id, so that the
//! same state always gives the same answer:
//!
//! - [`Policy::Spread`] prefers the *least* allocated host: most free
//!   memory, then most free vCPUs, then the lowest host id.
//! - [`Policy::Pack`] prefers the *most* allocated host that still fits:
//!   least free memory, then least free vCPUs, then the lowest host id.
//!
//! The ranking is a total order on `(free memory, free vCPUs, host id)`,
//! which is what lets the index (`index.rs`) keep hosts in ordered trees
//! and find the best one in `O(log n)`.

use std::cmp::{Ordering, Reverse};
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// How the weighers rank hosts that pass the filters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Policy {
    /// Least allocated host first: spreads load and failure domains.
    #[default]
    Spread,
    /// Most allocated host that fits first: fills a host before opening
    /// another, leaving whole hosts free for large VMs.
    Pack,
}

impl Policy {
    /// Both policies, spread first.
    pub const ALL: [Policy; 2] = [Policy::Spread, Policy::Pack];

    /// The lowercase name (`"spread"`, `"pack"`).
    pub fn as_str(self) -> &'static str {
        match self {
            Policy::Spread => "spread",
            Policy::Pack => "pack",
        }
    }
}

impl fmt::Display for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An unknown policy name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown placement policy {0:?} (expected \"spread\" or \"pack\")")]
pub struct UnknownPolicy(pub String);

impl FromStr for Policy {
    type Err = UnknownPolicy;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "spread" => Ok(Policy::Spread),
            "pack" => Ok(Policy::Pack),
            other => Err(UnknownPolicy(other.to_owned())),
        }
    }
}

/// What the weighers look at: the free resources of a host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Free {
    pub(crate) memory_mib: u64,
    pub(crate) vcpus: u64,
}

/// Orders two hosts for `policy`: `Less` means `a` is preferred.
pub(crate) fn compare(policy: Policy, a: (Free, &str), b: (Free, &str)) -> Ordering {
    let ((fa, ia), (fb, ib)) = (a, b);
    match policy {
        Policy::Spread => (Reverse(fa.memory_mib), Reverse(fa.vcpus), ia).cmp(&(
            Reverse(fb.memory_mib),
            Reverse(fb.vcpus),
            ib,
        )),
        Policy::Pack => (fa.memory_mib, fa.vcpus, ia).cmp(&(fb.memory_mib, fb.vcpus, ib)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn free(memory_mib: u64, vcpus: u64) -> Free {
        Free { memory_mib, vcpus }
    }

    #[test]
    fn spread_prefers_most_free() {
        let c = |a, b| compare(Policy::Spread, a, b);
        assert_eq!(c((free(10, 1), "b"), (free(5, 9), "a")), Ordering::Less);
        assert_eq!(c((free(5, 9), "b"), (free(5, 1), "a")), Ordering::Less);
        assert_eq!(c((free(5, 1), "a"), (free(5, 1), "b")), Ordering::Less);
    }

    #[test]
    fn pack_prefers_least_free() {
        let c = |a, b| compare(Policy::Pack, a, b);
        assert_eq!(c((free(5, 9), "b"), (free(10, 1), "a")), Ordering::Less);
        assert_eq!(c((free(5, 1), "b"), (free(5, 9), "a")), Ordering::Less);
        assert_eq!(c((free(5, 1), "a"), (free(5, 1), "b")), Ordering::Less);
    }

    #[test]
    fn names_round_trip() {
        for policy in Policy::ALL {
            assert_eq!(policy.as_str().parse::<Policy>(), Ok(policy));
            let json = serde_json::to_string(&policy).unwrap();
            assert_eq!(json, format!("\"{policy}\""));
        }
        assert!("binpack".parse::<Policy>().is_err());
    }
}
