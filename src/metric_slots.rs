//! Prometheus children kept where they are used, so that a request's metrics are counted
//! without hashing label values. `with_label_values` hashes every label string and looks the
//! child up in its vec's map (≈ 1,100 instructions per request for the request metrics);
//! a route keeps the children it has used in a few slots and finds them by a small key.
//!
//! The slots fill on first use (a reload builds new routes, which resolve again and get the
//! same children: the vec keeps them). When every slot holds another key the caller's
//! resolver runs each time, as without slots: a route with many methods × statuses pays for
//! the rare ones only.

use prometheus::{Histogram, IntCounter};
use std::ops::Deref;
use std::sync::OnceLock;

/// A route's request metrics: requests by method and status (four pairs kept), duration by
/// method (two kept).
#[derive(Debug, Default)]
pub struct RouteMeters {
    pub requests: MetricSlots<IntCounter, 4>,
    pub duration: MetricSlots<Histogram, 2>,
}

/// `N` children of one metric, each under its key.
pub struct MetricSlots<T, const N: usize> {
    slots: [OnceLock<(u32, T)>; N],
}

/// A child found in a slot, or resolved for this use alone.
pub enum Child<'a, T> {
    Kept(&'a T),
    Resolved(T),
}

impl<T> Deref for Child<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        match self {
            Child::Kept(child) => child,
            Child::Resolved(child) => child,
        }
    }
}

impl<T, const N: usize> Default for MetricSlots<T, N> {
    fn default() -> Self {
        MetricSlots {
            slots: std::array::from_fn(|_| OnceLock::new()),
        }
    }
}

impl<T, const N: usize> MetricSlots<T, N> {
    /// The child under `key`: kept in a slot, else `resolve`d (and kept when a slot is free).
    pub fn get(&self, key: u32, resolve: impl Fn() -> T) -> Child<'_, T> {
        for slot in &self.slots {
            let (k, child) = match slot.get() {
                Some(kept) => kept,
                // Another thread may fill the slot first with its own key: then move on.
                None => slot.get_or_init(|| (key, resolve())),
            };
            if *k == key {
                return Child::Kept(child);
            }
        }
        Child::Resolved(resolve())
    }
}

impl<T, const N: usize> std::fmt::Debug for MetricSlots<T, N> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let used = self.slots.iter().filter(|s| s.get().is_some()).count();
        write!(f, "MetricSlots({used}/{N} used)")
    }
}

#[cfg(test)]
mod tests {
    use super::{Child, MetricSlots};
    use std::cell::Cell;

    #[test]
    fn children_are_resolved_once_per_key_while_slots_last() {
        let slots = MetricSlots::<String, 2>::default();
        let resolved = Cell::new(0);
        let get = |key: u32| {
            let child = slots.get(key, || {
                resolved.set(resolved.get() + 1);
                format!("child {key}")
            });
            (matches!(child, Child::Kept(_)), child.clone())
        };
        assert_eq!(get(7), (true, "child 7".to_string()));
        assert_eq!(get(7), (true, "child 7".to_string()));
        assert_eq!(get(9), (true, "child 9".to_string()));
        assert_eq!(resolved.get(), 2);
        // Slots full: a third key is resolved at every use, and still the right child.
        assert_eq!(get(11), (false, "child 11".to_string()));
        assert_eq!(get(11), (false, "child 11".to_string()));
        assert_eq!(resolved.get(), 4);
        assert_eq!(get(9), (true, "child 9".to_string()));
    }
}
