//! `least_conn`: the target with the fewest requests in flight relative to its weight
//! (Pingora ships none, so this implements its `BackendSelection`). Equal loads take turns,
//! so an idle pool still spreads evenly.

use super::target::TargetState;
use pingora::lb::selection::{BackendIter, BackendSelection};
use pingora::lb::Backend;
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// The live target states the selection reads the loads from.
pub type Loads = Arc<Vec<Arc<TargetState>>>;

pub struct LeastConn {
    /// Each backend with its live state.
    targets: Vec<(Backend, Option<Arc<TargetState>>)>,
    turn: AtomicUsize,
}

impl BackendSelection for LeastConn {
    type Iter = LeastConnIter;
    type Config = Loads;

    fn build_with_config(backends: &BTreeSet<Backend>, loads: &Loads) -> Self {
        let targets = backends
            .iter()
            .map(|b| (b.clone(), loads.iter().find(|t| t.backend.addr == b.addr).cloned()))
            .collect();
        LeastConn {
            targets,
            turn: AtomicUsize::new(0),
        }
    }

    fn build(backends: &BTreeSet<Backend>) -> Self {
        Self::build_with_config(backends, &Arc::new(Vec::new()))
    }

    fn iter(self: &Arc<Self>, _key: &[u8]) -> LeastConnIter {
        let n = self.targets.len();
        let start = if n == 0 {
            0
        } else {
            self.turn.fetch_add(1, Ordering::Relaxed) % n
        };
        // Candidates in rotation order, then stably sorted by weighted load: ties keep
        // the rotation, so equal targets take turns.
        let mut order: Vec<(usize, u64)> = (0..n)
            .map(|k| {
                let i = (start + k) % n;
                let (backend, state) = &self.targets[i];
                let in_flight = state.as_ref().map_or(0, |s| s.in_flight()) as u64;
                // in_flight / weight, scaled to stay an integer.
                (i, in_flight * 1_000_000 / backend.weight.max(1) as u64)
            })
            .collect();
        order.sort_by_key(|&(_, load)| load);
        LeastConnIter {
            selection: self.clone(),
            order: order.into_iter().map(|(i, _)| i).collect(),
            next: 0,
        }
    }
}

pub struct LeastConnIter {
    selection: Arc<LeastConn>,
    order: Vec<usize>,
    next: usize,
}

impl BackendIter for LeastConnIter {
    fn next(&mut self) -> Option<&Backend> {
        let i = *self.order.get(self.next)?;
        self.next += 1;
        Some(&self.selection.targets[i].0)
    }
}
