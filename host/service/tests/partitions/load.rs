//! Clients that log in, check, revoke and revoke all against the lab's
//! dsession instances and log every operation; a prober of `/readyz`.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use reqwest::{Client, RequestBuilder, StatusCode};
use serde_json::{Value, json};
use tokio::runtime::Runtime;
use tokio::task::JoinHandle;

use super::history::{Kind, Op, Outcome};
use super::service::ADMIN_KEY;

/// How long a client waits for an answer: past it, the outcome is unknown
/// and counts as a hang. Well above every timeout of the service's own.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(5);

/// Sessions each client keeps for its users, at most; beyond them it
/// revokes instead of logging in. Logins outpace revokes, so that most
/// sessions live to the final read, where a lost one shows.
const TOKENS_PER_CLIENT: usize = 5000;

fn client() -> Client {
    Client::builder()
        .timeout(CLIENT_TIMEOUT)
        .connect_timeout(Duration::from_secs(1))
        .build()
        .unwrap()
}

/// What an answer means: the check's validity, or the operation's outcome.
async fn outcome(request: RequestBuilder, check: bool) -> (Outcome, Option<Value>) {
    let response = match request.send().await {
        Ok(response) => response,
        Err(error) if error.is_connect() => {
            return (
                Outcome::Failed {
                    status: 0,
                    code: "service unreachable".into(),
                },
                None,
            );
        }
        Err(error) if error.is_timeout() => {
            return (
                Outcome::Unknown {
                    why: format!("no answer within {CLIENT_TIMEOUT:?}"),
                },
                None,
            );
        }
        Err(error) => {
            return (
                Outcome::Unknown {
                    why: format!("transport: {error}"),
                },
                None,
            );
        }
    };
    let status = response.status();
    let body: Option<Value> = response.json().await.ok();
    if status.is_success() {
        return (Outcome::Ok { valid: true }, body);
    }
    if check && status == StatusCode::UNAUTHORIZED {
        return (Outcome::Ok { valid: false }, body);
    }
    match body
        .as_ref()
        .and_then(|body| body["error"]["code"].as_str())
    {
        Some(code) => (
            Outcome::Failed {
                status: status.as_u16(),
                code: code.to_owned(),
            },
            body,
        ),
        None => (
            Outcome::Unknown {
                why: format!("{status} without the JSON error"),
            },
            body,
        ),
    }
}

/// A small xorshift, so that runs differ only by timing.
struct Random(u64);

impl Random {
    fn below(&mut self, bound: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        usize::try_from(self.0 % u64::try_from(bound).unwrap()).unwrap()
    }
}

/// One client: its users, the dsession instance it talks to, and what it
/// did.
struct Worker {
    node: usize,
    base: String,
    users: usize,
    client: Client,
    /// Tokens issued to its users and not yet revoked, as far as it knows.
    tokens: Vec<(String, String)>,
    history: Vec<Op>,
    random: Random,
}

impl Worker {
    async fn record(
        &mut self,
        kind: Kind,
        user: String,
        token: Option<String>,
        request: RequestBuilder,
    ) -> Outcome {
        let invoke = Instant::now();
        let (outcome, body) = outcome(request, kind == Kind::Check).await;
        let token = match (&outcome, kind) {
            (Outcome::Ok { .. }, Kind::Login) => body
                .as_ref()
                .and_then(|body| body["token"].as_str())
                .map(str::to_owned),
            _ => token,
        };
        self.history.push(Op {
            kind,
            user,
            token,
            node: self.node,
            invoke,
            complete: Instant::now(),
            outcome: outcome.clone(),
        });
        outcome
    }

    async fn step(&mut self) {
        let roll = self.random.below(1000);
        let full = self.tokens.len() >= TOKENS_PER_CLIENT;
        if self.tokens.is_empty() || (roll < 300 && !full) {
            // Users are shared by every client, so that instances race on them.
            let user = format!("u{}", self.random.below(self.users));
            let request = self
                .client
                .post(format!("{}/v1/tokens", self.base))
                .bearer_auth(ADMIN_KEY)
                .json(&json!({ "user_id": user, "ttl": 3600 }));
            if self.record(Kind::Login, user.clone(), None, request).await
                == (Outcome::Ok { valid: true })
                && let Some(token) = self.history.last().and_then(|op| op.token.clone())
            {
                self.tokens.push((user, token));
            }
            return;
        }
        let index = self.random.below(self.tokens.len());
        let (user, token) = self.tokens[index].clone();
        if roll < 850 {
            let request = self
                .client
                .get(format!("{}/auth", self.base))
                .bearer_auth(&token);
            self.record(Kind::Check, user, Some(token), request).await;
        } else if roll < 995 {
            self.tokens.swap_remove(index);
            let request = self
                .client
                .post(format!("{}/v1/tokens/revoke", self.base))
                .bearer_auth(ADMIN_KEY)
                .json(&json!({ "token": token }));
            self.record(Kind::Revoke, user, Some(token), request).await;
        } else {
            self.tokens.retain(|(owner, _)| *owner != user);
            let request = self
                .client
                .delete(format!("{}/v1/users/{user}/tokens", self.base))
                .bearer_auth(ADMIN_KEY);
            self.record(Kind::RevokeAll, user, None, request).await;
        }
    }
}

/// One `/readyz` answer.
#[derive(Debug, Clone)]
pub struct Probe {
    pub at: Instant,
    pub node: usize,
    pub ready: bool,
    pub body: Option<Value>,
}

/// Clients and a prober running until [`Load::stop`].
pub struct Load {
    stop: Arc<AtomicBool>,
    workers: Vec<JoinHandle<Vec<Op>>>,
    prober: JoinHandle<Vec<Probe>>,
}

impl Load {
    /// `clients` clients, spread over the instances at `bases`, each with
    /// `users` users of its own; and a prober of each instance's `/readyz`
    /// every 100 ms.
    pub fn start(runtime: &Runtime, bases: &[String], clients: usize, users: usize) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let workers = (0..clients)
            .map(|id| {
                let node = id % bases.len();
                let mut worker = Worker {
                    node,
                    base: bases[node].clone(),
                    users,
                    client: client(),
                    tokens: Vec::new(),
                    history: Vec::new(),
                    random: Random(0x9e37_79b9_7f4a_7c15 ^ (id as u64 + 1)),
                };
                let stop = Arc::clone(&stop);
                runtime.spawn(async move {
                    while !stop.load(Ordering::SeqCst) {
                        worker.step().await;
                        tokio::time::sleep(Duration::from_millis(2)).await;
                    }
                    worker.history
                })
            })
            .collect();
        let bases = bases.to_vec();
        let probing = Arc::clone(&stop);
        let prober = runtime.spawn(async move {
            let client = client();
            let mut probes = Vec::new();
            while !probing.load(Ordering::SeqCst) {
                for (node, base) in bases.iter().enumerate() {
                    let response = client.get(format!("{base}/readyz")).send().await;
                    let (ready, body) = match response {
                        Ok(response) => {
                            (response.status().is_success(), response.json().await.ok())
                        }
                        Err(_) => (false, None),
                    };
                    probes.push(Probe {
                        at: Instant::now(),
                        node,
                        ready,
                        body,
                    });
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            probes
        });
        Self {
            stop,
            workers,
            prober,
        }
    }

    /// Stops every client and the prober; the history, and the probes.
    pub fn stop(self, runtime: &Runtime) -> (Vec<Op>, Vec<Probe>) {
        self.stop.store(true, Ordering::SeqCst);
        runtime.block_on(async {
            let mut history = Vec::new();
            for worker in self.workers {
                history.extend(worker.await.unwrap());
            }
            (history, self.prober.await.unwrap())
        })
    }
}

/// What one reader of the final validity found, or why it gave up.
type Reads = Result<Vec<(String, bool)>, String>;

/// Whether each token issued in `history` is valid now, read through the
/// instance at `base`; an answer other than 200 or 401 is asked again
/// until `patience` runs out, when the token counts as invalid and its
/// answer is returned as a failure.
pub fn validity(
    runtime: &Runtime,
    base: &str,
    history: &[Op],
    patience: Duration,
) -> Result<HashMap<String, bool>, String> {
    let tokens: Vec<String> = history
        .iter()
        .filter(|op| op.kind == Kind::Login && matches!(op.outcome, Outcome::Ok { .. }))
        .filter_map(|op| op.token.clone())
        .collect();
    let deadline = Instant::now() + patience;
    runtime.block_on(async {
        let chunks: Vec<Vec<String>> = tokens.chunks(256).map(<[String]>::to_vec).collect();
        let tasks: Vec<JoinHandle<Reads>> = chunks
            .into_iter()
            .map(|chunk| {
                let url = format!("{base}/auth");
                tokio::spawn(async move {
                    let client = client();
                    let mut read = Vec::with_capacity(chunk.len());
                    for token in chunk {
                        loop {
                            let answer = client.get(&url).bearer_auth(&token).send().await;
                            match answer.map(|answer| answer.status()) {
                                Ok(StatusCode::OK) => break read.push((token, true)),
                                Ok(StatusCode::UNAUTHORIZED) => break read.push((token, false)),
                                other if Instant::now() > deadline => {
                                    return Err(format!("a check still answers {other:?}"));
                                }
                                _ => tokio::time::sleep(Duration::from_millis(50)).await,
                            }
                        }
                    }
                    Ok(read)
                })
            })
            .collect();
        let mut valid = HashMap::new();
        for task in tasks {
            valid.extend(task.await.unwrap()?);
        }
        Ok(valid)
    })
}
