//! Helpers shared by the integration tests: synthetic audio bytes, temporary
//! corpora, the real data folder, golden files and the `emofuse` executable.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

/// `../shared/data`, the real test bed beside the checkout.
pub fn shared_data() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data");
    assert!(
        dir.is_dir(),
        "{} is missing: the tests need the shared data beside the checkout",
        dir.display()
    );
    dir
}

/// `tests/golden/<family>`: the golden files of one generator script.
pub fn golden_dir(family: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden").join(family)
}

/// The `index.json` of a golden family: what was computed, from what.
pub fn golden_index(family: &str) -> Value {
    let path = golden_dir(family).join("index.json");
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

/// The array an index entry (`{"file", "shape"}`) names in `dir`: its shape
/// and little-endian f32 values.
pub fn read_golden(dir: &Path, entry: &Value) -> (Vec<usize>, Vec<f32>) {
    let bytes = std::fs::read(dir.join(entry["file"].as_str().unwrap())).unwrap();
    let values = bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect();
    let shape = entry["shape"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_u64().unwrap() as usize)
        .collect();
    (shape, values)
}

/// The largest absolute difference of two equally long arrays.
pub fn max_abs_error(ours: &[f32], golden: &[f32]) -> f32 {
    assert_eq!(ours.len(), golden.len());
    ours.iter().zip(golden).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max)
}

/// A sine of `freq` Hz at amplitude `amp`, `n` samples at `rate`.
pub fn sine(freq: f32, amp: f32, rate: u32, n: usize) -> Vec<f32> {
    (0..n)
        .map(|i| amp * (2.0 * std::f32::consts::PI * freq * i as f32 / rate as f32).sin())
        .collect()
}

/// WAV sample encodings the tests write.
#[derive(Clone, Copy, Debug)]
pub enum Encoding {
    U8,
    I16,
    I24,
    I32,
    F32,
    F64,
}

impl Encoding {
    pub fn bits(self) -> u16 {
        match self {
            Encoding::U8 => 8,
            Encoding::I16 => 16,
            Encoding::I24 => 24,
            Encoding::I32 | Encoding::F32 => 32,
            Encoding::F64 => 64,
        }
    }

    fn is_float(self) -> bool {
        matches!(self, Encoding::F32 | Encoding::F64)
    }

    /// Little-endian bytes of interleaved samples.
    pub fn encode(self, samples: &[f32]) -> Vec<u8> {
        let mut out = Vec::new();
        for &s in samples {
            let int = |max: f64| (f64::from(s) * max).round().clamp(-max - 1.0, max) as i64;
            match self {
                Encoding::U8 => out.push((int(127.0) + 128) as u8),
                Encoding::I16 => out.extend_from_slice(&(int(32767.0) as i16).to_le_bytes()),
                Encoding::I24 => out.extend_from_slice(&(int(8_388_607.0) as i32).to_le_bytes()[..3]),
                Encoding::I32 => out.extend_from_slice(&(int(2_147_483_647.0) as i32).to_le_bytes()),
                Encoding::F32 => out.extend_from_slice(&s.to_le_bytes()),
                Encoding::F64 => out.extend_from_slice(&f64::from(s).to_le_bytes()),
            }
        }
        out
    }
}

/// A WAV file: `fmt ` (plain or WAVE_FORMAT_EXTENSIBLE) and `data` chunks.
/// `declared_frames` overrides the data size written in the header, to make
/// truncated or lying files.
pub struct Wav {
    pub encoding: Encoding,
    pub channels: u16,
    pub rate: u32,
    pub extensible: bool,
    pub format_tag: Option<u16>,
    pub declared_frames: Option<u32>,
}

impl Wav {
    pub fn new(encoding: Encoding, channels: u16, rate: u32) -> Wav {
        Wav {
            encoding,
            channels,
            rate,
            extensible: false,
            format_tag: None,
            declared_frames: None,
        }
    }

    /// The file's bytes for interleaved `samples`.
    pub fn bytes(&self, samples: &[f32]) -> Vec<u8> {
        let data = self.encoding.encode(samples);
        let block_align = self.channels * self.encoding.bits() / 8;
        let tag = if self.encoding.is_float() { 3u16 } else { 1 };
        let mut fmt = Vec::new();
        fmt.extend_from_slice(
            &(if self.extensible {
                0xFFFEu16
            } else {
                self.format_tag.unwrap_or(tag)
            })
            .to_le_bytes(),
        );
        fmt.extend_from_slice(&self.channels.to_le_bytes());
        fmt.extend_from_slice(&self.rate.to_le_bytes());
        fmt.extend_from_slice(&(self.rate * u32::from(block_align)).to_le_bytes());
        fmt.extend_from_slice(&block_align.to_le_bytes());
        fmt.extend_from_slice(&self.encoding.bits().to_le_bytes());
        if self.extensible {
            fmt.extend_from_slice(&22u16.to_le_bytes());
            fmt.extend_from_slice(&self.encoding.bits().to_le_bytes());
            let mask: u32 = if self.channels == 1 { 0x4 } else { 0x3 };
            fmt.extend_from_slice(&mask.to_le_bytes());
            // KSDATAFORMAT_SUBTYPE_PCM / _IEEE_FLOAT: the tag, then the fixed GUID tail.
            fmt.extend_from_slice(&u32::from(self.format_tag.unwrap_or(tag)).to_le_bytes());
            fmt.extend_from_slice(&[0x00, 0x00, 0x10, 0x00, 0x80, 0x00, 0x00, 0xAA, 0x00, 0x38, 0x9B, 0x71]);
        }
        let data_len = match self.declared_frames {
            Some(frames) => frames * u32::from(block_align),
            None => data.len() as u32,
        };
        let mut out = Vec::new();
        out.extend_from_slice(b"RIFF");
        out.extend_from_slice(&(4 + 8 + fmt.len() as u32 + 8 + data_len).to_le_bytes());
        out.extend_from_slice(b"WAVE");
        out.extend_from_slice(b"fmt ");
        out.extend_from_slice(&(fmt.len() as u32).to_le_bytes());
        out.extend_from_slice(&fmt);
        out.extend_from_slice(b"data");
        out.extend_from_slice(&data_len.to_le_bytes());
        out.extend_from_slice(&data);
        out
    }
}

/// 16-bit mono WAV bytes at `rate`.
pub fn wav16(samples: &[f32], rate: u32) -> Vec<u8> {
    Wav::new(Encoding::I16, 1, rate).bytes(samples)
}

/// Writes `bytes` to `dir/name`, creating folders, and returns the path.
pub fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, bytes).unwrap();
    path
}

/// Runs the `emofuse` executable with `args`.
pub fn emofuse(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_emofuse"))
        .args(args)
        .output()
        .expect("emofuse runs")
}

/// [`emofuse`] with its cache root (`EMOFUSE_CACHE`: where `--backbone
/// whisper-base` is installed) at `cache`.
pub fn emofuse_in(cache: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_emofuse"))
        .env("EMOFUSE_CACHE", cache)
        .args(args)
        .output()
        .expect("emofuse runs")
}

/// [`emofuse`], which must succeed.
pub fn emofuse_ok(args: &[&str]) -> Output {
    let output = emofuse(args);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    output
}

/// Every file under `dir`, sorted.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    walkdir::WalkDir::new(dir)
        .sort_by_file_name()
        .into_iter()
        .map(Result::unwrap)
        .filter(|entry| entry.file_type().is_file())
        .map(walkdir::DirEntry::into_path)
        .collect()
}

/// A manifest of 56 RAVDESS clips in `dir`: 4 actors, 4 emotions, 2 of the
/// 4 statement × repetition takes.
pub fn tiny_manifest(dir: &Path) -> PathBuf {
    let root = shared_data().join("ravdess/Audio_Speech_Actors_01-24");
    let mut rows = String::from("path,label,speaker\n");
    for actor in 1..=4 {
        for (code, label) in [("01", "neutral"), ("03", "happy"), ("04", "sad"), ("05", "angry")] {
            // Neutral has only the normal intensity.
            let intensities: &[&str] = if code == "01" { &["01"] } else { &["01", "02"] };
            for intensity in intensities {
                for take in ["01-01", "02-02"] {
                    let name = format!("03-01-{code}-{intensity}-{take}-{actor:02}.flac");
                    let path = root.join(format!("Actor_{actor:02}")).join(name);
                    rows += &format!("{},{label},{actor}\n", path.display());
                }
            }
        }
    }
    let manifest = dir.join("tiny.csv");
    std::fs::write(&manifest, rows).unwrap();
    manifest
}

/// Trains a `kind` model for one epoch, without validation, on the
/// [`tiny_manifest`] in `dir` into `dir/<out>` (with `extra` flags), and
/// returns the model folder.
pub fn train_tiny(dir: &Path, kind: &str, out: &str, extra: &[&str]) -> PathBuf {
    train_tiny_output(dir, kind, out, extra).0
}

/// [`train_tiny`], also returning what the run printed. Its cache root is
/// `dir/cache` as well (`--backbone whisper-base` is looked up there).
pub fn train_tiny_output(dir: &Path, kind: &str, out: &str, extra: &[&str]) -> (PathBuf, Output) {
    let manifest = tiny_manifest(dir);
    let model = dir.join(out);
    let cache = dir.join("cache");
    let mut args = vec![
        "train",
        "--data",
        manifest.to_str().unwrap(),
        "--model",
        kind,
        "--epochs",
        "1",
        "--validation",
        "0",
        "--out",
        model.to_str().unwrap(),
        "--cache-dir",
        cache.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let output = emofuse_in(&cache, &args);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    (model, output)
}
