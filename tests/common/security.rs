//! How the nodes of a Redis topology are protected: ACL users, passwords and TLS with a throwaway CA
//! made with the `openssl` command.

use std::path::PathBuf;

use super::run_ok;

/// A CA, a server certificate for 127.0.0.1 and a client certificate, in a temporary directory.
pub struct Certs {
    _dir: tempfile::TempDir,
    pub ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
}

impl Certs {
    /// Generates the CA and both certificates with `openssl` (EC P-256 keys, PKCS#8 PEM).
    pub fn generate() -> Certs {
        let dir = tempfile::tempdir().unwrap();
        let p = |name: &str| dir.path().join(name);
        let openssl = |args: &[&str]| run_ok(dir.path(), "openssl", args);
        let key = |name: &str| {
            openssl(&[
                "genpkey",
                "-algorithm",
                "EC",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-out",
                name,
            ])
        };
        key("ca.key");
        openssl(&[
            "req",
            "-x509",
            "-new",
            "-key",
            "ca.key",
            "-days",
            "2",
            "-subj",
            "/CN=k2r test CA",
            "-out",
            "ca.pem",
        ]);
        for (name, ext) in [
            (
                "server",
                "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\n",
            ),
            ("client", "extendedKeyUsage=clientAuth\n"),
        ] {
            key(&format!("{name}.key"));
            std::fs::write(p(&format!("{name}.ext")), ext).unwrap();
            openssl(&[
                "req",
                "-new",
                "-key",
                &format!("{name}.key"),
                "-subj",
                &format!("/CN=k2r test {name}"),
                "-out",
                &format!("{name}.csr"),
            ]);
            openssl(&[
                "x509",
                "-req",
                "-in",
                &format!("{name}.csr"),
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-days",
                "2",
                "-extfile",
                &format!("{name}.ext"),
                "-out",
                &format!("{name}.pem"),
            ]);
        }
        Certs {
            ca: p("ca.pem"),
            server_cert: p("server.pem"),
            server_key: p("server.key"),
            client_cert: p("client.pem"),
            client_key: p("client.key"),
            _dir: dir,
        }
    }

    /// The `[redis]` TOML lines that make the bridge trust this CA and present the client cert.
    pub fn toml(&self) -> String {
        format!(
            "tls_ca_file = \"{}\"\ntls_cert_file = \"{}\"\ntls_key_file = \"{}\"\n",
            self.ca.display(),
            self.client_cert.display(),
            self.client_key.display()
        )
    }

    pub(super) fn tls_certificates(&self) -> redis::TlsCertificates {
        redis::TlsCertificates {
            client_tls: Some(redis::ClientTlsConfig {
                client_cert: std::fs::read(&self.client_cert).unwrap(),
                client_key: std::fs::read(&self.client_key).unwrap(),
            }),
            root_cert: Some(std::fs::read(&self.ca).unwrap()),
        }
    }
}

/// How the nodes of a topology are protected.
#[derive(Default)]
pub struct Security {
    /// `requirepass` (the default user's password), also used between nodes and by the sentinels.
    pub admin_password: Option<String>,
    /// An ACL user `(name, password)` with full rights, for the bridge to log in as.
    pub acl_user: Option<(String, String)>,
    /// The sentinels' own `requirepass`.
    pub sentinel_password: Option<String>,
    /// TLS only (`port 0`), with client certificates required.
    pub tls: Option<Certs>,
    /// With TLS: accept clients without a certificate (`tls-auth-clients optional`).
    pub tls_client_cert_optional: bool,
}

impl Security {
    /// `redis-server` arguments for a data node.
    pub(super) fn node_args(&self) -> Vec<String> {
        let mut args = Vec::new();
        if let Some(pw) = &self.admin_password {
            args.extend(["--requirepass".into(), pw.clone()]);
            args.extend(["--masterauth".into(), pw.clone()]);
        }
        if let Some((user, pw)) = &self.acl_user {
            args.extend([
                "--user".into(),
                user.clone(),
                "on".into(),
                format!(">{pw}"),
                "~*".into(),
                "&*".into(),
                "+@all".into(),
            ]);
        }
        if let Some(certs) = &self.tls {
            args.extend(tls_args(certs, self.tls_client_cert_optional));
            args.extend(["--tls-replication".into(), "yes".into()]);
        }
        args
    }

    /// A client for a node, as an administrator (default user), over TLS when enabled.
    pub fn client(&self, port: u16) -> redis::Client {
        let scheme = if self.tls.is_some() {
            "rediss"
        } else {
            "redis"
        };
        let auth = match &self.admin_password {
            Some(pw) => format!(":{pw}@"),
            None => String::new(),
        };
        let url = format!("{scheme}://{auth}127.0.0.1:{port}/");
        match &self.tls {
            Some(certs) => redis::Client::build_with_tls(url, certs.tls_certificates()).unwrap(),
            None => redis::Client::open(url).unwrap(),
        }
    }

    /// The `[redis]` TOML lines for the bridge: the ACL user (or the admin password) and TLS.
    pub fn bridge_toml(&self) -> String {
        let mut toml = String::new();
        match (&self.acl_user, &self.admin_password) {
            (Some((user, pw)), _) => {
                toml += &format!("username = \"{user}\"\npassword = \"{pw}\"\n")
            }
            (None, Some(pw)) => toml += &format!("password = \"{pw}\"\n"),
            (None, None) => {}
        }
        if let Some(certs) = &self.tls {
            toml += &certs.toml();
        }
        toml
    }
}

fn tls_args(certs: &Certs, client_cert_optional: bool) -> Vec<String> {
    [
        ("--tls-cert-file", &certs.server_cert),
        ("--tls-key-file", &certs.server_key),
        ("--tls-ca-cert-file", &certs.ca),
    ]
    .into_iter()
    .flat_map(|(k, v)| [k.to_string(), v.display().to_string()])
    .chain([
        "--tls-auth-clients".into(),
        if client_cert_optional {
            "optional"
        } else {
            "yes"
        }
        .into(),
    ])
    .collect()
}
