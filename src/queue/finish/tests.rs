//! The finish script's codes, and, on the real Redis of the tests (`AGENTCRON_TEST_REDIS_URL`,
//! else 127.0.0.1:6379) under a prefix of its own, that a stale attempt ends nothing.

use std::path::Path;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::*;
use crate::config::Env;
use crate::ids::UserId;
use crate::queue::jobs::Fetched;
use crate::queue::{Lease, NewRun};

#[test]
fn codes_map_to_what_was_found() {
    let found: Vec<Finished> = [1, 2, 3, 0].into_iter().map(Finished::from_code).collect();
    assert_eq!(
        found,
        [
            Finished::Recorded,
            Finished::RecordedWithoutEntry,
            Finished::AlreadyRecorded,
            Finished::TakenOver
        ]
    );
    let lua = include_str!("../lua/finish_many.lua");
    assert!(lua.contains(&format!("local ITEM = {ITEM_FIELDS}\n")), "finish_many.lua's ITEM");
}

/// A queue on the tests' Redis under a fresh prefix (its keys are deleted at the end).
async fn test_queue() -> Queue {
    let process = Env::from_process();
    let url = process.get("AGENTCRON_TEST_REDIS_URL").filter(|url| !url.is_empty());
    let url = url.unwrap_or("redis://127.0.0.1:6379").to_owned();
    let prefix = format!("agentcron-test-{}", uuid::Uuid::new_v4().simple());
    let env =
        Env::from_pairs([("AGENTCRON__REDIS__URL", url), ("AGENTCRON__REDIS__PREFIX", prefix)]);
    let jobs_toml = Path::new(env!("CARGO_MANIFEST_DIR")).join("jobs.toml");
    let config = crate::config::load(&jobs_toml, &env).expect("the shipped jobs.toml loads");
    Queue::connect(&config.redis).await.expect("bash .ci/run starts Redis")
}

async fn take_one(queue: &Queue, owner: &crate::queue::Owner) -> Job {
    match queue.fetch(owner, 1, 5, 0).await.expect("fetch") {
        Fetched::Jobs(mut jobs) if jobs.len() == 1 => jobs.remove(0),
        other => panic!("one run taken, not {other:?}"),
    }
}

async fn state(queue: &Queue, job: &Job) -> (Option<String>, Vec<String>) {
    let mut conn = queue.connection();
    let record = format!("{}{}", queue.keys().run_prefix(), job.run_id.as_str());
    let state: Option<String> =
        redis::cmd("HGET").arg(record).arg("state").query_async(&mut conn).await.expect("HGET");
    let listed = queue.processing_ids(&job.owner, 100).await.expect("LRANGE");
    (state, listed.iter().map(|id| id.as_str().to_owned()).collect())
}

/// A run started twice by one worker (the reconciler handed the first copy back as a fetch
/// whose reply was lost, and the worker took it again): the stale copy, fenced off, must
/// neither release nor end the live attempt's run, whose processing entry it shares.
#[tokio::test]
async fn a_stale_copy_ends_nothing_and_the_live_attempts_end_takes_the_next_run() {
    let queue = test_queue().await;
    let lease = Lease::new("finish-test".to_owned(), CancellationToken::new());
    let owner = lease.current();
    queue.heartbeat(&owner, Duration::from_secs(30), "{}", true).await.expect("register");
    let user = UserId::parse("stale@example.com").expect("user");
    queue.enqueue(&[NewRun::now(user)], "test").await.expect("enqueue");
    let stale = take_one(&queue, &owner).await;
    assert_eq!(
        queue.release_runs(&owner, std::slice::from_ref(&stale.run_id)).await.expect("release"),
        1
    );
    let live = take_one(&queue, &owner).await;
    assert!(live.fence > stale.fence, "a later start raises the fence");

    let outbox = Outbox::default();
    let ended =
        queue.finish_many(&[(&stale, &Disposition::Release)], &outbox, None).await.expect("finish");
    assert_eq!(ended.found, [Finished::TakenOver]);
    let (run_state, listed) = state(&queue, &live).await;
    assert_eq!(run_state.as_deref(), Some("running"), "the live attempt's run is untouched");
    assert_eq!(listed, [live.run_id.as_str()], "its processing entry is back");

    // Its end takes the next run into the slot it frees, started as a fetch starts it.
    let next = NewRun::now(UserId::parse("next@example.com").expect("user"));
    let later = NewRun::now(UserId::parse("later@example.com").expect("user"));
    queue.enqueue(&[next.clone(), later], "test").await.expect("enqueue");
    let refill = Refill { owner: &owner, max_attempts: 5 };
    let ended = queue
        .finish_many(&[(&live, &Disposition::Succeeded)], &outbox, Some(refill))
        .await
        .expect("finish");
    assert_eq!(ended.found, [Finished::Recorded]);
    let (run_state, listed) = state(&queue, &live).await;
    assert_eq!(run_state.as_deref(), Some("succeeded"));
    let taken: Vec<&str> = ended.started.iter().map(|job| job.run_id.as_str()).collect();
    assert_eq!(taken, [next.run_id.as_str()], "one end, one run taken, the oldest");
    assert_eq!(listed, taken, "the run taken is in the processing list");
    assert_eq!(state(&queue, &ended.started[0]).await.0.as_deref(), Some("running"));
    crate::queue::remove_all_keys(&mut queue.connection(), queue.keys(), 500).await.ok();
}
