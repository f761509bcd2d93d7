//! The audio mix of a conference: each participant hears everyone but themselves. Every 20 ms
//! the owner puts each participant's latest frame (decoded to linear samples) and takes one
//! frame per participant back: the sum of all the others' (a muted participant is heard by
//! nobody, hears everyone), clipped to 16 bits. The sum of all is made once, and each
//! participant's own frame is taken out of it: the cost grows with the number of participants,
//! not with its square.

use crate::audio::{Frame, FRAME};

struct Participant {
    id: u64,
    muted: bool,
    /// This tick's frame, if one came.
    input: Option<Frame>,
}

/// A conference's mix.
#[derive(Default)]
pub struct Mixer {
    participants: Vec<Participant>,
}

impl Mixer {
    /// Adds participant `id` (again: nothing changes).
    pub fn add(&mut self, id: u64) {
        if !self.participants.iter().any(|p| p.id == id) {
            self.participants.push(Participant {
                id,
                muted: false,
                input: None,
            });
        }
    }

    pub fn remove(&mut self, id: u64) {
        self.participants.retain(|p| p.id != id);
    }

    /// Mutes or unmutes `id`; false when it is not a participant.
    pub fn set_muted(&mut self, id: u64, muted: bool) -> bool {
        match self.participants.iter_mut().find(|p| p.id == id) {
            Some(p) => {
                p.muted = muted;
                true
            }
            None => false,
        }
    }

    pub fn is_muted(&self, id: u64) -> Option<bool> {
        self.participants
            .iter()
            .find(|p| p.id == id)
            .map(|p| p.muted)
    }

    pub fn len(&self) -> usize {
        self.participants.len()
    }

    pub fn is_empty(&self) -> bool {
        self.participants.is_empty()
    }

    /// `id`'s frame for this tick (a later one in the same tick replaces it).
    pub fn put(&mut self, id: u64, frame: &Frame) {
        if let Some(p) = self.participants.iter_mut().find(|p| p.id == id) {
            p.input = Some(*frame);
        }
    }

    /// What each participant hears this tick, in the order they joined; the inputs are used
    /// up.
    pub fn mix(&mut self) -> Vec<(u64, Frame)> {
        let mut total = [0i32; FRAME];
        for p in self.participants.iter().filter(|p| !p.muted) {
            if let Some(f) = &p.input {
                for (t, s) in total.iter_mut().zip(f) {
                    *t += i32::from(*s);
                }
            }
        }
        let mut out = Vec::with_capacity(self.participants.len());
        for p in &mut self.participants {
            let own = p.input.take().filter(|_| !p.muted);
            let mut frame = [0i16; FRAME];
            for (i, o) in frame.iter_mut().enumerate() {
                let heard = total[i] - own.map_or(0, |f| i32::from(f[i]));
                *o = heard.clamp(i32::from(i16::MIN), i32::from(i16::MAX)) as i16;
            }
            out.push((p.id, frame));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tone::{power, sine};

    #[test]
    fn each_participant_hears_the_others_and_not_itself() {
        let mut m = Mixer::default();
        for id in [1, 2, 3] {
            m.add(id);
        }
        let (a, b) = (sine(440.0, 4000.0, 0), sine(1000.0, 4000.0, 0));
        m.put(1, &a);
        m.put(2, &b);
        let out = m.mix();
        let heard = |id: u64| out.iter().find(|(i, _)| *i == id).unwrap().1;
        let (one, two, three) = (heard(1), heard(2), heard(3));
        assert!(
            power(&three, 440.0) > 1e5 && power(&three, 1000.0) > 1e5,
            "C hears both tones"
        );
        assert!(power(&one, 1000.0) > 1e5, "A hears B");
        assert!(
            power(&one, 440.0) < power(&one, 1000.0) / 100.0,
            "A does not hear itself"
        );
        assert!(
            power(&two, 1000.0) < power(&two, 440.0) / 100.0,
            "B does not hear itself"
        );
        // the inputs were used up: silence next tick
        assert!(m.mix().iter().all(|(_, f)| f.iter().all(|&s| s == 0)));
    }

    #[test]
    fn a_muted_participant_is_heard_by_nobody_but_hears_everyone() {
        let mut m = Mixer::default();
        m.add(1);
        m.add(2);
        m.add(2);
        assert_eq!(m.len(), 2, "added once");
        assert!(m.set_muted(1, true));
        assert!(!m.set_muted(9, true));
        m.put(1, &sine(440.0, 4000.0, 0));
        m.put(2, &sine(1000.0, 4000.0, 0));
        let out = m.mix();
        assert!(
            out[0].1.iter().any(|&s| s != 0),
            "the muted one hears the other"
        );
        assert!(
            out[1].1.iter().all(|&s| s == 0),
            "nobody hears the muted one"
        );
        m.remove(1);
        assert_eq!(m.is_muted(1), None);
    }

    #[test]
    fn loud_sums_are_clipped_not_wrapped() {
        let mut m = Mixer::default();
        for id in 0..4 {
            m.add(id);
            m.put(id, &[30_000; FRAME]);
        }
        let out = m.mix();
        assert!(out.iter().all(|(_, f)| f.iter().all(|&s| s == i16::MAX)));
    }
}
