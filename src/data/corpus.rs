//! Corpora ready for training: the clips of one or more corpora, each decoded
//! once, with its frame features from the on-disk cache (the same cache
//! `emofuse prepare` fills).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rayon::prelude::*;

use super::folds::{self, Fold, FoldError, FoldOptions, Protocol, ProtocolName};
use super::{Clip, DataError, Dataset, DatasetKind, Emotion, Problem};
use crate::audio::{self, LoadOptions};
use crate::features::cache::{CacheError, FeatureCache};
use crate::features::{FeatureConfig, FeatureError, FeatureExtractor, FileError, FrameFeatures, TRAINING_LEVEL_DBFS};

/// Clips of one or more corpora with their decoded audio and features.
pub struct LoadedCorpus {
    pub clips: Vec<Clip>,
    /// The frame features of `audio` (a model trained on them reads them).
    pub features: FeatureConfig,
    /// `audio[i]` is `clips[i]`'s.
    pub audio: Vec<ClipAudio>,
    /// Corpus roots and what they held, for provenance.
    pub sources: Vec<String>,
    /// Files that could not be read (left out).
    pub problems: Vec<Problem>,
}

/// A decoded clip and its (unstandardised) frame features.
#[derive(Debug, Clone)]
pub struct ClipAudio {
    /// 16 kHz mono samples as decoded (not normalised).
    pub samples: Arc<Vec<f32>>,
    pub features: FrameFeatures,
}

/// Why corpora could not be loaded at all (single bad files are [`Problem`]s).
#[derive(Debug, thiserror::Error)]
pub enum CorpusError {
    #[error(transparent)]
    Data(#[from] DataError),
    #[error(transparent)]
    Cache(#[from] CacheError),
    #[error(transparent)]
    Features(#[from] FeatureError),
}

impl LoadedCorpus {
    /// Every corpus in `roots` (pooled; their labels united), decoded on all
    /// cores with the frame features `features` through the cache under
    /// `cache_root`. `on_clip(total)` is called once per clip, for progress.
    pub fn load(
        roots: &[PathBuf],
        kind: DatasetKind,
        features: &FeatureConfig,
        cache_root: &Path,
        on_clip: impl Fn(usize) + Sync,
    ) -> Result<LoadedCorpus, CorpusError> {
        let mut clips: Vec<Clip> = Vec::new();
        let mut problems: Vec<Problem> = Vec::new();
        let mut sources = Vec::new();
        for root in roots {
            let dataset = super::load(root, kind)?;
            sources.push(format!(
                "{} ({}, {} clips)",
                root.display(),
                dataset.corpus.as_str(),
                dataset.clips.len()
            ));
            clips.extend(dataset.clips);
            problems.extend(dataset.problems);
        }
        let extractor = FeatureExtractor::new(features.clone())?;
        // The same layout as [`prepare`]: features under <cache root>/features.
        let cache = FeatureCache::open(cache_root.join("features"), features)?;
        let total = clips.len();
        let loaded = load_audio(&clips, &extractor, Some(&cache), || on_clip(total));
        let mut kept = Vec::new();
        let mut audio = Vec::new();
        for (clip, result) in clips.into_iter().zip(loaded) {
            match result {
                Ok(a) => {
                    kept.push(clip);
                    audio.push(a);
                }
                Err(err) => problems.push(Problem {
                    path: clip.path.clone(),
                    reason: err.to_string(),
                }),
            }
        }
        Ok(LoadedCorpus {
            clips: kept,
            features: features.clone(),
            audio,
            sources,
            problems,
        })
    }

    /// The folds of `options` over every clip.
    pub fn folds(&self, options: &FoldOptions) -> Result<Vec<Fold>, FoldError> {
        folds::make_pooled_folds(&self.clips, options)
    }

    /// The protocol `name` asks for, or without one the usual folds of the
    /// first corpus ([`Protocol::default_for`]).
    pub fn protocol(&self, name: Option<ProtocolName>, k: usize) -> Protocol {
        match (name, self.clips.first()) {
            (Some(name), _) => Protocol::from_name(name, k),
            (None, Some(clip)) => Protocol::default_for(clip.corpus),
            (None, None) => Protocol::Emobox,
        }
    }

    /// Relabels for cross-corpus work ([`super::shared_label`]): calm counts
    /// as neutral, and clips whose label no other corpus has are left out.
    pub fn use_shared_labels(&mut self) -> SharedLabels {
        let mut report = SharedLabels::default();
        let pairs = std::mem::take(&mut self.clips)
            .into_iter()
            .zip(std::mem::take(&mut self.audio));
        (self.clips, self.audio) = pairs
            .filter_map(|(mut clip, audio)| {
                let Some(shared) = super::shared_label(&clip.label) else {
                    *report.left_out.entry(clip.label).or_insert(0) += 1;
                    return None;
                };
                if shared != clip.label {
                    *report
                        .relabelled
                        .entry(format!("{} → {shared}", clip.label))
                        .or_insert(0) += 1;
                    clip.label = shared.to_owned();
                }
                Some((clip, audio))
            })
            .unzip();
        report
    }
}

/// What [`LoadedCorpus::use_shared_labels`] changed: clip counts per
/// relabelling (`calm → neutral`) and per label left out.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SharedLabels {
    pub relabelled: BTreeMap<String, usize>,
    pub left_out: BTreeMap<String, usize>,
}

/// `cross-corpus labels: calm → neutral 192 clips; left out: boredom 81 clips`.
impl fmt::Display for SharedLabels {
    fn fmt(&self, out: &mut fmt::Formatter<'_>) -> fmt::Result {
        let list = |counts: &BTreeMap<String, usize>| {
            let items: Vec<String> = counts.iter().map(|(what, n)| format!("{what} {n} clips")).collect();
            if items.is_empty() {
                "none".to_owned()
            } else {
                items.join(", ")
            }
        };
        write!(
            out,
            "cross-corpus labels: {}; left out (no counterpart in other corpora): {}",
            list(&self.relabelled),
            list(&self.left_out)
        )
    }
}

/// What [`prepare`] did.
pub struct Prepared {
    /// Clips whose features are in the cache now.
    pub cached: usize,
    pub cache_dir: PathBuf,
    /// Files that could not be read, the corpus' own among them.
    pub problems: Vec<Problem>,
}

/// Computes the frame features `emofuse train` uses by default (at
/// [`TRAINING_LEVEL_DBFS`]) of every clip of `dataset` into the cache under
/// `cache_root`, on all cores; `on_clip` once per clip.
pub fn prepare(dataset: &Dataset, cache_root: &Path, on_clip: impl Fn() + Sync) -> Result<Prepared, CacheError> {
    let config = FeatureConfig::for_training(Some(TRAINING_LEVEL_DBFS));
    let extractor = FeatureExtractor::new(config.clone()).expect("the training feature configuration is valid");
    let cache_dir = cache_root.join("features");
    let cache = FeatureCache::open(&cache_dir, &config)?;
    let paths: Vec<PathBuf> = dataset.clips.iter().map(|clip| clip.path.clone()).collect();
    let results = extractor.extract_files(&paths, &LoadOptions::default(), Some(&cache), on_clip);
    let mut problems = dataset.problems.clone();
    for (path, result) in paths.iter().zip(&results) {
        if let Err(err) = result {
            problems.push(Problem {
                path: path.clone(),
                reason: err.to_string(),
            });
        }
    }
    Ok(Prepared {
        cached: results.iter().filter(|r| r.is_ok()).count(),
        cache_dir,
        problems,
    })
}

/// Decodes every clip and computes its features (through `cache` when
/// given), on all cores, in clip order. `on_clip` is called once per clip.
fn load_audio(
    clips: &[Clip],
    extractor: &FeatureExtractor,
    cache: Option<&FeatureCache>,
    on_clip: impl Fn() + Sync,
) -> Vec<Result<ClipAudio, FileError>> {
    let options = LoadOptions::default();
    clips
        .par_iter()
        .map(|clip| {
            let result = audio::load_with(&clip.path, &options)
                .map_err(FileError::from)
                .and_then(|waveform| {
                    let features = extractor.extract_cached(&clip.path, &waveform, cache)?;
                    Ok(ClipAudio {
                        samples: Arc::new(waveform.samples),
                        features,
                    })
                });
            on_clip();
            result
        })
        .collect()
}

/// The class list of a training set: canonical emotions in their fixed
/// order, then any other labels alphabetically.
pub fn label_list<'a>(labels: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let present: BTreeSet<&str> = labels.into_iter().collect();
    let mut ordered: Vec<String> = Emotion::ALL
        .iter()
        .map(|e| e.as_str())
        .filter(|name| present.contains(name))
        .map(str::to_owned)
        .collect();
    ordered.extend(
        present
            .iter()
            .filter(|name| Emotion::from_name(name).is_none())
            .map(|name| (*name).to_owned()),
    );
    ordered
}
