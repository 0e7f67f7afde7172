//! The admin credential: a random token kept in a file (mode 0600), compared in constant time.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

const ADMIN_PREFIX: &str = "tollgate-admin_";
/// Shorter admin tokens are refused: they could be guessed.
pub const MIN_ADMIN_TOKEN_LEN: usize = 16;

#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    #[error("cannot read the admin token file {path}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot create the admin token file {path}")]
    Create {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the admin token in {path} is shorter than {MIN_ADMIN_TOKEN_LEN} characters")]
    TooShort { path: PathBuf },
}

/// Holds only the SHA-256 of the admin token: comparing digests of equal length in constant
/// time reveals nothing about the token through timing.
pub struct AdminCredential {
    /// `None`: no token is accepted (the API served in-process, never on a socket).
    digest: Option<[u8; 32]>,
}

impl AdminCredential {
    pub fn from_token(token: &str) -> Self {
        AdminCredential {
            digest: Some(Sha256::digest(token.as_bytes()).into()),
        }
    }

    /// A credential that no token matches.
    pub fn none() -> Self {
        AdminCredential { digest: None }
    }

    pub fn verify(&self, presented: &[u8]) -> bool {
        let Some(digest) = &self.digest else {
            return false;
        };
        let presented: [u8; 32] = Sha256::digest(presented).into();
        presented.ct_eq(digest).into()
    }

    /// Reads the token from `path`, or, when the file does not exist, generates one and writes it
    /// with mode 0600. Returns whether the file was created.
    pub fn load_or_create(path: &Path) -> Result<(Self, bool), CredentialError> {
        match std::fs::read_to_string(path) {
            Ok(text) => {
                let token = text.trim();
                if token.chars().count() < MIN_ADMIN_TOKEN_LEN {
                    return Err(CredentialError::TooShort {
                        path: path.to_owned(),
                    });
                }
                if let Ok(meta) = std::fs::metadata(path)
                    && meta.permissions().mode() & 0o077 != 0
                {
                    tracing::warn!(
                        path = %path.display(),
                        "the admin token file is readable by other users; chmod 600 it"
                    );
                }
                Ok((AdminCredential::from_token(token), false))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let token = generate();
                match write_new(path, &token) {
                    Ok(()) => Ok((AdminCredential::from_token(&token), true)),
                    // Another process created it meanwhile: use theirs.
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                        AdminCredential::load_or_create(path)
                    }
                    Err(source) => Err(CredentialError::Create {
                        path: path.to_owned(),
                        source,
                    }),
                }
            }
            Err(source) => Err(CredentialError::Read {
                path: path.to_owned(),
                source,
            }),
        }
    }
}

/// Reads an admin token for a client (the command line).
pub fn read_token_file(path: &Path) -> Result<String, CredentialError> {
    let text = std::fs::read_to_string(path).map_err(|source| CredentialError::Read {
        path: path.to_owned(),
        source,
    })?;
    Ok(text.trim().to_owned())
}

fn generate() -> String {
    let mut bytes = [0u8; 32];
    // As for token secrets: no randomness, no credential.
    getrandom::fill(&mut bytes).expect("the operating system's random source failed");
    let mut token = String::from(ADMIN_PREFIX);
    for b in bytes {
        token.push_str(&format!("{b:02x}"));
    }
    token
}

/// Writes the token to a private temporary file, then links it into place: the file appears
/// whole or not at all (a crash never leaves a half-written token), and an existing file is never
/// overwritten (the link fails with `AlreadyExists`).
fn write_new(path: &Path, token: &str) -> std::io::Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let suffix: [u8; 8] = crate::token::random_bytes();
    let tmp = dir.join(format!(
        ".admin-token-{:016x}.tmp",
        u64::from_le_bytes(suffix)
    ));
    let written = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        file.write_all(token.as_bytes())?;
        file.write_all(b"\n")?;
        file.sync_all()?;
        std::fs::hard_link(&tmp, path)
    })();
    // The temporary name is ours alone; if it cannot be removed it is harmless litter.
    let _ = std::fs::remove_file(&tmp);
    written
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_once_with_mode_0600_then_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/admin.token");
        let (created, was_new) = AdminCredential::load_or_create(&path).unwrap();
        assert!(was_new);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let token = read_token_file(&path).unwrap();
        assert!(created.verify(token.as_bytes()));
        assert!(!created.verify(b"wrong"));
        let (again, was_new) = AdminCredential::load_or_create(&path).unwrap();
        assert!(!was_new);
        assert!(again.verify(token.as_bytes()));
    }

    #[test]
    fn short_tokens_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("admin.token");
        std::fs::write(&path, "short\n").unwrap();
        assert!(matches!(
            AdminCredential::load_or_create(&path),
            Err(CredentialError::TooShort { .. })
        ));
    }
}
