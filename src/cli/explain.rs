//! `emofuse explain`: why the model said so, for audio files (a PNG and a
//! JSON each), or the attention-shift study over SNRs (`--snr-study`).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::Args;

use emofuse::audio;
use emofuse::data::DatasetKind;
use emofuse::explain::shap::ShapOptions;
use emofuse::explain::{self, ExplainOptions, Explanation, picture, snr_study};
use emofuse::noise::{NoiseBank, SnrReference};
use emofuse::robustness::SweepConfig;
use emofuse::{persist, plot};

use super::predict::load_predictor;
use super::robustness::{models_in, parse_snrs};
use super::{print_json, progress_bar};

#[derive(Debug, Args)]
pub struct ExplainArgs {
    /// Audio files to explain.
    #[arg(required_unless_present = "snr_study")]
    files: Vec<PathBuf>,
    /// Model directory [default: the model built into emofuse]; with
    /// --snr-study also a `cv` folder (each fold's model on its test clips).
    #[arg(long)]
    model: Option<PathBuf>,
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
    /// Conditions of --snr-study: `clean` and SNRs in dB.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "clean,20,10,5,0,-5",
        allow_hyphen_values = true
    )]
    snr: Vec<String>,
    /// At most this many test clips per model fold in --snr-study.
    #[arg(long)]
    max_clips: Option<usize>,
}

pub fn explain(args: &ExplainArgs) -> Result<ExitCode> {
    if args.snr_study {
        return study(args);
    }
    let predictor = load_predictor(args.model.as_deref())?;
    let class = match &args.class {
        Some(name) => Some(predictor.labels().iter().position(|l| l == name).with_context(|| {
            format!(
                "--class {name:?}: the model's classes are {}",
                predictor.labels().join(", ")
            )
        })?),
        None => None,
    };
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
    let mut explanations = Vec::new();
    for file in &args.files {
        let dir = if args.files.len() == 1 {
            args.out.clone()
        } else {
            args.out.join(file.file_stem().unwrap_or_default())
        };
        match explain_file(&predictor, file, &options, &dir) {
            Ok(explanation) => {
                if !args.json {
                    progress.suspend(|| print_summary(&explanation, &dir));
                }
                explanations.push(explanation);
            }
            Err(err) => {
                failed += 1;
                progress.suspend(|| eprintln!("{err:#}"));
            }
        }
        progress.inc(1);
    }
    progress.finish_and_clear();
    if args.json {
        print_json(&explanations)?;
    } else if explanations.len() > 1 {
        print_faithfulness(&explanations);
    }
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    })
}

fn explain_file(
    predictor: &emofuse::infer::Predictor,
    file: &Path,
    options: &ExplainOptions,
    dir: &Path,
) -> Result<Explanation> {
    let name = file.display().to_string();
    let waveform = audio::load(file)?;
    let explanation = explain::explain(predictor, &waveform, &name, options)?;
    let log_mel = predictor
        .extractor()
        .log_mel(&waveform.samples, waveform.sample_rate)
        .with_context(|| format!("{name}: log-mel spectrogram"))?;
    let png = picture::render(&explanation, &waveform.samples, &log_mel)
        .map_err(|detail| anyhow::anyhow!("{name}: cannot draw the explanation: {detail}"))?;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let write = |file: &str, bytes: &[u8]| {
        let path = dir.join(file);
        persist::write_atomic(&path, bytes).with_context(|| format!("cannot write {}", path.display()))
    };
    write("explanation.png", &png)?;
    write(
        "explanation.json",
        &serde_json::to_vec_pretty(&explanation).expect("an explanation serialises"),
    )?;
    Ok(explanation)
}

fn print_summary(explanation: &Explanation, dir: &Path) {
    let streams = explanation
        .streams
        .players
        .iter()
        .zip(&explanation.streams.shapley.values)
        .map(|(name, v)| format!("{name} {v:+.3}"))
        .collect::<Vec<_>>()
        .join(", ");
    println!(
        "{}: {} ({:.1} %); stream SHAP: {streams}",
        explanation.file,
        explanation.predicted,
        100.0 * explanation.explained_probability
    );
    for (name, stream) in [("spectral", &explanation.spectral), ("temporal", &explanation.temporal)] {
        if let Some(stream) = stream {
            let f = &stream.faithfulness;
            println!(
                "  {name} saliency: class probability after deletions {:.3} (most salient first) vs {:.3} (random)",
                f.auc_salient, f.auc_random
            );
        }
    }
    println!("  → {}", dir.join("explanation.png").display());
}

/// Over all files: the mean class probability after deletions, most salient
/// first and random, per stream, and how often the saliency order did better.
fn print_faithfulness(explanations: &[Explanation]) {
    for name in ["spectral", "temporal"] {
        let checks: Vec<_> = explanations
            .iter()
            .filter_map(|e| if name == "spectral" { &e.spectral } else { &e.temporal }.as_ref())
            .map(|s| &s.faithfulness)
            .collect();
        if checks.is_empty() {
            continue;
        }
        let n = checks.len() as f64;
        let salient = checks.iter().map(|f| f.auc_salient).sum::<f64>() / n;
        let random = checks.iter().map(|f| f.auc_random).sum::<f64>() / n;
        let wins = checks.iter().filter(|f| f.auc_salient < f.auc_random).count();
        println!(
            "{name} saliency over {} files: probability after deletions {salient:.3} (most salient first) vs {random:.3} (random); salient-first lower in {wins}/{}",
            checks.len(),
            checks.len()
        );
    }
}

fn study(args: &ExplainArgs) -> Result<ExitCode> {
    let model = args.model.as_ref().expect("clap requires --model");
    let noise_dir = args.noise_dir.as_ref().expect("clap requires --noise-dir");
    let snrs = parse_snrs(&args.snr)?;
    let noise = NoiseBank::load(noise_dir).context("cannot read the noise corpus")?;
    let (_, test_pool) = noise.split(args.seed);
    let models = models_in(model, args.data.as_deref(), args.dataset)?;
    for m in &models {
        let kind = m.predictor.config().model.kind;
        if !(kind.has_spectral() && kind.has_temporal()) {
            bail!(
                "{}: a {} model has one stream; the study compares two (train a fusion model)",
                model.display(),
                kind.as_str()
            );
        }
    }
    let config = SweepConfig {
        snrs: snrs.clone(),
        per_category: false,
        reference: SnrReference::WholeClip,
        seed: args.seed,
    };
    let progress = progress_bar((models.len() * snrs.len()) as u64, "SNR study");
    let rows = snr_study::study(&models, &test_pool, &config, args.max_clips, || progress.inc(1));
    progress.finish_and_clear();
    std::fs::create_dir_all(&args.out).with_context(|| format!("cannot create {}", args.out.display()))?;
    let write = |file: &str, bytes: &[u8]| {
        let path = args.out.join(file);
        persist::write_atomic(&path, bytes).with_context(|| format!("cannot write {}", path.display()))
    };
    write(
        "snr_study.json",
        &serde_json::to_vec_pretty(&rows).expect("rows serialise"),
    )?;
    let mut csv = String::from(
        "model,snr_db,clips,temporal_share,mean_shap_spectral,mean_shap_temporal,mean_gate_spectral,accuracy\n",
    );
    for r in &rows {
        csv.push_str(&format!(
            "{},{},{},{:.4},{:.4},{:.4},{},{:.4}\n",
            r.model,
            r.snr_db.map_or("clean".into(), |s| s.to_string()),
            r.clips,
            r.temporal_share,
            r.mean_shap_spectral,
            r.mean_shap_temporal,
            r.mean_gate_spectral.map_or(String::new(), |g| format!("{g:.4}")),
            r.accuracy
        ));
    }
    write("snr_study.csv", csv.as_bytes())?;
    let ticks: Vec<(f64, String)> = snrs
        .iter()
        .enumerate()
        .map(|(i, s)| (i as f64, s.map_or("clean".into(), |s| format!("{s} dB"))))
        .collect();
    let mut series = Vec::new();
    let names: Vec<String> = rows
        .iter()
        .map(|r| r.model.clone())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    for name in &names {
        let of = |f: &dyn Fn(&snr_study::StudyRow) -> Option<f64>| -> Vec<(f64, f64, f64)> {
            snrs.iter()
                .enumerate()
                .filter_map(|(i, s)| {
                    let row = rows.iter().find(|r| &r.model == name && r.snr_db == *s)?;
                    Some((i as f64, 100.0 * f(row)?, 0.0))
                })
                .collect()
        };
        series.push(plot::Series {
            name: format!("{name}: temporal share of stream SHAP"),
            points: of(&|r| Some(r.temporal_share)),
        });
        let gate = of(&|r| r.mean_gate_spectral.map(|g| 1.0 - g));
        if !gate.is_empty() {
            series.push(plot::Series {
                name: format!("{name}: temporal weight of the gate (1 − g)"),
                points: gate,
            });
        }
    }
    plot::lines(
        &args.out.join("snr_study.png"),
        "Attention shift under noise",
        ("condition", "% to the temporal stream"),
        &ticks,
        0.0..100.0,
        &series,
    )?;
    if args.json {
        print_json(&rows)?;
    } else {
        println!("model\tSNR\tclips\ttemporal share\tSHAP spectral\tSHAP temporal\tgate (spectral)\taccuracy");
        for r in &rows {
            println!(
                "{}\t{}\t{}\t{:.1} %\t{:+.3}\t{:+.3}\t{}\t{:.1} %",
                r.model,
                r.snr_db.map_or("clean".into(), |s| format!("{s} dB")),
                r.clips,
                100.0 * r.temporal_share,
                r.mean_shap_spectral,
                r.mean_shap_temporal,
                r.mean_gate_spectral.map_or("—".into(), |g| format!("{g:.3}")),
                100.0 * r.accuracy
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
