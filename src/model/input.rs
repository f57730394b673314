//! What a model reads of a clip, and batches of it: audio → an [`Example`]
//! (standardised frame features for the spectral stream; normalised samples,
//! or a frozen encoder's hidden states, for the temporal stream) → padded
//! tensors with each clip's length ([`ModelInput`]). Training, inference and
//! explanations all build their examples with one [`ExampleBuilder`], so a
//! clip reaches the model the same way in each.

use std::sync::Arc;

use burn::tensor::{Device, Int, Tensor, TensorData};

use super::fusion::{EmotionModelConfig, ModelInput, TemporalInput};
use super::temporal::FrozenBackbone;
use super::wav2vec2::Preprocessor;
use crate::features::{FeatureConfig, FeatureError, FeatureExtractor, FeatureStats, FrameFeatures};

/// One clip, ready for the model.
#[derive(Debug, Clone)]
pub struct Example {
    /// Standardised frame features, `[n_features, n_frames]` (the spectral stream's input).
    pub features: FrameFeatures,
    /// The temporal stream's input; `None` for a model without that stream.
    pub temporal: Option<TemporalSource>,
    /// The decoded samples before normalisation, kept where the audio is
    /// changed again (augmentation) or heard again (a teacher).
    pub audio: Option<Arc<Vec<f32>>>,
    /// Class index into the model's label list.
    pub label: usize,
}

/// What the temporal stream reads of one clip.
#[derive(Debug, Clone)]
pub enum TemporalSource {
    /// 16 kHz samples normalised as the encoder expects.
    Samples(Arc<Vec<f32>>),
    /// A frozen encoder's hidden states, computed once (and cached).
    Hidden(Arc<HiddenStates>),
}

impl TemporalSource {
    /// The samples of a source that still has them (examples without cached
    /// states).
    pub fn samples(&self) -> &Arc<Vec<f32>> {
        match self {
            TemporalSource::Samples(samples) => samples,
            // Every example of a set is built alike: all with cached states or none.
            TemporalSource::Hidden(_) => panic!("a batch mixes cached hidden states with audio"),
        }
    }
}

/// Every hidden state of a frozen encoder for one clip.
#[derive(Debug, Clone, PartialEq)]
pub struct HiddenStates {
    pub layers: usize,
    pub frames: usize,
    pub hidden: usize,
    /// `[layers, frames, hidden]`, row-major.
    pub data: Vec<f32>,
}

/// Turns decoded audio into [`Example`]s: the frame features a model was
/// trained on, standardised with its training statistics, and, for a
/// temporal stream, the samples normalised as its encoder expects.
pub struct ExampleBuilder {
    extractor: FeatureExtractor,
    stats: Option<FeatureStats>,
    /// `None` for a model without a temporal stream.
    preprocessor: Option<Preprocessor>,
}

impl ExampleBuilder {
    /// The builder of a model: `model` says which streams need input.
    pub fn new(
        model: &EmotionModelConfig,
        features: &FeatureConfig,
        stats: Option<FeatureStats>,
    ) -> Result<ExampleBuilder, FeatureError> {
        Ok(ExampleBuilder {
            extractor: FeatureExtractor::new(features.clone())?,
            stats,
            preprocessor: model
                .kind
                .has_temporal()
                .then(|| model.temporal.backbone.preprocessor()),
        })
    }

    pub fn extractor(&self) -> &FeatureExtractor {
        &self.extractor
    }

    /// The example of 16 kHz `samples` whose (unstandardised) frame features
    /// are known already, e.g. from the feature cache.
    pub fn from_features(&self, mut features: FrameFeatures, samples: &[f32], label: usize) -> Example {
        if let Some(stats) = &self.stats {
            stats.standardise(&mut features);
        }
        Example {
            features,
            temporal: self
                .preprocessor
                .as_ref()
                .map(|p| TemporalSource::Samples(Arc::new(p.apply(samples)))),
            audio: None,
            label,
        }
    }

    /// The example of `samples` at `sample_rate` (which must be the features' rate).
    pub fn from_samples(&self, samples: &[f32], sample_rate: u32, label: usize) -> Result<Example, FeatureError> {
        let features = self.extractor.extract(samples, sample_rate)?;
        Ok(self.from_features(features, samples, label))
    }
}

/// The model's input for a batch of examples on `device`. A frozen encoder
/// (`frozen`) runs here on examples without cached hidden states.
pub fn model_input(
    config: &EmotionModelConfig,
    examples: &[&Example],
    frozen: Option<&FrozenBackbone>,
    device: &Device,
) -> ModelInput {
    let features = config.kind.has_spectral().then(|| {
        let features: Vec<&FrameFeatures> = examples.iter().map(|e| &e.features).collect();
        pad_features(&features, config.spectral.frame_multiple(), device)
    });
    let temporal = config.kind.has_temporal().then(|| {
        let sources: Vec<&TemporalSource> = examples
            .iter()
            .map(|e| e.temporal.as_ref().expect("examples are built for the model's streams"))
            .collect();
        let cached: Option<Vec<&HiddenStates>> = sources
            .iter()
            .map(|s| match s {
                TemporalSource::Hidden(states) => Some(states.as_ref()),
                TemporalSource::Samples(_) => None,
            })
            .collect();
        if let Some(cached) = cached {
            let (states, n_frames) = pad_hidden_states(&cached, device);
            return TemporalInput::Hidden { states, n_frames };
        }
        let clips: Vec<&[f32]> = sources.iter().map(|s| s.samples().as_slice()).collect();
        match frozen {
            Some(backbone) => {
                let (states, n_frames) = backbone.hidden_states(&clips, device);
                TemporalInput::Hidden { states, n_frames }
            }
            None => {
                let (samples, n_samples) = pad_samples(&clips, device);
                TemporalInput::Waveform {
                    samples: Box::new(samples),
                    n_samples,
                }
            }
        }
    });
    ModelInput { features, temporal }
}

/// Class indices, `[batch]`.
pub fn labels(examples: &[&Example], device: &Device) -> Tensor<1, Int> {
    let labels: Vec<i64> = examples.iter().map(|e| e.label as i64).collect();
    Tensor::from_data(TensorData::new(labels, [examples.len()]), device)
}

/// Frame features zero-padded to the longest (rounded up to a multiple of
/// `frame_multiple`): `[batch, n_features, frames]`, and the real frames of each.
pub fn pad_features(features: &[&FrameFeatures], frame_multiple: usize, device: &Device) -> (Tensor<3>, Vec<usize>) {
    let n_features = features[0].n_features;
    let n_frames: Vec<usize> = features.iter().map(|f| f.n_frames).collect();
    let width = n_frames
        .iter()
        .copied()
        .max()
        .unwrap_or(1)
        .next_multiple_of(frame_multiple.max(1));
    let mut values = vec![0.0f32; features.len() * n_features * width];
    for (clip, f) in values.chunks_exact_mut(n_features * width).zip(features) {
        for (row, source) in clip.chunks_exact_mut(width).zip(f.data.chunks_exact(f.n_frames)) {
            row[..source.len()].copy_from_slice(source);
        }
    }
    let tensor = Tensor::from_data(TensorData::new(values, [features.len(), n_features, width]), device);
    (tensor, n_frames)
}

/// `clips` zero-padded to the longest: `[batch, samples]`, and each length.
pub fn pad_samples(clips: &[&[f32]], device: &Device) -> (Tensor<2>, Vec<usize>) {
    let lengths: Vec<usize> = clips.iter().map(|c| c.len()).collect();
    let width = lengths.iter().copied().max().unwrap_or(0);
    let mut values = vec![0.0f32; clips.len() * width];
    for (row, clip) in values.chunks_exact_mut(width.max(1)).zip(clips) {
        row[..clip.len()].copy_from_slice(clip);
    }
    (
        Tensor::from_data(TensorData::new(values, [clips.len(), width]), device),
        lengths,
    )
}

/// Hidden states zero-padded to the longest: one `[batch, frames, hidden]`
/// tensor per layer, and each clip's frames.
fn pad_hidden_states(states: &[&HiddenStates], device: &Device) -> (Vec<Tensor<3>>, Vec<usize>) {
    let (layers, hidden) = (states[0].layers, states[0].hidden);
    let n_frames: Vec<usize> = states.iter().map(|s| s.frames).collect();
    let width = n_frames.iter().copied().max().unwrap_or(1);
    let tensors = (0..layers)
        .map(|layer| {
            let mut values = vec![0.0f32; states.len() * width * hidden];
            for (slot, s) in values.chunks_exact_mut(width * hidden).zip(states) {
                let block = &s.data[layer * s.frames * hidden..(layer + 1) * s.frames * hidden];
                slot[..block.len()].copy_from_slice(block);
            }
            Tensor::from_data(TensorData::new(values, [states.len(), width, hidden]), device)
        })
        .collect();
    (tensors, n_frames)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn features_are_padded_per_row() {
        let clip = |n_frames: usize, value: f32| FrameFeatures {
            n_features: 2,
            n_frames,
            data: vec![value; 2 * n_frames],
        };
        let (a, b) = (clip(3, 1.0), clip(1, 2.0));
        let (tensor, n_frames) = pad_features(&[&a, &b], 4, &Device::flex());
        assert_eq!(n_frames, vec![3, 1]);
        assert_eq!(tensor.dims(), [2, 2, 4]);
        let values: Vec<f32> = tensor.into_data().try_to_vec().unwrap();
        assert_eq!(
            values,
            vec![1., 1., 1., 0., 1., 1., 1., 0., 2., 0., 0., 0., 2., 0., 0., 0.]
        );
    }
}
