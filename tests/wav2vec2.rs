//! wav2vec 2.0 / HuBERT parity with `transformers` 5.24 on the tiny
//! checkpoints and outputs of `scripts/golden_wav2vec2.py`, and clear errors
//! for checkpoints that do not fit.

use std::path::{Path, PathBuf};

use burn::tensor::{Device, Tensor, TensorData};
use emofuse::audio;
use emofuse::model::wav2vec2::{self, Wav2Vec2Output};
use serde_json::Value;

use crate::util::{golden_dir, golden_index, max_abs_error, read_golden, shared_data};

/// Max absolute error allowed against `transformers`' hidden states.
const TOLERANCE: f32 = 1e-4;

/// Rows `0..frames` of item `index` of a `[batch, frames, hidden]` tensor.
fn clip_frames(tensor: &Tensor<3>, index: usize, frames: usize) -> Vec<f32> {
    tensor
        .clone()
        .narrow(0, index, 1)
        .narrow(1, 0, frames)
        .into_data()
        .try_to_vec::<f32>()
        .unwrap()
}

/// Compares clip `index` of `output` with a golden `[1 or batch, frames, hidden]` entry.
fn compare(what: &str, dir: &Path, output: &Wav2Vec2Output, index: usize, golden: &Value, golden_index: usize) -> f32 {
    let mut worst = 0.0f32;
    let pairs = std::iter::once((&output.last_hidden_state, &golden["last_hidden_state"])).chain(
        output
            .hidden_states
            .iter()
            .zip(golden["hidden_states"].as_array().unwrap()),
    );
    assert_eq!(
        output.hidden_states.len(),
        golden["hidden_states"].as_array().unwrap().len(),
        "{what}"
    );
    for (ours, entry) in pairs {
        let (shape, values) = read_golden(dir, entry);
        let frames = output.n_frames[index];
        let hidden = shape[2];
        let per_item = shape[1] * hidden;
        let theirs = &values[golden_index * per_item..golden_index * per_item + frames * hidden];
        worst = worst.max(max_abs_error(&clip_frames(ours, index, frames), theirs));
    }
    assert!(worst <= TOLERANCE, "{what}: max abs error {worst:e}");
    worst
}

fn batch_of(clips: &[Vec<f32>], device: &Device) -> (Tensor<2>, Vec<usize>) {
    let longest = clips.iter().map(Vec::len).max().unwrap();
    let values: Vec<f32> = clips
        .iter()
        .flat_map(|c| c.iter().copied().chain(std::iter::repeat_n(0.0, longest - c.len())))
        .collect();
    let lengths = clips.iter().map(Vec::len).collect();
    (
        Tensor::from_data(TensorData::new(values, [clips.len(), longest]), device),
        lengths,
    )
}

#[test]
fn checkpoints_match_transformers() {
    let device = Device::flex();
    let index = golden_index("wav2vec2");
    let clip_names = ["ravdess", "tess"];
    let raw: Vec<Vec<f32>> = clip_names
        .iter()
        .map(|name| {
            audio::load(shared_data().join(index["clips"][name].as_str().unwrap()))
                .unwrap()
                .samples
        })
        .collect();
    let models = index["models"].as_object().unwrap();
    assert_eq!(models.len(), 3);
    for (name, entry) in models {
        let dir = golden_dir("wav2vec2").join(entry["dir"].as_str().unwrap());
        let (model, preprocessor) = wav2vec2::load(&dir, &device).unwrap_or_else(|err| panic!("{name}: {err}"));
        let inputs: Vec<Vec<f32>> = raw.iter().map(|clip| preprocessor.apply(clip)).collect();
        for (i, clip) in clip_names.iter().enumerate() {
            let (batch, lengths) = batch_of(&inputs[i..=i], &device);
            let output = model.forward(batch, &lengths);
            let error = compare(&format!("{name}/{clip}"), &dir, &output, 0, &entry["outputs"][clip], 0);
            eprintln!("{name:>16} {clip:<8} single: max abs error {error:.2e}");
        }
        // Both clips in one padded batch: each clip's real frames are its single-clip outputs.
        let (batch, lengths) = batch_of(&inputs, &device);
        let output = model.forward(batch, &lengths);
        for (i, clip) in clip_names.iter().enumerate() {
            let error = compare(
                &format!("{name}/{clip} in a batch"),
                &dir,
                &output,
                i,
                &entry["outputs"][clip],
                0,
            );
            eprintln!("{name:>16} {clip:<8} padded batch: max abs error {error:.2e}");
            if let Some(golden) = entry["outputs"].get("batch") {
                compare(
                    &format!("{name}/{clip} vs transformers' batch"),
                    &dir,
                    &output,
                    i,
                    golden,
                    i,
                );
            }
        }
    }
}

/// A copy of the tiny base-like checkpoint whose tensors `edit` may change.
fn edited_checkpoint(edit: impl FnOnce(&mut Vec<(String, Vec<usize>, Vec<f32>)>)) -> tempfile::TempDir {
    let source = golden_dir("wav2vec2").join("w2v2_base_like");
    let dir = tempfile::tempdir().unwrap();
    for file in ["config.json", "preprocessor_config.json"] {
        std::fs::copy(source.join(file), dir.path().join(file)).unwrap();
    }
    let bytes = std::fs::read(source.join("model.safetensors")).unwrap();
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut tensors: Vec<(String, Vec<usize>, Vec<f32>)> = file
        .tensors()
        .into_iter()
        .map(|(name, view)| {
            let values = view
                .data()
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
                .collect();
            (name, view.shape().to_vec(), values)
        })
        .collect();
    edit(&mut tensors);
    let bytes: Vec<(String, Vec<usize>, Vec<u8>)> = tensors
        .into_iter()
        .map(|(name, shape, values)| (name, shape, values.iter().flat_map(|v| v.to_le_bytes()).collect()))
        .collect();
    let views: Vec<(String, safetensors::tensor::TensorView)> = bytes
        .iter()
        .map(|(name, shape, data)| {
            (
                name.clone(),
                safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.clone(), data).unwrap(),
            )
        })
        .collect();
    safetensors::serialize_to_file(views, None, &dir.path().join("model.safetensors")).unwrap();
    dir
}

fn load_error(dir: &Path) -> String {
    match wav2vec2::load(dir, &Device::flex()) {
        Ok(_) => panic!("{} should not load", dir.display()),
        Err(err) => err.to_string(),
    }
}

#[test]
fn missing_and_mis_shaped_tensors_are_named() {
    let dir = edited_checkpoint(|tensors| {
        tensors.retain(|(name, _, _)| name != "wav2vec2.encoder.layers.1.attention.q_proj.weight");
        let bias = tensors
            .iter_mut()
            .find(|(name, _, _)| name == "wav2vec2.encoder.layer_norm.bias")
            .unwrap();
        (bias.1, bias.2) = (vec![31], bias.2[..31].to_vec());
        tensors.push((
            "wav2vec2.encoder.layers.2.attention.q_proj.weight".into(),
            vec![32, 32],
            vec![0.0; 1024],
        ));
    });
    let message = load_error(dir.path());
    assert!(
        message.contains("missing 1: encoder.layers.1.attention.q_proj.weight"),
        "{message}"
    );
    assert!(
        message.contains("wrong shape 1: encoder.layer_norm.bias (is [31], model needs [32])"),
        "{message}"
    );
    assert!(
        message.contains("unexpected 1: encoder.layers.2.attention.q_proj.weight"),
        "{message}"
    );
    assert!(message.contains("model.safetensors"), "the file is named: {message}");
}

#[test]
fn bad_folders_and_configs_are_refused_clearly() {
    let empty = tempfile::tempdir().unwrap();
    assert!(load_error(empty.path()).contains("config.json: cannot read"));

    let no_weights = tempfile::tempdir().unwrap();
    std::fs::copy(
        golden_dir("wav2vec2").join("w2v2_base_like/config.json"),
        no_weights.path().join("config.json"),
    )
    .unwrap();
    assert!(load_error(no_weights.path()).contains("no model.safetensors or pytorch_model.bin"));

    let dir = edited_checkpoint(|_| {});
    let config_path = dir.path().join("config.json");
    let mut config: Value = serde_json::from_str(&std::fs::read_to_string(&config_path).unwrap()).unwrap();
    config["num_attention_heads"] = 5.into();
    std::fs::write(&config_path, config.to_string()).unwrap();
    assert!(load_error(dir.path()).contains("not divisible by num_attention_heads 5"));

    std::fs::write(dir.path().join("model.safetensors"), b"garbage").unwrap();
    config["num_attention_heads"] = 4.into();
    std::fs::write(&config_path, config.to_string()).unwrap();
    assert!(load_error(dir.path()).contains("not a safetensors or PyTorch checkpoint"));
}

/// Full-size wav2vec2-base (random weights, 95M parameters) against
/// `transformers`: `python3 scripts/golden_wav2vec2.py --full-size DIR`, then
/// `EMOFUSE_W2V2_FULL=DIR cargo test --release full_size -- --ignored --nocapture`.
#[test]
#[ignore = "needs a full-size checkpoint made by scripts/golden_wav2vec2.py --full-size"]
fn full_size_base_matches_transformers() {
    let dir = PathBuf::from(std::env::var("EMOFUSE_W2V2_FULL").expect("EMOFUSE_W2V2_FULL names the folder"));
    let golden: Value = serde_json::from_str(&std::fs::read_to_string(dir.join("golden.json")).unwrap()).unwrap();
    let index = golden_index("wav2vec2");
    let device = Device::flex();
    let (model, preprocessor) = wav2vec2::load(&dir, &device).unwrap();
    let clip = audio::load(shared_data().join(index["clips"]["ravdess"].as_str().unwrap())).unwrap();
    let input = preprocessor.apply(&clip.samples);
    let (batch, lengths) = batch_of(&[input], &device);
    let output = model.forward(batch, &lengths);
    let error = compare("wav2vec2-base", &dir, &output, 0, &golden["ravdess"], 0);
    eprintln!("full-size wav2vec2-base, 12 layers: max abs error {error:.2e} over all 13 hidden states");
}

#[test]
fn embed_command_writes_every_hidden_state() {
    let index = golden_index("wav2vec2");
    let clip = shared_data().join(index["clips"]["tess"].as_str().unwrap());
    let checkpoint = golden_dir("wav2vec2").join("w2v2_large_like");
    let out = tempfile::tempdir().unwrap();
    let npy = out.path().join("tess.npy");
    crate::util::emofuse_ok(&[
        "embed",
        clip.to_str().unwrap(),
        "--checkpoint",
        checkpoint.to_str().unwrap(),
        "--layer",
        "all",
        "--npy",
        npy.to_str().unwrap(),
    ]);
    let bytes = std::fs::read(&npy).unwrap();
    let array = npyz::NpyFile::new(&bytes[..]).unwrap();
    let shape = array.shape().to_vec();
    let values = array.into_vec::<f32>().unwrap();
    let golden = &index["models"]["w2v2_large_like"]["outputs"]["tess"]["hidden_states"];
    assert_eq!(shape[0] as usize, golden.as_array().unwrap().len());
    for (layer, entry) in golden.as_array().unwrap().iter().enumerate() {
        let (_, expected) = read_golden(&checkpoint, entry);
        let ours = &values[layer * expected.len()..(layer + 1) * expected.len()];
        assert!(max_abs_error(ours, &expected) <= TOLERANCE, "layer {layer}");
    }

    let output = crate::util::emofuse(&[
        "embed",
        clip.to_str().unwrap(),
        clip.to_str().unwrap(),
        "--checkpoint",
        checkpoint.to_str().unwrap(),
        "--npy",
        out.path().to_str().unwrap(),
    ]);
    assert!(!output.status.success(), "two inputs may not overwrite one output");
    assert!(String::from_utf8_lossy(&output.stderr).contains("would both be written to"));
}
