//! Properties of the numeric core over generated inputs (proptest): what must
//! hold for *every* input, not only the fixtures.

use proptest::prelude::*;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use emofuse::data::folds::{FoldOptions, Protocol, make_folds};
use emofuse::data::{Clip, Corpus};
use emofuse::features::{FeatureConfig, FeatureExtractor};
use emofuse::noise::{self, SnrReference};

fn signal(max_len: usize) -> impl Strategy<Value = Vec<f32>> {
    (1..max_len, 0.0f32..=1.0, any::<u64>()).prop_map(|(n, amplitude, seed)| {
        use rand::Rng;
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        (0..n).map(|_| amplitude * rng.random_range(-1.0f32..=1.0)).collect()
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn features_are_finite_for_any_finite_input(samples in signal(40_000)) {
        let extractor = FeatureExtractor::new(FeatureConfig::default()).unwrap();
        let features = extractor.extract(&samples, 16_000).unwrap();
        prop_assert_eq!(features.n_frames, 1 + samples.len() / 512);
        prop_assert!(features.data.iter().all(|v| v.is_finite()));
        let log_mel = extractor.log_mel(&samples, 16_000).unwrap();
        prop_assert!(log_mel.data.iter().all(|v| v.is_finite()));
    }

    #[test]
    fn mixing_hits_any_snr_from_minus_20_to_40_db(
        speech in signal(20_000),
        noise_clip in signal(8_000),
        snr in -20.0f64..=40.0,
        seed in any::<u64>(),
    ) {
        let speech_power: f64 = speech.iter().map(|&s| f64::from(s).powi(2)).sum();
        let noise_power: f64 = noise_clip.iter().map(|&s| f64::from(s).powi(2)).sum();
        prop_assume!(speech_power > 1e-6 && noise_power > 1e-6);
        let mixture = noise::mix(&speech, &noise_clip, snr, SnrReference::WholeClip, &mut ChaCha8Rng::seed_from_u64(seed));
        let Ok(mixture) = mixture else {
            // A noise segment that happens to be all zeros is refused, not mixed.
            return Ok(());
        };
        let (mut signal, mut residual) = (0.0f64, 0.0f64);
        for (&s, &m) in speech.iter().zip(&mixture.samples) {
            let s = mixture.headroom_scale * f64::from(s);
            signal += s * s;
            residual += (f64::from(m) - s).powi(2);
        }
        let measured = 10.0 * (signal / residual).log10();
        prop_assert!((measured - snr).abs() <= 0.01, "asked {} dB, measured {} dB", snr, measured);
        prop_assert!(mixture.samples.iter().all(|s| s.is_finite() && s.abs() < 1.0));
    }

    #[test]
    fn folds_are_speaker_disjoint_and_cover_every_clip_once(
        speakers_of_clips in proptest::collection::vec(0usize..12, 2..200),
        k in 2usize..6,
        seed in any::<u64>(),
    ) {
        let clips: Vec<Clip> = speakers_of_clips
            .iter()
            .enumerate()
            .map(|(i, s)| Clip {
                path: format!("clip{i}.wav").into(),
                corpus: Corpus::Manifest,
                speaker: Some(format!("manifest:{s}")),
                label: "neutral".into(),
                native_label: "neutral".into(),
            })
            .collect();
        let n_speakers = speakers_of_clips.iter().collect::<std::collections::BTreeSet<_>>().len();
        let options = FoldOptions { protocol: Protocol::Kfold { k }, seed, allow_speaker_overlap: false };
        let folds = make_folds(&clips, Corpus::Manifest, &options);
        if k > n_speakers {
            prop_assert!(folds.is_err());
            return Ok(());
        }
        let folds = folds.unwrap();
        prop_assert_eq!(folds.len(), k);
        let mut tested = vec![0usize; clips.len()];
        for fold in &folds {
            let mut sides = vec![0u8; clips.len()];
            for &i in fold.train.iter().chain(&fold.test) {
                sides[i] += 1;
            }
            prop_assert!(sides.iter().all(|&c| c == 1), "every clip on exactly one side");
            let test_speakers: std::collections::HashSet<_> = fold.test.iter().map(|&i| &clips[i].speaker).collect();
            prop_assert!(fold.train.iter().all(|&i| !test_speakers.contains(&clips[i].speaker)));
            fold.test.iter().for_each(|&i| tested[i] += 1);
        }
        prop_assert!(tested.iter().all(|&t| t == 1), "every clip tested exactly once over the folds");
    }
}
