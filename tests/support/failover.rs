//! A master killed under load, as the sentinel and the cluster tests run
//! it: tasks issue and check tokens with durable writes, a probe measures
//! when calls succeed again, and afterwards every acknowledged token must
//! still be valid and every revoked one still revoked.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dsession::{Error, SessionManager};
use tokio::task::JoinHandle;

/// Tasks issuing and checking tokens under load.
pub const WORKERS: usize = 8;

/// Error messages and how often each was seen.
#[derive(Default)]
pub struct Seen(Mutex<BTreeMap<String, usize>>);

impl Seen {
    pub fn record(&self, error: &Error) {
        *self.0.lock().unwrap().entry(error.to_string()).or_default() += 1;
    }

    pub fn count(&self) -> usize {
        self.0.lock().unwrap().values().sum()
    }

    pub fn print(&self, heading: &str) {
        eprintln!("{heading}:\n{self}");
    }
}

impl std::fmt::Display for Seen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (message, count) in self.0.lock().unwrap().iter() {
            writeln!(f, "  {count:>5} x {message}")?;
        }
        Ok(())
    }
}

/// Issues and at once revokes one token for each of `users` users.
pub async fn revoked_tokens(durable: &SessionManager, users: usize) -> Vec<String> {
    let mut revoked = Vec::new();
    for user in 0..users {
        let token = durable
            .set_token(&format!("revoked{user}"), 600)
            .await
            .unwrap()
            .token;
        durable.delete_token(&token).await.unwrap();
        revoked.push(token);
    }
    revoked
}

/// [`WORKERS`] tasks, each issuing a token for its user (`user0`, …) and
/// checking it at once, until stopped. Only store errors are allowed.
pub struct Load {
    stop: Arc<AtomicBool>,
    issued: Arc<Mutex<Vec<String>>>,
    errors: Arc<Seen>,
    workers: Vec<JoinHandle<Vec<String>>>,
}

/// What a [`Load`] saw.
pub struct LoadOutcome {
    /// Tokens the durable store acknowledged.
    pub issued: Vec<String>,
    /// Tokens not valid right after they were issued.
    pub invalid: Vec<String>,
    pub errors: Arc<Seen>,
}

impl Load {
    /// Starts the tasks and returns once `min_issued` tokens are out.
    pub async fn start(durable: Arc<SessionManager>, min_issued: usize) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let issued = Arc::new(Mutex::new(Vec::new()));
        let errors = Arc::new(Seen::default());
        let workers = (0..WORKERS)
            .map(|worker| {
                let (durable, stop, issued, errors) = (
                    Arc::clone(&durable),
                    Arc::clone(&stop),
                    Arc::clone(&issued),
                    Arc::clone(&errors),
                );
                tokio::spawn(async move {
                    let mut invalid = Vec::new();
                    while !stop.load(Ordering::SeqCst) {
                        let token = match durable.set_token(&format!("user{worker}"), 600).await {
                            Ok(token) => token.token,
                            Err(error) => {
                                assert!(matches!(error, Error::Store(_)), "set-token: {error:?}");
                                errors.record(&error);
                                tokio::time::sleep(Duration::from_millis(20)).await;
                                continue;
                            }
                        };
                        issued.lock().unwrap().push(token.clone());
                        match durable.check_token(&token).await {
                            Ok(Some(_)) => {}
                            Ok(None) => invalid.push(token),
                            Err(error) => {
                                assert!(matches!(error, Error::Store(_)), "check-token: {error:?}");
                                errors.record(&error);
                            }
                        }
                    }
                    invalid
                })
            })
            .collect();
        let load = Self {
            stop,
            issued,
            errors,
            workers,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while load.issued.lock().unwrap().len() < min_issued {
            assert!(Instant::now() < deadline, "the load never got going");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        load
    }

    /// Lets the tasks see the new master too, then stops them.
    pub async fn stop(self) -> LoadOutcome {
        tokio::time::sleep(Duration::from_millis(500)).await;
        self.stop.store(true, Ordering::SeqCst);
        let mut invalid = Vec::new();
        for worker in self.workers {
            invalid.extend(worker.await.unwrap());
        }
        let issued = self.issued.lock().unwrap().clone();
        LoadOutcome {
            issued,
            invalid,
            errors: self.errors,
        }
    }
}

/// How long after `killed` a token for `probe_user` could be issued and
/// checked through `sessions`; fails past `limit`.
pub async fn first_success(
    sessions: &SessionManager,
    probe_user: &str,
    killed: Instant,
    limit: Duration,
) -> Duration {
    let probe_errors = Seen::default();
    let recovery = loop {
        let probe = async {
            let issued = sessions.set_token(probe_user, 600).await?;
            sessions.check_token(&issued.token).await
        };
        match probe.await {
            Ok(Some(_)) => break killed.elapsed(),
            Ok(None) => panic!("a token issued on the new master is not valid"),
            Err(error) => {
                assert!(matches!(error, Error::Store(_)), "probe: {error:?}");
                probe_errors.record(&error);
            }
        }
        assert!(
            killed.elapsed() < limit,
            "no call succeeded within {limit:?} of killing the master; errors:\n{probe_errors}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    probe_errors.print("errors seen by the recovery probe");
    recovery
}

/// How a failover went: the master's port before and after it, and how
/// long after the kill a call first succeeded.
pub struct Failover {
    from: u16,
    to: u16,
    recovery: Duration,
}

impl Failover {
    pub fn new(from: u16, to: u16, recovery: Duration) -> Self {
        Self { from, to, recovery }
    }
}

impl std::fmt::Display for Failover {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let Self { from, to, recovery } = self;
        write!(
            f,
            "from port {from} to {to}: first success {recovery:?} after the kill"
        )
    }
}

/// Checks through `sessions` that every issued token is still valid and
/// every revoked one still revoked; prints what the failover (`what`:
/// which kind) cost.
pub async fn assert_nothing_lost(
    sessions: &SessionManager,
    load: &LoadOutcome,
    revoked: &[String],
    what: &str,
    failover: Failover,
) {
    let mut lost = Vec::new();
    for token in &load.issued {
        if sessions.check_token(token).await.unwrap().is_none() {
            lost.push(token.clone());
        }
    }
    let mut revived = Vec::new();
    for token in revoked {
        if sessions.check_token(token).await.unwrap().is_some() {
            revived.push(token.clone());
        }
    }
    eprintln!(
        "{what} {failover}; {} tokens issued with a replica's acknowledgement, {} lost; {} revoked, \
         {} revived",
        load.issued.len(),
        lost.len(),
        revoked.len(),
        revived.len()
    );
    load.errors
        .print("errors seen by the workers (durable store)");
    let invalid = &load.invalid;
    assert!(invalid.is_empty(), "fresh tokens not valid: {invalid:?}");
    assert!(lost.is_empty(), "acknowledged tokens lost: {lost:?}");
    assert!(
        revived.is_empty(),
        "revoked tokens valid again: {revived:?}"
    );
}
