//! `--device gpu` against the CPU: the same answers from the built-in model
//! and the tiny Whisper encoder. Needs a build with the `gpu` feature and a
//! GPU (`cargo test --features gpu gpu::`); without either it is skipped,
//! saying why. `EMOFUSE_EXPECT_GPU=NVIDIA` also fails it unless the adapter's
//! name says so.

use burn::tensor::{Device, Tensor, TensorData};
use emofuse::audio;
use emofuse::device::{self, DeviceChoice};
use emofuse::infer::Predictor;
use emofuse::model::whisper::{self, WhisperMel, WhisperMode};

use crate::util::{golden_dir, max_abs_error};

/// Largest difference allowed between the CPU's and the GPU's outputs.
const TOLERANCE: f32 = 1e-3;

fn values<const D: usize>(tensor: Tensor<D>) -> Vec<f32> {
    tensor.into_data().convert::<f32>().try_into_vec().unwrap()
}

#[test]
fn the_gpu_gives_the_cpus_answers() {
    let gpu = match DeviceChoice::Gpu(0).open() {
        Ok(gpu) => gpu,
        Err(why) => return eprintln!("skipped: {why}"),
    };
    let name = device::describe(&gpu);
    eprintln!("GPU 0: {name}");
    if let Ok(expected) = std::env::var("EMOFUSE_EXPECT_GPU") {
        assert!(name.contains(&expected), "the adapter is {name:?}, not {expected:?}");
    }
    let cpu = Device::flex();
    // The bundled clips, so that a GPU machine needs nothing beside the checkout.
    let examples = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/ravdess-mini");
    let clips = [
        "Actor_01/03-01-05-02-01-01-01.flac",
        "Actor_02/03-01-04-02-01-01-02.flac",
    ]
    .map(|clip| audio::load(examples.join(clip)).unwrap());

    let logits = |device: &Device| {
        let predictor = Predictor::builtin(device).unwrap();
        let examples: Vec<_> = clips.iter().map(|w| predictor.example(w, "clip").unwrap()).collect();
        values(predictor.forward(&examples.iter().collect::<Vec<_>>()).logits)
    };
    let error = max_abs_error(&logits(&gpu), &logits(&cpu));
    eprintln!("built-in model: logits differ by at most {error:.2e}");
    assert!(error <= TOLERANCE, "built-in model: {error}");

    let mel = WhisperMel::new(80).compute(&clips[0].samples, WhisperMode::Trimmed);
    let hidden = |device: &Device| {
        let (encoder, _) = whisper::load(&golden_dir("whisper").join("hf"), device).unwrap();
        let input = Tensor::<3>::from_data(TensorData::new(mel.data.clone(), [1, mel.n_mels, mel.n_frames]), device);
        values(encoder.forward(input, &[mel.n_frames]).last_hidden_state)
    };
    let error = max_abs_error(&hidden(&gpu), &hidden(&cpu));
    eprintln!("tiny Whisper encoder: last hidden state differs by at most {error:.2e}");
    assert!(error <= TOLERANCE, "tiny Whisper: {error}");
}
