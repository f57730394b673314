//! The Whisper encoder: two convolutions with GELU, sinusoidal positions,
//! pre-LN transformer layers and a final layer norm; fields named as the HF
//! checkpoint's keys (`conv1`, `embed_positions`, `layers.{i}.self_attn`, …).

use burn::module::{Module, Param};
use burn::nn::conv::Conv1d;
use burn::nn::{LayerNorm, Linear};
use burn::tensor::{Bool, Device, Tensor};

use super::WhisperConfig;
use crate::model::fused::linear;
use crate::model::pooling::padding_mask;
use crate::model::wav2vec2::model::Attention;
use crate::model::wav2vec2::{Activation, Wav2Vec2Output};
use crate::model::weights::{Scope, conv1d_config};

/// One pre-LN transformer layer.
#[derive(Module, Debug)]
pub struct EncoderLayer {
    pub self_attn: Attention,
    pub self_attn_layer_norm: LayerNorm,
    pub fc1: Linear,
    pub fc2: Linear,
    pub final_layer_norm: LayerNorm,
    #[module(skip)]
    pub activation: Activation,
}

impl EncoderLayer {
    fn forward(&self, x: Tensor<3>, padding: Option<Tensor<4, Bool>>) -> Tensor<3> {
        let attended = self
            .self_attn
            .forward(self.self_attn_layer_norm.forward(x.clone()), padding);
        let x = x + attended;
        let h = self
            .activation
            .forward(linear(self.final_layer_norm.forward(x.clone()), &self.fc1));
        x + linear(h, &self.fc2)
    }
}

/// Log-mel → hidden states.
#[derive(Module, Debug)]
pub struct WhisperEncoder {
    pub conv1: Conv1d,
    pub conv2: Conv1d,
    /// `[max_source_positions, d_model]`, not trained.
    pub embed_positions: Param<Tensor<2>>,
    pub layers: Vec<EncoderLayer>,
    pub layer_norm: LayerNorm,
    #[module(skip)]
    pub config: WhisperConfig,
}

/// LayerNorm epsilon of every Whisper norm (PyTorch's default).
const LAYER_NORM_EPS: f64 = 1e-5;

impl WhisperEncoder {
    /// Builds the encoder from `scope` (the keys under `model.encoder.`).
    pub(super) fn build(config: &WhisperConfig, scope: &Scope) -> Self {
        let d = config.d_model;
        let layers = (0..config.encoder_layers)
            .map(|i| {
                let layer = scope.at("layers").at(i);
                let attention = layer.at("self_attn");
                EncoderLayer {
                    self_attn: Attention {
                        q_proj: attention.linear("q_proj", d, d, true),
                        k_proj: attention.linear("k_proj", d, d, false),
                        v_proj: attention.linear("v_proj", d, d, true),
                        out_proj: attention.linear("out_proj", d, d, true),
                        num_heads: config.encoder_attention_heads,
                    },
                    self_attn_layer_norm: layer.layer_norm("self_attn_layer_norm", d, LAYER_NORM_EPS),
                    fc1: layer.linear("fc1", d, config.encoder_ffn_dim, true),
                    fc2: layer.linear("fc2", config.encoder_ffn_dim, d, true),
                    final_layer_norm: layer.layer_norm("final_layer_norm", d, LAYER_NORM_EPS),
                    activation: config.activation_function,
                }
            })
            .collect();
        let positions = scope
            .at("embed_positions")
            .tensor("weight", [config.max_source_positions, d]);
        Self {
            conv1: scope.conv1d("conv1", conv1d_config(config.num_mel_bins, d, 3, 1, 1, 1, true)),
            conv2: scope.conv1d("conv2", conv1d_config(d, d, 3, 2, 1, 1, true)),
            embed_positions: Param::from_tensor(positions).set_require_grad(false),
            layers,
            layer_norm: scope.layer_norm("layer_norm", d, LAYER_NORM_EPS),
            config: config.clone(),
        }
    }

    /// Encodes log-mel spectrograms zero-padded to the longest
    /// (`[batch, n_mels, frames]`, `n_mel_frames` real frames each; at most
    /// `2 · max_source_positions`). Padding never changes a clip's outputs.
    ///
    /// `hidden_states` are as `transformers` 5 returns them: the input of the
    /// first layer, each layer's output, the last one after the final norm.
    pub fn forward(&self, mel: Tensor<3>, n_mel_frames: &[usize]) -> Wav2Vec2Output {
        let device = mel.device();
        let [batch, _, mel_frames] = mel.dims();
        let padded = n_mel_frames.iter().any(|&n| n < mel_frames);
        let x = gelu_masked(&self.config, self.conv1.forward(mel), n_mel_frames, padded, &device); // [b, d, t]
        let n_frames: Vec<usize> = n_mel_frames.iter().map(|&n| WhisperConfig::encoder_frames(n)).collect();
        let x = gelu_masked(&self.config, self.conv2.forward(x), &n_frames, padded, &device); // [b, d, t/2]
        let [_, _, frames] = x.dims();
        let positions = self.embed_positions.val().narrow(0, 0, frames).unsqueeze_dim::<3>(0); // [1, t, d]
        let mut hidden = x.swap_dims(1, 2) + positions; // [b, t, d]
        let heads = self.config.encoder_attention_heads;
        let attention_padding = padded.then(|| {
            padding_mask(&n_frames, frames, &device)
                .unsqueeze_dims::<4>(&[1, 2])
                .expand([batch, heads, frames, frames])
        });
        let mut hidden_states = Vec::with_capacity(self.layers.len() + 1);
        for layer in &self.layers {
            hidden_states.push(hidden.clone());
            hidden = layer.forward(hidden, attention_padding.clone());
        }
        let last_hidden_state = self.layer_norm.forward(hidden);
        hidden_states.push(last_hidden_state.clone());
        Wav2Vec2Output {
            last_hidden_state,
            hidden_states,
            n_frames,
        }
    }
}

/// GELU, then (in a padded batch) zeros past each clip's frames: the next
/// convolution then sees what it would see at the end of the clip alone.
fn gelu_masked(config: &WhisperConfig, x: Tensor<3>, lengths: &[usize], padded: bool, device: &Device) -> Tensor<3> {
    let x = config.activation_function.forward(x);
    if !padded {
        return x;
    }
    let dims = x.dims();
    let mask = padding_mask(lengths, dims[2], device)
        .unsqueeze_dim::<3>(1)
        .expand(dims);
    x.mask_fill(mask, 0.0)
}
