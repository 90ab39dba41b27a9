//! A query of the Trino front door: a task runs it on the engine and encodes its batches into
//! pages of JSON rows, handed over a channel two pages deep, so a client that stops fetching
//! stops the query (its memory is the engine's buffers plus two pages). Each `GET` of the
//! `nextUri` takes what is ready; the last answer is kept so that a client retrying a request
//! gets the same page again, as Trino's clients expect.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arrow::array::RecordBatch;
use futures::StreamExt as _;
use orderlake_query::{ColdQueryEngine, QueryRequest};
use tokio::sync::mpsc;

use super::protocol::{Column, QueryResults, State, Stats, TrinoError};
use super::values::write_value;
use orderlake_query::trino_types::trino_type;

/// A page is cut once its JSON passes this size (Trino's own target is about 1 MB).
const PAGE_BYTES: usize = 1 << 20;
/// Pages encoded ahead of the client.
const PAGES_AHEAD: usize = 2;
/// How long one request waits for results before it answers "still running".
const WAIT: Duration = Duration::from_secs(1);
/// Finished queries are kept this long for retried and late requests.
const KEEP_FINISHED: Duration = Duration::from_secs(15 * 60);

/// What the running query hands to the requests.
#[derive(Debug)]
enum Event {
    Columns(Vec<Column>),
    Page { rows: u64, json: String },
    Failed(TrinoError),
    Finished,
}

/// An answer to a request: its JSON body.
#[derive(Debug, Clone)]
pub struct Answer {
    pub body: String,
}

#[derive(Debug)]
struct Progress {
    /// The token the next new request must carry.
    token: u64,
    /// The last answer and the token it answered.
    last: Option<(u64, Answer)>,
    columns: Option<Vec<Column>>,
    /// Rows the front door computed itself (`DESCRIBE`), sent with the first answer.
    ready: Option<(u64, String)>,
    events: Option<mpsc::Receiver<Event>>,
    state: State,
    error: Option<TrinoError>,
    rows: u64,
    bytes: u64,
    started_running: Option<Instant>,
    finished_at: Option<Instant>,
}

/// One query of the front door.
#[derive(Debug)]
pub struct TrinoQuery {
    pub id: String,
    /// A secret part of every `nextUri`: knowing the id alone does not let anyone fetch results.
    pub slug: String,
    pub user: String,
    pub sql: String,
    created: Instant,
    update_type: Option<&'static str>,
    progress: tokio::sync::Mutex<Progress>,
    touched: Mutex<Instant>,
}

impl TrinoQuery {
    /// Starts `request` on the engine.
    pub fn start(engine: &Arc<ColdQueryEngine>, request: QueryRequest) -> Arc<Self> {
        let (tx, rx) = mpsc::channel(PAGES_AHEAD);
        let query = Self::new(&request, None, Some(rx), State::Queued);
        let engine = Arc::clone(engine);
        tokio::spawn(run(engine, request, tx));
        query
    }

    /// A statement the front door answered itself (`USE`, `PREPARE`, …): finished at once.
    pub fn answered(request: &QueryRequest, update_type: &'static str) -> Arc<Self> {
        Self::new(request, Some(update_type), None, State::Finished)
    }

    /// A statement the front door answered with rows of its own (`DESCRIBE`).
    pub fn answered_with_rows(
        request: &QueryRequest,
        columns: Vec<Column>,
        rows: Vec<serde_json::Value>,
    ) -> Arc<Self> {
        let query = Self::new(request, None, None, State::Finished);
        {
            let mut p = query
                .progress
                .try_lock()
                .expect("a new query is not shared yet");
            p.columns = Some(columns);
            let json: Vec<String> = rows
                .iter()
                .map(|r| serde_json::to_string(r).unwrap_or_default())
                .collect();
            p.ready = Some((rows.len() as u64, json.join(",")));
        }
        query
    }

    /// A statement that failed before it reached the engine.
    pub fn failed(request: &QueryRequest, error: TrinoError) -> Arc<Self> {
        let query = Self::new(request, None, None, State::Failed);
        query
            .progress
            .try_lock()
            .expect("a new query is not shared yet")
            .error = Some(error);
        query
    }

    fn new(
        request: &QueryRequest,
        update_type: Option<&'static str>,
        events: Option<mpsc::Receiver<Event>>,
        state: State,
    ) -> Arc<Self> {
        let now = Instant::now();
        Arc::new(Self {
            id: request.id.clone(),
            slug: orderlake_query::new_query_id(),
            user: request.user.clone(),
            sql: request.sql.clone(),
            created: now,
            update_type,
            progress: tokio::sync::Mutex::new(Progress {
                token: 0,
                last: None,
                columns: None,
                ready: None,
                events,
                state,
                error: None,
                rows: 0,
                bytes: 0,
                started_running: None,
                finished_at: None,
            }),
            touched: Mutex::new(now),
        })
    }

    /// The answer to the request carrying `token`, waiting up to `wait` for results. `None`:
    /// the token is neither the next one nor the last one answered.
    pub async fn answer(&self, token: u64, wait: Duration, base: &str) -> Option<Answer> {
        *self.touched.lock().expect("touched lock") = Instant::now();
        let mut p = self.progress.lock().await;
        if let Some((last, answer)) = &p.last
            && *last == token
        {
            return Some(answer.clone());
        }
        if token != p.token {
            return None;
        }
        let (mut page_rows, mut page) = p.ready.take().unwrap_or_default();
        p.rows += page_rows;
        let deadline = tokio::time::Instant::now() + wait;
        while let Some(events) = p.events.as_mut() {
            let event = if page.is_empty() {
                match tokio::time::timeout_at(deadline, events.recv()).await {
                    Ok(event) => event,
                    Err(_) => break,
                }
            } else {
                // Gather what is ready into the page, without waiting for more.
                match events.try_recv() {
                    Ok(event) => Some(event),
                    Err(_) => break,
                }
            };
            match event {
                Some(Event::Columns(columns)) => {
                    p.columns = Some(columns);
                    p.state = State::Running;
                    p.started_running = Some(Instant::now());
                }
                Some(Event::Page { rows, json }) => {
                    p.rows += rows;
                    p.bytes += json.len() as u64;
                    page_rows += rows;
                    if !page.is_empty() {
                        page.push(',');
                    }
                    page.push_str(&json);
                    if page.len() >= PAGE_BYTES {
                        break;
                    }
                }
                Some(Event::Failed(error)) => {
                    p.error = Some(error);
                    p.state = State::Failed;
                    p.events = None;
                }
                Some(Event::Finished) | None => {
                    if p.state != State::Failed {
                        p.state = State::Finished;
                    }
                    p.events = None;
                }
            }
        }
        if page_rows > 0 {
            let first = (p.rows == page_rows).then_some(self.created);
            crate::observe::streamed(crate::observe::TRINO, page_rows, page.len() as u64, first);
        }
        if p.events.is_none() && p.finished_at.is_none() {
            p.finished_at = Some(Instant::now());
            let status = p.error.as_ref().map_or("OK", |e| e.error_name);
            crate::observe::ended(
                crate::observe::TRINO,
                status,
                p.error.is_none(),
                Some(self.created),
            );
        }
        // The last page of a finished query comes with the terminal answer (no nextUri).
        let terminal = p.events.is_none();
        let answer = self.render(&p, token, base, (page_rows > 0).then_some(page), terminal);
        p.last = Some((token, answer.clone()));
        p.token = token + 1;
        Some(answer)
    }

    fn render(
        &self,
        p: &Progress,
        token: u64,
        base: &str,
        page: Option<String>,
        terminal: bool,
    ) -> Answer {
        let elapsed = self.created.elapsed().as_millis() as u64;
        let queued = p.started_running.map_or(elapsed, |s| {
            s.duration_since(self.created).as_millis() as u64
        });
        let results = QueryResults {
            id: &self.id,
            info_uri: format!("{base}/v1/query/{}", self.id),
            next_uri: (!terminal).then(|| {
                format!(
                    "{base}/v1/statement/executing/{}/{}/{}",
                    self.id,
                    self.slug,
                    token + 1
                )
            }),
            columns: p.columns.as_deref(),
            stats: Stats::new(p.state, queued, elapsed, p.rows, p.bytes),
            error: p.error.as_ref(),
            warnings: [],
            update_type: self.update_type,
        };
        let mut body = serde_json::to_string(&results).unwrap_or_default();
        // The rows are JSON this module wrote: spliced in as they are, not parsed again.
        if let Some(rows) = page
            && body.ends_with('}')
        {
            body.pop();
            body.push_str(",\"data\":[");
            body.push_str(&rows);
            body.push_str("]}");
        }
        Answer { body }
    }

    /// Stops the query (a `DELETE` of its `nextUri`): the engine cancels it and its pages are
    /// dropped. A finished query stays as it ended.
    pub async fn cancel(&self, engine: &ColdQueryEngine) {
        let mut p = self.progress.lock().await;
        if p.events.take().is_some() {
            engine.cancel(&self.id);
            p.state = State::Failed;
            p.error = Some(TrinoError::new(
                super::protocol::Code::UserCanceled,
                "Query was canceled",
                None,
            ));
            p.finished_at = Some(Instant::now());
        }
    }

    /// What `GET /v1/query/{id}` shows of it.
    pub async fn info(&self) -> serde_json::Value {
        let p = self.progress.lock().await;
        serde_json::json!({
            "queryId": self.id,
            "state": p.state.as_str(),
            "query": self.sql,
            "session": {"user": self.user},
            "queryStats": {
                "elapsedTime": format!("{:.2}s", self.created.elapsed().as_secs_f64()),
                "processedRows": p.rows,
            },
            "errorCode": p.error.as_ref().map(|e| serde_json::json!({
                "code": e.error_code, "name": e.error_name, "type": e.error_type,
            })),
        })
    }

    /// Whether the query should be forgotten, and how it ended: finished long ago, or abandoned
    /// by its client while still running.
    fn expiry(&self, abandon_after: Duration) -> Option<Expiry> {
        let idle = self.touched.lock().expect("touched lock").elapsed();
        let p = self.progress.try_lock().ok()?;
        match p.finished_at {
            Some(at) => (at.elapsed() > KEEP_FINISHED).then_some(Expiry::Finished),
            None => (idle > abandon_after).then_some(Expiry::Abandoned),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expiry {
    Finished,
    Abandoned,
}

/// Runs the query and encodes its batches; stops when the requests side is dropped.
async fn run(engine: Arc<ColdQueryEngine>, request: QueryRequest, tx: mpsc::Sender<Event>) {
    let mut stream = match engine.execute(request).await {
        Ok(stream) => stream,
        Err(e) => {
            let _ = tx.send(Event::Failed(TrinoError::from_query(&e))).await;
            return;
        }
    };
    let columns = stream
        .schema()
        .fields()
        .iter()
        .map(|f| {
            let t = trino_type(f.data_type());
            Column {
                name: f.name().clone(),
                type_name: t.name,
                type_signature: t.signature,
            }
        })
        .collect();
    if tx.send(Event::Columns(columns)).await.is_err() {
        return;
    }
    while let Some(next) = stream.next().await {
        match next {
            Ok(batch) => {
                for (rows, json) in pages(&batch) {
                    if tx.send(Event::Page { rows, json }).await.is_err() {
                        return;
                    }
                }
            }
            Err(e) => {
                let _ = tx.send(Event::Failed(TrinoError::from_query(&e))).await;
                return;
            }
        }
    }
    let _ = tx.send(Event::Finished).await;
}

/// A batch as JSON rows (`[..],[..]`, without the enclosing brackets), cut into pages.
fn pages(batch: &RecordBatch) -> Vec<(u64, String)> {
    let mut out = Vec::new();
    let mut json = String::new();
    let mut rows = 0u64;
    for row in 0..batch.num_rows() {
        if rows > 0 {
            json.push(',');
        }
        json.push('[');
        for (i, column) in batch.columns().iter().enumerate() {
            if i > 0 {
                json.push(',');
            }
            write_value(column.as_ref(), row, &mut json);
        }
        json.push(']');
        rows += 1;
        if json.len() >= PAGE_BYTES {
            out.push((rows, std::mem::take(&mut json)));
            rows = 0;
        }
    }
    if rows > 0 {
        out.push((rows, json));
    }
    out
}

/// The front door's queries by id.
#[derive(Debug, Default)]
pub struct Queries {
    map: Mutex<HashMap<String, Arc<TrinoQuery>>>,
}

impl Queries {
    pub fn insert(&self, query: Arc<TrinoQuery>) {
        self.map
            .lock()
            .expect("queries lock")
            .insert(query.id.clone(), query);
    }

    /// The query with this id and slug.
    pub fn get(&self, id: &str, slug: &str) -> Option<Arc<TrinoQuery>> {
        let map = self.map.lock().expect("queries lock");
        map.get(id).filter(|q| q.slug == slug).cloned()
    }

    pub fn by_id(&self, id: &str) -> Option<Arc<TrinoQuery>> {
        self.map.lock().expect("queries lock").get(id).cloned()
    }

    /// Forgets finished queries past their keeping time and cancels abandoned ones (their
    /// client stopped asking for `abandon_after`).
    pub fn sweep(&self, engine: &ColdQueryEngine, abandon_after: Duration) {
        let abandoned: Vec<Arc<TrinoQuery>> = {
            let mut map = self.map.lock().expect("queries lock");
            let expired: Vec<(String, Expiry)> = map
                .values()
                .filter_map(|q| q.expiry(abandon_after).map(|e| (q.id.clone(), e)))
                .collect();
            expired
                .into_iter()
                .filter_map(|(id, expiry)| map.remove(&id).filter(|_| expiry == Expiry::Abandoned))
                .collect()
        };
        for query in abandoned {
            // Dropping the query drops its pages' receiver, which ends the running task; the
            // engine is told too, in case the query is busy computing. (A finished query is
            // only forgotten: cancelling its id would just fill the engine's list of ids
            // cancelled before they started.)
            engine.cancel(&query.id);
        }
    }
}

/// How long one request may wait: Trino's clients pass none, and get about a second.
pub fn wait() -> Duration {
    WAIT
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Int64Array, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};

    use super::*;

    #[test]
    fn batches_become_json_rows_cut_into_pages() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("n", DataType::Int64, false),
            Field::new("s", DataType::Utf8, true),
        ]));
        let long = "x".repeat(1000);
        let n = 3000;
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int64Array::from_iter_values(0..n)),
                Arc::new(StringArray::from_iter(
                    (0..n).map(|i| (i % 2 == 0).then_some(long.as_str())),
                )),
            ],
        )
        .unwrap();
        let pages = pages(&batch);
        assert!(
            pages.len() > 1,
            "3000 rows of ~500 bytes make more than one page"
        );
        assert_eq!(pages.iter().map(|(r, _)| r).sum::<u64>(), n as u64);
        let all: Vec<serde_json::Value> = pages
            .iter()
            .flat_map(|(_, json)| {
                serde_json::from_str::<Vec<serde_json::Value>>(&format!("[{json}]")).unwrap()
            })
            .collect();
        assert_eq!(all.len(), n as usize);
        assert_eq!(all[1], serde_json::json!([1, null]));
        assert_eq!(all[2][1].as_str().unwrap().len(), 1000);
    }
}
