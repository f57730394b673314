//! Attentive temporal pooling (the paper's pooling for both streams):
//! `α_t = softmax_t(vᵀ tanh(W h_t + b))`, output `Σ_t α_t h_t`. Padded frames
//! get no weight, and `α` is returned because explanations and the web page
//! draw it. Statistics pooling (mean and standard deviation over frames, as
//! x-vectors and linear probes pool) is the alternative for the temporal stream.

use burn::config::Config;
use burn::module::Module;
use burn::nn::{Linear, LinearConfig};
use burn::tensor::activation::softmax;
use burn::tensor::{Bool, Device, Tensor};

use super::fused::linear;

/// Score given to padded frames before the softmax: their weight is `exp(-1e9)`, zero.
const PADDING_SCORE: f32 = -1e9;

#[derive(Config, Debug)]
pub struct AttentivePoolingConfig {
    /// Width of the frames `h_t`.
    pub d_input: usize,
    /// Width of `W h_t + b`.
    #[config(default = 64)]
    pub d_attention: usize,
}

/// Attentive temporal pooling.
#[derive(Module, Debug)]
pub struct AttentivePooling {
    /// `W`, `b`: `[d_input] → [d_attention]`.
    pub attention: Linear,
    /// `v`: `[d_attention] → score`.
    pub context: Linear,
}

impl AttentivePoolingConfig {
    pub fn init(&self, device: &Device) -> AttentivePooling {
        AttentivePooling {
            attention: LinearConfig::new(self.d_input, self.d_attention).init(device),
            context: LinearConfig::new(self.d_attention, 1).with_bias(false).init(device),
        }
    }
}

impl AttentivePooling {
    /// # Shapes
    /// - frames: `[batch, time, d_input]`
    /// - padding: `[batch, time]`, true where a frame is padding
    /// - output: (`[batch, d_input]` pooled, `[batch, time]` α)
    pub fn forward(&self, frames: Tensor<3>, padding: Option<Tensor<2, Bool>>) -> (Tensor<2>, Tensor<2>) {
        let scores = linear(linear(frames.clone(), &self.attention).tanh(), &self.context); // [b, t, 1]
        let scores = scores.squeeze_dim::<2>(2); // [b, t]
        let scores = match padding {
            Some(padding) => scores.mask_fill(padding, PADDING_SCORE),
            None => scores,
        };
        let alpha = softmax(scores, 1); // [b, t]
        let pooled = (frames * alpha.clone().unsqueeze_dim::<3>(2))
            .sum_dim(1)
            .squeeze_dim::<2>(1); // [b, d]
        (pooled, alpha)
    }
}

/// Mean over the frames that are not padding.
///
/// # Shapes
/// - frames: `[batch, time, d]`
/// - padding: `[batch, time]`, true where a frame is padding
/// - output: (`[batch, d]`, `[batch, time]` the mean's weights, uniform
///   over the real frames — the α explanations draw)
pub fn mean(frames: Tensor<3>, padding: Option<Tensor<2, Bool>>) -> (Tensor<2>, Tensor<2>) {
    let [batch, _, d] = frames.dims();
    let weights = frame_weights(&frames, padding);
    let mean = (frames * weights.clone().unsqueeze_dim::<3>(2)).sum_dim(1); // [b, 1, d]
    (mean.reshape([batch, d]), weights)
}

/// Mean and standard deviation over the frames that are not padding.
///
/// # Shapes
/// - frames: `[batch, time, d]`
/// - padding: `[batch, time]`, true where a frame is padding
/// - output: (`[batch, 2 · d]`: mean then std, `[batch, time]` the mean's weights)
pub fn statistics(frames: Tensor<3>, padding: Option<Tensor<2, Bool>>) -> (Tensor<2>, Tensor<2>) {
    let [batch, _, d] = frames.dims();
    let weights = frame_weights(&frames, padding);
    let w = weights.clone().unsqueeze_dim::<3>(2); // [b, t, 1]
    let mean = (frames.clone() * w.clone()).sum_dim(1); // [b, 1, d]
    let variance = ((frames - mean.clone()).square() * w).sum_dim(1);
    let std = (variance + 1e-6).sqrt();
    let pooled = Tensor::cat(vec![mean, std], 2).reshape([batch, 2 * d]);
    (pooled, weights)
}

/// `[batch, time]`: each real frame's share of its clip, `1 / frames`, and 0 for padding.
fn frame_weights(frames: &Tensor<3>, padding: Option<Tensor<2, Bool>>) -> Tensor<2> {
    let [batch, time, _] = frames.dims();
    let real = match padding {
        Some(padding) => padding.bool_not().float(),
        None => Tensor::ones([batch, time], &frames.device()),
    };
    // A clip with every frame left out (an explanation's empty coalition) pools to zeros, not NaN.
    real.clone() / real.sum_dim(1).clamp_min(1.0)
}

/// `[batch, frames]`: true where frame `t` is at or past clip `i`'s `n_frames[i]`.
pub fn padding_mask(n_frames: &[usize], max_frames: usize, device: &Device) -> Tensor<2, Bool> {
    let values: Vec<bool> = n_frames
        .iter()
        .flat_map(|&n| (0..max_frames).map(move |t| t >= n))
        .collect();
    Tensor::from_data(
        burn::tensor::TensorData::new(values, [n_frames.len(), max_frames]),
        device,
    )
}

#[cfg(test)]
mod tests {
    use burn::tensor::TensorData;

    use super::*;

    #[test]
    fn weights_sum_to_one_and_skip_padding() {
        let device = Device::flex();
        device.seed(1);
        let pooling = AttentivePoolingConfig::new(4).with_d_attention(3).init(&device);
        let frames = Tensor::<3>::random([2, 5, 4], burn::tensor::Distribution::Default, &device);
        let padding = padding_mask(&[5, 3], 5, &device);
        let (pooled, alpha) = pooling.forward(frames.clone(), Some(padding));
        let alpha: Vec<f32> = alpha.into_data().try_to_vec().unwrap();
        assert!((alpha[..5].iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert!((alpha[5..].iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert_eq!(&alpha[8..], &[0.0, 0.0], "padded frames get no weight");
        // The padded clip pools exactly as the same clip alone.
        let alone = frames.clone().narrow(0, 1, 1).narrow(1, 0, 3);
        let (pooled_alone, _) = pooling.forward(alone, None);
        let (a, b): (Vec<f32>, Vec<f32>) = (
            pooled.narrow(0, 1, 1).into_data().try_to_vec().unwrap(),
            pooled_alone.into_data().try_to_vec().unwrap(),
        );
        assert!(a.iter().zip(&b).all(|(x, y)| (x - y).abs() < 1e-6));
    }

    #[test]
    fn statistics_are_the_mean_and_std_of_the_real_frames() {
        let device = Device::flex();
        // Clip 0: frames 1, 3 (d = 1); clip 1: frame 2 and one padded frame of 100.
        let frames = Tensor::<3>::from_data(TensorData::new(vec![1.0f32, 3.0, 2.0, 100.0], [2, 2, 1]), &device);
        let (pooled, weights) = statistics(frames.clone(), Some(padding_mask(&[2, 1], 2, &device)));
        let pooled: Vec<f32> = pooled.into_data().try_to_vec().unwrap();
        assert!(
            (pooled[0] - 2.0).abs() < 1e-5 && (pooled[1] - 1.0).abs() < 1e-3,
            "{pooled:?}"
        );
        assert!(
            (pooled[2] - 2.0).abs() < 1e-5 && pooled[3] < 1e-2,
            "padding ignored: {pooled:?}"
        );
        let weights: Vec<f32> = weights.into_data().try_to_vec().unwrap();
        assert_eq!(weights, [0.5, 0.5, 1.0, 0.0]);
        let all_absent = Tensor::<2, Bool>::from_data(TensorData::new(vec![true, true], [1, 2]), &device);
        let (empty, _) = statistics(frames.narrow(0, 0, 1), Some(all_absent));
        let empty: Vec<f32> = empty.into_data().try_to_vec().unwrap();
        assert!(empty.iter().all(|v| v.is_finite()), "{empty:?}");
    }
}
