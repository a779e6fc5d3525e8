//! Managed Redis: TLS with certificates the test makes, and an ACL user
//! limited to the layout's key patterns; sentinels over TLS.

use dsession::store::{
    RedisConfig, RedisStore, SentinelConfig, SentinelStore, Store, StoreConfig, TlsFiles,
};
use dsession::{Error, SessionManager, Settings, SetupError};
use dsession_tests::TestCertificates;

use crate::support::{
    RedisServer, SentinelCluster, add_acl_user, free_port, sentinel_config, tls_client_files,
};

/// A `redis-server` with TLS on its own port (the plain port stays for the
/// fixture), and an ACL user `dsession` that may touch only the default
/// layout's keys.
struct TlsRedis {
    server: RedisServer,
    tls_port: u16,
    certificates: TestCertificates,
}

impl TlsRedis {
    async fn start() -> Self {
        let certificates = TestCertificates::generate();
        let tls_port = free_port();
        let args = certificates.server_args(tls_port);
        let server = RedisServer::start_with(&args.iter().map(String::as_str).collect::<Vec<_>>());
        add_acl_user(
            &mut server.client().await,
            &["gosession-token_*", "gosession-user_*"],
        )
        .await;
        Self {
            server,
            tls_port,
            certificates,
        }
    }

    fn url(&self, password: &str) -> String {
        format!("rediss://dsession:{password}@127.0.0.1:{}/0", self.tls_port)
    }

    /// Connects as `dsession` with `password`, trusting the CA in `ca`.
    async fn connect(&self, password: &str, ca: &str) -> Result<RedisStore, SetupError> {
        RedisStore::connect(RedisConfig {
            tls: tls_client_files(&self.certificates, ca),
            ..RedisConfig::new(self.url(password))
        })
        .await
    }
}

/// Each token operation once, through `sessions`, for a user `alice`.
async fn issue_check_refresh_list_and_revoke(sessions: &SessionManager) {
    let issued = sessions.set_token("alice", 60).await.unwrap();
    assert!(sessions.check_token(&issued.token).await.unwrap().is_some());
    sessions.refresh_token(&issued.token, 120).await.unwrap();
    assert_eq!(sessions.list_user_token("alice").await.unwrap().len(), 1);
    sessions.delete_user_token("alice").await.unwrap();
    assert_eq!(sessions.check_token(&issued.token).await.unwrap(), None);
}

#[tokio::test]
async fn every_operation_works_over_tls_as_an_acl_user_limited_to_the_layout() {
    let redis = TlsRedis::start().await;
    let store = redis.connect("s3cret", "ca.crt").await.unwrap();
    let sessions = SessionManager::builder().store(store).build().unwrap();
    issue_check_refresh_list_and_revoke(&sessions).await;

    // The ACL user reaches the layout's keys only.
    let elsewhere = SessionManager::builder()
        .store(redis.connect("s3cret", "ca.crt").await.unwrap())
        .settings(Settings {
            token_key_prefix: "other".into(),
            ..Settings::default()
        })
        .build()
        .unwrap();
    match elsewhere.set_token("alice", 60).await {
        Err(Error::Store(message)) => assert!(
            message.to_lowercase().contains("no permissions"),
            "{message}"
        ),
        other => panic!("expected a store error naming the permission, got {other:?}"),
    }
}

#[tokio::test]
async fn a_wrong_ca_or_password_or_a_missing_file_is_a_clear_error_at_startup() {
    let redis = TlsRedis::start().await;
    let wrong_ca = redis.connect("s3cret", "other-ca.crt").await.unwrap_err();
    let message = format!("{wrong_ca:#}");
    assert!(
        message.contains("cannot connect") && message.contains("certificate"),
        "{message}"
    );

    let wrong_password = redis.connect("wrong", "ca.crt").await.unwrap_err();
    let message = format!("{wrong_password:#}");
    assert!(
        message.to_lowercase().contains("authentication failed") && !message.contains("wrong@"),
        "{message}"
    );

    let missing = RedisConfig {
        tls: TlsFiles {
            ca_file: Some("/nonexistent/ca.crt".into()),
            ..TlsFiles::default()
        },
        ..RedisConfig::new(redis.url("s3cret"))
    };
    let message = format!("{:#}", RedisStore::connect(missing).await.unwrap_err());
    assert!(message.contains("cannot read the CA file"), "{message}");

    let plain_with_files = RedisConfig {
        tls: tls_client_files(&redis.certificates, "ca.crt"),
        ..RedisConfig::new(redis.server.url())
    };
    let message = format!(
        "{:#}",
        RedisStore::connect(plain_with_files).await.unwrap_err()
    );
    assert!(message.contains("not a rediss:// URL"), "{message}");
}

#[tokio::test]
async fn the_config_file_names_the_tls_files() {
    let redis = TlsRedis::start().await;
    let text = format!(
        "kind = \"redis\"\nurl = \"{}\"\n[tls]\nca_file = \"{}\"\nclient_cert_file = \"{}\"\nclient_key_file = \"{}\"\n",
        redis.url("s3cret"),
        redis.certificates.path("ca.crt").display(),
        redis.certificates.path("client.crt").display(),
        redis.certificates.path("client.key").display(),
    );
    let config: StoreConfig = toml::from_str(&text).unwrap();
    let store = config.open().await.unwrap();
    store.ready().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentinels_and_their_master_serve_every_operation_over_tls() {
    let certificates = TestCertificates::generate();
    let cluster = SentinelCluster::start_tls(&certificates);
    let store = SentinelStore::connect(SentinelConfig {
        tls: Some(tls_client_files(&certificates, "ca.crt")),
        ..sentinel_config(&cluster)
    })
    .await
    .unwrap();
    assert_eq!(
        store.master_address(),
        Some(format!("127.0.0.1:{}", cluster.master_port())),
        "the master's TLS port, as the sentinels name it"
    );
    store.ready().await.unwrap();
    let sessions = SessionManager::builder().store(store).build().unwrap();
    issue_check_refresh_list_and_revoke(&sessions).await;
}
