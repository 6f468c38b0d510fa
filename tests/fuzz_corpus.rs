//! Replays every file of the fuzz corpus (`fuzz/corpus/<target>/`) through the same target
//! bodies the libFuzzer entry points call (`vhost_dax::fuzzing`), on stable Rust, so
//! `cargo test` checks every input a fuzzer ever kept, crash regressions included. Also
//! checks the corpus holds the seeds built from the real encoders; run
//! `cargo test --test fuzz_corpus -- --ignored write_seeds` to write them after changing an
//! input format.

use std::path::{Path, PathBuf};

use vhost_dax::fuzzing;

/// A target's body.
type Body = fn(&[u8]);

/// The targets, by corpus directory.
const TARGETS: &[(&str, Body)] = &[
    ("fuse_dax", fuzzing::fuse_dax),
    ("pmem_request", fuzzing::pmem_request),
    ("descriptor_chain", fuzzing::descriptor_chain),
    ("vhost_user", fuzzing::vhost_user),
];

fn corpus(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target)
}

fn replay(target: &str) {
    let body = TARGETS
        .iter()
        .find(|(name, _)| *name == target)
        .map(|&(_, body)| body)
        .expect("a known target");
    let mut files: Vec<PathBuf> = std::fs::read_dir(corpus(target))
        .unwrap_or_else(|e| panic!("{target}: no corpus directory: {e}"))
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "{target}: empty corpus");
    for file in &files {
        let data = std::fs::read(file).unwrap();
        let result = std::panic::catch_unwind(|| body(&data));
        if let Err(panic) = result {
            let what = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            panic!("{target}: {} crashes the target: {what}", file.display());
        }
    }
    eprintln!("{target}: {} corpus inputs replayed", files.len());
}

#[test]
fn fuse_dax_corpus_replays_cleanly() {
    replay("fuse_dax");
}

#[test]
fn pmem_request_corpus_replays_cleanly() {
    replay("pmem_request");
}

#[test]
fn descriptor_chain_corpus_replays_cleanly() {
    replay("descriptor_chain");
}

#[test]
fn vhost_user_corpus_replays_cleanly() {
    replay("vhost_user");
}

#[test]
fn the_corpus_holds_every_seed() {
    for seed in fuzzing::seeds() {
        let path = corpus(seed.target).join(seed.name);
        let got = std::fs::read(&path).ok();
        assert!(
            got.as_deref() == Some(&seed.bytes[..]),
            "{} is missing or stale: cargo test --test fuzz_corpus -- --ignored write_seeds",
            path.display()
        );
    }
}

/// Writes the seeds into the corpus.
#[test]
#[ignore = "writes fuzz/corpus/: run by hand after changing an input format"]
fn write_seeds() {
    for seed in fuzzing::seeds() {
        let dir = corpus(seed.target);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(seed.name), &seed.bytes).unwrap();
    }
}
