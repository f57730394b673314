//! Every random change made to training examples, drawn anew each epoch:
//! speed perturbation (a classic for speaker-independent emotion recognition:
//! it moves pitch and formants like another speaker would) and real noise at
//! random SNRs on the waveform, after which the frame features and the
//! encoder input are rebuilt from the changed audio so both streams see it;
//! then SpecAugment-style masks on the standardised frame features.

use std::path::PathBuf;
use std::sync::Arc;

use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::audio;
use crate::features::FeatureError;
use crate::model::input::{Example, ExampleBuilder, TemporalSource};
use crate::noise::{self, MixError, NoiseBank, SnrReference};

/// Random changes to training examples, drawn anew each epoch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Augment {
    /// Speed perturbation factors, one drawn per clip (empty: none).
    pub speeds: Vec<f64>,
    /// Real-noise mixing at random SNRs.
    pub noise: Option<NoiseAugmentConfig>,
    /// SpecAugment on the standardised frame features: this many spans of
    /// frames set to the mean (0), each up to `time_mask_share` of the clip.
    pub time_masks: usize,
    pub time_mask_share: f64,
    /// This many bands of up to `feature_mask_width` consecutive feature rows set to 0.
    pub feature_masks: usize,
    pub feature_mask_width: usize,
}

/// Noise mixing during training.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NoiseAugmentConfig {
    /// The noise corpus; its train pool is used.
    pub dir: PathBuf,
    /// SNRs drawn uniformly from this range, in dB.
    pub snr_db: (f64, f64),
    /// Share of training clips that get noise.
    pub probability: f64,
    pub reference: SnrReference,
}

/// Why a clip's audio could not be changed (training then uses it unchanged).
#[derive(Debug, thiserror::Error)]
pub enum AugmentError {
    #[error("speed perturbation: {0}")]
    Speed(String),
    #[error("noise mixing: {0}")]
    Mix(#[from] MixError),
    #[error("features of the changed audio: {0}")]
    Features(#[from] FeatureError),
}

impl Augment {
    /// No augmentation.
    pub fn none() -> Augment {
        Augment {
            speeds: Vec::new(),
            noise: None,
            time_masks: 0,
            time_mask_share: 0.0,
            feature_masks: 0,
            feature_mask_width: 0,
        }
    }

    /// Whether clips need their audio for waveform augmentation.
    pub fn changes_audio(&self) -> bool {
        self.speeds.iter().any(|&s| s != 1.0) || self.noise.is_some()
    }

    /// A changed copy of `example`: its audio by `wave` (when given), then
    /// SpecAugment. Audio that cannot be changed stays as it was, and the
    /// reason comes back beside the copy.
    pub fn apply(
        &self,
        example: &Example,
        wave: Option<&WaveAugment>,
        rng: &mut ChaCha8Rng,
    ) -> (Example, Option<AugmentError>) {
        let (mut example, failure) = match wave.map(|wave| wave.augment(example, rng)) {
            Some(Ok(changed)) => (changed, None),
            Some(Err(failure)) => (example.clone(), Some(failure)),
            None => (example.clone(), None),
        };
        let features = &mut example.features;
        let (rows, frames) = (features.n_features, features.n_frames);
        for _ in 0..self.time_masks {
            let width = rng.random_range(0..=((frames as f64 * self.time_mask_share) as usize).min(frames));
            let start = rng.random_range(0..=frames - width);
            for row in features.data.chunks_exact_mut(frames) {
                row[start..start + width].fill(0.0);
            }
        }
        for _ in 0..self.feature_masks {
            let width = rng.random_range(0..=self.feature_mask_width.min(rows));
            let start = rng.random_range(0..=rows - width);
            features.data[start * frames..(start + width) * frames].fill(0.0);
        }
        (example, failure)
    }
}

/// Changes training clips' audio and rebuilds their examples exactly as the
/// clean ones were built.
pub struct WaveAugment {
    /// Speed factors, one drawn per clip and epoch (1.0 leaves the clip as is).
    pub speeds: Vec<f64>,
    /// Noise mixing: the train pool of the noise corpus and how to mix.
    pub noise: Option<(NoiseBank, NoiseAugmentConfig)>,
    pub builder: ExampleBuilder,
}

impl WaveAugment {
    /// `example` with a speed drawn from `speeds` and, with the configured
    /// probability, noise mixed in. The example must keep its audio.
    pub fn augment(&self, example: &Example, rng: &mut ChaCha8Rng) -> Result<Example, AugmentError> {
        let audio = example
            .audio
            .as_ref()
            .expect("augmented examples are built with their audio");
        let factor = match self.speeds.len() {
            0 => 1.0,
            n => self.speeds[rng.random_range(0..n)],
        };
        let noisy = self
            .noise
            .as_ref()
            .is_some_and(|(_, config)| rng.random_bool(config.probability.clamp(0.0, 1.0)));
        if factor == 1.0 && !noisy {
            return Ok(example.clone());
        }
        let mut samples = audio::speed_perturb(audio, factor).map_err(AugmentError::Speed)?;
        if noisy {
            samples = self.mix_noise(&samples, rng)?;
        }
        // A frozen encoder's cached states stay as they are: recomputing them
        // for every augmented clip would cost the encoder's forward each epoch.
        let cached = match &example.temporal {
            Some(TemporalSource::Hidden(states)) => Some(states.clone()),
            _ => None,
        };
        let mut changed = self.rebuild(example, samples)?;
        if let Some(states) = cached {
            changed.temporal = Some(TemporalSource::Hidden(states));
        }
        Ok(changed)
    }

    /// A copy of `example` with train-pool noise always mixed in (no speed
    /// change), for the fixed noisy copies a frozen encoder is run on once.
    pub fn noisy_copy(&self, example: &Example, rng: &mut ChaCha8Rng) -> Result<Example, AugmentError> {
        let audio = example
            .audio
            .as_ref()
            .expect("noisy copies are made of examples that keep their audio");
        let samples = self.mix_noise(audio, rng)?;
        self.rebuild(example, samples)
    }

    fn mix_noise(&self, samples: &[f32], rng: &mut ChaCha8Rng) -> Result<Vec<f32>, AugmentError> {
        let (bank, config) = self.noise.as_ref().expect("noise is mixed only with a noise corpus");
        let clip = &bank.clips[rng.random_range(0..bank.clips.len())];
        let (low, high) = config.snr_db;
        let snr = if high > low { rng.random_range(low..high) } else { low };
        let mixture = noise::mix(samples, &clip.samples, snr, config.reference, rng)?;
        Ok(mixture.samples)
    }

    /// The example of changed audio, built as the clean ones were.
    fn rebuild(&self, example: &Example, samples: Vec<f32>) -> Result<Example, AugmentError> {
        let mut changed = self.builder.from_samples(&samples, audio::SAMPLE_RATE, example.label)?;
        changed.audio = Some(Arc::new(samples));
        Ok(changed)
    }
}
