//! Whether and when a command that exited is started again: the `--restart` policy, the
//! exponential backoff and the burst limit.

use std::time::{Duration, Instant};

use crate::{Config, Restart};

/// The shortest run after which a restarted command's backoff starts over.
pub const STABLE_RUN: Duration = Duration::from_secs(10);

/// Whether the policy restarts a command that exited, `failed` or not.
pub fn wanted(policy: Restart, failed: bool) -> bool {
    match policy {
        Restart::Never => false,
        Restart::OnFailure => failed,
        Restart::Always => true,
    }
}

/// What comes after an exit the policy wants restarted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Start it again after this delay.
    After(Duration),
    /// Too many restarts (this many) within the burst window: give up.
    GiveUp(usize),
}

/// The restart history: the delays grow from `--backoff-min` to `--backoff-max`, doubling,
/// and at most `--burst` restarts fit in `--burst-window`.
pub struct Backoff {
    min: Duration,
    max: Duration,
    burst: u32,
    window: Duration,
    /// When the restarts within the window happened.
    restarts: Vec<Instant>,
    /// How many delays in a row have grown.
    attempt: u32,
}

impl Backoff {
    /// The backoff `cfg` asks for, with no history.
    pub fn new(cfg: &Config) -> Backoff {
        Backoff::with_limits(cfg.backoff_min, cfg.backoff_max, cfg.burst, cfg.burst_window)
    }

    /// Delays from `min` to `max`, at most `burst` restarts within `window`.
    fn with_limits(min: Duration, max: Duration, burst: u32, window: Duration) -> Backoff {
        Backoff { min, max, burst, window, restarts: Vec::new(), attempt: 0 }
    }

    /// The command exited at `now` after running for `ran`: the delay before its next start,
    /// or giving up.
    pub fn next(&mut self, now: Instant, ran: Duration) -> Next {
        let window = self.window;
        self.restarts.retain(|t| now.duration_since(*t) < window);
        if self.restarts.len() as u32 >= self.burst {
            return Next::GiveUp(self.restarts.len());
        }
        self.restarts.push(now);
        // A command that ran well starts the backoff over: longer than the largest delay, and
        // never less than STABLE_RUN, so a slow start on a loaded machine does not count as one.
        if ran >= self.max.max(STABLE_RUN) {
            self.attempt = 0;
        }
        let factor = 1u32.checked_shl(self.attempt.min(20)).unwrap_or(u32::MAX);
        let delay = self.min.saturating_mul(factor).min(self.max);
        self.attempt += 1;
        Next::After(delay)
    }

    /// Starts the delays over (a new command took over and is ready).
    pub fn reset(&mut self) {
        self.attempt = 0;
    }

    /// The burst window.
    pub fn window(&self) -> Duration {
        self.window
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backoff(min: u64, max: u64, burst: u32, window: u64) -> Backoff {
        Backoff::with_limits(ms(min), ms(max), burst, ms(window))
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn the_policies() {
        assert!(!wanted(Restart::Never, true));
        assert!(wanted(Restart::OnFailure, true) && !wanted(Restart::OnFailure, false));
        assert!(wanted(Restart::Always, false) && wanted(Restart::Always, true));
    }

    #[test]
    fn delays_double_up_to_the_maximum() {
        let mut b = backoff(100, 1000, 100, 60_000);
        let t = Instant::now();
        let delays: Vec<Next> = (0..6).map(|i| b.next(t + ms(i), ms(5))).collect();
        let expected: Vec<Next> = [100, 200, 400, 800, 1000, 1000].into_iter().map(|d| Next::After(ms(d))).collect();
        assert_eq!(delays, expected);
        b.reset();
        assert_eq!(b.next(t + ms(10), ms(5)), Next::After(ms(100)));
    }

    #[test]
    fn a_long_run_starts_the_delays_over() {
        let mut b = backoff(100, 30_000, 100, 60_000);
        let t = Instant::now();
        b.next(t, ms(5));
        b.next(t, ms(5));
        assert_eq!(b.next(t, ms(29_999)), Next::After(ms(400)), "shorter than the largest delay");
        assert_eq!(b.next(t, ms(30_000)), Next::After(ms(100)));
        // With a small maximum, STABLE_RUN is what counts.
        let mut b = backoff(100, 200, 100, 60_000);
        b.next(t, ms(5));
        assert_eq!(b.next(t, ms(5_000)), Next::After(ms(200)), "a slow start is not a good run");
        assert_eq!(b.next(t, STABLE_RUN), Next::After(ms(100)));
    }

    #[test]
    fn huge_attempt_counts_do_not_overflow() {
        let mut b = backoff(u64::MAX / 2, u64::MAX, 1000, 60_000);
        let t = Instant::now();
        for _ in 0..40 {
            assert!(matches!(b.next(t, ms(0)), Next::After(_)));
        }
    }

    #[test]
    fn the_burst_limit_counts_restarts_within_the_window() {
        let mut b = backoff(1, 1, 3, 1000);
        let t = Instant::now();
        for i in 0..3 {
            assert!(matches!(b.next(t + ms(i * 100), ms(1)), Next::After(_)));
        }
        assert_eq!(b.next(t + ms(300), ms(1)), Next::GiveUp(3));
        // The first restart leaves the window at t + 1000 ms.
        assert!(matches!(b.next(t + ms(1000), ms(1)), Next::After(_)));
        assert_eq!(b.next(t + ms(1050), ms(1)), Next::GiveUp(3));
        assert_eq!(b.window(), ms(1000));
        assert_eq!(backoff(1, 1, 0, 1000).next(t, ms(1)), Next::GiveUp(0), "--burst 0: never restarted");
    }
}
