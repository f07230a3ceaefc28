#![no_main]

use std::sync::OnceLock;

use acrpull_fuzz::layer::Sandbox;

/// One sandbox per process at a fixed path, so corpus entries (e.g. the hostile fixtures) can
/// aim absolute symlinks at its sentinel. `scripts/fuzz.sh` runs targets one at a time.
static SANDBOX: OnceLock<Sandbox> = OnceLock::new();

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let sandbox = SANDBOX.get_or_init(|| {
        Sandbox::create(std::path::Path::new(acrpull_fuzz::layer::FUZZ_SANDBOX))
            .expect("cannot create the fuzz sandbox")
    });
    acrpull_fuzz::layer::apply(sandbox, data);
});
