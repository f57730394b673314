//! OpenAI's Whisper *encoder* (Radford et al., 2022) as a pretrained backbone
//! of the temporal stream, computed as `transformers` 5.24 computes it
//! (`models/whisper/modeling_whisper.py`, `feature_extraction_whisper.py`).
//!
//! Split like candle's whisper folder: this file holds the configuration
//! (HF `config.json` names), [`audio`] the log-mel front end, [`model`] the
//! encoder, and [`load`] the checkpoint readers — HF safetensors and
//! CTranslate2's `model.bin` (the faster-whisper format).

pub mod audio;
pub mod load;
pub mod model;

use serde::{Deserialize, Serialize};

pub use audio::WhisperMel;
pub use load::{WhisperLoadError, convert_ct2, load, read_config};
pub use model::WhisperEncoder;

/// Samples per mel frame (10 ms).
pub const HOP_LENGTH: usize = 160;
pub const N_FFT: usize = 400;
/// Whisper always sees 30 s: 480 000 samples, 3000 mel frames, 1500 encoder frames.
pub const CHUNK_SAMPLES: usize = 480_000;

/// The `config.json` fields the encoder needs (HF `WhisperConfig` names);
/// the decoder's are ignored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct WhisperConfig {
    pub d_model: usize,
    pub encoder_layers: usize,
    pub encoder_attention_heads: usize,
    pub encoder_ffn_dim: usize,
    pub num_mel_bins: usize,
    pub max_source_positions: usize,
    pub activation_function: super::wav2vec2::Activation,
}

impl Default for WhisperConfig {
    /// openai/whisper-base.
    fn default() -> Self {
        Self {
            d_model: 512,
            encoder_layers: 6,
            encoder_attention_heads: 8,
            encoder_ffn_dim: 2048,
            num_mel_bins: 80,
            max_source_positions: 1500,
            activation_function: super::wav2vec2::Activation::Gelu,
        }
    }
}

impl WhisperConfig {
    pub fn validate(&self) -> Result<(), String> {
        if self.d_model == 0
            || self.encoder_attention_heads == 0
            || !self.d_model.is_multiple_of(self.encoder_attention_heads)
        {
            return Err(format!(
                "d_model {} must be a positive multiple of encoder_attention_heads {}",
                self.d_model, self.encoder_attention_heads
            ));
        }
        if self.num_mel_bins == 0 || self.max_source_positions == 0 {
            return Err("num_mel_bins and max_source_positions must be positive".into());
        }
        Ok(())
    }

    /// Encoder frames for `mel_frames` log-mel frames (the second convolution halves, rounding up).
    pub fn encoder_frames(mel_frames: usize) -> usize {
        mel_frames.div_ceil(2)
    }
}

/// How much audio the encoder sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum WhisperMode {
    /// The clip's own frames, with the position table sliced to them: ~10×
    /// faster on a 3 s clip than the reference's 30 s. Clips longer than
    /// 30 s are cut there too (the table has no later positions).
    #[default]
    Trimmed,
    /// Zero-padded to 30 s, as the reference model always runs (clips longer
    /// than 30 s are cut); only the clip's frames are returned.
    Padded30s,
}

impl WhisperMode {
    /// The name configs and reports use.
    pub fn as_str(self) -> &'static str {
        match self {
            WhisperMode::Trimmed => "trimmed",
            WhisperMode::Padded30s => "padded30s",
        }
    }
}
