//! Prompts and music as [`Clip`]s: 8 kHz audio kept in both G.711 laws, ready to be cut into
//! 20 ms frames. WAV files are read with `hound`, mixed down to mono and resampled to 8 kHz;
//! what cannot be read is refused with the command that converts it.

use std::time::Duration;

/// Samples per second of every clip (G.711's rate).
pub const RATE: u32 = 8_000;
/// Samples in one 20 ms frame: one RTP packet's payload.
pub const FRAME: usize = 160;
/// One frame of linear samples.
pub type Frame = [i16; FRAME];
/// The longest clip taken (ten minutes): a longer file is surely a mistake.
pub const MAX_SECONDS: u32 = 600;

/// The command that converts any audio file to what Confab plays.
pub const CONVERT: &str = "sox INPUT -r 8000 -c 1 -b 16 -e signed-integer OUTPUT.wav";

/// A sound ready to play.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Clip {
    ulaw: Vec<u8>,
    alaw: Vec<u8>,
}

/// Why a file is not a clip.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AudioError {
    /// Not a WAV file hound can read.
    #[error("not a readable WAV file ({0}); convert it: {CONVERT}")]
    NotWav(String),
    /// A WAV in a format not played (floating point, compressed, over 32 bits).
    #[error("unsupported WAV format: {0}; convert it: {CONVERT}")]
    Unsupported(String),
    /// No samples.
    #[error("the file holds no audio")]
    Empty,
    /// Longer than [`MAX_SECONDS`].
    #[error("longer than {MAX_SECONDS} seconds")]
    TooLong,
}

impl Clip {
    /// A clip of 8 kHz linear samples.
    pub fn from_pcm(samples: &[i16]) -> Self {
        Self {
            ulaw: samples
                .iter()
                .map(|&s| crate::g711::ulaw_encode(s))
                .collect(),
            alaw: samples
                .iter()
                .map(|&s| crate::g711::alaw_encode(s))
                .collect(),
        }
    }

    /// A clip from its stored form (µ-law bytes, [`Clip::ulaw`]).
    pub fn from_ulaw(ulaw: Vec<u8>) -> Self {
        let alaw = ulaw
            .iter()
            .map(|&u| crate::g711::alaw_encode(crate::g711::ulaw_decode(u)))
            .collect();
        Self { ulaw, alaw }
    }

    /// A WAV file's audio: integer PCM of 8 to 32 bits, any channel count (mixed down), any
    /// rate from 8 kHz (resampled).
    pub fn from_wav(bytes: &[u8]) -> Result<Self, AudioError> {
        let mut reader =
            hound::WavReader::new(std::io::Cursor::new(bytes)).map_err(|e| match e {
                hound::Error::Unsupported => AudioError::Unsupported("not integer PCM".into()),
                e => AudioError::NotWav(e.to_string()),
            })?;
        let spec = reader.spec();
        if spec.sample_format != hound::SampleFormat::Int {
            return Err(AudioError::Unsupported("floating-point samples".into()));
        }
        if !(RATE..=192_000).contains(&spec.sample_rate) {
            return Err(AudioError::Unsupported(format!(
                "{} Hz (8000 Hz or more needed)",
                spec.sample_rate
            )));
        }
        let frames = u64::from(reader.duration());
        if frames > u64::from(MAX_SECONDS) * u64::from(spec.sample_rate) {
            return Err(AudioError::TooLong);
        }
        let shift = u32::from(spec.bits_per_sample).saturating_sub(16);
        let up = 16u32.saturating_sub(u32::from(spec.bits_per_sample));
        let channels = usize::from(spec.channels.max(1));
        let mut mono = Vec::with_capacity(frames as usize);
        let mut sum = 0i64;
        for (i, s) in reader.samples::<i32>().enumerate() {
            let s = s.map_err(|e| AudioError::NotWav(e.to_string()))?;
            sum += i64::from((s >> shift) << up);
            if (i + 1) % channels == 0 {
                mono.push((sum / channels as i64) as i16);
                sum = 0;
            }
        }
        if mono.is_empty() {
            return Err(AudioError::Empty);
        }
        Ok(Self::from_pcm(&resample(&mono, spec.sample_rate)))
    }

    /// The music played when none is configured: a gentle tune of a few seconds, made here
    /// so that a deployment needs no file to start.
    pub fn tune() -> Self {
        // a broken chord up and down, each note 400 ms with a soft attack and decay
        const NOTES: [f64; 8] = [
            261.63, 329.63, 392.00, 523.25, 392.00, 329.63, 293.66, 349.23,
        ];
        let per_note = RATE as usize * 2 / 5;
        let mut pcm = Vec::with_capacity(per_note * NOTES.len());
        for f in NOTES {
            for i in 0..per_note {
                let t = i as f64 / f64::from(RATE);
                let envelope = (i.min(per_note - i) as f64 / 400.0).min(1.0);
                let tone = (2.0 * std::f64::consts::PI * f * t).sin()
                    + 0.3 * (4.0 * std::f64::consts::PI * f * t).sin();
                pcm.push((tone * envelope * 6_000.0) as i16);
            }
        }
        Self::from_pcm(&pcm)
    }

    /// The µ-law bytes: how a clip is stored.
    pub fn ulaw(&self) -> &[u8] {
        &self.ulaw
    }

    /// The bytes of `law`.
    pub fn bytes(&self, law: crate::Law) -> &[u8] {
        match law {
            crate::Law::Ulaw => &self.ulaw,
            crate::Law::Alaw => &self.alaw,
        }
    }

    /// How many 20 ms frames it takes (the last one padded with silence).
    pub fn frames(&self) -> usize {
        self.ulaw.len().div_ceil(FRAME)
    }

    pub fn duration(&self) -> Duration {
        Duration::from_millis(self.ulaw.len() as u64 * 1000 / u64::from(RATE))
    }
}

/// `samples` at `rate` to 8 kHz: each output sample the mean of the input samples its
/// period covers (a box filter against aliasing), linear interpolation when rates are close.
pub fn resample(samples: &[i16], rate: u32) -> Vec<i16> {
    if rate == RATE {
        return samples.to_vec();
    }
    let ratio = f64::from(rate) / f64::from(RATE);
    let out_len = (samples.len() as f64 / ratio) as usize;
    let mut out = Vec::with_capacity(out_len);
    for i in 0..out_len {
        let start = i as f64 * ratio;
        let (a, b) = (
            start as usize,
            ((start + ratio) as usize).min(samples.len()),
        );
        let s = if b > a + 1 {
            let sum: i64 = samples[a..b].iter().map(|&s| i64::from(s)).sum();
            (sum / (b - a) as i64) as i16
        } else {
            let next = samples.get(a + 1).copied().unwrap_or(samples[a]);
            let frac = start - a as f64;
            (f64::from(samples[a]) * (1.0 - frac) + f64::from(next) * frac) as i16
        };
        out.push(s);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wav(spec: hound::WavSpec, samples: impl Iterator<Item = i32>) -> Vec<u8> {
        let mut cursor = std::io::Cursor::new(Vec::new());
        let mut w = hound::WavWriter::new(&mut cursor, spec).unwrap();
        for s in samples {
            w.write_sample(s).unwrap();
        }
        w.finalize().unwrap();
        cursor.into_inner()
    }

    fn spec(channels: u16, rate: u32, bits: u16) -> hound::WavSpec {
        hound::WavSpec {
            channels,
            sample_rate: rate,
            bits_per_sample: bits,
            sample_format: hound::SampleFormat::Int,
        }
    }

    #[test]
    fn an_8khz_mono_file_is_taken_as_it_is() {
        let bytes = wav(spec(1, 8000, 16), (0..800).map(|i| i * 10));
        let clip = Clip::from_wav(&bytes).unwrap();
        assert_eq!(clip.ulaw().len(), 800);
        assert_eq!(clip.frames(), 5);
        assert_eq!(clip.duration(), Duration::from_millis(100));
        assert_eq!(clip.ulaw()[0], crate::g711::ulaw_encode(0));
        assert_eq!(clip.ulaw()[799], crate::g711::ulaw_encode(7990));
    }

    #[test]
    fn espeak_output_22050_hz_is_resampled_and_stereo_is_mixed_down() {
        let second = wav(spec(1, 22_050, 16), (0..22_050).map(|_| 1000));
        assert_eq!(Clip::from_wav(&second).unwrap().ulaw().len(), 8000);
        let stereo = wav(
            spec(2, 8000, 16),
            (0..1600).map(|i| if i % 2 == 0 { 2000 } else { 0 }),
        );
        let clip = Clip::from_wav(&stereo).unwrap();
        assert_eq!(clip.ulaw().len(), 800);
        assert_eq!(clip.ulaw()[3], crate::g711::ulaw_encode(1000));
        let eight_bit = wav(spec(1, 8000, 8), (0..160).map(|_| 64));
        let clip = Clip::from_wav(&eight_bit).unwrap();
        assert_eq!(clip.ulaw()[0], crate::g711::ulaw_encode(64 << 8));
    }

    #[test]
    fn unreadable_files_are_refused_with_the_conversion_to_run() {
        let float = {
            let mut cursor = std::io::Cursor::new(Vec::new());
            let s = hound::WavSpec {
                sample_format: hound::SampleFormat::Float,
                bits_per_sample: 32,
                ..spec(1, 8000, 32)
            };
            let mut w = hound::WavWriter::new(&mut cursor, s).unwrap();
            w.write_sample(0.5f32).unwrap();
            w.finalize().unwrap();
            cursor.into_inner()
        };
        let e = Clip::from_wav(&float).unwrap_err();
        assert!(matches!(e, AudioError::Unsupported(_)), "{e}");
        assert!(e.to_string().contains("sox INPUT -r 8000"), "{e}");
        assert!(matches!(
            Clip::from_wav(b"RIFF....nonsense"),
            Err(AudioError::NotWav(_))
        ));
        let low = wav(spec(1, 4000, 16), (0..10).map(|_| 0));
        assert!(Clip::from_wav(&low)
            .unwrap_err()
            .to_string()
            .contains("4000 Hz"));
        let empty = wav(spec(1, 8000, 16), std::iter::empty());
        assert_eq!(Clip::from_wav(&empty), Err(AudioError::Empty));
    }

    #[test]
    fn the_built_in_tune_is_audible_and_stored_form_round_trips() {
        let tune = Clip::tune();
        assert!(tune.duration() >= Duration::from_secs(3));
        let loud = tune
            .ulaw()
            .iter()
            .filter(|&&u| crate::g711::ulaw_decode(u).abs() > 1000)
            .count();
        assert!(loud > tune.ulaw().len() / 3, "not silence: {loud}");
        assert_eq!(Clip::from_ulaw(tune.ulaw().to_vec()).ulaw(), tune.ulaw());
    }
}
