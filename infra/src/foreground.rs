//! Intake first: while intake requests keep arriving on a machine with no CPU to spare, the
//! roles that consume the log step aside for a bounded time, and catch up from the log after.
//!
//! On one machine every consumer (the sink, the scorers, the DVA) competes with intake for the
//! same cores, and the embedded broker spends its own CPU serving their fetches. Lowering their
//! priority was not enough (`docs/scaling.md`, sixth round): their fetches still run on the
//! broker beside intake's produces. So under a burst they stop fetching altogether: each
//! processor's poller pauses its partitions and its task takes no records until the burst ends
//! or [`YieldPolicy::max`] has passed, then runs for at least [`YieldPolicy::min_run`] before it
//! may step aside again. Nothing is lost or reordered: a paused partition resumes from the next
//! record the processor has not seen, and the log holds the rest. The cost is freshness during a
//! burst, bounded by `max`.
//!
//! A request counts from its arrival until its answer; the machine counts as saturated when the
//! share of its CPU time in use (`/proc/stat`, every core) over the last sample reaches
//! [`YieldPolicy::busy`]. A machine with spare CPU never makes the consumers wait.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use prometheus::{Counter, IntCounter, IntGauge, Registry};
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;

use crate::Result;

/// When the consumers step aside, and for how long.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct YieldPolicy {
    /// The longest they step aside at a time.
    pub max: Duration,
    /// How long they run before they may step aside again.
    pub min_run: Duration,
    /// The share of the machine's CPU time in use, in (0, 1], from which it counts as saturated.
    pub busy: f64,
}

/// Whether the consumers run or have stepped aside, and since when.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Running(Instant),
    Yielding(Instant),
}

impl YieldPolicy {
    /// The phase after a sample at `now`: whether intake had requests in the sample, and the
    /// share of CPU time the machine used (`None`: unknown, never saturated).
    fn next(&self, phase: Phase, now: Instant, intake_busy: bool, cpu: Option<f64>) -> Phase {
        match phase {
            Phase::Running(since)
                if intake_busy
                    && cpu.is_some_and(|c| c >= self.busy)
                    && now.saturating_duration_since(since) >= self.min_run =>
            {
                Phase::Yielding(now)
            }
            Phase::Yielding(since) if !intake_busy || now.saturating_duration_since(since) >= self.max => {
                Phase::Running(now)
            }
            same => same,
        }
    }
}

/// How often the machine's CPU is sampled while intake is busy.
const SAMPLE: Duration = Duration::from_millis(50);

/// The process's view of intake against the consumers: intake counts its requests, the
/// consumers ask whether to step aside, and [`Foreground::watch`] decides.
pub struct Foreground {
    policy: Option<YieldPolicy>,
    in_flight: AtomicUsize,
    arrived: AtomicU64,
    /// Wakes [`Foreground::watch`] when a request arrives at an idle intake.
    arrival: Notify,
    yielding: watch::Sender<bool>,
    metrics: Metrics,
}

struct Metrics {
    yielding: IntGauge,
    yields: IntCounter,
    yielded: Counter,
}

impl Foreground {
    /// Intake and the consumers of one process; with no policy the consumers never step aside.
    pub fn new(policy: Option<YieldPolicy>, registry: &Registry) -> Result<Arc<Self>> {
        let metrics = Metrics {
            yielding: IntGauge::new(
                "gata_background_yielding",
                "1 while the log's consumers step aside for a burst of intake on a saturated machine",
            )?,
            yields: IntCounter::new(
                "gata_background_yields_total",
                "Times the log's consumers stepped aside for intake",
            )?,
            yielded: Counter::new(
                "gata_background_yielded_seconds_total",
                "Seconds the log's consumers spent stepped aside for intake",
            )?,
        };
        registry.register(Box::new(metrics.yielding.clone()))?;
        registry.register(Box::new(metrics.yields.clone()))?;
        registry.register(Box::new(metrics.yielded.clone()))?;
        Ok(Arc::new(Self {
            policy,
            in_flight: AtomicUsize::new(0),
            arrived: AtomicU64::new(0),
            arrival: Notify::new(),
            yielding: watch::Sender::new(false),
            metrics,
        }))
    }

    /// Counts an intake request until the returned guard is dropped.
    pub fn request(self: &Arc<Self>) -> IntakeRequest {
        self.arrived.fetch_add(1, Ordering::Relaxed);
        if self.in_flight.fetch_add(1, Ordering::AcqRel) == 0 {
            self.arrival.notify_one();
        }
        IntakeRequest(self.clone())
    }

    /// Whether the consumers should step aside now.
    pub fn yielding(&self) -> bool {
        *self.yielding.borrow()
    }

    /// Returns once the consumers may run (at once unless they are stepping aside).
    pub async fn turn(&self) {
        let mut rx = self.yielding.subscribe();
        let _ = rx.wait_for(|yielding| !yielding).await;
    }

    /// Decides, while intake has requests, whether the consumers step aside; returns when
    /// `stop` is cancelled. Idle, it sleeps until the next request.
    pub async fn watch(self: Arc<Self>, stop: CancellationToken) {
        let Some(policy) = self.policy else { return };
        let mut cpu = CpuTimes::read();
        if cpu.is_none() {
            tracing::warn!("cannot read /proc/stat: the log's consumers never step aside for intake");
        }
        let mut phase = Phase::Running(Instant::now().checked_sub(policy.min_run).unwrap_or_else(Instant::now));
        let mut seen = self.arrived.load(Ordering::Relaxed);
        loop {
            let idle = self.in_flight.load(Ordering::Acquire) == 0 && matches!(phase, Phase::Running(_));
            let woken = async {
                if idle {
                    self.arrival.notified().await;
                } else {
                    tokio::time::sleep(SAMPLE).await;
                }
            };
            tokio::select! {
                () = stop.cancelled() => break,
                () = woken => {}
            }
            if idle {
                // A fresh baseline: the CPU used while intake was idle says nothing of now.
                cpu = CpuTimes::read();
                tokio::select! {
                    () = stop.cancelled() => break,
                    () = tokio::time::sleep(SAMPLE) => {}
                }
            }
            let arrived = self.arrived.load(Ordering::Relaxed);
            let intake_busy = arrived != seen || self.in_flight.load(Ordering::Acquire) > 0;
            seen = arrived;
            let now_cpu = CpuTimes::read();
            let busy = cpu.zip(now_cpu).and_then(|(before, after)| after.busy_since(&before));
            cpu = now_cpu;
            let now = Instant::now();
            let next = policy.next(phase, now, intake_busy, busy);
            self.enter(phase, next, now);
            phase = next;
        }
        if let Phase::Yielding(since) = phase {
            self.enter(phase, Phase::Running(Instant::now()), since);
        }
    }

    /// Publishes a change of phase.
    fn enter(&self, from: Phase, to: Phase, now: Instant) {
        match (from, to) {
            (Phase::Running(_), Phase::Yielding(_)) => {
                self.metrics.yields.inc();
                self.metrics.yielding.set(1);
                self.yielding.send_replace(true);
                tracing::debug!("intake is busy on a saturated machine: the log's consumers step aside");
            }
            (Phase::Yielding(since), Phase::Running(_)) => {
                self.metrics.yielded.inc_by(now.saturating_duration_since(since).as_secs_f64());
                self.metrics.yielding.set(0);
                self.yielding.send_replace(false);
            }
            _ => {}
        }
    }
}

/// An intake request in progress (see [`Foreground::request`]).
pub struct IntakeRequest(Arc<Foreground>);

impl Drop for IntakeRequest {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The machine's CPU time so far, in clock ticks, from the first line of `/proc/stat`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct CpuTimes {
    busy: u64,
    total: u64,
}

impl CpuTimes {
    fn read() -> Option<Self> {
        Self::parse(&std::fs::read_to_string("/proc/stat").ok()?)
    }

    /// `cpu  user nice system idle iowait irq softirq steal …`: idle and iowait are the time
    /// not in use.
    fn parse(stat: &str) -> Option<Self> {
        let line = stat.lines().next()?.strip_prefix("cpu ")?;
        let ticks: Vec<u64> =
            line.split_whitespace().take(8).map(str::parse).collect::<std::result::Result<_, _>>().ok()?;
        let total: u64 = ticks.iter().sum();
        let unused = ticks.get(3)? + ticks.get(4)?;
        Some(Self { busy: total - unused, total })
    }

    /// The share of CPU time in use since `before`; `None` if no tick passed.
    fn busy_since(&self, before: &Self) -> Option<f64> {
        let total = self.total.checked_sub(before.total).filter(|t| *t > 0)?;
        Some(self.busy.saturating_sub(before.busy) as f64 / total as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: YieldPolicy =
        YieldPolicy { max: Duration::from_secs(2), min_run: Duration::from_millis(500), busy: 0.9 };

    #[test]
    fn consumers_step_aside_only_for_intake_on_a_saturated_machine_and_only_for_a_while() {
        let t0 = Instant::now();
        let at = |ms| t0 + Duration::from_millis(ms);
        let running = Phase::Running(t0);
        // Spare CPU, or no intake, or an unknown load: they run.
        assert_eq!(POLICY.next(running, at(600), true, Some(0.5)), running);
        assert_eq!(POLICY.next(running, at(600), false, Some(1.0)), running);
        assert_eq!(POLICY.next(running, at(600), true, None), running);
        // Not yet run for min_run since they last ran again.
        assert_eq!(POLICY.next(running, at(400), true, Some(1.0)), running);
        let yielding = POLICY.next(running, at(600), true, Some(0.95));
        assert_eq!(yielding, Phase::Yielding(at(600)));
        // They stay aside while intake is busy, whatever the CPU (stepping aside frees it) ...
        assert_eq!(POLICY.next(yielding, at(2_000), true, Some(0.2)), yielding);
        // ... until intake goes quiet ...
        assert_eq!(POLICY.next(yielding, at(700), false, Some(1.0)), Phase::Running(at(700)));
        // ... or `max` has passed; then they run for `min_run` however busy intake is.
        let back = POLICY.next(yielding, at(2_600), true, Some(1.0));
        assert_eq!(back, Phase::Running(at(2_600)));
        assert_eq!(POLICY.next(back, at(3_000), true, Some(1.0)), back);
        assert_eq!(POLICY.next(back, at(3_100), true, Some(1.0)), Phase::Yielding(at(3_100)));
    }

    #[test]
    fn cpu_use_is_read_from_proc_stat() {
        let before = CpuTimes::parse("cpu  100 0 50 800 50 0 0 0 0 0\ncpu0 1 2 3 4\n").expect("parses");
        let after = CpuTimes::parse("cpu  160 0 80 810 50 0 0 0 0 0\n").expect("parses");
        assert_eq!(before, CpuTimes { busy: 150, total: 1000 });
        assert_eq!(after.busy_since(&before), Some(0.9));
        assert_eq!(before.busy_since(&before), None);
        assert_eq!(CpuTimes::parse("intr 1 2 3"), None);
        assert_eq!(CpuTimes::parse("cpu  1 2 x"), None);
        // This machine's own, where there is one.
        if let Some(now) = CpuTimes::read() {
            assert!(now.total >= now.busy);
        }
    }

    #[tokio::test]
    async fn a_burst_of_requests_on_a_saturated_machine_makes_the_consumers_wait_until_it_ends() {
        // `busy` of the smallest positive share: any machine that ticked at all is saturated.
        let policy = YieldPolicy { max: Duration::from_secs(30), min_run: Duration::ZERO, busy: f64::MIN_POSITIVE };
        let foreground = Foreground::new(Some(policy), &Registry::new()).expect("metrics");
        let stop = CancellationToken::new();
        let watcher = tokio::spawn(foreground.clone().watch(stop.clone()));
        assert!(!foreground.yielding());
        let request = foreground.request();
        // Keep a core busy so that the machine's CPU time moves.
        let spin = std::thread::spawn({
            let stop = stop.clone();
            move || {
                while !stop.is_cancelled() {
                    std::hint::spin_loop();
                }
            }
        });
        let mut rx = foreground.yielding.subscribe();
        tokio::time::timeout(Duration::from_secs(30), rx.wait_for(|y| *y)).await.expect("steps aside").expect("open");
        assert!(tokio::time::timeout(Duration::from_millis(200), foreground.turn()).await.is_err(), "still aside");
        drop(request);
        tokio::time::timeout(Duration::from_secs(30), foreground.turn())
            .await
            .expect("runs again once intake is quiet");
        assert_eq!(foreground.metrics.yields.get(), 1);
        assert!(foreground.metrics.yielded.get() > 0.0);
        stop.cancel();
        watcher.await.expect("watcher");
        spin.join().expect("spinner");
    }
}
