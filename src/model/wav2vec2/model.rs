//! wav2vec 2.0 / HuBERT modules, field for field as `modeling_wav2vec2.py`
//! names them, so the struct tree reads like the checkpoint's keys.

use burn::module::Module;
use burn::nn::conv::Conv1d;
use burn::nn::{Dropout, DropoutConfig, GroupNorm, LayerNorm, Linear};
use burn::tensor::{Bool, Device, Tensor, TensorData};

use super::{Activation, FeatExtractNorm, Wav2Vec2Config};
use crate::model::fused::{frame_conv1d, linear, self_attention};
use crate::model::weights::{Scope, Weights, conv1d_config};

/// LayerNorm/GroupNorm epsilon inside the feature encoder: PyTorch's default,
/// not `layer_norm_eps` (HF builds those norms without it).
const CONV_NORM_EPS: f64 = 1e-5;

/// One convolution of the feature encoder, with its norm (if any) and activation.
#[derive(Module, Debug)]
pub struct ConvLayer {
    pub conv: Conv1d,
    /// `layer` variant: LayerNorm over channels after every convolution.
    pub layer_norm: Option<LayerNorm>,
    /// `group` variant: GroupNorm (a group per channel) after the first one.
    pub group_norm: Option<GroupNorm>,
    #[module(skip)]
    pub activation: Activation,
}

impl ConvLayer {
    fn load(config: &Wav2Vec2Config, index: usize, scope: &Scope) -> Self {
        let channels_in = if index == 0 { 1 } else { config.conv_dim[index - 1] };
        let channels_out = config.conv_dim[index];
        let conv = scope.conv1d(
            "conv",
            conv1d_config(
                channels_in,
                channels_out,
                config.conv_kernel[index],
                config.conv_stride[index],
                0,
                1,
                config.conv_bias,
            ),
        );
        let (layer_norm, group_norm) = match config.feat_extract_norm {
            FeatExtractNorm::Layer => (Some(scope.layer_norm("layer_norm", channels_out, CONV_NORM_EPS)), None),
            FeatExtractNorm::Group if index == 0 => (
                None,
                Some(scope.group_norm("layer_norm", channels_out, channels_out, CONV_NORM_EPS)),
            ),
            FeatExtractNorm::Group => (None, None),
        };
        Self {
            conv,
            layer_norm,
            group_norm,
            activation: config.feat_extract_activation,
        }
    }

    /// # Shapes
    /// - x: `[batch, samples, channels_in]` → `[batch, frames, channels_out]`
    fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let mut x = frame_conv1d(x, &self.conv);
        if let Some(norm) = &self.layer_norm {
            x = norm.forward(x);
        }
        if let Some(norm) = &self.group_norm {
            x = norm_over_time(x, norm);
        }
        self.activation.forward(x)
    }
}

/// GroupNorm with one group per channel (as the feature encoder builds it)
/// on channels-last frames: each channel normalised over time.
///
/// # Shapes
/// - x: `[batch, frames, channels]` → `[batch, frames, channels]`
fn norm_over_time(x: Tensor<3>, norm: &GroupNorm) -> Tensor<3> {
    let channels = norm.num_channels;
    let (variance, mean) = x.clone().var_mean_bias(1); // [b, 1, c]
    let x = (x - mean) / (variance + norm.epsilon).sqrt();
    match (&norm.gamma, &norm.beta) {
        (Some(gamma), Some(beta)) => x * gamma.val().reshape([1, 1, channels]) + beta.val().reshape([1, 1, channels]),
        _ => x,
    }
}

/// Waveform → frame features (`feature_extractor` in the checkpoint).
#[derive(Module, Debug)]
pub struct FeatureEncoder {
    pub conv_layers: Vec<ConvLayer>,
}

impl FeatureEncoder {
    /// # Shapes
    /// - samples: `[batch, n_samples]` → `[batch, n_frames, conv_dim]`
    pub fn forward(&self, samples: Tensor<2>) -> Tensor<3> {
        let x = samples.unsqueeze_dim(2); // [b, n, 1]: channels last, as every layer
        self.conv_layers.iter().fold(x, |x, layer| layer.forward(x))
    }
}

/// Frame features → transformer width (`feature_projection`).
#[derive(Module, Debug)]
pub struct FeatureProjection {
    pub layer_norm: Option<LayerNorm>,
    pub projection: Linear,
    pub dropout: Dropout,
}

impl FeatureProjection {
    /// # Shapes
    /// - x: `[batch, frames, conv_dim]` → `[batch, frames, hidden]`
    fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let x = match &self.layer_norm {
            Some(norm) => norm.forward(x),
            None => x,
        };
        self.dropout.forward(linear(x, &self.projection))
    }
}

/// Convolutional relative position embedding (`pos_conv_embed`): a grouped
/// convolution over time whose weight-normed weight is materialised at load.
#[derive(Module, Debug)]
pub struct PositionalConvEmbedding {
    pub conv: Conv1d,
    #[module(skip)]
    pub activation: Activation,
}

impl PositionalConvEmbedding {
    /// # Shapes
    /// - x: `[batch, frames, hidden]` → `[batch, frames, hidden]`
    fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let [_, frames, _] = x.dims();
        let y = self.conv.forward(x.swap_dims(1, 2)); // [b, hidden, frames (+1 for an even kernel)]
        // HF's SamePad drops the extra last frame an even kernel makes.
        let y = y.narrow(2, 0, frames);
        self.activation.forward(y).swap_dims(1, 2)
    }
}

/// Multi-head self-attention (`attention`).
#[derive(Module, Debug)]
pub struct Attention {
    pub q_proj: Linear,
    pub k_proj: Linear,
    pub v_proj: Linear,
    pub out_proj: Linear,
    pub num_heads: usize,
}

impl Attention {
    /// # Shapes
    /// - x: `[batch, frames, hidden]` → `[batch, frames, hidden]`
    /// - padding: `[batch, heads, frames, frames]`, true where the key is padding
    pub fn forward(&self, x: Tensor<3>, padding: Option<Tensor<4, Bool>>) -> Tensor<3> {
        let q = linear(x.clone(), &self.q_proj); // [b, t, hidden]
        let k = linear(x.clone(), &self.k_proj);
        let v = linear(x, &self.v_proj);
        // Scaled by 1/sqrt(head_dim), as HF does.
        let context = self_attention(q, k, v, self.num_heads, padding); // [b, t, hidden]
        linear(context, &self.out_proj)
    }
}

/// Position-wise feed-forward block (`feed_forward`).
#[derive(Module, Debug)]
pub struct FeedForward {
    pub intermediate_dense: Linear,
    pub output_dense: Linear,
    pub intermediate_dropout: Dropout,
    pub output_dropout: Dropout,
    #[module(skip)]
    pub activation: Activation,
}

impl FeedForward {
    fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let x = self.activation.forward(linear(x, &self.intermediate_dense));
        let x = self.intermediate_dropout.forward(x);
        self.output_dropout.forward(linear(x, &self.output_dense))
    }
}

/// One transformer layer, post-LN (base) or pre-LN (`do_stable_layer_norm`).
#[derive(Module, Debug)]
pub struct EncoderLayer {
    pub attention: Attention,
    pub dropout: Dropout,
    pub layer_norm: LayerNorm,
    pub feed_forward: FeedForward,
    pub final_layer_norm: LayerNorm,
    pub pre_norm: bool,
}

impl EncoderLayer {
    fn forward(&self, x: Tensor<3>, padding: Option<Tensor<4, Bool>>) -> Tensor<3> {
        if self.pre_norm {
            let attended = self.attention.forward(self.layer_norm.forward(x.clone()), padding);
            let x = x + self.dropout.forward(attended);
            x.clone() + self.feed_forward.forward(self.final_layer_norm.forward(x))
        } else {
            let attended = self.attention.forward(x.clone(), padding);
            let x = self.layer_norm.forward(x + self.dropout.forward(attended));
            self.final_layer_norm.forward(x.clone() + self.feed_forward.forward(x))
        }
    }
}

/// Positional embedding and the transformer layers (`encoder`).
#[derive(Module, Debug)]
pub struct Encoder {
    pub pos_conv_embed: PositionalConvEmbedding,
    pub layer_norm: LayerNorm,
    pub dropout: Dropout,
    pub layers: Vec<EncoderLayer>,
    pub pre_norm: bool,
}

impl Encoder {
    /// # Shapes
    /// - x: `[batch, frames, hidden]`
    /// - valid: `[batch, frames]`, 1 for real frames and 0 for padding
    fn forward(&self, x: Tensor<3>, valid: Option<Tensor<2>>) -> Wav2Vec2Output {
        let [batch, frames, _] = x.dims();
        let heads = self.layers.first().map_or(1, |layer| layer.attention.num_heads);
        let (x, padding) = match valid {
            Some(valid) => {
                // Padded frames are zeroed before the positional convolution, as HF does.
                let x = x * valid.clone().unsqueeze_dim::<3>(2);
                let padding = valid
                    .equal_elem(0.0)
                    .unsqueeze_dims::<4>(&[1, 2])
                    .expand([batch, heads, frames, frames]);
                (x, Some(padding))
            }
            None => (x, None),
        };
        let x = x.clone() + self.pos_conv_embed.forward(x);
        let x = if self.pre_norm { x } else { self.layer_norm.forward(x) };
        let mut hidden = self.dropout.forward(x);
        let mut hidden_states = Vec::with_capacity(self.layers.len() + 1);
        for layer in &self.layers {
            hidden_states.push(hidden.clone());
            hidden = layer.forward(hidden, padding.clone());
        }
        hidden_states.push(hidden.clone());
        let last_hidden_state = if self.pre_norm {
            self.layer_norm.forward(hidden)
        } else {
            hidden
        };
        Wav2Vec2Output {
            last_hidden_state,
            hidden_states,
            n_frames: Vec::new(),
        }
    }
}

/// What the encoder returns.
#[derive(Debug, Clone)]
pub struct Wav2Vec2Output {
    /// `[batch, frames, hidden]`: after the final layer norm in pre-LN models.
    pub last_hidden_state: Tensor<3>,
    /// `num_hidden_layers + 1` tensors `[batch, frames, hidden]`: the input of
    /// the first transformer layer, then every layer's output (as
    /// `transformers` 5 returns `hidden_states`).
    pub hidden_states: Vec<Tensor<3>>,
    /// Real (unpadded) frames of each clip.
    pub n_frames: Vec<usize>,
}

/// The whole encoder: waveform → hidden states.
#[derive(Module, Debug)]
pub struct Wav2Vec2 {
    pub feature_extractor: FeatureEncoder,
    pub feature_projection: FeatureProjection,
    pub encoder: Encoder,
    /// Group-norm feature encoders normalise over time, so a padded batch
    /// would change every clip's features: those clips are encoded one by one.
    pub per_clip_features: bool,
    #[module(skip)]
    pub config: Wav2Vec2Config,
}

impl Wav2Vec2 {
    /// A randomly initialised encoder (training from scratch).
    pub fn init(config: &Wav2Vec2Config, device: &Device) -> Self {
        Self::build(config, &Weights::random(device).root())
    }

    /// Builds the modules, each tensor from `scope` (HF's key tree).
    pub(super) fn build(config: &Wav2Vec2Config, scope: &Scope) -> Self {
        let h = config.hidden_size;
        let conv_layers = (0..config.conv_dim.len())
            .map(|i| ConvLayer::load(config, i, &scope.at("feature_extractor.conv_layers").at(i)))
            .collect();
        let projection_scope = scope.at("feature_projection");
        let conv_out = *config.conv_dim.last().expect("validated: conv_dim is not empty");
        let feature_projection = FeatureProjection {
            layer_norm: config
                .has_projection_norm()
                .then(|| projection_scope.layer_norm("layer_norm", conv_out, config.layer_norm_eps)),
            projection: projection_scope.linear("projection", conv_out, h, true),
            dropout: DropoutConfig::new(config.feat_proj_dropout).init(),
        };
        let encoder_scope = scope.at("encoder");
        let pos_conv = encoder_scope.at("pos_conv_embed").conv1d(
            "conv",
            conv1d_config(
                h,
                h,
                config.num_conv_pos_embeddings,
                1,
                config.num_conv_pos_embeddings / 2,
                config.num_conv_pos_embedding_groups,
                true,
            ),
        );
        let layers = (0..config.num_hidden_layers)
            .map(|i| {
                let layer = encoder_scope.at("layers").at(i);
                let attention = layer.at("attention");
                let feed_forward = layer.at("feed_forward");
                EncoderLayer {
                    attention: Attention {
                        q_proj: attention.linear("q_proj", h, h, true),
                        k_proj: attention.linear("k_proj", h, h, true),
                        v_proj: attention.linear("v_proj", h, h, true),
                        out_proj: attention.linear("out_proj", h, h, true),
                        num_heads: config.num_attention_heads,
                    },
                    dropout: DropoutConfig::new(config.hidden_dropout).init(),
                    layer_norm: layer.layer_norm("layer_norm", h, config.layer_norm_eps),
                    feed_forward: FeedForward {
                        intermediate_dense: feed_forward.linear(
                            "intermediate_dense",
                            h,
                            config.intermediate_size,
                            true,
                        ),
                        output_dense: feed_forward.linear("output_dense", config.intermediate_size, h, true),
                        intermediate_dropout: DropoutConfig::new(config.activation_dropout).init(),
                        output_dropout: DropoutConfig::new(config.hidden_dropout).init(),
                        activation: config.hidden_act,
                    },
                    final_layer_norm: layer.layer_norm("final_layer_norm", h, config.layer_norm_eps),
                    pre_norm: config.do_stable_layer_norm,
                }
            })
            .collect();
        Self {
            feature_extractor: FeatureEncoder { conv_layers },
            feature_projection,
            encoder: Encoder {
                pos_conv_embed: PositionalConvEmbedding {
                    conv: pos_conv,
                    activation: config.feat_extract_activation,
                },
                layer_norm: encoder_scope.layer_norm("layer_norm", h, config.layer_norm_eps),
                dropout: DropoutConfig::new(config.hidden_dropout).init(),
                layers,
                pre_norm: config.do_stable_layer_norm,
            },
            per_clip_features: config.feat_extract_norm == FeatExtractNorm::Group,
            config: config.clone(),
        }
    }

    /// Encodes a batch of (already normalised) clips, zero-padded to the
    /// longest: `samples` is `[batch, max_samples]` and `n_samples` the real
    /// length of each. Padding never changes a clip's outputs on its real frames.
    pub fn forward(&self, samples: Tensor<2>, n_samples: &[usize]) -> Wav2Vec2Output {
        let [batch, max_samples] = samples.dims();
        assert_eq!(batch, n_samples.len(), "one length per clip");
        let n_frames: Vec<usize> = n_samples.iter().map(|&n| self.config.n_frames(n)).collect();
        let max_frames = self.config.n_frames(max_samples);
        let padded = n_frames.iter().any(|&n| n < max_frames);
        let features = if self.per_clip_features && padded {
            let clips = (0..batch).map(|i| {
                let clip = samples.clone().narrow(0, i, 1).narrow(1, 0, n_samples[i]);
                let features = self.feature_extractor.forward(clip); // [1, frames_i, c]
                let [_, frames, channels] = features.dims();
                let zeros = Tensor::zeros([1, max_frames - frames, channels], &features.device());
                Tensor::cat(vec![features, zeros], 1)
            });
            Tensor::cat(clips.collect(), 0)
        } else {
            self.feature_extractor.forward(samples)
        }; // [b, frames, conv_dim]
        let hidden = self.feature_projection.forward(features); // [b, frames, hidden]
        let valid = padded.then(|| frame_mask(&n_frames, max_frames, &hidden.device()));
        let mut output = self.encoder.forward(hidden, valid);
        output.n_frames = n_frames;
        output
    }
}

/// `[batch, frames]`: 1 where frame `t` is one of the clip's `n_frames[i]`, else 0.
pub fn frame_mask(n_frames: &[usize], max_frames: usize, device: &Device) -> Tensor<2> {
    let values: Vec<f32> = n_frames
        .iter()
        .flat_map(|&n| (0..max_frames).map(move |t| if t < n { 1.0 } else { 0.0 }))
        .collect();
    Tensor::from_data(TensorData::new(values, [n_frames.len(), max_frames]), device)
}
