//! The temporal stream: a speech encoder on the raw waveform (wav2vec 2.0 /
//! HuBERT trained from scratch or pretrained, or a pretrained Whisper
//! encoder on its log-mel front end), a learnable softmax-weighted sum of its
//! hidden layers (the SUPERB / EmoBox recipe) or a projection of all of them
//! side by side, a projection to the fusion width, and attentive temporal
//! pooling, statistics pooling (mean and std over frames, then a projection),
//! or a linear probe's input (the mean over frames of the encoder's raw
//! hidden states, standardised with the training clips' statistics).
//!
//! A frozen pretrained encoder is not part of this module: its hidden states
//! are computed (or read from the cache) outside and handed to
//! [`TemporalStream::forward_hidden`]. An encoder trained from scratch or
//! fine-tuned lives in [`TemporalStream::encoder`] and is saved with the model.

use std::path::{Path, PathBuf};

use burn::module::{Module, Param};
use burn::nn::{Dropout, DropoutConfig, Linear, LinearConfig};
use burn::tensor::activation::softmax;
use burn::tensor::{Bool, Device, Tensor};
use serde::{Deserialize, Serialize};

use super::fused::{gelu, gelu_dropout, linear};
use super::pooling::{AttentivePooling, AttentivePoolingConfig, mean, padding_mask, statistics};
use super::spectral_cnn::StreamOutput;
use super::wav2vec2::{Preprocessor, Wav2Vec2, Wav2Vec2Config, Wav2Vec2Output};
use super::whisper::{WhisperConfig, WhisperEncoder, WhisperMel, WhisperMode};

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
    /// A pretrained Whisper encoder folder (`emofuse backbone convert`), frozen.
    /// A saved model names the installed whisper-base by [`WHISPER_BASE`]
    /// and the sha256 of its weights (see [`BackboneConfig::portable`]).
    Whisper {
        path: PathBuf,
        encoder: WhisperConfig,
        mode: WhisperMode,
        /// The weights the model was trained on; others are refused.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        sha256: Option<String>,
    },
}

impl BackboneConfig {
    /// The backbone a user names: `scratch` (a small wav2vec 2.0 trained with
    /// the model), `whisper-base` (installed under the cache root by
    /// `scripts/get-whisper-base.sh`), or a folder holding a Hugging Face
    /// wav2vec 2.0 / HuBERT or Whisper checkpoint. Only the folder's
    /// configuration is read here; its weights are loaded when used.
    pub fn from_name(name: &str, finetune: bool, whisper_mode: WhisperMode) -> Result<BackboneConfig, BackboneError> {
        let dir = match name {
            "scratch" => {
                return Ok(BackboneConfig::Scratch {
                    encoder: Wav2Vec2Config::small(),
                });
            }
            WHISPER_BASE => installed_whisper_base()?,
            dir => PathBuf::from(dir),
        };
        Self::from_dir(&dir, finetune, whisper_mode)
    }

    /// The backbone of a checkpoint folder, recognised by its `config.json`.
    pub fn from_dir(dir: &Path, finetune: bool, whisper_mode: WhisperMode) -> Result<BackboneConfig, BackboneError> {
        let path = dir.canonicalize().map_err(|source| BackboneError::Io {
            path: dir.to_owned(),
            source,
        })?;
        let config_path = path.join("config.json");
        let text = std::fs::read_to_string(&config_path).map_err(|source| BackboneError::Io {
            path: config_path.clone(),
            source,
        })?;
        let is_whisper =
            serde_json::from_str::<serde_json::Value>(&text).is_ok_and(|json| json["model_type"] == "whisper");
        if is_whisper {
            if finetune {
                return Err(BackboneError::FrozenWhisper { path });
            }
            let encoder = super::whisper::read_config(&path)?;
            return Ok(BackboneConfig::Whisper {
                path,
                encoder,
                mode: whisper_mode,
                sha256: None,
            });
        }
        let encoder = Wav2Vec2Config::from_file(&config_path)?;
        let preprocessor = super::wav2vec2::read_preprocessor(&path.join("preprocessor_config.json"))?;
        Ok(BackboneConfig::Wav2vec2 {
            path,
            encoder,
            preprocessor,
            finetune,
        })
    }

    /// Checks the encoder's configuration.
    pub fn validate(&self) -> Result<(), String> {
        match self {
            BackboneConfig::Scratch { encoder } | BackboneConfig::Wav2vec2 { encoder, .. } => {
                encoder.validate().map_err(|e| e.to_string())
            }
            BackboneConfig::Whisper { encoder, .. } => encoder.validate(),
        }
    }

    /// Hidden layers the stream weighs (layers + 1).
    pub fn n_layers(&self) -> usize {
        match self {
            BackboneConfig::Scratch { encoder } | BackboneConfig::Wav2vec2 { encoder, .. } => {
                encoder.num_hidden_layers.saturating_add(1)
            }
            BackboneConfig::Whisper { encoder, .. } => encoder.encoder_layers.saturating_add(1),
        }
    }

    pub fn hidden_size(&self) -> usize {
        match self {
            BackboneConfig::Scratch { encoder } | BackboneConfig::Wav2vec2 { encoder, .. } => encoder.hidden_size,
            BackboneConfig::Whisper { encoder, .. } => encoder.d_model,
        }
    }

    /// The wav2vec 2.0 configuration, for the wav2vec 2.0 kinds.
    pub fn wav2vec2(&self) -> Option<&Wav2Vec2Config> {
        match self {
            BackboneConfig::Scratch { encoder } | BackboneConfig::Wav2vec2 { encoder, .. } => Some(encoder),
            BackboneConfig::Whisper { .. } => None,
        }
    }

    /// Whether the encoder is trained with (and stored in) the model.
    pub fn is_trained(&self) -> bool {
        match self {
            BackboneConfig::Scratch { .. } => true,
            BackboneConfig::Wav2vec2 { finetune, .. } => *finetune,
            BackboneConfig::Whisper { .. } => false,
        }
    }

    /// How a clip is normalised before the encoder (Whisper takes it as it is).
    pub fn preprocessor(&self) -> Preprocessor {
        match self {
            BackboneConfig::Scratch { .. } => Preprocessor::default(),
            BackboneConfig::Wav2vec2 { preprocessor, .. } => preprocessor.clone(),
            BackboneConfig::Whisper { .. } => Preprocessor {
                do_normalize: false,
                ..Preprocessor::default()
            },
        }
    }

    /// Fewest samples the encoder accepts (one output frame).
    pub fn min_samples(&self) -> usize {
        match self {
            BackboneConfig::Scratch { encoder } | BackboneConfig::Wav2vec2 { encoder, .. } => {
                (1..=16_000).find(|&n| encoder.n_frames(n) > 0).unwrap_or(16_000)
            }
            BackboneConfig::Whisper { .. } => super::whisper::HOP_LENGTH,
        }
    }

    /// As a saved model names it: the installed whisper-base by
    /// [`WHISPER_BASE`] and the sha256 of its weights instead of this
    /// machine's path, so that the model works wherever whisper-base is
    /// installed and nowhere else. Other backbones stay as they are.
    pub fn portable(&self) -> Result<BackboneConfig, BackboneError> {
        let installed = crate::persist::cache_root().join(WHISPER_BASE_DIR).canonicalize();
        match self {
            BackboneConfig::Whisper {
                path, encoder, mode, ..
            } if installed.is_ok_and(|dir| dir == *path) => Ok(BackboneConfig::Whisper {
                path: PathBuf::from(WHISPER_BASE),
                encoder: encoder.clone(),
                mode: *mode,
                sha256: Some(sha256_of(&path.join(WHISPER_WEIGHTS))?),
            }),
            other => Ok(other.clone()),
        }
    }

    /// As this machine names it: the inverse of [`BackboneConfig::portable`]
    /// (the installed whisper-base by its path, no checksum), so that a
    /// saved model's encoder finds the hidden states its training cached.
    pub fn local(&self) -> Result<BackboneConfig, BackboneError> {
        match self {
            BackboneConfig::Whisper {
                path, encoder, mode, ..
            } if path == Path::new(WHISPER_BASE) => Ok(BackboneConfig::Whisper {
                path: installed_whisper_base()?,
                encoder: encoder.clone(),
                mode: *mode,
                sha256: None,
            }),
            other => Ok(other.clone()),
        }
    }

    /// The whole configuration as one string: the hidden-state cache's key,
    /// which changes whenever the encoder's output would.
    pub fn identity(&self) -> String {
        serde_json::to_string(self).expect("a backbone config serialises")
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TemporalConfig {
    pub backbone: BackboneConfig,
    /// Width of the pooled embedding (the fusion width).
    pub d_model: usize,
    pub attention_dim: usize,
    pub dropout: f64,
    /// How each frame's hidden layers become one vector.
    #[serde(default)]
    pub layers: LayerCombination,
    /// How the frames become one vector.
    #[serde(default)]
    pub pooling: TemporalPooling,
}

/// How the temporal stream combines the encoder's hidden layers per frame
/// (each layer normalised first).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum LayerCombination {
    /// A softmax-weighted sum, then the projection (SUPERB, EmoBox).
    #[default]
    Mix,
    /// All layers side by side into the projection: a weight matrix per layer.
    Concat,
}

/// How the temporal stream pools its frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum TemporalPooling {
    /// The paper's attentive pooling.
    #[default]
    Attentive,
    /// Mean and standard deviation over frames of the combined layers, then
    /// the projection to the fusion width (on the pooled vector, not per
    /// frame).
    Statistics,
    /// A linear probe's input: the mean over frames of the hidden states as
    /// the encoder gives them (not normalised per frame: their scale is
    /// information), standardised per feature with the training clips'
    /// statistics, not projected. The classifier on it is linear and fitted
    /// as a logistic regression (`train::probe`), not trained by epochs. In a
    /// `fusion-concat` model the probe is fused late with a spectral stream
    /// whose classifier is linear too (`train::late_fusion`).
    Mean,
}

/// What `--backbone` and saved models call the Whisper-base installed by
/// `scripts/get-whisper-base.sh` under the cache root.
pub const WHISPER_BASE: &str = "whisper-base";
const WHISPER_BASE_DIR: &str = "backbones/whisper-base";
const WHISPER_WEIGHTS: &str = "model.safetensors";

/// The installed whisper-base's folder, canonical (as a config trained on it names it).
fn installed_whisper_base() -> Result<PathBuf, BackboneError> {
    let dir = crate::persist::cache_root().join(WHISPER_BASE_DIR);
    if !dir.join(WHISPER_WEIGHTS).is_file() {
        return Err(BackboneError::NotInstalled { dir });
    }
    dir.canonicalize()
        .map_err(|source| BackboneError::Io { path: dir, source })
}

/// Hex sha256 of a file's bytes.
fn sha256_of(path: &Path) -> Result<String, BackboneError> {
    use sha2::Digest;
    let mut hasher = sha2::Sha256::new();
    let mut file = std::fs::File::open(path).map_err(|source| BackboneError::Io {
        path: path.to_owned(),
        source,
    })?;
    std::io::copy(&mut file, &mut hasher).map_err(|source| BackboneError::Io {
        path: path.to_owned(),
        source,
    })?;
    Ok(hasher.finalize().iter().map(|byte| format!("{byte:02x}")).collect())
}

/// The temporal stream.
#[derive(Module, Debug)]
pub struct TemporalStream {
    /// Present when the encoder is trained with the model (scratch or fine-tuned).
    pub encoder: Option<Wav2Vec2>,
    /// Softmax over these weighs the encoder's hidden layers: `[n_layers]`
    /// ([`LayerCombination::Mix`] only).
    pub layer_weights: Option<Param<Tensor<1>>>,
    /// To the fusion width: each frame (attentive pooling) or the pooled
    /// `[mean; std]` (statistics pooling); none for [`TemporalPooling::Mean`].
    pub projection: Option<Linear>,
    pub dropout: Dropout,
    /// [`TemporalPooling::Attentive`] only.
    pub pooling: Option<AttentivePooling>,
    /// [`TemporalPooling::Mean`] only.
    pub standardization: Option<Standardization>,
}

/// `(x − mean) · scale` per feature, with the training clips' mean and
/// 1 / std: set when the probe is fitted, never trained.
#[derive(Module, Debug)]
pub struct Standardization {
    pub mean: Param<Tensor<1>>,
    pub scale: Param<Tensor<1>>,
}

impl Standardization {
    /// The identity on `width` features (a probe not fitted yet).
    pub fn identity(width: usize, device: &Device) -> Standardization {
        Standardization {
            mean: Param::from_tensor(Tensor::zeros([width], device)),
            scale: Param::from_tensor(Tensor::ones([width], device)),
        }
    }

    /// # Shapes
    /// - x: `[batch, width]`
    pub fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        (x - self.mean.val().unsqueeze::<2>()) * self.scale.val().unsqueeze::<2>()
    }
}

impl TemporalConfig {
    /// A new stream; a trained encoder starts from `encoder` (pretrained
    /// weights to fine-tune) or, when `None`, from random weights.
    pub fn init(&self, encoder: Option<Wav2Vec2>, device: &Device) -> TemporalStream {
        let encoder = self.backbone.is_trained().then(|| {
            encoder.unwrap_or_else(|| {
                Wav2Vec2::init(
                    self.backbone.wav2vec2().expect("trained encoders are wav2vec 2.0"),
                    device,
                )
            })
        });
        let n_layers = self.backbone.n_layers();
        let projection_in = match self.pooling {
            TemporalPooling::Attentive => Some(self.frame_width()),
            TemporalPooling::Statistics => Some(2 * self.frame_width()),
            TemporalPooling::Mean => None,
        };
        TemporalStream {
            encoder,
            // Equal weights to start: the plain mean of the layers.
            layer_weights: (self.layers == LayerCombination::Mix)
                .then(|| Param::from_tensor(Tensor::zeros([n_layers], device))),
            projection: projection_in.map(|d_in| LinearConfig::new(d_in, self.d_model).init(device)),
            dropout: DropoutConfig::new(self.dropout).init(),
            pooling: (self.pooling == TemporalPooling::Attentive).then(|| {
                AttentivePoolingConfig::new(self.d_model)
                    .with_d_attention(self.attention_dim)
                    .init(device)
            }),
            standardization: (self.pooling == TemporalPooling::Mean)
                .then(|| Standardization::identity(self.frame_width(), device)),
        }
    }

    /// Width of the stream's embedding: the fusion width, or for
    /// [`TemporalPooling::Mean`] the combined layers' width.
    pub fn embedding_width(&self) -> usize {
        match self.pooling {
            TemporalPooling::Mean => self.frame_width(),
            TemporalPooling::Attentive | TemporalPooling::Statistics => self.d_model,
        }
    }

    /// Width of a frame after the layers are combined.
    fn frame_width(&self) -> usize {
        match self.layers {
            LayerCombination::Mix => self.backbone.hidden_size(),
            LayerCombination::Concat => self.backbone.n_layers().saturating_mul(self.backbone.hidden_size()),
        }
    }

    /// About how many parameters the layer combination, projection and pooling have.
    pub fn head_parameter_count(&self) -> usize {
        let d = self.d_model;
        let mix = match self.layers {
            LayerCombination::Mix => self.backbone.n_layers(),
            LayerCombination::Concat => 0,
        };
        let (projection, pooling) = match self.pooling {
            TemporalPooling::Attentive => (
                self.frame_width().saturating_mul(d),
                d.saturating_mul(self.attention_dim).saturating_mul(2),
            ),
            TemporalPooling::Statistics => (self.frame_width().saturating_mul(2).saturating_mul(d), 0),
            // The standardisation's mean and scale.
            TemporalPooling::Mean => (0, self.frame_width().saturating_mul(2)),
        };
        mix.saturating_add(projection).saturating_add(pooling)
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
        let stacked = Tensor::stack::<4>(hidden_states, 0); // [layers, b, t, h]
        // Each layer normalised per frame (SUPERB's `normalize`): pretrained
        // encoders' layers differ in scale by orders of magnitude. A probe
        // standardises after pooling instead.
        let stacked = match self.standardization {
            Some(_) => stacked,
            None => layer_norm_last(stacked),
        };
        let combined = match &self.layer_weights {
            Some(weights) => {
                let weights = softmax(weights.val(), 0).reshape([n_layers, 1, 1, 1]);
                (stacked * weights).sum_dim(0).reshape([batch, frames, hidden]) // [b, t, h]
            }
            None => stacked
                .permute([1, 2, 0, 3])
                .reshape([batch, frames, n_layers * hidden]), // [b, t, layers · h]
        };
        // Attentive pooling weighs projected frames; statistics and means pool the combined layers as they are.
        let x = match (&self.pooling, &self.projection) {
            (Some(_), Some(projection)) => gelu_dropout(linear(combined, projection), &self.dropout), // [b, t, d]
            _ => combined,
        };
        let padding = padding_mask(n_frames, frames, &x.device());
        let dims = x.dims();
        let x = x.mask_fill(padding.clone().unsqueeze_dim::<3>(2).expand(dims), 0.0);
        let (embedding, alpha) = self.pool(x.clone(), Some(padding));
        StreamOutput {
            embedding,
            alpha,
            feature_map: x.swap_dims(1, 2),
            n_frames: n_frames.to_vec(),
        }
    }

    /// Pools the stream's frames `[batch, time, width]` (padding: true where a
    /// frame is left out) into the embedding `[batch, d]`, with the weight of each frame.
    pub fn pool(&self, frames: Tensor<3>, padding: Option<Tensor<2, Bool>>) -> (Tensor<2>, Tensor<2>) {
        match (&self.pooling, &self.standardization, &self.projection) {
            (Some(attentive), _, _) => attentive.forward(frames, padding),
            (None, Some(standardization), _) => {
                let (pooled, weights) = mean(frames, padding);
                (standardization.forward(pooled), weights)
            }
            (None, None, Some(projection)) => {
                let (pooled, weights) = statistics(frames, padding);
                (gelu(linear(self.dropout.forward(pooled), projection)), weights)
            }
            (None, None, None) => unreachable!("a stream pools attentively, by statistics or by means"),
        }
    }
}

/// A pretrained encoder that is not trained with the model: it runs in
/// inference mode outside it and hands over hidden states.
pub enum FrozenBackbone {
    Wav2vec2 {
        encoder: Box<Wav2Vec2>,
        device: Device,
    },
    Whisper {
        encoder: Box<WhisperEncoder>,
        front_end: WhisperMel,
        mode: WhisperMode,
        device: Device,
    },
}

/// Why a backbone could not be named or loaded.
#[derive(Debug, thiserror::Error)]
pub enum BackboneError {
    #[error(transparent)]
    Wav2vec2(#[from] super::wav2vec2::LoadError),
    #[error(transparent)]
    Whisper(#[from] super::whisper::WhisperLoadError),
    // The io error is the source: `{:#}` prints it after this.
    #[error("{}: cannot read", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error("whisper-base is not installed: {} has no model.safetensors (scripts/get-whisper-base.sh fetches it)", dir.display())]
    NotInstalled { dir: PathBuf },
    #[error("{}: sha256 {found}, but the model was trained on whisper-base weights with sha256 {expected} (scripts/get-whisper-base.sh installs those)", path.display())]
    Checksum {
        path: PathBuf,
        expected: String,
        found: String,
    },
    #[error("{}: Whisper backbones are frozen and cannot be fine-tuned", path.display())]
    FrozenWhisper { path: PathBuf },
    #[error("`scratch` is not a pretrained encoder: name whisper-base or a checkpoint folder")]
    NotPretrained,
}

impl FrozenBackbone {
    /// The encoder a pretrained [`BackboneConfig`] names, for inference.
    pub fn load(config: &BackboneConfig, device: &Device) -> Result<Self, BackboneError> {
        Ok(match config {
            BackboneConfig::Wav2vec2 { path, .. } => FrozenBackbone::Wav2vec2 {
                encoder: Box::new(super::wav2vec2::load(path, device)?.0),
                device: device.clone(),
            },
            BackboneConfig::Whisper { path, mode, sha256, .. } => {
                let path = if path == Path::new(WHISPER_BASE) {
                    installed_whisper_base()?
                } else {
                    path.clone()
                };
                if let Some(expected) = sha256 {
                    let found = sha256_of(&path.join(WHISPER_WEIGHTS))?;
                    if found != *expected {
                        return Err(BackboneError::Checksum {
                            path: path.join(WHISPER_WEIGHTS),
                            expected: expected.clone(),
                            found,
                        });
                    }
                }
                let (encoder, config) = super::whisper::load(&path, device)?;
                FrozenBackbone::Whisper {
                    encoder: Box::new(encoder),
                    front_end: WhisperMel::new(config.num_mel_bins),
                    mode: *mode,
                    device: device.clone(),
                }
            }
            BackboneConfig::Scratch { .. } => unreachable!("an encoder trained from scratch is not frozen"),
        })
    }

    /// Hidden states it gives per clip: its layers + 1.
    pub fn n_layers(&self) -> usize {
        match self {
            FrozenBackbone::Wav2vec2 { encoder, .. } => encoder.config.num_hidden_layers + 1,
            FrozenBackbone::Whisper { encoder, .. } => encoder.config.encoder_layers + 1,
        }
    }

    /// Encoder frames for a clip of `n_samples` (0: too short to encode).
    pub fn n_frames(&self, n_samples: usize) -> usize {
        match self {
            FrozenBackbone::Wav2vec2 { encoder, .. } => encoder.config.n_frames(n_samples),
            // The front end's reflection padding needs a window's worth of samples.
            FrozenBackbone::Whisper { encoder, .. } if n_samples >= super::whisper::N_FFT => {
                WhisperConfig::encoder_frames(
                    n_samples.min(Self::whisper_longest(encoder)) / super::whisper::HOP_LENGTH,
                )
            }
            FrozenBackbone::Whisper { .. } => 0,
        }
    }

    /// Whisper hears at most 30 s (its position table): a longer clip's first 30 s.
    fn whisper_longest(encoder: &WhisperEncoder) -> usize {
        2 * encoder.config.max_source_positions * super::whisper::HOP_LENGTH
    }

    /// The encoder's output for `clips` (samples as the backbone's
    /// preprocessor left them), on the backbone's device: every hidden
    /// state and the last one, cut to the clips' own frames, and the real
    /// frames of each clip.
    pub fn encode(&self, clips: &[&[f32]]) -> Wav2Vec2Output {
        match self {
            FrozenBackbone::Wav2vec2 { encoder, device } => {
                let (samples, n_samples) = super::input::pad_samples(clips, device);
                encoder.forward(samples, &n_samples)
            }
            FrozenBackbone::Whisper {
                encoder,
                front_end,
                mode,
                device,
            } => {
                let longest = Self::whisper_longest(encoder);
                let mels: Vec<_> = clips
                    .iter()
                    .map(|c| front_end.compute(&c[..c.len().min(longest)], *mode))
                    .collect();
                let width = mels.iter().map(|m| m.n_frames).max().unwrap_or(0);
                let n_mels = mels.first().map_or(0, |m| m.n_mels);
                let mut values = vec![0.0f32; mels.len() * n_mels * width];
                for (slot, mel) in values.chunks_exact_mut(n_mels * width).zip(&mels) {
                    for (row, source) in slot.chunks_exact_mut(width).zip(mel.data.chunks_exact(mel.n_frames)) {
                        row[..source.len()].copy_from_slice(source);
                    }
                }
                let input = Tensor::from_data(
                    burn::tensor::TensorData::new(values, [mels.len(), n_mels, width]),
                    device,
                );
                let lengths: Vec<usize> = mels.iter().map(|m| m.n_frames).collect();
                let mut output = encoder.forward(input, &lengths);
                // In 30 s mode only the clip's own frames are kept.
                let clip_frames: Vec<usize> = mels
                    .iter()
                    .map(|m| WhisperConfig::encoder_frames(m.clip_frames).max(1))
                    .collect();
                let keep = clip_frames.iter().copied().max().unwrap_or(1);
                output.hidden_states = output.hidden_states.into_iter().map(|h| h.narrow(1, 0, keep)).collect();
                output.last_hidden_state = output.last_hidden_state.narrow(1, 0, keep);
                output.n_frames = clip_frames;
                output
            }
        }
    }

    /// Every hidden state of `clips` (see [`Self::encode`]) on `device`:
    /// `layers + 1` tensors `[batch, frames, hidden]`, and the real frames of each clip.
    pub fn hidden_states(&self, clips: &[&[f32]], device: &Device) -> (Vec<Tensor<3>>, Vec<usize>) {
        let output = self.encode(clips);
        let states = output
            .hidden_states
            .into_iter()
            .map(|h| Tensor::from_data(h.into_data(), device))
            .collect();
        (states, output.n_frames)
    }
}

/// Zero mean, unit variance over the last dimension, without learned scale.
fn layer_norm_last(x: Tensor<4>) -> Tensor<4> {
    let mean = x.clone().mean_dim(3);
    let centred = x - mean;
    let variance = centred.clone().square().mean_dim(3);
    centred / (variance + 1e-5).sqrt()
}
