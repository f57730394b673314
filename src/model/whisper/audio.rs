//! Whisper's log-mel front end, as `WhisperFeatureExtractor` computes it:
//! STFT (n_fft 400, hop 160, periodic Hann, centred with reflection), the
//! last frame dropped, power, Slaney mel filters (0–8 kHz), `log10(max(·, 1e-10))`,
//! floor at the maximum − 8, then `(x + 4) / 4`.

use super::{CHUNK_SAMPLES, HOP_LENGTH, N_FFT, WhisperMode};
use crate::features::filters::{self, MelBand};
use crate::features::spectral::melspectrogram;
use crate::features::spectrum::{self, PadMode, PowerSpectrum};

/// The front end, planned once.
pub struct WhisperMel {
    n_mels: usize,
    spectrum: PowerSpectrum,
    bands: Vec<MelBand>,
}

/// A log-mel spectrogram: `[n_mels, n_frames]`.
#[derive(Debug, Clone, PartialEq)]
pub struct WhisperFeatures {
    pub n_mels: usize,
    pub n_frames: usize,
    pub data: Vec<f32>,
    /// Frames that belong to the clip (the rest is the 30 s padding).
    pub clip_frames: usize,
}

impl WhisperMel {
    pub fn new(n_mels: usize) -> Self {
        Self {
            n_mels,
            spectrum: PowerSpectrum::with_pad_mode(N_FFT, HOP_LENGTH, N_FFT, true, PadMode::Reflect),
            bands: filters::mel(crate::audio::SAMPLE_RATE, N_FFT, n_mels, 0.0, 8000.0),
        }
    }

    /// Log-mel of 16 kHz `samples` (at least 2 samples, for the reflection).
    pub fn compute(&self, samples: &[f32], mode: WhisperMode) -> WhisperFeatures {
        let clip_frames = samples.len().min(CHUNK_SAMPLES) / HOP_LENGTH;
        let padded: Vec<f32>;
        let input = match mode {
            WhisperMode::Trimmed => samples,
            WhisperMode::Padded30s => {
                padded = samples
                    .iter()
                    .copied()
                    .chain(std::iter::repeat(0.0))
                    .take(CHUNK_SAMPLES)
                    .collect();
                &padded
            }
        };
        // `stft[..., :-1]`: the frame centred on the last sample is dropped.
        let n_stft = spectrum::n_frames(input.len(), N_FFT, HOP_LENGTH, true);
        let mel = melspectrogram(&self.spectrum, input, n_stft, &self.bands); // [n_mels, n_stft]
        let n_frames = n_stft - 1;
        let mut data: Vec<f32> = mel
            .chunks_exact(n_stft)
            .flat_map(|row| row[..n_frames].iter().map(|&p| p.max(1e-10).log10()))
            .collect();
        let floor = data.iter().copied().fold(f32::NEG_INFINITY, f32::max) - 8.0;
        for v in &mut data {
            *v = (v.max(floor) + 4.0) / 4.0;
        }
        WhisperFeatures {
            n_mels: self.n_mels,
            n_frames,
            data,
            clip_frames,
        }
    }
}
