//! `orderlake-bench load`: many Flight SQL clients at once for a while, each running a weighted
//! mix of the API's lookups, view queries and analytics with keys drawn from the archive. Prints
//! per kind the count, the latency percentiles, queue refusals (`RESOURCE_EXHAUSTED`, the
//! server's documented answer when its queue is full) and any other error, once a minute and at
//! the end (JSON lines on stdout, a table on stderr).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use rand::Rng as _;
use rand::seq::IndexedRandom as _;

/// One kind of query of the mix: `sql` with `{order_id}`, `{customer_id}`, `{year}` and
/// `{next_year}` filled from the keys.
#[derive(Debug, serde::Deserialize)]
pub struct Kind {
    name: String,
    weight: u32,
    sql: String,
}

/// Keys sampled from the archive.
#[derive(Debug, serde::Deserialize)]
pub struct Keys {
    order_id: Vec<String>,
    customer_id: Vec<String>,
    year: Vec<i32>,
}

#[derive(Debug, Default)]
struct Tally {
    latencies_ms: Vec<f64>,
    refused: u64,
    errors: u64,
    first_error: Option<String>,
}

type Tallies = Arc<Mutex<BTreeMap<String, Tally>>>;

/// What the load run is given.
#[derive(Debug)]
pub struct Load<'a> {
    pub connection: orderlake_server::client::Connection,
    pub clients: usize,
    pub duration: Duration,
    pub mix: &'a Path,
    pub keys: &'a Path,
}

impl Load<'_> {
    pub async fn run(self) -> anyhow::Result<()> {
        let kinds: Arc<Vec<Kind>> = Arc::new(
            serde_json::from_slice(&std::fs::read(self.mix)?)
                .with_context(|| format!("reading the mix {}", self.mix.display()))?,
        );
        let keys: Arc<Keys> = Arc::new(
            serde_json::from_slice(&std::fs::read(self.keys)?)
                .with_context(|| format!("reading the keys {}", self.keys.display()))?,
        );
        anyhow::ensure!(
            !keys.order_id.is_empty() && !keys.customer_id.is_empty() && !keys.year.is_empty(),
            "the keys file needs order ids, customer ids and years"
        );
        anyhow::ensure!(kinds.iter().any(|k| k.weight > 0), "the mix is empty");
        let started = Instant::now();
        let deadline = started + self.duration;
        let tallies: Tallies = Arc::default();
        let mut clients = Vec::with_capacity(self.clients);
        for _ in 0..self.clients {
            let client = orderlake_server::client::connect(&self.connection).await?;
            let (kinds, keys, tallies) = (kinds.clone(), keys.clone(), tallies.clone());
            clients.push(tokio::spawn(drive(client, kinds, keys, tallies, deadline)));
        }
        let mut minute = 1;
        while Instant::now() < deadline {
            let next = started + Duration::from_secs(60 * minute);
            tokio::time::sleep_until(next.min(deadline).into()).await;
            report(
                &tallies,
                &format!("after {} s", started.elapsed().as_secs()),
            );
            minute += 1;
        }
        for c in clients {
            c.await?;
        }
        report(&tallies, "end");
        Ok(())
    }
}

/// One client: queries until the deadline, one at a time, as an API worker or a BI user does.
async fn drive(
    mut client: arrow_flight::sql::client::FlightSqlServiceClient<tonic::transport::Channel>,
    kinds: Arc<Vec<Kind>>,
    keys: Arc<Keys>,
    tallies: Tallies,
    deadline: Instant,
) {
    let total: u32 = kinds.iter().map(|k| k.weight).sum();
    while Instant::now() < deadline {
        let (kind, sql) = {
            let mut rng = rand::rng();
            let mut pick = rng.random_range(0..total);
            let kind = kinds
                .iter()
                .find(|k| {
                    if pick < k.weight {
                        return true;
                    }
                    pick -= k.weight;
                    false
                })
                .expect("the weights add up to the total");
            let year = *keys.year.choose(&mut rng).expect("years");
            let sql = kind
                .sql
                .replace(
                    "{order_id}",
                    keys.order_id.choose(&mut rng).expect("orders"),
                )
                .replace(
                    "{customer_id}",
                    keys.customer_id.choose(&mut rng).expect("customers"),
                )
                .replace("{year}", &year.to_string())
                .replace("{next_year}", &(year + 1).to_string());
            (kind, sql)
        };
        let asked = Instant::now();
        let outcome = orderlake_server::client::fetch_all(&mut client, &sql).await;
        let took = asked.elapsed().as_secs_f64() * 1000.0;
        let mut tallies = tallies.lock().expect("tallies lock");
        let tally = tallies.entry(kind.name.clone()).or_default();
        match outcome {
            Ok(_) => tally.latencies_ms.push(took),
            Err(e) => {
                let text = format!("{e:#}");
                if text.contains("ResourceExhausted") || text.contains("RESOURCE_EXHAUSTED") {
                    tally.refused += 1;
                } else {
                    tally.errors += 1;
                    tally.first_error.get_or_insert(text);
                }
            }
        }
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let at = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[at]
}

fn report(tallies: &Tallies, when: &str) {
    let tallies = tallies.lock().expect("tallies lock");
    eprintln!(
        "{when}: {:<36} {:>8} {:>9} {:>9} {:>9} {:>9} {:>7} {:>6}",
        "kind", "ok", "p50 ms", "p90 ms", "p99 ms", "max ms", "refused", "errors"
    );
    for (name, t) in tallies.iter() {
        let mut sorted = t.latencies_ms.clone();
        sorted.sort_by(f64::total_cmp);
        let (p50, p90, p99) = (
            percentile(&sorted, 0.5),
            percentile(&sorted, 0.9),
            percentile(&sorted, 0.99),
        );
        let max = sorted.last().copied().unwrap_or(f64::NAN);
        eprintln!(
            "{when}: {name:<36} {:>8} {p50:>9.1} {p90:>9.1} {p99:>9.1} {max:>9.1} {:>7} {:>6}",
            sorted.len(),
            t.refused,
            t.errors
        );
        if let Some(e) = &t.first_error {
            eprintln!("{when}:   first error: {e}");
        }
        println!(
            "{}",
            serde_json::json!({
                "when": when, "kind": name, "ok": sorted.len(), "p50_ms": p50, "p90_ms": p90,
                "p99_ms": p99, "max_ms": max, "refused": t.refused, "errors": t.errors,
                "first_error": t.first_error,
            })
        );
    }
}
