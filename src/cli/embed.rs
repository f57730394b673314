//! `emofuse embed`: pretrained encoders' hidden states of audio files, for users' own probes.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Args;

use emofuse::audio;
use emofuse::batch::{Kind, ShardWriter};
use emofuse::data::Problem;
use emofuse::data::inputs::InputFiles;
use emofuse::infer::{EmbedPool, Embedder};
use emofuse::model::whisper::WhisperMode;
use emofuse::persist::{self, NpyTarget};

use super::{DeviceArg, ShardArgs, abort_after_files, report_problems, run_shard};

#[derive(Debug, Args)]
pub struct EmbedArgs {
    /// Audio files (any format emofuse reads; resampled to 16 kHz), or one
    /// corpus folder, manifest (.csv/.jsonl with a `path` column) or list of paths (.txt).
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// The encoder: `whisper-base` (fetched by scripts/get-whisper-base.sh), or
    /// a folder with a Hugging Face wav2vec 2.0 / HuBERT or Whisper checkpoint
    /// (config.json + model.safetensors or pytorch_model.bin).
    #[arg(long, visible_alias = "checkpoint")]
    backbone: String,
    /// How much audio a Whisper encoder sees: the clip alone, or padded to 30 s
    /// as in pre-training (only the clip's frames are returned). Whisper hears
    /// at most 30 s: a longer clip's first 30 s.
    #[arg(long, value_enum, default_value_t = WhisperMode::Trimmed)]
    whisper_mode: WhisperMode,
    /// Which hidden state: `last` (after the final layer norm), a layer number
    /// (0 = input of the first transformer layer, N = output of layer N), or `all`.
    #[arg(long, default_value = "last")]
    layer: String,
    /// `mean` averages over frames (one vector per file); `none` keeps every frame.
    #[arg(long, value_enum, default_value_t = EmbedPool::None)]
    pool: EmbedPool,
    /// Write float32 arrays: to this `.npy` file for one input, else into this
    /// folder as `<file stem>.npy`. Shapes: `[frames, hidden]`, `[layers, frames, hidden]`
    /// with `--layer all`; the frame axis goes with `--pool mean` (and `mean-std` doubles `hidden`).
    #[arg(long, value_name = "OUT", required_unless_present = "out", conflicts_with = "out")]
    npy: Option<PathBuf>,
    #[command(flatten)]
    batch: ShardArgs,
    #[command(flatten)]
    device: DeviceArg,
}

pub fn embed(args: &EmbedArgs) -> Result<ExitCode> {
    let listed = InputFiles::listed(&args.files).context("cannot list the inputs")?;
    let shard = args.batch.shard()?;
    let embedder = Embedder::load(&args.backbone, args.whisper_mode, &args.device.open()?)
        .with_context(|| format!("cannot load the encoder {}", args.backbone))?;
    let layer = embedder
        .layer(&args.layer)
        .map_err(|e| anyhow::anyhow!("--layer: {e}"))?;
    let embed = |path: &Path| {
        audio::load(path).map_err(|err| err.to_string()).and_then(|waveform| {
            let n = waveform.samples.len();
            embedder
                .embed(&waveform.samples, layer, args.pool)
                .ok_or_else(|| format!("{}: too short for the encoder ({n} samples)", path.display()))
        })
    };
    let Some(npy) = &args.npy else {
        let out = args.batch.out.as_ref().expect("clap requires --npy or --out");
        let job = format!(
            "embed --backbone {} --whisper-mode {:?} --layer {} --pool {:?}",
            args.backbone, args.whisper_mode, args.layer, args.pool
        );
        let inputs = listed.unwrap_or_else(|| InputFiles::named(&args.files));
        let writer = ShardWriter::open(
            out,
            Kind::Embeddings,
            &job,
            shard,
            &inputs,
            args.batch.chunk_size.into(),
        )?;
        let mut abort = abort_after_files();
        return run_shard(&writer, out, shard, |writer, on_file| {
            writer.embeddings(
                |path, _| {
                    abort();
                    embed(path)
                },
                on_file,
            )
        });
    };
    let files = listed.map_or_else(|| args.files.clone(), |inputs| inputs.paths());
    let target = NpyTarget::new(npy, &files).map_err(anyhow::Error::msg)?;
    let mut problems = Vec::new();
    let mut out = std::io::stdout().lock();
    for path in &files {
        let (shape, values) = match embed(path) {
            Ok(embedded) => embedded,
            Err(reason) => {
                problems.push(Problem {
                    path: path.clone(),
                    reason,
                });
                continue;
            }
        };
        let file = target.path_for(path);
        persist::write_npy(&file, &shape, &values).with_context(|| format!("cannot write {}", file.display()))?;
        writeln!(out, "{}: {:?} -> {}", path.display(), shape, file.display())?;
    }
    drop(out);
    Ok(report_problems(&problems))
}
