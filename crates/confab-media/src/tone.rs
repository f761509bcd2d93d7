//! Tones for tests and prompts: a sine frame, and how much of a frequency a frame holds (the
//! Goertzel algorithm: one frequency's power without a whole FFT), so a test can tell which
//! participants' tones reached whom.

use crate::audio::{Frame, FRAME, RATE};

/// A frame of a `freq` Hz sine of amplitude `amp`, starting `offset` samples into the tone.
pub fn sine(freq: f64, amp: f64, offset: usize) -> Frame {
    let mut f = [0i16; FRAME];
    for (i, s) in f.iter_mut().enumerate() {
        let t = (offset + i) as f64 / f64::from(RATE);
        *s = (amp * (2.0 * std::f64::consts::PI * freq * t).sin()) as i16;
    }
    f
}

/// The power of `freq` Hz in `samples` (8 kHz), in arbitrary units that compare.
pub fn power(samples: &[i16], freq: f64) -> f64 {
    let w = 2.0 * std::f64::consts::PI * freq / f64::from(RATE);
    let coeff = 2.0 * w.cos();
    let (mut s1, mut s2) = (0.0f64, 0.0f64);
    for &x in samples {
        let s0 = f64::from(x) + coeff * s1 - s2;
        s2 = s1;
        s1 = s0;
    }
    (s1 * s1 + s2 * s2 - coeff * s1 * s2) / samples.len().max(1) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tone_shows_at_its_frequency_only() {
        let f = sine(440.0, 8000.0, 0);
        assert!(power(&f, 440.0) > 100.0 * power(&f, 1000.0));
        assert!(power(&[0; 160], 440.0) == 0.0);
        // continuous across frames: the next frame starts where this one would go on
        let expected =
            (1000.0 * (2.0 * std::f64::consts::PI * 500.0 * 160.0 / 8000.0).sin()) as i16;
        assert_eq!(sine(500.0, 1000.0, 160)[0], expected);
    }
}
