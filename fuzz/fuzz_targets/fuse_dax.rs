//! libFuzzer entry of `fuse_dax`: the body is `vhost_dax::fuzzing::fuse_dax`, which the corpus
//! replay test (`tests/fuzz_corpus.rs`) runs too.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| vhost_dax::fuzzing::fuse_dax(data));
