//! Compile-time guards: the engine and its futures can live on a multi-threaded runtime.
#![allow(clippy::unwrap_used, dead_code)]

use std::sync::Arc;

use rb_core::journal::{Journal, MemoryJournal};
use rb_core::prelude::*;

fn send_sync<T: Send + Sync>(_: &T) {}
fn send<T: Send>(_: T) {}

#[test]
fn engine_and_its_futures_are_send() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    rt.block_on(async {
        let engine = Engine::builder(Runbook::new("empty"))
            .build()
            .await
            .unwrap();
        send_sync(&engine);
        send(engine.tick());
        send(engine.run_for(secs(1)));
        send(engine.run(async {}));
        send(engine.acknowledge("x", "y"));
        send(engine.close("x", "y"));
        send(engine.review("x"));
        send(engine.incidents());
        let j: Arc<dyn Journal> = Arc::new(MemoryJournal::new());
        send_sync(&j);
        send(j.entries("x"));
        let engine2 = engine.clone();
        let spawned = tokio::spawn(async move { engine2.tick().await.map(|r| r.probes_run) });
        assert_eq!(spawned.await.unwrap().unwrap(), 0);
    });
}

#[cfg(feature = "sqlite")]
#[test]
fn sqlite_journal_futures_are_send() {
    fn check(j: &rb_core::journal::SqliteJournal) {
        send_sync(j);
        send(j.append(
            "x",
            Timestamp(0),
            &rb_core::journal::Event::Note {
                text: String::new(),
            },
        ));
        send(j.open_incidents());
    }
    let _ = check;
}
