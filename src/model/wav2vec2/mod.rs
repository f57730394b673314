//! The temporal stream's encoder: wav2vec 2.0 and HuBERT (Baevski et al., 2020;
//! Hsu et al., 2021) as Hugging Face `transformers` computes them
//! (`models/wav2vec2/modeling_wav2vec2.py`, `models/hubert/modeling_hubert.py`,
//! version 5.24), loaded from their checkpoints or built from scratch.
//!
//! Split like candle's model folders: this file holds the configuration (HF's
//! `config.json`, field names unchanged) and input normalisation
//! (`preprocessor_config.json`), [`model`] the modules and forward pass, and
//! [`load`] the checkpoint key table. WavLM is not supported (its gated
//! relative position bias is a different attention).

pub mod load;
pub mod model;

use std::path::Path;

use serde::{Deserialize, Serialize};

pub use load::{LoadError, load, read_preprocessor};
pub use model::{Wav2Vec2, Wav2Vec2Output};

/// Activation functions named as in HF's `ACT2FN`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Activation {
    /// Exact (erf) GELU, PyTorch's default.
    Gelu,
    /// tanh-approximated GELU.
    #[serde(alias = "gelu_pytorch_tanh", alias = "gelu_fast")]
    GeluNew,
    Relu,
    #[serde(alias = "swish")]
    Silu,
}

impl Activation {
    pub fn forward<const D: usize>(self, x: burn::tensor::Tensor<D>) -> burn::tensor::Tensor<D> {
        use burn::tensor::activation;
        match self {
            Activation::Gelu => crate::model::fused::gelu(x),
            Activation::GeluNew => activation::gelu_approximate(x),
            Activation::Relu => activation::relu(x),
            Activation::Silu => activation::silu(x),
        }
    }
}

/// Which normalisation the convolutional feature encoder uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FeatExtractNorm {
    /// GroupNorm (one group per channel) after the first convolution only (base models).
    Group,
    /// LayerNorm over channels after every convolution (large "lv60" models).
    Layer,
}

/// Which family the checkpoint belongs to: they differ in key names and in
/// whether the feature projection has a layer norm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ModelType {
    Wav2vec2,
    Hubert,
}

/// Every `config.json` field that changes what the encoder computes, with HF's
/// names and defaults; other fields of HF configs are ignored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Wav2Vec2Config {
    pub model_type: ModelType,
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    pub hidden_act: Activation,
    pub feat_extract_activation: Activation,
    pub feat_extract_norm: FeatExtractNorm,
    pub conv_dim: Vec<usize>,
    pub conv_stride: Vec<usize>,
    pub conv_kernel: Vec<usize>,
    pub conv_bias: bool,
    pub num_conv_pos_embeddings: usize,
    pub num_conv_pos_embedding_groups: usize,
    /// Pre-LN transformer layers (large models); post-LN otherwise.
    pub do_stable_layer_norm: bool,
    pub layer_norm_eps: f64,
    /// HuBERT only: a layer norm before the feature projection (wav2vec 2.0 always has one).
    pub feat_proj_layer_norm: bool,
    /// Some HuBERT variants use a BatchNorm in the positional convolution; not supported.
    pub conv_pos_batch_norm: bool,
    pub hidden_dropout: f64,
    pub attention_dropout: f64,
    pub activation_dropout: f64,
    pub feat_proj_dropout: f64,
}

impl Default for Wav2Vec2Config {
    /// facebook/wav2vec2-base.
    fn default() -> Self {
        Self {
            model_type: ModelType::Wav2vec2,
            hidden_size: 768,
            num_hidden_layers: 12,
            num_attention_heads: 12,
            intermediate_size: 3072,
            hidden_act: Activation::Gelu,
            feat_extract_activation: Activation::Gelu,
            feat_extract_norm: FeatExtractNorm::Group,
            conv_dim: vec![512; 7],
            conv_stride: vec![5, 2, 2, 2, 2, 2, 2],
            conv_kernel: vec![10, 3, 3, 3, 3, 2, 2],
            conv_bias: false,
            num_conv_pos_embeddings: 128,
            num_conv_pos_embedding_groups: 16,
            do_stable_layer_norm: false,
            layer_norm_eps: 1e-5,
            feat_proj_layer_norm: true,
            conv_pos_batch_norm: false,
            hidden_dropout: 0.1,
            attention_dropout: 0.1,
            activation_dropout: 0.1,
            feat_proj_dropout: 0.0,
        }
    }
}

/// Why a configuration cannot be used.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ConfigError {
    #[error("conv_dim, conv_stride and conv_kernel must have the same, non-zero length (got {0}, {1}, {2})")]
    ConvLists(usize, usize, usize),
    #[error("hidden_size {hidden} is not divisible by num_attention_heads {heads}")]
    Heads { hidden: usize, heads: usize },
    #[error("hidden_size {hidden} is not divisible by num_conv_pos_embedding_groups {groups}")]
    PosGroups { hidden: usize, groups: usize },
    #[error("conv_pos_batch_norm (a BatchNorm in the positional convolution) is not supported")]
    PosBatchNorm,
    #[error("a size, stride or kernel is zero")]
    Zero,
}

impl Wav2Vec2Config {
    /// A small encoder that trains on a CPU, for when no pretrained checkpoint
    /// is at hand: 2 pre-LN layers of width 128 over a 64-channel, layer-norm
    /// feature encoder with the same 320× downsampling (20 ms frames), about
    /// 0.3M parameters.
    pub fn small() -> Self {
        Self {
            hidden_size: 128,
            num_hidden_layers: 2,
            num_attention_heads: 4,
            intermediate_size: 256,
            conv_dim: vec![64; 7],
            // ReLU in the convolutions: GELU's erf was a fifth of the training time.
            feat_extract_activation: Activation::Relu,
            // Post-LN transformers train poorly from scratch; pre-LN is stable.
            do_stable_layer_norm: true,
            feat_extract_norm: FeatExtractNorm::Layer,
            num_conv_pos_embeddings: 32,
            num_conv_pos_embedding_groups: 16,
            ..Self::default()
        }
    }

    /// Reads an HF `config.json`.
    pub fn from_file(path: &Path) -> Result<Self, LoadError> {
        let text = std::fs::read_to_string(path).map_err(|source| LoadError::Io {
            path: path.to_owned(),
            source,
        })?;
        let config: Self = serde_json::from_str(&text).map_err(|source| LoadError::Json {
            path: path.to_owned(),
            source,
        })?;
        config.validate().map_err(|source| LoadError::Config {
            path: path.to_owned(),
            source,
        })?;
        Ok(config)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let n = self.conv_dim.len();
        if n == 0 || self.conv_stride.len() != n || self.conv_kernel.len() != n {
            return Err(ConfigError::ConvLists(
                n,
                self.conv_stride.len(),
                self.conv_kernel.len(),
            ));
        }
        let sizes = [self.hidden_size, self.num_attention_heads, self.num_conv_pos_embeddings];
        let convs = self.conv_dim.iter().chain(&self.conv_stride).chain(&self.conv_kernel);
        if sizes.iter().chain(convs).any(|&v| v == 0) || self.num_conv_pos_embedding_groups == 0 {
            return Err(ConfigError::Zero);
        }
        if !self.hidden_size.is_multiple_of(self.num_attention_heads) {
            return Err(ConfigError::Heads {
                hidden: self.hidden_size,
                heads: self.num_attention_heads,
            });
        }
        if !self.hidden_size.is_multiple_of(self.num_conv_pos_embedding_groups) {
            return Err(ConfigError::PosGroups {
                hidden: self.hidden_size,
                groups: self.num_conv_pos_embedding_groups,
            });
        }
        if self.conv_pos_batch_norm {
            return Err(ConfigError::PosBatchNorm);
        }
        Ok(())
    }

    /// Frames the feature encoder makes from `n_samples` (HF's
    /// `_get_feat_extract_output_lengths`): `⌊(L − k) / s⌋ + 1` per layer, 0 if too short.
    pub fn n_frames(&self, n_samples: usize) -> usize {
        self.conv_kernel
            .iter()
            .zip(&self.conv_stride)
            .fold(
                n_samples,
                |len, (&kernel, &stride)| {
                    if len < kernel { 0 } else { (len - kernel) / stride + 1 }
                },
            )
    }

    /// About how many parameters the encoder has (saturating: the config may
    /// be absurd, and this is how it is told).
    pub fn parameter_count(&self) -> usize {
        let (h, layers) = (self.hidden_size, self.num_hidden_layers);
        let mut channels_in = 1usize;
        let mut count = 0usize;
        for (&dim, &kernel) in self.conv_dim.iter().zip(&self.conv_kernel) {
            count = count.saturating_add(channels_in.saturating_mul(dim).saturating_mul(kernel));
            channels_in = dim;
        }
        let positional = h
            .saturating_mul(h / self.num_conv_pos_embedding_groups.max(1))
            .saturating_mul(self.num_conv_pos_embeddings);
        let layer = h
            .saturating_mul(h)
            .saturating_mul(4)
            .saturating_add(h.saturating_mul(self.intermediate_size).saturating_mul(2));
        count
            .saturating_add(channels_in.saturating_mul(h))
            .saturating_add(positional)
            .saturating_add(layer.saturating_mul(layers))
    }

    /// Whether the feature projection starts with a layer norm.
    pub fn has_projection_norm(&self) -> bool {
        self.model_type == ModelType::Wav2vec2 || self.feat_proj_layer_norm
    }
}

/// Input normalisation from `preprocessor_config.json` (HF's `Wav2Vec2FeatureExtractor`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Preprocessor {
    /// Zero mean, unit variance per clip: `(x − mean) / sqrt(var + 1e-7)`.
    pub do_normalize: bool,
    pub sampling_rate: u32,
}

impl Default for Preprocessor {
    fn default() -> Self {
        Self {
            do_normalize: true,
            sampling_rate: 16_000,
        }
    }
}

impl Preprocessor {
    /// The clip as the model expects it.
    pub fn apply(&self, samples: &[f32]) -> Vec<f32> {
        if !self.do_normalize || samples.is_empty() {
            return samples.to_vec();
        }
        let n = samples.len() as f64;
        let mean = samples.iter().map(|&s| f64::from(s)).sum::<f64>() / n;
        let var = samples.iter().map(|&s| (f64::from(s) - mean).powi(2)).sum::<f64>() / n;
        let scale = 1.0 / (var + 1e-7).sqrt();
        samples
            .iter()
            .map(|&s| ((f64::from(s) - mean) * scale) as f32)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_counts_follow_the_conv_stack() {
        let config = Wav2Vec2Config::default();
        // 20 ms frames with a 25 ms receptive field: 1 s → 49 frames.
        assert_eq!(config.n_frames(16_000), 49);
        assert_eq!(config.n_frames(400), 1);
        assert_eq!(config.n_frames(399), 0);
    }

    #[test]
    fn hf_config_fields_are_read_and_others_ignored() {
        let json = r#"{"model_type": "hubert", "hidden_size": 64, "num_attention_heads": 4,
            "hidden_act": "gelu_new", "feat_extract_norm": "layer", "vocab_size": 32,
            "num_conv_pos_embedding_groups": 16, "feat_proj_layer_norm": false}"#;
        let config: Wav2Vec2Config = serde_json::from_str(json).unwrap();
        assert_eq!(config.model_type, ModelType::Hubert);
        assert_eq!(config.hidden_act, Activation::GeluNew);
        assert!(!config.has_projection_norm());
        assert_eq!(config.conv_dim.len(), 7, "defaults fill what the file leaves out");
        assert!(config.validate().is_ok());
        let bad = Wav2Vec2Config {
            num_attention_heads: 5,
            ..config
        };
        assert!(matches!(bad.validate(), Err(ConfigError::Heads { .. })));
    }

    #[test]
    fn normalisation_is_zero_mean_unit_variance() {
        let out = Preprocessor::default().apply(&[1.0, 2.0, 3.0, 4.0]);
        let mean: f32 = out.iter().sum::<f32>() / 4.0;
        let var: f32 = out.iter().map(|v| v * v).sum::<f32>() / 4.0;
        assert!(mean.abs() < 1e-6 && (var - 1.0).abs() < 1e-5);
    }
}
