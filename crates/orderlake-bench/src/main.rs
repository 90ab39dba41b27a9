//! Baselines the benchmarks compare orderlake against, run on the same machine in the same run.
//!
//! `raw-consume`: a plain librdkafka consumer (the same client library the archiver uses) that
//! reads the topics to nowhere, as fast as the broker serves them: the ceiling for the archiver's
//! drain rate.
//!
//! `raw-produce`: loads records from topics into memory, then sends them to another topic with a
//! plain idempotent producer (the settings replay uses) and times only the sending: the ceiling
//! for replay, which also has to read the archive.
//!
//! `query-suite`: the orderlake side of the cold-query benchmark: runs each query of a prepared
//! suite through the Flight SQL client against a running orderlake-server, several times, and
//! prints the median and best times (its DuckDB baseline runs in `tests/python/bench_queries.py`).

mod load;

use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message as _;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer as _};

/// The archiver's allocator, so decode-cost times decoding as the archiver pays for it.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[derive(Debug, Parser)]
#[command(about = "Baselines for orderlake's benchmarks")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// The orderlake-server to query, and whom to sign in as.
#[derive(Debug, clap::Args)]
struct Server {
    #[arg(long)]
    uri: String,
    #[arg(long)]
    user: String,
    #[arg(long, env = "ORDERLAKE_SERVER_PASSWORD", hide_env_values = true)]
    password: String,
}

impl Server {
    fn connection(&self) -> orderlake_server::client::Connection {
        orderlake_server::client::Connection {
            uri: self.uri.clone(),
            user: Some(self.user.clone()),
            password: Some(self.password.clone()),
            token: None,
        }
    }
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Consume topics from the beginning to nowhere until `expect` records were read.
    RawConsume {
        #[command(flatten)]
        source: Source,
        #[arg(long, default_value = "orderlake-bench-raw")]
        group: String,
    },
    /// Time each query of a suite (JSON: {"queries": [{"name", "sql"}]}) through Flight SQL.
    QuerySuite {
        #[command(flatten)]
        server: Server,
        #[arg(long)]
        queries: std::path::PathBuf,
        #[arg(long, default_value_t = 5)]
        reps: usize,
    },
    /// Many Flight SQL clients at once for a while, running a weighted mix of queries (JSON:
    /// [{"name", "weight", "sql"}]) with keys sampled from the archive (JSON: {"order_id": [..],
    /// "customer_id": [..], "year": [..]}); latency percentiles, refusals and errors per kind.
    Load {
        #[command(flatten)]
        server: Server,
        #[arg(long)]
        mix: std::path::PathBuf,
        #[arg(long)]
        keys: std::path::PathBuf,
        #[arg(long, default_value_t = 64)]
        clients: usize,
        #[arg(long, default_value_t = 600)]
        seconds: u64,
    },
    /// Load `expect` records from topics, then time sending them to `to_topic`.
    RawProduce {
        #[command(flatten)]
        source: Source,
        #[arg(long)]
        to_topic: String,
        #[arg(long, default_value_t = 4)]
        partitions: i32,
    },
    /// Load `expect` records from topics, then time decoding them into the canonical columns
    /// (default mappings; framed records with the schema registry at `schema_registry_url`).
    DecodeCost {
        #[command(flatten)]
        source: Source,
        #[arg(long)]
        schema_registry_url: Option<String>,
        #[arg(long, default_value_t = 3)]
        reps: usize,
    },
}

/// Where a baseline reads its records.
#[derive(Debug, clap::Args)]
struct Source {
    #[arg(long)]
    brokers: String,
    #[arg(long, value_delimiter = ',')]
    topics: Vec<String>,
    /// Records to read.
    #[arg(long)]
    expect: u64,
}

type Loaded = (
    String,
    Option<Vec<u8>>,
    Option<Vec<u8>>,
    Vec<(String, Option<Vec<u8>>)>,
    Option<i64>,
);

/// Reads `expect` records of `topics` (from the beginning) into memory, with their topics.
fn load(brokers: &str, topics: &[String], expect: u64) -> anyhow::Result<Vec<Loaded>> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set(
            "group.id",
            format!("orderlake-bench-load-{}", std::process::id()),
        )
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .create()?;
    let names: Vec<&str> = topics.iter().map(String::as_str).collect();
    consumer.subscribe(&names)?;
    let mut records: Vec<Loaded> = Vec::with_capacity(expect as usize);
    let started = Instant::now();
    while (records.len() as u64) < expect {
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(1800),
            "loaded only {} records",
            records.len()
        );
        if let Some(m) = consumer.poll(Duration::from_millis(100)) {
            let m = m?;
            let headers = orderlake_replay::produce::header_pairs(&m);
            records.push((
                m.topic().to_owned(),
                m.key().map(<[u8]>::to_vec),
                m.payload().map(<[u8]>::to_vec),
                headers,
                m.timestamp().to_millis(),
            ));
        }
    }
    drop(consumer);
    Ok(records)
}

fn raw_produce(
    brokers: &str,
    topics: &[String],
    expect: u64,
    to_topic: &str,
    partitions: i32,
) -> anyhow::Result<()> {
    let records = load(brokers, topics, expect)?;
    let runtime = tokio::runtime::Runtime::new()?;
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()?;
    let topic = NewTopic::new(to_topic, partitions, TopicReplication::Fixed(1));
    runtime.block_on(admin.create_topics(&[topic], &AdminOptions::new()))?;
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("enable.idempotence", "true")
        .set("linger.ms", "20")
        .set("batch.num.messages", "10000")
        .set("queue.buffering.max.kbytes", "262144")
        .set("message.max.bytes", "10000000")
        .create()?;
    let bytes: u64 = records
        .iter()
        .map(|r| (r.1.as_ref().map_or(0, Vec::len) + r.2.as_ref().map_or(0, Vec::len)) as u64)
        .sum();
    let started = Instant::now();
    for (_, key, value, headers, ts) in &records {
        let hs = orderlake_replay::produce::owned_headers(headers);
        let mut record: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(to_topic).headers(hs);
        if let Some(k) = key {
            record = record.key(k.as_slice());
        }
        if let Some(v) = value {
            record = record.payload(v.as_slice());
        }
        if let Some(ts) = ts {
            record = record.timestamp(*ts);
        }
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                    record = r;
                    producer.poll(Duration::from_millis(5));
                }
                Err((e, _)) => return Err(e.into()),
            }
        }
        producer.poll(Duration::ZERO);
    }
    producer.flush(Duration::from_secs(300))?;
    let secs = started.elapsed().as_secs_f64();
    println!(
        "raw-produce records={} bytes={bytes} seconds={secs:.3} records_per_sec={:.0} mb_per_sec={:.2}",
        records.len(),
        records.len() as f64 / secs,
        bytes as f64 / secs / 1e6
    );
    Ok(())
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

/// Decodes the loaded records `reps` times after a first pass that fetches their schemas; prints
/// the best pass.
fn decode_cost(
    source: &Source,
    schema_registry_url: Option<String>,
    reps: usize,
) -> anyhow::Result<()> {
    use orderlake_ingest::decode::{Decoded, TopicDecoder};
    let records = load(&source.brokers, &source.topics, source.expect)?;
    let runtime = tokio::runtime::Runtime::new()?;
    let registry = schema_registry_url
        .map(|url| {
            let config = orderlake_ingest::registry::SchemaRegistryConfig {
                urls: vec![url],
                ..Default::default()
            };
            orderlake_ingest::registry::SchemaRegistry::new(config, runtime.handle().clone())
                .map(std::sync::Arc::new)
                .map_err(anyhow::Error::msg)
        })
        .transpose()?;
    let mappings = orderlake_ingest::MappingSet::new(orderlake_ingest::SourceMapping::defaults())?;
    let mut decoder =
        TopicDecoder::new(mappings, orderlake_ingest::decode::DEFAULT_MAX_DECODE_BYTES)
            .with_registry(registry);
    let headers: Vec<Option<&[u8]>> = records
        .iter()
        .map(|r| orderlake_ingest::avro::schema_header(&r.3))
        .collect();
    let started = Instant::now();
    for ((topic, _, value, _, _), header) in records.iter().zip(&headers) {
        while let Decoded::NeedsSchema(_) = decoder.decode_record(topic, value.as_deref(), *header)
        {
            anyhow::ensure!(
                started.elapsed() < Duration::from_secs(60),
                "no schema in 60 s"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    let (mut best, mut undecoded) = (f64::MAX, 0);
    for _ in 0..reps.max(1) {
        let started = Instant::now();
        undecoded = 0;
        for ((topic, _, value, _, _), header) in records.iter().zip(&headers) {
            match decoder.decode_record(topic, value.as_deref(), *header) {
                Decoded::Order(order) => undecoded += usize::from(order.error.is_some()),
                Decoded::NeedsSchema(_) => anyhow::bail!("a schema went missing"),
            }
        }
        best = best.min(started.elapsed().as_secs_f64());
    }
    println!(
        "decode-cost records={} seconds={best:.3} ns_per_record={:.0} undecoded={undecoded}",
        records.len(),
        best * 1e9 / records.len() as f64
    );
    Ok(())
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::RawConsume { source, group } => {
            raw_consume(&source.brokers, &source.topics, source.expect, &group)
        }
        Command::RawProduce {
            source,
            to_topic,
            partitions,
        } => raw_produce(
            &source.brokers,
            &source.topics,
            source.expect,
            &to_topic,
            partitions,
        ),
        Command::DecodeCost {
            source,
            schema_registry_url,
            reps,
        } => decode_cost(&source, schema_registry_url, reps),
        Command::QuerySuite {
            server,
            queries,
            reps,
        } => tokio::runtime::Runtime::new()?.block_on(query_suite(
            &server.connection(),
            &queries,
            reps,
        )),
        Command::Load {
            server,
            mix,
            keys,
            clients,
            seconds,
        } => tokio::runtime::Runtime::new()?.block_on(
            load::Load {
                connection: server.connection(),
                clients,
                duration: Duration::from_secs(seconds),
                mix: &mix,
                keys: &keys,
            }
            .run(),
        ),
    }
}

#[derive(Debug, serde::Deserialize)]
struct Suite {
    queries: Vec<SuiteQuery>,
}

#[derive(Debug, serde::Deserialize)]
struct SuiteQuery {
    name: String,
    sql: String,
}

/// Runs each query once to warm up, then `reps` times; prints one JSON line per query.
async fn query_suite(
    connection: &orderlake_server::client::Connection,
    queries: &std::path::Path,
    reps: usize,
) -> anyhow::Result<()> {
    let suite: Suite = serde_json::from_slice(&std::fs::read(queries)?)?;
    let mut client = orderlake_server::client::connect(connection).await?;
    for q in &suite.queries {
        let warm = orderlake_server::client::fetch_all(&mut client, &q.sql)
            .await
            .with_context(|| format!("{}: {}", q.name, q.sql))?;
        let rows: usize = warm.iter().map(|b| b.num_rows()).sum();
        let mut times = Vec::with_capacity(reps);
        for _ in 0..reps.max(1) {
            let started = Instant::now();
            orderlake_server::client::fetch_all(&mut client, &q.sql).await?;
            times.push(started.elapsed().as_secs_f64() * 1000.0);
        }
        times.sort_by(f64::total_cmp);
        let median = times[times.len() / 2];
        eprintln!("orderlake {:<32} {median:10.1} ms  {rows} rows", q.name);
        println!(
            "{}",
            serde_json::json!({"name": q.name, "median_ms": median, "best_ms": times[0], "rows": rows})
        );
    }
    Ok(())
}
