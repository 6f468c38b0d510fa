//! The session's transitions against a plain model: whether a map may be made, whether a
//! parked reply may land, what the frontend link is told, and that every mapping is gone
//! once a reset's release or a disconnect's release has run — driven through the ledger
//! and the in-memory frontend, including one that refuses maps and one that disconnects.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use proptest::prelude::*;

use super::*;
use crate::dax::tests::support::{CHUNK, TestBacking, dynb, ledger};
use crate::dax::{Failure, FileOffset, MemoryMapper, PinGuard, PinWait, WindowOffset};

#[derive(Default)]
struct Link {
    started: AtomicUsize,
    dropped: AtomicUsize,
    detached: AtomicUsize,
}

impl FrontendLink for Link {
    fn device_started(&self) {
        self.started.fetch_add(1, Ordering::SeqCst);
    }
    fn frontend_dropped_all(&self) {
        self.dropped.fetch_add(1, Ordering::SeqCst);
    }
    fn detach(&self) {
        self.detached.fetch_add(1, Ordering::SeqCst);
    }
}

const CHUNKS: u64 = 4;

#[derive(Clone, Debug)]
enum Step {
    Start,
    StopRings,
    /// A reset; its release runs at once, or is kept pending until `RunRelease`.
    Reset {
        run_now: bool,
    },
    RunRelease,
    Disconnect,
    RetryRelease,
    Map {
        chunk: u64,
        refused: bool,
    },
    Pin {
        chunk: u64,
    },
    UnpinAll,
    TakeEpoch,
    Complete {
        which: usize,
    },
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        3 => Just(Step::Start),
        2 => Just(Step::StopRings),
        2 => any::<bool>().prop_map(|run_now| Step::Reset { run_now }),
        2 => Just(Step::RunRelease),
        1 => Just(Step::Disconnect),
        2 => Just(Step::RetryRelease),
        5 => (0..CHUNKS, prop::bool::weighted(0.2))
            .prop_map(|(chunk, refused)| Step::Map { chunk, refused }),
        2 => (0..CHUNKS).prop_map(|chunk| Step::Pin { chunk }),
        2 => Just(Step::UnpinAll),
        3 => Just(Step::TakeEpoch),
        3 => (0..8usize).prop_map(|which| Step::Complete { which }),
    ]
}

/// The plain model.
#[derive(Default)]
struct Model {
    running: bool,
    pending_releases: usize,
    disconnected: bool,
    epoch: u64,
    starts: usize,
    resets: usize,
    detaches: usize,
}

impl Model {
    fn may_map(&self) -> bool {
        self.pending_releases == 0 && !self.disconnected
    }
}

struct Harness {
    session: Arc<WindowSession>,
    mapper: Arc<MemoryMapper>,
    link: Arc<Link>,
    backing: Arc<TestBacking>,
    pending: Vec<PendingRelease>,
    pins: Vec<PinGuard>,
    taken: Vec<(ReplyEpoch, u64)>,
    model: Model,
}

impl Harness {
    fn new() -> Self {
        let (ledger, mapper) = ledger(CHUNKS, Duration::from_millis(1));
        let link = Arc::new(Link::default());
        let session = WindowSession::new(Arc::new(ledger), link.clone());
        Harness {
            session,
            mapper,
            link,
            backing: TestBacking::new(1, CHUNKS * CHUNK, true),
            pending: Vec::new(),
            pins: Vec::new(),
            taken: Vec::new(),
            model: Model::default(),
        }
    }

    fn live(&self) -> usize {
        self.session.ledger().stats().live_mappings
    }

    fn apply(&mut self, step: &Step) {
        let m = &mut self.model;
        match step {
            Step::Start => {
                let started = self.session.start();
                assert_eq!(started, !m.running);
                if !m.running {
                    m.running = true;
                    m.starts += 1;
                }
            }
            Step::StopRings => {
                self.session.stop_rings();
                m.running = false;
                m.epoch += 1;
            }
            Step::Reset { run_now } => {
                let release = self.session.reset();
                m.running = false;
                m.epoch += 1;
                m.resets += 1;
                m.pending_releases += 1;
                assert!(
                    self.session.check_map().is_err(),
                    "maps wait for the release"
                );
                if *run_now {
                    self.run_release(release);
                } else {
                    self.pending.push(release);
                }
            }
            Step::RunRelease => {
                if let Some(release) = self.pending.pop() {
                    self.run_release(release);
                }
            }
            Step::Disconnect => {
                let released = self.session.disconnect();
                m.running = false;
                m.epoch += 1;
                m.detaches += 1;
                assert_eq!(released, self.pins.is_empty(), "only pins keep mappings");
                m.disconnected = !released;
                if released {
                    assert_eq!(self.live(), 0);
                }
            }
            Step::RetryRelease => {
                if m.disconnected {
                    let released = self.session.retry_release();
                    assert_eq!(released, self.pins.is_empty());
                    m.disconnected = !released;
                }
            }
            Step::Map { chunk, refused } => {
                let allowed = self.session.check_map().is_ok();
                assert_eq!(allowed, m.may_map(), "check_map");
                let mapped = self
                    .session
                    .ledger()
                    .mappings()
                    .iter()
                    .any(|x| x.window_offset == WindowOffset(chunk * CHUNK));
                // A map that finds itself in place asks the frontend nothing.
                let refused = *refused && !mapped;
                if allowed {
                    if refused {
                        self.mapper.fail_next_map(Failure::Refused);
                    }
                    let before = self.live();
                    let result = self.session.ledger().map(
                        WindowOffset(chunk * CHUNK),
                        CHUNK,
                        dynb(&self.backing),
                        FileOffset(chunk * CHUNK),
                        true,
                    );
                    if refused {
                        assert!(result.is_err());
                        assert!(self.live() <= before, "a refused map adds nothing");
                    }
                }
            }
            Step::Pin { chunk } => {
                if let Ok(pin) = self
                    .session
                    .ledger()
                    .pin(chunk * CHUNK, 1, "test", PinWait::Fail)
                {
                    self.pins.push(pin);
                }
            }
            Step::UnpinAll => self.pins.clear(),
            Step::TakeEpoch => self.taken.push((self.session.reply_epoch(), m.epoch)),
            Step::Complete { which } => {
                if self.taken.is_empty() {
                    return;
                }
                let (epoch, model_epoch) = self.taken[which % self.taken.len()];
                let ran = Mutex::new(false);
                let completed = self
                    .session
                    .complete_if_current(epoch, || *ran.lock().unwrap() = true);
                assert_eq!(completed, model_epoch == m.epoch, "a stale reply landed");
                assert_eq!(*ran.lock().unwrap(), completed);
            }
        }
        assert_eq!(self.link.started.load(Ordering::SeqCst), self.model.starts);
        assert_eq!(self.link.dropped.load(Ordering::SeqCst), self.model.resets);
        assert_eq!(
            self.link.detached.load(Ordering::SeqCst),
            self.model.detaches
        );
        assert!(
            self.mapper.violations().is_empty(),
            "{:?}",
            self.mapper.violations()
        );
        self.session
            .ledger()
            .check_invariants()
            .expect("ledger invariants");
    }

    fn run_release(&mut self, release: PendingRelease) {
        let pinned = !self.pins.is_empty();
        let result = release.run();
        assert_eq!(result.is_ok(), !pinned, "{result:?}");
        if !pinned {
            assert_eq!(self.live(), 0, "a reset's release leaves nothing mapped");
        }
        self.model.pending_releases -= 1;
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn the_session_follows_the_model(steps in prop::collection::vec(step(), 1..48)) {
        let mut h = Harness::new();
        for step in &steps {
            h.apply(step);
        }
        // However it went, dropping the pins and releasing ends with nothing mapped.
        h.pins.clear();
        for release in std::mem::take(&mut h.pending) {
            release.run().expect("release after unpinning");
        }
        h.session.shutdown().expect("shutdown releases everything");
        prop_assert_eq!(h.live(), 0);
        prop_assert!(h.session.check_map().is_err(), "no map after shutdown");
    }
}

#[test]
fn a_dropped_pending_release_still_lets_maps_in() {
    let mut h = Harness::new();
    let release = h.session.reset();
    assert_eq!(h.session.check_map(), Err(HeldOff::Resetting));
    drop(release);
    assert_eq!(h.session.check_map(), Ok(()));
    h.pending.clear();
}

#[test]
fn a_parked_reply_racing_a_ring_stop_either_lands_first_or_is_dropped() {
    // The completion runs under the session's lock: a stop from another thread waits for
    // it, so "checked current, then the ring was taken back, then the reply landed" is
    // impossible. Many rounds, each racing a stop against a completion.
    for _ in 0..200 {
        let h = Harness::new();
        let session = h.session.clone();
        let epoch = session.reply_epoch();
        let landed_after_stop = Arc::new(Mutex::new(false));
        let stopped = Arc::new(Mutex::new(false));
        let s2 = session.clone();
        let stopped2 = stopped.clone();
        let stopper = std::thread::spawn(move || {
            s2.stop_rings();
            *stopped2.lock().unwrap() = true;
        });
        let landed = landed_after_stop.clone();
        let stopped3 = stopped.clone();
        session.complete_if_current(epoch, || {
            *landed.lock().unwrap() = *stopped3.lock().unwrap();
        });
        stopper.join().unwrap();
        assert!(!*landed_after_stop.lock().unwrap());
    }
}
