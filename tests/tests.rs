//! Integration tests: one binary, one module per concern (see STYLE.md).

mod util;

mod audio;
mod cli;
mod data;
mod features;
mod wav2vec2;
