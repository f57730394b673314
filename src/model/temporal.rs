//! The temporal stream: a speech encoder on the raw waveform (wav2vec 2.0 /
//! HuBERT, pretrained or trained from scratch), a learnable softmax-weighted
//! sum of its hidden layers (the SUPERB / EmoBox recipe), a projection to the
//! fusion width, and attentive temporal pooling.
//!
//! A frozen pretrained encoder is not part of this module: its hidden states
//! are computed (or read from the cache) outside and handed to
//! [`TemporalStream::forward_hidden`]. An encoder trained from scratch or
//! fine-tuned lives in [`TemporalStream::encoder`] and is saved with the model.

use std::path::PathBuf;

use burn::module::{Module, Param};
use burn::nn::{Dropout, DropoutConfig, Linear, LinearConfig};
use burn::tensor::activation::{gelu, softmax};
use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};

use super::pooling::{AttentivePooling, AttentivePoolingConfig, padding_mask};
use super::spectral_cnn::StreamOutput;
use super::wav2vec2::{Preprocessor, Wav2Vec2, Wav2Vec2Config};

/// Where the temporal stream's encoder comes from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum BackboneConfig {
    /// wav2vec 2.0 trained from scratch with the model; its weights are in the model file.
    Scratch { encoder: Wav2Vec2Config },
    /// A pretrained Hugging Face wav2vec 2.0 / HuBERT folder. Frozen, its
    /// weights stay there and are loaded from `path`; fine-tuned, they are
    /// copied into the model file.
    Wav2vec2 {
        path: PathBuf,
        encoder: Wav2Vec2Config,
        preprocessor: Preprocessor,
        finetune: bool,
    },
}

impl BackboneConfig {
    /// Hidden layers the stream weighs (`num_hidden_layers + 1`).
    pub fn n_layers(&self) -> usize {
        self.encoder().num_hidden_layers + 1
    }

    pub fn hidden_size(&self) -> usize {
        self.encoder().hidden_size
    }

    pub fn encoder(&self) -> &Wav2Vec2Config {
        match self {
            BackboneConfig::Scratch { encoder } | BackboneConfig::Wav2vec2 { encoder, .. } => encoder,
        }
    }

    /// Whether the encoder is trained with (and stored in) the model.
    pub fn is_trained(&self) -> bool {
        match self {
            BackboneConfig::Scratch { .. } => true,
            BackboneConfig::Wav2vec2 { finetune, .. } => *finetune,
        }
    }

    /// How a clip is normalised before the encoder.
    pub fn preprocessor(&self) -> Preprocessor {
        match self {
            BackboneConfig::Scratch { .. } => Preprocessor::default(),
            BackboneConfig::Wav2vec2 { preprocessor, .. } => preprocessor.clone(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TemporalConfig {
    pub backbone: BackboneConfig,
    /// Width of the pooled embedding (the fusion width).
    pub d_model: usize,
    pub attention_dim: usize,
    pub dropout: f64,
}

/// The temporal stream.
#[derive(Module, Debug)]
pub struct TemporalStream {
    /// Present when the encoder is trained with the model (scratch or fine-tuned).
    pub encoder: Option<Wav2Vec2>,
    /// Softmax over these weighs the encoder's hidden layers: `[n_layers]`.
    pub layer_weights: Param<Tensor<1>>,
    pub projection: Linear,
    pub dropout: Dropout,
    pub pooling: AttentivePooling,
}

impl TemporalConfig {
    /// A new stream; a trained encoder starts from `encoder` (pretrained
    /// weights to fine-tune) or, when `None`, from random weights.
    pub fn init(&self, encoder: Option<Wav2Vec2>, device: &Device) -> TemporalStream {
        let encoder = self
            .backbone
            .is_trained()
            .then(|| encoder.unwrap_or_else(|| Wav2Vec2::init(self.backbone.encoder(), device)));
        TemporalStream {
            encoder,
            // Equal weights to start: the plain mean of the layers.
            layer_weights: Param::from_tensor(Tensor::zeros([self.backbone.n_layers()], device)),
            projection: LinearConfig::new(self.backbone.hidden_size(), self.d_model).init(device),
            dropout: DropoutConfig::new(self.dropout).init(),
            pooling: AttentivePoolingConfig::new(self.d_model)
                .with_d_attention(self.attention_dim)
                .init(device),
        }
    }
}

impl TemporalStream {
    /// From (normalised, zero-padded) waveforms, through the stream's own encoder.
    ///
    /// # Shapes
    /// - samples: `[batch, max_samples]`
    pub fn forward_waveform(&self, samples: Tensor<2>, n_samples: &[usize]) -> StreamOutput {
        let encoder = self
            .encoder
            .as_ref()
            .expect("forward_waveform needs an encoder trained with the model");
        let output = encoder.forward(samples, n_samples);
        self.forward_hidden(output.hidden_states, &output.n_frames)
    }

    /// From the encoder's hidden states (each `[batch, frames, hidden]`).
    pub fn forward_hidden(&self, hidden_states: Vec<Tensor<3>>, n_frames: &[usize]) -> StreamOutput {
        let [batch, frames, hidden] = hidden_states[0].dims();
        let n_layers = hidden_states.len();
        let weights = softmax(self.layer_weights.val(), 0).reshape([n_layers, 1, 1, 1]);
        let stacked = Tensor::stack::<4>(hidden_states, 0); // [layers, b, t, h]
        let mixed = (stacked * weights).sum_dim(0).reshape([batch, frames, hidden]); // [b, t, h]
        let x = self.dropout.forward(gelu(self.projection.forward(mixed))); // [b, t, d]
        let padding = padding_mask(n_frames, frames, &x.device());
        let dims = x.dims();
        let x = x.mask_fill(padding.clone().unsqueeze_dim::<3>(2).expand(dims), 0.0);
        let (embedding, alpha) = self.pooling.forward(x.clone(), Some(padding));
        StreamOutput {
            embedding,
            alpha,
            feature_map: x.swap_dims(1, 2),
            n_frames: n_frames.to_vec(),
        }
    }

    /// The softmax-normalised layer weights, for reports.
    pub fn layer_weights(&self) -> Vec<f32> {
        softmax(self.layer_weights.val(), 0)
            .into_data()
            .convert::<f32>()
            .try_into_vec()
            .expect("f32 weights")
    }
}

/// A pretrained encoder that is not trained with the model: it runs in
/// inference mode outside it and hands over hidden states.
pub struct FrozenBackbone {
    encoder: Wav2Vec2,
    device: Device,
}

impl FrozenBackbone {
    /// The encoder a [`BackboneConfig::Wav2vec2`] names, for inference.
    pub fn load(config: &BackboneConfig, device: &Device) -> Result<Self, super::wav2vec2::LoadError> {
        let BackboneConfig::Wav2vec2 { path, .. } = config else {
            unreachable!("only pretrained encoders are frozen");
        };
        let (encoder, _) = super::wav2vec2::load(path, device)?;
        Ok(Self {
            encoder,
            device: device.clone(),
        })
    }

    /// Every hidden state of `clips` (normalised samples) on `device`:
    /// `num_hidden_layers + 1` tensors `[batch, frames, hidden]`, and the
    /// real frames of each clip.
    pub fn hidden_states(&self, clips: &[&[f32]], device: &Device) -> (Vec<Tensor<3>>, Vec<usize>) {
        let (samples, n_samples) = crate::data::batcher::pad_samples(clips, &self.device);
        let output = self.encoder.forward(samples, &n_samples);
        let states = output
            .hidden_states
            .into_iter()
            .map(|h| Tensor::from_data(h.into_data(), device))
            .collect();
        (states, output.n_frames)
    }
}
