//! EmoDB (Burkhardt et al., 2005): `wav/03a01Fa.wav`.
//!
//! Seven characters: speaker (two digits), text (`a01`…`b10`), emotion (a
//! German initial), version letter. Boredom has no canonical counterpart and
//! keeps its own label.

use std::path::Path;

use super::{Clip, Corpus, file_stem, look_up};

/// EmoDB emotion letters and their labels.
const EMOTIONS: [(u8, &str); 7] = [
    (b'W', "angry"),   // Ärger
    (b'L', "boredom"), // Langeweile
    (b'E', "disgust"), // Ekel
    (b'A', "fear"),    // Angst
    (b'F', "happy"),   // Freude
    (b'T', "sad"),     // Trauer
    (b'N', "neutral"),
];

/// The ten speakers; female: 08, 09, 13, 14, 16.
pub const SPEAKERS: [&str; 10] = ["03", "08", "09", "10", "11", "12", "13", "14", "15", "16"];
pub const FEMALE_SPEAKERS: [&str; 5] = ["08", "09", "13", "14", "16"];

/// Parses an EmoDB file name.
pub fn parse(path: &Path) -> Result<Clip, String> {
    let stem = file_stem(path)?;
    let bytes = stem.as_bytes();
    let is_name = bytes.len() == 7
        && bytes[..2].iter().all(u8::is_ascii_digit)
        && matches!(bytes[2], b'a' | b'b')
        && bytes[3..5].iter().all(u8::is_ascii_digit)
        && bytes[6].is_ascii_lowercase();
    if !is_name {
        return Err("not an EmoDB name (want <speaker><text><emotion><version>, e.g. 03a01Fa)".into());
    }
    let speaker = &stem[..2];
    if !SPEAKERS.contains(&speaker) {
        return Err(format!("unknown EmoDB speaker {speaker}"));
    }
    let native = &stem[5..6];
    let label = look_up(&EMOTIONS, &bytes[5]).ok_or_else(|| format!("unknown EmoDB emotion letter '{native}'"))?;
    Ok(Clip::new(
        path,
        Corpus::Emodb,
        Some(format!("emodb:{speaker}")),
        label,
        native,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_speaker_and_emotion() {
        let clip = parse(Path::new("wav/03a01Fa.flac")).unwrap();
        assert_eq!((clip.label.as_str(), clip.native_label.as_str()), ("happy", "F"));
        assert_eq!(clip.speaker.as_deref(), Some("emodb:03"));
        let bored = parse(Path::new("wav/16b10Lb.wav")).unwrap();
        assert_eq!(bored.label, "boredom");
    }

    #[test]
    fn refuses_other_names() {
        assert!(
            parse(Path::new("wav/03a01Xa.wav"))
                .unwrap_err()
                .contains("emotion letter")
        );
        assert!(parse(Path::new("wav/04a01Fa.wav")).unwrap_err().contains("speaker"));
        assert!(parse(Path::new("wav/03c01Fa.wav")).is_err());
        assert!(parse(Path::new("wav/03a01F.wav")).is_err());
        assert!(parse(Path::new("03-01-06-01-02-01-12.wav")).is_err());
    }
}
