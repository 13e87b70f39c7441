//! Intake first, then the lake: while intake requests keep arriving on a machine with no CPU to
//! spare, the roles that consume the log step aside for a bounded time, and catch up from the
//! log after; while the lake sink drains a backlog on such a machine, the consumers that derive
//! from the log (scorers, DVA) step aside for it the same way.
//!
//! On one machine every consumer (the sink, the scorers, the DVA) competes with intake for the
//! same cores, and the embedded broker spends its own CPU serving their fetches. Lowering their
//! priority was not enough (`docs/scaling.md`, sixth round): their fetches still run on the
//! broker beside intake's produces. So they stop fetching altogether: each processor's poller
//! pauses its partitions and its task takes no records until what pressed is over or
//! [`YieldPolicy::max`] has passed, then runs for at least [`YieldPolicy::min_run`] before it may
//! step aside again. Nothing is lost or reordered: a paused partition resumes from the next
//! record the processor has not seen, and the log holds the rest. The cost is freshness while it
//! lasts, bounded by `max` at a time (`max_backlog` for the sink's backlog). A consumer's waits
//! run on its [`Clock`], which stands still while it is aside.
//!
//! A request counts from its arrival until its answer; the sink has a backlog while the
//! partition it last read holds [`LAKE_BACKLOG`] records or more past what it read (reported
//! with each batch, forgotten after [`BACKLOG_STALE`]). The machine counts as saturated when the
//! share of its CPU time in use (`/proc/stat`, every core) over the last sample reaches
//! [`YieldPolicy::busy`]. A machine with spare CPU never makes a consumer wait.

use std::{
    sync::{
        Arc, Mutex,
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
    /// The longest they step aside at a time for intake.
    pub max: Duration,
    /// The longest the consumers deriving from the log step aside at a time for the sink's
    /// backlog.
    pub max_backlog: Duration,
    /// How long they run before they may step aside again.
    pub min_run: Duration,
    /// The share of the machine's CPU time in use, in (0, 1], from which it counts as saturated.
    pub busy: f64,
}

/// What the consumers step aside for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Aside {
    /// Nothing: every consumer runs.
    Nothing,
    /// The lake sink's backlog: the consumers that derive from the log wait.
    Backlog,
    /// Intake's requests: every consumer waits.
    Intake,
}

/// Which consumers a consumer steps aside with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rank {
    /// The lake sink: steps aside for intake only.
    Lake,
    /// A consumer that derives from the log (scorers, DVA): steps aside for intake and for the
    /// sink's backlog.
    Derived,
}

impl Rank {
    const ALL: [Rank; 2] = [Rank::Lake, Rank::Derived];

    fn steps_aside(self, aside: Aside) -> bool {
        match self {
            Rank::Lake => aside == Aside::Intake,
            Rank::Derived => aside != Aside::Nothing,
        }
    }
}

/// Whether the consumers run or have stepped aside, since when, and for what.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Running(Instant),
    Yielding(Instant, Aside),
}

impl Phase {
    fn aside(self) -> Aside {
        match self {
            Phase::Running(_) => Aside::Nothing,
            Phase::Yielding(_, aside) => aside,
        }
    }
}

impl YieldPolicy {
    /// The phase after a sample at `now`: what pressed during the sample, and the share of CPU
    /// time the machine used (`None`: unknown, never saturated). Stepped aside, the consumers
    /// follow what presses (intake over with the sink's backlog left: the sink runs again), and
    /// run again once nothing does or the longest wait for what presses has passed since they
    /// stepped aside (`max`, or `max_backlog` for the backlog alone).
    fn next(&self, phase: Phase, now: Instant, pressing: Aside, cpu: Option<f64>) -> Phase {
        match phase {
            Phase::Running(since)
                if pressing != Aside::Nothing
                    && cpu.is_some_and(|c| c >= self.busy)
                    && now.saturating_duration_since(since) >= self.min_run =>
            {
                Phase::Yielding(now, pressing)
            }
            Phase::Yielding(since, _)
                if pressing == Aside::Nothing || now.saturating_duration_since(since) >= self.longest(pressing) =>
            {
                Phase::Running(now)
            }
            Phase::Yielding(since, _) => Phase::Yielding(since, pressing),
            running => running,
        }
    }

    /// The longest the consumers step aside at a time for what presses.
    fn longest(&self, pressing: Aside) -> Duration {
        match pressing {
            Aside::Backlog => self.max_backlog,
            Aside::Nothing | Aside::Intake => self.max,
        }
    }
}

/// Records waiting in a partition past the one the sink last read from which the sink counts as
/// draining a backlog: a flush's worth at the default `lake.flush_max_records`.
pub const LAKE_BACKLOG: i64 = 20_000;

/// How long the sink's last report of a backlog holds (it reports with every batch it reads).
pub const BACKLOG_STALE: Duration = Duration::from_secs(1);

/// How often the machine's CPU is sampled while intake is busy or the sink has a backlog.
const SAMPLE: Duration = Duration::from_millis(50);

/// The process's view of intake and the sink against the other consumers: intake counts its
/// requests, the sink reports its backlog, the consumers ask whether to step aside, and
/// [`Foreground::watch`] decides.
pub struct Foreground {
    policy: YieldPolicy,
    in_flight: AtomicUsize,
    arrived: AtomicU64,
    /// When the sink last reported a backlog, in milliseconds since `started`; 0 for never.
    backlog_at: AtomicU64,
    started: Instant,
    /// Wakes [`Foreground::watch`] when a request arrives at an idle intake or the sink reports
    /// a backlog.
    pressure: Notify,
    aside: watch::Sender<Aside>,
    /// How long the consumers of each rank have stepped aside, for their [`Clock`]s.
    aside_time: Mutex<[AsideTime; 2]>,
    metrics: Metrics,
}

/// How long consumers of one rank have stepped aside: the periods that ended, and since when
/// they are aside now.
#[derive(Debug, Clone, Copy, Default)]
struct AsideTime {
    ended: Duration,
    since: Option<Instant>,
}

impl AsideTime {
    fn at(&self, now: Instant) -> Duration {
        self.ended + self.since.map_or(Duration::ZERO, |s| now.saturating_duration_since(s))
    }
}

/// A consumer's clock: it stands still while the consumer steps aside. A wait measured on it
/// (a partition's silence, a ballot's wait for its votes) does not count the time the consumer
/// was told not to read: what it would have read meanwhile is still in the log. Without a
/// [`Foreground`] it is the monotonic clock.
#[derive(Clone)]
pub struct Clock(Option<(Arc<Foreground>, Rank)>);

impl Clock {
    /// The clock of a consumer of `rank`.
    pub fn new(foreground: Option<Arc<Foreground>>, rank: Rank) -> Self {
        Self(foreground.map(|f| (f, rank)))
    }

    /// Now, less every moment the consumer has spent aside: never goes back.
    pub fn now(&self) -> Instant {
        let now = Instant::now();
        let Some((foreground, rank)) = &self.0 else { return now };
        let aside = foreground.aside_time.lock().unwrap_or_else(|p| p.into_inner())[*rank as usize].at(now);
        now.checked_sub(aside).unwrap_or(now)
    }
}

struct Metrics {
    yielding: IntGauge,
    yields: IntCounter,
    yielded: Counter,
}

impl Foreground {
    /// Intake, the sink and the other consumers of one process, under `policy`.
    pub fn new(policy: YieldPolicy, registry: &Registry) -> Result<Arc<Self>> {
        let metrics = Metrics {
            yielding: IntGauge::new(
                "gata_background_yielding",
                "While consumers step aside on a saturated machine: 2 every consumer, for a burst of intake; 1 those deriving from the log, for the lake sink's backlog; else 0",
            )?,
            yields: IntCounter::new("gata_background_yields_total", "Times the log's consumers stepped aside")?,
            yielded: Counter::new(
                "gata_background_yielded_seconds_total",
                "Seconds the log's consumers spent stepped aside",
            )?,
        };
        registry.register(Box::new(metrics.yielding.clone()))?;
        registry.register(Box::new(metrics.yields.clone()))?;
        registry.register(Box::new(metrics.yielded.clone()))?;
        Ok(Arc::new(Self {
            policy,
            in_flight: AtomicUsize::new(0),
            arrived: AtomicU64::new(0),
            backlog_at: AtomicU64::new(0),
            started: Instant::now(),
            pressure: Notify::new(),
            aside: watch::Sender::new(Aside::Nothing),
            aside_time: Mutex::new([AsideTime::default(); 2]),
            metrics,
        }))
    }

    /// Counts an intake request until the returned guard is dropped.
    pub fn request(self: &Arc<Self>) -> IntakeRequest {
        self.arrived.fetch_add(1, Ordering::Relaxed);
        if self.in_flight.fetch_add(1, Ordering::AcqRel) == 0 {
            self.pressure.notify_one();
        }
        IntakeRequest(self.clone())
    }

    /// The sink tells how many records wait in the partition it last read, past that record.
    pub fn lake_behind(&self, waiting: i64) {
        if waiting < LAKE_BACKLOG {
            return;
        }
        let now = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX).max(1);
        if self.backlog_at.swap(now, Ordering::AcqRel) == 0 {
            self.pressure.notify_one();
        }
    }

    /// Whether the sink reported a backlog within [`BACKLOG_STALE`]; a stale report is
    /// forgotten, so that the next one wakes an idle watcher again.
    fn lake_has_backlog(&self) -> bool {
        let at = self.backlog_at.load(Ordering::Acquire);
        if at == 0 {
            return false;
        }
        let age = self.started.elapsed().saturating_sub(Duration::from_millis(at));
        age < BACKLOG_STALE || self.backlog_at.compare_exchange(at, 0, Ordering::AcqRel, Ordering::Acquire).is_err()
    }

    /// Whether a consumer of `rank` should step aside now.
    pub fn steps_aside(&self, rank: Rank) -> bool {
        rank.steps_aside(*self.aside.borrow())
    }

    /// Returns once a consumer of `rank` may run (at once unless it is stepping aside).
    pub async fn turn(&self, rank: Rank) {
        let mut rx = self.aside.subscribe();
        let _ = rx.wait_for(|aside| !rank.steps_aside(*aside)).await;
    }

    /// What presses now: intake, if a request arrived since `seen` requests or one is in
    /// flight; else the sink's backlog.
    fn pressing(&self, seen: &mut u64) -> Aside {
        let arrived = self.arrived.load(Ordering::Relaxed);
        let intake = arrived != std::mem::replace(seen, arrived) || self.in_flight.load(Ordering::Acquire) > 0;
        if intake {
            Aside::Intake
        } else if self.lake_has_backlog() {
            Aside::Backlog
        } else {
            Aside::Nothing
        }
    }

    /// Decides, while intake has requests or the sink a backlog, whether the consumers step
    /// aside; returns when `stop` is cancelled. Idle, it sleeps until the next of either.
    pub async fn watch(self: Arc<Self>, stop: CancellationToken) {
        let policy = self.policy;
        let mut cpu = CpuTimes::read();
        if cpu.is_none() {
            tracing::warn!("cannot read /proc/stat: the log's consumers never step aside");
        }
        let mut phase = Phase::Running(Instant::now().checked_sub(policy.min_run).unwrap_or_else(Instant::now));
        let mut seen = self.arrived.load(Ordering::Relaxed);
        loop {
            let idle = matches!(phase, Phase::Running(_))
                && self.in_flight.load(Ordering::Acquire) == 0
                && !self.lake_has_backlog();
            if idle {
                tokio::select! {
                    () = stop.cancelled() => break,
                    () = self.pressure.notified() => {}
                }
                // A fresh baseline: the CPU used while idle says nothing of now.
                cpu = CpuTimes::read();
            }
            tokio::select! {
                () = stop.cancelled() => break,
                () = tokio::time::sleep(SAMPLE) => {}
            }
            let pressing = self.pressing(&mut seen);
            let now_cpu = CpuTimes::read();
            let busy = cpu.zip(now_cpu).and_then(|(before, after)| after.busy_since(&before));
            cpu = now_cpu;
            let now = Instant::now();
            let next = policy.next(phase, now, pressing, busy);
            self.enter(phase, next, now);
            phase = next;
        }
        let now = Instant::now();
        self.enter(phase, Phase::Running(now), now);
    }

    /// Publishes a change of phase.
    fn enter(&self, from: Phase, to: Phase, now: Instant) {
        match (from, to) {
            (Phase::Running(_), Phase::Yielding(..)) => {
                self.metrics.yields.inc();
                tracing::debug!(aside = ?to.aside(), "the machine is saturated: consumers step aside");
            }
            (Phase::Yielding(since, _), Phase::Running(_)) => {
                self.metrics.yielded.inc_by(now.saturating_duration_since(since).as_secs_f64());
            }
            _ => {}
        }
        let aside = to.aside();
        let mut times = self.aside_time.lock().unwrap_or_else(|p| p.into_inner());
        for rank in Rank::ALL {
            let time = &mut times[rank as usize];
            match (rank.steps_aside(aside), time.since) {
                (true, None) => time.since = Some(now),
                (false, Some(_)) => *time = AsideTime { ended: time.at(now), since: None },
                _ => {}
            }
        }
        drop(times);
        self.metrics.yielding.set(match aside {
            Aside::Nothing => 0,
            Aside::Backlog => 1,
            Aside::Intake => 2,
        });
        self.aside.send_if_modified(|current| std::mem::replace(current, aside) != aside);
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

    const POLICY: YieldPolicy = YieldPolicy {
        max: Duration::from_secs(2),
        max_backlog: Duration::from_secs(10),
        min_run: Duration::from_millis(500),
        busy: 0.9,
    };

    #[test]
    fn consumers_step_aside_only_under_pressure_on_a_saturated_machine_and_only_for_a_while() {
        let t0 = Instant::now();
        let at = |ms| t0 + Duration::from_millis(ms);
        let running = Phase::Running(t0);
        let (intake, backlog, nothing) = (Aside::Intake, Aside::Backlog, Aside::Nothing);
        // Spare CPU, or nothing pressing, or an unknown load: they run.
        assert_eq!(POLICY.next(running, at(600), intake, Some(0.5)), running);
        assert_eq!(POLICY.next(running, at(600), nothing, Some(1.0)), running);
        assert_eq!(POLICY.next(running, at(600), intake, None), running);
        // Not yet run for min_run since they last ran again.
        assert_eq!(POLICY.next(running, at(400), intake, Some(1.0)), running);
        let yielding = POLICY.next(running, at(600), intake, Some(0.95));
        assert_eq!(yielding, Phase::Yielding(at(600), intake));
        // They stay aside while intake is busy, whatever the CPU (stepping aside frees it) ...
        assert_eq!(POLICY.next(yielding, at(2_000), intake, Some(0.2)), yielding);
        // ... until intake goes quiet ...
        assert_eq!(POLICY.next(yielding, at(700), nothing, Some(1.0)), Phase::Running(at(700)));
        // ... or `max` has passed; then they run for `min_run` however busy intake is.
        let back = POLICY.next(yielding, at(2_600), intake, Some(1.0));
        assert_eq!(back, Phase::Running(at(2_600)));
        assert_eq!(POLICY.next(back, at(3_000), intake, Some(1.0)), back);
        assert_eq!(POLICY.next(back, at(3_100), intake, Some(1.0)), Phase::Yielding(at(3_100), intake));
        // Intake over with the sink's backlog left: the sink runs, the others stay aside up to
        // `max_backlog` from when they stepped aside, or `max` once intake presses again.
        let for_backlog = POLICY.next(yielding, at(1_000), backlog, Some(0.5));
        assert_eq!(for_backlog, Phase::Yielding(at(600), backlog));
        assert_eq!(POLICY.next(for_backlog, at(2_600), backlog, Some(1.0)), for_backlog);
        assert_eq!(POLICY.next(for_backlog, at(10_600), backlog, Some(1.0)), Phase::Running(at(10_600)));
        assert_eq!(POLICY.next(for_backlog, at(2_600), intake, Some(1.0)), Phase::Running(at(2_600)));
        assert_eq!(POLICY.next(running, at(600), backlog, Some(0.95)), Phase::Yielding(at(600), backlog));
    }

    #[test]
    fn the_sink_steps_aside_for_intake_only_and_the_others_for_its_backlog_too() {
        assert!(!Rank::Lake.steps_aside(Aside::Nothing));
        assert!(!Rank::Lake.steps_aside(Aside::Backlog));
        assert!(Rank::Lake.steps_aside(Aside::Intake));
        assert!(!Rank::Derived.steps_aside(Aside::Nothing));
        assert!(Rank::Derived.steps_aside(Aside::Backlog));
        assert!(Rank::Derived.steps_aside(Aside::Intake));
        let foreground = Foreground::new(POLICY, &Registry::new()).expect("metrics");
        assert!(!foreground.lake_has_backlog());
        foreground.lake_behind(LAKE_BACKLOG - 1);
        assert!(!foreground.lake_has_backlog(), "a small lag is no backlog");
        foreground.lake_behind(LAKE_BACKLOG);
        assert!(foreground.lake_has_backlog());
    }

    #[test]
    fn a_consumers_clock_stands_still_while_it_is_aside() {
        let foreground = Foreground::new(POLICY, &Registry::new()).expect("metrics");
        let derived = Clock::new(Some(foreground.clone()), Rank::Derived);
        let lake = Clock::new(Some(foreground.clone()), Rank::Lake);
        let pause = Duration::from_millis(30);
        let t0 = Instant::now();
        foreground.enter(Phase::Running(t0), Phase::Yielding(t0, Aside::Backlog), t0);
        let (d0, l0) = (derived.now(), lake.now());
        std::thread::sleep(pause);
        assert_eq!(derived.now(), d0, "aside for the backlog: the derived consumers' clock stops");
        assert!(lake.now() >= l0 + pause, "the sink's runs on");
        let t1 = Instant::now();
        foreground.enter(Phase::Yielding(t0, Aside::Backlog), Phase::Running(t1), t1);
        std::thread::sleep(pause);
        let (d1, l1) = (derived.now(), lake.now());
        assert!(d1 >= d0 + pause, "running again, it moves");
        assert!(l1.duration_since(d1) >= t1.duration_since(t0), "less the time it was aside");
        assert!(Clock::new(None, Rank::Derived).now() >= l1, "without a foreground: the monotonic clock");
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

    /// Keeps a core busy until `stop`, so that the machine's CPU time moves.
    fn spin(stop: &CancellationToken) -> std::thread::JoinHandle<()> {
        let stop = stop.clone();
        std::thread::spawn(move || {
            while !stop.is_cancelled() {
                std::hint::spin_loop();
            }
        })
    }

    /// `busy` of the smallest positive share: any machine that ticked at all is saturated.
    const ALWAYS: YieldPolicy = YieldPolicy {
        max: Duration::from_secs(30),
        max_backlog: Duration::from_secs(30),
        min_run: Duration::ZERO,
        busy: f64::MIN_POSITIVE,
    };

    #[tokio::test]
    async fn a_burst_of_requests_on_a_saturated_machine_makes_the_consumers_wait_until_it_ends() {
        let foreground = Foreground::new(ALWAYS, &Registry::new()).expect("metrics");
        let stop = CancellationToken::new();
        let watcher = tokio::spawn(foreground.clone().watch(stop.clone()));
        assert!(!foreground.steps_aside(Rank::Derived));
        let request = foreground.request();
        let spinner = spin(&stop);
        let mut rx = foreground.aside.subscribe();
        let aside = tokio::time::timeout(Duration::from_secs(30), rx.wait_for(|a| *a == Aside::Intake));
        aside.await.expect("steps aside").expect("open");
        assert!(foreground.steps_aside(Rank::Lake) && foreground.steps_aside(Rank::Derived));
        let waiting = tokio::time::timeout(Duration::from_millis(200), foreground.turn(Rank::Lake));
        assert!(waiting.await.is_err(), "still aside");
        drop(request);
        let quiet = tokio::time::timeout(Duration::from_secs(30), foreground.turn(Rank::Derived));
        quiet.await.expect("runs again once intake is quiet");
        assert_eq!(foreground.metrics.yields.get(), 1);
        assert!(foreground.metrics.yielded.get() > 0.0);
        stop.cancel();
        watcher.await.expect("watcher");
        spinner.join().expect("spinner");
    }

    #[tokio::test]
    async fn the_sinks_backlog_makes_only_the_others_wait_and_only_while_it_is_reported() {
        let foreground = Foreground::new(ALWAYS, &Registry::new()).expect("metrics");
        let stop = CancellationToken::new();
        let watcher = tokio::spawn(foreground.clone().watch(stop.clone()));
        let spinner = spin(&stop);
        foreground.lake_behind(LAKE_BACKLOG);
        let mut rx = foreground.aside.subscribe();
        let aside = tokio::time::timeout(Duration::from_secs(30), rx.wait_for(|a| *a == Aside::Backlog));
        aside.await.expect("steps aside").expect("open");
        assert!(!foreground.steps_aside(Rank::Lake), "the sink itself runs");
        assert!(foreground.steps_aside(Rank::Derived));
        // Reports stop (the backlog is drained): the others run again once the last one is stale.
        let quiet = tokio::time::timeout(Duration::from_secs(30), foreground.turn(Rank::Derived));
        quiet.await.expect("runs again once the backlog is no longer reported");
        stop.cancel();
        watcher.await.expect("watcher");
        spinner.join().expect("spinner");
    }
}
