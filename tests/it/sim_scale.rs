//! 1,000 concurrent streaming sessions all reach `session.status_idle` (a correctness test of
//! the simulator under concurrency, not a timing).

use std::sync::Arc;

use crate::common::sim::{SimClient, spawn_sim};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_streaming_sessions_complete() {
    let sim = spawn_sim().await;
    let client = Arc::new(SimClient::new(&sim));
    let setup = Arc::new(client.setup_user("alice@example.com").await);
    let mut sessions = tokio::task::JoinSet::new();
    for _ in 0..1000 {
        let (client, setup) = (client.clone(), setup.clone());
        sessions.spawn(async move {
            let session = client.create_session(&setup, "alice@example.com").await;
            let frames = client.run_turn(&session).await;
            frames.iter().filter(|(event, _)| event == "agent.mcp_tool_use").count()
        });
    }
    let mut n_done = 0;
    while let Some(result) = sessions.join_next().await {
        assert_eq!(result.unwrap(), 2);
        n_done += 1;
    }
    assert_eq!(n_done, 1000);
    let audit = client.audit().await;
    assert_eq!(audit["totals"]["sessions"], 1000);
    assert_eq!(audit["totals"]["tool_calls"], 2000);
    assert_eq!(audit["violations"], serde_json::json!([]));
    assert_eq!(client.calendar("alice@example.com").await.len(), 1000);
    sim.shutdown().await;
}
