//! Throughput of pipeline stages, behind `emofuse bench`. Inputs are decoded
//! before the clock starts, so each number is the stage alone, as the
//! reference scripts in `scripts/bench_*.py` measure their Python twins.

use std::time::Instant;

use rayon::prelude::*;
use serde::Serialize;

use crate::audio::Waveform;
use crate::features::FeatureExtractor;

/// One timed run of a stage over a set of clips.
#[derive(Debug, Clone, Serialize)]
pub struct Throughput {
    pub threads: usize,
    pub clips: usize,
    /// Total audio in the clips, in seconds.
    pub audio_s: f64,
    /// Best wall time of the timed passes, in seconds.
    pub seconds: f64,
    pub clips_per_s: f64,
    pub ms_per_clip: f64,
    /// Seconds of audio processed per second of wall time.
    pub realtime_factor: f64,
}

impl Throughput {
    fn new(threads: usize, waveforms: &[Waveform], seconds: f64) -> Self {
        let audio_s = waveforms.iter().map(Waveform::duration_s).sum();
        Self {
            threads,
            clips: waveforms.len(),
            audio_s,
            seconds,
            clips_per_s: waveforms.len() as f64 / seconds,
            ms_per_clip: 1e3 * seconds / waveforms.len() as f64,
            realtime_factor: audio_s / seconds,
        }
    }
}

/// Times MFCC + ZCR + RMS over `waveforms` on `threads` threads: one
/// untimed warm-up pass, then the best of `passes` timed passes.
pub fn features(extractor: &FeatureExtractor, waveforms: &[Waveform], threads: usize, passes: usize) -> Throughput {
    let extract = |w: &Waveform| {
        let features = extractor.extract(&w.samples, w.sample_rate);
        // Decoded clips are valid input; a failure here is a bug, not bad data.
        std::hint::black_box(features.expect("decoded 16 kHz audio has features"));
    };
    let pass = || {
        let start = Instant::now();
        if threads == 1 {
            waveforms.iter().for_each(extract);
        } else {
            waveforms.par_iter().for_each(extract);
        }
        start.elapsed().as_secs_f64()
    };
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .expect("a thread pool of the asked size can be made");
    let seconds = pool.install(|| {
        pass();
        (0..passes.max(1)).map(|_| pass()).fold(f64::INFINITY, f64::min)
    });
    Throughput::new(threads, waveforms, seconds)
}
