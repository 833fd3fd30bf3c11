//! `logagg topics`: every stored topic with its event count and newest
//! `seq`, from `GET /topics`; a table on a terminal, else the API's JSON.

use std::io::Write;

use anyhow::Context;
use clap::Args;
use serde::Deserialize;

use super::read::{Output, ReadArgs, Table, get_json, thousands};
use crate::api::TopicSummary;

/// Settings of `logagg topics`.
#[derive(Debug, Clone, Args)]
pub struct TopicsArgs {
    #[command(flatten)]
    pub read: ReadArgs,
}

/// The body of `GET /topics`.
#[derive(Debug, Deserialize)]
struct TopicList {
    topics: Vec<TopicSummary>,
}

/// # Errors
/// When the server cannot be reached or does not answer as logagg does, or
/// stdout cannot be written.
pub async fn run(args: TopicsArgs) -> anyhow::Result<()> {
    let http = args.read.client()?;
    let answer: serde_json::Value = get_json(&http, &args.read.url, "/topics", &[]).await?;
    let text = match args.read.output() {
        Output::Json => format!("{answer}\n"),
        Output::Table => {
            let list: TopicList = serde_json::from_value(answer)
                .with_context(|| format!("{} did not answer as logagg does", args.read.url))?;
            render(&list.topics)
        }
    };
    std::io::stdout()
        .write_all(text.as_bytes())
        .context("writing to stdout")
}

/// The topics as a table with a total line.
fn render(topics: &[TopicSummary]) -> String {
    let mut table = Table::new(&["TOPIC", "EVENTS", "LAST SEQ"], &["EVENTS", "LAST SEQ"]);
    for topic in topics {
        table.push(vec![
            topic.topic.clone(),
            thousands(topic.events),
            thousands(topic.last_seq),
        ]);
    }
    let total: u64 = topics.iter().map(|t| t.events).sum();
    let mut text = table.render(true);
    text.push_str(&format!(
        "{} topic(s), {} event(s)\n",
        thousands(topics.len() as u64),
        thousands(total)
    ));
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_render_as_an_aligned_table_with_a_total() {
        let topics = [
            TopicSummary {
                topic: "auth.login".into(),
                events: 1_234_567,
                last_seq: 1_300_000,
                expired_through: 0,
            },
            TopicSummary {
                topic: "x".into(),
                events: 3,
                last_seq: 12,
                expired_through: 0,
            },
        ];
        assert_eq!(
            render(&topics),
            "TOPIC          EVENTS   LAST SEQ\n\
             auth.login  1,234,567  1,300,000\n\
             x                   3         12\n\
             2 topic(s), 1,234,570 event(s)\n"
        );
    }
}
