//! `emofuse features` (features of single files) and `emofuse prepare`
//! (a whole corpus into the feature cache).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::Args;
use serde::Serialize;

use emofuse::audio::{self, LoadOptions};
use emofuse::data::Problem;
use emofuse::features::cache::FeatureCache;
use emofuse::features::{FeatureConfig, FeatureExtractor};
use emofuse::persist;

use super::data::{CorpusArgs, load_corpus};
use super::{progress_bar, report_problems};

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

/// What `--json` prints for one file.
#[derive(Serialize)]
struct FileFeatures<'a> {
    path: &'a Path,
    sr: u32,
    hop_length: usize,
    n_frames: usize,
    names: Vec<String>,
    values: Vec<&'a [f32]>,
}

pub fn features(args: &FeaturesArgs) -> Result<ExitCode> {
    let config = FeatureConfig::default();
    let extractor = FeatureExtractor::new(config.clone())?;
    let npy_target = args
        .npy
        .as_deref()
        .map(|out| NpyTarget::new(out, &args.files))
        .transpose()?;
    let mut problems = Vec::new();
    let mut out = std::io::stdout().lock();
    for path in &args.files {
        let result = audio::load(path).map_err(|err| err.to_string()).and_then(|waveform| {
            let computed = if args.log_mel {
                extractor.log_mel(&waveform.samples, waveform.sample_rate).map(|m| {
                    let names = (1..=m.n_mels).map(|i| format!("mel_{i}")).collect();
                    (names, m.n_frames, m.data)
                })
            } else {
                extractor
                    .extract(&waveform.samples, waveform.sample_rate)
                    .map(|f| (config.feature_names(), f.n_frames, f.data))
            };
            computed
                .map(|found| (found, waveform.duration_s()))
                .map_err(|err| format!("{}: {err}", path.display()))
        });
        let ((names, n_frames, data), duration_s) = match result {
            Ok(found) => found,
            Err(reason) => {
                problems.push(Problem {
                    path: path.clone(),
                    reason,
                });
                continue;
            }
        };
        let rows: Vec<&[f32]> = data.chunks_exact(n_frames.max(1)).collect();
        if let Some(target) = &npy_target {
            let file = target.path_for(path);
            persist::write_npy(&file, &[names.len() as u64, n_frames as u64], &data)
                .with_context(|| format!("cannot write {}", file.display()))?;
            writeln!(out, "{}", file.display())?;
        } else if args.json {
            let record = FileFeatures {
                path,
                sr: config.sr,
                hop_length: config.hop_length,
                n_frames,
                names,
                values: rows,
            };
            serde_json::to_writer(&mut out, &record)?;
            writeln!(out)?;
        } else {
            writeln!(
                out,
                "{}: {n_frames} frames ({duration_s:.3} s, hop {} ms)",
                path.display(),
                1000 * config.hop_length / config.sr as usize
            )?;
            writeln!(
                out,
                "  {:<8} {:>10} {:>10} {:>10} {:>10}",
                "feature", "mean", "std", "min", "max"
            )?;
            for (name, row) in names.iter().zip(&rows) {
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
        }
    }
    drop(out);
    Ok(report_problems(&problems))
}

/// Where `--npy OUT` puts each file's array.
pub enum NpyTarget {
    File(PathBuf),
    Folder(PathBuf),
}

impl NpyTarget {
    /// Where the arrays of `inputs` go; two inputs may not share an output file.
    pub fn new(out: &Path, inputs: &[PathBuf]) -> Result<Self> {
        let is_npy = out.extension().is_some_and(|ext| ext.eq_ignore_ascii_case("npy"));
        let target = match (is_npy, inputs.len()) {
            (true, 1) => NpyTarget::File(out.to_owned()),
            (true, n) => bail!("{}: one .npy file cannot hold {n} inputs; give a folder", out.display()),
            (false, _) => NpyTarget::Folder(out.to_owned()),
        };
        let mut seen = std::collections::HashMap::new();
        for input in inputs {
            if let Some(first) = seen.insert(target.path_for(input), input) {
                bail!(
                    "{} and {} would both be written to {}",
                    first.display(),
                    input.display(),
                    target.path_for(input).display()
                );
            }
        }
        Ok(target)
    }

    pub fn path_for(&self, input: &Path) -> PathBuf {
        match self {
            NpyTarget::File(file) => file.clone(),
            NpyTarget::Folder(dir) => {
                let stem = input
                    .file_stem()
                    .map_or_else(|| "audio".into(), |s| s.to_string_lossy());
                dir.join(format!("{stem}.npy"))
            }
        }
    }
}

pub fn prepare(args: &PrepareArgs) -> Result<ExitCode> {
    let dataset = load_corpus(&args.corpus)?;
    let config = FeatureConfig::default();
    let extractor = FeatureExtractor::new(config.clone())?;
    let cache_dir = args
        .cache_dir
        .as_ref()
        .map_or_else(FeatureCache::default_dir, |root| root.join("features"));
    let cache = FeatureCache::open(&cache_dir, &config)?;
    let paths: Vec<PathBuf> = dataset.clips.iter().map(|clip| clip.path.clone()).collect();
    let start = Instant::now();
    let progress = progress_bar(paths.len() as u64, "features");
    let results = extractor.extract_files(&paths, &LoadOptions::default(), Some(&cache), || progress.inc(1));
    progress.finish_and_clear();
    let mut problems = dataset.problems.clone();
    for (path, result) in paths.iter().zip(&results) {
        if let Err(err) = result {
            problems.push(Problem {
                path: path.clone(),
                reason: err.to_string(),
            });
        }
    }
    let cached = results.iter().filter(|r| r.is_ok()).count();
    eprintln!(
        "{cached} of {} clips have features in {} ({:.1} s)",
        paths.len(),
        cache_dir.display(),
        start.elapsed().as_secs_f64()
    );
    Ok(report_problems(&problems))
}
