//! `emofuse serve`: the JSON API and the web page on a local address.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Args;

use emofuse::serve::{self, ServeConfig};

use super::{DeviceArg, ModelArg, load_predictor};

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// A built-in model (`default`, `whisper`) or a model folder [default: default].
    #[arg(long)]
    model: Option<ModelArg>,
    #[arg(long, default_value = "127.0.0.1:8080")]
    addr: SocketAddr,
    /// Largest request body, in MB.
    #[arg(long, default_value_t = 20.0)]
    max_body_mb: f64,
    /// Longest audio accepted, in seconds.
    #[arg(long, default_value_t = 120.0)]
    max_duration: f64,
    /// Longest audio /api/explain takes, in seconds.
    #[arg(long, default_value_t = 30.0)]
    max_explain_duration: f64,
    /// Seconds a request may wait and run before it is answered 503.
    #[arg(long, default_value_t = 30.0)]
    timeout: f64,
    /// Inferences at once [default: the number of cores].
    #[arg(long)]
    max_concurrent: Option<usize>,
    /// Requests waiting for an inference before new ones get 429.
    #[arg(long, default_value_t = 64)]
    max_queue: usize,
    #[command(flatten)]
    device: DeviceArg,
}

pub fn serve(args: &ServeArgs) -> Result<ExitCode> {
    let limits = [
        ("--max-body-mb", args.max_body_mb),
        ("--max-duration", args.max_duration),
        ("--max-explain-duration", args.max_explain_duration),
        ("--timeout", args.timeout),
    ];
    for (flag, value) in limits {
        if !(value.is_finite() && value > 0.0) {
            bail!("{flag} {value}: want a positive number");
        }
    }
    let request_timeout =
        Duration::try_from_secs_f64(args.timeout).with_context(|| format!("--timeout {}: too long", args.timeout))?;
    let predictor = load_predictor(args.model.as_ref(), &args.device.open()?)?;
    let defaults = ServeConfig::default();
    let config = ServeConfig {
        max_body_bytes: (args.max_body_mb * 1024.0 * 1024.0) as usize,
        max_duration_s: args.max_duration,
        max_explain_duration_s: args.max_explain_duration,
        request_timeout,
        max_concurrent: args.max_concurrent.unwrap_or(defaults.max_concurrent).max(1),
        max_queue: args.max_queue,
        model_name: args.model.as_ref().map_or(defaults.model_name.clone(), ModelArg::name),
        ..defaults
    };
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    runtime
        .block_on(serve::serve(predictor, config, args.addr))
        .with_context(|| format!("cannot serve on {}", args.addr))?;
    Ok(ExitCode::SUCCESS)
}
