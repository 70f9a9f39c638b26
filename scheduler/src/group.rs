//! Server-group bookkeeping: which members of a group are on which host.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use crate::request::GroupPolicy;

/// The live members of one server group, by host.
#[derive(Debug, Clone)]
pub(crate) struct GroupState {
    pub(crate) policy: GroupPolicy,
    members: BTreeMap<Arc<str>, BTreeSet<String>>,
}

impl GroupState {
    /// An empty group with `policy`.
    pub(crate) fn new(policy: GroupPolicy) -> Self {
        Self {
            policy,
            members: BTreeMap::new(),
        }
    }

    /// The first member (by id) of the group on `host`, if any.
    pub(crate) fn member_on(&self, host: &str) -> Option<&str> {
        self.members
            .get(host)
            .and_then(|ids| ids.first())
            .map(String::as_str)
    }

    /// The host of an affinity group's members, once it has any. The
    /// filters keep every member of an affinity group on one host.
    pub(crate) fn affinity_host(&self) -> Option<&Arc<str>> {
        match self.policy {
            GroupPolicy::Affinity => self.members.keys().next(),
            GroupPolicy::AntiAffinity => None,
        }
    }

    /// Records `id` on `host`.
    pub(crate) fn add(&mut self, host: &Arc<str>, id: &str) {
        self.members
            .entry(Arc::clone(host))
            .or_default()
            .insert(id.to_owned());
    }

    /// Forgets `id` on `host`.
    pub(crate) fn remove(&mut self, host: &str, id: &str) {
        if let Some(ids) = self.members.get_mut(host) {
            ids.remove(id);
            if ids.is_empty() {
                self.members.remove(host);
            }
        }
    }

    /// Whether the group has no member left.
    pub(crate) fn is_empty(&self) -> bool {
        self.members.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tracks_members_per_host() {
        let a: Arc<str> = Arc::from("host-a");
        let mut group = GroupState::new(GroupPolicy::Affinity);
        assert!(group.is_empty());
        assert_eq!(group.affinity_host(), None);
        group.add(&a, "vm-2");
        group.add(&a, "vm-1");
        assert_eq!(group.member_on("host-a"), Some("vm-1"));
        assert_eq!(group.member_on("host-b"), None);
        assert_eq!(group.affinity_host(), Some(&a));
        group.remove("host-a", "vm-1");
        group.remove("host-a", "vm-2");
        assert!(group.is_empty());
    }
}
