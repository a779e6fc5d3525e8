//! How dsession's stores reach the fixture servers: sentinel and cluster
//! configs, the client's TLS files, and an ACL user.

use dsession::store::{ClusterConfig, RedisConfig, RedisStore, SentinelConfig, TlsFiles};
use dsession_tests::TestCertificates;
use redis::aio::MultiplexedConnection;

use super::{MASTER_NAME, RedisCluster, RedisServer, SentinelCluster};

/// A store on `server`.
pub async fn redis_store(server: &RedisServer) -> RedisStore {
    RedisStore::connect(RedisConfig::new(server.url()))
        .await
        .unwrap()
}

/// How to reach the master of `cluster` through its sentinels.
pub fn sentinel_config(cluster: &SentinelCluster) -> SentinelConfig {
    SentinelConfig::new(cluster.sentinel_addresses(), MASTER_NAME)
}

/// How to reach `cluster` through all its nodes.
pub fn cluster_config(cluster: &RedisCluster) -> ClusterConfig {
    ClusterConfig::new(cluster.urls())
}

/// The client's side of `certificates`: trusting the CA in `ca`
/// (`ca.crt`, or `other-ca.crt`, which signed nothing the servers present),
/// with the client certificate.
pub fn tls_client_files(certificates: &TestCertificates, ca: &str) -> TlsFiles {
    TlsFiles {
        ca_file: Some(certificates.path(ca)),
        client_cert_file: Some(certificates.path("client.crt")),
        client_key_file: Some(certificates.path("client.key")),
    }
}

/// Makes the ACL user `dsession`, password `s3cret`, on the server behind
/// `connection`, reaching only keys that match `key_patterns`.
pub async fn add_acl_user(connection: &mut MultiplexedConnection, key_patterns: &[&str]) {
    let mut command = redis::cmd("ACL");
    command
        .arg("SETUSER")
        .arg("dsession")
        .arg("on")
        .arg(">s3cret")
        .arg("resetkeys");
    for pattern in key_patterns {
        command.arg(format!("~{pattern}"));
    }
    command
        .arg("+@all")
        .query_async::<()>(connection)
        .await
        .expect("ACL SETUSER");
}

/// Asserts that `error`, the refusal of the seed address `malformed`,
/// quotes it and names both forms an address may take.
pub fn assert_names_both_address_forms(error: &impl std::fmt::Display, malformed: &str) {
    let message = format!("{error:#}");
    assert!(
        message.contains(&format!("{malformed:?}"))
            && message.contains("host:port")
            && message.contains("redis://host:port"),
        "{malformed}: {message}"
    );
}
