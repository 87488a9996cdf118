//! The local cluster's certificates and keys, generated fresh for every cluster.
//!
//! One ECDSA P-256 CA signs the API server's serving certificate and one client
//! certificate per identity: the admin (`system:masters`), the controller-manager,
//! the scheduler and every test-kubelet node (`system:node:<name>` in
//! `system:nodes`, so the Node authorizer and NodeRestriction apply to it as they
//! do to a real kubelet). A separate key signs service-account tokens.

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};

/// A client identity: PEM certificate and PEM (PKCS#8) key.
#[derive(Clone, Debug)]
pub struct ClientCert {
    pub cert_pem: String,
    pub key_pem: String,
}

/// Everything the control plane needs, written under `<dir>/pki`.
pub struct Pki {
    pub dir: PathBuf,
    pub ca_pem: String,
    ca: Issuer<'static, KeyPair>,
}

/// Paths of the files the control plane reads.
pub struct PkiFiles {
    pub ca: PathBuf,
    pub ca_key: PathBuf,
    pub serving_cert: PathBuf,
    pub serving_key: PathBuf,
    pub sa_public: PathBuf,
    pub sa_private: PathBuf,
}

impl Pki {
    /// Creates the CA and writes it to `<dir>/pki`.
    pub fn create(dir: &Path) -> Result<Self> {
        let dir = dir.join("pki");
        std::fs::create_dir_all(&dir)?;
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::default();
        params.distinguished_name = name("benchrun-e2e-ca", None);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let cert = params.self_signed(&key)?;
        let ca_pem = cert.pem();
        write(&dir.join("ca.crt"), &ca_pem)?;
        write(&dir.join("ca.key"), &key.serialize_pem())?;
        Ok(Self {
            dir,
            ca_pem,
            ca: Issuer::new(params, key),
        })
    }

    /// Writes the API server's serving pair and the service-account signing key.
    pub fn control_plane_files(&self) -> Result<PkiFiles> {
        let sans = [
            "localhost",
            "kubernetes",
            "kubernetes.default",
            "kubernetes.default.svc",
            "kubernetes.default.svc.cluster.local",
        ];
        let mut params = CertificateParams::new(sans.map(String::from).to_vec())?;
        for ip in [
            IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V4(Ipv4Addr::new(10, 96, 0, 1)),
        ] {
            params.subject_alt_names.push(rcgen::SanType::IpAddress(ip));
        }
        params.distinguished_name = name("kube-apiserver", None);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.ca)?;
        let files = PkiFiles {
            ca: self.dir.join("ca.crt"),
            ca_key: self.dir.join("ca.key"),
            serving_cert: self.dir.join("apiserver.crt"),
            serving_key: self.dir.join("apiserver.key"),
            sa_public: self.dir.join("sa.pub"),
            sa_private: self.dir.join("sa.key"),
        };
        write(&files.serving_cert, &cert.pem())?;
        write(&files.serving_key, &key.serialize_pem())?;
        let sa = KeyPair::generate()?;
        write(&files.sa_public, &sa.public_key_pem())?;
        write(&files.sa_private, &sa.serialize_pem())?;
        Ok(files)
    }

    /// Issues a client certificate for `user` in `group`.
    pub fn client(&self, user: &str, group: Option<&str>) -> Result<ClientCert> {
        let mut params = CertificateParams::default();
        params.distinguished_name = name(user, group);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        let key = KeyPair::generate()?;
        let cert = params
            .signed_by(&key, &self.ca)
            .with_context(|| format!("signing the client certificate of {user}"))?;
        Ok(ClientCert {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

fn name(common: &str, org: Option<&str>) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common);
    if let Some(org) = org {
        dn.push(DnType::OrganizationName, org);
    }
    dn
}

pub(crate) fn write(path: &Path, contents: &str) -> Result<()> {
    std::fs::write(path, contents).with_context(|| format!("writing {}", path.display()))
}
