//! An ordered set whose elements carry weights, with each subtree keeping
//! the maximum of every weight below it (an augmented treap).
//!
//! It answers "the first element at or after `lower` whose weights are all
//! at least `min`" in `O(log n)` expected time: the walk follows the search
//! path of `lower` and skips every subtree whose maxima fall short. The
//! scheduler's index keeps hosts ordered by the weighers' ranking and
//! weighs them by free vCPUs and free dedicated CPUs, so a host that has
//! the memory but not the CPUs is never visited at all.
//!
//! Nodes live in a `Vec` arena addressed by `u32`; priorities come from a
//! fixed-seed xorshift generator, so the tree's shape (and any timing that
//! depends on it) is reproducible run to run.

/// Number of weights per element.
pub(crate) const WEIGHTS: usize = 2;

const NIL: u32 = u32::MAX;

#[derive(Debug, Clone)]
struct Node<K> {
    key: K,
    weight: [u64; WEIGHTS],
    max: [u64; WEIGHTS],
    priority: u64,
    left: u32,
    right: u32,
}

/// What a walk does with the element it is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Visit {
    /// Keep walking.
    Next,
    /// This is the one: stop and return it.
    Take,
    /// Stop without an answer.
    Stop,
}

enum Flow {
    Continue,
    Done(Option<u32>),
}

/// The augmented treap.
#[derive(Debug, Clone)]
pub(crate) struct MaxTree<K> {
    nodes: Vec<Node<K>>,
    /// Arena slots freed by removals, reused by insertions.
    vacant: Vec<u32>,
    root: u32,
    len: usize,
    rng: u64,
}

impl<K: Ord> Default for MaxTree<K> {
    fn default() -> Self {
        Self {
            nodes: Vec::new(),
            vacant: Vec::new(),
            root: NIL,
            len: 0,
            rng: 0x9E37_79B9_7F4A_7C15,
        }
    }
}

fn covers(max: &[u64; WEIGHTS], min: &[u64; WEIGHTS]) -> bool {
    max.iter().zip(min).all(|(have, need)| have >= need)
}

impl<K: Ord> MaxTree<K> {
    /// Number of elements.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    fn next_priority(&mut self) -> u64 {
        // xorshift64
        let mut x = self.rng;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng = x;
        x
    }

    fn node(&self, at: u32) -> &Node<K> {
        &self.nodes[at as usize]
    }

    fn node_mut(&mut self, at: u32) -> &mut Node<K> {
        &mut self.nodes[at as usize]
    }

    /// Recomputes the maxima of `at` from its own weights and children.
    fn update(&mut self, at: u32) {
        let (left, right) = {
            let n = self.node(at);
            (n.left, n.right)
        };
        let mut max = self.node(at).weight;
        for child in [left, right] {
            if child != NIL {
                let child_max = self.node(child).max;
                for (m, c) in max.iter_mut().zip(child_max) {
                    *m = (*m).max(c);
                }
            }
        }
        self.node_mut(at).max = max;
    }

    /// Splits `at` into (keys before `key`, the rest); with `inclusive`,
    /// `key` itself goes left.
    fn split(&mut self, at: u32, key: &K, inclusive: bool) -> (u32, u32) {
        if at == NIL {
            return (NIL, NIL);
        }
        let goes_left = if inclusive {
            self.node(at).key <= *key
        } else {
            self.node(at).key < *key
        };
        if goes_left {
            let right = self.node(at).right;
            let (mid, rest) = self.split(right, key, inclusive);
            self.node_mut(at).right = mid;
            self.update(at);
            (at, rest)
        } else {
            let left = self.node(at).left;
            let (rest, mid) = self.split(left, key, inclusive);
            self.node_mut(at).left = mid;
            self.update(at);
            (rest, at)
        }
    }

    /// Joins two trees, every key of `a` before every key of `b`.
    fn merge(&mut self, a: u32, b: u32) -> u32 {
        if a == NIL {
            return b;
        }
        if b == NIL {
            return a;
        }
        if self.node(a).priority > self.node(b).priority {
            let right = self.node(a).right;
            let merged = self.merge(right, b);
            self.node_mut(a).right = merged;
            self.update(a);
            a
        } else {
            let left = self.node(b).left;
            let merged = self.merge(a, left);
            self.node_mut(b).left = merged;
            self.update(b);
            b
        }
    }

    /// Inserts `key` with `weight`; replaces the weight if `key` is there.
    pub(crate) fn insert(&mut self, key: K, weight: [u64; WEIGHTS]) {
        let root = self.root;
        let (left, rest) = self.split(root, &key, false);
        let (old, right) = self.split(rest, &key, true);
        if old == NIL {
            self.len += 1;
        } else {
            // Keys are unique: `old` is a single node, replaced below.
            self.vacant.push(old);
        }
        let node = Node {
            key,
            weight,
            max: weight,
            priority: self.next_priority(),
            left: NIL,
            right: NIL,
        };
        let at = match self.vacant.pop() {
            Some(at) => {
                self.nodes[at as usize] = node;
                at
            }
            None => {
                self.nodes.push(node);
                (self.nodes.len() - 1) as u32
            }
        };
        let joined = self.merge(left, at);
        self.root = self.merge(joined, right);
    }

    /// Removes `key`; returns whether it was present.
    pub(crate) fn remove(&mut self, key: &K) -> bool {
        let root = self.root;
        let (left, rest) = self.split(root, key, false);
        let (found, right) = self.split(rest, key, true);
        self.root = self.merge(left, right);
        if found == NIL {
            return false;
        }
        // `found` holds exactly one node: keys are unique.
        self.vacant.push(found);
        self.len -= 1;
        true
    }

    /// Walks the elements at or after `lower` (all of them if `None`) in
    /// order, skipping those with a weight below `min`, and shows each to
    /// `visit` until it takes one or stops.
    pub(crate) fn walk(
        &self,
        lower: Option<&K>,
        min: [u64; WEIGHTS],
        mut visit: impl FnMut(&K) -> Visit,
    ) -> Option<&K> {
        match self.walk_from(self.root, lower, &min, &mut visit) {
            Flow::Done(Some(at)) => Some(&self.node(at).key),
            Flow::Done(None) | Flow::Continue => None,
        }
    }

    fn walk_from(
        &self,
        at: u32,
        lower: Option<&K>,
        min: &[u64; WEIGHTS],
        visit: &mut impl FnMut(&K) -> Visit,
    ) -> Flow {
        if at == NIL {
            return Flow::Continue;
        }
        let node = self.node(at);
        if !covers(&node.max, min) {
            return Flow::Continue;
        }
        if let Some(lower) = lower
            && node.key < *lower
        {
            return self.walk_from(node.right, Some(lower), min, visit);
        }
        if let Flow::Done(found) = self.walk_from(node.left, lower, min, visit) {
            return Flow::Done(found);
        }
        if covers(&node.weight, min) {
            match visit(&node.key) {
                Visit::Next => {}
                Visit::Take => return Flow::Done(Some(at)),
                Visit::Stop => return Flow::Done(None),
            }
        }
        // Everything right of `node` comes after it, hence after `lower`.
        self.walk_from(node.right, None, min, visit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn keys(tree: &MaxTree<u32>, lower: Option<u32>, min: [u64; WEIGHTS]) -> Vec<u32> {
        let mut seen = Vec::new();
        tree.walk(lower.as_ref(), min, |k| {
            seen.push(*k);
            Visit::Next
        });
        seen
    }

    #[test]
    fn walks_in_order_from_the_lower_bound_with_pruning() {
        let mut tree = MaxTree::default();
        for k in [5u32, 1, 9, 3, 7] {
            tree.insert(k, [u64::from(k), 0]);
        }
        assert_eq!(tree.len(), 5);
        assert_eq!(keys(&tree, None, [0, 0]), [1, 3, 5, 7, 9]);
        assert_eq!(keys(&tree, Some(4), [0, 0]), [5, 7, 9]);
        assert_eq!(keys(&tree, Some(4), [8, 0]), [9]);
        assert_eq!(keys(&tree, None, [0, 1]), Vec::<u32>::new());
        let taken = tree.walk(Some(&2), [4, 0], |_| Visit::Take);
        assert_eq!(taken, Some(&5));
        let stopped = tree.walk(None, [0, 0], |k| {
            if *k == 3 { Visit::Stop } else { Visit::Next }
        });
        assert_eq!(stopped, None);
    }

    #[test]
    fn insert_replaces_and_remove_frees() {
        let mut tree = MaxTree::default();
        tree.insert(1u32, [1, 1]);
        tree.insert(1u32, [5, 5]);
        assert_eq!(tree.len(), 1);
        assert_eq!(keys(&tree, None, [5, 5]), [1]);
        assert!(tree.remove(&1));
        assert!(!tree.remove(&1));
        assert_eq!(tree.len(), 0);
        tree.insert(2, [0, 0]);
        assert_eq!(tree.nodes.len(), 1, "the freed slot is reused");
    }

    /// Against a reference model: random inserts and removals, then every
    /// pruned walk equals a filtered range of a `BTreeMap`.
    #[test]
    fn matches_a_btreemap_model() {
        let mut tree = MaxTree::default();
        let mut model = BTreeMap::new();
        let mut x: u64 = 42;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for _ in 0..5_000 {
            let key = (next() % 500) as u32;
            if next() % 3 == 0 {
                assert_eq!(tree.remove(&key), model.remove(&key).is_some());
            } else {
                let weight = [next() % 10, next() % 10];
                tree.insert(key, weight);
                model.insert(key, weight);
            }
            assert_eq!(tree.len(), model.len());
        }
        for lower in [None, Some(0), Some(250), Some(499), Some(600)] {
            for min in [[0, 0], [5, 0], [0, 9], [7, 7]] {
                let expected: Vec<u32> = model
                    .iter()
                    .filter(|(k, _)| lower.is_none_or(|lo| **k >= lo))
                    .filter(|(_, w)| covers(w, &min))
                    .map(|(k, _)| *k)
                    .collect();
                assert_eq!(keys(&tree, lower, min), expected, "{lower:?} {min:?}");
            }
        }
    }
}
