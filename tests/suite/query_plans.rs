//! The plans PostgreSQL picks for the statements that read events (issue
//! 15: a page must read an index range, never scan the table or sort it),
//! on a real server, with the custom plans of the first executions and
//! the generic plan a prepared statement switches to later. The embedded
//! store's twin is `store::sqlite::tests::every_events_statement_reads_an_index_range`.

use std::sync::Arc;
use std::time::Duration;

use logagg::event::{Event, EventParts, FieldLimits};
use logagg::store::{
    self, CommitTime, PostgresStore, SqliteOptions, StoreConfig, StoreLocation, SyncMode,
};
use serde_json::value::RawValue;

use crate::postgres::Postgres;

fn event(topic: &str, id: usize) -> Event {
    Event::from_parts(
        EventParts {
            topic: topic.to_owned(),
            event_id: format!("e-{id}"),
            timestamp: "2025-10-25T12:30:00Z".to_owned(),
            source: "plans".to_owned(),
            payload: RawValue::from_string(format!(r#"{{"n":{id}}}"#)).expect("JSON"),
        },
        id,
        &FieldLimits::default(),
    )
    .expect("a valid event")
}

#[tokio::test]
async fn every_events_statement_reads_an_index_range() {
    let Some(postgres) =
        Postgres::shared("query_plans::every_events_statement_reads_an_index_range")
    else {
        return;
    };
    let database = postgres.database().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let config = StoreConfig {
        location: StoreLocation::parse(&database.url).expect("a URL"),
        data_dir: dir.path().to_path_buf(),
        embedded: SqliteOptions::new(SyncMode::Full),
        pool_size: 2.try_into().expect("non-zero"),
    };
    let store = tokio::time::timeout(Duration::from_secs(30), store::open(&config))
        .await
        .expect("opens in time")
        .expect("opens");
    // 40,000 events in 8 topics, so that the planner has a table worth an
    // index and statistics to go by.
    for chunk in 0..40 {
        let events: Arc<[Event]> = (chunk * 1_000..(chunk + 1) * 1_000)
            .map(|i| event(&format!("load.{}", i % 8), i))
            .collect::<Vec<_>>()
            .into();
        store
            .append(events, CommitTime::now())
            .await
            .expect("append");
    }
    let client = postgres.client(&database.name).await;
    client.batch_execute("ANALYZE").await.expect("analyze");
    for (name, sql, arguments) in PostgresStore::read_statements() {
        client
            .batch_execute(&format!("PREPARE {name} AS {sql}"))
            .await
            .unwrap_or_else(|e| panic!("{name}: {e:?}"));
        for mode in ["force_custom_plan", "force_generic_plan"] {
            client
                .batch_execute(&format!("SET plan_cache_mode = {mode}"))
                .await
                .expect("set the plan mode");
            let plan: Vec<String> = client
                .query(&format!("EXPLAIN EXECUTE {name}({arguments})"), &[])
                .await
                .unwrap_or_else(|e| panic!("{name}: {e:?}"))
                .iter()
                .map(|row| row.get(0))
                .collect();
            let plan = plan.join("\n");
            let index = match name {
                "page_topic_asc" | "page_topic_desc" => "events_by_topic",
                "event_by_key" => "events_topic_event_id_key",
                _ => "events_pkey",
            };
            assert!(
                plan.contains(&format!("Index Scan using {index}"))
                    || plan.contains(&format!("Index Scan Backward using {index}")),
                "{name} ({mode}) does not read {index}:\n{plan}"
            );
            for step in ["Seq Scan", "Sort", "Bitmap"] {
                assert!(
                    !plan.contains(step),
                    "{name} ({mode}) has a {step}:\n{plan}"
                );
            }
        }
    }
}
