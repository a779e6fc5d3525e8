//! What each figure measures: an operation, or the baseline it is compared
//! with, sent through the same store client or to the same service in the
//! same run at the same concurrency, so that the ratio holds on any machine.

use dsession::store::{Call, Command, Reply, SetArgs, SetCondition, Store as _, Tap, Transaction};

use super::args::Op;

/// What one figure measures: an operation or a baseline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Target {
    Op(Op),
    Store(Baseline),
    /// What one call of the operation sends to the store, sent raw
    /// through the same client: the operation's cost without dsession.
    Own(Op),
    /// check-token through the store without its near cache, in a run with
    /// one: what the cache is measured against.
    UncachedCheck,
    /// `GET /healthz` through the service.
    Healthz,
}

/// A baseline sent to the store as it is, in one round trip.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Baseline {
    /// `GET` of one key.
    Get,
    /// `GET` and `TTL` of one key in one pipeline, as check-token sends.
    GetTtl,
    /// `SET key value EX ttl`.
    Set,
}

impl Target {
    pub(super) fn name(self) -> &'static str {
        match self {
            Self::Op(Op::Check) => "check-token",
            Self::Op(Op::CheckUser) => "check-token-or-update-user, cached",
            Self::Op(Op::CheckUserCold) => "check-token-or-update-user, cold",
            Self::Op(Op::Set) => "set-token",
            Self::Op(Op::SetSingle) => "set-token, single mode",
            Self::Op(Op::Refresh) => "refresh-token",
            Self::Op(Op::List) => "list-user-token (10 tokens)",
            Self::Op(Op::Auth) => "GET /auth",
            Self::Op(Op::Grpc) => "gRPC Check",
            Self::Store(Baseline::Get) => "baseline: GET",
            Self::Store(Baseline::GetTtl) => "baseline: GET+TTL pipelined",
            Self::Store(Baseline::Set) => "baseline: SET",
            Self::Own(Op::Check) => "own batch: check-token",
            Self::Own(Op::CheckUser) => "own batch: check-token-or-update-user",
            Self::Own(Op::Set) => "own batch: set-token",
            Self::Own(Op::SetSingle) => "own batch: set-token, single mode",
            Self::Own(Op::Refresh) => "own batch: refresh-token",
            Self::Own(Op::List) => "own batch: list-user-token",
            Self::Own(_) => "own batch",
            Self::UncachedCheck => "check-token, near cache off",
            Self::Healthz => "baseline: GET /healthz",
        }
    }

    /// The baseline an operation is compared with.
    pub(super) fn baseline(self) -> Option<Self> {
        match self {
            Self::Op(Op::Check | Op::CheckUser | Op::CheckUserCold | Op::List)
            | Self::UncachedCheck => Some(Self::Store(Baseline::Get)),
            Self::Op(Op::Set | Op::SetSingle | Op::Refresh) => Some(Self::Store(Baseline::Set)),
            Self::Op(Op::Auth | Op::Grpc) => Some(Self::Healthz),
            Self::Store(_) | Self::Own(_) | Self::Healthz => None,
        }
    }

    /// The baseline of the operation's own commands, for the operations
    /// that send the same commands at every call.
    pub(super) fn own(self) -> Option<Self> {
        match self {
            Self::Op(
                op @ (Op::Check | Op::CheckUser | Op::Set | Op::SetSingle | Op::Refresh | Op::List),
            ) => Some(Self::Own(op)),
            _ => None,
        }
    }

    /// The figures of one concurrency, in order: each operation after its
    /// baseline, each baseline once, and GET+TTL after GET for a check;
    /// with `near_cache`, the check without it after the check.
    pub(super) fn plan(ops: &[Op], near_cache: bool) -> Vec<Self> {
        let get_ttl = Self::Store(Baseline::GetTtl);
        let mut targets = Vec::new();
        for &op in ops {
            let baseline = Self::Op(op).baseline();
            let own = Self::Op(op).own();
            let uncached = (near_cache && op == Op::Check).then_some(Self::UncachedCheck);
            for target in [baseline, Some(Self::Op(op)), uncached, own]
                .into_iter()
                .flatten()
            {
                if !targets.contains(&target) {
                    targets.push(target);
                }
            }
            if op == Op::Check && !targets.contains(&get_ttl) {
                targets.insert(1, get_ttl);
            }
        }
        targets
    }
}

impl Baseline {
    /// Writes the key that a `GET` baseline reads.
    pub(super) async fn prepare(
        store: &Tap,
        key: &str,
        user: &str,
        ttl: i64,
    ) -> anyhow::Result<()> {
        store.batch(vec![set(key, value(user), ttl)]).await?;
        Ok(())
    }

    /// Sends the baseline once, on `key`; a `SET` lives `ttl` seconds.
    pub(super) async fn once(
        self,
        store: &Tap,
        key: &str,
        user: &str,
        ttl: i64,
    ) -> Result<(), String> {
        let commands = match self {
            Self::Get => vec![Command::Get(key.to_owned())],
            Self::GetTtl => vec![Command::Get(key.to_owned()), Command::Ttl(key.to_owned())],
            Self::Set => vec![set(key, value(user), ttl)],
        };
        let replies = store.batch(commands).await.map_err(|e| e.to_string())?;
        if self == Self::Get && !matches!(replies.first(), Some(Reply::Text(_))) {
            return Err(format!("GET answered {replies:?}"));
        }
        Ok(())
    }
}

/// As long as a token key's value, `{user_prefix}_{user_id}`.
fn value(user: &str) -> String {
    format!("gosession-user_{user}")
}

fn set(key: &str, value: String, ttl_seconds: i64) -> Command {
    Command::Set(SetArgs {
        key: key.to_owned(),
        value,
        ttl_seconds,
        condition: SetCondition::Always,
    })
}

/// Sends `calls`, as one operation recorded them, to `store`: each batch,
/// atomic step, watch and commit, in order.
pub(super) async fn replay(store: &Tap, calls: &[Call]) -> Result<(), String> {
    let failed = |e: dsession::store::StoreError| e.to_string();
    let mut open: Option<Box<dyn Transaction>> = None;
    for call in calls {
        match call {
            Call::Batch(commands) => drop(store.batch(commands.clone()).await.map_err(failed)?),
            Call::Atomic(commands) => drop(store.atomic(commands.clone()).await.map_err(failed)?),
            Call::Watch { keys, reads, .. } => {
                let (transaction, _) = store
                    .watch(keys.clone(), reads.clone())
                    .await
                    .map_err(failed)?;
                open = Some(transaction);
            }
            Call::Commit { commands, .. } => {
                let transaction = open.take().ok_or("a commit without its watch")?;
                transaction.commit(commands.clone()).await.map_err(failed)?;
            }
        }
    }
    Ok(())
}
