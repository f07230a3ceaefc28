#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| acrpull_fuzz::policy_json(data));
