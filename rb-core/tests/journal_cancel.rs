//! The SQLite journal survives cancellation: a write dropped at any await point is committed exactly
//! zero or one times, and the journal stays open and agrees with the file.
#![cfg(feature = "sqlite")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::future::Future;
use std::pin::pin;
use std::task::Context;

use rb_core::journal::{Event, Journal, SqliteJournal};
use rb_core::time::Timestamp;

fn note(i: usize) -> Event {
    Event::Note {
        text: format!("write {i}"),
    }
}

/// Poll `fut` at most `k` times (yielding to the runtime between polls); `true` if it completed.
async fn poll_k_then_drop<F: Future>(fut: F, k: usize) -> bool {
    let mut fut = pin!(fut);
    for _ in 0..k {
        let waker = futures::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        if fut.as_mut().poll(&mut cx).is_ready() {
            return true;
        }
        // let the blocking write make progress between polls (it runs on its own thread)
        tokio::time::sleep(std::time::Duration::from_micros(500)).await;
    }
    false
}

#[tokio::test]
async fn a_write_dropped_at_any_point_is_committed_once_or_not_at_all_and_the_journal_lives_on() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("j.db");
    let j = SqliteJournal::open(&path).await.unwrap();
    let inc = "INC-cancel";
    let mut completed_at = None;
    let mut dropped = 0;
    for k in 0..10_000 {
        let done = poll_k_then_drop(j.append(inc, Timestamp(k as u64), &note(k)), k).await;
        // after a drop, the journal must still take writes and answer reads
        j.append(
            inc,
            Timestamp(0),
            &Event::Note {
                text: format!("after {k}"),
            },
        )
        .await
        .unwrap_or_else(|e| panic!("journal lost after dropping write {k}: {e}"));
        if done {
            completed_at = Some(k);
            break;
        }
        dropped += 1;
    }
    let k_done = completed_at.expect("the write completes once polled enough");
    assert!(
        dropped > 0,
        "at least one write was dropped before completing"
    );
    // every dropped write is in the file zero or one times; the completed one exactly once
    let entries = j.entries(inc).await.unwrap();
    for k in 0..=k_done {
        let text = format!("write {k}");
        let n = entries
            .iter()
            .filter(|e| matches!(&e.event, Event::Note { text: t } if *t == text))
            .count();
        assert!(n <= 1, "write {k} committed {n} times");
        if k == k_done {
            assert_eq!(n, 1, "the completed write is there");
        }
        let after = format!("after {k}");
        assert_eq!(
            entries
                .iter()
                .filter(|e| matches!(&e.event, Event::Note { text: t } if *t == after))
                .count(),
            1
        );
    }
    // the engine's view agrees with the file: reopen and compare
    j.close().await;
    let again = SqliteJournal::open(&path).await.unwrap();
    assert_eq!(again.entries(inc).await.unwrap(), entries);
    eprintln!("dropped {dropped} writes at successive poll points; completed after {k_done} polls");
}
