//! Integration tests: one binary, one module per concern (see STYLE.md).

mod util;

mod audio;
mod batch;
mod cli;
mod data;
mod explain;
mod features;
mod gpu;
mod noise;
mod properties;
mod serve;
mod train;
mod wav2vec2;
mod web;
mod whisper;
