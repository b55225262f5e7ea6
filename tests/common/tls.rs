//! Certificates for a test's TLS `redis-server`, made in the test: a CA, a server certificate
//! for 127.0.0.1 and localhost, a client certificate, all signed by the CA, and a second,
//! unrelated CA for the "wrong CA" case. Written as PEM files into a directory of the test.

use std::path::{Path, PathBuf};

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};

/// The PEM files; the directory goes with the value.
pub struct Pki {
    _dir: tempfile::TempDir,
    pub ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
    /// A CA that signed none of these.
    pub other_ca: PathBuf,
}

fn ca(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap()
}

fn write(dir: &Path, name: &str, pem: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, pem).unwrap();
    path
}

impl Pki {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let issuer = ca("agentcron test CA");
        let leaf = |names: Vec<String>, file: &str| {
            let key = KeyPair::generate().unwrap();
            let params = CertificateParams::new(names).unwrap();
            let cert = params.signed_by(&key, &issuer).unwrap();
            let cert_path = write(dir.path(), &format!("{file}.crt"), &cert.pem());
            (cert_path, write(dir.path(), &format!("{file}.key"), &key.serialize_pem()))
        };
        let (server_cert, server_key) =
            leaf(vec!["127.0.0.1".to_owned(), "localhost".to_owned()], "server");
        let (client_cert, client_key) = leaf(vec!["agentcron-worker".to_owned()], "client");
        let ca_path = write(dir.path(), "ca.crt", &issuer.pem());
        let other_ca = write(dir.path(), "other-ca.crt", &ca("someone else's CA").pem());
        Self { ca: ca_path, server_cert, server_key, client_cert, client_key, other_ca, _dir: dir }
    }
}
