//! RAVDESS (Livingstone & Russo, 2018): `Actor_XX/MM-CC-EE-II-SS-RR-AA.wav`.
//!
//! Seven two-digit fields: modality, vocal channel (01 speech, 02 song),
//! emotion, intensity, statement, repetition, actor (01–24).

use std::path::Path;

use super::{Clip, Corpus, Emotion, file_stem, look_up};

/// RAVDESS emotion codes.
const EMOTIONS: [(&str, Emotion); 8] = [
    ("01", Emotion::Neutral),
    ("02", Emotion::Calm),
    ("03", Emotion::Happy),
    ("04", Emotion::Sad),
    ("05", Emotion::Angry),
    ("06", Emotion::Fear),
    ("07", Emotion::Disgust),
    ("08", Emotion::Surprise),
];

/// Parses a RAVDESS speech file name.
pub fn parse(path: &Path) -> Result<Clip, String> {
    let stem = file_stem(path)?;
    let fields: Vec<&str> = stem.split('-').collect();
    let two_digits = |f: &&str| f.len() == 2 && f.bytes().all(|b| b.is_ascii_digit());
    if fields.len() != 7 || !fields.iter().all(two_digits) {
        return Err("not a RAVDESS name (want 7 dash-separated two-digit fields)".into());
    }
    let [_modality, channel, code, _intensity, _statement, _repetition, actor] = fields[..] else {
        unreachable!("length checked above")
    };
    if channel != "01" {
        return Err(format!("RAVDESS vocal channel {channel} is not speech (01)"));
    }
    let emotion = look_up(&EMOTIONS, &code).ok_or_else(|| format!("unknown RAVDESS emotion code {code}"))?;
    let actor_number: u32 = actor.parse().expect("two ASCII digits parse");
    if !(1..=24).contains(&actor_number) {
        return Err(format!("RAVDESS actor {actor} is outside 01..24"));
    }
    Ok(Clip::new(
        path,
        Corpus::Ravdess,
        Some(format!("ravdess:{actor}")),
        emotion.as_str(),
        code,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_label_and_actor() {
        let clip = parse(Path::new("Actor_12/03-01-06-01-02-01-12.flac")).unwrap();
        assert_eq!(clip.label, "fear");
        assert_eq!(clip.native_label, "06");
        assert_eq!(clip.speaker.as_deref(), Some("ravdess:12"));
    }

    #[test]
    fn refuses_song_and_bad_codes() {
        assert!(
            parse(Path::new("03-02-06-01-02-01-12.wav"))
                .unwrap_err()
                .contains("not speech")
        );
        assert!(
            parse(Path::new("03-01-09-01-02-01-12.wav"))
                .unwrap_err()
                .contains("emotion code")
        );
        assert!(
            parse(Path::new("03-01-06-01-02-01-25.wav"))
                .unwrap_err()
                .contains("actor")
        );
        assert!(parse(Path::new("03-01-06-01-02-01.wav")).is_err());
    }
}
