#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| acrpull_fuzz::notation_trust_policy(data));
