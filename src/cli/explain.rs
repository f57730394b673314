//! `emofuse explain`: why the model said so, for audio files (a PNG and a
//! JSON each), or the attention-shift study over SNRs (`--snr-study`).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Args;

use emofuse::data::DatasetKind;
use emofuse::explain::shap::ShapOptions;
use emofuse::explain::{self, ExplainOptions, snr_study};
use emofuse::noise::SnrReference;
use emofuse::robustness::SweepConfig;

use super::{DeviceArg, ModelArg, SnrArgs, emit, load_predictor, print_json, progress_bar, report_problems};

#[derive(Debug, Args)]
pub struct ExplainArgs {
    /// Audio files to explain.
    #[arg(required_unless_present = "snr_study")]
    files: Vec<PathBuf>,
    /// A built-in model (`default`, `whisper`) or a model folder [default:
    /// default]; with --snr-study a model or `cv` folder (each fold's model
    /// on its test clips).
    #[arg(long)]
    model: Option<ModelArg>,
    /// Explain this class instead of the predicted one.
    #[arg(long)]
    class: Option<String>,
    /// Time segments of the segment-level SHAP.
    #[arg(long, default_value_t = 8)]
    segments: usize,
    /// Sampled orders for SHAP over more than 10 players (exact below).
    #[arg(long, default_value_t = 128)]
    permutations: usize,
    /// Feature-map channels Score-CAM uses per stream (those varying most in time).
    #[arg(long, default_value_t = 24)]
    cam_channels: usize,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Output folder: explanation.png and explanation.json (one sub-folder per
    /// file when there are several), or the study's tables and plot.
    #[arg(long)]
    out: PathBuf,
    /// Print the explanations (or the study) as JSON.
    #[arg(long)]
    json: bool,
    /// Instead of files: per SNR, the mean share of stream SHAP going to each
    /// stream and the mean fusion gate, over the model's test clips.
    #[arg(long, requires_all = ["noise_dir", "model"])]
    snr_study: bool,
    /// Noise corpus for --snr-study (its test pool).
    #[arg(long)]
    noise_dir: Option<PathBuf>,
    /// Test clips for models without a split.json (--snr-study).
    #[arg(long)]
    data: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t = DatasetKind::Auto)]
    dataset: DatasetKind,
    /// The conditions of --snr-study.
    #[command(flatten)]
    snr: SnrArgs,
    /// At most this many test clips per model fold in --snr-study.
    #[arg(long)]
    max_clips: Option<usize>,
    #[command(flatten)]
    device: DeviceArg,
}

pub fn explain(args: &ExplainArgs) -> Result<ExitCode> {
    if args.snr_study {
        return study(args);
    }
    let predictor = load_predictor(args.model.as_ref(), &args.device.open()?)?;
    let class = args
        .class
        .as_deref()
        .map(|name| predictor.class_index(name))
        .transpose()
        .context("--class")?;
    let options = ExplainOptions {
        class,
        segments: args.segments.max(1),
        shap: ShapOptions {
            permutations: args.permutations,
            seed: args.seed,
            ..ShapOptions::default()
        },
        cam_channels: args.cam_channels.max(1),
        ..ExplainOptions::default()
    };
    std::fs::create_dir_all(&args.out).with_context(|| format!("cannot create {}", args.out.display()))?;
    let progress = progress_bar(args.files.len() as u64, "explaining");
    let mut failed = 0;
    let explanations = explain::explain_files(&predictor, &args.files, &options, &args.out, |dir, result| {
        match result {
            Ok(explanation) if !args.json => {
                let picture = dir.join("explanation.png");
                progress.suspend(|| println!("{explanation}  → {}", picture.display()));
            }
            Ok(_) => {}
            Err(err) => {
                failed += 1;
                progress.suspend(|| eprintln!("{err:#}"));
            }
        }
        progress.inc(1);
    });
    progress.finish_and_clear();
    if args.json {
        print_json(&explanations)?;
    } else if explanations.len() > 1 {
        print!("{}", explain::faithfulness_summary(&explanations));
    }
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    })
}

fn study(args: &ExplainArgs) -> Result<ExitCode> {
    let model = args
        .model
        .as_ref()
        .and_then(ModelArg::folder)
        .context("--snr-study needs a model or cv folder for --model: it retests on the folder's own test clips")?;
    let noise_dir = args.noise_dir.as_ref().expect("clap requires --noise-dir");
    let data = args.data.as_deref().map(|data| (data, args.dataset));
    let (models, noise) = snr_study::prepare(model, data, noise_dir, args.seed, &args.device.open()?)?;
    let config = SweepConfig {
        snrs: args.snr.snr.clone(),
        per_category: false,
        reference: SnrReference::WholeClip,
        seed: args.seed,
    };
    let progress = progress_bar((models.len() * config.snrs.len()) as u64, "SNR study");
    let study = snr_study::study(&models, &noise, &config, args.max_clips, || progress.inc(1));
    progress.finish_and_clear();
    snr_study::write_outputs(&args.out, &study.rows, &config.snrs)?;
    emit(args.json, &study)?;
    Ok(report_problems(&study.problems))
}
