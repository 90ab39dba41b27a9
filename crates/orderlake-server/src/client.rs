//! A small Flight SQL command-line client (`orderlake-server query`): signs in, runs each
//! statement and prints its rows as a table. Handy for smoke tests and the demo; BI tools and
//! services use JDBC or ADBC.

use std::time::Instant;

use arrow::array::RecordBatch;
use arrow::util::pretty::pretty_format_batches;
use arrow_flight::sql::client::FlightSqlServiceClient;
use futures::TryStreamExt as _;
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};

/// How to reach and sign in to a server.
#[derive(Debug, Clone)]
pub struct Connection {
    /// `http://host:port` (or `https://` for TLS).
    pub uri: String,
    pub user: Option<String>,
    pub password: Option<String>,
    /// A service token instead of a user and password.
    pub token: Option<String>,
}

/// Connects and signs in.
pub async fn connect(c: &Connection) -> anyhow::Result<FlightSqlServiceClient<Channel>> {
    let mut endpoint = Endpoint::from_shared(c.uri.clone())?;
    if c.uri.starts_with("https://") {
        crate::install_tls_provider();
        endpoint = endpoint.tls_config(ClientTlsConfig::new().with_enabled_roots())?;
    }
    let channel = endpoint.connect().await?;
    let mut client = FlightSqlServiceClient::new(channel);
    match (&c.token, &c.user) {
        (Some(token), _) => client.set_token(token.clone()),
        (None, Some(user)) => {
            client
                .handshake(user, c.password.as_deref().unwrap_or_default())
                .await?;
        }
        (None, None) => {}
    }
    Ok(client)
}

/// Runs `sql` and returns every batch of its result.
pub async fn fetch_all(
    client: &mut FlightSqlServiceClient<Channel>,
    sql: &str,
) -> anyhow::Result<Vec<RecordBatch>> {
    let info = client.execute(sql.to_owned(), None).await?;
    let mut batches = Vec::new();
    for endpoint in info.endpoint {
        let Some(ticket) = endpoint.ticket else {
            continue;
        };
        let stream = client.do_get(ticket).await?;
        batches.extend(stream.try_collect::<Vec<_>>().await?);
    }
    Ok(batches)
}

/// Runs `sql` and returns its rows as a printable table, with the row count and time taken.
pub async fn run(
    client: &mut FlightSqlServiceClient<Channel>,
    sql: &str,
) -> anyhow::Result<String> {
    let started = Instant::now();
    let batches = fetch_all(client, sql).await?;
    let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
    Ok(format!(
        "{}\n({rows} rows in {:.0} ms)",
        pretty_format_batches(&batches)?,
        started.elapsed().as_secs_f64() * 1000.0
    ))
}
