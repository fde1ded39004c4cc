//! Demo traffic: creates a topic (if missing) and produces numbered JSON messages into it.
//!
//! `cargo run --release --example demo_produce -- --brokers 127.0.0.1:19092 --topic demo --count 20`

use std::time::Duration;

use clap::Parser;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};

#[derive(Parser)]
struct Args {
    #[arg(long, default_value = "127.0.0.1:19092")]
    brokers: String,
    #[arg(long, default_value = "demo")]
    topic: String,
    /// Partitions for the topic when it has to be created.
    #[arg(long, default_value_t = 4)]
    partitions: i32,
    #[arg(long, default_value_t = 20)]
    count: usize,
    /// Pause between messages.
    #[arg(long, default_value_t = 100)]
    interval_ms: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let mut cc = ClientConfig::new();
    cc.set("bootstrap.servers", &args.brokers);
    let admin: AdminClient<DefaultClientContext> = cc.create()?;
    let created = admin
        .create_topics(
            &[NewTopic::new(
                &args.topic,
                args.partitions,
                TopicReplication::Fixed(1),
            )],
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))),
        )
        .await?;
    match &created[0] {
        Ok(t) => println!("created topic {t} with {} partitions", args.partitions),
        Err((t, rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists)) => {
            println!("topic {t} exists")
        }
        Err((t, e)) => anyhow::bail!("creating topic {t}: {e}"),
    }
    let producer: FutureProducer = cc.create()?;
    for i in 0..args.count {
        let value = format!(r#"{{"n":{i},"text":"demo message {i}"}}"#);
        let key = format!("key-{i}");
        let record = FutureRecord::to(&args.topic).key(&key).payload(&value);
        let delivery = producer
            .send(record, Duration::from_secs(10))
            .await
            .map_err(|(e, _)| e)?;
        println!(
            "produced {value} -> partition {} offset {}",
            delivery.partition, delivery.offset
        );
        tokio::time::sleep(Duration::from_millis(args.interval_ms)).await;
    }
    Ok(())
}
