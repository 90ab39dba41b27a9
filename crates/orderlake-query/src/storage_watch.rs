//! Whether the archive's storage is answering. Every read a query makes goes through a
//! [`WatchedStore`], which notes when each request started and when storage last answered
//! anything (a response, a chunk of a body, an error). A query that reaches its time limit while
//! storage has been silent for a good part of it did not run out of time: storage hung under
//! it, and its client is told `UNAVAILABLE` (retry later), not `DEADLINE_EXCEEDED` (ask for
//! less). Requests are not attributed to queries: when storage stops answering, it stops for
//! every query.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::{BoxStream, Stream, StreamExt};
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, GetResultPayload, ListResult, MultipartUpload, ObjectMeta,
    ObjectStore, PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions,
};

/// Requests waiting on storage now, and when storage last answered.
#[derive(Debug, Default)]
pub struct StorageWatch {
    state: Mutex<WatchState>,
}

#[derive(Debug, Default)]
struct WatchState {
    next_id: u64,
    /// Request id → when it started and what it asked for.
    pending: BTreeMap<u64, (Instant, String)>,
    last_answer: Option<Instant>,
}

/// Storage that has not answered for a while although requests wait on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stall {
    /// How long storage has been silent: since its last answer, or since the oldest waiting
    /// request started if that is later.
    pub silent_for: Duration,
    /// Requests waiting now.
    pub waiting: usize,
    /// The oldest waiting request (operation and path).
    pub oldest: String,
}

impl fmt::Display for Stall {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the archive's storage has not answered for {:.1} s ({} request(s) waiting, the \
             oldest: {})",
            self.silent_for.as_secs_f64(),
            self.waiting,
            self.oldest
        )
    }
}

impl StorageWatch {
    /// The stall storage is in now, if requests wait and nothing has been answered for at
    /// least `at_least`.
    pub fn stalled(&self, at_least: Duration) -> Option<Stall> {
        let state = self.state.lock().expect("storage watch lock");
        // Ids are handed out in the order requests start: the first is the oldest.
        let (_, (started, what)) = state.pending.first_key_value()?;
        let silent_since = state.last_answer.map_or(*started, |a| a.max(*started));
        let silent_for = silent_since.elapsed();
        (silent_for >= at_least).then(|| Stall {
            silent_for,
            waiting: state.pending.len(),
            oldest: what.clone(),
        })
    }

    fn begin(self: &Arc<Self>, what: impl FnOnce() -> String) -> InFlight {
        let mut state = self.state.lock().expect("storage watch lock");
        let id = state.next_id;
        state.next_id += 1;
        state.pending.insert(id, (Instant::now(), what()));
        InFlight {
            watch: Arc::clone(self),
            id,
        }
    }

    fn answered(&self) {
        self.state.lock().expect("storage watch lock").last_answer = Some(Instant::now());
    }
}

/// A request waiting on storage; it stops waiting when dropped.
struct InFlight {
    watch: Arc<StorageWatch>,
    id: u64,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if let Ok(mut state) = self.watch.state.lock() {
            state.pending.remove(&self.id);
        }
    }
}

/// A body or listing being received: waiting on storage until it ends or is dropped, and each
/// item an answer.
struct WatchedStream<T> {
    inner: BoxStream<'static, T>,
    in_flight: Option<InFlight>,
}

impl<T> Stream for WatchedStream<T> {
    type Item = T;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T>> {
        let next = self.inner.poll_next_unpin(cx);
        match &next {
            Poll::Pending => {}
            Poll::Ready(Some(_)) => {
                if let Some(f) = &self.in_flight {
                    f.watch.answered();
                }
            }
            Poll::Ready(None) => {
                if let Some(f) = self.in_flight.take() {
                    f.watch.answered();
                }
            }
        }
        next
    }
}

fn watched_stream<T: Send + 'static>(
    inner: BoxStream<'static, T>,
    in_flight: InFlight,
) -> BoxStream<'static, T> {
    WatchedStream {
        inner,
        in_flight: Some(in_flight),
    }
    .boxed()
}

/// An object store whose requests a [`StorageWatch`] follows.
#[derive(Debug)]
pub struct WatchedStore {
    inner: Arc<dyn ObjectStore>,
    watch: Arc<StorageWatch>,
}

impl WatchedStore {
    pub fn new(inner: Arc<dyn ObjectStore>, watch: Arc<StorageWatch>) -> Self {
        Self { inner, watch }
    }

    /// Runs one request, waiting on storage until it returns.
    async fn call<T>(&self, what: impl FnOnce() -> String, request: impl Future<Output = T>) -> T {
        let in_flight = self.watch.begin(what);
        let answer = request.await;
        self.watch.answered();
        drop(in_flight);
        answer
    }
}

impl fmt::Display for WatchedStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Watched({})", self.inner)
    }
}

#[async_trait]
impl ObjectStore for WatchedStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        self.call(
            || format!("put {location}"),
            self.inner.put_opts(location, payload, opts),
        )
        .await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        self.call(
            || format!("multipart put {location}"),
            self.inner.put_multipart_opts(location, opts),
        )
        .await
    }

    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        let in_flight = self.watch.begin(|| match &options.range {
            Some(range) => format!("read of {location} ({range})"),
            None => format!("read of {location}"),
        });
        let mut result = self.inner.get_opts(location, options).await;
        self.watch.answered();
        if let Ok(GetResult {
            payload: GetResultPayload::Stream(body),
            ..
        }) = &mut result
        {
            // The body is still to come: the read waits on storage until it has all arrived.
            let inner = std::mem::replace(body, futures::stream::empty().boxed());
            *body = watched_stream(inner, in_flight);
        }
        result
    }

    async fn get_ranges(
        &self,
        location: &Path,
        ranges: &[Range<u64>],
    ) -> object_store::Result<Vec<Bytes>> {
        self.call(
            || format!("read of {} range(s) of {location}", ranges.len()),
            self.inner.get_ranges(location, ranges),
        )
        .await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        let in_flight = self.watch.begin(|| "delete".to_owned());
        watched_stream(self.inner.delete_stream(locations), in_flight)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        let in_flight = self.watch.begin(|| listing(prefix));
        watched_stream(self.inner.list(prefix), in_flight)
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        let in_flight = self.watch.begin(|| listing(prefix));
        watched_stream(self.inner.list_with_offset(prefix, offset), in_flight)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        self.call(|| listing(prefix), self.inner.list_with_delimiter(prefix))
            .await
    }

    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        self.call(
            || format!("copy of {from} to {to}"),
            self.inner.copy_opts(from, to, options),
        )
        .await
    }

    async fn rename_opts(
        &self,
        from: &Path,
        to: &Path,
        options: RenameOptions,
    ) -> object_store::Result<()> {
        self.call(
            || format!("rename of {from} to {to}"),
            self.inner.rename_opts(from, to, options),
        )
        .await
    }
}

fn listing(prefix: Option<&Path>) -> String {
    match prefix {
        Some(p) => format!("listing of {p}/"),
        None => "listing".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::ObjectStoreExt as _;
    use object_store::memory::InMemory;

    #[tokio::test]
    async fn a_read_that_never_answers_is_a_stall_and_an_answered_one_is_not() {
        let watch = Arc::new(StorageWatch::default());
        let memory = Arc::new(InMemory::new());
        let path = Path::from("data/part-0.parquet");
        memory
            .put(&path, Bytes::from_static(b"0123456789").into())
            .await
            .unwrap();
        let store = WatchedStore::new(memory, Arc::clone(&watch));

        assert_eq!(store.get_range(&path, 2..5).await.unwrap(), &b"234"[..]);
        assert_eq!(watch.stalled(Duration::ZERO), None, "nothing waits");

        let hung = watch.begin(|| "read of data/part-1.parquet".to_owned());
        tokio::time::sleep(Duration::from_millis(60)).await;
        let stall = watch.stalled(Duration::from_millis(50)).expect("a stall");
        assert_eq!(stall.waiting, 1);
        assert_eq!(stall.oldest, "read of data/part-1.parquet");
        assert!(stall.silent_for >= Duration::from_millis(50));
        assert_eq!(
            watch.stalled(Duration::from_secs(5)),
            None,
            "not silent that long"
        );

        // Another read answers: storage is slow for one request, not silent.
        store.get_range(&path, 0..1).await.unwrap();
        assert_eq!(watch.stalled(Duration::from_millis(50)), None);

        drop(hung);
        assert_eq!(
            watch.stalled(Duration::ZERO),
            None,
            "an abandoned read waits no more"
        );
    }

    #[tokio::test]
    async fn a_body_still_arriving_keeps_its_read_waiting() {
        let watch = Arc::new(StorageWatch::default());
        let memory = Arc::new(InMemory::new());
        let path = Path::from("f");
        memory
            .put(&path, Bytes::from_static(b"abc").into())
            .await
            .unwrap();
        let store = WatchedStore::new(memory, Arc::clone(&watch));

        let result = store.get(&path).await.unwrap();
        assert!(
            watch.stalled(Duration::ZERO).is_some(),
            "the body has not been read"
        );
        assert_eq!(result.bytes().await.unwrap(), &b"abc"[..]);
        assert_eq!(watch.stalled(Duration::ZERO), None);
    }
}
