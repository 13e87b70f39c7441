//! A backlog in the log drains: 100,000 chat turns of one contributor wait in one partition of
//! the embedded broker, written while only intake runs (each record with its schema header, as
//! intake writes it). A sink then starts, is SIGKILLed in the middle of the drain and started
//! again, and every record lands exactly once; a new consumer group reads the whole backlog from
//! the beginning. Counts, not timings: the deadlines are generous.

use std::time::Duration;

use gata_contract::{
    EventKind,
    topics::{SCHEMA_HEADER, intake_topic},
};
use gata_infra::kafka::{Idempotence, KafkaClients};
use gata_tests::{Gata, eventually, example, free_port};
use rdkafka::{
    consumer::{Consumer, StreamConsumer},
    message::{Header, OwnedHeaders},
    producer::{FutureProducer, FutureRecord},
};

use crate::bin;

const N: u64 = 100_000;

#[tokio::test(flavor = "multi_thread")]
async fn a_backlog_in_one_partition_drains_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let intake = Gata::start_with(bin(), dir.path(), port, &["--roles", "intake"], &[]).await.unwrap();
    let bootstrap = intake.kafka_bootstrap().expect("printed Kafka address");
    let kafka = KafkaClients::connect(bootstrap.clone(), Idempotence::Auto).await.unwrap();
    let producer: FutureProducer = kafka.producer(Duration::from_secs(120)).create().unwrap();
    let template = example("chat_turn");
    let topic = intake_topic(EventKind::ChatTurn);
    let schema = EventKind::ChatTurn.schema_name();
    for chunk in 0..N / 10_000 {
        let mut acks = Vec::new();
        for i in chunk * 10_000..(chunk + 1) * 10_000 {
            let mut event = template.clone();
            event["event_id"] = uuid_of(i).into();
            event["turn_id"] = format!("turn_{i}").into();
            let payload = event.to_string();
            let record = FutureRecord::to(topic)
                .key("ctr_backlog")
                .payload(&payload)
                .headers(OwnedHeaders::new().insert(Header { key: SCHEMA_HEADER, value: Some(schema.as_str()) }));
            acks.push(producer.send_result(record).map_err(|(e, _)| e).unwrap());
        }
        for ack in acks {
            ack.await.unwrap().map_err(|(e, _)| e).unwrap();
        }
    }
    drop(producer);
    drop(intake);

    // A sink starts on the backlog, lands part of it, and dies without a word.
    let flush = [("GATA__LAKE__FLUSH_MAX_RECORDS", "2000")];
    let mut sink = Gata::start_with(bin(), dir.path(), port, &["--roles", "sink,query"], &flush).await.unwrap();
    let api = sink.client();
    let landed = eventually("the first rows of the backlog", Duration::from_secs(300), || async {
        api.count("SELECT COUNT(*) AS n FROM chat_turns").await.ok().filter(|n| *n > 0)
    })
    .await;
    sink.kill();
    assert!(landed < N, "the sink was killed after it had drained everything ({landed}); nothing was tested");

    // Started again, it drains the rest: every record once.
    let sink = Gata::start_with(bin(), dir.path(), port, &["--roles", "sink,query"], &flush).await.unwrap();
    let api = sink.client();
    eventually("the whole backlog in the lake", Duration::from_secs(600), || async {
        (api.count("SELECT COUNT(*) AS n FROM chat_turns").await.ok()? >= N).then_some(())
    })
    .await;
    for table in ["chat_turns", "events"] {
        let sql = format!("SELECT COUNT(*) AS n FROM {table} GROUP BY event_id HAVING COUNT(*) > 1");
        assert_eq!(api.rows(&sql).await.unwrap().len(), 0, "duplicates in {table}");
        assert_eq!(
            api.count(&format!("SELECT COUNT(DISTINCT event_id) AS n FROM {table}")).await.unwrap(),
            N,
            "{table}"
        );
    }

    // A new consumer group reads the whole backlog from the beginning.
    let kafka =
        KafkaClients::connect(sink.kafka_bootstrap().expect("printed Kafka address"), Idempotence::Auto).await.unwrap();
    let consumer: StreamConsumer = kafka.consumer("backlog-reader").create().unwrap();
    consumer.subscribe(&[topic]).unwrap();
    let mut read = 0u64;
    while read < N {
        tokio::time::timeout(Duration::from_secs(120), consumer.recv())
            .await
            .unwrap_or_else(|_| panic!("a new group read {read} of {N} records, then nothing for 120 s"))
            .unwrap();
        read += 1;
    }
}

/// A distinct, valid event id for record `i`.
fn uuid_of(i: u64) -> String {
    format!("01936f0e-7c2a-7b3e-9a41-{i:012x}")
}
