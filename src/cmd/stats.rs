//! `logagg stats`: the server's counters and state from `GET /stats`; a
//! table with units on a terminal, else the API's JSON.

use std::io::Write;
use std::time::Duration;

use anyhow::Context;
use clap::Args;

use super::read::{Output, ReadArgs, Table, get_json, thousands};
use crate::api::Stats;

/// Settings of `logagg stats`.
#[derive(Debug, Clone, Args)]
pub struct StatsArgs {
    #[command(flatten)]
    pub read: ReadArgs,
}

/// # Errors
/// When the server cannot be reached or does not answer as logagg does, or
/// stdout cannot be written.
pub async fn run(args: StatsArgs) -> anyhow::Result<()> {
    let http = args.read.client()?;
    let answer: serde_json::Value = get_json(&http, &args.read.url, "/stats", &[]).await?;
    let text = match args.read.output() {
        Output::Json => format!("{answer}\n"),
        Output::Table => {
            let stats: Stats = serde_json::from_value(answer)
                .with_context(|| format!("{} did not answer as logagg does", args.read.url))?;
            render(&stats)
        }
    };
    std::io::stdout()
        .write_all(text.as_bytes())
        .context("writing to stdout")
}

/// One line per figure: name, value, unit (and a share where it helps).
fn render(stats: &Stats) -> String {
    let counters = &stats.counters;
    let share = |part: u64| {
        if counters.received == 0 {
            String::new()
        } else {
            format!(
                "({:.1}% of received)",
                part as f64 * 100.0 / counters.received as f64
            )
        }
    };
    let uptime = humantime::format_duration(Duration::from_secs(stats.uptime_seconds));
    let rows: [(&str, String, String); 13] = [
        ("received", thousands(counters.received), "events".into()),
        (
            "unique processed",
            thousands(counters.unique_processed),
            format!("events {}", share(counters.unique_processed)),
        ),
        (
            "duplicates dropped",
            thousands(counters.duplicate_dropped),
            format!("events {}", share(counters.duplicate_dropped)),
        ),
        ("stored now", thousands(stats.stored), "events".into()),
        (
            "expired",
            thousands(stats.expired),
            "events deleted by retention".into(),
        ),
        (
            "conflicts",
            thousands(counters.conflicts),
            "events (duplicates with other content)".into(),
        ),
        (
            "topics",
            thousands(stats.topics.len() as u64),
            String::new(),
        ),
        ("last seq", thousands(stats.last_seq), String::new()),
        (
            "queue",
            thousands(stats.queue_depth_events),
            format!("of {} events", thousands(stats.queue_capacity_events)),
        ),
        ("subscribers", thousands(stats.subscribers), String::new()),
        (
            "delivered",
            thousands(stats.events_delivered),
            "events to subscribers since start".into(),
        ),
        ("uptime", uptime.to_string(), String::new()),
        (
            "disk full",
            if stats.disk_full { "yes" } else { "no" }.into(),
            if stats.disk_full {
                "publishes get 507 until there is room".into()
            } else {
                String::new()
            },
        ),
    ];
    let mut rows = Vec::from(rows);
    if stats.keys_fill_size_limit {
        rows.push((
            "size limit",
            "keys fill it".into(),
            "every event expires at once: raise --retain-bytes or set a finite --dedup-horizon"
                .into(),
        ));
    }
    let mut table = Table::new(&["", "VALUE", "UNIT"], &["VALUE"]);
    for (name, value, unit) in rows {
        table.push(vec![name.to_owned(), value, unit]);
    }
    table.render(false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::Counters;

    #[test]
    fn stats_render_with_separators_units_and_shares() {
        let stats = Stats {
            counters: Counters {
                received: 1_200_000,
                unique_processed: 1_000_000,
                duplicate_dropped: 200_000,
                conflicts: 3,
            },
            topics: vec!["a".into(), "b".into()],
            last_seq: 1_000_000,
            stored: 900_000,
            expired: 100_000,
            uptime_seconds: 3_725,
            queue_depth_events: 12,
            queue_capacity_events: 100_000,
            subscribers: 2,
            events_delivered: 2_000_000,
            disk_full: false,
            keys_fill_size_limit: false,
        };
        let text = render(&stats);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "received            1,200,000  events");
        assert_eq!(
            lines[2],
            "duplicates dropped    200,000  events (16.7% of received)"
        );
        assert_eq!(lines[3], "stored now            900,000  events");
        assert_eq!(
            lines[4],
            "expired               100,000  events deleted by retention"
        );
        assert_eq!(lines[8], "queue                      12  of 100,000 events");
        assert_eq!(lines[11], "uptime               1h 2m 5s");
        assert_eq!(lines[12], "disk full                  no");
        assert_eq!(lines.len(), 13);
        let full = Stats {
            keys_fill_size_limit: true,
            ..stats
        };
        let text = render(&full);
        assert!(
            text.lines()
                .last()
                .is_some_and(|l| l.starts_with("size limit")
                    && l.contains("keys fill it")
                    && l.contains("--dedup-horizon")),
            "{text}"
        );
    }
}
