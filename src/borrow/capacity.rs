//! The per-license capacity index: how many borrows of one license overlap, at worst,
//! some instant of a wanted interval.
//!
//! Every held interval `[from, until)` adds +1 at `from` and -1 at `until`; the coverage
//! at an instant is the sum of the deltas at or before it. The deltas live in a B+tree
//! keyed by event time. Each node keeps, per entry, the running delta sum before it and
//! the highest coverage reached inside it (both relative to the node's start), so a query
//! reads one slice maximum per node on two root-to-leaf paths: O(log n), wide nodes in
//! one arena, no loop-carried sums on the query path. The tree is deterministic (no
//! random priorities), as a replicated state machine needs. Beside it, a map of the held
//! intervals lets `remove` refuse an interval that was never inserted.

use std::collections::BTreeMap;
use std::fmt;

/// Entries per node. Wide nodes keep the tree shallow (4 levels hold 10⁶ event times).
/// Tiny in unit tests, so that a few dozen event times already build a deep tree and
/// exercise every split, merge and move.
const CAP: usize = if cfg!(test) { 4 } else { 32 };

/// Fewest entries in a node other than the root; below this it merges with a sibling.
const MIN: usize = CAP / 2;

/// The deltas of a run of event times, summarised: enough to combine runs in order.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Run {
    /// Sum of the deltas.
    sum: i32,
    /// Largest prefix sum, the empty prefix included (so never below 0).
    peak: i32,
}

impl Run {
    fn of_delta(delta: i32) -> Self {
        Run {
            sum: delta,
            peak: delta.max(0),
        }
    }
}

/// One entry of a node, used when entries move between nodes.
#[derive(Debug, Clone, Copy, Default)]
struct Entry {
    key: i64,
    run: Run,
    child: u32,
}

/// A leaf or inner node (the depth says which), stored as parallel arrays so that a
/// query reads only keys, `before` and `top` (and `children` on the way down).
///
/// On a large index a query's cost is its chain of cache misses, so the layout shortens
/// that chain: the keys start on a cache line and always span all `CAP` slots (unused
/// ones hold `i64::MAX`), so a search probes fixed offsets without first waiting for
/// `len`; what a query reads comes first, the rest (`len` aside) last.
#[derive(Clone)]
#[repr(C, align(64))]
struct Node {
    /// Leaf: distinct event times, ascending. Inner: `keys[i]` is at most every key under
    /// `children[i]` and above every key under `children[i - 1]`; `keys[0]` is never read
    /// for routing. `i64::MAX` from `len` on.
    keys: [i64; CAP],
    /// Sum of `sums[..i]`; `before[len]` is the node's total. Derived by `refresh_from`.
    before: [i32; CAP + 1],
    /// `before[i] + peaks[i]`: the highest coverage within entry `i`, relative to the
    /// node's start. Derived by `refresh_from`.
    top: [i32; CAP],
    /// Inner: arena ids of the children. Unused in leaves.
    children: [u32; CAP],
    len: usize,
    /// Leaf: the net delta at the key, never 0. Inner: the child's delta sum.
    sums: [i32; CAP],
    /// Leaf: the delta's positive part. Inner: the child's largest prefix sum.
    peaks: [i32; CAP],
}

impl Node {
    const EMPTY: Node = Node {
        keys: [i64::MAX; CAP],
        before: [0; CAP + 1],
        top: [0; CAP],
        children: [0; CAP],
        len: 0,
        sums: [0; CAP],
        peaks: [0; CAP],
    };

    fn from_entries(entries: &[Entry]) -> Node {
        let mut node = Node::EMPTY;
        for (i, entry) in entries.iter().enumerate() {
            node.write(i, *entry);
        }
        node.len = entries.len();
        node.refresh_from(0);
        node
    }

    fn entry(&self, i: usize) -> Entry {
        Entry {
            key: self.keys[i],
            run: Run {
                sum: self.sums[i],
                peak: self.peaks[i],
            },
            child: self.children[i],
        }
    }

    fn write(&mut self, i: usize, entry: Entry) {
        self.keys[i] = entry.key;
        self.sums[i] = entry.run.sum;
        self.peaks[i] = entry.run.peak;
        self.children[i] = entry.child;
    }

    /// Recomputes the derived `before` and `top` after a change at entry `from` or later.
    fn refresh_from(&mut self, from: usize) {
        let mut total = self.before[from];
        for i in from..self.len {
            self.before[i] = total;
            self.top[i] = total + self.peaks[i];
            total += self.sums[i];
        }
        self.before[self.len] = total;
    }

    fn set_run(&mut self, i: usize, run: Run) {
        self.sums[i] = run.sum;
        self.peaks[i] = run.peak;
        self.refresh_from(i);
    }

    /// Inserts an entry at `i`; the caller has checked there is room.
    fn insert_at(&mut self, i: usize, entry: Entry) {
        let n = self.len;
        self.keys.copy_within(i..n, i + 1);
        self.sums.copy_within(i..n, i + 1);
        self.peaks.copy_within(i..n, i + 1);
        self.children.copy_within(i..n, i + 1);
        self.write(i, entry);
        self.len = n + 1;
        self.refresh_from(i);
    }

    fn remove_at(&mut self, i: usize) {
        let n = self.len;
        self.keys.copy_within(i + 1..n, i);
        self.sums.copy_within(i + 1..n, i);
        self.peaks.copy_within(i + 1..n, i);
        self.children.copy_within(i + 1..n, i);
        self.keys[n - 1] = i64::MAX;
        self.len = n - 1;
        self.refresh_from(i);
    }

    /// The whole node as one run.
    fn run(&self) -> Run {
        Run {
            sum: self.before[self.len],
            peak: max_of(&self.top[..self.len]).max(0),
        }
    }

    /// How many keys are at most `key`.
    fn count_up_to(&self, key: i64) -> usize {
        // Only `key == i64::MAX` counts the unused slots.
        self.keys.partition_point(|&k| k <= key).min(self.len)
    }

    /// How many keys are below `key`.
    fn count_below(&self, key: i64) -> usize {
        self.keys.partition_point(|&k| k < key)
    }

    /// Inner: the child whose keys may include `key`. Skips `keys[0]`, which bounds no
    /// search (it may even exceed `keys[1]`: keys below it can enter child 0).
    fn child_for(&self, key: i64) -> usize {
        self.keys[1..]
            .partition_point(|&k| k <= key)
            .min(self.len - 1)
    }

    /// Inner: the last child that may hold keys below `key`.
    fn last_child_below(&self, key: i64) -> usize {
        self.keys[1..].partition_point(|&k| k < key)
    }
}

/// The largest value, or `i32::MIN` for none.
fn max_of(values: &[i32]) -> i32 {
    values.iter().copied().fold(i32::MIN, i32::max)
}

/// The intervals borrowed from one license, answering "how many of them overlap, at most,
/// any one instant of `[from, until)`" in O(log n).
///
/// Intervals are half-open Unix-second ranges, so `[1, 5)` and `[5, 9)` never overlap.
/// Holds at most `i32::MAX` overlapping intervals, far beyond what memory allows.
#[derive(Clone, Default)]
pub struct CapacityIndex {
    /// Every held interval with its multiplicity: `remove` must refuse an interval that was
    /// never inserted, which the deltas alone cannot tell (`[1,3)+[3,5)` looks like `[1,5)`).
    held: BTreeMap<(i64, i64), u32>,
    /// Number of held intervals, multiplicities included.
    len: usize,
    /// Arena of tree nodes, addressed by `u32` to keep inner entries small.
    nodes: Vec<Node>,
    /// Arena slots freed by merges, reused before the arena grows.
    free: Vec<u32>,
    /// The root node; `None` until the first non-empty interval arrives.
    root: Option<u32>,
    /// Levels above the leaves; 0 when the root is a leaf.
    height: u32,
}

impl fmt::Debug for CapacityIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The tree itself is noise in a ledger dump; the intervals say everything.
        f.debug_struct("CapacityIndex")
            .field("held", &self.held)
            .finish()
    }
}

impl CapacityIndex {
    /// An empty index; allocates nothing until the first insert.
    pub fn new() -> Self {
        Self::default()
    }

    /// Holds one more interval `[from, until)`. Expects `from < until`; an empty or
    /// reversed interval is held (counted by `len`, removable) but covers no instant.
    pub fn insert(&mut self, from: i64, until: i64) {
        *self.held.entry((from, until)).or_insert(0) += 1;
        self.len += 1;
        if from < until {
            self.add(from, 1);
            self.add(until, -1);
        }
    }

    /// Releases one held interval identical to `[from, until)`; `false` if none is held.
    pub fn remove(&mut self, from: i64, until: i64) -> bool {
        let Some(count) = self.held.get_mut(&(from, until)) else {
            return false;
        };
        *count -= 1;
        if *count == 0 {
            self.held.remove(&(from, until));
        }
        self.len -= 1;
        if self.len == 0 {
            // All deltas cancel; give the memory back instead of keeping an empty tree.
            *self = Self::new();
        } else if from < until {
            self.add(from, -1);
            self.add(until, 1);
        }
        true
    }

    /// The most held intervals covering any one instant `t` with `from <= t < until`;
    /// 0 when `from >= until`.
    ///
    /// That is the larger of the coverage at `from` and the coverage at each key in
    /// `(from, until)`: coverage only changes at keys.
    pub fn max_overlap(&self, from: i64, until: i64) -> u32 {
        let Some(mut id) = self.root else {
            return 0;
        };
        if from >= until {
            return 0;
        }
        let mut height = self.height;
        // `base`: the sum of all deltas left of the current node.
        let mut base = 0i64;
        let best = loop {
            let node = &self.nodes[id as usize];
            if height == 0 {
                break leaf_peak(node, base, from, until);
            }
            let (a, b) = (node.child_for(from), node.last_child_below(until));
            if a == b {
                base += i64::from(node.before[a]);
                id = node.children[a];
                height -= 1;
                continue;
            }
            // The paths to `from` and `until` part here: children strictly between them
            // lie wholly inside the interval and are read from their summaries.
            let middle = base + i64::from(max_of(&node.top[a + 1..b]));
            let left = (node.children[a], base + i64::from(node.before[a]));
            let right = (node.children[b], base + i64::from(node.before[b]));
            break middle.max(self.split_peak(left, right, height - 1, from, until));
        };
        u32::try_from(best.max(0)).unwrap_or(u32::MAX)
    }

    /// Number of held intervals.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no interval is held.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether one more interval `[from, until)` fits under a license of `count` seats.
    pub fn fits(&self, from: i64, until: i64, count: u32) -> bool {
        self.max_overlap(from, until) < count
    }

    /// Worst coverage at `from` and the keys after it in the subtree `left`, and at the
    /// keys before `until` in the subtree `right`, the next subtree right of `left` that
    /// the interval reaches. Each comes with the sum of the deltas left of it.
    ///
    /// Both paths descend in one loop: their node loads do not depend on each other, so
    /// the processor fetches them in parallel; on a large index those loads are most of
    /// the cost.
    fn split_peak(
        &self,
        (mut left, mut left_base): (u32, i64),
        (mut right, mut right_base): (u32, i64),
        mut height: u32,
        from: i64,
        until: i64,
    ) -> i64 {
        let mut best = i64::MIN;
        loop {
            let (l, r) = (&self.nodes[left as usize], &self.nodes[right as usize]);
            if height == 0 {
                let tail = leaf_peak(l, left_base, from, i64::MAX);
                return best
                    .max(tail)
                    .max(leaf_peak(r, right_base, i64::MIN, until));
            }
            let a = l.child_for(from);
            best = best.max(left_base + i64::from(max_of(&l.top[a + 1..l.len])));
            left_base += i64::from(l.before[a]);
            left = l.children[a];
            let b = r.last_child_below(until);
            best = best.max(right_base + i64::from(max_of(&r.top[..b])));
            right_base += i64::from(r.before[b]);
            right = r.children[b];
            height -= 1;
        }
    }

    fn alloc(&mut self, node: Node) -> u32 {
        match self.free.pop() {
            Some(id) => {
                self.nodes[id as usize] = node;
                id
            }
            None => {
                self.nodes.push(node);
                (self.nodes.len() - 1) as u32
            }
        }
    }

    /// Adds `delta` at event time `key`, growing or shrinking the tree at the root.
    fn add(&mut self, key: i64, delta: i32) {
        let root = match self.root {
            Some(root) => root,
            None => {
                let root = self.alloc(Node::EMPTY);
                self.root = Some(root);
                self.height = 0;
                root
            }
        };
        if let Some(right) = self.add_below(root, self.height, key, delta) {
            let left = Entry {
                key: i64::MIN,
                run: self.nodes[root as usize].run(),
                child: root,
            };
            self.root = Some(self.alloc(Node::from_entries(&[left, right])));
            self.height += 1;
        } else if self.height > 0 && self.nodes[root as usize].len == 1 {
            self.root = Some(self.nodes[root as usize].children[0]);
            self.free.push(root);
            self.height -= 1;
        }
    }

    /// Adds `delta` at `key` under node `id`; returns the new right sibling if `id` split.
    fn add_below(&mut self, id: u32, height: u32, key: i64, delta: i32) -> Option<Entry> {
        if height == 0 {
            let node = &mut self.nodes[id as usize];
            let i = node.count_below(key);
            if i < node.len && node.keys[i] == key {
                let total = node.sums[i] + delta;
                if total == 0 {
                    // A key whose deltas cancel changes no coverage: drop it.
                    node.remove_at(i);
                } else {
                    node.set_run(i, Run::of_delta(total));
                }
                return None;
            }
            let entry = Entry {
                key,
                run: Run::of_delta(delta),
                child: 0,
            };
            return self.insert_entry(id, i, entry);
        }
        let c = self.nodes[id as usize].child_for(key);
        let child = self.nodes[id as usize].children[c];
        let split = self.add_below(child, height - 1, key, delta);
        let run = self.nodes[child as usize].run();
        self.nodes[id as usize].set_run(c, run);
        if let Some(right) = split {
            return self.insert_entry(id, c + 1, right);
        }
        if self.nodes[child as usize].len < MIN && self.nodes[id as usize].len > 1 {
            self.rebalance(id, c, height - 1);
        }
        None
    }

    /// Inserts `entry` at `i` of node `id`, splitting a full node in two halves; returns
    /// the entry for the new right half.
    fn insert_entry(&mut self, id: u32, i: usize, entry: Entry) -> Option<Entry> {
        let node = &mut self.nodes[id as usize];
        if node.len < CAP {
            node.insert_at(i, entry);
            return None;
        }
        let mut all = [Entry::default(); CAP + 1];
        for (j, slot) in all[..CAP].iter_mut().enumerate() {
            *slot = node.entry(j);
        }
        all.copy_within(i..CAP, i + 1);
        all[i] = entry;
        // `MIN` entries stay, the other `CAP + 1 - MIN` (at least `MIN`) move right.
        *node = Node::from_entries(&all[..MIN]);
        let right = Node::from_entries(&all[MIN..]);
        let (key, run) = (right.keys[0], right.run());
        let child = self.alloc(right);
        Some(Entry { key, run, child })
    }

    /// Child `c` of `parent` fell below `MIN` entries: merge it with a neighbour, or, when
    /// both would not fit in one node, share their entries evenly.
    fn rebalance(&mut self, parent: u32, c: usize, child_height: u32) {
        let p = &self.nodes[parent as usize];
        let j = if c + 1 < p.len { c } else { c - 1 };
        let (left, right, separator) = (p.children[j], p.children[j + 1], p.keys[j + 1]);
        let mut all = [Entry::default(); 2 * CAP];
        let mut n = 0;
        for id in [left, right] {
            let node = &self.nodes[id as usize];
            for i in 0..node.len {
                all[n] = node.entry(i);
                n += 1;
            }
        }
        if child_height > 0 {
            // An inner node's first key is only a bound; the parent's separator is the
            // bound that holds between the two halves.
            all[self.nodes[left as usize].len].key = separator;
        }
        let split = if n <= CAP { n } else { n / 2 };
        let left_node = Node::from_entries(&all[..split]);
        let left_run = left_node.run();
        self.nodes[left as usize] = left_node;
        if split == n {
            self.free.push(right);
            self.nodes[parent as usize].remove_at(j + 1);
        } else {
            let right_node = Node::from_entries(&all[split..n]);
            let (key, run) = (right_node.keys[0], right_node.run());
            self.nodes[right as usize] = right_node;
            let p = &mut self.nodes[parent as usize];
            p.keys[j + 1] = key;
            p.set_run(j + 1, run);
        }
        self.nodes[parent as usize].set_run(j, left_run);
    }
}

/// Worst coverage at `from` and at the leaf's keys in `(from, until)`, given the sum
/// `base` of all deltas left of the leaf.
fn leaf_peak(node: &Node, base: i64, from: i64, until: i64) -> i64 {
    // The coverage at `from` counts the delta at `from` itself.
    let start = node.count_up_to(from);
    let end = node.count_below(until).max(start);
    // `top[i]` is at least `before[i]`, so this also covers the coverage at `from`.
    let inside = max_of(&node.top[start..end]).max(node.before[start]);
    base + i64::from(inside)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    impl CapacityIndex {
        /// Checks every structural invariant; returns the number of reachable nodes.
        fn check(&self) {
            let Some(root) = self.root else {
                assert!(self.nodes.is_empty() && self.held.is_empty());
                return;
            };
            let mut reachable = 0;
            let run = self.check_node(
                root,
                self.height,
                i128::MIN,
                i128::MAX,
                true,
                &mut reachable,
            );
            assert_eq!(run.sum, 0, "every interval that starts also ends");
            assert_eq!(
                reachable + self.free.len(),
                self.nodes.len(),
                "arena slots leak"
            );
            assert_eq!(
                self.len,
                self.held.values().map(|&n| n as usize).sum::<usize>()
            );
        }

        fn check_node(
            &self,
            id: u32,
            height: u32,
            low: i128,
            high: i128,
            root: bool,
            seen: &mut usize,
        ) -> Run {
            *seen += 1;
            let node = &self.nodes[id as usize];
            assert!(node.len <= CAP);
            assert!(
                node.keys[node.len..].iter().all(|&k| k == i64::MAX),
                "unused key slots must hold the search sentinel"
            );
            assert!(root || node.len >= MIN, "underfull node");
            assert!(
                height == 0 || node.len >= 2 || !root,
                "inner root with one child"
            );
            let (mut sum, mut peak) = (0, 0);
            for i in 0..node.len {
                let child_run = if height == 0 {
                    let key = i128::from(node.keys[i]);
                    assert!(
                        low <= key && key < high,
                        "key {key} outside [{low}, {high})"
                    );
                    assert!(i == 0 || i128::from(node.keys[i - 1]) < key);
                    assert_ne!(node.sums[i], 0);
                    Run::of_delta(node.sums[i])
                } else {
                    let lo = if i == 0 {
                        low
                    } else {
                        i128::from(node.keys[i])
                    };
                    let hi = if i + 1 == node.len {
                        high
                    } else {
                        i128::from(node.keys[i + 1])
                    };
                    assert!(low <= lo && lo <= hi && hi <= high);
                    self.check_node(node.children[i], height - 1, lo, hi, false, seen)
                };
                assert_eq!(
                    Run {
                        sum: node.sums[i],
                        peak: node.peaks[i]
                    },
                    child_run
                );
                assert_eq!(node.before[i], sum, "stale before");
                assert_eq!(node.top[i], sum + child_run.peak, "stale top");
                peak = peak.max(sum + child_run.peak);
                sum += child_run.sum;
            }
            assert_eq!(node.before[node.len], sum, "stale total");
            let run = Run { sum, peak };
            assert_eq!(node.run(), run);
            run
        }
    }

    /// The obvious answer: count the intervals covering each instant.
    fn brute_max(held: &[(i64, i64)], from: i64, until: i64) -> u32 {
        (from..until)
            .map(|t| held.iter().filter(|&&(f, u)| f <= t && t < u).count() as u32)
            .max()
            .unwrap_or(0)
    }

    #[test]
    fn empty_index_has_room() {
        let index = CapacityIndex::new();
        assert_eq!(index.max_overlap(0, 100), 0);
        assert!(index.fits(0, 100, 1));
        assert!(!index.fits(0, 100, 0));
        assert!(index.is_empty());
        assert_eq!(index.len(), 0);
        index.check();
    }

    #[test]
    fn touching_intervals_do_not_overlap() {
        let mut index = CapacityIndex::default();
        index.insert(1, 5);
        index.insert(5, 9);
        assert_eq!(index.max_overlap(0, 10), 1);
        assert_eq!(index.max_overlap(4, 6), 1);
        assert_eq!(index.max_overlap(9, 12), 0);
        assert_eq!(index.max_overlap(-3, 1), 0);
        assert_eq!(index.max_overlap(4, 5), 1);
        assert!(index.fits(5, 9, 2));
        assert!(!index.fits(5, 9, 1));
        index.check();
    }

    #[test]
    fn nested_and_repeated_intervals_add_up() {
        let mut index = CapacityIndex::new();
        index.insert(0, 100);
        index.insert(10, 20);
        index.insert(10, 20);
        index.insert(15, 16);
        assert_eq!(index.len(), 4);
        assert_eq!(index.max_overlap(0, 10), 1);
        assert_eq!(index.max_overlap(0, 11), 3);
        assert_eq!(index.max_overlap(15, 16), 4);
        assert_eq!(index.max_overlap(16, 100), 3);
        assert_eq!(index.max_overlap(20, 100), 1);
        assert!(index.fits(0, 100, 5));
        assert!(!index.fits(0, 100, 4));
        index.check();
    }

    #[test]
    fn remove_frees_capacity_and_refuses_strangers() {
        let mut index = CapacityIndex::new();
        index.insert(1, 3);
        index.insert(3, 5);
        assert!(!index.remove(1, 5), "[1,3)+[3,5) is not [1,5)");
        assert!(!index.remove(1, 4));
        assert_eq!(index.len(), 2);
        assert!(index.remove(1, 3));
        assert!(!index.remove(1, 3), "only one was held");
        assert_eq!(index.max_overlap(0, 3), 0);
        assert_eq!(index.max_overlap(0, 4), 1);
        assert!(index.remove(3, 5));
        assert!(index.is_empty());
        assert_eq!(index.max_overlap(i64::MIN, i64::MAX), 0);
        index.check();
    }

    #[test]
    fn empty_or_reversed_queries_see_nothing() {
        let mut index = CapacityIndex::new();
        index.insert(0, 10);
        assert_eq!(index.max_overlap(5, 5), 0);
        assert_eq!(index.max_overlap(7, 3), 0);
        assert!(index.fits(5, 5, 1));
    }

    #[test]
    fn empty_intervals_are_held_but_cover_nothing() {
        let mut index = CapacityIndex::new();
        index.insert(4, 4);
        index.insert(9, 2);
        assert_eq!(index.len(), 2);
        assert_eq!(index.max_overlap(0, 10), 0);
        assert!(index.remove(9, 2));
        assert!(index.remove(4, 4));
        assert!(index.is_empty());
        index.check();
    }

    #[test]
    fn extreme_times_work() {
        let mut index = CapacityIndex::new();
        index.insert(i64::MIN, i64::MAX);
        index.insert(i64::MAX - 1, i64::MAX);
        assert_eq!(index.max_overlap(i64::MIN, i64::MIN + 1), 1);
        assert_eq!(index.max_overlap(0, i64::MAX), 2);
        index.check();
    }

    #[test]
    fn a_large_index_matches_a_coverage_array() {
        // Thousands of keys: several levels even at production node width.
        const SPAN: usize = 3000;
        let mut index = CapacityIndex::new();
        let mut coverage = vec![0u32; SPAN];
        let mut held = Vec::new();
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = |bound: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % bound
        };
        for step in 0..6000 {
            if step % 3 == 2 && !held.is_empty() {
                let (f, u) = held.swap_remove(next(held.len() as u64) as usize);
                assert!(index.remove(f as i64, u as i64));
                coverage[f..u].iter_mut().for_each(|c| *c -= 1);
            } else {
                let f = next(SPAN as u64 - 1) as usize;
                let u = f + 1 + next(((SPAN - f) as u64).min(200)) as usize;
                index.insert(f as i64, u as i64);
                coverage[f..u].iter_mut().for_each(|c| *c += 1);
                held.push((f, u));
            }
            let f = next(SPAN as u64) as usize;
            let u = f + 1 + next(((SPAN - f) as u64).min(400)) as usize;
            let expected = coverage[f..u].iter().copied().max().unwrap_or(0);
            assert_eq!(
                index.max_overlap(f as i64, u as i64),
                expected,
                "step {step}: [{f}, {u})"
            );
        }
        index.check();
        assert!(index.height >= 3, "the test should build a deep tree");
        assert_eq!(index.len(), held.len());
    }

    #[derive(Debug, Clone)]
    enum Op {
        Insert(i64, i64),
        Remove(i64, i64),
        RemoveHeld(usize),
        Query(i64, i64),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (0i64..40, 1i64..12).prop_map(|(f, len)| Op::Insert(f, f + len)),
            1 => (0i64..40, 1i64..12).prop_map(|(f, len)| Op::Remove(f, f + len)),
            3 => any::<usize>().prop_map(Op::RemoveHeld),
            3 => (-3i64..55, -3i64..55).prop_map(|(f, u)| Op::Query(f, u)),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn matches_a_brute_force_model(ops in prop::collection::vec(op(), 1..300)) {
            let mut index = CapacityIndex::new();
            let mut model: Vec<(i64, i64)> = Vec::new();
            for op in ops {
                match op {
                    Op::Insert(f, u) => {
                        index.insert(f, u);
                        model.push((f, u));
                    }
                    Op::Remove(f, u) => {
                        let found = model.iter().position(|&iv| iv == (f, u));
                        prop_assert_eq!(index.remove(f, u), found.is_some());
                        if let Some(i) = found {
                            model.swap_remove(i);
                        }
                    }
                    Op::RemoveHeld(pick) => {
                        if !model.is_empty() {
                            let (f, u) = model.swap_remove(pick % model.len());
                            prop_assert!(index.remove(f, u));
                        }
                    }
                    Op::Query(f, u) => {
                        let expected = brute_max(&model, f, u);
                        prop_assert_eq!(index.max_overlap(f, u), expected, "[{}, {}) over {:?}", f, u, model);
                        prop_assert_eq!(index.fits(f, u, expected + 1), true);
                        prop_assert_eq!(index.fits(f, u, expected), false);
                    }
                }
                prop_assert_eq!(index.len(), model.len());
                prop_assert_eq!(index.is_empty(), model.is_empty());
                index.check();
            }
            // Every window, not only the sampled ones, once at the end.
            for f in -1..53 {
                for u in f + 1..54 {
                    prop_assert_eq!(index.max_overlap(f, u), brute_max(&model, f, u));
                }
            }
        }
    }
}
