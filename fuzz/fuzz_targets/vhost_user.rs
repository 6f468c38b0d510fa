//! libFuzzer entry of `vhost_user`: the body is `vhost_dax::fuzzing::vhost_user`, which the corpus
//! replay test (`tests/fuzz_corpus.rs`) runs too.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| vhost_dax::fuzzing::vhost_user(data));
