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
use emofuse::model::wav2vec2;

use super::{print_json, progress_bar};

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// MFCC + ZCR + RMS extraction (audio decoded first), single-threaded and on all cores.
    Features(FeaturesBenchArgs),
    /// wav2vec 2.0 / HuBERT encoder forward time per clip, and peak memory.
    Forward(ForwardBenchArgs),
}

#[derive(Debug, Args)]
pub struct ForwardBenchArgs {
    /// Hugging Face checkpoint folder (config.json + model.safetensors or pytorch_model.bin).
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
    times: Vec<ForwardTime>,
    peak_rss_mib: Option<f64>,
}

fn forward(args: &ForwardBenchArgs) -> Result<ExitCode> {
    let device = Device::flex();
    let (model, _) = wav2vec2::load(&args.checkpoint, &device).context("cannot load the checkpoint")?;
    let report = ForwardReport {
        checkpoint: args.checkpoint.clone(),
        threads: rayon::current_num_threads(),
        times: bench::wav2vec2_forward(&model, &args.seconds, args.runs, &device),
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
        for t in &report.times {
            println!(
                "  {:>5.1} s clip: median {:>8.1} ms, best {:>8.1} ms ({} runs)",
                t.seconds_of_audio,
                1e3 * t.median_s,
                1e3 * t.best_s,
                t.runs
            );
        }
        if let Some(mib) = report.peak_rss_mib {
            println!("  peak memory {mib:.0} MiB");
        }
    }
    Ok(ExitCode::SUCCESS)
}
