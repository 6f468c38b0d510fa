//! Threads pinning and unpinning while others truncate, punch holes, unmap, remap, evict
//! and reset. The frontend double checks, at every unmap, that no pin the test holds lies in
//! the range; pin holders check that their mapping and their end of file stay put; file
//! changers check that no pin is held in what they change. Each test is bounded (a few
//! hundred milliseconds of traffic, waits bounded by the ledger's budget) and asserts no
//! timing, only outcomes.

use std::os::fd::BorrowedFd;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use super::support::{CHUNK, TestBacking, chunks_of, dynb, idx};
use crate::dax::{
    BackingId, FileOffset, Ledger, LedgerConfig, LedgerError, Mapper, MapperError, MemoryMapper,
    Op, PinWait, WindowOffset,
};

const BUDGET: Duration = Duration::from_secs(5);
const TRAFFIC: Duration = Duration::from_millis(300);

/// xorshift64*: enough randomness for traffic, no dependency.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n
    }
}

/// Pins the test itself counts per chunk (taken after the ledger granted a pin, given back
/// before the guard drops), and a record of anything that went wrong on another thread.
struct Watch {
    held: Vec<AtomicU32>,
    broken: Mutex<Vec<String>>,
}

impl Watch {
    fn new(chunks: usize) -> Arc<Watch> {
        Arc::new(Watch {
            held: (0..chunks).map(|_| AtomicU32::new(0)).collect(),
            broken: Mutex::new(Vec::new()),
        })
    }

    fn held_in(&self, offset: u64, len: u64) -> u32 {
        chunks_of(offset, len)
            .map(|c| self.held[c].load(Ordering::SeqCst))
            .sum()
    }

    fn broke(&self, what: String) {
        self.broken.lock().unwrap().push(what);
    }
}

/// The in-memory frontend, checking at each unmap that the test holds no pin there.
struct WatchMapper {
    inner: MemoryMapper,
    watch: Arc<Watch>,
}

impl Mapper for WatchMapper {
    fn map(
        &self,
        window_offset: WindowOffset,
        len: u64,
        file: BorrowedFd<'_>,
        file_offset: FileOffset,
        writable: bool,
    ) -> Result<(), MapperError> {
        self.inner
            .map(window_offset, len, file, file_offset, writable)
    }

    fn unmap(&self, window_offset: u64, len: u64) -> Result<(), MapperError> {
        let held = self.watch.held_in(window_offset, len);
        if held != 0 {
            self.watch.broke(format!(
                "unmap of {window_offset:#x}+{len:#x} under {held} pin(s)"
            ));
        }
        self.inner.unmap(window_offset, len)
    }
}

fn config(chunks: u64) -> LedgerConfig {
    LedgerConfig::new(chunks * CHUNK)
        .with_chunk_size(CHUNK)
        .with_wait_budget(BUDGET)
}

/// The furthest file byte a granted pin reaches, per backing (its mappings cannot change
/// while it is held).
fn reach(ledger: &Ledger, offset: u64, len: u64) -> Vec<(BackingId, u64)> {
    let end = offset + len;
    ledger
        .mappings()
        .iter()
        .filter(|m| m.window_offset.raw() < end && offset < m.window_offset.raw() + m.len)
        .map(|m| {
            let part_end = end.min(m.window_offset.raw() + m.len);
            (
                m.backing,
                m.file_offset.raw() + part_end - m.window_offset.raw(),
            )
        })
        .collect()
}

#[test]
fn pinned_chunks_survive_truncate_unmap_remap_and_reset_traffic() {
    const CHUNKS: u64 = 6;
    let watch = Watch::new(idx(CHUNKS));
    let mapper = Arc::new(WatchMapper {
        inner: MemoryMapper::with_window(CHUNKS * CHUNK),
        watch: Arc::clone(&watch),
    });
    let ledger = Ledger::new(config(CHUNKS), Arc::clone(&mapper) as _).unwrap();
    let backings: Vec<Arc<TestBacking>> = (0..2)
        .map(|i| TestBacking::new(i, 6 * CHUNK, true))
        .collect();
    let timeouts = AtomicU64::new(0);
    let granted = AtomicU64::new(0);
    let stop = Instant::now() + TRAFFIC;
    let note = |e: Option<&LedgerError>| {
        if let Some(LedgerError::Timeout { .. }) = e {
            timeouts.fetch_add(1, Ordering::Relaxed);
        }
    };

    thread::scope(|s| {
        for seed in 1..=2u64 {
            let (ledger, watch, backings, granted) = (&ledger, &watch, &backings, &granted);
            let mapper = &mapper;
            s.spawn(move || {
                let mut rng = Rng(seed * 0x9e37_79b9);
                while Instant::now() < stop {
                    let offset = rng.below(CHUNKS * CHUNK - 1);
                    let len = 1 + rng.below((CHUNKS * CHUNK - offset).min(2 * CHUNK));
                    let wait = if rng.below(2) == 0 {
                        PinWait::Wait
                    } else {
                        PinWait::Fail
                    };
                    let r = ledger.pin(offset, len, "pinner", wait);
                    note(r.as_ref().err());
                    let Ok(guard) = r else { continue };
                    granted.fetch_add(1, Ordering::Relaxed);
                    let chunks = chunks_of(offset, len);
                    for c in chunks.clone() {
                        watch.held[c].fetch_add(1, Ordering::SeqCst);
                    }
                    let before = mapper.inner.mapping_at(offset);
                    let reached = reach(ledger, offset, len);
                    for _ in 0..2 {
                        for &(b, end) in &reached {
                            let size = backings[idx(b.0)].current_size();
                            if end > size {
                                watch.broke(format!("pin reaches {end:#x}, file is {size:#x}"));
                            }
                        }
                        thread::yield_now();
                    }
                    if mapper.inner.mapping_at(offset) != before || before.is_none() {
                        watch.broke(format!("mapping at {offset:#x} changed under a pin"));
                    }
                    for c in chunks {
                        watch.held[c].fetch_sub(1, Ordering::SeqCst);
                    }
                    drop(guard);
                }
            });
        }
        // Remapper: maps, remaps, unmaps, evicts and resets.
        s.spawn(|| {
            let mut rng = Rng(77);
            while Instant::now() < stop {
                let chunk = rng.below(CHUNKS);
                let n = 1 + rng.below((CHUNKS - chunk).min(2));
                let b = &backings[idx(rng.below(2))];
                match rng.below(10) {
                    0..=5 => {
                        let fo = rng.below(8) * 4096;
                        note(
                            ledger
                                .map(
                                    WindowOffset(chunk * CHUNK),
                                    n * CHUNK,
                                    dynb(b),
                                    FileOffset(fo),
                                    true,
                                )
                                .as_ref()
                                .err(),
                        );
                    }
                    6..=7 => note(ledger.unmap(chunk * CHUNK, n * CHUNK).as_ref().err()),
                    8 => note(ledger.release_backing(b.id_value()).as_ref().err()),
                    _ => note(ledger.reset().as_ref().err()),
                }
            }
        });
        // File changer: truncates, punches holes, grows.
        s.spawn(|| {
            let mut rng = Rng(4242);
            while Instant::now() < stop {
                let b = &backings[idx(rng.below(2))];
                let from = rng.below(6 * CHUNK);
                let len = if rng.below(3) == 0 {
                    Some(rng.below(2 * CHUNK))
                } else {
                    None
                };
                let r = ledger.release_file_range(b.id_value(), from, len);
                note(r.as_ref().err());
                let Ok(guard) = r else { continue };
                for &at in guard.drained_chunks() {
                    let held = watch.held_in(at, CHUNK);
                    if held != 0 {
                        watch.broke(format!("file changed under {held} pin(s) at {at:#x}"));
                    }
                }
                if len.is_none() {
                    b.set_size(from);
                }
                thread::yield_now();
                drop(guard);
                if rng.below(2) == 0 {
                    b.set_size(6 * CHUNK);
                }
            }
        });
    });

    let broken = watch.broken.lock().unwrap().clone();
    let first: Vec<&String> = broken.iter().take(10).collect();
    assert!(
        broken.is_empty(),
        "{} breaches, first: {first:?}",
        broken.len()
    );
    assert_eq!(
        timeouts.load(Ordering::Relaxed),
        0,
        "a wait ran out: a deadlock?"
    );
    assert!(
        mapper.inner.violations().is_empty(),
        "{:?}",
        mapper.inner.violations()
    );
    assert!(
        granted.load(Ordering::Relaxed) > 0,
        "the traffic pinned something"
    );
    let stats = ledger.stats();
    assert_eq!((stats.live_pins, stats.draining_chunks), (0, 0));
    ledger.check_invariants().unwrap();
    ledger.reset().unwrap();
    assert!(mapper.inner.live().is_empty());
    for b in &backings {
        assert_eq!(Arc::strong_count(b), 1);
    }
}

/// Waits (bounded) until `cond` holds; a state the test knows must come.
fn eventually(what: &str, cond: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(Instant::now() < deadline, "never happened: {what}");
        thread::sleep(Duration::from_millis(1));
    }
}

/// A frontend whose map of window offset 0 blocks until the test opens a gate.
struct GateMapper {
    inner: MemoryMapper,
    entered: Mutex<mpsc::Sender<()>>,
    gate: Mutex<mpsc::Receiver<()>>,
}

impl Mapper for GateMapper {
    fn map(
        &self,
        window_offset: WindowOffset,
        len: u64,
        file: BorrowedFd<'_>,
        file_offset: FileOffset,
        writable: bool,
    ) -> Result<(), MapperError> {
        if window_offset == WindowOffset(0) {
            let _ = self.entered.lock().unwrap().send(());
            // Bounded, and a test that panics drops the sender: the call never hangs.
            let _ = self
                .gate
                .lock()
                .unwrap()
                .recv_timeout(Duration::from_secs(10));
        }
        self.inner
            .map(window_offset, len, file, file_offset, writable)
    }

    fn unmap(&self, window_offset: u64, len: u64) -> Result<(), MapperError> {
        self.inner.unmap(window_offset, len)
    }
}

#[test]
fn a_slow_frontend_call_blocks_only_its_own_chunks() {
    let (entered_tx, entered) = mpsc::channel();
    let (open, gate_rx) = mpsc::channel();
    let mapper = Arc::new(GateMapper {
        inner: MemoryMapper::new(),
        entered: Mutex::new(entered_tx),
        gate: Mutex::new(gate_rx),
    });
    let ledger = Ledger::new(config(4), Arc::clone(&mapper) as _).unwrap();
    let b = TestBacking::new(1, 4 * CHUNK, true);
    thread::scope(|s| {
        let open = open;
        let slow = s.spawn(|| ledger.map(WindowOffset(0), CHUNK, dynb(&b), FileOffset(0), true));
        entered.recv().unwrap();
        // Chunk 0 is in transition inside the mapper; everything else works meanwhile.
        ledger
            .map(WindowOffset(CHUNK), CHUNK, dynb(&b), FileOffset(0), true)
            .unwrap();
        ledger.pin(CHUNK, 10, "x", PinWait::Fail).unwrap().unpin();
        assert_eq!(ledger.unmap(CHUNK, CHUNK).unwrap().released, 1);
        assert!(ledger.dump().contains("map on 1 chunk(s)"));
        let err = ledger.pin(0, 1, "x", PinWait::Fail).unwrap_err();
        assert!(
            matches!(
                err,
                LedgerError::Draining {
                    offset: 0,
                    op: Op::Map
                }
            ),
            "{err:?}"
        );
        assert!(!slow.is_finished());
        open.send(()).unwrap();
        slow.join().unwrap().unwrap();
    });
    ledger.pin(0, 1, "x", PinWait::Fail).unwrap().unpin();
    assert_eq!(mapper.inner.live().len(), 1);
}

#[test]
fn an_unmap_waits_for_the_pin_then_goes_ahead() {
    let mapper = Arc::new(MemoryMapper::new());
    let ledger = Ledger::new(config(4), Arc::clone(&mapper) as _).unwrap();
    let b = TestBacking::new(1, 4 * CHUNK, true);
    ledger
        .map(WindowOffset(0), CHUNK, dynb(&b), FileOffset(0), true)
        .unwrap();
    ledger
        .map(WindowOffset(CHUNK), CHUNK, dynb(&b), FileOffset(0), true)
        .unwrap();
    let pin = ledger.pin(0, 1, "reader", PinWait::Fail).unwrap();
    let done = AtomicBool::new(false);
    thread::scope(|s| {
        let unmapper = s.spawn(|| {
            let r = ledger.unmap(0, CHUNK);
            done.store(true, Ordering::SeqCst);
            r
        });
        eventually("the unmap parks", || ledger.stats().waits >= 1);
        // Still mapped while pinned; the chunk is draining; the other chunk is usable.
        assert!(!done.load(Ordering::SeqCst));
        assert!(mapper.mapping_at(0).is_some());
        let err = ledger.pin(0, 1, "x", PinWait::Fail).unwrap_err();
        assert!(matches!(err, LedgerError::Draining { op: Op::Unmap, .. }));
        ledger.pin(CHUNK, 1, "x", PinWait::Fail).unwrap().unpin();
        assert!(!done.load(Ordering::SeqCst));
        drop(pin);
        assert_eq!(unmapper.join().unwrap().unwrap().released, 1);
    });
    assert!(mapper.mapping_at(0).is_none());
    assert!(ledger.stats().wait_time > Duration::ZERO);
}

#[test]
fn waiters_resume_when_a_file_range_guard_drops() {
    let ledger = Ledger::new(config(4), Arc::new(MemoryMapper::new())).unwrap();
    let b = TestBacking::new(1, 4 * CHUNK, true);
    ledger
        .map(WindowOffset(0), 2 * CHUNK, dynb(&b), FileOffset(0), true)
        .unwrap();
    let first = ledger.release_file_range(b.id_value(), 0, None).unwrap();
    thread::scope(|s| {
        let second = s.spawn(|| ledger.release_file_range(b.id_value(), CHUNK, None));
        let pinner = s.spawn(|| ledger.pin(0, 1, "waiter", PinWait::Wait));
        let mapper = s.spawn(|| {
            ledger.map(
                WindowOffset(2 * CHUNK),
                CHUNK,
                dynb(&b),
                FileOffset(0),
                true,
            )
        });
        eventually("all three park", || ledger.stats().waits >= 3);
        assert!(!second.is_finished() && !pinner.is_finished() && !mapper.is_finished());
        drop(first);
        let second = second.join().unwrap().unwrap();
        assert_eq!(second.drained_chunks(), &[CHUNK]);
        drop(second);
        // The pin got chunk 0 (not drained by the second guard) whenever it woke.
        pinner.join().unwrap().unwrap().unpin();
        mapper.join().unwrap().unwrap();
    });
    assert_eq!(ledger.stats().timeouts, 0);
    assert_eq!(ledger.mappings().len(), 2);
}

#[test]
fn a_waiting_pin_is_refused_when_its_chunk_goes_away() {
    let ledger = Ledger::new(config(2), Arc::new(MemoryMapper::new())).unwrap();
    let b = TestBacking::new(1, 2 * CHUNK, true);
    ledger
        .map(WindowOffset(0), CHUNK, dynb(&b), FileOffset(0), true)
        .unwrap();
    let held = ledger.pin(0, 1, "first", PinWait::Fail).unwrap();
    thread::scope(|s| {
        let unmapper = s.spawn(|| ledger.unmap(0, CHUNK));
        eventually("the unmap parks", || ledger.stats().draining_chunks == 1);
        let waiter = s.spawn(|| ledger.pin(0, 1, "second", PinWait::Wait));
        eventually("the pin parks too", || ledger.stats().waits >= 2);
        drop(held);
        unmapper.join().unwrap().unwrap();
        let err = waiter.join().unwrap().unwrap_err();
        assert!(
            matches!(err, LedgerError::NotMapped { offset: 0 }),
            "{err:?}"
        );
    });
}
