//! Mixing real speech with real noise: the SNR measured on the output is the
//! one asked for, the same seed gives the same mixture, and the pools the
//! sweep draws from never share a recording with the training pool.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use emofuse::audio;
use emofuse::noise::{self, NoiseBank, SnrReference};

use crate::util::shared_data;

/// SNR of `mixture` against the clean speech it contains, measured on the
/// output samples: the speech is scaled by the mixture's headroom factor.
fn measured_snr_db(speech: &[f32], mixture: &noise::Mixture) -> f64 {
    let scale = mixture.headroom_scale;
    let (mut signal, mut residual) = (0.0f64, 0.0f64);
    for (&s, &m) in speech.iter().zip(&mixture.samples) {
        let s = scale * f64::from(s);
        signal += s * s;
        residual += (f64::from(m) - s).powi(2);
    }
    10.0 * (signal / residual).log10()
}

#[test]
fn real_mixtures_hit_the_snr_within_a_hundredth_of_a_db_and_are_reproducible() {
    let bank = NoiseBank::load(&shared_data().join("noise/urbansound8k")).unwrap();
    let ravdess = shared_data().join("ravdess/Audio_Speech_Actors_01-24");
    let clips = [
        ravdess.join("Actor_01/03-01-05-02-01-01-01.flac"),
        ravdess.join("Actor_14/03-01-03-01-02-02-14.flac"),
        ravdess.join("Actor_23/03-01-06-02-01-02-23.flac"),
    ];
    for (i, path) in clips.iter().enumerate() {
        let speech = audio::load(path).unwrap().samples;
        for (k, snr) in [-20.0, -5.0, 0.0, 5.0, 10.0, 20.0, 40.0].into_iter().enumerate() {
            let noise_clip = &bank.clips[(7 * i + 13 * k) % bank.clips.len()];
            let mix = |seed| {
                noise::mix(
                    &speech,
                    &noise_clip.samples,
                    snr,
                    SnrReference::WholeClip,
                    &mut ChaCha8Rng::seed_from_u64(seed),
                )
                .unwrap()
            };
            let mixture = mix(42);
            let measured = measured_snr_db(&speech, &mixture);
            assert!(
                (measured - snr).abs() <= 0.01,
                "{} + {} at {snr} dB: measured {measured:.4} dB",
                path.display(),
                noise_clip.path.display()
            );
            assert!(mixture.samples.iter().all(|s| s.is_finite() && s.abs() < 1.0));
            assert_eq!(mix(42).samples, mixture.samples, "same seed, same mixture");
            assert_ne!(
                mix(43).noise_offset,
                mixture.noise_offset,
                "another seed, another offset"
            );
        }
    }
}

#[test]
fn train_and_test_noise_pools_share_no_recording() {
    let bank = NoiseBank::load(&shared_data().join("noise/urbansound8k")).unwrap();
    let (train, test) = bank.split(0);
    assert!(!train.clips.is_empty() && !test.clips.is_empty());
    assert_eq!(train.clips.len() + test.clips.len(), bank.clips.len());
    let recordings =
        |b: &NoiseBank| -> std::collections::HashSet<String> { b.clips.iter().map(|c| c.recording.clone()).collect() };
    assert!(recordings(&train).is_disjoint(&recordings(&test)));
    assert_eq!(train.categories(), test.categories(), "every category in both pools");
}
