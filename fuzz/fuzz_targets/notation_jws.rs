#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| acrpull_fuzz::notation_jws(data));
