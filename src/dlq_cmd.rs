//! `gata dlq`: look at the dead letters and, after a fix, send them through again.
//!
//! `replay` re-produces to its source topic every dead letter that is valid under the current
//! contract and limits, and reports those that still are not. Replaying is safe to repeat: the
//! silver tables keep one row per `event_id`, so an event replayed twice is counted once (the
//! bronze table, a mirror of the log, shows each replay).

use std::{collections::BTreeMap, time::Duration};

use anyhow::{Context as _, bail};
use clap::{Args, Subcommand};
use gata_contract::{
    Event,
    topics::{SCHEMA_HEADER, kind_of_topic},
};
use gata_infra::{config::GataConfig, kafka::KafkaClients};
use rdkafka::{
    message::{Header, OwnedHeaders},
    producer::{FutureProducer, FutureRecord},
};
use serde_json::{Value, json};

use crate::platform;

/// `gata dlq` options.
#[derive(Debug, Clone, Args)]
pub struct DlqArgs {
    #[command(subcommand)]
    op: Op,
    #[command(flatten)]
    pub flags: crate::Flags,
}

#[derive(Debug, Clone, Subcommand)]
enum Op {
    /// The newest dead letters: source topic/partition/offset, when, why.
    List {
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// Re-produce the dead letters that are valid now to their source topic (needs --brokers:
    /// the Kafka address `gata serve` printed, or the cluster's).
    Replay {
        /// Only dead letters from this topic.
        #[arg(long)]
        topic: Option<String>,
    },
}

pub async fn run(cfg: GataConfig, args: DlqArgs) -> anyhow::Result<()> {
    match args.op {
        Op::List { limit } => {
            let sql = format!(
                "SELECT kafka_topic, kafka_partition, kafka_offset, received_at, reason FROM dead_letters \
                 ORDER BY received_at DESC LIMIT {limit}"
            );
            println!("{}", serde_json::to_string_pretty(&platform::query_once(&cfg, &sql).await?)?);
            Ok(())
        }
        Op::Replay { topic } => replay(&cfg, topic.as_deref()).await,
    }
}

async fn replay(cfg: &GataConfig, only: Option<&str>) -> anyhow::Result<()> {
    let Some(brokers) = &cfg.kafka.brokers else {
        bail!("replay produces to Kafka: give --brokers (the address `gata serve` printed, or your cluster's)");
    };
    let producer: FutureProducer =
        KafkaClients::for_config(brokers, &cfg.kafka).await?.producer(Duration::from_secs(30)).create()?;
    let answer =
        platform::query_once(cfg, "SELECT kafka_topic, kafka_offset, payload FROM dead_letters ORDER BY kafka_offset")
            .await?;
    let (mut replayed, mut still_invalid) = (0, BTreeMap::<String, usize>::new());
    for row in &answer.rows {
        let topic = row["kafka_topic"].as_str().context("dead letter without topic")?;
        if only.is_some_and(|t| t != topic) {
            continue;
        }
        let payload = hex::decode(row["payload"].as_str().unwrap_or_default()).context("payload is not hex")?;
        let Some(kind) = kind_of_topic(topic) else { continue };
        match Event::parse(kind, &payload, &cfg.ingest.limits) {
            Ok(event) => {
                let schema = kind.schema_name();
                let record = FutureRecord::to(topic)
                    .key(event.contributor_id())
                    .payload(&payload)
                    .headers(OwnedHeaders::new().insert(Header { key: SCHEMA_HEADER, value: Some(schema.as_str()) }));
                producer.send(record, Duration::from_secs(30)).await.map_err(|(e, _)| e)?;
                replayed += 1;
            }
            Err(violations) => {
                let first = violations.first().map(|v| format!("{}: {}", v.field, v.reason)).unwrap_or_default();
                *still_invalid.entry(first).or_default() += 1;
            }
        }
    }
    let report: Value = json!({ "replayed": replayed, "still_invalid": still_invalid });
    println!("{report}");
    Ok(())
}
