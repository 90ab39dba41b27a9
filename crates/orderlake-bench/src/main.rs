//! Baselines the benchmarks compare orderlake against, run on the same machine in the same run.
//!
//! `raw-consume`: a plain librdkafka consumer (the same client library the archiver uses) that
//! reads the topics to nowhere, as fast as the broker serves them: the ceiling for the archiver's
//! drain rate.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message as _;

#[derive(Debug, Parser)]
#[command(about = "Baselines for orderlake's benchmarks")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Consume topics from the beginning to nowhere until `expect` records were read.
    RawConsume {
        #[arg(long)]
        brokers: String,
        #[arg(long, value_delimiter = ',')]
        topics: Vec<String>,
        #[arg(long)]
        expect: u64,
        #[arg(long, default_value = "orderlake-bench-raw")]
        group: String,
    },
}

fn raw_consume(brokers: &str, topics: &[String], expect: u64, group: &str) -> anyhow::Result<()> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .create()
        .context("creating consumer")?;
    let topics: Vec<&str> = topics.iter().map(String::as_str).collect();
    consumer.subscribe(&topics).context("subscribing")?;
    let started = Instant::now();
    let mut first: Option<Instant> = None;
    let (mut n, mut bytes) = (0u64, 0u64);
    while n < expect {
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(1800),
            "gave up after {n} of {expect} records"
        );
        if let Some(msg) = consumer.poll(Duration::from_millis(100)) {
            let msg = msg.context("consuming")?;
            first.get_or_insert_with(Instant::now);
            n += 1;
            bytes += msg.payload().map_or(0, <[u8]>::len) as u64
                + msg.key().map_or(0, <[u8]>::len) as u64;
        }
    }
    let total = started.elapsed().as_secs_f64();
    let streaming = first.map_or(total, |f| f.elapsed().as_secs_f64());
    println!(
        "raw-consume records={n} bytes={bytes} seconds={total:.3} streaming_seconds={streaming:.3} records_per_sec={:.0}",
        n as f64 / total
    );
    Ok(())
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::RawConsume {
            brokers,
            topics,
            expect,
            group,
        } => raw_consume(&brokers, &topics, expect, &group),
    }
}
