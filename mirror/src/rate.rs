//! A byte-rate limiter: uploads wait so that, over time, no more than the configured bytes per
//! second leave for the target.

use std::time::Duration;

use tokio::time::Instant;

/// Paces uploads to `bytes_per_second` (0: unlimited).
#[derive(Debug)]
pub struct RateLimit {
    bytes_per_second: u64,
    next_free: Instant,
}

impl RateLimit {
    /// A limiter allowing `bytes_per_second` (0: no limit).
    pub fn new(bytes_per_second: u64) -> RateLimit {
        RateLimit { bytes_per_second, next_free: Instant::now() }
    }

    /// Waits until `bytes` may be sent.
    pub async fn acquire(&mut self, bytes: u64) {
        if self.bytes_per_second == 0 {
            return;
        }
        let now = Instant::now();
        let start = self.next_free.max(now);
        tokio::time::sleep_until(start).await;
        self.next_free = start + Duration::from_secs_f64(bytes as f64 / self.bytes_per_second as f64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_limit_spaces_uploads_by_their_size() {
        let mut limit = RateLimit::new(1000);
        let t0 = Instant::now();
        limit.acquire(500).await;
        limit.acquire(2000).await;
        limit.acquire(1).await;
        // The second waits 0.5 s for the first's 500 bytes, the third 2 s more for the second's.
        assert_eq!(Instant::now() - t0, Duration::from_millis(2500));
        let mut free = RateLimit::new(0);
        let t1 = Instant::now();
        free.acquire(u64::MAX).await;
        free.acquire(u64::MAX).await;
        assert_eq!(Instant::now(), t1);
    }
}
