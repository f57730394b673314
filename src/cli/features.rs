//! `emofuse features` (features of single files) and `emofuse prepare`
//! (a whole corpus into the feature cache).

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::Args;

use emofuse::data::{Problem, corpus};
use emofuse::features::{FeatureConfig, FeatureExtractor};
use emofuse::persist::{self, NpyTarget};

use super::{CorpusArgs, cache_root, load_corpus, progress_bar, report_problems};

#[derive(Debug, Args)]
pub struct FeaturesArgs {
    /// Audio files (any format emofuse reads; resampled to 16 kHz).
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// The log-mel spectrogram in dB (`[n_mels, n_frames]`) instead of MFCC + ZCR + RMS.
    #[arg(long)]
    log_mel: bool,
    /// One JSON object per file and line, with every value.
    #[arg(long, conflicts_with = "npy")]
    json: bool,
    /// Write `[n_features, n_frames]` float32 arrays: to this `.npy` file for
    /// one input, else into this folder as `<file stem>.npy`.
    #[arg(long, value_name = "OUT")]
    npy: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct PrepareArgs {
    #[command(flatten)]
    corpus: CorpusArgs,
    /// Cache folder; features go to its `features/` [default: $EMOFUSE_CACHE or ~/.cache/emofuse].
    #[arg(long)]
    cache_dir: Option<PathBuf>,
}

pub fn features(args: &FeaturesArgs) -> Result<ExitCode> {
    let extractor = FeatureExtractor::new(FeatureConfig::default())?;
    let npy_target = args
        .npy
        .as_deref()
        .map(|out| NpyTarget::new(out, &args.files))
        .transpose()
        .map_err(anyhow::Error::msg)?;
    let mut problems = Vec::new();
    let mut out = std::io::stdout().lock();
    for path in &args.files {
        let features = match extractor.file_features(path, args.log_mel) {
            Ok(features) => features,
            Err(err) => {
                problems.push(Problem {
                    path: path.clone(),
                    reason: err.to_string(),
                });
                continue;
            }
        };
        if let Some(target) = &npy_target {
            let file = target.path_for(path);
            let shape = [features.names.len() as u64, features.n_frames as u64];
            persist::write_npy(&file, &shape, &features.values.concat())
                .with_context(|| format!("cannot write {}", file.display()))?;
            writeln!(out, "{}", file.display())?;
        } else if args.json {
            serde_json::to_writer(&mut out, &features)?;
            writeln!(out)?;
        } else {
            write!(out, "{features}")?;
        }
    }
    drop(out);
    Ok(report_problems(&problems))
}

pub fn prepare(args: &PrepareArgs) -> Result<ExitCode> {
    let dataset = load_corpus(&args.corpus)?;
    let start = Instant::now();
    let progress = progress_bar(dataset.clips.len() as u64, "features");
    let prepared = corpus::prepare(&dataset, &cache_root(args.cache_dir.as_deref()), || progress.inc(1))?;
    progress.finish_and_clear();
    eprintln!(
        "{} of {} clips have features in {} ({:.1} s)",
        prepared.cached,
        dataset.clips.len(),
        prepared.cache_dir.display(),
        start.elapsed().as_secs_f64()
    );
    Ok(report_problems(&prepared.problems))
}
