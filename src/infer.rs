//! A trained model ready to use: a model directory (or the model built into
//! the binary) → a [`Predictor`] that turns 16 kHz audio into emotion
//! probabilities. `predict`, `eval`, `explain` and `serve` all go through it,
//! so every number they report comes from the same code path.

use std::path::Path;

use burn::tensor::Device;
use serde::Serialize;

use crate::audio::Waveform;
use crate::data::batcher::Example;
use crate::features::{FeatureError, FeatureExtractor};
use crate::model::fusion::{EmotionModel, ModelOutput};
use crate::model::saved::{self, ModelConfig, ModelDirError};
use crate::model::temporal::FrozenBackbone;
use crate::model::wav2vec2::Preprocessor;
use crate::train::{model_input, predict_examples};

/// `config.json` and `model.safetensors` of the default model, built into the
/// binary so that `emofuse predict` works with nothing else installed (how it
/// was trained: `models/default/README.md`).
const BUILTIN_CONFIG: &[u8] = include_bytes!("../models/default/config.json");
const BUILTIN_WEIGHTS: &[u8] = include_bytes!("../models/default/model.safetensors");

/// Why a predictor could not be made or could not read a clip.
#[derive(Debug, thiserror::Error)]
pub enum InferError {
    #[error(transparent)]
    ModelDir(#[from] ModelDirError),
    #[error("the model's encoder: {0}")]
    Backbone(#[from] crate::model::temporal::BackboneError),
    #[error("bad feature settings in the model: {0}")]
    Features(FeatureError),
    #[error("{name}: {source}")]
    Clip { name: String, source: FeatureError },
    #[error("{name}: too short for the model ({samples} samples; the encoder needs at least {min})")]
    TooShort { name: String, samples: usize, min: usize },
}

/// The model, its feature extractor and (for a frozen pretrained encoder) the encoder.
pub struct Predictor {
    pub config: ModelConfig,
    model: EmotionModel,
    extractor: FeatureExtractor,
    frozen: Option<FrozenBackbone>,
    preprocessor: Preprocessor,
    device: Device,
}

/// One clip's result.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Prediction {
    pub label: String,
    pub confidence: f32,
    /// Probability of each class, in the order of [`ModelConfig::labels`].
    pub probabilities: Vec<f32>,
}

/// Predictions of consecutive windows of a long recording.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Timeline {
    pub window_s: f64,
    pub hop_s: f64,
    pub windows: Vec<TimelineWindow>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TimelineWindow {
    pub start_s: f64,
    pub end_s: f64,
    #[serde(flatten)]
    pub prediction: Prediction,
}

impl Predictor {
    /// The model in directory `dir`.
    pub fn load(dir: &Path) -> Result<Predictor, InferError> {
        let device = Device::flex();
        let (config, model) = saved::load(dir, &device)?;
        Self::from_parts(config, model)
    }

    /// The model built into the binary.
    pub fn builtin() -> Result<Predictor, InferError> {
        let device = Device::flex();
        let path = Path::new("(built-in model)");
        let config = ModelConfig::from_json(BUILTIN_CONFIG, path)?;
        let model = saved::model_from_bytes(&config, BUILTIN_WEIGHTS.to_vec(), path, &device)?;
        Self::from_parts(config, model)
    }

    /// A predictor for a model in memory (just trained, or loaded).
    pub fn from_parts(config: ModelConfig, model: EmotionModel) -> Result<Predictor, InferError> {
        let device = Device::flex();
        let extractor = FeatureExtractor::new(config.features.clone()).map_err(InferError::Features)?;
        let backbone = &config.model.temporal.backbone;
        let has_temporal = config.model.kind.has_temporal();
        let frozen = (has_temporal && !backbone.is_trained())
            .then(|| FrozenBackbone::load(backbone, &device))
            .transpose()?;
        let preprocessor = backbone.preprocessor();
        Ok(Predictor {
            config,
            model: burn::module::Module::valid(&model),
            extractor,
            frozen,
            preprocessor,
            device,
        })
    }

    /// Everything the model's `config.json` holds.
    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    pub fn labels(&self) -> &[String] {
        &self.config.labels
    }

    pub fn model(&self) -> &EmotionModel {
        &self.model
    }

    pub fn extractor(&self) -> &FeatureExtractor {
        &self.extractor
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Samples the temporal encoder needs at least (0 without one).
    pub fn min_samples(&self) -> usize {
        if !self.config.model.kind.has_temporal() {
            return 1;
        }
        self.config.model.temporal.backbone.min_samples()
    }

    /// The model's input for one clip (`name` labels errors).
    pub fn example(&self, waveform: &Waveform, name: &str) -> Result<Example, InferError> {
        let min = self.min_samples();
        if waveform.samples.len() < min {
            return Err(InferError::TooShort {
                name: name.to_owned(),
                samples: waveform.samples.len(),
                min,
            });
        }
        let mut features = self
            .extractor
            .extract(&waveform.samples, waveform.sample_rate)
            .map_err(|source| InferError::Clip {
                name: name.to_owned(),
                source,
            })?;
        if let Some(stats) = &self.config.feature_stats {
            stats.standardise(&mut features);
        }
        let samples = self
            .config
            .model
            .kind
            .has_temporal()
            .then(|| std::sync::Arc::new(self.preprocessor.apply(&waveform.samples)));
        Ok(Example {
            features: Some(features),
            samples,
            raw: None,
            hidden: None,
            label: 0,
        })
    }

    /// Class probabilities of examples, `[clips][classes]`, in batches.
    pub fn probabilities(&self, examples: &[Example]) -> Vec<f32> {
        predict_examples(
            &self.model,
            &self.config.model,
            examples,
            self.frozen.as_ref(),
            &self.device,
        )
    }

    /// Everything the model computes for a batch (explanations use the streams' outputs).
    pub fn forward(&self, examples: &[&Example]) -> ModelOutput {
        let input = model_input(&self.config.model, examples, self.frozen.as_ref(), &self.device);
        self.model.forward(input)
    }

    /// Predicts one clip.
    pub fn predict(&self, waveform: &Waveform, name: &str) -> Result<Prediction, InferError> {
        let example = self.example(waveform, name)?;
        Ok(self.prediction(&self.probabilities(&[example])))
    }

    /// A prediction from one row of probabilities.
    pub fn prediction(&self, probabilities: &[f32]) -> Prediction {
        let (best, &confidence) = probabilities
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .expect("a model has classes");
        Prediction {
            label: self.config.labels[best].clone(),
            confidence,
            probabilities: probabilities.to_vec(),
        }
    }

    /// Predictions of windows of `window_s` seconds every `hop_s` seconds
    /// (the last window ends at the end of the recording).
    pub fn timeline(&self, waveform: &Waveform, name: &str, window_s: f64, hop_s: f64) -> Result<Timeline, InferError> {
        let rate = f64::from(waveform.sample_rate);
        let (window, hop) = ((window_s * rate) as usize, ((hop_s * rate) as usize).max(1));
        let n = waveform.samples.len();
        let mut starts: Vec<usize> = (0..n.saturating_sub(window).max(1)).step_by(hop).collect();
        if n > window && starts.last().is_some_and(|&s| s + window < n) {
            starts.push(n - window);
        }
        let examples = starts
            .iter()
            .map(|&start| {
                let end = (start + window).min(n);
                let clip = Waveform {
                    samples: waveform.samples[start..end].to_vec(),
                    sample_rate: waveform.sample_rate,
                };
                self.example(&clip, name)
            })
            .collect::<Result<Vec<_>, _>>()?;
        let probabilities = self.probabilities(&examples);
        let windows = starts
            .iter()
            .zip(probabilities.chunks_exact(self.config.labels.len()))
            .map(|(&start, row)| TimelineWindow {
                start_s: start as f64 / rate,
                end_s: (start + window).min(n) as f64 / rate,
                prediction: self.prediction(row),
            })
            .collect();
        Ok(Timeline {
            window_s,
            hop_s,
            windows,
        })
    }
}
