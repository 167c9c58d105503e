//! The SDK's own SQLite sessions and ours in one program (feature `sdk-sqlite`): both crates are
//! on rusqlite 0.39 with the bundled SQLite, so Cargo links one SQLite for both.
#![cfg(feature = "sdk-sqlite")]

use openai_agents_sdk::items::InputItem;
use openai_agents_sdk::memory::{Session, SqliteSession};
use openai_agents_session_sdk::AgentsSession;

#[tokio::test]
async fn the_sdk_sqlite_session_and_ours_work_side_by_side() {
    let dir = tempfile::tempdir().unwrap();
    let theirs = SqliteSession::open("chat", dir.path().join("sdk.db")).unwrap();
    theirs
        .add_items(vec![InputItem::user("hi"), InputItem::assistant("hello")])
        .await
        .unwrap();

    // Moving a conversation from the SDK's store to ours.
    let url = format!("sqlite://{}/ours.db", dir.path().display());
    let ours = AgentsSession::open(&url, "chat").await.unwrap();
    ours.add_items(theirs.get_items(None).await.unwrap())
        .await
        .unwrap();
    let moved = ours.get_items(None).await.unwrap();
    assert_eq!(moved, theirs.get_items(None).await.unwrap());
    assert_eq!(moved[1].text_content().as_deref(), Some("hello"));

    // Both files are SQLite databases the other library could open: one SQLite links both.
    assert!(dir.path().join("sdk.db").exists() && dir.path().join("ours.db").exists());
    theirs.clear_session().await.unwrap();
    ours.clear_session().await.unwrap();
    assert!(ours.get_items(None).await.unwrap().is_empty());
}
