//! The RTP port range: even ports handed out to streams (the odd one above each is its
//! RTCP's, RFC 3550 §11) and taken back when the stream closes, least recently used first so
//! that late packets of a closed stream do not reach a new one.

use std::collections::{HashSet, VecDeque};

/// Ports in use and free.
#[derive(Debug)]
pub struct PortPool {
    free: VecDeque<u16>,
    used: HashSet<u16>,
}

impl PortPool {
    /// Every even port from `first` whose RTCP port (the next) is `last` at most.
    pub fn new(first: u16, last: u16) -> Self {
        let start = first + first % 2;
        Self {
            free: (start..last).step_by(2).collect(),
            used: HashSet::new(),
        }
    }

    /// A free port, or `None` when every one is in use.
    pub fn take(&mut self) -> Option<u16> {
        let port = self.free.pop_front()?;
        self.used.insert(port);
        Some(port)
    }

    /// Gives `port` back (a port not handed out is ignored).
    pub fn give_back(&mut self, port: u16) {
        if self.used.remove(&port) {
            self.free.push_back(port);
        }
    }

    /// How many are handed out.
    pub fn in_use(&self) -> usize {
        self.used.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn even_ports_are_handed_out_once_and_reused_last() {
        assert_eq!(
            PortPool::new(20_000, 20_004).free.len(),
            2,
            "20004 has no RTCP port in range"
        );
        let mut p = PortPool::new(20_001, 20_007);
        assert_eq!(
            (p.take(), p.take(), p.take()),
            (Some(20_002), Some(20_004), Some(20_006))
        );
        assert_eq!(p.take(), None, "the range is used up");
        p.give_back(20_004);
        p.give_back(20_004);
        p.give_back(1);
        assert_eq!(p.in_use(), 2);
        assert_eq!(p.take(), Some(20_004));
        assert_eq!(p.in_use(), 3);
    }
}
