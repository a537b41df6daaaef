//! Errors of [`Config::load`](crate::Config::load): the file's TOML and the
//! environment overrides.

use std::fmt::Write as _;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

/// Why a configuration could not be read. Each variant names where the
/// mistake is (line and key, or variable) and how to fix it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    /// The file is not valid TOML, or a key is unknown or has a value of the
    /// wrong type.
    #[error("{}", describe_file_error(.line, .column, .key.as_deref(), .text, .message))]
    File {
        /// 1-based line of the mistake.
        line: usize,
        /// 1-based column of the mistake.
        column: usize,
        /// The dotted key at the mistake (`network.epoch_length_s`), when the
        /// text parsed as TOML far enough to tell.
        key: Option<String>,
        /// The text of that line.
        text: String,
        /// What the TOML parser says is wrong.
        message: String,
    },
    /// A `MESHD_` variable that names no section and key.
    #[error(
        "environment variable {var} is not a configuration override: {hint}; \
         fix: correct its name or unset it (overrides are MESHD_<SECTION>__<KEY>, \
         e.g. MESHD_API__LISTEN; `meshd config default` lists every key)"
    )]
    UnknownEnv {
        /// The variable's name.
        var: String,
        /// Which part is wrong and what exists instead.
        hint: String,
    },
    /// An override whose value does not fit its key.
    #[error(
        "environment variable {var}={value:?} (overrides `{key}`): {message}; \
         fix: set it to a value like {example} or unset it"
    )]
    EnvValue {
        /// The variable's name.
        var: String,
        /// The dotted key it overrides.
        key: String,
        /// The value found.
        value: String,
        /// What is wrong with it.
        message: String,
        /// A valid value of the key, in the variable's syntax.
        example: String,
    },
}

impl LoadError {
    /// The dotted key the error is about, when known.
    pub fn key(&self) -> Option<&str> {
        match self {
            LoadError::File { key, .. } => key.as_deref(),
            LoadError::UnknownEnv { .. } => None,
            LoadError::EnvValue { key, .. } => Some(key),
        }
    }
}

fn describe_file_error(line: &usize, column: &usize, key: Option<&str>, text: &str, message: &str) -> String {
    let mut out = format!("line {line}, column {column}");
    if let Some(key) = key {
        let _ = write!(out, ", key `{key}`");
    }
    let _ = write!(out, ": {message}\n    {line} | {text}\n");
    let fix = if message.starts_with("unknown field") {
        "fix: correct the key's spelling or section, or remove it; `meshd config default` prints every valid key"
    } else if key.is_some() {
        "fix: give the key a value of the right type; `meshd config default` prints every key with its default"
    } else {
        "fix: correct the TOML syntax on this line (strings need quotes, sections are [name])"
    };
    out.push_str(fix);
    out
}

/// Turns a TOML error into a [`LoadError::File`] naming line, column and key.
pub(crate) fn file_error(text: &str, err: &toml::de::Error) -> LoadError {
    let position = err.span().map(|span| span.start).unwrap_or(0).min(text.len());
    let (line, column, line_text) = line_and_column(text, position);
    LoadError::File {
        line,
        column,
        key: key_at(text, position),
        text: line_text.to_owned(),
        message: err.message().trim_end().to_owned(),
    }
}

/// The 1-based line and column (in characters) of a byte offset, and the
/// text of that line.
fn line_and_column(text: &str, position: usize) -> (usize, usize, &str) {
    let before = text.get(..position).unwrap_or(text);
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let line = before.matches('\n').count() + 1;
    let column = before[line_start..].chars().count() + 1;
    let line_text = text[line_start..].lines().next().unwrap_or("");
    (line, column, line_text)
}

/// The dotted path of the key whose name or value covers byte `position`,
/// e.g. `network.epoch_length_s` or `p2p.listen[1]`.
fn key_at(text: &str, position: usize) -> Option<String> {
    let document = DeTable::parse(text).ok()?;
    let mut path = String::new();
    find_in_table(document.get_ref(), position, &mut path).then_some(path)
}

fn covers<T>(spanned: &Spanned<T>, position: usize) -> bool {
    let span = spanned.span();
    span.start <= position && position < span.end.max(span.start + 1)
}

fn find_in_table(table: &DeTable<'_>, position: usize, path: &mut String) -> bool {
    for (key, value) in table.iter() {
        let len = path.len();
        if !path.is_empty() {
            path.push('.');
        }
        path.push_str(key.get_ref());
        if find_in_value(value, position, path) || covers(key, position) || covers(value, position) {
            return true;
        }
        path.truncate(len);
    }
    false
}

fn find_in_value(value: &Spanned<DeValue<'_>>, position: usize, path: &mut String) -> bool {
    match value.get_ref() {
        DeValue::Table(table) => find_in_table(table, position, path),
        DeValue::Array(items) => {
            for (index, item) in items.iter().enumerate() {
                let len = path.len();
                let _ = write!(path, "[{index}]");
                if find_in_value(item, position, path) || covers(item, position) {
                    return true;
                }
                path.truncate(len);
            }
            false
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use crate::{Config, LoadError};

    const NO_ENV: [(&str, &str); 0] = [];

    fn file_error(text: &str) -> (usize, Option<String>, String) {
        match Config::load(text, NO_ENV) {
            Err(LoadError::File { line, key, message, .. }) => (line, key, message),
            other => panic!("expected a file error, got {other:?}"),
        }
    }

    #[test]
    fn misspelled_key_is_named_with_its_section_and_line() {
        let (line, key, message) = file_error("[network]\nname = \"x\"\nepoch_lenght_s = 60\n");
        assert_eq!(line, 3);
        assert_eq!(key.as_deref(), Some("network.epoch_lenght_s"));
        assert!(message.contains("epoch_lenght_s"), "{message}");
        let shown =
            Config::load("[network]\nepoch_lenght_s = 60\n", NO_ENV).expect_err("unknown").to_string();
        assert!(shown.contains("`network.epoch_lenght_s`") && shown.contains("fix:"), "{shown}");
    }

    #[test]
    fn unknown_section_is_named() {
        let (line, key, _) = file_error("\n[netwrk]\nname = \"x\"\n");
        assert_eq!(line, 2);
        assert_eq!(key.as_deref(), Some("netwrk"));
    }

    #[test]
    fn wrong_type_names_the_key() {
        let (_, key, message) = file_error("[network]\nepoch_length_s = \"an hour\"\n");
        assert_eq!(key.as_deref(), Some("network.epoch_length_s"));
        assert!(message.contains("invalid type"), "{message}");
        let (_, key, _) = file_error("[p2p]\nlisten = [\"/ip4/0.0.0.0/tcp/1\", 5]\n");
        assert_eq!(key.as_deref(), Some("p2p.listen[1]"));
        let (_, key, _) = file_error("api = { listen = \"nowhere\" }\n");
        assert_eq!(key.as_deref(), Some("api.listen"));
    }

    #[test]
    fn syntax_error_names_the_line() {
        let (line, key, _) = file_error("[network]\nname = meshd\n");
        assert_eq!((line, key), (2, None));
    }
}
