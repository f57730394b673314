//! Frame features of the spectral stream, computed exactly as librosa does:
//! MFCC (40), zero-crossing rate and RMS energy per frame, and the log-mel
//! spectrogram the explanation pictures draw.
//!
//! Split like librosa so the Python can sit open beside the Rust:
//! [`spectrum`] (`stft`, `power_to_db`), [`filters`] (`mel`) and
//! [`spectral`] (`melspectrogram`, `mfcc`, `rms`, `zero_crossing_rate`).
//! Parity with librosa 0.11 is checked against committed golden files
//! (`scripts/golden_features.py`).

pub mod cache;
pub mod filters;
pub mod spectral;
pub mod spectrum;
pub mod speech;

use std::path::{Path, PathBuf};

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::audio::{self, AudioError, LoadOptions};
use cache::{CacheError, FeatureCache};

use filters::MelBand;
use spectrum::PowerSpectrum;

/// Every parameter of the frame features. Stored inside each model, so
/// inference can never use other settings than training did. Names and
/// defaults are librosa's, except `sr` = 16000 and `n_mfcc` = 40 (the paper's).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FeatureConfig {
    /// Sample rate the audio must have, in Hz.
    pub sr: u32,
    /// FFT size; also the ZCR/RMS `frame_length`.
    pub n_fft: usize,
    pub hop_length: usize,
    /// Hann window length, ≤ `n_fft` (centred and zero-padded to `n_fft`).
    pub win_length: usize,
    /// Pad `n_fft / 2` on both sides so frame `t` is centred on sample `t · hop_length`.
    pub center: bool,
    pub n_mels: usize,
    pub fmin: f64,
    /// Highest mel frequency; `None` is `sr / 2`.
    pub fmax: Option<f64>,
    pub n_mfcc: usize,
    /// Floor of `power_to_db`, in dB below the clip's maximum; `None` keeps everything.
    pub top_db: Option<f32>,
    /// Smallest power before taking the logarithm.
    pub amin: f32,
    /// Scale each clip so that its active speech has this RMS level, in
    /// dBFS, before the features: the recording level then changes nothing.
    /// `None` keeps the level as recorded (librosa's features; models
    /// trained before level normalisation).
    pub level_dbfs: Option<f32>,
}

impl Default for FeatureConfig {
    fn default() -> Self {
        Self {
            sr: 16_000,
            n_fft: 2048,
            hop_length: 512,
            win_length: 2048,
            center: true,
            n_mels: 128,
            fmin: 0.0,
            fmax: None,
            n_mfcc: 40,
            top_db: Some(80.0),
            amin: 1e-10,
            level_dbfs: None,
        }
    }
}

/// The active-speech level `emofuse train` brings every clip to, in dBFS
/// (ITU-T P.56's customary speech level).
pub const TRAINING_LEVEL_DBFS: f32 = -26.0;

/// Frames count as active when their energy is within this many dB of the
/// clip's 95th-percentile frame energy: relative, so the same frames are
/// chosen at any gain, and the silences between words do not lower the level.
const ACTIVE_RANGE_DB: f64 = 30.0;

impl FeatureConfig {
    /// The features `emofuse train` uses: librosa's, at the active-speech
    /// `level_dbfs` (`None`: as recorded).
    pub fn for_training(level_dbfs: Option<f32>) -> FeatureConfig {
        FeatureConfig {
            level_dbfs,
            ..FeatureConfig::default()
        }
    }

    /// Rows of [`FrameFeatures`]: the MFCCs, then ZCR, then RMS.
    pub fn n_features(&self) -> usize {
        self.n_mfcc + 2
    }

    /// Names of the rows of [`FrameFeatures`]: `mfcc_1` … `mfcc_N`, `zcr`, `rms`.
    pub fn feature_names(&self) -> Vec<String> {
        let mfcc = (1..=self.n_mfcc).map(|i| format!("mfcc_{i}"));
        mfcc.chain(["zcr".to_owned(), "rms".to_owned()]).collect()
    }

    /// Checks the parameters against each other.
    pub fn validate(&self) -> Result<(), FeatureError> {
        let bad = |reason: String| Err(FeatureError::BadConfig(reason));
        let nyquist = f64::from(self.sr) / 2.0;
        let fmax = self.fmax.unwrap_or(nyquist);
        if self.sr == 0 || self.n_fft < 2 || self.hop_length == 0 || self.n_mels == 0 {
            return bad("sr, n_fft (≥ 2), hop_length and n_mels must be positive".into());
        }
        if self.win_length == 0 || self.win_length > self.n_fft {
            return bad(format!("win_length {} must be in 1..={}", self.win_length, self.n_fft));
        }
        if self.n_mfcc == 0 || self.n_mfcc > self.n_mels {
            return bad(format!(
                "n_mfcc {} must be in 1..=n_mels ({})",
                self.n_mfcc, self.n_mels
            ));
        }
        if !(0.0..fmax).contains(&self.fmin) || fmax > nyquist {
            return bad(format!(
                "need 0 ≤ fmin ({}) < fmax ({fmax}) ≤ sr / 2 ({nyquist})",
                self.fmin
            ));
        }
        // Written so that NaN fails too.
        let amin_ok = self.amin.is_finite() && self.amin > 0.0;
        let top_db_ok = self.top_db.is_none_or(|t| t.is_finite() && t >= 0.0);
        if !amin_ok || !top_db_ok {
            return bad("amin must be positive and top_db non-negative".into());
        }
        if let Some(level) = self.level_dbfs
            && !(-120.0..=0.0).contains(&level)
        {
            return bad(format!("level_dbfs {level} dBFS must be in -120..=0"));
        }
        Ok(())
    }
}

/// Why features could not be computed.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum FeatureError {
    #[error("bad feature configuration: {0}")]
    BadConfig(String),
    #[error("audio is at {got} Hz but the features expect {want} Hz")]
    SampleRate { got: u32, want: u32 },
    #[error("audio has no samples")]
    Empty,
    #[error("sample {0} is NaN or infinite")]
    NonFinite(usize),
}

/// Per-frame features: `[n_features, n_frames]`, feature-major (rows: MFCC 1…n,
/// ZCR, RMS) — the `[channels, length]` layout of a 1D convolution.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FrameFeatures {
    pub n_features: usize,
    pub n_frames: usize,
    pub data: Vec<f32>,
}

impl FrameFeatures {
    /// One feature across all frames.
    pub fn row(&self, feature: usize) -> &[f32] {
        &self.data[feature * self.n_frames..(feature + 1) * self.n_frames]
    }
}

/// Log-mel spectrogram in dB: `[n_mels, n_frames]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogMel {
    pub n_mels: usize,
    pub n_frames: usize,
    pub data: Vec<f32>,
}

/// A [`FeatureConfig`] made ready to run: window, FFT plan, mel bank and DCT
/// are built once and shared by every clip (and thread).
pub struct FeatureExtractor {
    config: FeatureConfig,
    spectrum: PowerSpectrum,
    bands: Vec<MelBand>,
    /// The DCT-II matrix, `[n_mfcc, n_mels]`.
    dct: Vec<f32>,
}

impl FeatureExtractor {
    pub fn new(config: FeatureConfig) -> Result<Self, FeatureError> {
        config.validate()?;
        let spectrum = PowerSpectrum::new(config.n_fft, config.hop_length, config.win_length, config.center);
        let fmax = config.fmax.unwrap_or(f64::from(config.sr) / 2.0);
        let bands = filters::mel(config.sr, config.n_fft, config.n_mels, config.fmin, fmax);
        let dct = spectral::dct_matrix(config.n_mfcc, config.n_mels)
            .iter()
            .map(|&d| d as f32)
            .collect();
        Ok(Self {
            config,
            spectrum,
            bands,
            dct,
        })
    }

    pub fn config(&self) -> &FeatureConfig {
        &self.config
    }

    /// MFCC + ZCR + RMS of 16 kHz mono `samples` at `sample_rate` (first
    /// brought to the configured level).
    pub fn extract(&self, samples: &[f32], sample_rate: u32) -> Result<FrameFeatures, FeatureError> {
        let c = &self.config;
        let levelled;
        let samples = match c.level_dbfs {
            Some(level) => {
                levelled = at_level(samples, level, c.n_fft, c.hop_length);
                &levelled[..]
            }
            None => samples,
        };
        let log_mel = self.log_mel(samples, sample_rate)?;
        let mut data = spectral::mfcc(&log_mel.data, log_mel.n_frames, &self.dct);
        data.extend(spectral::zero_crossing_rate(samples, c.n_fft, c.hop_length, c.center));
        data.extend(spectral::rms(samples, c.n_fft, c.hop_length, c.center));
        Ok(FrameFeatures {
            n_features: c.n_features(),
            n_frames: log_mel.n_frames,
            data,
        })
    }

    /// `power_to_db(melspectrogram(y))` with the configured `amin` and `top_db`.
    pub fn log_mel(&self, samples: &[f32], sample_rate: u32) -> Result<LogMel, FeatureError> {
        if sample_rate != self.config.sr {
            return Err(FeatureError::SampleRate {
                got: sample_rate,
                want: self.config.sr,
            });
        }
        if samples.is_empty() {
            return Err(FeatureError::Empty);
        }
        // The non-short-circuiting fold vectorises; the position is only looked for on failure.
        if !samples.iter().fold(true, |finite, s| finite & s.is_finite()) {
            let index = samples
                .iter()
                .position(|s| !s.is_finite())
                .expect("a sample is not finite");
            return Err(FeatureError::NonFinite(index));
        }
        let c = &self.config;
        let n_frames = spectrum::n_frames(samples.len(), c.n_fft, c.hop_length, c.center);
        let mut data = spectral::melspectrogram(&self.spectrum, samples, n_frames, &self.bands);
        spectrum::power_to_db(&mut data, c.amin, c.top_db);
        Ok(LogMel {
            n_mels: c.n_mels,
            n_frames,
            data,
        })
    }
}

/// `samples` scaled so that their active frames (see [`ACTIVE_RANGE_DB`])
/// have an RMS of `level_dbfs`; silence (no energy) is returned as it is.
fn at_level(samples: &[f32], level_dbfs: f32, frame_length: usize, hop_length: usize) -> Vec<f32> {
    let mut energies: Vec<f64> = spectral::rms(samples, frame_length, hop_length, false)
        .iter()
        .map(|&r| f64::from(r) * f64::from(r))
        .collect();
    if energies.is_empty() {
        // Shorter than one frame: the whole clip is the frame.
        energies.push(samples.iter().map(|&s| f64::from(s) * f64::from(s)).sum::<f64>() / samples.len().max(1) as f64);
    }
    let mut sorted = energies.clone();
    sorted.sort_by(f64::total_cmp);
    let loud = sorted[(sorted.len() - 1) * 95 / 100];
    let threshold = loud * 10f64.powf(-ACTIVE_RANGE_DB / 10.0);
    let active: Vec<f64> = energies.into_iter().filter(|&e| e >= threshold).collect();
    let level = (active.iter().sum::<f64>() / active.len() as f64).sqrt();
    if level.is_nan() || level <= 0.0 {
        return samples.to_vec();
    }
    let gain = (10f64.powf(f64::from(level_dbfs) / 20.0) / level) as f32;
    samples.iter().map(|s| s * gain).collect()
}

/// One file's frame features (or log-mel spectrogram) with the names of
/// their rows, as `emofuse features` reports them.
#[derive(Debug, Clone, Serialize)]
pub struct FileFeatures {
    pub path: PathBuf,
    pub sr: u32,
    pub hop_length: usize,
    pub n_frames: usize,
    pub names: Vec<String>,
    /// One row per name, `n_frames` values each.
    pub values: Vec<Vec<f32>>,
    #[serde(skip)]
    pub duration_s: f64,
}

impl FeatureExtractor {
    /// Decodes `path` and computes its frame features, or with `log_mel` its
    /// log-mel spectrogram.
    pub fn file_features(&self, path: &Path, log_mel: bool) -> Result<FileFeatures, FileError> {
        let waveform = audio::load(path)?;
        let bad = |source| FileError::Features {
            path: path.to_owned(),
            source,
        };
        let (names, n_frames, data) = if log_mel {
            let mel = self.log_mel(&waveform.samples, waveform.sample_rate).map_err(bad)?;
            let names = (1..=mel.n_mels).map(|i| format!("mel_{i}")).collect();
            (names, mel.n_frames, mel.data)
        } else {
            let features = self.extract(&waveform.samples, waveform.sample_rate).map_err(bad)?;
            (self.config.feature_names(), features.n_frames, features.data)
        };
        Ok(FileFeatures {
            path: path.to_owned(),
            sr: self.config.sr,
            hop_length: self.config.hop_length,
            n_frames,
            names,
            values: data.chunks_exact(n_frames.max(1)).map(<[f32]>::to_vec).collect(),
            duration_s: waveform.duration_s(),
        })
    }
}

/// Per row: mean, standard deviation, minimum and maximum over the frames.
impl std::fmt::Display for FileFeatures {
    fn fmt(&self, out: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            out,
            "{}: {} frames ({:.3} s, hop {} ms)",
            self.path.display(),
            self.n_frames,
            self.duration_s,
            1000 * self.hop_length / self.sr as usize
        )?;
        writeln!(
            out,
            "  {:<8} {:>10} {:>10} {:>10} {:>10}",
            "feature", "mean", "std", "min", "max"
        )?;
        for (name, row) in self.names.iter().zip(&self.values) {
            let n = row.len() as f64;
            let mean = row.iter().map(|&v| f64::from(v)).sum::<f64>() / n;
            let var = row.iter().map(|&v| (f64::from(v) - mean).powi(2)).sum::<f64>() / n;
            let (min, max) = row.iter().fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &v| {
                (lo.min(v), hi.max(v))
            });
            writeln!(
                out,
                "  {name:<8} {mean:>10.4} {:>10.4} {min:>10.4} {max:>10.4}",
                var.sqrt()
            )?;
        }
        Ok(())
    }
}

/// Why one file of a batch has no features.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error(transparent)]
    Audio(#[from] AudioError),
    #[error("{}: {source}", path.display())]
    Features { path: PathBuf, source: FeatureError },
    #[error(transparent)]
    Cache(#[from] CacheError),
}

impl FeatureExtractor {
    /// Loads `path` and computes its features, through `cache` when given:
    /// a hit skips decoding, a miss is computed and stored.
    pub fn extract_file(
        &self,
        path: &Path,
        options: &LoadOptions,
        cache: Option<&FeatureCache>,
    ) -> Result<FrameFeatures, FileError> {
        through_cache(path, cache, || {
            let waveform = audio::load_with(path, options)?;
            self.extract_decoded(path, &waveform)
        })
    }

    /// The features of `waveform`, decoded from `path` (which names errors
    /// and, with a cache, keys the entry): from `cache` when it has them,
    /// else computed and stored.
    pub fn extract_cached(
        &self,
        path: &Path,
        waveform: &audio::Waveform,
        cache: Option<&FeatureCache>,
    ) -> Result<FrameFeatures, FileError> {
        through_cache(path, cache, || self.extract_decoded(path, waveform))
    }

    fn extract_decoded(&self, path: &Path, waveform: &audio::Waveform) -> Result<FrameFeatures, FileError> {
        self.extract(&waveform.samples, waveform.sample_rate)
            .map_err(|source| FileError::Features {
                path: path.to_owned(),
                source,
            })
    }

    /// [`Self::extract_file`] over many files on all cores, in input order.
    /// `on_file` is called once per file, for progress reporting.
    pub fn extract_files(
        &self,
        paths: &[PathBuf],
        options: &LoadOptions,
        cache: Option<&FeatureCache>,
        on_file: impl Fn() + Sync,
    ) -> Vec<Result<FrameFeatures, FileError>> {
        paths
            .par_iter()
            .map(|path| {
                let result = self.extract_file(path, options, cache);
                on_file();
                result
            })
            .collect()
    }
}

/// The features of the file at `path` from `cache` (keyed by the file's
/// content), or made by `compute` and stored there; `compute` alone without a cache.
fn through_cache(
    path: &Path,
    cache: Option<&FeatureCache>,
    compute: impl FnOnce() -> Result<FrameFeatures, FileError>,
) -> Result<FrameFeatures, FileError> {
    let Some(cache) = cache else {
        return compute();
    };
    let content = FeatureCache::content_hash(path).map_err(|err| AudioError::from_io(path, err))?;
    if let Some(features) = cache.get(&content) {
        return Ok(features);
    }
    let features = compute()?;
    cache.put(&content, &features)?;
    Ok(features)
}

/// Per-feature mean and standard deviation over the frames of a training
/// fold, saved with the model so inference standardises the same way.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureStats {
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
}

impl FeatureStats {
    /// Fits on every frame of `clips` (the training fold only). A feature that
    /// never varies gets std 1, so standardising leaves it finite.
    pub fn fit<'a>(clips: impl IntoIterator<Item = &'a FrameFeatures>) -> Option<FeatureStats> {
        let mut sums: Vec<(f64, f64)> = Vec::new();
        let mut count = 0usize;
        for clip in clips {
            if sums.is_empty() {
                sums = vec![(0.0, 0.0); clip.n_features];
            }
            for (feature, (sum, sum_sq)) in sums.iter_mut().enumerate().take(clip.n_features) {
                for &v in clip.row(feature) {
                    *sum += f64::from(v);
                    *sum_sq += f64::from(v) * f64::from(v);
                }
            }
            count += clip.n_frames;
        }
        if count == 0 {
            return None;
        }
        let n = count as f64;
        let (mean, std) = sums
            .iter()
            .map(|&(sum, sum_sq)| {
                let mean = sum / n;
                let var = (sum_sq / n - mean * mean).max(0.0);
                let std = if var.sqrt() > 1e-8 { var.sqrt() } else { 1.0 };
                (mean as f32, std as f32)
            })
            .unzip();
        Some(FeatureStats { mean, std })
    }

    /// `(x − mean) / std`, feature by feature.
    pub fn standardise(&self, features: &mut FrameFeatures) {
        for feature in 0..features.n_features.min(self.mean.len()) {
            let (mean, std) = (self.mean[feature], self.std[feature]);
            let row = &mut features.data[feature * features.n_frames..(feature + 1) * features.n_frames];
            for v in row {
                *v = (*v - mean) / std;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levelled_features_do_not_depend_on_the_gain() {
        // A word-like burst between silences, with a quiet hiss throughout.
        let samples: Vec<f32> = (0..24_000)
            .map(|i| {
                let t = i as f32 / 16_000.0;
                let word = if (0.4..1.1).contains(&t) {
                    0.3 * (2.0 * std::f32::consts::PI * 220.0 * t).sin()
                } else {
                    0.0
                };
                word + 1e-3 * ((i * 7919 % 1000) as f32 / 500.0 - 1.0)
            })
            .collect();
        let levelled = FeatureExtractor::new(FeatureConfig::for_training(Some(TRAINING_LEVEL_DBFS))).unwrap();
        let reference = levelled.extract(&samples, 16_000).unwrap();
        let as_recorded = FeatureExtractor::new(FeatureConfig::default()).unwrap();
        for gain_db in [-30.0f32, -6.0, 6.0] {
            let gain = 10f32.powf(gain_db / 20.0);
            let scaled: Vec<f32> = samples.iter().map(|s| s * gain).collect();
            let features = levelled.extract(&scaled, 16_000).unwrap();
            let worst = reference
                .data
                .iter()
                .zip(&features.data)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0, f32::max);
            assert!(worst < 1e-3, "{gain_db} dB: features moved by {worst}");
            // Without levelling the energy rows move (the reason for the option).
            let raw = as_recorded.extract(&scaled, 16_000).unwrap();
            let rms_row = raw.row(raw.n_features - 1);
            let reference_rms = as_recorded.extract(&samples, 16_000).unwrap();
            assert!((rms_row[20] / reference_rms.row(raw.n_features - 1)[20] - gain).abs() < 1e-3);
        }
    }

    #[test]
    fn bad_configs_are_refused() {
        let bad = [
            FeatureConfig {
                hop_length: 0,
                ..Default::default()
            },
            FeatureConfig {
                win_length: 4096,
                ..Default::default()
            },
            FeatureConfig {
                n_mfcc: 200,
                ..Default::default()
            },
            FeatureConfig {
                fmax: Some(9000.0),
                ..Default::default()
            },
            FeatureConfig {
                amin: 0.0,
                ..Default::default()
            },
        ];
        for config in bad {
            assert!(matches!(FeatureExtractor::new(config), Err(FeatureError::BadConfig(_))));
        }
    }

    #[test]
    fn bad_audio_is_refused() {
        let extractor = FeatureExtractor::new(FeatureConfig::default()).unwrap();
        assert_eq!(extractor.extract(&[], 16_000), Err(FeatureError::Empty));
        assert_eq!(
            extractor.extract(&[0.0, f32::NAN], 16_000),
            Err(FeatureError::NonFinite(1))
        );
        assert_eq!(
            extractor.extract(&[0.0], 8_000),
            Err(FeatureError::SampleRate {
                got: 8_000,
                want: 16_000
            })
        );
    }

    #[test]
    fn standardising_gives_zero_mean_unit_variance() {
        let clip = FrameFeatures {
            n_features: 2,
            n_frames: 4,
            data: vec![1.0, 2.0, 3.0, 4.0, 5.0, 5.0, 5.0, 5.0],
        };
        let stats = FeatureStats::fit([&clip]).unwrap();
        let mut standardised = clip.clone();
        stats.standardise(&mut standardised);
        let row = standardised.row(0);
        let mean: f32 = row.iter().sum::<f32>() / 4.0;
        let var: f32 = row.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / 4.0;
        assert!(mean.abs() < 1e-6 && (var - 1.0).abs() < 1e-5);
        assert_eq!(standardised.row(1), &[0.0; 4], "a constant feature becomes 0, not NaN");
    }

    #[test]
    fn config_round_trips_through_json() {
        let config = FeatureConfig {
            n_mfcc: 20,
            fmax: Some(7600.0),
            ..Default::default()
        };
        let json = serde_json::to_string(&config).unwrap();
        assert_eq!(serde_json::from_str::<FeatureConfig>(&json).unwrap(), config);
        assert!(
            serde_json::from_str::<FeatureConfig>(r#"{"n_mfc": 20}"#).is_err(),
            "typos are errors"
        );
    }
}
