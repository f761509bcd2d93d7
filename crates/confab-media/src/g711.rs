//! G.711 (ITU-T): 16-bit linear samples to 8-bit µ-law or A-law and back. Encoding works on
//! the magnitude's highest set bit (the segment) and the four bits below it (the step in it).

/// µ-law's bias: added before the segment is found so that the segments start at zero.
const ULAW_BIAS: i32 = 0x84;
/// The largest magnitude µ-law encodes before the bias would overflow 15 bits.
const ULAW_CLIP: i32 = 32_635;

/// µ-law silence (a zero sample).
pub const ULAW_SILENCE: u8 = 0xFF;
/// A-law silence (a zero sample).
pub const ALAW_SILENCE: u8 = 0xD5;

/// One linear sample to µ-law.
pub fn ulaw_encode(sample: i16) -> u8 {
    let mut s = i32::from(sample);
    let sign = if s < 0 {
        s = -s;
        0x80
    } else {
        0
    };
    let s = s.min(ULAW_CLIP) + ULAW_BIAS;
    // s >= 0x84: its highest bit is 7 at least and 14 at most
    let segment = (s.ilog2() as i32 - 7).clamp(0, 7);
    let step = (s >> (segment + 3)) & 0x0F;
    !(sign | (segment << 4) | step) as u8
}

/// One µ-law byte to a linear sample.
pub fn ulaw_decode(byte: u8) -> i16 {
    let u = !byte;
    let segment = i32::from((u >> 4) & 0x07);
    let step = i32::from(u & 0x0F);
    let magnitude = (((step << 3) + ULAW_BIAS) << segment) - ULAW_BIAS;
    if u & 0x80 != 0 {
        -magnitude as i16
    } else {
        magnitude as i16
    }
}

/// One linear sample to A-law.
pub fn alaw_encode(sample: i16) -> u8 {
    // A-law codes 13 bits; negative values by their one's complement
    let s = i32::from(sample) >> 3;
    let (sign, magnitude) = if s >= 0 { (0x80, s) } else { (0, -s - 1) };
    let magnitude = magnitude.min(0x0FFF);
    let (segment, step) = if magnitude < 32 {
        (0, magnitude >> 1)
    } else {
        let segment = magnitude.ilog2() as i32 - 4;
        (segment, (magnitude >> segment) & 0x0F)
    };
    ((sign | (segment << 4) | step) ^ 0x55) as u8
}

/// One A-law byte to a linear sample.
pub fn alaw_decode(byte: u8) -> i16 {
    let a = i32::from(byte ^ 0x55);
    let segment = (a >> 4) & 0x07;
    let step = a & 0x0F;
    // the middle of the step, in 13-bit units
    let magnitude = if segment == 0 {
        (step << 1) + 1
    } else {
        ((step << 1) + 33) << (segment - 1)
    };
    let s = (magnitude << 3) as i16;
    if a & 0x80 != 0 {
        s
    } else {
        -s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn silence_has_its_well_known_codes() {
        assert_eq!(ulaw_encode(0), ULAW_SILENCE);
        assert_eq!(alaw_encode(0), ALAW_SILENCE);
        assert_eq!(ulaw_decode(ULAW_SILENCE), 0);
        assert!(alaw_decode(ALAW_SILENCE).abs() <= 8);
    }

    #[test]
    fn full_scale_is_the_last_step_of_the_last_segment() {
        assert_eq!(ulaw_encode(i16::MAX), 0x80);
        assert_eq!(ulaw_encode(i16::MIN + 1), 0x00);
        assert_eq!(alaw_encode(i16::MAX), 0xAA);
        assert_eq!(alaw_encode(i16::MIN), 0x2A);
    }

    /// Every code decodes to a value that encodes back to the same code, and any sample lands
    /// within half a step (about 3 % of its magnitude, or a few units near zero).
    #[test]
    fn codes_round_trip_and_samples_stay_close() {
        for code in 0..=255u8 {
            if code != 0x7F {
                // 0x7F and 0xFF are µ-law's two zeros
                assert_eq!(ulaw_encode(ulaw_decode(code)), code, "µ-law {code:#x}");
            }
            assert_eq!(alaw_encode(alaw_decode(code)), code, "A-law {code:#x}");
        }
        for s in (i16::MIN + 1..=i16::MAX).step_by(7) {
            for (name, back) in [
                ("µ-law", ulaw_decode(ulaw_encode(s))),
                ("A-law", alaw_decode(alaw_encode(s))),
            ] {
                let err = (i32::from(s) - i32::from(back)).abs();
                let bound = (i32::from(s).abs() / 16).max(16);
                assert!(err <= bound, "{name}: {s} came back {back}");
            }
        }
    }
}
