//! The worker group's member metadata and assignments as another member (or anything speaking
//! the group protocol) sends them: decoded, and the leader's assignor run on what decodes. Never
//! a panic.

use std::collections::BTreeMap;
use std::time::Duration;

use sluice::cluster::{AssignorState, MemberAssignment, MemberMetadata, assign, configured_work};

fn main() {
    let configured = configured_work([("a", 3), ("b", 1), ("c", 0)]);
    let mut state = AssignorState::default();
    sluice_fuzz::main("member-metadata", move |data: &[u8]| {
        let _ = serde_json::from_slice::<MemberAssignment>(data);
        // Members' metadata, one JSON document per line.
        let members: BTreeMap<String, MemberMetadata> = data
            .split(|b| *b == b'\n')
            .enumerate()
            .filter_map(|(i, line)| {
                Some((format!("member-{i}"), serde_json::from_slice(line).ok()?))
            })
            .collect();
        if !members.is_empty() {
            let now = tokio::time::Instant::now();
            let _ = assign(
                &members,
                &configured,
                &mut state,
                Duration::from_secs(3),
                now,
            );
        }
    });
}
