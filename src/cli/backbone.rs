//! `emofuse backbone`: pretrained encoders for the temporal stream.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};

use emofuse::model::whisper;

#[derive(Debug, Subcommand)]
pub enum BackboneCommand {
    /// Convert a CTranslate2 Whisper model.bin (faster-whisper) into a folder
    /// of config.json + model.safetensors that emofuse (and transformers) load.
    Convert(ConvertArgs),
}

#[derive(Debug, Args)]
pub struct ConvertArgs {
    /// The CTranslate2 model.bin.
    model_bin: PathBuf,
    /// Output folder.
    #[arg(long)]
    out: PathBuf,
}

pub fn run(command: BackboneCommand) -> Result<ExitCode> {
    match command {
        BackboneCommand::Convert(args) => {
            std::fs::create_dir_all(&args.out).with_context(|| format!("cannot create {}", args.out.display()))?;
            let config = whisper::convert_ct2(&args.model_bin, &args.out).context("cannot convert")?;
            println!(
                "{}: Whisper encoder, d_model {}, {} layers, {} heads, {} mel bins",
                args.out.display(),
                config.d_model,
                config.encoder_layers,
                config.encoder_attention_heads,
                config.num_mel_bins
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}
