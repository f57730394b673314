//! Attentive temporal pooling (the paper's pooling for both streams):
//! `α_t = softmax_t(vᵀ tanh(W h_t + b))`, output `Σ_t α_t h_t`. Padded frames
//! get no weight, and `α` is returned because explanations and the web page
//! draw it.

use burn::config::Config;
use burn::module::Module;
use burn::nn::{Linear, LinearConfig};
use burn::tensor::activation::softmax;
use burn::tensor::{Bool, Device, Tensor};

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
        let scores = self.context.forward(self.attention.forward(frames.clone()).tanh()); // [b, t, 1]
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
}
