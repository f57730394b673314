//! The `emofuse` command: parse flags, run, print the error chain once.

mod cli;

use std::process::ExitCode;

use clap::Parser;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc 3's `mi_option_purge_delay` (libmimalloc-sys has no constant for it).
const PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Freed memory stays mapped for the next tensor instead of going back to the
/// OS: a wav2vec 2.0 forward allocates tens of MB per layer, and the kernel
/// zeroing fresh pages took ~9 % of it (BENCHMARKS.md). The process keeps its
/// peak memory until it exits.
fn keep_freed_memory() {
    // SAFETY: sets an option mimalloc reads on its next purge; no memory is touched.
    unsafe { libmimalloc_sys::mi_option_set(PURGE_DELAY, -1) }
}

fn main() -> ExitCode {
    keep_freed_memory();
    let args = cli::Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("EMOFUSE_LOG").unwrap_or_else(|_| "warn".into()))
        .init();
    match cli::run(args) {
        Ok(code) => code,
        Err(err) if is_broken_pipe(&err) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("emofuse: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// `emofuse … | head` closing the pipe early is not an error.
fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_purge_delay_option_is_the_one_set() {
        // 1000 ms is mimalloc 3's default for the purge delay, and no other option's.
        assert_eq!(unsafe { libmimalloc_sys::mi_option_get(PURGE_DELAY) }, 1000);
        keep_freed_memory();
        assert_eq!(unsafe { libmimalloc_sys::mi_option_get(PURGE_DELAY) }, -1);
    }
}
