//! The pools a route sends to: one, or a weighted split between several (canary). A split
//! follows a precomputed smooth weighted round-robin sequence (nginx's algorithm), so 90/10
//! means exactly 9 in 10, interleaved rather than in runs.

use super::UpstreamPool;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

pub struct RouteUpstreams {
    pools: Vec<Arc<UpstreamPool>>,
    /// Indices into `pools`, one turn each; empty for a single pool.
    sequence: Box<[u16]>,
    next: AtomicUsize,
}

impl RouteUpstreams {
    pub fn single(pool: Arc<UpstreamPool>) -> Self {
        RouteUpstreams {
            pools: vec![pool],
            sequence: Box::new([]),
            next: AtomicUsize::new(0),
        }
    }

    pub fn split(parts: Vec<(Arc<UpstreamPool>, u32)>) -> Self {
        let weights: Vec<u32> = parts.iter().map(|(_, w)| *w).collect();
        RouteUpstreams {
            pools: parts.into_iter().map(|(p, _)| p).collect(),
            sequence: smooth_sequence(&weights).into_boxed_slice(),
            next: AtomicUsize::new(0),
        }
    }

    /// An aggregate route's part pools: listed (admin, status page), never chosen.
    pub fn parts(pools: Vec<Arc<UpstreamPool>>) -> Self {
        RouteUpstreams {
            pools,
            sequence: Box::new([]),
            next: AtomicUsize::new(0),
        }
    }

    /// The pool for a new request.
    pub fn choose(&self) -> usize {
        if self.sequence.is_empty() {
            return 0;
        }
        let turn = self.next.fetch_add(1, Ordering::Relaxed) % self.sequence.len();
        self.sequence[turn] as usize
    }

    pub fn get(&self, index: usize) -> &Arc<UpstreamPool> {
        &self.pools[index.min(self.pools.len() - 1)]
    }

    /// Each pool with its share of requests (its turns in the sequence; 1 for a single pool).
    pub fn shares(&self) -> Vec<(&Arc<UpstreamPool>, usize)> {
        self.pools
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let turns = self.sequence.iter().filter(|&&t| usize::from(t) == i).count();
                (p, turns.max(usize::from(self.sequence.is_empty())))
            })
            .collect()
    }

    pub fn pools(&self) -> &[Arc<UpstreamPool>] {
        &self.pools
    }
}

/// Smooth weighted round robin over `weights` (reduced by their gcd), one full cycle.
fn smooth_sequence(weights: &[u32]) -> Vec<u16> {
    let divisor = weights.iter().copied().fold(0, gcd).max(1);
    let weights: Vec<i64> = weights.iter().map(|w| i64::from(w / divisor)).collect();
    let total: i64 = weights.iter().sum();
    let mut current = vec![0i64; weights.len()];
    let mut sequence = Vec::with_capacity(total as usize);
    for _ in 0..total {
        for (c, w) in current.iter_mut().zip(&weights) {
            *c += w;
        }
        let Some((best, _)) = current
            .iter()
            .enumerate()
            .max_by_key(|&(i, c)| (*c, std::cmp::Reverse(i)))
        else {
            break;
        };
        current[best] -= total;
        sequence.push(best as u16);
    }
    sequence
}

fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sequence_follows_the_weights_and_interleaves() {
        let s = smooth_sequence(&[90, 10]);
        assert_eq!(s.len(), 10);
        assert_eq!(s.iter().filter(|&&i| i == 1).count(), 1);
        let s = smooth_sequence(&[5, 1, 1]);
        assert_eq!(s, [0, 0, 1, 0, 2, 0, 0]);
    }
}
