//! Sets of host CPU ids and the Linux CPU-list format (`"0-3,8"`).
//!
//! The same format is used by `/sys` (`cpulist`, `thread_siblings_list`),
//! by cgroup `cpuset.cpus` and by `taskset -c`, so the scheduler, the VMM
//! (which pins its vCPU threads with `sched_setaffinity`) and tests that read
//! `/proc/<pid>/status` (`Cpus_allowed_list`) all speak it.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The largest CPU id accepted when parsing a CPU list.
///
/// Linux's `NR_CPUS` tops out at 8192 on common configurations; the bound
/// keeps a hostile list such as `"0-4294967295"` from allocating gigabytes.
pub const MAX_CPU_ID: u32 = 65_535;

/// Why a CPU list could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CpuListError {
    /// A CPU id was not a decimal number.
    #[error("invalid CPU id {0:?} in CPU list")]
    InvalidNumber(String),
    /// A range ended before it began (`"5-3"`).
    #[error("CPU range {start}-{end} is reversed")]
    ReversedRange {
        /// First id of the range as written.
        start: u32,
        /// Last id of the range as written.
        end: u32,
    },
    /// A CPU id exceeded [`MAX_CPU_ID`].
    #[error("CPU id {0} exceeds the maximum of {MAX_CPU_ID}")]
    TooLarge(u32),
    /// A list element was empty (`"0,,1"`).
    #[error("empty element in CPU list")]
    EmptyElement,
}

/// An ordered set of host CPU ids, printed and parsed as a Linux CPU list.
///
/// ```
/// use scheduler::CpuSet;
/// let set: CpuSet = "0-3,8,10-11".parse().unwrap();
/// assert_eq!(set.len(), 7);
/// assert!(set.contains(8));
/// assert_eq!(set.to_string(), "0-3,8,10-11");
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CpuSet {
    /// Sorted, without duplicates.
    ids: Vec<u32>,
}

impl CpuSet {
    /// The empty set.
    pub const fn new() -> Self {
        Self { ids: Vec::new() }
    }

    /// Parses a Linux CPU list such as `"0-3,8"`.
    ///
    /// Surrounding whitespace (including the trailing newline of a `/sys`
    /// file) is ignored; an empty string is the empty set.
    pub fn parse(list: &str) -> Result<Self, CpuListError> {
        let list = list.trim();
        let mut ids = Vec::new();
        if list.is_empty() {
            return Ok(Self { ids });
        }
        for element in list.split(',') {
            let element = element.trim();
            if element.is_empty() {
                return Err(CpuListError::EmptyElement);
            }
            match element.split_once('-') {
                Some((start, end)) => {
                    let start = parse_id(start)?;
                    let end = parse_id(end)?;
                    if end < start {
                        return Err(CpuListError::ReversedRange { start, end });
                    }
                    ids.extend(start..=end);
                }
                None => ids.push(parse_id(element)?),
            }
        }
        Ok(Self::from_unsorted(ids))
    }

    fn from_unsorted(mut ids: Vec<u32>) -> Self {
        ids.sort_unstable();
        ids.dedup();
        Self { ids }
    }

    /// Number of CPUs in the set.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether the set holds no CPU.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Whether `cpu` is in the set.
    pub fn contains(&self, cpu: u32) -> bool {
        self.ids.binary_search(&cpu).is_ok()
    }

    /// Adds `cpu`; returns whether it was absent.
    pub fn insert(&mut self, cpu: u32) -> bool {
        match self.ids.binary_search(&cpu) {
            Ok(_) => false,
            Err(at) => {
                self.ids.insert(at, cpu);
                true
            }
        }
    }

    /// Removes `cpu`; returns whether it was present.
    pub fn remove(&mut self, cpu: u32) -> bool {
        match self.ids.binary_search(&cpu) {
            Ok(at) => {
                self.ids.remove(at);
                true
            }
            Err(_) => false,
        }
    }

    /// The CPU ids in ascending order.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = u32> + ExactSizeIterator + '_ {
        self.ids.iter().copied()
    }

    /// The CPU ids in ascending order, as a slice.
    pub fn as_slice(&self) -> &[u32] {
        &self.ids
    }

    /// Whether every CPU of `self` is also in `other`.
    pub fn is_subset(&self, other: &CpuSet) -> bool {
        self.iter().all(|cpu| other.contains(cpu))
    }

    /// Whether `self` and `other` share no CPU.
    pub fn is_disjoint(&self, other: &CpuSet) -> bool {
        self.iter().all(|cpu| !other.contains(cpu))
    }

    /// The CPUs of `self` that are not in `other`.
    pub fn difference(&self, other: &CpuSet) -> CpuSet {
        Self {
            ids: self.iter().filter(|cpu| !other.contains(*cpu)).collect(),
        }
    }

    /// The CPUs in `self` or in `other`.
    pub fn union(&self, other: &CpuSet) -> CpuSet {
        Self::from_unsorted(self.iter().chain(other.iter()).collect())
    }
}

fn parse_id(text: &str) -> Result<u32, CpuListError> {
    let text = text.trim();
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(CpuListError::InvalidNumber(text.to_owned()));
    }
    match text.parse::<u32>() {
        Ok(id) if id <= MAX_CPU_ID => Ok(id),
        Ok(id) => Err(CpuListError::TooLarge(id)),
        // All digits but out of u32 range.
        Err(_) => Err(CpuListError::TooLarge(u32::MAX)),
    }
}

impl FromIterator<u32> for CpuSet {
    fn from_iter<I: IntoIterator<Item = u32>>(iter: I) -> Self {
        Self::from_unsorted(iter.into_iter().collect())
    }
}

impl<'a> IntoIterator for &'a CpuSet {
    type Item = u32;
    type IntoIter = std::iter::Copied<std::slice::Iter<'a, u32>>;

    fn into_iter(self) -> Self::IntoIter {
        self.ids.iter().copied()
    }
}

impl FromStr for CpuSet {
    type Err = CpuListError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl fmt::Display for CpuSet {
    /// Formats as a compact Linux CPU list: consecutive ids become ranges.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut ids = self.ids.iter().copied().peekable();
        let mut first = true;
        while let Some(start) = ids.next() {
            let mut end = start;
            while let Some(&next) = ids.peek() {
                if Some(next) == end.checked_add(1) {
                    end = next;
                    ids.next();
                } else {
                    break;
                }
            }
            if !first {
                f.write_str(",")?;
            }
            first = false;
            if start == end {
                write!(f, "{start}")?;
            } else {
                write!(f, "{start}-{end}")?;
            }
        }
        Ok(())
    }
}

impl Serialize for CpuSet {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for CpuSet {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ranges_and_singles() {
        let set = CpuSet::parse("0-3,8,10-11\n").unwrap();
        assert_eq!(set.as_slice(), &[0, 1, 2, 3, 8, 10, 11]);
    }

    #[test]
    fn empty_list_is_empty_set() {
        assert!(CpuSet::parse("").unwrap().is_empty());
        assert!(CpuSet::parse(" \n").unwrap().is_empty());
        assert_eq!(CpuSet::new().to_string(), "");
    }

    #[test]
    fn formats_compactly() {
        let set: CpuSet = [5, 0, 1, 2, 7, 8, 3].into_iter().collect();
        assert_eq!(set.to_string(), "0-3,5,7-8");
        let single: CpuSet = [4].into_iter().collect();
        assert_eq!(single.to_string(), "4");
    }

    #[test]
    fn duplicates_and_overlaps_collapse() {
        let set = CpuSet::parse("0-2,1,2-3").unwrap();
        assert_eq!(set.to_string(), "0-3");
    }

    #[test]
    fn rejects_malformed_lists() {
        assert_eq!(
            CpuSet::parse("3-1"),
            Err(CpuListError::ReversedRange { start: 3, end: 1 })
        );
        assert_eq!(CpuSet::parse("0,,1"), Err(CpuListError::EmptyElement));
        assert!(matches!(
            CpuSet::parse("a-3"),
            Err(CpuListError::InvalidNumber(_))
        ));
        assert!(matches!(
            CpuSet::parse("-3"),
            Err(CpuListError::InvalidNumber(_))
        ));
        assert_eq!(
            CpuSet::parse("0-4294967295"),
            Err(CpuListError::TooLarge(4_294_967_295))
        );
        assert_eq!(
            CpuSet::parse("99999999999"),
            Err(CpuListError::TooLarge(u32::MAX))
        );
    }

    #[test]
    fn set_operations() {
        let a = CpuSet::parse("0-5").unwrap();
        let b = CpuSet::parse("4-7").unwrap();
        assert_eq!(a.difference(&b).to_string(), "0-3");
        assert_eq!(a.union(&b).to_string(), "0-7");
        assert!(!a.is_disjoint(&b));
        assert!(CpuSet::parse("1-2").unwrap().is_subset(&a));
        let mut c = a.clone();
        assert!(c.remove(2));
        assert!(!c.remove(2));
        assert!(c.insert(2));
        assert_eq!(c, a);
    }

    #[test]
    fn serde_uses_the_list_string() {
        let set = CpuSet::parse("0-3,8").unwrap();
        let json = serde_json::to_string(&set).unwrap();
        assert_eq!(json, "\"0-3,8\"");
        let back: CpuSet = serde_json::from_str(&json).unwrap();
        assert_eq!(back, set);
        assert!(serde_json::from_str::<CpuSet>("\"3-1\"").is_err());
    }
}
