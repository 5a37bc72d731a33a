//! GCRA (the generic cell rate algorithm): an exact token bucket kept as one number per
//! key, the theoretical arrival time (TAT) of the next request. `requests` per `per` means a
//! burst of `requests`, refilled one every `per / requests`. The same arithmetic runs in
//! the Redis script of global limits, so local and global limits behave alike.

/// What one decision reports, in microseconds where it is time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    pub allowed: bool,
    /// Requests still allowed right now.
    pub remaining: u64,
    /// Until the bucket is full again.
    pub reset_us: u64,
    /// When refused: until the next request would be allowed.
    pub retry_after_us: u64,
}

/// The bucket shape: one token every `emission_us`, at most `period_us` ahead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    pub emission_us: u64,
    pub period_us: u64,
}

impl Quota {
    pub fn new(requests: u64, per: std::time::Duration) -> Self {
        let period_us = per.as_micros().min(u64::MAX as u128) as u64;
        Quota {
            emission_us: (period_us / requests.max(1)).max(1),
            period_us,
        }
    }

    /// Decides one request at `now` given the stored `tat`; returns the verdict and the TAT
    /// to store (unchanged when refused).
    pub fn decide(&self, tat: u64, now: u64) -> (Verdict, u64) {
        let tat = tat.max(now);
        let new_tat = tat + self.emission_us;
        let ahead = new_tat - now;
        if ahead > self.period_us {
            let verdict = Verdict {
                allowed: false,
                remaining: 0,
                reset_us: tat - now,
                retry_after_us: ahead - self.period_us,
            };
            return (verdict, tat);
        }
        let verdict = Verdict {
            allowed: true,
            remaining: (self.period_us - ahead) / self.emission_us,
            reset_us: ahead,
            retry_after_us: 0,
        };
        (verdict, new_tat)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn run(q: &Quota, tat: &mut u64, now: u64) -> Verdict {
        let (v, next) = q.decide(*tat, now);
        *tat = next;
        v
    }

    #[test]
    fn n_per_window_lets_n_through_then_refuses() {
        let q = Quota::new(3, Duration::from_secs(1));
        let mut tat = 0;
        let now = 10_000_000;
        let remaining: Vec<u64> = (0..3).map(|_| run(&q, &mut tat, now).remaining).collect();
        assert_eq!(remaining, [2, 1, 0]);
        let refused = run(&q, &mut tat, now);
        assert!(!refused.allowed);
        assert!(refused.retry_after_us > 0 && refused.retry_after_us <= 333_334);
    }

    #[test]
    fn tokens_come_back_one_per_emission_interval() {
        let q = Quota::new(2, Duration::from_secs(1));
        let mut tat = 0;
        let t0 = 5_000_000;
        assert!(run(&q, &mut tat, t0).allowed);
        assert!(run(&q, &mut tat, t0).allowed);
        assert!(!run(&q, &mut tat, t0 + 100_000).allowed);
        assert!(
            run(&q, &mut tat, t0 + 500_000).allowed,
            "one token back after per/requests"
        );
        assert!(!run(&q, &mut tat, t0 + 500_000).allowed);
        let idle = run(&q, &mut tat, t0 + 10_000_000);
        assert!(
            idle.allowed && idle.remaining == 1,
            "a long pause refills the whole burst, no more"
        );
    }
}
