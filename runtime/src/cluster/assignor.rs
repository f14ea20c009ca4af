//! The leader's incremental cooperative assignor.
//!
//! Work only moves in two steps: a rebalance first revokes it from its owner (which stops it and
//! rejoins), and a later round hands it to someone else, so a task never runs twice. Work that
//! stays with its owner is never revoked. Work a departed member owned is held back for the
//! scheduled rebalance delay (the member may come back), then given out.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use tokio::time::Instant;

use super::assignment::{MemberMetadata, TaskId, Work};

/// The assignor's memory between rounds led by this worker.
#[derive(Debug, Default)]
pub struct AssignorState {
    /// Everything handed out in the previous round this worker led.
    previous: Option<Work>,
    /// When held-back work of departed members is given out.
    deadline: Option<Instant>,
}

/// One member's share of a round.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Share {
    pub assigned: Work,
    pub revoked: Work,
}

/// The result of a round: each member's share and the delay before held-back work moves.
#[derive(Debug, Default)]
pub struct Round {
    pub shares: BTreeMap<String, Share>,
    pub delay: Duration,
}

/// Computes a round. `members` maps member id to metadata, `configured` is all the work the
/// cluster's configuration asks for.
pub fn assign(
    members: &BTreeMap<String, MemberMetadata>,
    configured: &Work,
    state: &mut AssignorState,
    max_delay: Duration,
    now: Instant,
) -> Round {
    let mut round = Round::default();
    // Work more than one member claims (one was fenced and is still stopping it) is taken from
    // every claimant and handed out next round, once nobody runs it.
    let mut claimed = Work::default();
    let mut contested = Work::default();
    for meta in members.values() {
        contested.extend(&meta.owned.intersect(&claimed));
        claimed.extend(&meta.owned);
    }
    let mut owned_anywhere = Work::default();
    // Keep what members own that is still configured and uncontested.
    for (id, meta) in members {
        let keep = meta.owned.intersect(configured).minus(&contested);
        owned_anywhere.extend(&keep);
        round.shares.insert(
            id.clone(),
            Share {
                revoked: meta.owned.minus(&keep),
                assigned: keep,
            },
        );
    }
    if round.shares.is_empty() {
        return round;
    }
    let unowned = configured.minus(&owned_anywhere).minus(&contested);
    let lost = match &state.previous {
        Some(previous) => unowned.intersect(previous),
        None => Work::default(),
    };
    let mut to_assign = unowned.clone();
    if lost.is_empty() || max_delay.is_zero() {
        state.deadline = None;
    } else {
        let deadline = *state.deadline.get_or_insert(now + max_delay);
        if deadline > now {
            to_assign = unowned.minus(&lost);
            round.delay = deadline - now;
        } else {
            state.deadline = None;
        }
    }
    let held = unowned.minus(&to_assign);
    balance(
        &mut round.shares,
        to_assign.connectors,
        |s| &mut s.assigned.connectors,
        |s| &mut s.revoked.connectors,
    );
    balance(
        &mut round.shares,
        to_assign.tasks,
        |s| &mut s.assigned.tasks,
        |s| &mut s.revoked.tasks,
    );
    let mut handed_out = Work::default();
    for share in round.shares.values() {
        handed_out.extend(&share.assigned);
    }
    // Held-back work still counts as handed out: if it stays unowned it is known lost.
    handed_out.extend(&held);
    state.previous = Some(handed_out);
    round
}

/// Gives `new` items to the members with least, then revokes from members above their fair
/// share (those items move next round). Members sorted by id make the result deterministic.
fn balance<T: Ord + Clone>(
    shares: &mut BTreeMap<String, Share>,
    new: BTreeSet<T>,
    assigned: impl Fn(&mut Share) -> &mut BTreeSet<T>,
    revoked: impl Fn(&mut Share) -> &mut BTreeSet<T>,
) {
    let members = shares.len();
    for item in new {
        let least = shares
            .iter_mut()
            .map(|(id, s)| (assigned(s).len(), id.clone()))
            .min();
        if let Some(share) = least.and_then(|(_, id)| shares.get_mut(&id)) {
            assigned(share).insert(item);
        }
    }
    let total: usize = shares.values_mut().map(|s| assigned(s).len()).sum();
    let floor = total / members;
    let mut ceil_slots = total % members;
    // Members holding the most keep the larger allowance, so as little as possible moves.
    let mut order: Vec<(usize, String)> = shares
        .iter_mut()
        .map(|(id, s)| (assigned(s).len(), id.clone()))
        .collect();
    order.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    for (count, id) in order {
        let allowance = if ceil_slots > 0 && count > floor {
            ceil_slots -= 1;
            floor + 1
        } else {
            floor
        };
        let Some(share) = shares.get_mut(&id) else {
            continue;
        };
        while assigned(share).len() > allowance {
            if let Some(item) = assigned(share).pop_last() {
                revoked(share).insert(item);
            }
        }
    }
}

/// All work a configuration asks for: every connector, and `count` tasks for each.
pub fn configured_work<'a>(connectors: impl IntoIterator<Item = (&'a str, u32)>) -> Work {
    let mut work = Work::default();
    for (name, tasks) in connectors {
        work.connectors.insert(name.to_owned());
        work.tasks
            .extend((0..tasks).map(|task| TaskId::new(name, task)));
    }
    work
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(owned: &Work) -> MemberMetadata {
        MemberMetadata {
            url: String::new(),
            config_offset: 0,
            owned: owned.clone(),
        }
    }

    fn group(owned: &[(&str, &Work)]) -> BTreeMap<String, MemberMetadata> {
        owned
            .iter()
            .map(|(id, w)| ((*id).to_owned(), member(w)))
            .collect()
    }

    fn tasks(share: &Share) -> usize {
        share.assigned.tasks.len()
    }

    #[test]
    fn new_work_is_spread_evenly() {
        let configured = configured_work([("a", 3), ("b", 3)]);
        let empty = Work::default();
        let members = group(&[("m1", &empty), ("m2", &empty), ("m3", &empty)]);
        let round = assign(
            &members,
            &configured,
            &mut AssignorState::default(),
            Duration::from_secs(5),
            Instant::now(),
        );
        for share in round.shares.values() {
            assert_eq!(tasks(share), 2);
            assert!(share.revoked.is_empty());
        }
        let connectors: usize = round
            .shares
            .values()
            .map(|s| s.assigned.connectors.len())
            .sum();
        assert_eq!(connectors, 2);
    }

    #[test]
    fn a_joining_member_takes_work_in_two_steps_without_moving_the_rest() {
        let configured = configured_work([("a", 4)]);
        let mut state = AssignorState::default();
        let now = Instant::now();
        let empty = Work::default();
        let first = assign(
            &group(&[("m1", &empty), ("m2", &empty)]),
            &configured,
            &mut state,
            Duration::from_secs(5),
            now,
        );
        let m1 = first.shares["m1"].assigned.clone();
        let m2 = first.shares["m2"].assigned.clone();
        let second = assign(
            &group(&[("m1", &m1), ("m2", &m2), ("m3", &empty)]),
            &configured,
            &mut state,
            Duration::from_secs(5),
            now,
        );
        // Something is revoked, nothing is given to m3 yet, and kept work stays put.
        let revoked: usize = second.shares.values().map(|s| s.revoked.len()).sum();
        assert!(revoked >= 1);
        assert!(second.shares["m3"].assigned.is_empty());
        assert!(second.shares["m1"].assigned.minus(&m1).is_empty());
        let m1 = second.shares["m1"].assigned.clone();
        let m2 = second.shares["m2"].assigned.clone();
        let third = assign(
            &group(&[("m1", &m1), ("m2", &m2), ("m3", &empty)]),
            &configured,
            &mut state,
            Duration::from_secs(5),
            now,
        );
        let counts: Vec<usize> = third.shares.values().map(tasks).collect();
        assert_eq!(counts.iter().sum::<usize>(), 4);
        assert!(counts.iter().all(|c| (1..=2).contains(c)), "{counts:?}");
        assert_eq!(third.shares["m1"].assigned, m1);
        assert_eq!(third.shares["m2"].assigned, m2);
        assert_eq!(third.delay, Duration::ZERO);
    }

    #[test]
    fn departed_members_work_waits_for_the_delay_then_moves() {
        let configured = configured_work([("a", 4)]);
        let mut state = AssignorState::default();
        let now = Instant::now();
        let empty = Work::default();
        let first = assign(
            &group(&[("m1", &empty), ("m2", &empty)]),
            &configured,
            &mut state,
            Duration::from_secs(5),
            now,
        );
        let m1 = first.shares["m1"].assigned.clone();
        let held = assign(
            &group(&[("m1", &m1)]),
            &configured,
            &mut state,
            Duration::from_secs(5),
            now + Duration::from_secs(1),
        );
        assert_eq!(held.shares["m1"].assigned, m1);
        assert_eq!(held.delay, Duration::from_secs(5));
        let moved = assign(
            &group(&[("m1", &m1)]),
            &configured,
            &mut state,
            Duration::from_secs(5),
            now + Duration::from_secs(7),
        );
        assert_eq!(moved.shares["m1"].assigned, configured);
        assert_eq!(moved.delay, Duration::ZERO);
    }

    #[test]
    fn deleted_and_contested_work_is_revoked_and_contested_work_moves_next_round() {
        let configured = configured_work([("a", 1)]);
        let stale = configured_work([("a", 1), ("gone", 1)]);
        let round = assign(
            &group(&[("m1", &stale), ("m2", &stale)]),
            &configured,
            &mut AssignorState::default(),
            Duration::from_secs(5),
            Instant::now(),
        );
        // Contested work is taken from both claimants, deleted work is revoked.
        assert!(round.shares["m1"].assigned.is_empty());
        assert_eq!(round.shares["m1"].revoked, stale);
        assert!(round.shares["m2"].assigned.is_empty());
        assert_eq!(round.shares["m2"].revoked, stale);
        // Next round nobody claims it: it is handed out at once (not held as lost).
        let empty = Work::default();
        let mut state = AssignorState {
            previous: Some(Work::default()),
            ..AssignorState::default()
        };
        let next = assign(
            &group(&[("m1", &empty), ("m2", &empty)]),
            &configured,
            &mut state,
            Duration::from_secs(5),
            Instant::now(),
        );
        let handed: usize = next.shares.values().map(|s| s.assigned.len()).sum();
        assert_eq!(handed, 2);
        assert_eq!(next.delay, Duration::ZERO);
    }
}
