//! Loom models of the pin / drain / unmap handshake, run on the ledger's own code: under
//! `cfg(loom)` its table lock and condition variable are loom's, so loom explores every
//! interleaving of those primitives in the real `pin`, `unmap`, `map` and
//! `release_file_range`, and checks that no wake-up is lost (a lost one is a deadlock
//! loom reports).
//!
//! Run with: `RUSTFLAGS="--cfg loom" cargo test --release --lib dax`
//!
//! What loom does not model here: timeouts. Loom's `wait_timeout` never times out, and
//! the budget is set to an hour, so every wait in these models ends by a notification.

use std::collections::BTreeMap;
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use loom::sync::Mutex;
use loom::sync::atomic::{AtomicBool, AtomicU64};
use loom::thread;

use crate::dax::{
    Backing, BackingId, FileOffset, FrontendLink, Ledger, LedgerConfig, LedgerError, Mapper,
    MapperError, PinWait, WindowOffset, WindowSession,
};

const CHUNK: u64 = 4096;

#[derive(Debug)]
struct LoomBacking {
    id: BackingId,
    file: File,
    size: AtomicU64,
}

impl LoomBacking {
    fn new(id: u64, size: u64) -> Arc<LoomBacking> {
        Arc::new(LoomBacking {
            id: BackingId(id),
            file: File::open("/dev/null").expect("open /dev/null"),
            size: AtomicU64::new(size),
        })
    }
}

impl Backing for LoomBacking {
    fn id(&self) -> BackingId {
        self.id
    }

    fn fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }

    fn size(&self) -> io::Result<u64> {
        Ok(self.size.load(Ordering::SeqCst))
    }
}

/// A frontend that counts maps per window offset (a generation a pin holder can compare)
/// and notices an unmap while the test holds a pin. Its state, like the backing's size,
/// lives in loom primitives, so loom also explores where the frontend's work and the
/// file's change fall between the ledger's steps.
struct LoomMapper {
    generation: Mutex<BTreeMap<u64, u64>>,
    live: Mutex<BTreeMap<u64, u64>>,
    pin_held: AtomicBool,
    unmapped_under_pin: AtomicBool,
}

impl LoomMapper {
    fn new() -> LoomMapper {
        LoomMapper {
            generation: Mutex::new(BTreeMap::new()),
            live: Mutex::new(BTreeMap::new()),
            pin_held: AtomicBool::new(false),
            unmapped_under_pin: AtomicBool::new(false),
        }
    }

    fn generation(&self, at: u64) -> Option<u64> {
        let live = self.live.lock().unwrap().contains_key(&at);
        let generation = self.generation.lock().unwrap().get(&at).copied();
        generation.filter(|_| live)
    }
}

impl Mapper for LoomMapper {
    fn map(
        &self,
        window_offset: WindowOffset,
        len: u64,
        _file: BorrowedFd<'_>,
        _file_offset: FileOffset,
        _writable: bool,
    ) -> Result<(), MapperError> {
        let window_offset = window_offset.raw();
        *self
            .generation
            .lock()
            .unwrap()
            .entry(window_offset)
            .or_default() += 1;
        self.live.lock().unwrap().insert(window_offset, len);
        Ok(())
    }

    fn unmap(&self, window_offset: u64, _len: u64) -> Result<(), MapperError> {
        if self.pin_held.load(Ordering::SeqCst) {
            self.unmapped_under_pin.store(true, Ordering::SeqCst);
        }
        self.live.lock().unwrap().remove(&window_offset);
        Ok(())
    }
}

fn setup(chunks: u64) -> (Arc<Ledger>, Arc<LoomMapper>) {
    let mapper = Arc::new(LoomMapper::new());
    let config = LedgerConfig::new(chunks * CHUNK)
        .with_chunk_size(CHUNK)
        .with_wait_budget(Duration::from_secs(3600));
    let ledger = Ledger::new(config, Arc::clone(&mapper) as _).expect("valid config");
    (Arc::new(ledger), mapper)
}

/// Holds a pin on chunk 0 (waiting if it drains) and checks, while holding it, that its
/// mapping stays the same one and its file bytes stay below the end of file.
fn pin_and_check(ledger: &Ledger, mapper: &LoomMapper, backing: &LoomBacking) -> bool {
    match ledger.pin(0, CHUNK, "loom", PinWait::Wait) {
        Ok(guard) => {
            mapper.pin_held.store(true, Ordering::SeqCst);
            let generation = mapper.generation(0);
            assert!(generation.is_some(), "granted a pin on an unmapped chunk");
            assert!(
                backing.size.load(Ordering::SeqCst) >= CHUNK,
                "pin beyond EOF"
            );
            thread::yield_now();
            assert_eq!(mapper.generation(0), generation, "remapped under a pin");
            assert!(
                backing.size.load(Ordering::SeqCst) >= CHUNK,
                "shrunk under a pin"
            );
            mapper.pin_held.store(false, Ordering::SeqCst);
            drop(guard);
            true
        }
        Err(LedgerError::NotMapped { .. } | LedgerError::BeyondEof { .. }) => false,
        Err(e) => panic!("unexpected {e:?}"),
    }
}

#[test]
fn loom_pin_against_unmap() {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    loom::model(|| {
        eprintln!("iteration {}", N.fetch_add(1, Ordering::SeqCst));
        let (ledger, mapper) = setup(1);
        let b = LoomBacking::new(1, CHUNK);
        ledger
            .map(WindowOffset(0), CHUNK, b.clone(), FileOffset(0), true)
            .unwrap();
        let pinner = {
            let (ledger, mapper, b) = (ledger.clone(), mapper.clone(), b.clone());
            thread::spawn(move || pin_and_check(&ledger, &mapper, &b))
        };
        assert_eq!(ledger.unmap(0, CHUNK).unwrap().released, 1);
        pinner.join().unwrap();
        assert!(!mapper.unmapped_under_pin.load(Ordering::SeqCst));
        assert_eq!(ledger.stats().live_pins, 0);
        assert_eq!(
            Arc::strong_count(&b),
            1,
            "the references went with the mapping"
        );
    });
}

#[test]
fn loom_pin_against_truncate() {
    loom::model(|| {
        let (ledger, mapper) = setup(1);
        let b = LoomBacking::new(1, CHUNK);
        ledger
            .map(WindowOffset(0), CHUNK, b.clone(), FileOffset(0), true)
            .unwrap();
        let pinner = {
            let (ledger, mapper, b) = (ledger.clone(), mapper.clone(), b.clone());
            thread::spawn(move || pin_and_check(&ledger, &mapper, &b))
        };
        let guard = ledger.release_file_range(b.id, CHUNK / 2, None).unwrap();
        assert!(
            !mapper.pin_held.load(Ordering::SeqCst),
            "file changed under a pin"
        );
        b.size.store(CHUNK / 2, Ordering::SeqCst);
        drop(guard);
        pinner.join().unwrap();
        // The mapping stays through a truncate.
        assert_eq!(mapper.generation(0), Some(1));
        assert_eq!(ledger.stats().live_pins, 0);
    });
}

#[test]
fn loom_pin_against_remap() {
    loom::model(|| {
        let (ledger, mapper) = setup(1);
        let a = LoomBacking::new(1, CHUNK);
        let b = LoomBacking::new(2, CHUNK);
        ledger
            .map(WindowOffset(0), CHUNK, a.clone(), FileOffset(0), true)
            .unwrap();
        let pinner = {
            let (ledger, mapper, a) = (ledger.clone(), mapper.clone(), a.clone());
            thread::spawn(move || pin_and_check(&ledger, &mapper, &a))
        };
        ledger
            .map(WindowOffset(0), CHUNK, b.clone(), FileOffset(0), true)
            .unwrap();
        pinner.join().unwrap();
        assert!(!mapper.unmapped_under_pin.load(Ordering::SeqCst));
        assert_eq!(mapper.generation(0), Some(2));
        assert_eq!(Arc::strong_count(&a), 1);
        assert_eq!(ledger.mappings_of(b.id), 1);
    });
}

struct NoLink;

impl FrontendLink for NoLink {
    fn device_started(&self) {}
    fn frontend_dropped_all(&self) {}
    fn detach(&self) {}
}

/// A parked request (it pins the mapped chunk while it is served, as a request whose
/// buffers lie in the window does) races a device reset or a disconnect. Whatever the
/// interleaving: its reply lands only if the reset had not yet ended its epoch (the
/// completion runs under the session's lock, so "checked current, then the ring was taken
/// back, then the reply landed" cannot happen), the release waits for its pin, and the
/// window ends empty with no map let in while the release was pending.
#[test]
fn loom_reset_or_disconnect_against_a_parked_request() {
    for disconnect in [false, true] {
        loom::model(move || {
            let (ledger, _mapper) = setup(1);
            let session = WindowSession::new(ledger.clone(), Arc::new(NoLink));
            let b = LoomBacking::new(1, CHUNK);
            ledger
                .map(WindowOffset(0), CHUNK, b.clone(), FileOffset(0), true)
                .unwrap();
            let ended = Arc::new(AtomicBool::new(false));
            let before = session.reply_epoch();
            let parked = {
                let (session, ledger, ended) = (session.clone(), ledger.clone(), ended.clone());
                thread::spawn(move || {
                    // Taken before or after the reset, as the interleaving has it.
                    let taken = session.reply_epoch();
                    let pin = ledger.pin(0, CHUNK, "parked request", PinWait::Fail);
                    thread::yield_now();
                    drop(pin);
                    session.complete_if_current(taken, || {
                        // `ended` is set once the reset has answered the frontend.
                        assert!(
                            taken != before || !ended.load(Ordering::SeqCst),
                            "a reply of the ended epoch landed after the reset answered"
                        );
                    })
                })
            };
            if disconnect {
                // Releases inline; a pin still held makes it wait (budget: an hour).
                assert!(session.disconnect());
                ended.store(true, Ordering::SeqCst);
            } else {
                let release = session.reset();
                ended.store(true, Ordering::SeqCst);
                assert!(session.check_map().is_err(), "maps wait for the release");
                assert_eq!(release.run().unwrap(), 1);
                assert!(session.check_map().is_ok());
            }
            parked.join().unwrap();
            assert_eq!(ledger.stats().live_mappings, 0);
            assert_eq!(ledger.stats().live_pins, 0);
        });
    }
}
