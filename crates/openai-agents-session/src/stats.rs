//! Request counting: every store counts, per operation, how many calls it served and how many
//! round trips (requests, transactions) it made to its storage, in this one place.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::Operation;

/// Per-operation call and request counters of one store; cheap to update from any task.
///
/// Backends call [`RequestStats::record_requests`] at the one place they talk to their storage;
/// the [`Store`](crate::Store) counts calls. Tests use it to prove "one round trip per
/// operation", the benchmark reports it, and it is what a metrics exporter would read.
///
/// ```
/// use openai_agents_session::{Operation, RequestStats};
/// let stats = RequestStats::default();
/// stats.record_call(Operation::AddItems);
/// stats.record_requests(Operation::AddItems, 1);
/// assert_eq!(stats.requests(Operation::AddItems), 1);
/// assert_eq!(stats.calls(Operation::AddItems), 1);
/// ```
#[derive(Debug, Default)]
pub struct RequestStats {
    calls: [AtomicU64; Operation::ALL.len()],
    requests: [AtomicU64; Operation::ALL.len()],
}

/// A copy of one operation's counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct OperationStats {
    /// Calls of the operation made through the store.
    pub calls: u64,
    /// Requests (round trips, transactions) the backend made for them.
    pub requests: u64,
}

fn index(op: Operation) -> usize {
    Operation::ALL.iter().position(|o| *o == op).unwrap_or(0)
}

impl RequestStats {
    /// Counts one call of `op`.
    pub fn record_call(&self, op: Operation) {
        self.calls[index(op)].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts `n` requests (round trips) made to storage on behalf of `op`.
    pub fn record_requests(&self, op: Operation, n: u64) {
        self.requests[index(op)].fetch_add(n, Ordering::Relaxed);
    }

    /// Calls of `op` so far.
    pub fn calls(&self, op: Operation) -> u64 {
        self.calls[index(op)].load(Ordering::Relaxed)
    }

    /// Requests made for `op` so far.
    pub fn requests(&self, op: Operation) -> u64 {
        self.requests[index(op)].load(Ordering::Relaxed)
    }

    /// All requests so far, whatever the operation.
    pub fn total_requests(&self) -> u64 {
        self.requests
            .iter()
            .map(|r| r.load(Ordering::Relaxed))
            .sum()
    }

    /// A snapshot of every operation that has been called or made requests.
    pub fn snapshot(&self) -> Vec<(Operation, OperationStats)> {
        Operation::ALL
            .iter()
            .map(|&op| {
                (
                    op,
                    OperationStats {
                        calls: self.calls(op),
                        requests: self.requests(op),
                    },
                )
            })
            .filter(|(_, s)| s.calls > 0 || s.requests > 0)
            .collect()
    }
}
