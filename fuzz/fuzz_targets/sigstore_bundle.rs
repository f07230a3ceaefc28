#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| acrpull_fuzz::sigstore_bundle(data));
