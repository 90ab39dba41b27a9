//! `orderlake-archiver run`: drain the configured topics into the archive.

use std::sync::Arc;
use std::time::Duration;

use orderlake_archive::ArchiveTable;
use orderlake_ingest::registry::SchemaRegistry;
use orderlake_ingest::{ArchiveWriter, DrainReport, DrainSettings, MappingSet, StopSignal};

use orderlake_telemetry::{OpsListener, Readiness, Router};

use crate::config::ArchiverConfig;
use crate::error::CliError;

pub async fn run(
    config: ArchiverConfig,
    until_caught_up: bool,
    stop: StopSignal,
) -> Result<DrainReport, CliError> {
    tracing::info!("effective configuration:\n{}", config.redacted());
    let readiness = Readiness::new(&[
        ("table", "opening the archive table"),
        ("broker", "no broker statistics yet"),
    ]);
    let _ops = match config.metrics.listen {
        Some(listen) => {
            Some(OpsListener::start(listen, readiness.clone(), None, Router::new()).await?)
        }
        None => None,
    };
    let location = super::table_location(&config)?;
    // An S3 server that does not answer yet is waited for, as the drain waits for its broker.
    let table = orderlake_archive::until_reachable(
        &location.to_string(),
        |reason| {
            readiness.set(
                "table",
                Err(format!("waiting for the object store: {reason}")),
            );
            !stop.is_stopped()
        },
        || ArchiveTable::open_or_create_with(location.clone(), config.table_layout()),
    )
    .await?;
    readiness.set("table", Ok(()));
    tracing::info!(table = %table.location(), version = ?table.version(), "archive table ready");
    let mappings = MappingSet::new(config.all_mappings())?;
    let writer = ArchiveWriter::new(table, config.writer_settings());
    let schema_registry = if config.schema_registry.is_configured() {
        let registry = SchemaRegistry::new(
            config.schema_registry.clone(),
            tokio::runtime::Handle::current(),
        )
        .map_err(CliError::Usage)?;
        tracing::info!(urls = %config.schema_registry.urls.join(","), "schema registry for framed records");
        Some(Arc::new(registry))
    } else {
        None
    };
    let settings = DrainSettings {
        brokers: config.kafka.brokers.clone(),
        group: config.kafka.group.clone(),
        topics: config.kafka.topics.clone(),
        start_from: config.kafka.start_from,
        flush_rows: config.flush.max_rows,
        flush_bytes: config.flush.max_bytes,
        flush_interval: config.flush_interval(),
        memory_budget_bytes: config.flush.memory_budget_bytes,
        max_decode_bytes: config.decode.max_value_bytes,
        until_caught_up,
        commit_to_group: config.kafka.commit_to_group,
        shutdown_grace: Duration::from_secs(config.shutdown.grace_secs),
        kafka: config.kafka.properties.clone(),
        readiness,
        schema_registry,
    };
    let maintenance = config
        .maintenance
        .enabled
        .then(|| tokio::spawn(super::maintain::scheduled(config.clone(), stop.clone())));
    let report = orderlake_ingest::drain(settings, mappings, writer, stop).await;
    if let Some(task) = maintenance {
        task.abort();
    }
    Ok(report?)
}
