//! Any bytes as an uploaded or on-disk audio file: decoded or refused, never a panic.
#![no_main]

use emofuse::audio::{self, LoadOptions};
use libfuzzer_sys::fuzz_target;

/// libFuzzer's panic hook aborts even on panics emofuse catches (a panic inside
/// the decoder becomes an error, as in production): keep Rust's silent for
/// those; a panic that escapes still aborts and is reported.
fn quiet_caught_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| std::panic::set_hook(Box::new(|_| {})));
}

fuzz_target!(|data: &[u8]| {
    quiet_caught_panics();
    let options = LoadOptions {
        max_duration_s: 30.0,
        ..LoadOptions::default()
    };
    if let Ok(waveform) = audio::load_bytes(data, "fuzz", &options) {
        assert_eq!(waveform.sample_rate, audio::SAMPLE_RATE);
        assert!(waveform.samples.iter().all(|s| s.is_finite()));
    }
});
