//! Any bytes as an uploaded or on-disk audio file: decoded or refused, never a panic.
#![no_main]

use emofuse::audio::{self, LoadOptions};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let options = LoadOptions {
        max_duration_s: 30.0,
        ..LoadOptions::default()
    };
    if let Ok(waveform) = audio::load_bytes(data, "fuzz", &options) {
        assert_eq!(waveform.sample_rate, audio::SAMPLE_RATE);
        assert!(waveform.samples.iter().all(|s| s.is_finite()));
    }
});
