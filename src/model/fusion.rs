//! The emotion model: the spectral and/or temporal stream, their fusion, and
//! an MLP classifier. The four variants of the paper's comparison share this
//! one module: `spectral` and `temporal` (single-branch baselines),
//! `fusion-concat` (`[e_s; e_t]`) and `fusion-gated`
//! (`g = σ(W[e_s; e_t] + b)`, `e = g ⊙ e_s + (1 − g) ⊙ e_t`, with `g` returned).

use burn::module::{Module, Param};
use burn::nn::{Dropout, DropoutConfig, Linear, LinearConfig};
use burn::tensor::activation::sigmoid;
use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};

use super::fused::{gelu_dropout, linear};
use super::spectral_cnn::{SpectralCnn, SpectralCnnConfig, StreamOutput};
use super::temporal::{BackboneConfig, LayerCombination, TemporalConfig, TemporalPooling, TemporalStream};
use super::wav2vec2::Wav2Vec2;

/// Which streams the model has and how they are fused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum ModelKind {
    /// The 1D-CNN over MFCC + ZCR + RMS alone.
    Spectral,
    /// The speech encoder alone.
    Temporal,
    /// Both streams, embeddings concatenated.
    FusionConcat,
    /// Both streams, mixed by a learned per-clip gate.
    FusionGated,
}

impl ModelKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ModelKind::Spectral => "spectral",
            ModelKind::Temporal => "temporal",
            ModelKind::FusionConcat => "fusion-concat",
            ModelKind::FusionGated => "fusion-gated",
        }
    }

    pub fn has_spectral(self) -> bool {
        self != ModelKind::Temporal
    }

    pub fn has_temporal(self) -> bool {
        self != ModelKind::Spectral
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EmotionModelConfig {
    pub kind: ModelKind,
    pub spectral: SpectralCnnConfig,
    pub temporal: TemporalConfig,
    /// Width of the classifier's hidden layer; 0: a linear classifier.
    pub classifier_hidden: usize,
    pub dropout: f64,
    pub n_classes: usize,
}

impl EmotionModelConfig {
    /// The paper's architecture at fusion width `width`: a spectral CNN of
    /// blocks 64, `width`, `width` over the default frame features, the
    /// temporal stream on `backbone`, and an MLP of `width`. The number of
    /// classes comes from the training labels.
    pub fn new(
        kind: ModelKind,
        backbone: BackboneConfig,
        width: usize,
        dropout: f64,
        spectral_dropout: f64,
    ) -> EmotionModelConfig {
        EmotionModelConfig {
            kind,
            spectral: SpectralCnnConfig::new()
                .with_channels_in(crate::features::FeatureConfig::default().n_features())
                .with_channels(vec![64, width, width])
                .with_dropout(spectral_dropout),
            temporal: TemporalConfig {
                backbone,
                d_model: width,
                attention_dim: 64,
                dropout,
                layers: LayerCombination::default(),
                pooling: TemporalPooling::default(),
            },
            classifier_hidden: width,
            dropout,
            n_classes: 0,
        }
    }

    /// The fusion width: both streams' embeddings have it.
    pub fn d_model(&self) -> usize {
        self.spectral.d_model()
    }

    /// About how many parameters the model has, its trained encoder
    /// included (saturating: the config may be absurd, and this is how it is told).
    pub fn parameter_count(&self) -> usize {
        let d = self.d_model();
        let spectral = &self.spectral;
        let pooling = |width: usize, attention: usize| width.saturating_mul(attention).saturating_mul(2);
        let mut count = pooling(d, spectral.attention_dim);
        let mut channels_in = spectral.channels_in;
        for &channels in &spectral.channels {
            let conv = channels_in
                .saturating_mul(channels)
                .saturating_mul(spectral.kernel_size);
            count = count.saturating_add(conv.saturating_add(channels.saturating_mul(3)));
            channels_in = channels;
        }
        if self.kind.has_temporal() {
            let backbone = &self.temporal.backbone;
            count = count.saturating_add(self.temporal.head_parameter_count());
            if let (true, Some(encoder)) = (backbone.is_trained(), backbone.wav2vec2()) {
                count = count.saturating_add(encoder.parameter_count());
            }
        }
        let classifier = match self.classifier_hidden {
            0 => self.classifier_in().saturating_mul(self.n_classes),
            hidden => self
                .classifier_in()
                .saturating_mul(hidden)
                .saturating_add(hidden.saturating_mul(self.n_classes)),
        };
        count
            .saturating_add(classifier)
            .saturating_add(d.saturating_mul(d).saturating_mul(2))
    }

    /// Width of what the classifier reads: the one stream's embedding, or
    /// both side by side (concatenation), or their gated mix.
    pub fn classifier_in(&self) -> usize {
        let spectral = self.d_model();
        let temporal = self.temporal.embedding_width();
        match self.kind {
            ModelKind::Spectral | ModelKind::FusionGated => spectral,
            ModelKind::Temporal => temporal,
            ModelKind::FusionConcat => spectral.saturating_add(temporal),
        }
    }

    /// A new model; a trained temporal encoder may start from pretrained weights.
    pub fn init(&self, encoder: Option<Wav2Vec2>, device: &Device) -> EmotionModel {
        let d = self.d_model();
        let classifier_in = self.classifier_in();
        let output_in = match self.classifier_hidden {
            0 => classifier_in,
            hidden => hidden,
        };
        EmotionModel {
            spectral: self.kind.has_spectral().then(|| self.spectral.init(device)),
            temporal: self.kind.has_temporal().then(|| self.temporal.init(encoder, device)),
            gate: (self.kind == ModelKind::FusionGated).then(|| LinearConfig::new(2 * d, d).init(device)),
            classifier: Classifier {
                hidden: (self.classifier_hidden > 0)
                    .then(|| LinearConfig::new(classifier_in, self.classifier_hidden).init(device)),
                dropout: DropoutConfig::new(self.dropout).init(),
                output: LinearConfig::new(output_in, self.n_classes).init(device),
            },
        }
    }
}

/// Linear → GELU → dropout → linear, or one linear layer (no `hidden`).
#[derive(Module, Debug)]
pub struct Classifier {
    pub hidden: Option<Linear>,
    pub dropout: Dropout,
    pub output: Linear,
}

impl Classifier {
    fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        match &self.hidden {
            Some(hidden) => linear(gelu_dropout(linear(x, hidden), &self.dropout), &self.output),
            None => linear(x, &self.output),
        }
    }
}

/// The model. Fields follow [`ModelKind`]: a missing stream is `None`.
#[derive(Module, Debug)]
pub struct EmotionModel {
    pub spectral: Option<SpectralCnn>,
    pub temporal: Option<TemporalStream>,
    pub gate: Option<Linear>,
    pub classifier: Classifier,
}

/// The temporal stream's input: waveforms for an encoder inside the model,
/// hidden states for a frozen encoder outside it.
#[derive(Debug, Clone)]
pub enum TemporalInput {
    /// `[batch, max_samples]`, normalised and zero-padded.
    Waveform {
        samples: Box<Tensor<2>>,
        n_samples: Vec<usize>,
    },
    /// Each `[batch, max_frames, hidden]`.
    Hidden {
        states: Vec<Tensor<3>>,
        n_frames: Vec<usize>,
    },
}

/// A batch as the model takes it.
#[derive(Debug, Clone)]
pub struct ModelInput {
    /// `[batch, n_features, max_frames]` standardised frame features, and each clip's frames.
    pub features: Option<(Tensor<3>, Vec<usize>)>,
    pub temporal: Option<TemporalInput>,
}

/// Everything a forward pass computes that a prediction or an explanation needs.
#[derive(Debug, Clone)]
pub struct ModelOutput {
    /// `[batch, n_classes]`.
    pub logits: Tensor<2>,
    pub spectral: Option<StreamOutput>,
    pub temporal: Option<StreamOutput>,
    /// `[batch, d]`: the fusion gate, the weight of the spectral stream (gated fusion only).
    pub gate: Option<Tensor<2>>,
}

impl EmotionModel {
    pub fn forward(&self, input: ModelInput) -> ModelOutput {
        let spectral = self.spectral.as_ref().map(|stream| {
            let (features, n_frames) = input.features.expect("the spectral stream needs features");
            stream.forward(features, &n_frames)
        });
        let temporal = self.temporal.as_ref().map(|stream| {
            match input
                .temporal
                .expect("the temporal stream needs audio or hidden states")
            {
                TemporalInput::Waveform { samples, n_samples } => stream.forward_waveform(*samples, &n_samples),
                TemporalInput::Hidden { states, n_frames } => stream.forward_hidden(states, &n_frames),
            }
        });
        let (logits, gate) = self.head(
            spectral.as_ref().map(|s| s.embedding.clone()),
            temporal.as_ref().map(|t| t.embedding.clone()),
        );
        ModelOutput {
            logits,
            spectral,
            temporal,
            gate,
        }
    }

    /// Two single-stream models with linear classifiers fused late, as one
    /// [`ModelKind::FusionConcat`] model with a linear classifier: its logits
    /// are `w · spectral logits + (1 − w) · temporal logits` (`w` =
    /// `spectral_weight`), which a linear map of `[e_s; e_t]` computes
    /// exactly, so every consumer of a fusion model reads it as one.
    pub fn late_fusion(spectral: EmotionModel, temporal: EmotionModel, spectral_weight: f64) -> EmotionModel {
        assert!(
            spectral.classifier.hidden.is_none() && temporal.classifier.hidden.is_none(),
            "late fusion mixes linear classifiers"
        );
        let w = spectral_weight as f32;
        let (s, t) = (spectral.classifier.output, temporal.classifier.output);
        let mut output = t.clone();
        output.weight = Param::from_tensor(Tensor::cat(vec![s.weight.val() * w, t.weight.val() * (1.0 - w)], 0));
        output.bias = match (s.bias, t.bias) {
            (Some(b_s), Some(b_t)) => Some(Param::from_tensor(b_s.val() * w + b_t.val() * (1.0 - w))),
            _ => unreachable!("both classifiers are built with a bias"),
        };
        EmotionModel {
            spectral: spectral.spectral,
            temporal: temporal.temporal,
            gate: None,
            classifier: Classifier {
                hidden: None,
                dropout: temporal.classifier.dropout,
                output,
            },
        }
    }

    /// Fusion and classifier from the streams' pooled embeddings (each
    /// `[batch, d]`): what stream-level explanations re-run with an embedding
    /// replaced.
    pub fn head(&self, spectral: Option<Tensor<2>>, temporal: Option<Tensor<2>>) -> (Tensor<2>, Option<Tensor<2>>) {
        let (fused, gate) = match (spectral, temporal, &self.gate) {
            (Some(e_s), Some(e_t), Some(gate)) => {
                let g = sigmoid(linear(Tensor::cat(vec![e_s.clone(), e_t.clone()], 1), gate)); // [b, d]
                let fused = g.clone() * e_s + (g.ones_like() - g.clone()) * e_t;
                (fused, Some(g))
            }
            (Some(e_s), Some(e_t), None) => (Tensor::cat(vec![e_s, e_t], 1), None),
            (Some(e), None, _) | (None, Some(e), _) => (e, None),
            (None, None, _) => unreachable!("a model has at least one stream"),
        };
        (self.classifier.forward(fused), gate)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::wav2vec2::Wav2Vec2Config;
    use burn::tensor::Distribution;

    fn linear_model(kind: ModelKind, device: &Device) -> EmotionModel {
        let backbone = BackboneConfig::Scratch {
            encoder: Wav2Vec2Config::small(),
        };
        let mut config = EmotionModelConfig::new(kind, backbone, 8, 0.0, 0.0);
        config.classifier_hidden = 0;
        config.n_classes = 3;
        config.init(None, device)
    }

    #[test]
    fn a_late_fusion_gives_the_weighted_sum_of_its_streams_logits() {
        let device = Device::flex();
        device.seed(3);
        let spectral = linear_model(ModelKind::Spectral, &device);
        let temporal = linear_model(ModelKind::Temporal, &device);
        let e_s = Tensor::<2>::random([4, 8], Distribution::Normal(0.0, 1.0), &device);
        let e_t = Tensor::<2>::random([4, 8], Distribution::Normal(0.0, 1.0), &device);
        let (alone_s, _) = spectral.head(Some(e_s.clone()), None);
        let (alone_t, _) = temporal.head(None, Some(e_t.clone()));
        let fused = EmotionModel::late_fusion(spectral, temporal, 0.3);
        let (logits, gate) = fused.head(Some(e_s), Some(e_t));
        assert!(gate.is_none());
        let expected: Vec<f32> = (alone_s * 0.3 + alone_t * 0.7).into_data().try_to_vec().unwrap();
        let found: Vec<f32> = logits.into_data().try_to_vec().unwrap();
        let worst = expected
            .iter()
            .zip(&found)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f32::max);
        assert!(worst < 1e-5, "max difference {worst}");
    }
}
