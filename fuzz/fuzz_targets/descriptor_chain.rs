//! libFuzzer entry of `descriptor_chain`: the body is `vhost_dax::fuzzing::descriptor_chain`, which the corpus
//! replay test (`tests/fuzz_corpus.rs`) runs too.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| vhost_dax::fuzzing::descriptor_chain(data));
