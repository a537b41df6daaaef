//! The gateway's key file on disk: generated from OS randomness, created with
//! mode 0600, and refused when others can read it.
//!
//! The text format belongs to [`meshd_protocol::keys::KeyFile`]; this module
//! owns the IO around it.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use meshd_protocol::keys::{AnchorKey, KeyFile, KeyFileError, Keypair};
use zeroize::Zeroizing;

/// Mode of a new key file: read and write by its owner only.
const KEY_FILE_MODE: u32 = 0o600;

/// Mode of directories created for a key file: only the owner may list them.
const KEY_DIR_MODE: u32 = 0o700;

/// Permission bits of group and others; none may be set on a key file.
const GROUP_OTHER_BITS: u32 = 0o077;

/// Draws of a secp256k1 secret before giving up. A uniform 32-byte draw is
/// invalid (zero or not below the curve order) with probability about 2^-128,
/// so a second failure already means the random source is broken.
const MAX_ANCHOR_DRAWS: usize = 4;

/// Why a key file could not be created or read. Each message names the file
/// and says how to fix the problem.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The operating system's random source failed.
    #[error("the operating system's random number generator failed: {0}; no key was written")]
    Random(getrandom::Error),
    /// Every draw gave an invalid secp256k1 secret.
    #[error(
        "{MAX_ANCHOR_DRAWS} random draws in a row were not a valid secp256k1 secret; the random source is broken"
    )]
    BadRandom,
    /// The key file already exists.
    #[error(
        "{} already exists; refusing to overwrite a gateway's identity; fix: choose another path, or pass \
         --force to replace it (the old identity is lost unless backed up)",
        .0.display()
    )]
    Exists(PathBuf),
    /// A directory could not be created.
    #[error("cannot create directory {}: {error}", path.display())]
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// The OS error.
        error: io::Error,
    },
    /// The key file could not be written.
    #[error("cannot write {}: {error}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// The OS error.
        error: io::Error,
    },
    /// The key file does not exist.
    #[error(
        "{} does not exist; fix: create a key file with `meshd keys generate --out {}`, or give the path \
         of an existing one",
        .0.display(), shell_quote(.0)
    )]
    Missing(PathBuf),
    /// The key file could not be read.
    #[error("cannot read {}: {error}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        error: io::Error,
    },
    /// The path is not a regular file.
    #[error("{} is not a regular file; fix: give the path of a key file", .0.display())]
    NotAFile(PathBuf),
    /// Group or others may read or write the key file.
    #[error(
        "{} has mode {mode:04o}: group or others may read or write it; it holds the gateway's secret keys \
         (anyone who reads it can sign as this gateway, anyone who writes it can replace its identity); \
         fix: chmod 600 {}",
        path.display(), shell_quote(path)
    )]
    TooOpen {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The file is larger than any key file.
    #[error(
        "{} is larger than {max} bytes, too large for a key file; fix: give the path of a key file written \
         by `meshd keys generate`",
        .0.display(), max = KeyFile::MAX_LEN
    )]
    TooLarge(PathBuf),
    /// The file is not UTF-8 text.
    #[error(
        "{} is not text; fix: give the path of a key file written by `meshd keys generate`",
        .0.display()
    )]
    NotText(PathBuf),
    /// The file's text is not a key file.
    #[error(
        "{}: {error}; fix: restore the file from a backup, or create a new identity with \
         `meshd keys generate --out {} --force`",
        path.display(), shell_quote(path)
    )]
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong, with the line.
        error: KeyFileError,
    },
}

/// New keys from the operating system's random source.
pub fn generate() -> Result<KeyFile, Error> {
    let identity = Keypair::from_secret(*random_secret()?);
    for _ in 0..MAX_ANCHOR_DRAWS {
        if let Some(anchor) = AnchorKey::from_secret(*random_secret()?) {
            return Ok(KeyFile { identity, anchor });
        }
    }
    Err(Error::BadRandom)
}

fn random_secret() -> Result<Zeroizing<[u8; 32]>, Error> {
    let mut secret = Zeroizing::new([0u8; 32]);
    getrandom::fill(secret.as_mut_slice()).map_err(Error::Random)?;
    Ok(secret)
}

/// Writes `keys` to `path`, created with mode 0600 (missing parent directories
/// with mode 0700). An existing file is refused unless `force`, in which case
/// it is replaced atomically: a new 0600 file is written beside it and renamed
/// over it, so the path never holds a partial or more open file.
pub fn write(path: &Path, keys: &KeyFile, force: bool) -> Result<(), Error> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(KEY_DIR_MODE)
            .create(parent)
            .map_err(|error| Error::CreateDir { path: parent.to_owned(), error })?;
    }
    let text = keys.to_text();
    if !force {
        return write_new(path, text.as_bytes()).map_err(|err| match err {
            err if err.kind() == io::ErrorKind::AlreadyExists => Error::Exists(path.to_owned()),
            error => Error::Write { path: path.to_owned(), error },
        });
    }
    let temporary = temporary_path(path);
    // A leftover of an interrupted run with the same process id is ours to remove.
    let _ = fs::remove_file(&temporary);
    write_new(&temporary, text.as_bytes()).and_then(|()| fs::rename(&temporary, path)).map_err(|error| {
        let _ = fs::remove_file(&temporary);
        Error::Write { path: path.to_owned(), error }
    })?;
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        // Persist the rename; a failure here leaves a correct file that a
        // crash might roll back to the old one, which is not worth an error.
        let _ = File::open(parent).and_then(|dir| dir.sync_all());
    }
    Ok(())
}

/// Creates `path` (failing if it exists) with mode 0600 and writes `bytes`,
/// removing the file again if the write fails.
fn write_new(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut file = OpenOptions::new().write(true).create_new(true).mode(KEY_FILE_MODE).open(path)?;
    file.write_all(bytes).and_then(|()| file.sync_all()).inspect_err(|_| {
        let _ = fs::remove_file(path);
    })
}

fn temporary_path(path: &Path) -> PathBuf {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    path.with_file_name(format!(".{name}.{}.tmp", std::process::id()))
}

/// Reads the key file at `path`, refusing it when group or others may read
/// or write it.
pub fn read(path: &Path) -> Result<KeyFile, Error> {
    let mut file = File::open(path).map_err(|error| match error.kind() {
        io::ErrorKind::NotFound => Error::Missing(path.to_owned()),
        _ => Error::Read { path: path.to_owned(), error },
    })?;
    // The mode of the file opened, not of whatever the path names a moment later.
    let metadata = file.metadata().map_err(|error| Error::Read { path: path.to_owned(), error })?;
    if !metadata.is_file() {
        return Err(Error::NotAFile(path.to_owned()));
    }
    let mode = metadata.permissions().mode() & 0o7777;
    if mode & GROUP_OTHER_BITS != 0 {
        return Err(Error::TooOpen { path: path.to_owned(), mode });
    }
    let mut bytes = Zeroizing::new(Vec::with_capacity(KeyFile::MAX_LEN + 1));
    (&mut file)
        .take(KeyFile::MAX_LEN as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|error| Error::Read { path: path.to_owned(), error })?;
    if bytes.len() > KeyFile::MAX_LEN {
        return Err(Error::TooLarge(path.to_owned()));
    }
    let text = std::str::from_utf8(&bytes).map_err(|_| Error::NotText(path.to_owned()))?;
    KeyFile::parse(text).map_err(|error| Error::Parse { path: path.to_owned(), error })
}

/// A path as a shell word, for fixes an operator copies into a shell.
fn shell_quote(path: &Path) -> String {
    let text = path.display().to_string();
    let plain = |c: char| c.is_ascii_alphanumeric() || matches!(c, '/' | '.' | '_' | '-' | '+' | ':' | ',');
    if !text.is_empty() && text.chars().all(plain) {
        text
    } else {
        format!("'{}'", text.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode_of(path: &Path) -> u32 {
        fs::metadata(path).expect("metadata").permissions().mode() & 0o777
    }

    #[test]
    fn generated_keys_round_trip_through_a_0600_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("new/keys/gateway.key");
        let keys = generate().expect("random keys");
        write(&path, &keys, false).expect("write");
        assert_eq!(mode_of(&path), 0o600);
        assert_eq!(mode_of(path.parent().expect("parent")), 0o700);
        let read_back = read(&path).expect("read");
        assert_eq!(read_back.identity.gateway_id(), keys.identity.gateway_id());
        assert_eq!(read_back.anchor.address(), keys.anchor.address());
    }

    #[test]
    fn two_generated_identities_differ() {
        let a = generate().expect("keys");
        let b = generate().expect("keys");
        assert_ne!(a.identity.gateway_id(), b.identity.gateway_id());
        assert_ne!(a.anchor.address(), b.anchor.address());
    }

    #[test]
    fn existing_file_is_kept_unless_forced() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("gateway.key");
        let first = generate().expect("keys");
        write(&path, &first, false).expect("write");
        let second = generate().expect("keys");
        assert!(matches!(write(&path, &second, false), Err(Error::Exists(_))));
        assert_eq!(read(&path).expect("read").identity.gateway_id(), first.identity.gateway_id());
        write(&path, &second, true).expect("forced write");
        assert_eq!(read(&path).expect("read").identity.gateway_id(), second.identity.gateway_id());
        assert_eq!(mode_of(&path), 0o600);
        let leftovers = fs::read_dir(dir.path()).expect("list").count();
        assert_eq!(leftovers, 1, "the temporary file is gone");
    }

    #[test]
    fn forced_write_tightens_an_open_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("gateway.key");
        fs::write(&path, "old").expect("write");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).expect("chmod");
        write(&path, &generate().expect("keys"), true).expect("forced write");
        assert_eq!(mode_of(&path), 0o600);
    }

    #[test]
    fn open_files_are_refused_with_the_fix() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("gateway.key");
        write(&path, &generate().expect("keys"), false).expect("write");
        for mode in [0o644, 0o640, 0o604, 0o620, 0o602] {
            fs::set_permissions(&path, fs::Permissions::from_mode(mode)).expect("chmod");
            let err = read(&path).expect_err("too open");
            assert!(matches!(err, Error::TooOpen { mode: m, .. } if m == mode), "{err:?}");
            assert!(err.to_string().contains(&format!("chmod 600 {}", path.display())), "{err}");
        }
        fs::set_permissions(&path, fs::Permissions::from_mode(0o400)).expect("chmod");
        assert!(read(&path).is_ok(), "read-only by the owner is fine");
    }

    #[test]
    fn bad_files_are_refused_naming_file_and_line() {
        let dir = tempfile::tempdir().expect("tempdir");
        let missing = dir.path().join("none.key");
        assert!(matches!(read(&missing), Err(Error::Missing(_))));
        assert!(matches!(read(dir.path()), Err(Error::NotAFile(_))));

        let path = dir.path().join("bad.key");
        write_new(&path, b"# keys\ned25519 = \"00\"\n").expect("write");
        let err = read(&path).expect_err("bad value");
        let text = err.to_string();
        assert!(text.contains(&path.display().to_string()) && text.contains("line 2"), "{text}");

        let big = dir.path().join("big.key");
        write_new(&big, &vec![b'#'; KeyFile::MAX_LEN + 1]).expect("write");
        assert!(matches!(read(&big), Err(Error::TooLarge(_))));

        let binary = dir.path().join("binary.key");
        write_new(&binary, &[0xff, 0xfe, 0x00]).expect("write");
        assert!(matches!(read(&binary), Err(Error::NotText(_))));
    }

    #[test]
    fn fixes_quote_paths_for_the_shell() {
        assert_eq!(shell_quote(Path::new("/var/lib/meshd/k.key")), "/var/lib/meshd/k.key");
        assert_eq!(shell_quote(Path::new("my keys/it's.key")), r"'my keys/it'\''s.key'");
    }
}
