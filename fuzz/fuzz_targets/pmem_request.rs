//! libFuzzer entry of `pmem_request`: the body is `vhost_dax::fuzzing::pmem_request`, which the corpus
//! replay test (`tests/fuzz_corpus.rs`) runs too.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| vhost_dax::fuzzing::pmem_request(data));
