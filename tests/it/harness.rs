//! The harness itself: each test's Redis prefix is unique and its keys are gone afterwards.

use redis::AsyncCommands;

use crate::common::TestRedis;

#[tokio::test]
async fn prefixes_are_unique_and_keys_are_removed_on_drop() {
    let first = TestRedis::new().await;
    let second = TestRedis::new().await;
    assert_ne!(first.prefix, second.prefix);

    let mut conn = first.conn.clone();
    let key = format!("{}:probe", first.prefix);
    let () = conn.set(&key, "1").await.unwrap();
    assert_eq!(first.keys().await, std::slice::from_ref(&key));
    assert!(second.keys().await.is_empty(), "one test never sees another's keys");

    drop(first);
    let exists: bool = conn.exists(&key).await.unwrap();
    assert!(!exists, "the harness deletes a test's keys when it ends");
}
