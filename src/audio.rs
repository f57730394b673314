//! Any audio file or byte buffer → mono `f32` samples at 16 kHz.
//!
//! The container is recognised from the first bytes, never from the file
//! extension: the TESS release ships AIFF data named `.wav`. Decoding is done
//! by symphonia, channels are averaged, and other rates are converted with a
//! windowed-sinc resampler (rubato, see [`resample`]).

use std::fs::File;
use std::io::{Cursor, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use rubato::{Resampler, SincFixedIn, SincInterpolationParameters, SincInterpolationType, WindowFunction};
use symphonia::core::audio::SampleBuffer;
use symphonia::core::codecs::{CODEC_TYPE_NULL, DecoderOptions};
use symphonia::core::errors::Error as SymphoniaError;
use symphonia::core::formats::{FormatOptions, FormatReader};
use symphonia::core::io::{MediaSource, MediaSourceStream};
use symphonia::core::meta::MetadataOptions;
use symphonia::core::probe::Hint;

/// The rate every model in emofuse works at (wav2vec 2.0 and the paper both use 16 kHz).
pub const SAMPLE_RATE: u32 = 16_000;

/// Rates outside this range are treated as a broken header, not as audio.
pub const MIN_SOURCE_RATE: u32 = 1_000;
/// See [`MIN_SOURCE_RATE`].
pub const MAX_SOURCE_RATE: u32 = 768_000;

/// A clip whose peak absolute amplitude is below this (−100 dBFS, under one
/// 16-bit step) is called silent.
pub const SILENCE_PEAK: f32 = 1e-5;

/// Bytes read to recognise a container; every magic number we know fits.
/// Bytes of a file's start read to recognise it and check its header.
const HEADER_LEN: usize = 4096;

/// Mono audio at a known rate.
#[derive(Debug, Clone, PartialEq)]
pub struct Waveform {
    /// Samples in [-1, 1] (decoded float files may exceed that slightly).
    pub samples: Vec<f32>,
    /// Samples per second; [`SAMPLE_RATE`] after [`load`].
    pub sample_rate: u32,
}

impl Waveform {
    /// Length in seconds.
    pub fn duration_s(&self) -> f64 {
        self.samples.len() as f64 / f64::from(self.sample_rate)
    }
}

/// What may be refused while loading, and the limits applied.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadOptions {
    /// Longer files are refused before they are decoded where the header tells the length.
    pub max_duration_s: f64,
    /// Accept all-silent audio instead of returning [`AudioError::Silent`].
    pub allow_silent: bool,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            max_duration_s: 600.0,
            allow_silent: false,
        }
    }
}

/// Audio containers we decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Container {
    Wav,
    Aiff,
    Flac,
    Mp3,
    Ogg,
}

impl Container {
    /// symphonia's format hint for this container.
    fn extension(self) -> &'static str {
        match self {
            Container::Wav => "wav",
            Container::Aiff => "aiff",
            Container::Flac => "flac",
            Container::Mp3 => "mp3",
            Container::Ogg => "ogg",
        }
    }
}

/// Why a file could not be turned into a [`Waveform`]. Every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum AudioError {
    #[error("{}: no such file", path.display())]
    NotFound { path: PathBuf },
    #[error("{}: is a directory, not an audio file", path.display())]
    IsDirectory { path: PathBuf },
    #[error("{}: cannot read: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{}: file is empty", path.display())]
    Empty { path: PathBuf },
    #[error("{}: not a recognised audio format (starts with {magic})", path.display())]
    UnknownFormat { path: PathBuf, magic: String },
    #[error("{}: unsupported audio format: {what}", path.display())]
    Unsupported { path: PathBuf, what: String },
    #[error("{}: corrupt or truncated audio: {detail}", path.display())]
    Corrupt { path: PathBuf, detail: String },
    #[error("{}: truncated: header promises {expected} frames, only {decoded} could be decoded", path.display())]
    Truncated { path: PathBuf, expected: u64, decoded: u64 },
    #[error("{}: contains no audio samples", path.display())]
    NoSamples { path: PathBuf },
    #[error("{}: sample rate {rate} Hz is outside {MIN_SOURCE_RATE}..={MAX_SOURCE_RATE} Hz", path.display())]
    BadSampleRate { path: PathBuf, rate: u32 },
    #[error("{}: {duration_s:.1} s is longer than the {max_s:.1} s limit", path.display())]
    TooLong { path: PathBuf, duration_s: f64, max_s: f64 },
    #[error("{}: sample {index} ({time_s:.3} s) is NaN or infinite", path.display())]
    NonFinite { path: PathBuf, index: usize, time_s: f64 },
    #[error("{}: audio is silent (peak below -100 dBFS)", path.display())]
    Silent { path: PathBuf },
    #[error("{}: resampling from {from} Hz failed: {detail}", path.display())]
    Resample { path: PathBuf, from: u32, detail: String },
}

impl AudioError {
    /// Names the usual I/O failures (missing file, a directory) precisely.
    pub fn from_io(path: &Path, source: std::io::Error) -> AudioError {
        let path = path.to_owned();
        match source.kind() {
            std::io::ErrorKind::NotFound => AudioError::NotFound { path },
            std::io::ErrorKind::IsADirectory => AudioError::IsDirectory { path },
            _ => AudioError::Io { path, source },
        }
    }

    /// The file (or upload name) the error is about.
    pub fn path(&self) -> &Path {
        match self {
            AudioError::NotFound { path }
            | AudioError::IsDirectory { path }
            | AudioError::Io { path, .. }
            | AudioError::Empty { path }
            | AudioError::UnknownFormat { path, .. }
            | AudioError::Unsupported { path, .. }
            | AudioError::Corrupt { path, .. }
            | AudioError::Truncated { path, .. }
            | AudioError::NoSamples { path }
            | AudioError::BadSampleRate { path, .. }
            | AudioError::TooLong { path, .. }
            | AudioError::NonFinite { path, .. }
            | AudioError::Silent { path }
            | AudioError::Resample { path, .. } => path,
        }
    }
}

/// What the header says, without decoding the samples.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct AudioInfo {
    pub container: Container,
    pub sample_rate: u32,
    pub channels: usize,
    /// Frames per channel, when the header states it.
    pub n_frames: Option<u64>,
}

impl AudioInfo {
    /// Duration from the header, when it states the length.
    pub fn duration_s(&self) -> Option<f64> {
        self.n_frames.map(|n| n as f64 / f64::from(self.sample_rate))
    }
}

/// Loads `path` as mono audio at [`SAMPLE_RATE`] with the default [`LoadOptions`].
pub fn load(path: impl AsRef<Path>) -> Result<Waveform, AudioError> {
    load_with(path, &LoadOptions::default())
}

/// Loads `path` as mono audio at [`SAMPLE_RATE`].
pub fn load_with(path: impl AsRef<Path>, options: &LoadOptions) -> Result<Waveform, AudioError> {
    let path = path.as_ref();
    let (file, container) = open_file(path)?;
    let decoded = decode(Box::new(file), container, path, options)?;
    finish(decoded, path, options)
}

/// Loads an in-memory file (an upload); `name` stands for the path in errors.
pub fn load_bytes(bytes: &[u8], name: &str, options: &LoadOptions) -> Result<Waveform, AudioError> {
    let path = Path::new(name);
    let container = sniff(bytes, path)?;
    check_header(&bytes[..bytes.len().min(HEADER_LEN)], container, path)?;
    let decoded = decode(Box::new(Cursor::new(bytes.to_vec())), container, path, options)?;
    finish(decoded, path, options)
}

/// Reads the header of `path`: container, rate, channels and length.
pub fn probe(path: impl AsRef<Path>) -> Result<AudioInfo, AudioError> {
    let path = path.as_ref();
    let (file, container) = open_file(path)?;
    let reader = open_reader(Box::new(file), container, path)?;
    track_info(reader.as_ref(), container, path)
}

fn open_file(path: &Path) -> Result<(File, Container), AudioError> {
    let io = |source: std::io::Error| match source.kind() {
        std::io::ErrorKind::NotFound => AudioError::NotFound { path: path.to_owned() },
        _ => AudioError::Io {
            path: path.to_owned(),
            source,
        },
    };
    let meta = std::fs::metadata(path).map_err(io)?;
    if meta.is_dir() {
        return Err(AudioError::IsDirectory { path: path.to_owned() });
    }
    let mut file = File::open(path).map_err(io)?;
    let mut head = Vec::with_capacity(HEADER_LEN);
    (&mut file).take(HEADER_LEN as u64).read_to_end(&mut head).map_err(io)?;
    let container = sniff(&head, path)?;
    check_header(&head, container, path)?;
    file.seek(SeekFrom::Start(0)).map_err(io)?;
    Ok((file, container))
}

/// Refuses header values the decoder cannot take: symphonia 0.5 panics on an
/// AIFF whose sample rate is 0 (found by fuzzing), so the `COMM` chunk's
/// 80-bit rate is read here first. Checked on the first [`HEADER_LEN`] bytes.
fn check_header(head: &[u8], container: Container, path: &Path) -> Result<(), AudioError> {
    if container != Container::Aiff {
        return Ok(());
    }
    let mut pos = 12;
    while pos + 8 <= head.len() {
        let size = u32::from_be_bytes(head[pos + 4..pos + 8].try_into().expect("4 bytes")) as usize;
        if &head[pos..pos + 4] == b"COMM" {
            let Some(rate) = head.get(pos + 16..pos + 26) else {
                break;
            };
            let exponent = i32::from(u16::from_be_bytes([rate[0], rate[1]]) & 0x7fff);
            let negative = rate[0] & 0x80 != 0;
            let mantissa = u64::from_be_bytes(rate[2..10].try_into().expect("8 bytes"));
            let value = mantissa as f64 * 2f64.powi(exponent - 16383 - 63);
            if negative || !value.is_finite() || value < 1.0 {
                return Err(AudioError::Corrupt {
                    path: path.to_owned(),
                    detail: format!("AIFF header gives a sample rate of {value}"),
                });
            }
            break;
        }
        pos = pos.saturating_add(8).saturating_add(size).saturating_add(size & 1);
    }
    Ok(())
}

/// Recognises the container from its magic bytes.
pub fn sniff(head: &[u8], path: &Path) -> Result<Container, AudioError> {
    let unsupported = |what: &str| {
        Err(AudioError::Unsupported {
            path: path.to_owned(),
            what: what.to_owned(),
        })
    };
    if head.is_empty() {
        return Err(AudioError::Empty { path: path.to_owned() });
    }
    let tag = |at: usize, magic: &[u8]| head.get(at..at + magic.len()) == Some(magic);
    if tag(0, b"RIFF") || tag(0, b"RIFX") {
        return if tag(8, b"WAVE") && tag(0, b"RIFF") {
            Ok(Container::Wav)
        } else if tag(8, b"WAVE") {
            unsupported("big-endian RIFX WAV")
        } else {
            unsupported("RIFF file that is not WAVE")
        };
    }
    if tag(0, b"RF64") || tag(0, b"BW64") {
        return unsupported("RF64/BW64 WAV");
    }
    if tag(0, b"FORM") {
        return if tag(8, b"AIFF") || tag(8, b"AIFC") {
            Ok(Container::Aiff)
        } else {
            unsupported("IFF file that is not AIFF")
        };
    }
    if tag(0, b"fLaC") {
        return Ok(Container::Flac);
    }
    if tag(0, b"OggS") {
        return Ok(Container::Ogg);
    }
    if tag(0, b"ID3") {
        // An ID3v2 tag is put before MP3 (and occasionally FLAC) streams; the
        // prober skips it and finds the stream behind.
        return Ok(Container::Mp3);
    }
    if head.len() >= 2 && head[0] == 0xFF && head[1] & 0xE0 == 0xE0 {
        // Layer bits 00 are reserved in MPEG audio: that is AAC's ADTS header.
        return if head[1] & 0x06 == 0 {
            unsupported("AAC (ADTS)")
        } else {
            Ok(Container::Mp3)
        };
    }
    if tag(4, b"ftyp") {
        return unsupported("MP4/M4A");
    }
    if tag(0, &[0x1A, 0x45, 0xDF, 0xA3]) {
        return unsupported("Matroska/WebM");
    }
    if tag(0, b"caff") {
        return unsupported("Core Audio Format");
    }
    if tag(0, b"#!AMR") {
        return unsupported("AMR");
    }
    let magic = head
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(" ");
    Err(AudioError::UnknownFormat {
        path: path.to_owned(),
        magic,
    })
}

fn open_reader(
    source: Box<dyn MediaSource>,
    container: Container,
    path: &Path,
) -> Result<Box<dyn FormatReader>, AudioError> {
    let stream = MediaSourceStream::new(source, Default::default());
    let mut hint = Hint::new();
    hint.with_extension(container.extension());
    let format_options = FormatOptions {
        enable_gapless: true,
        ..Default::default()
    };
    symphonia::default::get_probe()
        .format(&hint, stream, &format_options, &MetadataOptions::default())
        .map(|probed| probed.format)
        .map_err(|err| symphonia_error(err, path))
}

fn track_info(reader: &dyn FormatReader, container: Container, path: &Path) -> Result<AudioInfo, AudioError> {
    let track = reader
        .tracks()
        .iter()
        .find(|track| track.codec_params.codec != CODEC_TYPE_NULL)
        .ok_or_else(|| AudioError::NoSamples { path: path.to_owned() })?;
    let params = &track.codec_params;
    let sample_rate = params.sample_rate.ok_or_else(|| AudioError::Corrupt {
        path: path.to_owned(),
        detail: "header has no sample rate".into(),
    })?;
    check_rate(sample_rate, path)?;
    let channels = params.channels.map(|c| c.count()).unwrap_or(1);
    Ok(AudioInfo {
        container,
        sample_rate,
        channels,
        n_frames: params.n_frames,
    })
}

/// Refuses a rate outside [`MIN_SOURCE_RATE`]..=[`MAX_SOURCE_RATE`].
fn check_rate(rate: u32, path: &Path) -> Result<(), AudioError> {
    if (MIN_SOURCE_RATE..=MAX_SOURCE_RATE).contains(&rate) {
        return Ok(());
    }
    Err(AudioError::BadSampleRate {
        path: path.to_owned(),
        rate,
    })
}

/// Decoded, downmixed audio at its own rate.
struct Decoded {
    samples: Vec<f32>,
    sample_rate: u32,
}

/// Decodes with symphonia, turning a panic inside it into an error: malformed
/// headers can trip its assertions (fuzzing found an AIFF with a sample rate
/// of 0), and one bad file must not take down a batch job or the server.
fn decode(
    source: Box<dyn MediaSource>,
    container: Container,
    path: &Path,
    options: &LoadOptions,
) -> Result<Decoded, AudioError> {
    guarded(path, container, || decode_unguarded(source, container, path, options))
}

fn decode_unguarded(
    source: Box<dyn MediaSource>,
    container: Container,
    path: &Path,
    options: &LoadOptions,
) -> Result<Decoded, AudioError> {
    let mut packets = PacketDecoder::open(source, container, path)?;
    let sample_rate = packets.info.sample_rate;
    let too_long = |n_frames: u64| {
        let duration_s = n_frames as f64 / f64::from(sample_rate);
        (duration_s > options.max_duration_s).then(|| AudioError::TooLong {
            path: path.to_owned(),
            duration_s,
            max_s: options.max_duration_s,
        })
    };
    if let Some(err) = packets.info.n_frames.and_then(too_long) {
        return Err(err);
    }
    let mut samples = Vec::with_capacity(packets.info.n_frames.unwrap_or(0).min(1 << 26) as usize);
    while packets.next_into(&mut samples, path)? {
        if let Some(err) = too_long(samples.len() as u64) {
            return Err(err);
        }
    }
    packets.check_complete(samples.len() as u64, path)?;
    Ok(Decoded { samples, sample_rate })
}

/// A file decoded packet by packet into mono samples at its own rate.
struct PacketDecoder {
    reader: Box<dyn FormatReader>,
    decoder: Box<dyn symphonia::core::codecs::Decoder>,
    track_id: u32,
    buffer: Option<SampleBuffer<f32>>,
    info: AudioInfo,
}

impl PacketDecoder {
    fn open(source: Box<dyn MediaSource>, container: Container, path: &Path) -> Result<PacketDecoder, AudioError> {
        let reader = open_reader(source, container, path)?;
        let info = track_info(reader.as_ref(), container, path)?;
        let track = reader
            .tracks()
            .iter()
            .find(|track| track.codec_params.codec != CODEC_TYPE_NULL)
            .expect("track_info found this track a moment ago");
        let track_id = track.id;
        let decoder = symphonia::default::get_codecs()
            .make(&track.codec_params, &DecoderOptions::default())
            .map_err(|err| symphonia_error(err, path))?;
        Ok(PacketDecoder {
            reader,
            decoder,
            track_id,
            buffer: None,
            info,
        })
    }

    /// Appends the next packet's downmixed samples to `out`; false at the end of the file.
    fn next_into(&mut self, out: &mut Vec<f32>, path: &Path) -> Result<bool, AudioError> {
        loop {
            let packet = match self.reader.next_packet() {
                Ok(packet) => packet,
                Err(SymphoniaError::IoError(err)) if err.kind() == std::io::ErrorKind::UnexpectedEof => {
                    return Ok(false);
                }
                Err(err) => return Err(symphonia_error(err, path)),
            };
            if packet.track_id() != self.track_id {
                continue;
            }
            let decoded = self.decoder.decode(&packet).map_err(|err| symphonia_error(err, path))?;
            let spec = *decoded.spec();
            let channels = spec.channels.count().max(1);
            let buffer = match &mut self.buffer {
                Some(buffer) if buffer.capacity() >= decoded.capacity() * channels => buffer,
                slot => slot.insert(SampleBuffer::new(decoded.capacity() as u64, spec)),
            };
            buffer.copy_interleaved_ref(decoded);
            downmix_into(buffer.samples(), channels, out);
            return Ok(true);
        }
    }

    /// Refuses a file that decoded to nothing or to fewer frames than its header states.
    fn check_complete(&self, decoded: u64, path: &Path) -> Result<(), AudioError> {
        if decoded == 0 {
            return Err(AudioError::NoSamples { path: path.to_owned() });
        }
        // MP3 headers only estimate the length; the lossless containers state it
        // exactly, except that symphonia counts AIFF's 8-byte SSND preamble
        // (offset, block size) as audio: up to 8 frames too many.
        let container = self.info.container;
        let slack = if container == Container::Aiff { 8 } else { 0 };
        if let Some(expected) = self.info.n_frames.filter(|_| container != Container::Mp3)
            && decoded + slack < expected
        {
            return Err(AudioError::Truncated {
                path: path.to_owned(),
                expected,
                decoded,
            });
        }
        Ok(())
    }
}

/// A file of any length as consecutive blocks of mono 16 kHz samples, decoded
/// and resampled as they are read, so memory stays bounded (recordings longer
/// than [`LoadOptions::max_duration_s`]). The blocks joined equal [`load`]'s
/// samples up to rounding: each block is resampled with a second of the
/// source on either side as context (the sinc filter is far shorter), and
/// whole seconds keep both rates' sample grids aligned. Silence is not
/// refused here: a long recording may well start or end with it.
pub struct AudioStream {
    packets: PacketDecoder,
    path: PathBuf,
    /// Source samples not yet returned, after `margin` samples of context.
    pending: Vec<f32>,
    margin: usize,
    decoded: u64,
    returned: usize,
    at_end: bool,
}

/// Seconds of source audio per block of [`AudioStream`].
const STREAM_BLOCK_S: usize = 30;

impl AudioStream {
    pub fn open(path: impl AsRef<Path>) -> Result<AudioStream, AudioError> {
        let path = path.as_ref();
        let (file, container) = open_file(path)?;
        let packets = guarded(path, container, || PacketDecoder::open(Box::new(file), container, path))?;
        Ok(AudioStream {
            packets,
            path: path.to_owned(),
            pending: Vec::new(),
            margin: 0,
            decoded: 0,
            returned: 0,
            at_end: false,
        })
    }

    /// The next block (30 s, the last one shorter), or `None` after the last.
    pub fn next_block(&mut self) -> Option<Result<Vec<f32>, AudioError>> {
        let block = self.next_unguarded();
        if block.is_err() {
            self.pending.clear();
            self.margin = 0;
            self.at_end = true;
        }
        block.transpose()
    }

    fn next_unguarded(&mut self) -> Result<Option<Vec<f32>>, AudioError> {
        let (path, container) = (self.path.clone(), self.packets.info.container);
        let rate = self.packets.info.sample_rate as usize;
        let block = STREAM_BLOCK_S * rate;
        // The block plus a second after it, unless the file ends first.
        let wanted = self.margin + block + rate;
        while self.pending.len() < wanted && !self.at_end {
            let before = self.pending.len();
            let more = guarded(&path, container, || self.packets.next_into(&mut self.pending, &path))?;
            self.decoded += (self.pending.len() - before) as u64;
            if !more {
                self.at_end = true;
                self.packets.check_complete(self.decoded, &path)?;
            }
        }
        if self.pending.len() <= self.margin {
            return Ok(None);
        }
        let last = self.pending.len() < wanted;
        let end = self.pending.len().min(wanted);
        let resampled =
            resample(&self.pending[..end], rate as u32, SAMPLE_RATE).map_err(|detail| AudioError::Resample {
                path: path.clone(),
                from: rate as u32,
                detail,
            })?;
        let skip = self.margin / rate * SAMPLE_RATE as usize;
        let keep = if last {
            resampled.len() - skip
        } else {
            STREAM_BLOCK_S * SAMPLE_RATE as usize
        };
        let samples = resampled[skip..skip + keep].to_vec();
        if let Some(index) = samples.iter().position(|s| !s.is_finite()) {
            let index = self.returned + index;
            return Err(AudioError::NonFinite {
                path,
                index,
                time_s: index as f64 / f64::from(SAMPLE_RATE),
            });
        }
        self.returned += samples.len();
        if last {
            self.pending.clear();
            self.margin = 0;
        } else {
            // The next block starts where this one ended; keep a second before it.
            self.pending.drain(..self.margin + block - rate);
            self.margin = rate;
        }
        Ok(Some(samples))
    }
}

/// Runs one step of symphonia, turning a panic inside it into an error (see [`decode`]).
fn guarded<T>(
    path: &Path,
    container: Container,
    step: impl FnOnce() -> Result<T, AudioError>,
) -> Result<T, AudioError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(step)).unwrap_or_else(|payload| {
        let message = payload
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown".into());
        Err(AudioError::Corrupt {
            path: path.to_owned(),
            detail: format!(
                "malformed {} data: the decoder gave up ({message})",
                container.extension()
            ),
        })
    })
}

/// Averages interleaved channels into `out`.
fn downmix_into(interleaved: &[f32], channels: usize, out: &mut Vec<f32>) {
    if channels == 1 {
        out.extend_from_slice(interleaved);
        return;
    }
    let scale = 1.0 / channels as f32;
    out.extend(
        interleaved
            .chunks_exact(channels)
            .map(|frame| frame.iter().sum::<f32>() * scale),
    );
}

fn symphonia_error(err: SymphoniaError, path: &Path) -> AudioError {
    let path = path.to_owned();
    match err {
        SymphoniaError::Unsupported(what) => AudioError::Unsupported {
            path,
            what: what.to_owned(),
        },
        SymphoniaError::IoError(err) if err.kind() == std::io::ErrorKind::UnexpectedEof => AudioError::Corrupt {
            path,
            detail: "file ends inside a header".into(),
        },
        SymphoniaError::IoError(source) => AudioError::Io { path, source },
        SymphoniaError::DecodeError(detail) => AudioError::Corrupt {
            path,
            detail: detail.to_owned(),
        },
        other => AudioError::Corrupt {
            path,
            detail: other.to_string(),
        },
    }
}

fn finish(decoded: Decoded, path: &Path, options: &LoadOptions) -> Result<Waveform, AudioError> {
    let Decoded { samples, sample_rate } = decoded;
    if let Some(index) = samples.iter().position(|s| !s.is_finite()) {
        let time_s = index as f64 / f64::from(sample_rate);
        return Err(AudioError::NonFinite {
            path: path.to_owned(),
            index,
            time_s,
        });
    }
    let peak = samples.iter().fold(0.0f32, |peak, s| peak.max(s.abs()));
    if peak < SILENCE_PEAK && !options.allow_silent {
        return Err(AudioError::Silent { path: path.to_owned() });
    }
    let samples = resample(&samples, sample_rate, SAMPLE_RATE).map_err(|detail| AudioError::Resample {
        path: path.to_owned(),
        from: sample_rate,
        detail,
    })?;
    Ok(Waveform {
        samples,
        sample_rate: SAMPLE_RATE,
    })
}

/// Mono samples a program already holds (the Python package's arrays), checked
/// and resampled as a decoded file's are; `name` stands for the path in errors.
pub fn from_samples(samples: Vec<f32>, sample_rate: u32, name: &str) -> Result<Waveform, AudioError> {
    let path = Path::new(name);
    check_rate(sample_rate, path)?;
    if samples.is_empty() {
        return Err(AudioError::NoSamples { path: path.to_owned() });
    }
    finish(Decoded { samples, sample_rate }, path, &LoadOptions::default())
}

/// Band-limited resampling of mono audio, delay-compensated so that output
/// sample `k` sits at time `k / to`; the output has `ceil(len · to / from)`
/// samples, as librosa's and soxr's do.
///
/// rubato's windowed-sinc interpolator (Blackman-Harris, 256× oversampled
/// table, cubic interpolation between table entries) does the filtering.
pub fn resample(samples: &[f32], from: u32, to: u32) -> Result<Vec<f32>, String> {
    if from == to {
        return Ok(samples.to_vec());
    }
    let divisor = gcd(from, to);
    let (up, down) = ((to / divisor) as usize, (from / divisor) as usize);
    let ratio = f64::from(to) / f64::from(from);
    // soxr's very-high-quality recipe (what sox's `rate -v` and our shared
    // data use) keeps 95 % of the band; matching it keeps us within ~45 dB of
    // those conversions. The filter spans ~320 output samples at any ratio.
    const BANDWIDTH: f32 = 0.95;
    const SPAN_OUT: f64 = 320.0;
    let sinc_len = ((SPAN_OUT / ratio.min(1.0)) as usize).next_multiple_of(8).max(256);
    let parameters = SincInterpolationParameters {
        sinc_len,
        f_cutoff: BANDWIDTH,
        interpolation: SincInterpolationType::Cubic,
        oversampling_factor: 256,
        window: WindowFunction::BlackmanHarris2,
    };
    const CHUNK: usize = 4096;
    let mut resampler = SincFixedIn::<f32>::new(ratio, 1.0, parameters, CHUNK, 1).map_err(|err| err.to_string())?;
    // Output sample i of rubato 0.16's sinc resampler sits at input position
    // (i + 1)·from/to − 1. Prefixing down − 1 zeros moves that to
    // (i + 1 − up)·from/to, so dropping the first up − 1 outputs puts
    // output sample k exactly at time k / to.
    let lead_in = down - 1;
    let skip = up - 1;
    let wanted = (samples.len() as f64 * ratio).ceil() as usize;
    let mut input = Vec::with_capacity(lead_in + samples.len());
    input.resize(lead_in, 0.0);
    input.extend_from_slice(samples);
    let mut out = Vec::with_capacity(skip + wanted + CHUNK);
    let mut chunks = input.chunks_exact(CHUNK);
    for chunk in &mut chunks {
        let block = resampler.process(&[chunk], None).map_err(|err| err.to_string())?;
        out.extend_from_slice(&block[0]);
    }
    let tail = chunks.remainder();
    // rubato treats an empty partial chunk as "no input buffer" and fails.
    if !tail.is_empty() {
        let block = resampler
            .process_partial(Some(&[tail]), None)
            .map_err(|err| err.to_string())?;
        out.extend_from_slice(&block[0]);
    }
    while out.len() < skip + wanted {
        let block = resampler
            .process_partial(None::<&[&[f32]]>, None)
            .map_err(|err| err.to_string())?;
        out.extend_from_slice(&block[0]);
    }
    out.drain(..skip);
    out.truncate(wanted);
    Ok(out)
}

/// Speed perturbation, as sox's `speed` effect: the clip played `factor`
/// times faster (tempo and pitch together), still at [`SAMPLE_RATE`].
/// Augmentation-grade: rubato's FFT resampler (fast, fixed ratio), its
/// latency removed; `factor` is rounded to a multiple of 1/1600.
pub fn speed_perturb(samples: &[f32], factor: f64) -> Result<Vec<f32>, String> {
    use rubato::FftFixedInOut;
    let from = (f64::from(SAMPLE_RATE) * factor / 10.0).round() as usize * 10;
    let to = SAMPLE_RATE as usize;
    if from == to || samples.is_empty() {
        return Ok(samples.to_vec());
    }
    let mut resampler = FftFixedInOut::<f32>::new(from, to, 1024, 1).map_err(|err| err.to_string())?;
    let delay = resampler.output_delay();
    let wanted = (samples.len() as f64 * to as f64 / from as f64).round() as usize;
    let chunk = resampler.input_frames_next();
    let mut out = Vec::with_capacity(wanted + delay + 2 * chunk);
    let mut padded = samples.to_vec();
    // Enough trailing zeros to flush the delay line, in whole chunks.
    padded.resize((samples.len() + from * delay / to + chunk).next_multiple_of(chunk), 0.0);
    for block in padded.chunks_exact(chunk) {
        let output = resampler.process(&[block], None).map_err(|err| err.to_string())?;
        out.extend_from_slice(&output[0]);
    }
    out.drain(..delay.min(out.len()));
    out.truncate(wanted);
    Ok(out)
}

fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 { a } else { gcd(b, a % b) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn downmix_averages_channels() {
        let mut out = Vec::new();
        downmix_into(&[1.0, 0.0, 0.5, 0.5, -1.0, 1.0], 2, &mut out);
        assert_eq!(out, vec![0.5, 0.5, 0.0]);
    }

    #[test]
    fn resample_keeps_a_tone_and_its_timing() {
        let tone = |rate: u32, n: usize| -> Vec<f32> {
            (0..n)
                .map(|i| (2.0 * std::f32::consts::PI * 440.0 * i as f32 / rate as f32).sin())
                .collect()
        };
        let want = tone(SAMPLE_RATE, 32_000);
        for from in [8_000, 22_050, 24_414, 44_100, 48_000, 96_000] {
            let out = resample(&tone(from, from as usize * 2 + 7), from, SAMPLE_RATE).unwrap();
            let expected_len = ((from as usize * 2 + 7) as f64 * 16_000.0 / f64::from(from)).ceil();
            assert_eq!(out.len(), expected_len as usize, "from {from}");
            // Away from the edges the resampled tone is the tone sampled at 16 kHz:
            // right amplitude and no shift in time.
            let err = out[1000..31_000]
                .iter()
                .zip(&want[1000..31_000])
                .map(|(a, b)| (a - b).abs())
                .fold(0.0f32, f32::max);
            // Cubic interpolation of the sinc table limits accuracy to ~-55 dB.
            assert!(err < 3e-3, "from {from}: max error {err}");
        }
    }

    #[test]
    fn resample_keeps_a_click_in_place() {
        let mut click = vec![0.0f32; 48_000];
        click[30_000] = 1.0;
        let out = resample(&click, 48_000, SAMPLE_RATE).unwrap();
        let peak = out.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).unwrap().0;
        assert_eq!(peak, 10_000);
        let asymmetry = (out[9_999] - out[10_001]).abs();
        assert!(
            asymmetry < 1e-3,
            "the filter is symmetric around the click: {asymmetry}"
        );
    }

    #[test]
    fn sniff_names_unsupported_containers() {
        let path = Path::new("x.wav");
        assert!(matches!(
            sniff(b"\x1aE\xdf\xa3....", path),
            Err(AudioError::Unsupported { .. })
        ));
        assert!(matches!(
            sniff(b"....ftypM4A ", path),
            Err(AudioError::Unsupported { .. })
        ));
        assert!(matches!(
            sniff(b"hello world!", path),
            Err(AudioError::UnknownFormat { .. })
        ));
        assert_eq!(sniff(b"FORM\0\0\0\0AIFF", path).unwrap(), Container::Aiff);
    }
}
