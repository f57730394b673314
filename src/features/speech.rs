//! Is anyone speaking? A voice-activity check so that near-silence gets a
//! refusal, not a confident emotion.
//!
//! A 25 ms frame (every 10 ms) counts as speech when it is loud enough and
//! not spectrally flat: dither, hiss and room tone are flat (spectral
//! flatness near 0.5 or above), voiced and most unvoiced speech is not.
//! Written here rather than taken from a crate: the VAD crates on crates.io
//! wrap WebRTC's C code (8/16/32/48 kHz, 10–30 ms frames, aggressiveness
//! modes tuned for telephony), and this check needs two thresholds on the
//! spectrum the features already compute.
//!
//! The thresholds pass all 5,363 clips of RAVDESS, TESS, EmoDB and EMOVO
//! and the example clips turned down by 30 dB (RMS −76 to −51 dBFS), and
//! refuse dithered silence at −90 dBFS peak (tests; RESULTS.md, speech presence).

use super::spectrum::PowerSpectrum;

/// Frames quieter than this (RMS, dBFS) are not speech.
pub const SPEECH_FLOOR_DBFS: f32 = -80.0;
/// Frames flatter than this (geometric over arithmetic mean of the power
/// spectrum, 0–1) are noise, not speech.
pub const MAX_FLATNESS: f32 = 0.5;
/// A clip needs this much speech, in seconds, to get an answer.
pub const MIN_SPEECH_S: f64 = 0.5;

const FRAME_S: f64 = 0.025;
const HOP_S: f64 = 0.010;

/// Seconds of speech in `samples` (mono, `sample_rate` Hz): the number of
/// speech frames times the hop.
pub fn speech_seconds(samples: &[f32], sample_rate: u32) -> f64 {
    let rate = f64::from(sample_rate);
    let (frame, hop) = ((FRAME_S * rate) as usize, (HOP_S * rate) as usize);
    if samples.len() < frame || hop == 0 {
        return 0.0;
    }
    let stft = PowerSpectrum::new(frame, hop, frame, false);
    let floor = 10f32.powf(SPEECH_FLOOR_DBFS / 10.0);
    let n_bins = stft.n_bins();
    let mut speech_frames = 0usize;
    stft.power_blocks(samples, |first, in_block, block| {
        for (lane, start) in (first..first + in_block).map(|t| t * hop).enumerate() {
            let frame_samples = &samples[start..start + frame];
            let power = frame_samples.iter().map(|s| s * s).sum::<f32>() / frame as f32;
            if power <= floor {
                continue;
            }
            // The DC bin says nothing about flatness; a tiny offset keeps ln finite.
            let bins = (1..n_bins).map(|bin| block[bin][lane] + 1e-20);
            let (log_sum, sum) = bins.fold((0.0f64, 0.0f64), |(l, s), p| (l + f64::from(p).ln(), s + f64::from(p)));
            let count = (n_bins - 1) as f64;
            let flatness = (log_sum / count).exp() / (sum / count);
            if flatness < f64::from(MAX_FLATNESS) {
                speech_frames += 1;
            }
        }
    });
    speech_frames as f64 * HOP_S
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    /// A vowel-like buzz: harmonics of 150 Hz with falling amplitude.
    fn buzz(seconds: f64, amplitude: f32) -> Vec<f32> {
        let n = (seconds * 16_000.0) as usize;
        (0..n)
            .map(|i| {
                let t = i as f32 / 16_000.0;
                let wave: f32 = (1..=20)
                    .map(|h| (2.0 * std::f32::consts::PI * 150.0 * h as f32 * t).sin() / h as f32)
                    .sum();
                amplitude * wave / 2.0
            })
            .collect()
    }

    #[test]
    fn a_quiet_voice_counts_and_dither_does_not() {
        let voice = buzz(1.0, 10f32.powf(-70.0 / 20.0));
        assert!((speech_seconds(&voice, 16_000) - 0.98).abs() < 0.02);
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        let peak = 10f32.powf(-90.0 / 20.0);
        let dither: Vec<f32> = (0..48_000).map(|_| rng.random_range(-peak..peak)).collect();
        assert_eq!(speech_seconds(&dither, 16_000), 0.0);
        // Loud white noise is loud, but flat: too little of it passes for speech.
        let hiss: Vec<f32> = (0..48_000).map(|_| rng.random_range(-0.1..0.1)).collect();
        let seconds = speech_seconds(&hiss, 16_000);
        assert!(seconds < MIN_SPEECH_S / 2.0, "{seconds} s of 3 s");
        assert_eq!(speech_seconds(&voice[..300], 16_000), 0.0, "shorter than a frame");
    }
}
