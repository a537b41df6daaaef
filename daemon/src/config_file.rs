//! Reading the configuration: the file named on the command line plus the
//! `MESHD_*` variables of the process environment, checked by `meshd-config`.

use std::ffi::OsString;
use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use meshd_config::{Config, LoadError, ValidationError};

/// Largest configuration file read: the complete default file with all its
/// comments is about 7 KiB, so anything near 1 MiB is not a config file.
const MAX_CONFIG_LEN: u64 = 1 << 20;

/// Why the configuration could not be used. Each message names the file (or
/// variable), the key and the fix.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The file does not exist.
    #[error(
        "{} does not exist; fix: write a documented default with `meshd config default > {}`",
        .0.display(), .0.display()
    )]
    Missing(PathBuf),
    /// The file could not be read.
    #[error("cannot read {}: {error}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        error: io::Error,
    },
    /// The file is far larger than a configuration.
    #[error("{} is larger than {MAX_CONFIG_LEN} bytes, too large for a configuration file", .0.display())]
    TooLarge(PathBuf),
    /// The file is not UTF-8 text.
    #[error("{} is not UTF-8 text; fix: save it as UTF-8", .0.display())]
    NotText(PathBuf),
    /// A `MESHD_` variable's name or value is not UTF-8.
    #[error("environment variable {0} is not UTF-8; fix: set it to UTF-8 text or unset it")]
    EnvNotText(String),
    /// The file or an override does not fit the schema.
    #[error("{}", describe_load(path, error))]
    Load {
        /// The file.
        path: PathBuf,
        /// What is wrong (boxed: it is large and errors are rare).
        error: Box<LoadError>,
    },
    /// The configuration breaks validation rules.
    #[error("{}", describe_problems(path, problems, overrides))]
    Invalid {
        /// The file.
        path: PathBuf,
        /// Every broken rule.
        problems: Vec<ValidationError>,
        /// Names of the environment overrides applied.
        overrides: Vec<String>,
    },
}

fn describe_load(path: &Path, error: &LoadError) -> String {
    match error {
        LoadError::File { .. } => format!("{}: {error}", path.display()),
        _ => format!("{error} (while reading {})", path.display()),
    }
}

fn describe_problems(path: &Path, problems: &[ValidationError], overrides: &[String]) -> String {
    let mut out = format!("{}", path.display());
    if !overrides.is_empty() {
        out.push_str(&format!(" with environment overrides {}", overrides.join(", ")));
    }
    match problems {
        [one] => out.push_str(&format!(": {one}")),
        many => {
            out.push_str(&format!(": {} problems:", many.len()));
            for problem in many {
                out.push_str(&format!("\n  - {problem}"));
            }
        }
    }
    out
}

/// The `MESHD_*` variables of the process environment.
pub fn meshd_env() -> Result<Vec<(String, String)>, Error> {
    meshd_vars(std::env::vars_os())
}

fn meshd_vars(vars: impl IntoIterator<Item = (OsString, OsString)>) -> Result<Vec<(String, String)>, Error> {
    let prefix = Config::ENV_PREFIX.as_bytes();
    let mut found = Vec::new();
    for (name, value) in vars {
        if !name.as_encoded_bytes().starts_with(prefix) {
            continue;
        }
        let name =
            name.into_string().map_err(|name| Error::EnvNotText(name.to_string_lossy().into_owned()))?;
        let value = value.into_string().map_err(|_| Error::EnvNotText(name.clone()))?;
        found.push((name, value));
    }
    found.sort();
    Ok(found)
}

/// Reads, overrides and validates the configuration in `path`.
pub fn load(path: &Path, env: &[(String, String)]) -> Result<Config, Error> {
    let text = read_text(path)?;
    let config = Config::load(&text, env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .map_err(|error| Error::Load { path: path.to_owned(), error: Box::new(error) })?;
    let problems = config.problems();
    if problems.is_empty() {
        Ok(config)
    } else {
        let overrides = env.iter().map(|(name, _)| name.clone()).collect();
        Err(Error::Invalid { path: path.to_owned(), problems, overrides })
    }
}

fn read_text(path: &Path) -> Result<String, Error> {
    let file = File::open(path).map_err(|error| match error.kind() {
        io::ErrorKind::NotFound => Error::Missing(path.to_owned()),
        _ => Error::Read { path: path.to_owned(), error },
    })?;
    let mut bytes = Vec::new();
    file.take(MAX_CONFIG_LEN + 1)
        .read_to_end(&mut bytes)
        .map_err(|error| Error::Read { path: path.to_owned(), error })?;
    if bytes.len() as u64 > MAX_CONFIG_LEN {
        return Err(Error::TooLarge(path.to_owned()));
    }
    String::from_utf8(bytes).map_err(|_| Error::NotText(path.to_owned()))
}

#[cfg(test)]
mod tests {
    use std::os::unix::ffi::OsStringExt;

    use super::*;

    #[test]
    fn only_meshd_variables_are_taken() {
        let vars = [("PATH", "/bin"), ("MESHD_API__LISTEN", "127.0.0.1:1"), ("XMESHD_A", "b")]
            .map(|(k, v)| (OsString::from(k), OsString::from(v)));
        let found = meshd_vars(vars).expect("utf-8");
        assert_eq!(found, [("MESHD_API__LISTEN".to_owned(), "127.0.0.1:1".to_owned())]);
    }

    #[test]
    fn non_utf8_values_are_named() {
        let vars = [(OsString::from("MESHD_LOG__LEVEL"), OsString::from_vec(vec![0xff]))];
        let err = meshd_vars(vars).expect_err("not utf-8");
        assert!(err.to_string().contains("MESHD_LOG__LEVEL"), "{err}");
    }

    #[test]
    fn validation_problems_name_the_file_and_every_key() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("meshd.toml");
        std::fs::write(&path, "[network]\nepoch_length_s = 5\n[gateway]\nantenna_gain_dbi = 99\n")
            .expect("write");
        let err = load(&path, &[]).expect_err("invalid");
        let text = err.to_string();
        assert!(text.contains("meshd.toml: 2 problems"), "{text}");
        assert!(
            text.contains("network.epoch_length_s") && text.contains("gateway.antenna_gain_dbi"),
            "{text}"
        );
    }
}
