//! The order in which a group offers a call to its agents, by its routing method. Which agents
//! may take calls is the caller's knowledge (signed in, presence, already in a call); this
//! module only orders them.

use crate::model::Routing;

/// One member of a group as the hunt sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Agent {
    /// Takes calls from this group: a member of an informal group, or signed in to a formal
    /// one.
    pub signed_in: bool,
    /// Free to take a call: presence not Busy, In a call, Do Not Disturb or Offline, and not
    /// in a response-group call.
    pub available: bool,
    /// When the agent's last response-group call ended (or they signed in), unix seconds;
    /// 0 for never.
    pub idle_since: i64,
}

/// Who is offered the call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Offer {
    /// These agents (indexes into the group), one after another, each for the alert time.
    OneByOne(Vec<usize>),
    /// These agents at once, for the alert time.
    Together(Vec<usize>),
}

impl Offer {
    pub fn is_empty(&self) -> bool {
        match self {
            Self::OneByOne(a) | Self::Together(a) => a.is_empty(),
        }
    }
}

/// The offer of a call to a group's `agents` by `routing`. `after` is the agent who was
/// offered the group's last call (round robin starts with the one after).
pub fn offer(routing: Routing, agents: &[Agent], after: Option<usize>) -> Offer {
    let free = |i: &usize| agents[*i].signed_in && agents[*i].available;
    let all = 0..agents.len();
    match routing {
        Routing::Serial => Offer::OneByOne(all.filter(free).collect()),
        Routing::RoundRobin => {
            let start = after.map_or(0, |a| a + 1);
            let n = agents.len();
            Offer::OneByOne((0..n).map(|k| (start + k) % n).filter(free).collect())
        }
        Routing::LongestIdle => {
            let mut order: Vec<usize> = all.filter(free).collect();
            // stable: equally idle agents keep the group's order
            order.sort_by_key(|&i| agents[i].idle_since);
            Offer::OneByOne(order)
        }
        Routing::Parallel => Offer::Together(all.filter(free).collect()),
        Routing::Attendant => Offer::Together(all.filter(|&i| agents[i].signed_in).collect()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agents(spec: &[(bool, bool, i64)]) -> Vec<Agent> {
        spec.iter()
            .map(|&(signed_in, available, idle_since)| Agent {
                signed_in,
                available,
                idle_since,
            })
            .collect()
    }

    #[test]
    fn each_routing_method_orders_the_agents_it_may_offer() {
        // 0 free idle since 300; 1 busy; 2 free idle since 100; 3 not signed in; 4 free, never
        let a = agents(&[
            (true, true, 300),
            (true, false, 0),
            (true, true, 100),
            (false, true, 0),
            (true, true, 0),
        ]);
        assert_eq!(
            offer(Routing::Serial, &a, Some(2)),
            Offer::OneByOne(vec![0, 2, 4])
        );
        assert_eq!(
            offer(Routing::RoundRobin, &a, None),
            Offer::OneByOne(vec![0, 2, 4])
        );
        assert_eq!(
            offer(Routing::RoundRobin, &a, Some(0)),
            Offer::OneByOne(vec![2, 4, 0])
        );
        assert_eq!(
            offer(Routing::RoundRobin, &a, Some(4)),
            Offer::OneByOne(vec![0, 2, 4])
        );
        assert_eq!(
            offer(Routing::LongestIdle, &a, None),
            Offer::OneByOne(vec![4, 2, 0])
        );
        assert_eq!(
            offer(Routing::Parallel, &a, None),
            Offer::Together(vec![0, 2, 4])
        );
        assert_eq!(
            offer(Routing::Attendant, &a, None),
            Offer::Together(vec![0, 1, 2, 4]),
            "attendant rings busy agents too, never those signed out"
        );
        assert!(offer(Routing::Serial, &agents(&[(false, true, 0)]), None).is_empty());
    }
}
