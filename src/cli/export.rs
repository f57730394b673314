//! `emofuse export`: a model for other runtimes (ONNX).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Args;

use emofuse::{export, persist};

use super::{DeviceArg, ModelArg, load_predictor};

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Write the model as ONNX (opset 17) here: raw frame features in,
    /// calibrated probabilities out (spectral-stream models).
    #[arg(long, value_name = "OUT.onnx")]
    onnx: PathBuf,
    /// A built-in model (`default`, `whisper`) or a model folder [default: default].
    #[arg(long)]
    model: Option<ModelArg>,
    #[command(flatten)]
    device: DeviceArg,
}

pub fn export(args: &ExportArgs) -> Result<ExitCode> {
    let predictor = load_predictor(args.model.as_ref(), &args.device.open()?)?;
    let bytes = export::onnx(&predictor).context("cannot export the model")?;
    persist::write_file(&args.onnx, &bytes)?;
    println!(
        "{} ({} bytes, opset {})",
        args.onnx.display(),
        bytes.len(),
        export::OPSET
    );
    Ok(ExitCode::SUCCESS)
}
