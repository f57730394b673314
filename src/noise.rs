//! Real environmental noise: noise corpora with a category per clip, train and
//! test pools that never share a recording, and mixing at an exact SNR.
//!
//! SNR is defined on power: `10·log10(P_speech / P_noise)`, with `P` the mean
//! square over the whole speech clip and over the noise segment actually
//! added (option: over the active-speech frames only, those within 40 dB of
//! the loudest 32 ms frame, which ignores leading and trailing silence). The
//! mixture is scaled down as a whole when it would clip, which keeps the SNR.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::audio::{self, LoadOptions};
use crate::data::{Problem, audio_files};

/// UrbanSound8K's class ids (the second field of its file names).
const URBANSOUND8K_CLASSES: [&str; 10] = [
    "air_conditioner",
    "car_horn",
    "children_playing",
    "dog_bark",
    "drilling",
    "engine_idling",
    "gun_shot",
    "jackhammer",
    "siren",
    "street_music",
];

/// Frames quieter than this below the loudest are not "active speech".
const ACTIVE_SPEECH_RANGE_DB: f64 = 40.0;
/// Frame length of the active-speech measure (32 ms at 16 kHz).
const ACTIVE_FRAME: usize = 512;

/// The folder layouts read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum NoiseLayout {
    /// `foldN/fsID-classID-occurrence-slice.*` (and `UrbanSound8K.csv` when present).
    UrbanSound8k,
    /// `meta/esc50.csv` + `audio/`.
    Esc50,
    /// `<category>/<file>` (SAS-KIIT style, or any folder).
    ClassFolders,
}

/// One noise recording (or slice of one).
#[derive(Debug, Clone)]
pub struct NoiseClip {
    pub path: PathBuf,
    pub category: String,
    /// Clips of one source recording share it, and stay in one pool.
    pub recording: String,
    /// The corpus' own fold, when it has folds.
    pub fold: Option<u32>,
    /// 16 kHz mono samples.
    pub samples: Arc<Vec<f32>>,
}

/// A set of noise clips.
#[derive(Debug, Clone)]
pub struct NoiseBank {
    pub root: PathBuf,
    pub layout: NoiseLayout,
    pub clips: Vec<NoiseClip>,
    /// Files that could not be read.
    pub problems: Vec<Problem>,
}

#[derive(Debug, thiserror::Error)]
pub enum NoiseError {
    #[error(transparent)]
    Data(#[from] crate::data::DataError),
    #[error("{}: {reason}", path.display())]
    Metadata { path: PathBuf, reason: String },
    #[error("{}: no readable noise clips", path.display())]
    Empty { path: PathBuf },
    #[error("{}: too few recordings for a training pool apart from the test pool (training noise must not be heard in evaluation)", path.display())]
    NoTrainPool { path: PathBuf },
}

/// Why a mixture could not be made.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum MixError {
    #[error("the speech is silent: no SNR can be set")]
    SilentSpeech,
    #[error("the noise clip is silent: no SNR can be set")]
    SilentNoise,
    #[error("SNR {0} dB is not a finite number")]
    BadSnr(f64),
    #[error("the speech has no samples")]
    Empty,
}

/// What the SNR's speech power is measured over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum SnrReference {
    /// The whole clip, silences included.
    #[default]
    WholeClip,
    /// Frames within 40 dB of the loudest.
    ActiveSpeech,
}

/// A mixture and how it was made.
#[derive(Debug, Clone, PartialEq)]
pub struct Mixture {
    pub samples: Vec<f32>,
    /// Where in the (looped) noise clip the added segment starts.
    pub noise_offset: usize,
    /// SNR of the mixture's components, measured as defined, in dB.
    pub snr_db: f64,
    /// Factor applied to the whole mixture to stay within ±1 (1 if none).
    pub headroom_scale: f64,
}

impl NoiseBank {
    /// Reads every noise clip under `dir`, recognising the layout.
    pub fn load(dir: &Path) -> Result<NoiseBank, NoiseError> {
        let files = audio_files(dir)?;
        let esc50 = dir.join("meta").join("esc50.csv");
        let (layout, entries) = if esc50.is_file() {
            (NoiseLayout::Esc50, esc50_entries(dir, &esc50)?)
        } else if !files.is_empty() && files.iter().all(|f| urbansound8k_entry(f, &HashMap::new()).is_some()) {
            let metadata = urbansound8k_metadata(dir);
            let entries = files.iter().filter_map(|f| urbansound8k_entry(f, &metadata)).collect();
            (NoiseLayout::UrbanSound8k, entries)
        } else {
            (
                NoiseLayout::ClassFolders,
                files.iter().filter_map(|f| class_folder_entry(dir, f)).collect(),
            )
        };
        let options = LoadOptions {
            allow_silent: true,
            ..LoadOptions::default()
        };
        let loaded: Vec<(Entry, Result<audio::Waveform, audio::AudioError>)> = entries
            .into_par_iter()
            .map(|entry| {
                let audio = audio::load_with(&entry.path, &options);
                (entry, audio)
            })
            .collect();
        let mut clips = Vec::new();
        let mut problems = Vec::new();
        for (entry, audio) in loaded {
            match audio {
                Ok(waveform) if mean_square(&waveform.samples) > 0.0 => clips.push(NoiseClip {
                    path: entry.path,
                    category: entry.category,
                    recording: entry.recording,
                    fold: entry.fold,
                    samples: Arc::new(waveform.samples),
                }),
                Ok(_) => problems.push(Problem {
                    path: entry.path,
                    reason: "silent: cannot be mixed at an SNR".into(),
                }),
                Err(err) => problems.push(Problem {
                    path: entry.path,
                    reason: err.to_string(),
                }),
            }
        }
        if clips.is_empty() {
            return Err(NoiseError::Empty { path: dir.to_owned() });
        }
        Ok(NoiseBank {
            root: dir.to_owned(),
            layout,
            clips,
            problems,
        })
    }

    /// Disjoint (train, test) pools. By fold where the corpus has folds (the
    /// last fifth of the folds, at least one, is for testing); otherwise a
    /// quarter of the source recordings, drawn with `seed`.
    pub fn split(&self, seed: u64) -> (NoiseBank, NoiseBank) {
        let folds: BTreeSet<u32> = self.clips.iter().filter_map(|c| c.fold).collect();
        let is_test: Box<dyn Fn(&NoiseClip) -> bool> = if folds.len() >= 2 {
            let n_test = folds.len().div_ceil(5).min(folds.len() - 1);
            let test: BTreeSet<u32> = folds.iter().rev().take(n_test).copied().collect();
            Box::new(move |clip: &NoiseClip| clip.fold.is_some_and(|f| test.contains(&f)))
        } else {
            let mut recordings: Vec<&str> = self
                .clips
                .iter()
                .map(|c| c.recording.as_str())
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect();
            recordings.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
            let n_test = recordings
                .len()
                .div_ceil(4)
                .min(recordings.len().saturating_sub(1))
                .max(1);
            let test: BTreeSet<String> = recordings[..n_test].iter().map(|r| (*r).to_owned()).collect();
            Box::new(move |clip: &NoiseClip| test.contains(&clip.recording))
        };
        let (test, train): (Vec<NoiseClip>, Vec<NoiseClip>) = self.clips.iter().cloned().partition(|c| is_test(c));
        let pool = |clips| NoiseBank {
            root: self.root.clone(),
            layout: self.layout,
            clips,
            problems: Vec::new(),
        };
        (pool(train), pool(test))
    }

    /// The train pool of [`Self::split`], which training needs to hold a clip.
    pub fn train_pool(&self, seed: u64) -> Result<NoiseBank, NoiseError> {
        let (train, _) = self.split(seed);
        if train.clips.is_empty() {
            return Err(NoiseError::NoTrainPool {
                path: self.root.clone(),
            });
        }
        Ok(train)
    }

    /// Categories, sorted.
    pub fn categories(&self) -> Vec<String> {
        self.clips
            .iter()
            .map(|c| c.category.clone())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect()
    }

    /// The clips of one category (all when `None`).
    pub fn of_category(&self, category: Option<&str>) -> Vec<&NoiseClip> {
        self.clips
            .iter()
            .filter(|c| category.is_none_or(|cat| c.category == cat))
            .collect()
    }
}

/// Mixes `noise` into `speech` at `snr_db`: a random offset into the noise,
/// looped or cropped to the speech's length, scaled to the SNR; then the
/// whole mixture scaled down if it would clip.
pub fn mix(
    speech: &[f32],
    noise: &[f32],
    snr_db: f64,
    reference: SnrReference,
    rng: &mut impl Rng,
) -> Result<Mixture, MixError> {
    if !snr_db.is_finite() {
        return Err(MixError::BadSnr(snr_db));
    }
    if speech.is_empty() {
        return Err(MixError::Empty);
    }
    if noise.is_empty() {
        return Err(MixError::SilentNoise);
    }
    let speech_power = match reference {
        SnrReference::WholeClip => mean_square(speech),
        SnrReference::ActiveSpeech => active_speech_power(speech),
    };
    // Written so that NaN fails too.
    if speech_power.is_nan() || speech_power <= 0.0 {
        return Err(MixError::SilentSpeech);
    }
    let offset = rng.random_range(0..noise.len());
    let segment: Vec<f32> = (0..speech.len()).map(|i| noise[(offset + i) % noise.len()]).collect();
    let noise_power = mean_square(&segment);
    if noise_power.is_nan() || noise_power <= 0.0 {
        return Err(MixError::SilentNoise);
    }
    let gain = (speech_power / (noise_power * 10f64.powf(snr_db / 10.0))).sqrt();
    let mixed: Vec<f64> = speech
        .iter()
        .zip(&segment)
        .map(|(&s, &n)| f64::from(s) + gain * f64::from(n))
        .collect();
    let peak = mixed.iter().fold(0.0f64, |p, v| p.max(v.abs()));
    // Stay just under full scale so a later 16-bit write cannot clip either.
    let headroom_scale = if peak > 0.999 { 0.999 / peak } else { 1.0 };
    let samples = mixed.iter().map(|&v| (v * headroom_scale) as f32).collect();
    let added_power = gain * gain * noise_power;
    Ok(Mixture {
        samples,
        noise_offset: offset,
        snr_db: 10.0 * (speech_power / added_power).log10(),
        headroom_scale,
    })
}

/// Mean square in f64.
fn mean_square(samples: &[f32]) -> f64 {
    if samples.is_empty() {
        return 0.0;
    }
    samples.iter().map(|&s| f64::from(s) * f64::from(s)).sum::<f64>() / samples.len() as f64
}

/// Mean square over the 32 ms frames within 40 dB of the loudest frame.
fn active_speech_power(samples: &[f32]) -> f64 {
    let frames: Vec<f64> = samples.chunks(ACTIVE_FRAME).map(mean_square).collect();
    let loudest = frames.iter().copied().fold(0.0, f64::max);
    let threshold = loudest * 10f64.powf(-ACTIVE_SPEECH_RANGE_DB / 10.0);
    let (sum, count) = samples
        .chunks(ACTIVE_FRAME)
        .zip(&frames)
        .filter(|&(_, &power)| power >= threshold && power > 0.0)
        .fold((0.0, 0usize), |(sum, count), (chunk, &power)| {
            (sum + power * chunk.len() as f64, count + chunk.len())
        });
    if count == 0 { 0.0 } else { sum / count as f64 }
}

/// A noise file before its audio is read.
struct Entry {
    path: PathBuf,
    category: String,
    recording: String,
    fold: Option<u32>,
}

/// `foldN/fsID-classID-occurrence-slice.*`; the class name from the
/// metadata CSV when it has the file, else from UrbanSound8K's id table.
fn urbansound8k_entry(path: &Path, metadata: &HashMap<String, String>) -> Option<Entry> {
    let folder = path.parent()?.file_name()?.to_str()?;
    let fold: u32 = folder.strip_prefix("fold")?.parse().ok()?;
    let stem = path.file_stem()?.to_str()?;
    let fields: Vec<&str> = stem.split('-').collect();
    let [fs_id, class_id, _, _] = fields.as_slice() else {
        return None;
    };
    let class: usize = class_id.parse().ok()?;
    let category = metadata
        .get(stem)
        .cloned()
        .or_else(|| URBANSOUND8K_CLASSES.get(class).map(|c| (*c).to_owned()))?;
    Some(Entry {
        path: path.to_owned(),
        category,
        recording: (*fs_id).to_owned(),
        fold: Some(fold),
    })
}

/// `slice_file_name` stem → `class` from `metadata/UrbanSound8K.csv` (or the
/// root), when present.
fn urbansound8k_metadata(root: &Path) -> HashMap<String, String> {
    let candidates = [root.join("metadata/UrbanSound8K.csv"), root.join("UrbanSound8K.csv")];
    let Some(path) = candidates.iter().find(|p| p.is_file()) else {
        return HashMap::new();
    };
    let Ok(mut reader) = csv::Reader::from_path(path) else {
        return HashMap::new();
    };
    let headers = reader.headers().cloned().unwrap_or_default();
    let column = |name: &str| headers.iter().position(|h| h == name);
    let (Some(file), Some(class)) = (column("slice_file_name"), column("class")) else {
        return HashMap::new();
    };
    reader
        .records()
        .filter_map(Result::ok)
        .filter_map(|row| {
            let stem = Path::new(row.get(file)?).file_stem()?.to_str()?.to_owned();
            Some((stem, row.get(class)?.to_owned()))
        })
        .collect()
}

/// ESC-50: `meta/esc50.csv` rows (`filename, fold, target, category, esc10, src_file, take`).
fn esc50_entries(root: &Path, csv_path: &Path) -> Result<Vec<Entry>, NoiseError> {
    let bad = |reason: String| NoiseError::Metadata {
        path: csv_path.to_owned(),
        reason,
    };
    let mut reader = csv::Reader::from_path(csv_path).map_err(|e| bad(e.to_string()))?;
    let headers = reader.headers().map_err(|e| bad(e.to_string()))?.clone();
    let column = |name: &str| {
        headers
            .iter()
            .position(|h| h == name)
            .ok_or_else(|| bad(format!("no \"{name}\" column")))
    };
    let (file, fold, category, source) = (
        column("filename")?,
        column("fold")?,
        column("category")?,
        column("src_file")?,
    );
    let mut entries = Vec::new();
    for (line, row) in reader.records().enumerate() {
        let row = row.map_err(|e| bad(format!("row {}: {e}", line + 2)))?;
        let get = |i: usize| row.get(i).unwrap_or("").to_owned();
        let path = root.join("audio").join(get(file));
        if !path.is_file() {
            continue;
        }
        entries.push(Entry {
            path,
            category: get(category),
            recording: get(source),
            fold: get(fold).parse().ok(),
        });
    }
    Ok(entries)
}

/// `<category>/<file>`: the category is the parent folder's name.
fn class_folder_entry(root: &Path, path: &Path) -> Option<Entry> {
    let relative = path.strip_prefix(root).ok()?;
    let category = relative
        .parent()
        .filter(|p| !p.as_os_str().is_empty())?
        .to_string_lossy()
        .into_owned();
    Some(Entry {
        path: path.to_owned(),
        category,
        recording: relative.with_extension("").to_string_lossy().into_owned(),
        fold: None,
    })
}

/// Per-category counts of a bank, for reports.
pub fn category_counts(bank: &NoiseBank) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for clip in &bank.clips {
        *counts.entry(clip.category.clone()).or_insert(0) += 1;
    }
    counts
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(n: usize, amplitude: f32) -> Vec<f32> {
        (0..n).map(|i| amplitude * (i as f32 * 0.05).sin()).collect()
    }

    #[test]
    fn mixing_hits_the_snr_and_avoids_clipping() {
        let speech = tone(16_000, 0.9);
        let noise: Vec<f32> = (0..3000).map(|i| if i % 7 < 3 { 0.5 } else { -0.4 }).collect();
        for snr in [-20.0, -5.0, 0.0, 10.0, 40.0] {
            let mixed = mix(
                &speech,
                &noise,
                snr,
                SnrReference::WholeClip,
                &mut ChaCha8Rng::seed_from_u64(1),
            )
            .unwrap();
            assert!((mixed.snr_db - snr).abs() < 1e-9, "{snr}: {}", mixed.snr_db);
            assert!(mixed.samples.iter().all(|s| s.abs() <= 0.999 + 1e-6));
            assert_eq!(mixed.samples.len(), speech.len(), "noise looped to the speech length");
        }
    }

    #[test]
    fn silent_inputs_are_errors_not_nan() {
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        let speech = tone(1000, 0.5);
        assert_eq!(
            mix(&[0.0; 100], &speech, 0.0, SnrReference::WholeClip, &mut rng),
            Err(MixError::SilentSpeech)
        );
        assert_eq!(
            mix(&speech, &[0.0; 100], 0.0, SnrReference::WholeClip, &mut rng),
            Err(MixError::SilentNoise)
        );
        assert!(matches!(
            mix(&speech, &speech, f64::NAN, SnrReference::WholeClip, &mut rng),
            Err(MixError::BadSnr(_))
        ));
    }

    #[test]
    fn active_speech_ignores_silence() {
        // 16 silent frames, then 16 frames of tone.
        let mut speech = vec![0.0f32; 8192];
        speech.extend(tone(8192, 0.5));
        let whole = mean_square(&speech);
        let active = active_speech_power(&speech);
        assert!(
            (active / whole - 2.0).abs() < 1e-9,
            "half the clip is silence: {active} vs {whole}"
        );
    }
}
