//! The key layout against the table in the module doc, and the shards' placement.

use super::*;

#[test]
fn on_a_cluster_every_key_carries_the_prefix_as_its_hash_tag() {
    let keys = Keys::clustered("agentcron");
    let run_id = RunId::parse("r1").unwrap();
    assert_eq!(keys.ready(), "{agentcron}:q:ready");
    assert_eq!(keys.run(&run_id), "{agentcron}:run:r1");
    assert_eq!(keys.all(), ["{agentcron}:*"]);
    assert_eq!(keys.prefix(), "agentcron");
    // A prefix with its own tag keeps it.
    assert_eq!(Keys::clustered("ac:{eu}").ready(), "ac:{eu}:q:ready");
    assert_eq!(Keys::clustered("ac{}").ready(), "{ac{}}:q:ready");
}

#[test]
fn a_sharded_queue_keeps_its_runs_in_their_shard_and_the_rest_in_the_control_slot() {
    let (keys, user) = (Keys::clustered("ac").sharded(16), UserId::parse("a@b").unwrap());
    let ids: Vec<RunId> = (0..200).map(|i| RunId::parse(format!("r{i}")).unwrap()).collect();
    let mut used = std::collections::BTreeSet::new();
    for id in &ids {
        let shard = keys.shard_of(id);
        used.insert(shard);
        let base = if shard == 0 { "{ac}".to_owned() } else { format!("{{ac:{shard}}}") };
        assert_eq!(keys.run(id), format!("{base}:run:{id}"));
        assert_eq!(keys.transcript(id), format!("{base}:transcript:{id}"));
        assert_eq!(keys.for_run(id).ready(), format!("{base}:q:ready"));
        assert_eq!(keys.for_run(id).events(), format!("{base}:events"));
        // Whatever the handle, a run's record is in its own shard.
        assert_eq!(keys.shard(3).run(id), keys.run(id));
    }
    assert_eq!(used.len(), 16, "200 ids reach every shard");
    // The deployment's keys stay in the control slot from any shard's handle.
    assert_eq!(keys.shard(5).intake(), "{ac}:intake");
    assert_eq!(keys.shard(5).user_lock(&user), "{ac}:lock:user:a@b");
    assert_eq!(keys.shard(5).user_lock_waiters(&user), "{ac}:lock:waiters:a@b");
    assert_eq!(keys.shard(5).runs(), "{ac:5}:runs");
    assert_eq!(keys.all(), ["{ac}:*", "{ac:*}:*"]);
    // One node: shards under `<p>:<s>`, which the one pattern covers.
    let node = Keys::new("ac").sharded(4);
    assert_eq!(node.shard(2).ready(), "ac:2:q:ready");
    assert_eq!(node.all(), ["ac:*"]);
    assert_eq!(node.all_events(), ["ac:events", "ac:1:events", "ac:2:events", "ac:3:events"]);
    // The hash is fixed: producers and workers of any version agree.
    assert_eq!(Keys::new("ac").sharded(16).shard_of(&RunId::parse("r1").unwrap()), 12);
}

#[test]
fn layout_matches_the_documented_table() {
    let keys = Keys::new("agentcron");
    let (run_id, user) = (RunId::parse("r1").unwrap(), UserId::parse("a@b").unwrap());
    let cases = [
        (keys.ready(), "agentcron:q:ready"),
        (keys.processing("w1"), "agentcron:q:processing:w1"),
        (keys.delayed(), "agentcron:q:delayed"),
        (keys.dead(), "agentcron:q:dead"),
        (keys.leases(), "agentcron:q:leases"),
        (keys.clock(), "agentcron:q:clock"),
        (keys.intake(), "agentcron:intake"),
        (keys.intake_processing("w1"), "agentcron:intake:processing:w1"),
        (keys.rejected(), "agentcron:rejected"),
        (keys.workers(), "agentcron:workers"),
        (keys.run(&run_id), "agentcron:run:r1"),
        (keys.runs(), "agentcron:runs"),
        (keys.runs_by_user(&user), "agentcron:runs:user:a@b"),
        (keys.runs_by_state("dead"), "agentcron:runs:state:dead"),
        (keys.user(&user), "agentcron:user:a@b"),
        (keys.user_lock(&user), "agentcron:lock:user:a@b"),
        (keys.user_lock_waiters(&user), "agentcron:lock:waiters:a@b"),
        (keys.transcript(&run_id), "agentcron:transcript:r1"),
        (keys.events(), "agentcron:events"),
        (keys.notice(&user, "gmail"), "agentcron:notice:a@b:gmail"),
        (keys.notice_pattern(), "agentcron:notice:*:*"),
        (keys.notice_prefix(), "agentcron:notice:"),
        (keys.notices(), "agentcron:notices"),
        (keys.notice_index(), "agentcron:notices:open"),
        (keys.setup(), "agentcron:setup"),
        (keys.schedule_users("morning"), "agentcron:users:morning"),
        (keys.ratelimit("sessions"), "agentcron:ratelimit:sessions"),
    ];
    for (got, expect) in cases {
        assert_eq!(got, expect);
    }
}
