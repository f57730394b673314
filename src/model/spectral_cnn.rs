//! The spectral stream: a 1D CNN over the frame features (40 MFCC + ZCR + RMS
//! per 32 ms frame), then attentive temporal pooling — the paper's CNN branch.
//!
//! Each block is conv → layer norm (over channels, per frame, so padding
//! cannot leak into a clip's statistics) → GELU → dropout → max-pool ×2 in
//! time (all blocks but the last). Padded frames are zeroed after every
//! block, so a clip gives the same output alone or in a padded batch.

use burn::config::Config;
use burn::module::Module;
use burn::nn::conv::{Conv1d, Conv1dConfig};
use burn::nn::pool::{MaxPool1d, MaxPool1dConfig};
use burn::nn::{Dropout, DropoutConfig, LayerNorm, LayerNormConfig, PaddingConfig1d};
use burn::tensor::{Bool, Device, Tensor};

use super::fused::{channel_norm, conv1d, gelu_dropout};
use super::pooling::{AttentivePooling, AttentivePoolingConfig, padding_mask};

/// Fills padded frames before max-pooling so that they never win.
const POOL_PADDING: f32 = -1e9;

#[derive(Config, Debug, PartialEq)]
pub struct SpectralCnnConfig {
    /// Feature rows per frame (`n_mfcc + 2`).
    #[config(default = 42)]
    pub channels_in: usize,
    /// Output channels of each block; the last is the stream's embedding width.
    #[config(default = "vec![64, 128, 128]")]
    pub channels: Vec<usize>,
    #[config(default = 5)]
    pub kernel_size: usize,
    #[config(default = 0.2)]
    pub dropout: f64,
    #[config(default = 64)]
    pub attention_dim: usize,
}

/// conv → norm → GELU → dropout (→ max-pool).
#[derive(Module, Debug)]
pub struct ConvBlock {
    pub conv: Conv1d,
    pub norm: LayerNorm,
    pub dropout: Dropout,
    pub pool: Option<MaxPool1d>,
}

/// The spectral CNN with its attentive pooling.
#[derive(Module, Debug)]
pub struct SpectralCnn {
    pub blocks: Vec<ConvBlock>,
    pub pooling: AttentivePooling,
}

/// What a stream returns for explanations and fusion.
#[derive(Debug, Clone)]
pub struct StreamOutput {
    /// `[batch, d]`: the pooled embedding.
    pub embedding: Tensor<2>,
    /// `[batch, frames]`: attentive-pooling weights over the stream's frames.
    pub alpha: Tensor<2>,
    /// `[batch, channels, frames]`: the last feature map before pooling (Score-CAM).
    pub feature_map: Tensor<3>,
    /// Real frames of each clip in `alpha` / `feature_map`.
    pub n_frames: Vec<usize>,
}

impl SpectralCnnConfig {
    pub fn init(&self, device: &Device) -> SpectralCnn {
        let n_blocks = self.channels.len();
        let blocks = self
            .channels
            .iter()
            .enumerate()
            .map(|(i, &channels_out)| {
                let channels_in = if i == 0 { self.channels_in } else { self.channels[i - 1] };
                let pad = self.kernel_size / 2;
                ConvBlock {
                    conv: Conv1dConfig::new(channels_in, channels_out, self.kernel_size)
                        .with_padding(PaddingConfig1d::Explicit(pad, pad))
                        .init(device),
                    norm: LayerNormConfig::new(channels_out).init(device),
                    dropout: DropoutConfig::new(self.dropout).init(),
                    pool: (i + 1 < n_blocks).then(|| MaxPool1dConfig::new(2).with_ceil_mode(true).init()),
                }
            })
            .collect();
        let d = *self.channels.last().expect("a spectral CNN has at least one block");
        SpectralCnn {
            blocks,
            pooling: AttentivePoolingConfig::new(d)
                .with_d_attention(self.attention_dim)
                .init(device),
        }
    }

    /// Width of the embedding.
    pub fn d_model(&self) -> usize {
        *self.channels.last().expect("a spectral CNN has at least one block")
    }

    /// Padded inputs are a multiple of this many frames long, so that every
    /// max-pool halves whole pairs of frames.
    pub fn frame_multiple(&self) -> usize {
        1 << self.channels.len().saturating_sub(1)
    }
}

impl SpectralCnn {
    /// Frames left after the blocks' pooling, for a clip of `n` feature frames.
    pub fn output_frames(&self, n: usize) -> usize {
        self.blocks
            .iter()
            .filter(|b| b.pool.is_some())
            .fold(n, |n, _| n.div_ceil(2))
    }

    /// # Shapes
    /// - features: `[batch, channels_in, frames]` (standardised, zero-padded)
    /// - n_frames: real frames of each clip
    pub fn forward(&self, features: Tensor<3>, n_frames: &[usize]) -> StreamOutput {
        let device = features.device();
        let mut x = features;
        let mut lengths = n_frames.to_vec();
        for block in &self.blocks {
            let h = conv1d(x, &block.conv); // [b, c, t]
            let h = channel_norm(h, &block.norm);
            let h = gelu_dropout(h, &block.dropout);
            let padding = channel_padding(&lengths, &h, &device);
            x = match &block.pool {
                Some(pool) => {
                    let pooled = pool.forward(h.mask_fill(padding, POOL_PADDING)); // [b, c, ⌈t/2⌉]
                    lengths.iter_mut().for_each(|n| *n = n.div_ceil(2));
                    let padding = channel_padding(&lengths, &pooled, &device);
                    pooled.mask_fill(padding, 0.0)
                }
                None => h.mask_fill(padding, 0.0),
            };
        }
        let [_, _, frames] = x.dims();
        let padding = padding_mask(&lengths, frames, &device);
        let (embedding, alpha) = self.pooling.forward(x.clone().swap_dims(1, 2), Some(padding));
        StreamOutput {
            embedding,
            alpha,
            feature_map: x,
            n_frames: lengths,
        }
    }
}

/// `[batch, channels, frames]` mask of the padded frames of `like`.
fn channel_padding(lengths: &[usize], like: &Tensor<3>, device: &Device) -> Tensor<3, Bool> {
    let [batch, channels, frames] = like.dims();
    padding_mask(lengths, frames, device)
        .unsqueeze_dim::<3>(1)
        .expand([batch, channels, frames])
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Distribution;

    #[test]
    fn a_clip_gives_the_same_output_alone_and_padded() {
        let device = Device::flex();
        device.seed(7);
        let model = SpectralCnnConfig::new().init(&device);
        let features = Tensor::<3>::random([2, 42, 23], Distribution::Normal(0.0, 1.0), &device);
        // Clip 2 has 11 real frames; its padding is zeros, as the batcher writes.
        let mask = padding_mask(&[23, 11], 23, &device)
            .unsqueeze_dim::<3>(1)
            .expand([2, 42, 23]);
        let features = features.mask_fill(mask, 0.0);
        let batch = model.forward(features.clone(), &[23, 11]);
        let alone = model.forward(features.narrow(0, 1, 1).narrow(2, 0, 11), &[11]);
        assert_eq!(batch.n_frames, vec![6, 3]);
        let a: Vec<f32> = batch.embedding.narrow(0, 1, 1).into_data().try_to_vec().unwrap();
        let b: Vec<f32> = alone.embedding.into_data().try_to_vec().unwrap();
        let worst = a.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max);
        assert!(worst < 1e-5, "max difference {worst}");
    }
}
