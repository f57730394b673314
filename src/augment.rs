//! Waveform-level augmentation for training, drawn anew every epoch: speed
//! perturbation (a classic for speaker-independent emotion recognition: it
//! moves pitch and formants like another speaker would) and, with the noise
//! module, real noise at random SNRs. The frame features and the encoder
//! input are rebuilt from the changed audio, so both streams see it.

use std::sync::Arc;

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use crate::audio;
use crate::data::batcher::Example;
use crate::features::{FeatureExtractor, FeatureStats};
use crate::model::wav2vec2::Preprocessor;
use crate::noise::{self, NoiseAugmentConfig, NoiseBank};
use crate::train::AudioAugment;

/// Rebuilds changed examples exactly as the experiment built the clean ones.
pub struct WaveAugment {
    /// Speed factors, one drawn per clip and epoch (1.0 leaves the clip as is).
    pub speeds: Vec<f64>,
    /// Noise mixing: the train pool of the noise corpus and how to mix.
    pub noise: Option<(NoiseBank, NoiseAugmentConfig)>,
    pub extractor: FeatureExtractor,
    pub stats: Option<FeatureStats>,
    /// How the temporal stream's input is normalised (`None` without one).
    pub preprocessor: Option<Preprocessor>,
}

impl AudioAugment for WaveAugment {
    fn augment(&self, example: &Example, rng: &mut ChaCha8Rng) -> Example {
        let raw = example
            .raw
            .as_ref()
            .expect("augmented examples carry their decoded audio");
        let factor = match self.speeds.len() {
            0 => 1.0,
            n => self.speeds[rng.random_range(0..n)],
        };
        let noisy = self
            .noise
            .as_ref()
            .is_some_and(|(_, config)| rng.random_bool(config.probability.clamp(0.0, 1.0)));
        if factor == 1.0 && !noisy {
            return example.clone();
        }
        // A decoded training clip always resamples and mixes; if not, it stays as it was.
        let Ok(mut samples) = audio::speed_perturb(raw, factor) else {
            return example.clone();
        };
        if noisy {
            match self.mix_noise(&samples, rng) {
                Some(mixed) => samples = mixed,
                None => return example.clone(),
            }
        }
        // A frozen encoder's cached states stay as they are: recomputing them
        // for every augmented clip would cost the encoder's forward each epoch.
        self.rebuild(example, samples, example.hidden.clone())
            .unwrap_or_else(|| example.clone())
    }
}

impl WaveAugment {
    /// A copy of `example` with train-pool noise always mixed in (no speed
    /// change), for the fixed noisy copies a frozen encoder is run on once.
    /// `None` without a noise corpus or when mixing fails.
    pub fn noisy_copy(&self, example: &Example, rng: &mut ChaCha8Rng) -> Option<Example> {
        let raw = example.raw.as_ref()?;
        let samples = self.mix_noise(raw, rng)?;
        self.rebuild(example, samples, None)
    }

    fn mix_noise(&self, samples: &[f32], rng: &mut ChaCha8Rng) -> Option<Vec<f32>> {
        let (bank, config) = self.noise.as_ref()?;
        let clip = &bank.clips[rng.random_range(0..bank.clips.len())];
        let (low, high) = config.snr_db;
        let snr = if high > low { rng.random_range(low..high) } else { low };
        noise::mix(samples, &clip.samples, snr, config.reference, rng)
            .ok()
            .map(|mixture| mixture.samples)
    }

    /// The example of changed audio, built as the experiment builds clean ones.
    fn rebuild(
        &self,
        example: &Example,
        samples: Vec<f32>,
        hidden: Option<Arc<crate::data::batcher::HiddenStates>>,
    ) -> Option<Example> {
        let mut features = self.extractor.extract(&samples, audio::SAMPLE_RATE).ok()?;
        if let Some(stats) = &self.stats {
            stats.standardise(&mut features);
        }
        Some(Example {
            features: Some(features),
            samples: self.preprocessor.as_ref().map(|p| Arc::new(p.apply(&samples))),
            raw: Some(Arc::new(samples)),
            hidden,
            label: example.label,
        })
    }
}
