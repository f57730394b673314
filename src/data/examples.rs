//! Corpus clips → model examples: audio decoded once, frame features from the
//! cache, standardisation fitted on the training clips only.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;

use rayon::prelude::*;

use super::batcher::Example;
use super::{Clip, Emotion};
use crate::audio::{self, LoadOptions};
use crate::features::cache::FeatureCache;
use crate::features::{FeatureExtractor, FeatureStats, FileError, FrameFeatures};
use crate::model::wav2vec2::Preprocessor;

/// A decoded clip and its (unstandardised) frame features.
#[derive(Debug, Clone)]
pub struct ClipAudio {
    /// 16 kHz mono samples as decoded (not normalised).
    pub samples: Arc<Vec<f32>>,
    pub features: FrameFeatures,
}

/// Decodes every clip and computes its features (through `cache` when
/// given), on all cores, in clip order. `on_clip` is called once per clip.
pub fn load_audio(
    clips: &[Clip],
    extractor: &FeatureExtractor,
    cache: Option<&FeatureCache>,
    on_clip: impl Fn() + Sync,
) -> Vec<Result<ClipAudio, FileError>> {
    let options = LoadOptions::default();
    clips
        .par_iter()
        .map(|clip| {
            let result = load_one(&clip.path, extractor, cache, &options);
            on_clip();
            result
        })
        .collect()
}

fn load_one(
    path: &Path,
    extractor: &FeatureExtractor,
    cache: Option<&FeatureCache>,
    options: &LoadOptions,
) -> Result<ClipAudio, FileError> {
    let waveform = audio::load_with(path, options)?;
    let compute = || {
        extractor
            .extract(&waveform.samples, waveform.sample_rate)
            .map_err(|source| FileError::Features {
                path: path.to_owned(),
                source,
            })
    };
    let features = match cache {
        Some(cache) => {
            let content = FeatureCache::content_hash(path).map_err(|err| audio::AudioError::from_io(path, err))?;
            match cache.get(&content) {
                Some(features) => features,
                None => {
                    let features = compute()?;
                    cache.put(&content, &features)?;
                    features
                }
            }
        }
        None => compute()?,
    };
    Ok(ClipAudio {
        samples: Arc::new(waveform.samples),
        features,
    })
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

/// Examples for the model: features standardised with `stats`, samples
/// normalised by `preprocessor` (temporal stream), and the decoded audio
/// when `keep_raw` (waveform augmentation). Clips whose label is not
/// in `labels` are an error of the caller (checked with `expect`).
pub fn examples(
    clips: &[&Clip],
    audio: &[&ClipAudio],
    labels: &[String],
    stats: Option<&FeatureStats>,
    preprocessor: Option<&Preprocessor>,
    keep_raw: bool,
) -> Vec<Example> {
    clips
        .iter()
        .zip(audio)
        .map(|(clip, audio)| {
            let mut features = audio.features.clone();
            if let Some(stats) = stats {
                stats.standardise(&mut features);
            }
            Example {
                features: Some(features),
                samples: preprocessor.map(|p| Arc::new(p.apply(&audio.samples))),
                raw: keep_raw.then(|| audio.samples.clone()),
                hidden: None,
                label: labels
                    .iter()
                    .position(|l| *l == clip.label)
                    .expect("every clip's label is in the model's label list"),
            }
        })
        .collect()
}
