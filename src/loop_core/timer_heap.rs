//! The timer heap: a min-heap of deadlines with lazy cancellation.
//!
//! Cancelled timers stay in the heap until they reach its head or until they
//! are the majority, then the heap is rebuilt without them: asyncio's rule
//! (more than 100 timers scheduled and more than half of them cancelled), so
//! schedule+cancel costs one push and no search.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

/// Below this many scheduled timers the heap is never rebuilt.
const MIN_SCHEDULED_FOR_COMPACTION: usize = 100;
/// Rebuild once more than this fraction of the scheduled timers is cancelled.
const CANCELLED_FRACTION_FOR_COMPACTION: f64 = 0.5;

struct Entry<T> {
    when: f64,
    /// Insertion order breaks ties, so timers due at the same instant run in
    /// the order they were scheduled.
    seq: u64,
    item: T,
}

impl<T> PartialEq for Entry<T> {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl<T> Eq for Entry<T> {}
impl<T> PartialOrd for Entry<T> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl<T> Ord for Entry<T> {
    // Reversed: BinaryHeap is a max-heap and we want the earliest deadline.
    fn cmp(&self, other: &Self) -> Ordering {
        other
            .when
            .total_cmp(&self.when)
            .then_with(|| other.seq.cmp(&self.seq))
    }
}

pub struct TimerHeap<T> {
    heap: BinaryHeap<Entry<T>>,
    next_seq: u64,
    cancelled: usize,
}

impl<T> Default for TimerHeap<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> TimerHeap<T> {
    pub fn new() -> Self {
        TimerHeap { heap: BinaryHeap::new(), next_seq: 0, cancelled: 0 }
    }

    pub fn len(&self) -> usize {
        self.heap.len()
    }

    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }

    /// Number of timers known to be cancelled but still in the heap.
    pub fn cancelled_count(&self) -> usize {
        self.cancelled
    }

    pub fn push(&mut self, when: f64, item: T) {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.heap.push(Entry { when, seq, item });
    }

    /// A timer still in the heap was cancelled.
    pub fn note_cancelled(&mut self) {
        self.cancelled += 1;
    }

    pub fn peek_when(&self) -> Option<f64> {
        self.heap.peek().map(|e| e.when)
    }

    /// Removes and returns the earliest timer if it is due before `deadline`.
    pub fn pop_due(&mut self, deadline: f64) -> Option<T> {
        if self.heap.peek()?.when < deadline {
            self.heap.pop().map(|e| e.item)
        } else {
            None
        }
    }

    /// Drops cancelled timers by asyncio's rule: all of them when they are the
    /// majority of a large heap, else only those at the head. `dropped` is
    /// told of each timer that leaves the heap.
    pub fn drop_cancelled(
        &mut self,
        is_cancelled: impl Fn(&T) -> bool,
        mut dropped: impl FnMut(T),
    ) {
        let len = self.heap.len();
        if len > MIN_SCHEDULED_FOR_COMPACTION
            && self.cancelled as f64 / len as f64 > CANCELLED_FRACTION_FOR_COMPACTION
        {
            let (keep, gone): (Vec<_>, Vec<_>) =
                std::mem::take(&mut self.heap).into_vec().into_iter().partition(|e| !is_cancelled(&e.item));
            self.heap = BinaryHeap::from(keep);
            self.cancelled = 0;
            gone.into_iter().for_each(|e| dropped(e.item));
        } else {
            while let Some(head) = self.heap.peek() {
                if !is_cancelled(&head.item) {
                    break;
                }
                self.cancelled = self.cancelled.saturating_sub(1);
                let e = self.heap.pop().expect("peeked");
                dropped(e.item);
            }
        }
    }

    /// Every timer in the heap, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = &T> {
        self.heap.iter().map(|e| &e.item)
    }

    /// Removes every timer, returning them.
    pub fn drain(&mut self) -> Vec<T> {
        self.cancelled = 0;
        std::mem::take(&mut self.heap).into_vec().into_iter().map(|e| e.item).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;
    use std::rc::Rc;

    #[test]
    fn pops_in_deadline_order_and_fifo_for_equal_deadlines() {
        let mut h = TimerHeap::new();
        h.push(3.0, "c");
        h.push(1.0, "a1");
        h.push(2.0, "b");
        h.push(1.0, "a2");
        let mut out = vec![];
        while let Some(x) = h.pop_due(10.0) {
            out.push(x);
        }
        assert_eq!(out, vec!["a1", "a2", "b", "c"]);
    }

    #[test]
    fn pop_due_leaves_timers_at_or_after_the_deadline() {
        let mut h = TimerHeap::new();
        h.push(1.0, 1);
        h.push(2.0, 2);
        assert_eq!(h.pop_due(2.0), Some(1));
        assert_eq!(h.pop_due(2.0), None);
        assert_eq!(h.peek_when(), Some(2.0));
    }

    fn flagged(n: usize) -> (TimerHeap<Rc<Cell<bool>>>, Vec<Rc<Cell<bool>>>) {
        let mut h = TimerHeap::new();
        let flags: Vec<_> = (0..n).map(|_| Rc::new(Cell::new(false))).collect();
        for (i, f) in flags.iter().enumerate() {
            h.push(i as f64, f.clone());
        }
        (h, flags)
    }

    #[test]
    fn small_heap_drops_only_cancelled_head() {
        let (mut h, flags) = flagged(10);
        for i in [0, 1, 5] {
            flags[i].set(true);
            h.note_cancelled();
        }
        let mut dropped = 0;
        h.drop_cancelled(|f| f.get(), |_| dropped += 1);
        assert_eq!(dropped, 2);
        assert_eq!(h.len(), 8);
        assert_eq!(h.cancelled_count(), 1);
        assert_eq!(h.peek_when(), Some(2.0));
    }

    #[test]
    fn mostly_cancelled_large_heap_is_rebuilt() {
        let (mut h, flags) = flagged(200);
        for f in flags.iter().skip(1).take(150) {
            f.set(true);
            h.note_cancelled();
        }
        let mut dropped = 0;
        h.drop_cancelled(|f| f.get(), |_| dropped += 1);
        assert_eq!(dropped, 150);
        assert_eq!(h.len(), 50);
        assert_eq!(h.cancelled_count(), 0);
        assert_eq!(h.peek_when(), Some(0.0));
    }

    #[test]
    fn drain_empties_and_resets_count() {
        let (mut h, _flags) = flagged(5);
        h.note_cancelled();
        assert_eq!(h.drain().len(), 5);
        assert!(h.is_empty());
        assert_eq!(h.cancelled_count(), 0);
    }
}
