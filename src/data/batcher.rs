//! Examples → the padded tensors and masks the model takes. What an example
//! is (and where it comes from) is the trainer's and predictor's business;
//! this only pads and stacks, like burn's text-classification batcher.

use std::sync::Arc;

use burn::tensor::{Device, Int, Tensor, TensorData};

use crate::features::FrameFeatures;

/// One clip, ready for the model.
#[derive(Debug, Clone)]
pub struct Example {
    /// Standardised frame features, `[n_features, n_frames]` (spectral stream).
    pub features: Option<FrameFeatures>,
    /// Normalised 16 kHz samples (temporal stream).
    pub samples: Option<Arc<Vec<f32>>>,
    /// The decoded samples before normalisation, kept for waveform augmentation.
    pub raw: Option<Arc<Vec<f32>>>,
    /// A frozen encoder's hidden states, computed once (temporal stream).
    pub hidden: Option<Arc<HiddenStates>>,
    /// Class index into the model's label list.
    pub label: usize,
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

/// Hidden states of `examples` zero-padded to the longest: one
/// `[batch, frames, hidden]` tensor per layer, and each clip's frames.
pub fn hidden_states(examples: &[&Example], device: &Device) -> (Vec<Tensor<3>>, Vec<usize>) {
    let states: Vec<&HiddenStates> = examples
        .iter()
        .map(|e| e.hidden.as_deref().expect("examples carry hidden states"))
        .collect();
    let (layers, hidden) = (states[0].layers, states[0].hidden);
    let n_frames: Vec<usize> = states.iter().map(|s| s.frames).collect();
    let width = n_frames.iter().copied().max().unwrap_or(1);
    let tensors = (0..layers)
        .map(|layer| {
            let mut values = vec![0.0f32; states.len() * width * hidden];
            for (slot, s) in values.chunks_exact_mut(width * hidden).zip(&states) {
                let block = &s.data[layer * s.frames * hidden..(layer + 1) * s.frames * hidden];
                slot[..block.len()].copy_from_slice(block);
            }
            Tensor::from_data(TensorData::new(values, [states.len(), width, hidden]), device)
        })
        .collect();
    (tensors, n_frames)
}

/// Frame features of `examples` zero-padded to the longest (rounded up to a
/// multiple of `frame_multiple`): `[batch, n_features, frames]`, and the
/// real frames of each.
pub fn features(examples: &[&Example], frame_multiple: usize, device: &Device) -> (Tensor<3>, Vec<usize>) {
    let features: Vec<&FrameFeatures> = examples
        .iter()
        .map(|e| {
            e.features
                .as_ref()
                .expect("examples for the spectral stream carry features")
        })
        .collect();
    let n_features = features[0].n_features;
    let n_frames: Vec<usize> = features.iter().map(|f| f.n_frames).collect();
    let width = n_frames
        .iter()
        .copied()
        .max()
        .unwrap_or(1)
        .next_multiple_of(frame_multiple.max(1));
    let mut values = vec![0.0f32; features.len() * n_features * width];
    for (clip, f) in values.chunks_exact_mut(n_features * width).zip(&features) {
        for (row, source) in clip.chunks_exact_mut(width).zip(f.data.chunks_exact(f.n_frames)) {
            row[..source.len()].copy_from_slice(source);
        }
    }
    let tensor = Tensor::from_data(TensorData::new(values, [features.len(), n_features, width]), device);
    (tensor, n_frames)
}

/// Samples of `examples` zero-padded to the longest: `[batch, samples]`, and each length.
pub fn samples(examples: &[&Example], device: &Device) -> (Tensor<2>, Vec<usize>) {
    let clips: Vec<&[f32]> = examples
        .iter()
        .map(|e| {
            e.samples
                .as_ref()
                .expect("examples for the temporal stream carry samples")
                .as_slice()
        })
        .collect();
    pad_samples(&clips, device)
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

/// Class indices, `[batch]`.
pub fn labels(examples: &[&Example], device: &Device) -> Tensor<1, Int> {
    let labels: Vec<i64> = examples.iter().map(|e| e.label as i64).collect();
    Tensor::from_data(TensorData::new(labels, [examples.len()]), device)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn features_are_padded_per_row() {
        let example = |n_frames: usize, value: f32| Example {
            features: Some(FrameFeatures {
                n_features: 2,
                n_frames,
                data: vec![value; 2 * n_frames],
            }),
            samples: None,
            raw: None,
            hidden: None,
            label: 0,
        };
        let (a, b) = (example(3, 1.0), example(1, 2.0));
        let (tensor, n_frames) = features(&[&a, &b], 4, &Device::flex());
        assert_eq!(n_frames, vec![3, 1]);
        assert_eq!(tensor.dims(), [2, 2, 4]);
        let values: Vec<f32> = tensor.into_data().try_to_vec().unwrap();
        assert_eq!(
            values,
            vec![1., 1., 1., 0., 1., 1., 1., 0., 2., 0., 0., 0., 2., 0., 0., 0.]
        );
    }
}
