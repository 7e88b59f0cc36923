//! What every pull of an agent shares: a number of request slots handed out by priority
//! (models before gauntlet inputs before training data before background copies) and one
//! bandwidth limit for all of them. The ordering and the token bucket are pure; [`Gate`] is the
//! async shell around them.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ringrift_crds::common::ArtifactKind;
use ringrift_crds::task::Role;
use serde::Serialize;
use tokio::sync::oneshot;

/// Transfer priority classes, most urgent first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Class {
    /// Model weights and checkpoints: selfplay and gauntlets wait on them.
    Model,
    /// Other inputs of a gauntlet.
    Gauntlet,
    /// Games for training.
    Training,
    /// Copies nobody waits for.
    Background,
}

impl Class {
    /// Every class, most urgent first.
    pub const ALL: [Self; 4] = [Self::Model, Self::Gauntlet, Self::Training, Self::Background];

    /// The stored and metric label spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Model => "model",
            Self::Gauntlet => "gauntlet",
            Self::Training => "training",
            Self::Background => "background",
        }
    }

    /// Parses [`Self::as_str`]; anything else is background.
    pub fn parse(s: &str) -> Self {
        Self::ALL
            .into_iter()
            .find(|c| c.as_str() == s)
            .unwrap_or(Self::Background)
    }
}

/// The class of an input of a task in `role`.
pub fn class_of(role: Role, kind: ArtifactKind) -> Class {
    match (kind, role) {
        (ArtifactKind::Model | ArtifactKind::Checkpoint, _) => Class::Model,
        (ArtifactKind::Games, Role::Gauntlet) => Class::Gauntlet,
        (ArtifactKind::Games, Role::Training) => Class::Training,
        (ArtifactKind::Games, Role::Selfplay | Role::Copy) => Class::Background,
    }
}

/// Waiters in priority order: the most urgent class first, first come first within a class.
#[derive(Debug)]
pub struct WaitQueue<T> {
    heap: BinaryHeap<(Reverse<Class>, Reverse<u64>, Entry<T>)>,
    seq: u64,
}

#[derive(Debug)]
struct Entry<T>(T);

impl<T> PartialEq for Entry<T> {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}
impl<T> Eq for Entry<T> {}
impl<T> PartialOrd for Entry<T> {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl<T> Ord for Entry<T> {
    fn cmp(&self, _: &Self) -> std::cmp::Ordering {
        std::cmp::Ordering::Equal
    }
}

impl<T> Default for WaitQueue<T> {
    fn default() -> Self {
        Self {
            heap: BinaryHeap::new(),
            seq: 0,
        }
    }
}

impl<T> WaitQueue<T> {
    /// Queues `item` in `class`.
    pub fn push(&mut self, class: Class, item: T) {
        self.seq += 1;
        self.heap.push((Reverse(class), Reverse(self.seq), Entry(item)));
    }

    /// The most urgent waiter.
    pub fn pop(&mut self) -> Option<(Class, T)> {
        self.heap.pop().map(|(Reverse(c), _, Entry(t))| (c, t))
    }

    /// Number waiting.
    pub fn len(&self) -> usize {
        self.heap.len()
    }

    /// Whether none waits.
    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }
}

/// The shortest wait a [`Bucket`] asks for.
pub const MIN_WAIT: Duration = Duration::from_millis(2);

/// A token bucket in bytes: `rate` bytes per second with `burst` bytes of credit. Taking more
/// than there is goes into debt, and the taker waits the debt out.
#[derive(Debug, Clone)]
pub struct Bucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl Bucket {
    /// A bucket of `rate` bytes per second (0: unlimited), full at `now`.
    #[allow(clippy::cast_precision_loss)] // byte rates far below 2^52
    pub fn new(rate: u64, now: Instant) -> Self {
        let rate = rate as f64;
        // A quarter second of credit: smooth enough, and a burst never exceeds the limit for long.
        let burst = (rate / 4.0).max(256.0 * 1024.0);
        Self {
            rate,
            burst,
            tokens: burst,
            last: now,
        }
    }

    /// Takes `bytes` at `now`; returns how long the taker must wait before using them. A wait
    /// shorter than [`MIN_WAIT`] is not asked for: the debt stays, and a later taker waits it
    /// out (timers round short sleeps up, which would hold the rate well under the limit).
    #[allow(clippy::cast_precision_loss)]
    pub fn take(&mut self, bytes: u64, now: Instant) -> Duration {
        if self.rate <= 0.0 {
            return Duration::ZERO;
        }
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = self.last.max(now);
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        self.tokens -= bytes as f64;
        let wait = Duration::from_secs_f64((-self.tokens / self.rate).max(0.0));
        if wait < MIN_WAIT { Duration::ZERO } else { wait }
    }
}

#[derive(Debug)]
struct State {
    free: usize,
    queue: WaitQueue<oneshot::Sender<Permit>>,
    bucket: Bucket,
}

/// Request slots by priority and the bandwidth limit of one agent.
#[derive(Debug)]
pub struct Gate {
    state: Mutex<State>,
    slots: usize,
}

/// One request slot; given to the next waiter when dropped.
#[derive(Debug)]
pub struct Permit {
    gate: Option<Arc<Gate>>,
}

impl Drop for Permit {
    fn drop(&mut self) {
        if let Some(gate) = self.gate.take() {
            Gate::release(&gate);
        }
    }
}

impl Gate {
    /// A gate with `slots` concurrent requests and `rate` bytes per second (0: unlimited).
    pub fn new(slots: usize, rate: u64) -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(State {
                free: slots.max(1),
                queue: WaitQueue::default(),
                bucket: Bucket::new(rate, Instant::now()),
            }),
            slots: slots.max(1),
        })
    }

    /// Request slots in all.
    pub fn slots(&self) -> usize {
        self.slots
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Waits for a slot; more urgent classes are served first.
    pub async fn acquire(self: &Arc<Self>, class: Class) -> Permit {
        let rx = {
            let mut s = self.lock();
            if s.free > 0 && s.queue.is_empty() {
                s.free -= 1;
                return Permit {
                    gate: Some(self.clone()),
                };
            }
            let (tx, rx) = oneshot::channel();
            s.queue.push(class, tx);
            rx
        };
        match rx.await {
            Ok(permit) => permit,
            // The gate is never dropped while a waiter holds it; a slot of our own as a fallback.
            Err(_) => Permit { gate: None },
        }
    }

    fn release(gate: &Arc<Self>) {
        let mut s = gate.lock();
        while let Some((_, tx)) = s.queue.pop() {
            // A waiter that gave up drops its receiver: hand the slot to the next one.
            match tx.send(Permit {
                gate: Some(gate.clone()),
            }) {
                Ok(()) => return,
                Err(mut unused) => unused.gate = None,
            }
        }
        s.free += 1;
    }

    /// Waits until `bytes` fit in the bandwidth limit.
    pub async fn throttle(&self, bytes: u64) {
        let wait = self.lock().bucket.take(bytes, Instant::now());
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }

    /// Requests waiting for a slot.
    pub fn waiting(&self) -> usize {
        self.lock().queue.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_of_inputs() {
        assert_eq!(class_of(Role::Selfplay, ArtifactKind::Model), Class::Model);
        assert_eq!(class_of(Role::Training, ArtifactKind::Checkpoint), Class::Model);
        assert_eq!(class_of(Role::Gauntlet, ArtifactKind::Games), Class::Gauntlet);
        assert_eq!(class_of(Role::Training, ArtifactKind::Games), Class::Training);
        assert_eq!(class_of(Role::Selfplay, ArtifactKind::Games), Class::Background);
        for c in Class::ALL {
            assert_eq!(Class::parse(c.as_str()), c);
        }
        assert_eq!(Class::parse("nonsense"), Class::Background);
    }

    #[test]
    fn models_before_gauntlet_before_training_before_background_and_fifo_within() {
        let mut q = WaitQueue::default();
        q.push(Class::Background, "bg1");
        q.push(Class::Training, "tr1");
        q.push(Class::Model, "m1");
        q.push(Class::Gauntlet, "g1");
        q.push(Class::Model, "m2");
        q.push(Class::Background, "bg2");
        let order: Vec<&str> = std::iter::from_fn(|| q.pop().map(|(_, t)| t)).collect();
        assert_eq!(order, ["m1", "m2", "g1", "tr1", "bg1", "bg2"]);
        assert!(q.is_empty());
    }

    #[test]
    fn the_bucket_holds_the_rate() {
        let t0 = Instant::now();
        let mut b = Bucket::new(4_000_000, t0);
        // The burst (a quarter second) passes at once; then one second per 4 MB.
        assert_eq!(b.take(1_000_000, t0), Duration::ZERO);
        let wait = b.take(4_000_000, t0);
        assert!((wait.as_secs_f64() - 1.0).abs() < 1e-6, "{wait:?}");
        // Half a second later the debt is half paid.
        let wait = b.take(0, t0 + Duration::from_millis(500));
        assert!((wait.as_secs_f64() - 0.5).abs() < 1e-6, "{wait:?}");
        // Unused time refills only up to the burst.
        let later = t0 + Duration::from_secs(100);
        assert_eq!(b.take(1_000_000, later), Duration::ZERO);
        assert!(b.take(40_000, later) > Duration::ZERO);
    }

    #[test]
    fn short_waits_are_carried_as_debt() {
        let t0 = Instant::now();
        let mut b = Bucket::new(100_000_000, t0);
        assert_eq!(b.take(25_000_000, t0), Duration::ZERO, "the burst");
        // 64 KB pieces cost 0.64 ms each: none waits alone, the debt adds up...
        let waits: Vec<Duration> = (0..10).map(|_| b.take(64_000, t0)).collect();
        assert!(waits[..3].iter().all(Duration::is_zero), "{waits:?}");
        // ...and whoever takes past MIN_WAIT waits for all of it.
        let last = *waits.iter().rfind(|w| !w.is_zero()).unwrap();
        assert!(last >= MIN_WAIT, "{waits:?}");
        let total = b.take(0, t0);
        assert!(
            (total.as_secs_f64() - 0.0064).abs() < 1e-6,
            "the whole debt is still owed: {total:?}"
        );
    }

    #[test]
    fn no_limit_never_waits() {
        let t0 = Instant::now();
        let mut b = Bucket::new(0, t0);
        assert_eq!(b.take(u64::MAX, t0), Duration::ZERO);
    }

    #[tokio::test]
    async fn slots_go_to_the_most_urgent_waiter() {
        let gate = Gate::new(1, 0);
        let held = gate.acquire(Class::Background).await;
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut waiters = Vec::new();
        for class in [Class::Background, Class::Training, Class::Model] {
            let (g, order) = (gate.clone(), order.clone());
            waiters.push(tokio::spawn(async move {
                let _p = g.acquire(class).await;
                order.lock().unwrap().push(class);
            }));
            // Let each queue before the next.
            while gate.waiting() < waiters.len() {
                tokio::task::yield_now().await;
            }
        }
        drop(held);
        for w in waiters {
            w.await.unwrap();
        }
        assert_eq!(
            *order.lock().unwrap(),
            [Class::Model, Class::Training, Class::Background]
        );
        // Every slot came back.
        let _a = gate.acquire(Class::Model).await;
        assert_eq!(gate.waiting(), 0);
    }

    #[tokio::test]
    async fn a_waiter_that_gives_up_does_not_lose_the_slot() {
        let gate = Gate::new(1, 0);
        let held = gate.acquire(Class::Model).await;
        let g = gate.clone();
        let quitter = tokio::spawn(async move { g.acquire(Class::Model).await });
        while gate.waiting() < 1 {
            tokio::task::yield_now().await;
        }
        quitter.abort();
        let _ = quitter.await;
        drop(held);
        let got = tokio::time::timeout(Duration::from_secs(5), gate.acquire(Class::Training)).await;
        assert!(got.is_ok(), "the slot came back");
    }
}
