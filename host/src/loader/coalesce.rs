//! The front every loader is called through: one load per user at a time,
//! a short memory of each answer (longer for "no detail"), a timeout, and
//! counts.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde_json::Value;
use tokio::sync::watch;

use super::{LoadFailure, LoaderError, UserLoader};
use crate::observe::{LoadOutcome, Observer, Unobserved};

/// How a [`CoalescingLoader`] treats every load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoaderOptions {
    /// The longest one load may take, a retry included; past it the load is
    /// a loader error. The policy's call timeout counts the load too, so
    /// keep this below [`crate::Limits::call_timeout`]. Default 2 s.
    pub timeout: Duration,
    /// How long "this user has no detail" is remembered in this process, so
    /// that a missing user cannot hammer the source; zero turns it off.
    /// Default 5 s.
    pub no_detail_ttl: Duration,
    /// How long a load's answer, detail or none, is handed to the loads of
    /// the same user that ask after it finished, in this process (a detail
    /// never to add-user and refresh-user, which reload it). A check
    /// that found the user-info cache empty just before the first load's
    /// answer was written there asks the loader too: within this time it
    /// gets that answer instead of a second call. Zero turns it off.
    /// Default 1 s.
    pub answer_ttl: Duration,
}

impl Default for LoaderOptions {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(2),
            no_detail_ttl: Duration::from_secs(5),
            answer_ttl: Duration::from_secs(1),
        }
    }
}

/// The most users whose answer is remembered; past it, new answers are not
/// remembered until old ones expire, so memory stays bounded.
const ANSWERS_CAPACITY: usize = 100_000;

tokio::task_local! {
    /// Set while an operation runs that reloads users from the source
    /// (add-user, refresh-user): the detail other loads just had is not
    /// handed to it.
    static FRESH: ();
}

/// Runs `operation` so that its loads never take the detail another load
/// just had, as [`LoaderOptions::answer_ttl`] would hand it: add-user and
/// refresh-user reload from the source. They still wait for a load in
/// flight.
pub(crate) async fn fresh<F: std::future::Future>(operation: F) -> F::Output {
    FRESH.scope((), operation).await
}

/// What one load gave, as every waiter receives it.
type Outcome = Result<Option<Value>, String>;

#[derive(Default)]
struct Book {
    /// Loads in flight, by user id; waiters watch for the outcome.
    flights: HashMap<String, watch::Receiver<Option<Outcome>>>,
    /// The answers of finished loads, by user id, until when they hold.
    answers: HashMap<String, (Option<Value>, Instant)>,
}

/// The wrapped loader, its options, and the book of loads in flight and
/// users without detail.
struct WrappedLoader {
    inner: Arc<dyn UserLoader>,
    options: LoaderOptions,
    book: Mutex<Book>,
    metrics: LoaderMetrics,
    observer: Arc<dyn Observer>,
}

/// Wraps any [`UserLoader`] so that concurrent loads of one user make one
/// call (the others wait for its outcome), its answer is handed to later
/// loads for [`LoaderOptions::answer_ttl`] ("no detail" for
/// [`LoaderOptions::no_detail_ttl`] if longer), each load is bounded by
/// [`LoaderOptions::timeout`], and calls, latency, errors and coalesced
/// waits are counted. Failures are never remembered. Cloning is cheap.
///
/// The load itself runs in a task of its own, so a caller that gives up
/// (a dropped request) neither cancels it for the others nor leaves them
/// waiting.
#[derive(Clone)]
pub struct CoalescingLoader(Arc<WrappedLoader>);

impl std::fmt::Debug for CoalescingLoader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CoalescingLoader")
            .field("options", &self.0.options)
            .finish_non_exhaustive()
    }
}

impl CoalescingLoader {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn UserLoader>, options: LoaderOptions) -> Self {
        Self::observed(inner, options, Arc::new(Unobserved))
    }

    /// Wraps `inner`, reporting every call to `observer`.
    pub fn observed(
        inner: Arc<dyn UserLoader>,
        options: LoaderOptions,
        observer: Arc<dyn Observer>,
    ) -> Self {
        Self(Arc::new(WrappedLoader {
            inner,
            options,
            book: Mutex::new(Book::default()),
            metrics: LoaderMetrics::default(),
            observer,
        }))
    }

    /// What this loader has done so far.
    pub fn metrics(&self) -> &LoaderMetrics {
        &self.0.metrics
    }
}

impl WrappedLoader {
    fn book(&self) -> MutexGuard<'_, Book> {
        // The book stays consistent at every unlock; a panic elsewhere
        // cannot leave it half-written.
        self.book.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs one load and hands its outcome to every waiter.
    async fn fly(self: Arc<Self>, user_id: String, sender: watch::Sender<Option<Outcome>>) {
        let mut landing = Landing {
            loader: Arc::clone(&self),
            user_id: user_id.clone(),
            landed: false,
        };
        let started = Instant::now();
        let timeout = self.options.timeout;
        let loaded = match tokio::time::timeout(timeout, self.inner.load(&user_id)).await {
            Ok(loaded) => loaded,
            Err(_) => Err(LoadFailure::Timeout {
                user_id: user_id.clone(),
                timeout,
            }
            .into()),
        };
        let outcome = self.record(&user_id, started, loaded);
        {
            // The flight ends before its outcome is out: a load that starts
            // later never joins it, so a failure is not handed on.
            let mut book = self.book();
            book.flights.remove(&user_id);
            landing.landed = true;
            let ttl = match &outcome {
                Ok(None) => self.options.no_detail_ttl.max(self.options.answer_ttl),
                Ok(Some(_)) => self.options.answer_ttl,
                Err(_) => Duration::ZERO,
            };
            if let (Ok(detail), false) = (&outcome, ttl.is_zero()) {
                let now = Instant::now();
                if book.answers.len() >= ANSWERS_CAPACITY {
                    book.answers.retain(|_, (_, until)| *until > now);
                }
                if book.answers.len() < ANSWERS_CAPACITY {
                    book.answers.insert(user_id, (detail.clone(), now + ttl));
                }
            }
        }
        sender.send_replace(Some(outcome));
    }
}

/// Ends a flight that did not land, because the loader panicked or the
/// runtime shut down: later loads of the user start a new one, and its
/// waiters see its sender gone.
struct Landing {
    loader: Arc<WrappedLoader>,
    user_id: String,
    landed: bool,
}

impl Drop for Landing {
    fn drop(&mut self) {
        if !self.landed {
            self.loader.book().flights.remove(&self.user_id);
        }
    }
}

#[async_trait]
impl UserLoader for CoalescingLoader {
    async fn load(&self, user_id: &str) -> Result<Option<Value>, LoaderError> {
        let mut flight = {
            let mut book = self.0.book();
            match book.answers.get(user_id) {
                Some((None, until)) if *until > Instant::now() => {
                    self.0
                        .metrics
                        .no_detail_hits
                        .fetch_add(1, Ordering::Relaxed);
                    self.0.observer.loader_no_detail_hit();
                    return Ok(None);
                }
                Some((Some(detail), until))
                    if *until > Instant::now() && FRESH.try_with(|()| ()).is_err() =>
                {
                    self.0
                        .metrics
                        .coalesced_waits
                        .fetch_add(1, Ordering::Relaxed);
                    self.0.observer.loader_coalesced_wait();
                    return Ok(Some(detail.clone()));
                }
                Some(_) => {
                    book.answers.remove(user_id);
                }
                None => {}
            }
            if let Some(flight) = book.flights.get(user_id) {
                self.0
                    .metrics
                    .coalesced_waits
                    .fetch_add(1, Ordering::Relaxed);
                self.0.observer.loader_coalesced_wait();
                flight.clone()
            } else {
                let (sender, receiver) = watch::channel(None);
                book.flights.insert(user_id.to_owned(), receiver.clone());
                tokio::spawn(Arc::clone(&self.0).fly(user_id.to_owned(), sender));
                receiver
            }
        };
        let outcome = match flight.wait_for(Option::is_some).await {
            Ok(outcome) => outcome.clone(),
            Err(_) => None,
        };
        match outcome {
            Some(Ok(detail)) => Ok(detail),
            Some(Err(message)) => Err(message.into()),
            None => Err(format!("the load of user {user_id:?} ended without an answer").into()),
        }
    }

    async fn ready(&self) -> Result<(), LoaderError> {
        let timeout = self.0.options.timeout;
        match tokio::time::timeout(timeout, self.0.inner.ready()).await {
            Ok(ready) => ready,
            Err(_) => Err(LoadFailure::Unavailable(format!("no answer within {timeout:?}")).into()),
        }
    }
}

/// What a [`CoalescingLoader`] has done so far. For metrics with latency
/// and failure reasons, give the manager an [`Observer`].
#[derive(Debug, Default)]
pub struct LoaderMetrics {
    calls: AtomicU64,
    errors: AtomicU64,
    coalesced_waits: AtomicU64,
    no_detail_hits: AtomicU64,
}

impl LoaderMetrics {
    /// Calls made to the wrapped loader, whatever their outcome.
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }

    /// Calls that failed.
    pub fn errors(&self) -> u64 {
        self.errors.load(Ordering::Relaxed)
    }

    /// Loads that waited for another load of the same user, or took the
    /// detail one had just loaded.
    pub fn coalesced_waits(&self) -> u64 {
        self.coalesced_waits.load(Ordering::Relaxed)
    }

    /// Loads answered "no detail" from memory.
    pub fn no_detail_hits(&self) -> u64 {
        self.no_detail_hits.load(Ordering::Relaxed)
    }
}

impl WrappedLoader {
    /// Counts one call and turns its result into what waiters receive; a
    /// JSON null is no detail.
    fn record(
        &self,
        user_id: &str,
        started: Instant,
        loaded: Result<Option<Value>, LoaderError>,
    ) -> Outcome {
        let (outcome, observed) = match loaded {
            Ok(Some(Value::Null) | None) => (Ok(None), LoadOutcome::NoDetail),
            Ok(Some(detail)) => (Ok(Some(detail)), LoadOutcome::Detail),
            Err(error) => {
                let reason = error
                    .downcast_ref::<LoadFailure>()
                    .map_or("other", LoadFailure::reason);
                tracing::warn!(user_id, reason, error = %error, "loading a user failed");
                // Every message names the user; the built-in loaders'
                // other errors do already.
                let message = match error.downcast_ref::<LoadFailure>() {
                    Some(LoadFailure::Unavailable(_)) | None => {
                        format!("cannot load user {user_id:?}: {error}")
                    }
                    Some(_) => error.to_string(),
                };
                self.metrics.errors.fetch_add(1, Ordering::Relaxed);
                (Err(message), LoadOutcome::Error(reason))
            }
        };
        self.metrics.calls.fetch_add(1, Ordering::Relaxed);
        self.observer.loader_call(observed, started.elapsed());
        outcome
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::sync::atomic::{AtomicUsize, Ordering};

    fn counting(answer: Option<Value>, delay: Duration) -> (Arc<dyn UserLoader>, Arc<AtomicUsize>) {
        let calls = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&calls);
        let loader = move |_: String| {
            counter.fetch_add(1, Ordering::SeqCst);
            let answer = answer.clone();
            async move {
                tokio::time::sleep(delay).await;
                Ok::<_, LoaderError>(answer)
            }
        };
        (Arc::new(loader), calls)
    }

    #[tokio::test]
    async fn concurrent_loads_of_one_user_make_one_call() {
        let (inner, calls) = counting(
            Some(serde_json::json!({ "a": 1 })),
            Duration::from_millis(100),
        );
        let loader = CoalescingLoader::new(inner, LoaderOptions::default());
        let loads: Vec<_> = (0..20)
            .map(|_| {
                let loader = loader.clone();
                tokio::spawn(async move { loader.load("alice").await.unwrap() })
            })
            .collect();
        for load in loads {
            assert_eq!(load.await.unwrap(), Some(serde_json::json!({ "a": 1 })));
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert_eq!(loader.metrics().coalesced_waits(), 19);
    }

    #[tokio::test]
    async fn a_load_just_after_another_finished_takes_its_detail_for_the_answer_ttl_only() {
        let (inner, calls) = counting(Some(serde_json::json!({ "a": 1 })), Duration::ZERO);
        let options = LoaderOptions {
            answer_ttl: Duration::from_millis(200),
            ..LoaderOptions::default()
        };
        let loader = CoalescingLoader::new(inner, options);
        loader.load("alice").await.unwrap();
        assert_eq!(
            loader.load("alice").await.unwrap(),
            Some(serde_json::json!({ "a": 1 }))
        );
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        fresh(loader.load("alice")).await.unwrap();
        assert_eq!(
            calls.load(Ordering::SeqCst),
            2,
            "a fresh load asks the source"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
        loader.load("alice").await.unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 3, "detail is not kept longer");
    }

    #[tokio::test]
    async fn no_detail_is_remembered_for_its_ttl_only() {
        let (inner, calls) = counting(None, Duration::ZERO);
        let options = LoaderOptions {
            no_detail_ttl: Duration::from_millis(200),
            answer_ttl: Duration::from_millis(50),
            ..LoaderOptions::default()
        };
        let loader = CoalescingLoader::new(inner, options);
        assert_eq!(loader.load("ghost").await.unwrap(), None);
        assert_eq!(loader.load("ghost").await.unwrap(), None);
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        tokio::time::sleep(Duration::from_millis(250)).await;
        assert_eq!(loader.load("ghost").await.unwrap(), None);
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_slow_load_times_out_and_failures_are_not_remembered() {
        let (inner, calls) = counting(None, Duration::from_secs(10));
        let options = LoaderOptions {
            timeout: Duration::from_millis(50),
            ..LoaderOptions::default()
        };
        let loader = CoalescingLoader::new(inner, options);
        let error = loader.load("slow").await.unwrap_err().to_string();
        assert!(
            error.contains("\"slow\"") && error.contains("longer than"),
            "{error}"
        );
        loader.load("slow").await.unwrap_err();
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        assert_eq!(loader.metrics().errors(), 2);
    }

    #[tokio::test]
    async fn a_panicking_loader_fails_its_waiters_and_the_next_load_tries_again() {
        let calls = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&calls);
        let inner = move |_: String| {
            let first = counter.fetch_add(1, Ordering::SeqCst) == 0;
            async move {
                assert!(!first, "the first load panics");
                Ok::<_, LoaderError>(Some(serde_json::json!(1)))
            }
        };
        let loader = CoalescingLoader::new(Arc::new(inner), LoaderOptions::default());
        assert!(loader.load("alice").await.is_err());
        assert_eq!(
            loader.load("alice").await.unwrap(),
            Some(serde_json::json!(1))
        );
    }
}
