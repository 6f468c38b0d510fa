//! Property test: random sequences of map, remap, unmap, pin, unpin, truncate, punch-hole,
//! forget, eviction, reset and frontend failures, run against the ledger and against a
//! plain model of what each must do. After every step the two must agree, the in-memory
//! frontend must hold exactly the ledger's mappings, reference counts must be what the
//! rules say, and the invariants of DESIGN.md rule 5 must hold.
//!
//! The wait budget is zero, so every wait is decided at once: an operation that would have
//! to wait for a pin the sequence still holds times out, deterministically.

use std::collections::BTreeMap;
use std::sync::{Arc, Weak};
use std::time::Duration;

use proptest::prelude::*;
use proptest::sample::Index;

use super::support::{CHUNK, TestBacking, chunks_of, dynb, idx, ledger};
use crate::dax::{Failure, MappingInfo};
use crate::dax::{
    FileIdentity, FileOffset, Ledger, LedgerError, MapOutcome, MemoryMapper, PAGE_SIZE, PinGuard,
    PinWait, WindowOffset,
};

const CHUNKS: usize = 8;
const WINDOW: u64 = CHUNKS as u64 * CHUNK;
/// Backings 0 and 1 are writable, 2 is read-only.
const BACKINGS: usize = 3;
const MAX_FILE: u64 = 10 * CHUNK;

#[derive(Clone, Debug)]
enum Step {
    Map {
        chunk: usize,
        chunks: usize,
        backing: usize,
        page: u64,
        writable: bool,
    },
    /// The guest asks again for a range it has mapped, maybe for writing now (upgrade).
    Again {
        which: Index,
        writable: bool,
    },
    /// Numbers drawn loosely, mostly invalid: checks validation against the model.
    MapRaw {
        offset: u64,
        len: u64,
        file_offset: u64,
    },
    Unmap {
        chunk: usize,
        chunks: usize,
    },
    Pin {
        offset: u64,
        len: u64,
    },
    Unpin {
        which: Index,
    },
    Truncate {
        backing: usize,
        size: u64,
    },
    PunchHole {
        backing: usize,
        from: u64,
        len: u64,
    },
    Grow {
        backing: usize,
        size: u64,
    },
    Forget {
        backing: usize,
    },
    ReleaseBacking {
        backing: usize,
    },
    Reset,
    FailNextMap,
    FailNextUnmap,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        6 => (0..CHUNKS, 1..=3usize, 0..BACKINGS, 0..20u64, any::<bool>()).prop_map(
            |(chunk, chunks, backing, page, writable)| Step::Map { chunk, chunks, backing, page, writable }
        ),
        2 => (any::<Index>(), any::<bool>())
            .prop_map(|(which, writable)| Step::Again { which, writable }),
        1 => (0..WINDOW + CHUNK, 0..3 * CHUNK, 0..MAX_FILE)
            .prop_map(|(offset, len, file_offset)| Step::MapRaw { offset, len, file_offset }),
        2 => (0..=CHUNKS, 0..=4usize).prop_map(|(chunk, chunks)| Step::Unmap { chunk, chunks }),
        6 => (0..WINDOW + 64, 0..2 * CHUNK).prop_map(|(offset, len)| Step::Pin { offset, len }),
        3 => any::<Index>().prop_map(|which| Step::Unpin { which }),
        2 => (0..BACKINGS, 0..=MAX_FILE).prop_map(|(backing, size)| Step::Truncate { backing, size }),
        1 => (0..BACKINGS, 0..MAX_FILE, 0..2 * CHUNK)
            .prop_map(|(backing, from, len)| Step::PunchHole { backing, from, len }),
        1 => (0..BACKINGS, 0..=MAX_FILE).prop_map(|(backing, size)| Step::Grow { backing, size }),
        1 => (0..BACKINGS).prop_map(|backing| Step::Forget { backing }),
        1 => (0..BACKINGS).prop_map(|backing| Step::ReleaseBacking { backing }),
        1 => Just(Step::Reset),
        1 => Just(Step::FailNextMap),
        1 => Just(Step::FailNextUnmap),
    ]
}

#[derive(Clone, Debug, PartialEq)]
struct MMapping {
    chunks: usize,
    backing: usize,
    file_offset: u64,
    writable: bool,
}

/// What the ledger should be, in the plainest terms.
#[derive(Default)]
struct Model {
    mappings: BTreeMap<usize, MMapping>,
    pins: Vec<(u64, u64)>,
    sizes: [u64; BACKINGS],
    fail_map: bool,
    fail_unmap: bool,
}

type Expect = Result<(), &'static str>;

impl Model {
    fn mapping_of(&self, c: usize) -> Option<usize> {
        let (&first, m) = self.mappings.range(..=c).next_back()?;
        (c < first + m.chunks).then_some(first)
    }

    fn intersecting(&self, chunks: std::ops::Range<usize>) -> Vec<usize> {
        let mut firsts: Vec<usize> = chunks.filter_map(|c| self.mapping_of(c)).collect();
        firsts.dedup();
        firsts
    }

    fn pinned(&self, c: usize) -> bool {
        let c = c as u64;
        self.pins
            .iter()
            .any(|&(s, l)| s / CHUNK <= c && c < (s + l).div_ceil(CHUNK))
    }

    fn any_pinned(&self, firsts: &[usize]) -> bool {
        firsts
            .iter()
            .any(|f| (*f..f + self.mappings[f].chunks).any(|c| self.pinned(c)))
    }

    /// Releases `firsts` the first way; the first unmap fails if a failure is pending.
    fn release(&mut self, firsts: &[usize]) -> Result<usize, &'static str> {
        let mut failed = false;
        let mut released = 0;
        for f in firsts {
            if std::mem::take(&mut self.fail_unmap) {
                failed = true;
                continue;
            }
            self.mappings.remove(f);
            released += 1;
        }
        if failed { Err("Mapper") } else { Ok(released) }
    }

    fn map(
        &mut self,
        first: usize,
        chunks: usize,
        m: MMapping,
    ) -> Result<MapOutcome, &'static str> {
        if first + chunks > CHUNKS {
            return Err("OutOfWindow");
        }
        if m.writable && m.backing == 2 {
            return Err("ReadOnlyBacking");
        }
        let same = self.mappings.get(&first).is_some_and(|old| {
            old.chunks == chunks
                && old.backing == m.backing
                && old.file_offset == m.file_offset
                && (old.writable || !m.writable)
        });
        if same {
            return Ok(MapOutcome::AlreadyMapped);
        }
        let victims = self.intersecting(first..first + chunks);
        if self.any_pinned(&victims) {
            return Err("Timeout");
        }
        self.release(&victims)?;
        if std::mem::take(&mut self.fail_map) {
            return Err("Mapper");
        }
        self.mappings.insert(first, m);
        Ok(MapOutcome::Mapped {
            replaced: victims.len(),
        })
    }

    fn chunks_of_file_range(&self, backing: usize, from: u64, end: Option<u64>) -> Vec<usize> {
        let mut out = Vec::new();
        for (&first, m) in self.mappings.iter().filter(|(_, m)| m.backing == backing) {
            for i in 0..m.chunks {
                let start = m.file_offset + i as u64 * CHUNK;
                if start + CHUNK > from && end.is_none_or(|e| start < e) {
                    out.push(first + i);
                }
            }
        }
        out
    }

    /// The furthest file byte (exclusive) a pin reaches, per backing it touches.
    fn pin_reach(&self, offset: u64, len: u64) -> Vec<(usize, u64)> {
        let end = offset + len;
        let chunks = chunks_of(offset, len);
        let mut reach: Vec<(usize, u64)> = Vec::new();
        for f in self.intersecting(chunks) {
            let m = &self.mappings[&f];
            let start = f as u64 * CHUNK;
            let part_end = end.min(start + m.chunks as u64 * CHUNK);
            let file_end = m.file_offset + part_end - start;
            match reach.iter_mut().find(|(b, _)| *b == m.backing) {
                Some((_, e)) => *e = (*e).max(file_end),
                None => reach.push((m.backing, file_end)),
            }
        }
        reach
    }
}

struct Harness {
    ledger: Ledger,
    mapper: Arc<MemoryMapper>,
    owners: Vec<Option<Arc<TestBacking>>>,
    weak: Vec<Weak<TestBacking>>,
    identity: Vec<FileIdentity>,
    guards: Vec<PinGuard>,
    model: Model,
}

fn name(err: &LedgerError) -> String {
    let debug = format!("{err:?}");
    debug
        .split([' ', '{', '('])
        .next()
        .unwrap_or_default()
        .to_owned()
}

fn agree<T: std::fmt::Debug>(got: &Result<T, LedgerError>, want: &Expect, step: &Step) {
    match (got, want) {
        (Ok(_), Ok(())) => {}
        (Err(e), Err(w)) => assert_eq!(name(e), *w, "{step:?}: {e:?}"),
        _ => panic!("{step:?}: ledger said {got:?}, model said {want:?}"),
    }
}

impl Harness {
    fn new() -> Harness {
        let (ledger, mapper) = ledger(CHUNKS as u64, Duration::ZERO);
        let owners: Vec<_> = (0..BACKINGS)
            .map(|i| Some(TestBacking::new(i as u64, 4 * CHUNK, i != 2)))
            .collect();
        let weak = owners.iter().flatten().map(Arc::downgrade).collect();
        let identity = owners.iter().flatten().map(|b| b.identity()).collect();
        let model = Model {
            sizes: [4 * CHUNK; BACKINGS],
            ..Model::default()
        };
        Harness {
            ledger,
            mapper,
            owners,
            weak,
            identity,
            guards: Vec::new(),
            model,
        }
    }

    /// The backing as the owner would hand it over: its own reference, or (after FORGET)
    /// one found again while the ledger keeps it alive.
    fn backing(&self, b: usize) -> Option<Arc<TestBacking>> {
        self.owners[b].clone().or_else(|| self.weak[b].upgrade())
    }

    fn do_map(&mut self, step: &Step, first: usize, chunks: usize, b: usize, fo: u64, w: bool) {
        let Some(backing) = self.backing(b) else {
            return;
        };
        let want = self.model.map(
            first,
            chunks,
            MMapping {
                chunks,
                backing: b,
                file_offset: fo,
                writable: w,
            },
        );
        let got = self.ledger.map(
            WindowOffset(first as u64 * CHUNK),
            chunks as u64 * CHUNK,
            dynb(&backing),
            FileOffset(fo),
            w,
        );
        drop(backing);
        if let (Ok(g), Ok(m)) = (&got, &want) {
            assert_eq!(g, m, "{step:?}");
        }
        agree(&got, &want.map(|_| ()), step);
    }

    fn file_range(
        &mut self,
        step: &Step,
        b: usize,
        from: u64,
        len: Option<u64>,
        size: Option<u64>,
    ) {
        let end = len.map(|l| from + l);
        let drained = if len == Some(0) {
            Vec::new()
        } else {
            self.model.chunks_of_file_range(b, from, end)
        };
        let want: Expect = if drained.iter().any(|&c| self.model.pinned(c)) {
            Err("Timeout")
        } else {
            Ok(())
        };
        let got = self
            .ledger
            .release_file_range(crate::dax::BackingId(b as u64), from, len);
        agree(&got, &want, step);
        let Ok(guard) = got else { return };
        let offsets: Vec<u64> = drained.iter().map(|&c| c as u64 * CHUNK).collect();
        assert_eq!(guard.drained_chunks(), offsets.as_slice(), "{step:?}");
        if let Some(&c) = offsets.first() {
            let err = self.ledger.pin(c, 1, "probe", PinWait::Fail).unwrap_err();
            assert_eq!(name(&err), "Draining", "{step:?}");
        }
        // The caller changes the file while it holds the guard.
        if let (Some(size), Some(backing)) = (size, self.backing(b)) {
            backing.set_size(size);
            self.model.sizes[b] = size;
        }
        drop(guard);
    }

    fn apply(&mut self, step: &Step) {
        match *step {
            Step::Map {
                chunk,
                chunks,
                backing,
                page,
                writable,
            } => self.do_map(step, chunk, chunks, backing, page * PAGE_SIZE, writable),
            Step::Again { which, writable } => {
                let mappings: Vec<(usize, MMapping)> = self
                    .model
                    .mappings
                    .iter()
                    .map(|(&f, m)| (f, m.clone()))
                    .collect();
                if !mappings.is_empty() {
                    let (f, m) = &mappings[which.index(mappings.len())];
                    self.do_map(step, *f, m.chunks, m.backing, m.file_offset, writable);
                }
            }
            Step::MapRaw {
                offset,
                len,
                file_offset,
            } => {
                let want = if offset % CHUNK != 0 || len % CHUNK != 0 {
                    Some("Misaligned")
                } else if len == 0 {
                    Some("EmptyRange")
                } else if offset + len > WINDOW {
                    Some("OutOfWindow")
                } else if file_offset % PAGE_SIZE != 0 {
                    Some("Misaligned")
                } else {
                    None
                };
                let Some(want) = want else {
                    let (first, chunks) = ((offset / CHUNK) as usize, (len / CHUNK) as usize);
                    return self.do_map(step, first, chunks, 0, file_offset, false);
                };
                let Some(backing) = self.backing(0) else {
                    return;
                };
                let got = self.ledger.map(
                    WindowOffset(offset),
                    len,
                    dynb(&backing),
                    FileOffset(file_offset),
                    false,
                );
                agree(&got, &Err(want), step);
            }
            Step::Unmap { chunk, chunks } => {
                let want = self.model_unmap(chunk, chunks);
                let got = self
                    .ledger
                    .unmap(chunk as u64 * CHUNK, chunks as u64 * CHUNK);
                if let (Ok(g), Ok(n)) = (&got, &want) {
                    assert_eq!(g.released, *n, "{step:?}");
                }
                agree(&got, &want.map(|_| ()), step);
            }
            Step::Pin { offset, len } => {
                let want = self.model_pin(offset, len);
                let got = self.ledger.pin(offset, len, "prop", PinWait::Fail);
                agree(&got, &want, step);
                if let (Err(LedgerError::NotMapped { offset: at }), Some(c)) =
                    (&got, self.first_unmapped(offset, len))
                {
                    assert_eq!(*at, c as u64 * CHUNK, "{step:?}");
                }
                if let Ok(guard) = got {
                    self.guards.push(guard);
                    self.model.pins.push((offset, len));
                }
            }
            Step::Unpin { which } => {
                if !self.guards.is_empty() {
                    let i = which.index(self.guards.len());
                    drop(self.guards.remove(i));
                    self.model.pins.remove(i);
                }
            }
            Step::Truncate { backing, size } => {
                self.file_range(step, backing, size, None, Some(size))
            }
            Step::PunchHole { backing, from, len } => {
                self.file_range(step, backing, from, Some(len), None)
            }
            Step::Grow { backing, size } => {
                if let Some(b) = self.backing(backing) {
                    let size = size.max(self.model.sizes[backing]);
                    b.set_size(size);
                    self.model.sizes[backing] = size;
                }
            }
            Step::Forget { backing } => self.owners[backing] = None,
            Step::ReleaseBacking { backing } => {
                let firsts: Vec<usize> = self
                    .model
                    .mappings
                    .iter()
                    .filter(|(_, m)| m.backing == backing)
                    .map(|(&f, _)| f)
                    .collect();
                let want = self.model_release(&firsts);
                let got = self
                    .ledger
                    .release_backing(crate::dax::BackingId(backing as u64));
                self.agree_count(step, got, want);
            }
            Step::Reset => {
                let firsts: Vec<usize> = self.model.mappings.keys().copied().collect();
                let want = self.model_release(&firsts);
                let got = self.ledger.reset();
                self.agree_count(step, got, want);
            }
            Step::FailNextMap => {
                self.mapper.fail_next_map(Failure::Refused);
                self.model.fail_map = true;
            }
            Step::FailNextUnmap => {
                self.mapper.fail_next_unmap(Failure::Io);
                self.model.fail_unmap = true;
            }
        }
    }

    fn agree_count(
        &self,
        step: &Step,
        got: Result<usize, LedgerError>,
        want: Result<usize, &'static str>,
    ) {
        if let (Ok(g), Ok(w)) = (&got, &want) {
            assert_eq!(g, w, "{step:?}");
        }
        agree(&got, &want.map(|_| ()), step);
    }

    fn model_release(&mut self, firsts: &[usize]) -> Result<usize, &'static str> {
        if self.model.any_pinned(firsts) {
            return Err("Timeout");
        }
        self.model.release(firsts)
    }

    fn model_unmap(&mut self, chunk: usize, chunks: usize) -> Result<usize, &'static str> {
        if chunks == 0 {
            return Err("EmptyRange");
        }
        if chunk + chunks > CHUNKS {
            return Err("OutOfWindow");
        }
        let firsts = self.model.intersecting(chunk..chunk + chunks);
        for f in &firsts {
            if *f < chunk || f + self.model.mappings[f].chunks > chunk + chunks {
                return Err("PartialMapping");
            }
        }
        self.model_release(&firsts)
    }

    fn first_unmapped(&self, offset: u64, len: u64) -> Option<usize> {
        chunks_of(offset, len)
            .into_iter()
            .find(|&c| self.model.mapping_of(c).is_none())
    }

    fn model_pin(&self, offset: u64, len: u64) -> Expect {
        if len == 0 {
            return Err("EmptyRange");
        }
        if offset + len > WINDOW {
            return Err("OutOfWindow");
        }
        if self.first_unmapped(offset, len).is_some() {
            return Err("NotMapped");
        }
        let beyond = self
            .model
            .pin_reach(offset, len)
            .iter()
            .any(|&(b, end)| end > self.model.sizes[b]);
        if beyond { Err("BeyondEof") } else { Ok(()) }
    }

    /// Everything the ledger, the frontend and the reference counts must agree on.
    fn check(&self, step: &Step) {
        let ledger = &self.ledger;
        ledger
            .check_invariants()
            .unwrap_or_else(|e| panic!("{step:?}: {e}"));
        let want: Vec<MappingInfo> = self
            .model
            .mappings
            .iter()
            .map(|(&f, m)| {
                let chunks = f..f + m.chunks;
                MappingInfo {
                    window_offset: WindowOffset(f as u64 * CHUNK),
                    len: m.chunks as u64 * CHUNK,
                    backing: crate::dax::BackingId(m.backing as u64),
                    file_offset: FileOffset(m.file_offset),
                    writable: m.writable,
                    pins: self
                        .model
                        .pins
                        .iter()
                        .map(|&(s, l)| {
                            let pc = chunks_of(s, l);
                            chunks.clone().filter(|c| pc.contains(c)).count() as u64
                        })
                        .sum(),
                    draining: false,
                }
            })
            .collect();
        assert_eq!(ledger.mappings(), want, "after {step:?}");
        // The frontend holds exactly the ledger's mappings: a window offset mapped at most
        // once, nothing released while still mapped, nothing mapped that the ledger forgot.
        let live: Vec<_> = self
            .mapper
            .live()
            .iter()
            .map(|l| (l.window_offset, l.len, l.file, l.file_offset, l.writable))
            .collect();
        let want_live: Vec<_> = want
            .iter()
            .map(|m| {
                let b = idx(m.backing.0);
                (
                    m.window_offset,
                    m.len,
                    self.identity[b],
                    m.file_offset,
                    m.writable,
                )
            })
            .collect();
        assert_eq!(live, want_live, "after {step:?}");
        assert!(
            self.mapper.violations().is_empty(),
            "{:?}",
            self.mapper.violations()
        );
        // One reference per mapping, one more while it has any, plus the owner's own.
        for b in 0..BACKINGS {
            let n = self
                .model
                .mappings
                .values()
                .filter(|m| m.backing == b)
                .count();
            let owned = usize::from(self.owners[b].is_some());
            let want = owned + n + usize::from(n > 0);
            assert_eq!(
                self.weak[b].strong_count(),
                want,
                "backing {b} after {step:?}"
            );
            let id = crate::dax::BackingId(b as u64);
            assert_eq!(ledger.mappings_of(id), n);
            assert_eq!(ledger.has_mappings(id), n > 0);
        }
        let stats = ledger.stats();
        assert_eq!(stats.live_pins, self.model.pins.len());
        assert_eq!(stats.draining_chunks, 0);
        // No pin covers bytes beyond the end of file.
        for &(s, l) in &self.model.pins {
            for (b, end) in self.model.pin_reach(s, l) {
                let size = self
                    .backing(b)
                    .map_or(self.model.sizes[b], |x| x.current_size());
                assert!(
                    end <= size,
                    "pin {s:#x}+{l:#x} reaches {end:#x} > {size:#x}"
                );
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 512,
        max_shrink_iters: 2000,
        ..ProptestConfig::default()
    })]

    #[test]
    fn the_ledger_follows_the_model(steps in prop::collection::vec(step(), 1..64)) {
        let mut h = Harness::new();
        for step in &steps {
            h.apply(step);
            h.check(step);
        }
        // Quiescence: with every pin dropped, a reset releases everything and every count
        // returns to the owner's own reference.
        h.guards.clear();
        h.model.pins.clear();
        let pending_unmap_failure = h.model.fail_unmap;
        match h.ledger.reset() {
            Ok(_) => prop_assert!(!pending_unmap_failure || h.model.mappings.is_empty()),
            Err(e) => {
                prop_assert!(pending_unmap_failure, "{e:?}");
                h.ledger.reset().map_err(|e| TestCaseError::fail(format!("{e:?}")))?;
            }
        }
        h.model.mappings.clear();
        h.check(&Step::Reset);
        let stats = h.ledger.stats();
        prop_assert_eq!(stats.live_mappings, 0);
        prop_assert_eq!(stats.backings_with_mappings, 0);
        for b in 0..BACKINGS {
            prop_assert_eq!(h.weak[b].strong_count(), usize::from(h.owners[b].is_some()));
        }
    }
}
