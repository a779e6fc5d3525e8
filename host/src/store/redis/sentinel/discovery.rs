//! Asking the sentinels which server is the master, and which replicas they
//! know. They are asked in turn, the one that last named a working master
//! first.

use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::Context as _;
use redis::{AsyncConnectionConfig, Client, RedisConnectionInfo, RedisError, Value};

use crate::store::StoreError;
use crate::store::redis::codec::text;
use crate::store::redis::net::{ADDRESS_FORMS, Connector, sentinel_address};

/// The sentinels that monitor one master.
pub(super) struct Sentinels {
    master_name: String,
    sentinels: Vec<Sentinel>,
    /// The sentinel that named the master in use.
    preferred: AtomicUsize,
    connection: AsyncConnectionConfig,
}

struct Sentinel {
    address: String,
    client: Client,
}

/// What one sentinel said when asked for the master.
enum Answer {
    Unreachable(RedisError),
    UnknownName,
    NamedUnusable { master: String, error: StoreError },
}

impl fmt::Display for Answer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unreachable(error) => write!(f, "unreachable ({error})"),
            Self::UnknownName => f.write_str("does not know that master name"),
            Self::NamedUnusable { master, error } => write!(f, "named {master}: {error}"),
        }
    }
}

impl Sentinels {
    /// The sentinels at `addresses` (`host:port` or `redis://host:port`)
    /// that monitor the master
    /// called `master_name`, reached through `connector` with `password`.
    pub(super) fn new(
        master_name: String,
        addresses: &[String],
        password: Option<&str>,
        connector: &Connector,
        connection: AsyncConnectionConfig,
    ) -> anyhow::Result<Self> {
        let mut settings = RedisConnectionInfo::default();
        if let Some(password) = password {
            settings = settings.set_password(password);
        }
        let sentinels = addresses
            .iter()
            .map(|address| {
                let (host, port) = sentinel_address(address).with_context(|| {
                    format!("sentinel address {address:?} is not {ADDRESS_FORMS}")
                })?;
                let client = connector
                    .client(host, port, &settings)
                    .with_context(|| format!("invalid sentinel address {address:?}"))?;
                Ok(Sentinel {
                    address: address.clone(),
                    client,
                })
            })
            .collect::<anyhow::Result<_>>()?;
        Ok(Self {
            master_name,
            sentinels,
            preferred: AtomicUsize::new(0),
            connection,
        })
    }

    /// The name the sentinels monitor the master under.
    pub(super) fn master_name(&self) -> &str {
        &self.master_name
    }

    /// Where the sentinels are, as configured.
    pub(super) fn addresses(&self) -> Vec<&str> {
        self.sentinels
            .iter()
            .map(|sentinel| sentinel.address.as_str())
            .collect()
    }

    fn preferred(&self) -> &Sentinel {
        &self.sentinels[self.preferred.load(Ordering::Relaxed)]
    }

    /// Asks each sentinel in turn for the master until one names a server
    /// that `open` can use (reachable, and a master).
    pub(super) async fn find<T, F, Fut>(&self, open: F) -> Result<T, StoreError>
    where
        F: Fn(String, u16) -> Fut,
        Fut: Future<Output = Result<T, StoreError>>,
    {
        let first = self.preferred.load(Ordering::Relaxed);
        let mut answers: Vec<(&str, Answer)> = Vec::with_capacity(self.sentinels.len());
        for offset in 0..self.sentinels.len() {
            let index = (first + offset) % self.sentinels.len();
            let sentinel = &self.sentinels[index];
            let answer = match self.ask(sentinel).await {
                Err(error) => Answer::Unreachable(error),
                Ok(None) => Answer::UnknownName,
                Ok(Some((host, port))) => {
                    let master = format!("{host}:{port}");
                    let tried = answers.iter().find_map(|(_, answer)| match answer {
                        Answer::NamedUnusable { master: m, error } if *m == master => {
                            Some(error.clone())
                        }
                        _ => None,
                    });
                    let outcome = match tried {
                        Some(error) => Err(error),
                        None => open(host, port).await,
                    };
                    match outcome {
                        Ok(server) => {
                            self.preferred.store(index, Ordering::Relaxed);
                            tracing::info!(
                                master_name = %self.master_name,
                                master = %master,
                                sentinel = %sentinel.address,
                                "using the redis master named by sentinel"
                            );
                            return Ok(server);
                        }
                        Err(error) => Answer::NamedUnusable { master, error },
                    }
                }
            };
            answers.push((&sentinel.address, answer));
        }
        Err(self.no_master(&answers))
    }

    fn no_master(&self, answers: &[(&str, Answer)]) -> StoreError {
        let name = &self.master_name;
        let details = answers
            .iter()
            .map(|(sentinel, answer)| format!("{sentinel} {answer}"))
            .collect::<Vec<_>>()
            .join("; ");
        let unreachable = |answer: &Answer| matches!(answer, Answer::Unreachable(_));
        let message = if answers.iter().all(|(_, answer)| unreachable(answer)) {
            format!("no sentinel reachable to find redis master {name:?}: tried {details}")
        } else if answers
            .iter()
            .all(|(_, answer)| unreachable(answer) || matches!(answer, Answer::UnknownName))
        {
            format!("the sentinels do not know a redis master named {name:?}: {details}")
        } else {
            format!("no usable redis master {name:?} found through the sentinels: {details}")
        };
        StoreError::new(message)
    }

    /// The master the preferred sentinel names now, as `host:port`, and
    /// that sentinel's address; None when it cannot say.
    pub(super) async fn named_master(&self) -> Option<(String, &str)> {
        let sentinel = self.preferred();
        match self.ask(sentinel).await {
            Ok(Some((host, port))) => Some((format!("{host}:{port}"), &sentinel.address)),
            _ => None,
        }
    }

    /// `SENTINEL get-master-addr-by-name`: None when the sentinel does not
    /// know the name.
    async fn ask(&self, sentinel: &Sentinel) -> Result<Option<(String, u16)>, RedisError> {
        let mut connection = sentinel
            .client
            .get_multiplexed_async_connection_with_config(&self.connection)
            .await?;
        let address: Option<(String, u16)> = redis::cmd("SENTINEL")
            .arg("get-master-addr-by-name")
            .arg(&self.master_name)
            .query_async(&mut connection)
            .await?;
        Ok(address)
    }

    /// The replicas the preferred sentinel knows for the master, as
    /// `ip:port`.
    pub(super) async fn known_replicas(&self) -> Result<Vec<String>, StoreError> {
        let sentinel = self.preferred();
        let unreachable = |error: RedisError| {
            StoreError::new(format!(
                "sentinel {} unreachable: {error}",
                sentinel.address
            ))
        };
        let mut connection = sentinel
            .client
            .get_multiplexed_async_connection_with_config(&self.connection)
            .await
            .map_err(unreachable)?;
        let replicas: Vec<Value> = redis::cmd("SENTINEL")
            .arg("REPLICAS")
            .arg(&self.master_name)
            .query_async(&mut connection)
            .await
            .map_err(unreachable)?;
        Ok(replicas.into_iter().filter_map(replica_address).collect())
    }
}

/// The `ip:port` of one replica in the reply to `SENTINEL REPLICAS`: a map
/// in RESP3, a flat array of fields and values in RESP2.
fn replica_address(replica: Value) -> Option<String> {
    let fields: Vec<(String, String)> = match replica {
        Value::Map(pairs) => pairs
            .into_iter()
            .filter_map(|(k, v)| Some((text(k).ok()?, text(v).ok()?)))
            .collect(),
        Value::Array(items) => items
            .chunks(2)
            .filter_map(|pair| {
                Some((
                    text(pair.first()?.clone()).ok()?,
                    text(pair.get(1)?.clone()).ok()?,
                ))
            })
            .collect(),
        _ => return None,
    };
    let field = |name: &str| {
        fields
            .iter()
            .find_map(|(k, v)| (k == name).then(|| v.clone()))
    };
    Some(format!("{}:{}", field("ip")?, field("port")?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replica_address_is_read_from_resp2_and_resp3_replies() {
        let bulk = |text: &str| Value::BulkString(text.as_bytes().to_vec());
        let resp2 = Value::Array(
            ["name", "r1", "ip", "10.0.0.2", "port", "6380"]
                .map(bulk)
                .into(),
        );
        assert_eq!(replica_address(resp2).as_deref(), Some("10.0.0.2:6380"));
        let resp3 = Value::Map(vec![
            (bulk("ip"), bulk("10.0.0.3")),
            (bulk("port"), bulk("6381")),
        ]);
        assert_eq!(replica_address(resp3).as_deref(), Some("10.0.0.3:6381"));
        let no_port = Value::Array(["ip", "10.0.0.2"].map(bulk).into());
        assert_eq!(replica_address(no_port), None);
        assert_eq!(replica_address(Value::Nil), None);
    }
}
