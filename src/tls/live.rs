//! A certificate and key that follow their files: read and checked at start, then re-read when
//! the files' directories change (a rename over the old file, a Kubernetes `..data` symlink swap)
//! or on a slow poll. A new pair is checked (both files readable, the key matches the certificate)
//! before it replaces the old one; a bad pair is refused with one log line and the old pair stays.
//!
//! The pair sits in an `ArcSwap`: a handshake takes the current pair without a lock; connections
//! already open keep the keys they were made with. Served as a rustls certificate resolver, for a
//! server ([`rustls::server::ResolvesServerCert`]) and for a client's mutual TLS
//! ([`rustls::client::ResolvesClientCert`]).

use std::sync::{Arc, Weak};
use std::time::Duration;

use arc_swap::ArcSwap;
use rustls::sign::CertifiedKey;

use super::{PairBytes, PairKeys, TlsError, cert_sha256};
use crate::config::TlsFiles;
use crate::watch::{self, Fingerprint, Wakeups};

/// After a change in a watched directory, wait this long for the rest of the burst (the key
/// renamed after the certificate, a symlink swap and its clean-up) before reading.
const SETTLE: Duration = Duration::from_millis(100);
/// Re-read this often even without an event: network filesystems and full event queues miss
/// changes. A read of two small files and a hash; a parse only when they changed.
const POLL: Duration = Duration::from_secs(10);

/// A certificate and key, kept current with their files.
pub struct LiveCert {
    /// Whose certificate, for log lines: a listener's name, or `admin`.
    listener: String,
    /// `serving` or `upstream client`, for log lines.
    role: &'static str,
    files: TlsFiles,
    keys: PairKeys,
    current: ArcSwap<CertifiedKey>,
    /// What the files held when the pair in use was read.
    loaded: Fingerprint,
}

/// What one look at the files found.
#[derive(Debug)]
pub enum Reload {
    /// The files hold what was last seen.
    Unchanged,
    /// A new pair is in use; the new leaf certificate's SHA-256.
    Reloaded(String),
    /// The files changed but cannot be used; the old pair stays in use.
    Refused(TlsError),
}

/// What the files held at the last look, so that a bad pair is reported once, not on every poll.
#[derive(Debug, PartialEq)]
pub struct Seen(SeenState);

#[derive(Debug, PartialEq)]
enum SeenState {
    Content(Fingerprint),
    Unreadable(String),
}

impl LiveCert {
    /// Reads and checks the pair; the error names the config key and the file.
    pub fn load(
        listener: &str,
        role: &'static str,
        files: &TlsFiles,
        keys: PairKeys,
    ) -> Result<Arc<LiveCert>, TlsError> {
        let bytes = PairBytes::read(files, keys)?;
        let certified = bytes.certified_key(files, keys)?;
        Ok(Arc::new(LiveCert {
            listener: listener.to_owned(),
            role,
            files: files.clone(),
            keys,
            current: ArcSwap::from_pointee(certified),
            loaded: bytes.fingerprint(),
        }))
    }

    /// The pair in use now.
    pub fn current(&self) -> Arc<CertifiedKey> {
        self.current.load_full()
    }

    /// The state of the files when the pair in use was loaded: the start of a reload loop.
    pub fn seen(&self) -> Seen {
        Seen(SeenState::Content(self.loaded))
    }

    /// Looks at the files once: when they hold something new that is usable, it replaces the
    /// pair in use. Blocking (reads files).
    pub fn reload(&self, seen: &mut Seen) -> Reload {
        let bytes = match PairBytes::read(&self.files, self.keys) {
            Ok(bytes) => bytes,
            Err(e) => {
                let state = SeenState::Unreadable(e.to_string());
                if seen.0 == state {
                    return Reload::Unchanged;
                }
                seen.0 = state;
                return Reload::Refused(e);
            }
        };
        let fingerprint = bytes.fingerprint();
        if seen.0 == SeenState::Content(fingerprint) {
            return Reload::Unchanged;
        }
        seen.0 = SeenState::Content(fingerprint);
        match bytes.certified_key(&self.files, self.keys) {
            Ok(certified) => {
                let sha256 = certified
                    .cert
                    .first()
                    .map_or_else(String::new, |leaf| cert_sha256(leaf.as_ref()));
                self.current.store(Arc::new(certified));
                Reload::Reloaded(sha256)
            }
            Err(e) => Reload::Refused(e),
        }
    }

    /// Starts following the files on the current tokio runtime. The task ends once the last
    /// user of this pair is gone (it holds only a weak reference).
    pub fn watch(self: &Arc<Self>) {
        let dirs = {
            let mut dirs = vec![
                watch::dir_of(&self.files.cert),
                watch::dir_of(&self.files.key),
            ];
            dirs.dedup();
            dirs
        };
        let weak = Arc::downgrade(self);
        let seen = self.seen();
        tokio::spawn(follow(weak, dirs, seen));
    }
}

/// The reload loop of one pair.
async fn follow(weak: Weak<LiveCert>, dirs: Vec<std::path::PathBuf>, mut seen: Seen) {
    let mut wakeups = Wakeups::new(dirs, POLL);
    loop {
        wakeups.next(SETTLE).await;
        let Some(live) = weak.upgrade() else { return };
        let looked = tokio::task::spawn_blocking(move || {
            let outcome = live.reload(&mut seen);
            (live, seen, outcome)
        })
        .await;
        let Ok((live, returned, outcome)) = looked else {
            // The blocking pool is gone: the runtime is shutting down.
            return;
        };
        seen = returned;
        match outcome {
            Reload::Unchanged => {}
            Reload::Reloaded(sha256) => tracing::info!(
                listener = %live.listener,
                role = live.role,
                cert = %live.files.cert.display(),
                sha256,
                "certificate reloaded"
            ),
            Reload::Refused(e) => tracing::warn!(
                listener = %live.listener,
                role = live.role,
                error = %crate::ErrorChain(&e),
                "new certificate refused; the previous one stays in use"
            ),
        }
    }
}

impl std::fmt::Debug for LiveCert {
    // The key is never shown; the files are named.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveCert")
            .field("listener", &self.listener)
            .field("role", &self.role)
            .field("files", &self.files)
            .finish_non_exhaustive()
    }
}

impl rustls::server::ResolvesServerCert for LiveCert {
    fn resolve(&self, _hello: rustls::server::ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

impl rustls::client::ResolvesClientCert for LiveCert {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[rustls::SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::SERVING_KEYS;

    /// A self-signed certificate and its key, in PEM.
    fn pair(name: &str) -> (String, String) {
        let made = rcgen::generate_simple_self_signed(vec![name.to_string()]).unwrap();
        (made.cert.pem(), made.signing_key.serialize_pem())
    }

    fn leaf(live: &LiveCert) -> Vec<u8> {
        live.current().cert[0].to_vec()
    }

    fn der(pem: &str) -> Vec<u8> {
        use rustls::pki_types::CertificateDer;
        use rustls::pki_types::pem::PemObject;
        CertificateDer::from_pem_slice(pem.as_bytes())
            .unwrap()
            .to_vec()
    }

    #[test]
    fn a_good_new_pair_replaces_the_old_and_a_bad_one_is_refused_once() {
        let dir = tempfile::tempdir().unwrap();
        let files = TlsFiles {
            cert: dir.path().join("tls.crt"),
            key: dir.path().join("tls.key"),
        };
        let write = |cert: &str, key: &str| {
            std::fs::write(&files.cert, cert).unwrap();
            std::fs::write(&files.key, key).unwrap();
        };
        let (first_cert, first_key) = pair("first.test");
        let (second_cert, second_key) = pair("second.test");
        write(&first_cert, &first_key);
        let live = LiveCert::load("api", "serving", &files, SERVING_KEYS).unwrap();
        let mut seen = live.seen();
        assert!(matches!(live.reload(&mut seen), Reload::Unchanged));

        // The second certificate with the first key: refused, naming the key file; once.
        write(&second_cert, &first_key);
        match live.reload(&mut seen) {
            Reload::Refused(e) => {
                let text = e.to_string();
                assert!(
                    text.contains("tls_key") && text.contains("does not match"),
                    "{text}"
                );
                assert!(!text.contains("PRIVATE KEY"), "{text}");
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(live.reload(&mut seen), Reload::Unchanged));
        assert_eq!(leaf(&live), der(&first_cert));

        // Gone files: refused once, the old pair still in use.
        std::fs::remove_file(&files.key).unwrap();
        assert!(matches!(
            live.reload(&mut seen),
            Reload::Refused(TlsError::Read { .. })
        ));
        assert!(matches!(live.reload(&mut seen), Reload::Unchanged));
        assert_eq!(leaf(&live), der(&first_cert));

        // A key file with no key in it.
        write(&second_cert, "not a key\n");
        match live.reload(&mut seen) {
            Reload::Refused(e) => assert!(e.to_string().contains("holds no private key"), "{e}"),
            other => panic!("{other:?}"),
        }

        // The matching pair: taken.
        write(&second_cert, &second_key);
        match live.reload(&mut seen) {
            Reload::Reloaded(sha256) => assert_eq!(sha256, cert_sha256(&der(&second_cert))),
            other => panic!("{other:?}"),
        }
        assert_eq!(leaf(&live), der(&second_cert));
        assert!(matches!(live.reload(&mut seen), Reload::Unchanged));
    }

    #[test]
    fn a_bad_pair_at_load_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let files = TlsFiles {
            cert: dir.path().join("tls.crt"),
            key: dir.path().join("missing.key"),
        };
        let (cert, _) = pair("x.test");
        std::fs::write(&files.cert, cert).unwrap();
        let err = LiveCert::load("api", "serving", &files, SERVING_KEYS).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("tls_key") && text.contains("missing.key"),
            "{text}"
        );

        std::fs::write(&files.key, "").unwrap();
        std::fs::write(&files.cert, "").unwrap();
        let err = LiveCert::load("api", "serving", &files, SERVING_KEYS).unwrap_err();
        assert!(err.to_string().contains("holds no certificate"), "{err}");
    }
}
