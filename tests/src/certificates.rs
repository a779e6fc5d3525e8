//! TLS certificates made by `openssl` for a test.

use std::path::PathBuf;
use std::process::Command;

use tempfile::TempDir;

/// A CA, a certificate for a server on 127.0.0.1 and a client certificate,
/// all signed by that CA, plus a second CA that signed none of them; made by
/// `openssl` in a temporary directory.
#[derive(Debug)]
pub struct TestCertificates {
    dir: TempDir,
}

impl TestCertificates {
    /// Makes the certificates (RSA 2048, valid for two days).
    pub fn generate() -> Self {
        let dir = tempfile::tempdir().expect("temporary directory");
        let openssl = |args: &[&str]| {
            let output = Command::new("openssl")
                .args(args)
                .current_dir(dir.path())
                .output()
                .expect("cannot run openssl: is it installed? (apt-get install openssl)");
            assert!(
                output.status.success(),
                "openssl {args:?} failed:\n{}",
                String::from_utf8_lossy(&output.stderr)
            );
        };
        for ca in ["ca", "other-ca"] {
            openssl(&[
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "2",
                "-keyout",
                &format!("{ca}.key"),
                "-out",
                &format!("{ca}.crt"),
                "-subj",
                &format!("/CN=dsession test {ca}"),
            ]);
        }
        // Extensions make them version 3 certificates, which rustls needs.
        for (name, extensions) in [
            (
                "server",
                "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n",
            ),
            ("client", "extendedKeyUsage=clientAuth\n"),
        ] {
            std::fs::write(dir.path().join(format!("{name}.ext")), extensions)
                .expect("write the extensions file");
        }
        for (name, subject) in [("server", "/CN=127.0.0.1"), ("client", "/CN=dsession")] {
            openssl(&[
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                &format!("{name}.key"),
                "-out",
                &format!("{name}.csr"),
                "-subj",
                subject,
            ]);
            let mut sign = vec![
                "x509",
                "-req",
                "-days",
                "2",
                "-in",
                &format!("{name}.csr"),
                "-CA",
                "ca.crt",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                &format!("{name}.crt"),
            ]
            .into_iter()
            .map(str::to_owned)
            .collect::<Vec<_>>();
            sign.extend(["-extfile".to_owned(), format!("{name}.ext")]);
            openssl(&sign.iter().map(String::as_str).collect::<Vec<_>>());
        }
        Self { dir }
    }

    /// A file of the set: `ca.crt`, `other-ca.crt`, `server.crt`,
    /// `server.key`, `client.crt` or `client.key`.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `redis-server` arguments for TLS on `tls_port`, requiring a client
    /// certificate signed by the CA.
    pub fn server_args(&self, tls_port: u16) -> Vec<String> {
        vec![
            "--tls-port".into(),
            tls_port.to_string(),
            "--tls-cert-file".into(),
            self.file("server.crt"),
            "--tls-key-file".into(),
            self.file("server.key"),
            "--tls-ca-cert-file".into(),
            self.file("ca.crt"),
        ]
    }

    /// `redis-server` arguments for replication over TLS, presenting the
    /// client certificate (a sentinel's links and the cluster bus use it
    /// too).
    pub fn replication_args(&self) -> Vec<String> {
        vec![
            "--tls-replication".into(),
            "yes".into(),
            "--tls-client-cert-file".into(),
            self.file("client.crt"),
            "--tls-client-key-file".into(),
            self.file("client.key"),
        ]
    }

    fn file(&self, name: &str) -> String {
        self.path(name).display().to_string()
    }
}
