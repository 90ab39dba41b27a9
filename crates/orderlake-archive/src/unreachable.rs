//! Waiting out an object store that does not answer. An archiver or server started before its
//! S3 server, or during an outage, should wait for it rather than exit after the store's own
//! retries (about a minute): the store coming back is the normal end of an outage, and what
//! supervises the process has nothing better to do than start it again.

use std::future::Future;
use std::time::Duration;

use crate::error::one_line;

/// The longest pause between two attempts.
const MAX_PAUSE: Duration = Duration::from_secs(10);

/// Whether `error` or one of its causes is the object store failing to answer (no connection,
/// a timeout, a server error after the store's own retries): a state that passes, unlike a
/// missing table, refused credentials or a wrong path, which waiting does not mend.
pub fn store_unreachable(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(error);
    while let Some(e) = cause {
        if let Some(store) = e.downcast_ref::<object_store::Error>() {
            return matches!(store, object_store::Error::Generic { .. });
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            use std::io::ErrorKind::*;
            return matches!(
                io.kind(),
                ConnectionRefused
                    | ConnectionReset
                    | ConnectionAborted
                    | NotConnected
                    | TimedOut
                    | HostUnreachable
                    | NetworkUnreachable
                    | NetworkDown
            );
        }
        cause = e.source();
    }
    false
}

/// Runs `attempt` until it succeeds or fails for a reason other than an unreachable store
/// ([`store_unreachable`]). After each unreachable failure, `still_waiting` hears the reason (to
/// show it on a readiness probe, say) and answers whether to go on; `false` returns that failure.
/// Pauses grow from one second to [`MAX_PAUSE`].
pub async fn until_reachable<T, E, F, Fut>(
    what: &str,
    still_waiting: impl FnMut(&str) -> bool,
    attempt: F,
) -> Result<T, E>
where
    E: std::error::Error + 'static,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    retry(what, Duration::from_secs(1), still_waiting, attempt).await
}

async fn retry<T, E, F, Fut>(
    what: &str,
    first_pause: Duration,
    mut still_waiting: impl FnMut(&str) -> bool,
    mut attempt: F,
) -> Result<T, E>
where
    E: std::error::Error + 'static,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let mut pause = first_pause;
    loop {
        match attempt().await {
            Err(e) if store_unreachable(&e) => {
                let reason = one_line(&e);
                if !still_waiting(&reason) {
                    return Err(e);
                }
                tracing::warn!(what, error = %reason, retry_in_ms = pause.as_millis() as u64,
                    "the object store cannot be reached; waiting for it");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(MAX_PAUSE);
            }
            done => return done,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_an_unanswering_store_is_worth_waiting_for() {
        let generic = object_store::Error::Generic {
            store: "S3",
            source: "error sending request: connection refused".into(),
        };
        assert!(store_unreachable(&generic));
        let not_found = object_store::Error::NotFound {
            path: "t/_delta_log".into(),
            source: "404".into(),
        };
        assert!(!store_unreachable(&not_found));
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert!(store_unreachable(&refused));
        let denied = std::io::Error::from(std::io::ErrorKind::PermissionDenied);
        assert!(!store_unreachable(&denied));
        // Found behind the errors that wrap it.
        let wrapped = crate::ArchiveError::Delta {
            uri: "s3://b/t".into(),
            source: Box::new(deltalake::DeltaTableError::ObjectStore { source: generic }),
        };
        assert!(store_unreachable(&wrapped));
        let missing = crate::ArchiveError::TableNotFound {
            uri: "s3://b/t".into(),
        };
        assert!(!store_unreachable(&missing));
    }

    #[tokio::test]
    async fn attempts_go_on_while_the_store_is_unreachable_and_stop_on_anything_else() {
        let mut calls = 0;
        let mut heard = Vec::new();
        let result: Result<u32, std::io::Error> = retry(
            "test",
            Duration::from_millis(1),
            |reason| {
                heard.push(reason.to_owned());
                true
            },
            || {
                calls += 1;
                let n = calls;
                async move {
                    match n {
                        1..=3 => Err(std::io::Error::from(std::io::ErrorKind::ConnectionRefused)),
                        _ => Ok(n),
                    }
                }
            },
        )
        .await;
        assert_eq!(result.unwrap(), 4);
        assert_eq!(heard.len(), 3);

        let mut calls = 0;
        let result: Result<(), std::io::Error> = retry(
            "test",
            Duration::from_millis(1),
            |_| true,
            || {
                calls += 1;
                async { Err(std::io::Error::from(std::io::ErrorKind::PermissionDenied)) }
            },
        )
        .await;
        assert!(result.is_err());
        assert_eq!(
            calls, 1,
            "a failure that waiting cannot mend is not retried"
        );

        let result: Result<(), std::io::Error> = retry(
            "test",
            Duration::from_millis(1),
            |_| false,
            || async { Err(std::io::Error::from(std::io::ErrorKind::TimedOut)) },
        )
        .await;
        assert!(
            result.is_err(),
            "a caller that stops waiting gets the failure"
        );
    }
}
