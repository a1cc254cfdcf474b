//! The client certificate a request's connection was verified with
//! (mutual TLS, docs/interfaces.md §2.1 and §2.8): the server puts it on
//! every request of the connection, and a `cert` credential line names its
//! subject common name.

/// The verified client certificate of the mutual TLS connection a request
/// came on, as a request extension. The server of [`crate::server`] adds
/// it to every request of a connection whose client presented a
/// certificate; a program serving [`crate::router`] behind its own TLS may
/// add it itself, once it has verified the certificate.
///
/// ```
/// use asyncjobs_http::PeerCertificate;
/// let peer = PeerCertificate { common_name: Some("CI Runner 7".into()) };
/// assert_eq!(peer.common_name.as_deref(), Some("CI Runner 7"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerCertificate {
    /// The subject's common name (`CN`); `None` when the subject has none,
    /// more than one, or one that is not text.
    pub common_name: Option<String>,
}

impl PeerCertificate {
    /// The certificate of the DER bytes `der` (an X.509 certificate, as
    /// TLS carries it); its common name is `None` when the bytes do not
    /// parse.
    ///
    /// ```
    /// let peer = asyncjobs_http::PeerCertificate::from_der(b"not a certificate");
    /// assert_eq!(peer.common_name, None);
    /// ```
    pub fn from_der(der: &[u8]) -> PeerCertificate {
        let common_name = x509_parser::parse_x509_certificate(der)
            .ok()
            .and_then(|(_, cert)| {
                let mut names = cert.subject().iter_common_name();
                // two common names would make the identity ambiguous
                match (names.next(), names.next()) {
                    (Some(cn), None) => cn.as_str().ok().map(str::to_string),
                    _ => None,
                }
            });
        PeerCertificate { common_name }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair};

    fn certificate(subject: DistinguishedName) -> Vec<u8> {
        let mut params = CertificateParams::new(vec!["client".into()]).unwrap();
        params.distinguished_name = subject;
        let key = KeyPair::generate().unwrap();
        params.self_signed(&key).unwrap().der().to_vec()
    }

    #[test]
    fn the_subject_common_name_is_read() {
        let mut subject = DistinguishedName::new();
        subject.push(DnType::OrganizationName, "Example");
        subject.push(DnType::CommonName, "CI Runner 7 · é");
        assert_eq!(
            PeerCertificate::from_der(&certificate(subject)).common_name,
            Some("CI Runner 7 · é".into())
        );
        let mut no_cn = DistinguishedName::new();
        no_cn.push(DnType::OrganizationName, "Example");
        assert_eq!(
            PeerCertificate::from_der(&certificate(no_cn)).common_name,
            None
        );
        assert_eq!(PeerCertificate::from_der(&[]).common_name, None);
    }
}
