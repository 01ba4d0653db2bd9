//! Bounded output: keep the k worst of many series.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

/// Keeps the `k` items with the largest scores seen, in O(n log k) time and O(k) memory: a probe that
/// reads 10,000 partitions reports aggregates plus the worst few, not one series each.
///
/// Ties are broken by insertion order (earlier wins), so the result is deterministic. `NaN` scores are
/// never kept.
///
/// ```
/// use rb_probes::common::TopK;
/// let mut top = TopK::new(2);
/// for (name, lag) in [("p0", 5.0), ("p1", 50.0), ("p2", 7.0), ("p3", f64::NAN)] {
///     top.push(lag, name);
/// }
/// assert_eq!(top.into_sorted(), vec![(50.0, "p1"), (7.0, "p2")]);
/// ```
#[derive(Debug, Clone)]
pub struct TopK<T> {
    k: usize,
    seq: u64,
    heap: BinaryHeap<Entry<T>>,
}

#[derive(Debug, Clone)]
struct Entry<T> {
    score: f64,
    seq: u64,
    item: T,
}

// Min-heap order on (score, later-is-smaller): the root is the entry to evict first.
impl<T> Ord for Entry<T> {
    fn cmp(&self, other: &Self) -> Ordering {
        other
            .score
            .total_cmp(&self.score)
            .then_with(|| self.seq.cmp(&other.seq))
    }
}
impl<T> PartialOrd for Entry<T> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl<T> PartialEq for Entry<T> {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl<T> Eq for Entry<T> {}

impl<T> TopK<T> {
    /// Keep at most `k` items (`k = 0` keeps none).
    pub fn new(k: usize) -> Self {
        Self {
            k,
            seq: 0,
            heap: BinaryHeap::with_capacity(k.min(1024) + 1),
        }
    }

    /// Offer an item with its score.
    pub fn push(&mut self, score: f64, item: T) {
        self.push_with(score, || item);
    }

    /// Offer an item with its score, built only if it is kept (most offers of a large set are
    /// not: no allocation for them).
    pub fn push_with(&mut self, score: f64, item: impl FnOnce() -> T) {
        if self.k == 0 || score.is_nan() {
            return;
        }
        let seq = self.seq;
        self.seq += 1;
        if self.heap.len() < self.k {
            self.heap.push(Entry {
                score,
                seq,
                item: item(),
            });
        } else if let Some(min) = self.heap.peek() {
            if score > min.score {
                self.heap.pop();
                self.heap.push(Entry {
                    score,
                    seq,
                    item: item(),
                });
            }
        }
    }

    /// How many are kept.
    pub fn len(&self) -> usize {
        self.heap.len()
    }

    /// Whether none is kept.
    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }

    /// The kept items, worst (largest score) first.
    pub fn into_sorted(self) -> Vec<(f64, T)> {
        let mut v: Vec<Entry<T>> = self.heap.into_vec();
        v.sort_by(|a, b| b.score.total_cmp(&a.score).then_with(|| a.seq.cmp(&b.seq)));
        v.into_iter().map(|e| (e.score, e.item)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn keeps_the_k_largest(scores in proptest::collection::vec(-1e6f64..1e6, 0..200), k in 0usize..20) {
            let mut top = TopK::new(k);
            for (i, s) in scores.iter().enumerate() { top.push(*s, i); }
            let got: Vec<f64> = top.into_sorted().into_iter().map(|(s, _)| s).collect();
            let mut want = scores.clone();
            want.sort_by(|a, b| b.total_cmp(a));
            want.truncate(k);
            prop_assert_eq!(got, want);
        }
    }
}
