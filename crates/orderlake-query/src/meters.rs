//! What the engine exports (`orderlake_telemetry::catalogue::server`): planning time, table
//! refreshes, the version served and the footer cache. Queueing and running are counted by
//! admission (`limits`); outcomes and streamed rows by each front door.

use std::time::Duration;

use metrics::{counter, gauge, histogram};
use orderlake_telemetry::catalogue::server as m;

pub(crate) fn planned(took: Duration) {
    histogram!(m::QUERY_PLANNING).record(took.as_secs_f64());
}

pub(crate) fn refreshed<E>(result: &Result<Option<u64>, E>) {
    let outcome = match result {
        Ok(Some(_)) => "new_version",
        Ok(None) => "unchanged",
        Err(_) => "failed",
    };
    counter!(m::REFRESHES, "result" => outcome).increment(1);
}

pub(crate) fn serving(version: Option<u64>, committed_at_ms: Option<i64>) {
    if let Some(v) = version {
        gauge!(m::TABLE_VERSION).set(v as f64);
    }
    if let Some(at) = committed_at_ms {
        let age_ms = (chrono::Utc::now().timestamp_millis() - at).max(0);
        gauge!(m::TABLE_VERSION_AGE).set(age_ms as f64 / 1000.0);
    }
}

pub(crate) fn metadata_cache(hits: usize, entries: usize, bytes: usize) {
    gauge!(m::METADATA_CACHE_HITS).set(hits as f64);
    gauge!(m::METADATA_CACHE_ENTRIES).set(entries as f64);
    gauge!(m::METADATA_CACHE_BYTES).set(bytes as f64);
}

/// A plan sent to the cluster ended: answered by the cluster, or by this server after the
/// cluster failed it.
pub(crate) fn cluster_job(by_cluster: bool) {
    let by = if by_cluster { "cluster" } else { "server" };
    counter!(m::CLUSTER_JOBS, "answered_by" => by).increment(1);
}

/// A job the cluster stopped because its query was cancelled, timed out or lost its client.
pub(crate) fn cluster_job_cancelled() {
    counter!(m::CLUSTER_JOBS, "answered_by" => "cancelled").increment(1);
}
