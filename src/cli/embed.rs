//! `emofuse embed`: encoder hidden states of audio files, for users' own probes.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use burn::tensor::{Device, Tensor, TensorData};
use clap::{Args, ValueEnum};

use emofuse::audio;
use emofuse::data::Problem;
use emofuse::model::wav2vec2;
use emofuse::persist;

use super::features::NpyTarget;
use super::report_problems;

#[derive(Debug, Args)]
pub struct EmbedArgs {
    /// Audio files (any format emofuse reads; resampled to 16 kHz).
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// Hugging Face wav2vec 2.0 / HuBERT folder (config.json + model.safetensors or pytorch_model.bin).
    #[arg(long)]
    checkpoint: PathBuf,
    /// Which hidden state: `last` (after the final layer norm), a layer number
    /// (0 = input of the first transformer layer, N = output of layer N), or `all`.
    #[arg(long, default_value = "last")]
    layer: String,
    /// `mean` averages over frames (one vector per file); `none` keeps every frame.
    #[arg(long, value_enum, default_value_t = Pool::None)]
    pool: Pool,
    /// Write float32 arrays: to this `.npy` file for one input, else into this
    /// folder as `<file stem>.npy`. Shapes: `[frames, hidden]`, `[layers, frames, hidden]`
    /// with `--layer all`; the frame axis goes with `--pool mean`.
    #[arg(long, value_name = "OUT")]
    npy: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Pool {
    None,
    Mean,
}

/// A parsed `--layer`.
enum Layer {
    Last,
    Index(usize),
    All,
}

pub fn embed(args: &EmbedArgs) -> Result<ExitCode> {
    let device = Device::flex();
    let (model, preprocessor) = wav2vec2::load(&args.checkpoint, &device).context("cannot load the checkpoint")?;
    let n_layers = model.config.num_hidden_layers;
    let layer = match args.layer.as_str() {
        "last" => Layer::Last,
        "all" => Layer::All,
        number => match number.parse::<usize>() {
            Ok(i) if i <= n_layers => Layer::Index(i),
            _ => anyhow::bail!("--layer must be last, all or a number from 0 to {n_layers}, not {number:?}"),
        },
    };
    let target = NpyTarget::new(&args.npy, &args.files)?;
    let mut problems = Vec::new();
    let mut out = std::io::stdout().lock();
    for path in &args.files {
        let waveform = match audio::load(path) {
            Ok(waveform) => waveform,
            Err(err) => {
                problems.push(Problem {
                    path: path.clone(),
                    reason: err.to_string(),
                });
                continue;
            }
        };
        let n = waveform.samples.len();
        if model.config.n_frames(n) == 0 {
            problems.push(Problem {
                path: path.clone(),
                reason: format!("{}: too short for the encoder ({n} samples)", path.display()),
            });
            continue;
        }
        let input = Tensor::<2>::from_data(TensorData::new(preprocessor.apply(&waveform.samples), [1, n]), &device);
        let output = model.forward(input, &[n]);
        let chosen: Vec<Tensor<3>> = match layer {
            Layer::Last => vec![output.last_hidden_state],
            Layer::Index(i) => vec![output.hidden_states[i].clone()],
            Layer::All => output.hidden_states,
        };
        let per_layer: Vec<Tensor<2>> = chosen
            .into_iter()
            .map(|h| match args.pool {
                Pool::None => h.squeeze_dim(0),             // [frames, hidden]
                Pool::Mean => h.mean_dim(1).squeeze_dim(0), // [1, hidden]
            })
            .collect();
        let [frames, hidden] = per_layer[0].dims();
        let all = matches!(layer, Layer::All).then_some(per_layer.len() as u64);
        let pooled = (args.pool == Pool::None).then_some(frames as u64);
        let shape: Vec<u64> = all.into_iter().chain(pooled).chain([hidden as u64]).collect();
        let values: Vec<f32> = Tensor::cat(per_layer, 0)
            .into_data()
            .convert::<f32>()
            .try_into_vec()
            .expect("f32 data");
        let file = target.path_for(path);
        persist::write_npy(&file, &shape, &values).with_context(|| format!("cannot write {}", file.display()))?;
        writeln!(out, "{}: {:?} -> {}", path.display(), shape, file.display())?;
    }
    drop(out);
    Ok(report_problems(&problems))
}
