//! `orderlake-archiver replay`: archived records back into Kafka.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use orderlake_archive::ArchiveTable;
use orderlake_ingest::registry::SchemaRegistry;
use orderlake_replay::{
    ReplayCheckpoint, ReplayOptions, ReplayPlan, ReplayReport, ReplaySelection, TimeField,
};

use crate::cli::ReplayArgs;
use crate::error::CliError;

#[derive(Debug)]
pub enum ReplayOutcome {
    DryRun(ReplayPlan),
    Sent(ReplayReport),
}

pub async fn replay(args: &ReplayArgs, stop: Arc<AtomicBool>) -> Result<ReplayOutcome, CliError> {
    let config = args.common.load()?;
    let table = ArchiveTable::open(super::table_location(&config)?).await?;
    let selection = ReplaySelection {
        from: args.from.clone(),
        to: args.to.clone(),
        time_field: if args.time_field == "kafka" {
            TimeField::Kafka
        } else {
            TimeField::Event
        },
        topics: args.source_topics.clone(),
        partitions: args.partitions.clone(),
        offsets: args.offsets.clone(),
        predicate: args.predicate.clone(),
    };
    if args.dry_run {
        return Ok(ReplayOutcome::DryRun(
            orderlake_replay::plan(&table, &selection, None).await?,
        ));
    }
    let options = ReplayOptions {
        brokers: args
            .brokers
            .clone()
            .unwrap_or_else(|| config.kafka.brokers.clone()),
        target_topic: args.to_topic.clone(),
        selection,
        partitioning: args.partitioning,
        rate_records: args.rate,
        rate_bytes: args.rate_bytes,
        resume: args.resume,
        checkpoint: args
            .checkpoint
            .clone()
            .unwrap_or_else(|| ReplayCheckpoint::default_path(&args.to_topic)),
        allow_loop: args.allow_loop,
        archiver_topics: config.kafka.topics.clone(),
        create_topic: args.create_topic,
        show_progress: !args.quiet,
        stop,
        kafka: config.kafka.properties.clone(),
        schema_registry: match &args.schema_registry_url {
            Some(urls) => {
                let mut registry = config.schema_registry.clone();
                registry.urls.clone_from(urls);
                Some(Arc::new(
                    SchemaRegistry::new(registry, tokio::runtime::Handle::current())
                        .map_err(CliError::Usage)?,
                ))
            }
            None => None,
        },
    };
    Ok(ReplayOutcome::Sent(
        orderlake_replay::replay(&table, &options).await?,
    ))
}

/// Runs a replay (or dry run) and prints its outcome.
pub async fn run(args: &ReplayArgs, stop: Arc<AtomicBool>) -> Result<(), CliError> {
    match replay(args, stop).await? {
        ReplayOutcome::DryRun(plan) => print!("{}", render_plan(&plan)),
        ReplayOutcome::Sent(r) => println!("{}", render_report(&args.to_topic, &r)),
    }
    Ok(())
}

pub fn render_report(topic: &str, r: &ReplayReport) -> String {
    format!(
        "replayed {} records ({:.1} MB) to {topic} in {:.1}s: {:.0} records/s, {:.1} MB/s; {} already present from an earlier run; partitioning {:?} over {} partitions; checkpoint {}",
        r.sent,
        r.bytes as f64 / 1e6,
        r.seconds,
        r.records_per_sec(),
        r.bytes_per_sec() / 1e6,
        r.already_present,
        r.partitioning,
        r.target_partitions,
        r.checkpoint
    )
}

pub fn render_plan(p: &ReplayPlan) -> String {
    let mut out = format!(
        "would send {} records, {:.1} MB (keys + values), event span {} .. {}\n",
        p.records,
        p.bytes as f64 / 1e6,
        p.first.map_or("-".into(), |t| t.to_rfc3339()),
        p.last.map_or("-".into(), |t| t.to_rfc3339()),
    );
    for (t, part, n) in &p.partitions {
        out.push_str(&format!("  {t}[{part}]: {n}\n"));
    }
    out
}
