//! Kafka is not open to whoever reaches it: with `kafka.embedded_users` the embedded broker
//! serves only clients that authenticate with SCRAM, and every client of gata (intake, sink,
//! processors) authenticates as `kafka.security` says. Real SASL exchanges with librdkafka
//! against the broker: the right password is served; a wrong one, an unknown user, PLAIN and
//! no SASL are refused; a user taken out of the configuration is refused after a restart.

use std::{path::Path, time::Duration};

use gata_contract::topics::MARKETPLACE;
use gata_infra::{
    config::{KafkaSecurity, SaslMechanism, Secret, SecurityProtocol},
    kafka::KafkaClients,
};
use gata_tests::{Gata, eventually, free_port};
use rdkafka::producer::{BaseProducer, Producer};

use crate::{bin, workload};

/// A gata.toml where the embedded broker knows `users` and gata signs in as the first.
fn config(dir: &Path, users: &[(&str, &str)]) -> String {
    let list: Vec<String> =
        users.iter().map(|(name, password)| format!("{{ name = \"{name}\", password = \"{password}\" }}")).collect();
    let (name, password) = users[0];
    let text = format!(
        "[kafka]\nembedded_users = [{}]\n\n[kafka.security]\nprotocol = \"sasl_plaintext\"\n\
         sasl_mechanism = \"SCRAM-SHA-512\"\nusername = \"{name}\"\npassword = \"{password}\"\n",
        list.join(", ")
    );
    let path = dir.join("gata.toml");
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_string()
}

fn sasl(mechanism: SaslMechanism, user: &str, password: &str) -> KafkaSecurity {
    KafkaSecurity {
        protocol: SecurityProtocol::SaslPlaintext,
        sasl_mechanism: mechanism,
        username: Some(user.into()),
        password: Some(Secret(password.into())),
        ..KafkaSecurity::default()
    }
}

/// Whether a client with `security` is served the cluster's metadata (and sees the platform's
/// topics).
async fn served(bootstrap: &str, security: KafkaSecurity) -> Result<(), String> {
    let clients = KafkaClients::new(bootstrap).with_security(security);
    let producer: BaseProducer = clients.producer(Duration::from_secs(5)).create().map_err(|e| e.to_string())?;
    tokio::task::spawn_blocking(move || {
        let metadata = producer.client().fetch_metadata(None, Duration::from_secs(5)).map_err(|e| e.to_string())?;
        if metadata.topics().iter().any(|t| t.name() == MARKETPLACE) {
            Ok(())
        } else {
            Err(format!("served, but without the platform's topics: {:?}", metadata.topics().len()))
        }
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedded_broker_serves_only_scram_users_and_gata_signs_in_as_one() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), &[("gata-svc", "svc-pass-8d1f"), ("tool", "tool-pass-51ac")]);
    let port = free_port();
    let mut gata = Gata::start_on(bin(), dir.path(), port, &[("GATA_CONFIG", cfg.as_str())]).await.unwrap();
    let api = gata.client();

    // The whole path runs over authenticated clients: intake, the sink, SQL.
    let (turns, _, _) = workload(11, 20, 0);
    let (status, body) = api.post_ndjson("/v1/chat-turns", &turns).await.unwrap();
    assert_eq!(status, 202, "{body}");
    eventually("the turns land through the authenticated sink", Duration::from_secs(60), || async {
        (api.count("SELECT COUNT(*) AS n FROM chat_turns").await.ok()? == turns.len() as u64).then_some(())
    })
    .await;

    let bootstrap = gata.kafka_bootstrap().expect("printed Kafka address");
    served(&bootstrap, sasl(SaslMechanism::ScramSha256, "tool", "tool-pass-51ac")).await.unwrap();
    served(&bootstrap, sasl(SaslMechanism::ScramSha512, "gata-svc", "svc-pass-8d1f")).await.unwrap();
    for (what, security) in [
        ("a wrong password", sasl(SaslMechanism::ScramSha512, "tool", "tool-pass-51ad")),
        ("an unknown user", sasl(SaslMechanism::ScramSha256, "mallory", "tool-pass-51ac")),
        ("PLAIN, which the broker cannot check", sasl(SaslMechanism::Plain, "tool", "anything")),
        ("no SASL at all", KafkaSecurity::default()),
    ] {
        assert!(served(&bootstrap, security).await.is_err(), "{what} is served");
    }

    // Taken out of the configuration, a user is refused after the next start.
    gata.terminate(Duration::from_secs(30)).await.unwrap();
    config(dir.path(), &[("gata-svc", "svc-pass-8d1f")]);
    let gata = Gata::start_on(bin(), dir.path(), port, &[("GATA_CONFIG", cfg.as_str())]).await.unwrap();
    let bootstrap = gata.kafka_bootstrap().expect("printed Kafka address");
    served(&bootstrap, sasl(SaslMechanism::ScramSha512, "gata-svc", "svc-pass-8d1f")).await.unwrap();
    assert!(served(&bootstrap, sasl(SaslMechanism::ScramSha256, "tool", "tool-pass-51ac")).await.is_err());
}
