//! `emofuse bench`: throughput of a pipeline stage on real clips.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use rayon::prelude::*;
use serde::Serialize;

use burn::tensor::Device;
use emofuse::audio::{self, Waveform};
use emofuse::bench::{self, ForwardTime, Throughput};
use emofuse::data::{self, DatasetKind};
use emofuse::features::{FeatureConfig, FeatureExtractor};
use emofuse::model::temporal::{BackboneConfig, FrozenBackbone};
use emofuse::model::wav2vec2;
use emofuse::model::whisper::{WhisperConfig, WhisperMode};

use super::{print_json, progress_bar};

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// MFCC + ZCR + RMS extraction (audio decoded first), single-threaded and on all cores.
    Features(FeaturesBenchArgs),
    /// wav2vec 2.0 / HuBERT / Whisper encoder forward time per clip, and peak memory.
    Forward(ForwardBenchArgs),
    /// Training steps of the default model's architecture (spectral CNN) on a fixed batch.
    TrainStep(TrainStepBenchArgs),
    /// End-to-end prediction of real clips on one thread: decode → features → model → probabilities.
    Predict(PredictBenchArgs),
}

#[derive(Debug, Args)]
pub struct TrainStepBenchArgs {
    #[arg(long, default_value_t = 16)]
    batch: usize,
    /// Frames per clip (116 ≈ 3.7 s at hop 512).
    #[arg(long, default_value_t = 116)]
    frames: usize,
    /// Timed steps (after one warm-up); the median is reported.
    #[arg(long, default_value_t = 30)]
    steps: usize,
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub struct PredictBenchArgs {
    /// Model directory [default: the model built into emofuse].
    #[arg(long)]
    model: Option<PathBuf>,
    /// Corpus folder whose clips are predicted (read into memory first).
    #[arg(long)]
    data: PathBuf,
    /// Only the first N clips (in path order).
    #[arg(long, default_value_t = 200)]
    limit: usize,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub struct ForwardBenchArgs {
    /// Checkpoint folder: Hugging Face wav2vec 2.0 / HuBERT, or Whisper (`emofuse backbone convert`).
    #[arg(long)]
    checkpoint: PathBuf,
    /// Clip lengths to time, in seconds.
    #[arg(long, value_delimiter = ',', default_value = "3,10")]
    seconds: Vec<f64>,
    /// Timed forwards per length (after one warm-up); the median is reported.
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub struct FeaturesBenchArgs {
    /// Corpus folder whose clips are measured (e.g. ../shared/data/ravdess).
    #[arg(long)]
    data: PathBuf,
    /// Measure only the first N clips (in path order).
    #[arg(long)]
    limit: Option<usize>,
    /// Timed passes over the clips; the best is reported.
    #[arg(long, default_value_t = 3)]
    passes: usize,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
}

pub fn run(command: BenchCommand) -> Result<ExitCode> {
    match command {
        BenchCommand::Features(args) => features(&args),
        BenchCommand::Forward(args) => forward(&args),
        BenchCommand::Predict(args) => predict(&args),
        BenchCommand::TrainStep(args) => train_step(&args),
    }
}

#[derive(Serialize)]
struct FeaturesReport {
    stage: &'static str,
    config: FeatureConfig,
    single_thread: Throughput,
    all_cores: Throughput,
    /// All-cores throughput over single-thread throughput.
    scaling: f64,
}

fn features(args: &FeaturesBenchArgs) -> Result<ExitCode> {
    let waveforms = decode_corpus(&args.data, args.limit)?;
    let config = FeatureConfig::default();
    let extractor = FeatureExtractor::new(config.clone())?;
    let single_thread = bench::features(&extractor, &waveforms, 1, args.passes);
    let all_cores = bench::features(&extractor, &waveforms, rayon::current_num_threads(), args.passes);
    let report = FeaturesReport {
        stage: "features (mfcc 40 + zcr + rms)",
        config,
        scaling: all_cores.clips_per_s / single_thread.clips_per_s,
        single_thread,
        all_cores,
    };
    if args.json {
        print_json(&report)?;
    } else {
        println!(
            "{} on {} clips ({:.1} s of audio)",
            report.stage,
            waveforms.len(),
            report.single_thread.audio_s
        );
        for t in [&report.single_thread, &report.all_cores] {
            println!(
                "  {} thread(s): {:>8.1} clips/s  {:>7.3} ms/clip  {:>7.0}× real time",
                t.threads, t.clips_per_s, t.ms_per_clip, t.realtime_factor
            );
        }
        println!("  scaling: {:.2}×", report.scaling);
    }
    Ok(ExitCode::SUCCESS)
}

/// Every clip of a corpus, decoded to 16 kHz on all cores.
fn decode_corpus(dir: &std::path::Path, limit: Option<usize>) -> Result<Vec<Waveform>> {
    let dataset = data::load(dir, DatasetKind::Auto).context("cannot read the corpus")?;
    let paths: Vec<_> = dataset
        .clips
        .iter()
        .take(limit.unwrap_or(usize::MAX))
        .map(|c| &c.path)
        .collect();
    let progress = progress_bar(paths.len() as u64, "decoding");
    let waveforms = paths
        .par_iter()
        .map(|path| {
            progress.inc(1);
            audio::load(path)
        })
        .collect::<Result<Vec<_>, _>>()?;
    progress.finish_and_clear();
    Ok(waveforms)
}

#[derive(Serialize)]
struct ForwardReport {
    checkpoint: PathBuf,
    threads: usize,
    /// Per mode: `wav2vec2` (one), or Whisper's `trimmed` and `padded30s`.
    modes: Vec<ModeTimes>,
    peak_rss_mib: Option<f64>,
}

#[derive(Serialize)]
struct ModeTimes {
    mode: String,
    times: Vec<ForwardTime>,
}

fn forward(args: &ForwardBenchArgs) -> Result<ExitCode> {
    let device = Device::flex();
    let config: serde_json::Value = serde_json::from_slice(
        &std::fs::read(args.checkpoint.join("config.json"))
            .with_context(|| format!("cannot read {}/config.json", args.checkpoint.display()))?,
    )
    .context("config.json is not JSON")?;
    let modes = if config["model_type"] == "whisper" {
        // Front end (log-mel) and encoder, as the temporal stream runs them.
        let encoder: WhisperConfig = serde_json::from_value(config).context("not a Whisper config")?;
        [WhisperMode::Trimmed, WhisperMode::Padded30s]
            .into_iter()
            .map(|mode| {
                let backbone = BackboneConfig::Whisper {
                    path: args.checkpoint.clone(),
                    encoder: encoder.clone(),
                    mode,
                };
                let frozen = FrozenBackbone::load(&backbone, &device).context("cannot load the checkpoint")?;
                let times = bench::forward_times(&args.seconds, args.runs, |clip| {
                    let (states, _) = frozen.hidden_states(&[clip], &device);
                    std::hint::black_box(states.last().expect("hidden states").clone().into_data());
                });
                let mode = serde_json::to_value(mode)?.as_str().unwrap_or_default().to_owned();
                Ok(ModeTimes { mode, times })
            })
            .collect::<Result<Vec<_>>>()?
    } else {
        let (model, _) = wav2vec2::load(&args.checkpoint, &device).context("cannot load the checkpoint")?;
        vec![ModeTimes {
            mode: "wav2vec2".into(),
            times: bench::wav2vec2_forward(&model, &args.seconds, args.runs, &device),
        }]
    };
    let report = ForwardReport {
        checkpoint: args.checkpoint.clone(),
        threads: rayon::current_num_threads(),
        modes,
        peak_rss_mib: bench::peak_rss_mib(),
    };
    if args.json {
        print_json(&report)?;
    } else {
        println!(
            "encoder forward, {} ({} threads)",
            report.checkpoint.display(),
            report.threads
        );
        for mode in &report.modes {
            for t in &mode.times {
                println!(
                    "  {:>10} {:>5.1} s clip: median {:>8.1} ms, best {:>8.1} ms ({} runs)",
                    mode.mode,
                    t.seconds_of_audio,
                    1e3 * t.median_s,
                    1e3 * t.best_s,
                    t.runs
                );
            }
        }
        if let Some(mib) = report.peak_rss_mib {
            println!("  peak memory {mib:.0} MiB");
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Serialize)]
struct PredictReport {
    model: String,
    clips: usize,
    mean_clip_s: f64,
    threads: usize,
    /// Per clip, from the file's bytes in memory to the probabilities.
    median_ms: f64,
    p99_ms: f64,
    mean_ms: f64,
}

fn predict(args: &PredictBenchArgs) -> Result<ExitCode> {
    let predictor = super::predict::load_predictor(args.model.as_deref())?;
    let dataset = data::load(&args.data, DatasetKind::Auto).context("cannot read the corpus")?;
    let files: Vec<(String, Vec<u8>)> = dataset
        .clips
        .iter()
        .take(args.limit)
        .map(|c| Ok((c.path.display().to_string(), std::fs::read(&c.path)?)))
        .collect::<Result<_, std::io::Error>>()
        .context("cannot read a clip")?;
    let pool = rayon::ThreadPoolBuilder::new().num_threads(1).build()?;
    let (mut times, audio_s) = pool.install(|| -> Result<(Vec<f64>, f64)> {
        let once = |(name, bytes): &(String, Vec<u8>)| -> Result<(f64, f64)> {
            let start = std::time::Instant::now();
            let waveform = audio::load_bytes(bytes, name, &Default::default())?;
            std::hint::black_box(predictor.predict(&waveform, name)?);
            Ok((start.elapsed().as_secs_f64(), waveform.duration_s()))
        };
        once(&files[0])?; // warm-up
        let mut times = Vec::with_capacity(files.len());
        let mut audio_s = 0.0;
        for file in &files {
            let (t, d) = once(file)?;
            times.push(t);
            audio_s += d;
        }
        Ok((times, audio_s))
    })?;
    times.sort_by(f64::total_cmp);
    let report = PredictReport {
        model: args
            .model
            .as_ref()
            .map_or("built-in".to_owned(), |m| m.display().to_string()),
        clips: times.len(),
        mean_clip_s: audio_s / times.len() as f64,
        threads: 1,
        median_ms: 1e3 * times[times.len() / 2],
        p99_ms: 1e3 * times[(times.len() * 99 / 100).min(times.len() - 1)],
        mean_ms: 1e3 * times.iter().sum::<f64>() / times.len() as f64,
    };
    if args.json {
        print_json(&report)?;
    } else {
        println!(
            "predict ({} model), {} clips of {:.2} s on average, 1 thread: median {:.2} ms, p99 {:.2} ms, mean {:.2} ms per clip",
            report.model, report.clips, report.mean_clip_s, report.median_ms, report.p99_ms, report.mean_ms
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn train_step(args: &TrainStepBenchArgs) -> Result<ExitCode> {
    let time = bench::spectral_train_steps(args.batch, args.frames, args.steps);
    let report = serde_json::json!({
        "batch": args.batch,
        "frames": args.frames,
        "threads": rayon::current_num_threads(),
        "median_s": time.median_s,
        "best_s": time.best_s,
        "steps": time.runs,
        "clips_per_s": args.batch as f64 / time.median_s,
    });
    if args.json {
        print_json(&report)?;
    } else {
        println!(
            "spectral training step, batch {} × 42 × {} frames, {} threads: median {:.2} ms ({:.0} clips/s)",
            args.batch,
            args.frames,
            rayon::current_num_threads(),
            1e3 * time.median_s,
            args.batch as f64 / time.median_s
        );
    }
    Ok(ExitCode::SUCCESS)
}
