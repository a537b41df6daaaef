//! `MESHD_<SECTION>__<KEY>` environment overrides.
//!
//! Each override is applied on its own, in the order of the variables' names,
//! by writing its value into the configuration's TOML form and reading the
//! configuration back; so a value that does not fit is reported with the one
//! variable that carries it.

use toml::{Table, Value};

use crate::{Config, KeyDoc, LoadError, SECTIONS, SectionDoc};

/// Separates the section from the key in a variable's name.
const SEPARATOR: &str = "__";

/// Applies every `MESHD_*` variable of `env` to `config`.
pub(crate) fn apply<I, K, V>(mut config: Config, env: I) -> Result<Config, LoadError>
where
    I: IntoIterator<Item = (K, V)>,
    K: AsRef<str>,
    V: AsRef<str>,
{
    let mut overrides: Vec<(String, String)> = env
        .into_iter()
        .filter(|(name, _)| name.as_ref().starts_with(Config::ENV_PREFIX))
        .map(|(name, value)| (name.as_ref().to_owned(), value.as_ref().to_owned()))
        .collect();
    overrides.sort();
    for (var, value) in overrides {
        let (section, key) = resolve(&var)?;
        config = apply_one(config, &var, section, key, &value)?;
    }
    Ok(config)
}

/// The section and key a variable names.
fn resolve(var: &str) -> Result<(&'static SectionDoc, &'static KeyDoc), LoadError> {
    let unknown = |hint: String| LoadError::UnknownEnv { var: var.to_owned(), hint };
    let rest = &var[Config::ENV_PREFIX.len()..];
    let Some((section_name, key_name)) = rest.split_once(SEPARATOR) else {
        return Err(unknown(format!("it has no `{SEPARATOR}` between section and key")));
    };
    let (section_name, key_name) = (section_name.to_ascii_lowercase(), key_name.to_ascii_lowercase());
    let Some(section) = SECTIONS.iter().find(|s| s.name == section_name) else {
        let names: Vec<_> = SECTIONS.iter().map(|s| s.name.to_ascii_uppercase()).collect();
        return Err(unknown(format!(
            "there is no section {section_name:?} (sections: {})",
            names.join(", ")
        )));
    };
    let Some(key) = section.keys.iter().find(|k| k.name == key_name) else {
        let names: Vec<_> = section.keys.iter().map(|k| k.name.to_ascii_uppercase()).collect();
        return Err(unknown(format!(
            "section {} has no key {key_name:?} (keys: {})",
            section.name.to_ascii_uppercase(),
            names.join(", ")
        )));
    };
    Ok((section, key))
}

fn apply_one(
    config: Config,
    var: &str,
    section: &SectionDoc,
    key: &KeyDoc,
    raw: &str,
) -> Result<Config, LoadError> {
    let dotted = format!("{}.{}", section.name, key.name);
    let fail = |message: String, example: String| LoadError::EnvValue {
        var: var.to_owned(),
        key: dotted.clone(),
        value: raw.to_owned(),
        message,
        example,
    };
    let mut table = Table::try_from(&config).map_err(|e| fail(e.to_string(), String::new()))?;
    let current = table.get(section.name).and_then(|s| s.get(key.name)).cloned();
    // The shape of the key's value: its current value, or its documented
    // example for keys unset by default.
    let shape = current.or_else(|| key.example.and_then(|e| e.parse::<Value>().ok()));
    let example = shape.as_ref().map(env_syntax).unwrap_or_default();
    let value = parse(raw, shape.as_ref());
    let Some(Value::Table(section_table)) = table.get_mut(section.name) else {
        return Err(fail(format!("section [{}] is missing from the configuration", section.name), example));
    };
    section_table.insert(key.name.to_owned(), value);
    Value::Table(table).try_into::<Config>().map_err(|e| fail(e.message().trim_end().to_owned(), example))
}

/// Reads an override's text as a value of the same type as `shape`.
fn parse(raw: &str, shape: Option<&Value>) -> Value {
    let string = || Value::String(raw.to_owned());
    match shape {
        Some(Value::String(_)) => string(),
        Some(Value::Array(_)) if !raw.trim_start().starts_with('[') => Value::Array(
            raw.split(',')
                .map(str::trim)
                .filter(|item| !item.is_empty())
                .map(|item| Value::String(item.to_owned()))
                .collect(),
        ),
        // Numbers, booleans and TOML arrays as in TOML; anything else stays
        // a string, for the type error to quote.
        _ => raw.trim().parse::<Value>().unwrap_or_else(|_| string()),
    }
}

/// A value as it would be written in an environment variable.
fn env_syntax(value: &Value) -> String {
    match value {
        Value::String(s) => format!("{s:?}"),
        Value::Array(items) if items.iter().all(Value::is_str) => {
            let items: Vec<_> = items.iter().filter_map(Value::as_str).collect();
            format!("{:?}", items.join(","))
        }
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use crate::{Config, LoadError, LogFormat};

    fn load_env(env: &[(&str, &str)]) -> Result<Config, LoadError> {
        Config::load("", env.iter().copied())
    }

    #[test]
    fn overrides_set_keys_of_every_type() {
        let config = load_env(&[
            ("MESHD_API__LISTEN", "127.0.0.1:9000"),
            ("MESHD_NETWORK__EPOCH_LENGTH_S", "600"),
            ("MESHD_P2P__MDNS", "false"),
            ("MESHD_P2P__LISTEN", "/ip4/0.0.0.0/tcp/1, /ip4/0.0.0.0/tcp/2"),
            ("MESHD_GATEWAY__LAT_DEG", "52.5"),
            ("MESHD_GATEWAY__ANTENNA_GAIN_DBI", "3"),
            ("MESHD_GATEWAY__H3_CELL", "8c1f1d4886017ff"),
            ("MESHD_LOG__FORMAT", "json"),
            ("MESHD_IDENTITY__KEY_FILE", "/tmp/k"),
            ("PATH", "/usr/bin"),
        ])
        .expect("valid overrides");
        assert_eq!(config.api.listen.to_string(), "127.0.0.1:9000");
        assert_eq!(config.network.epoch_length_s, 600);
        assert!(!config.p2p.mdns);
        assert_eq!(config.p2p.listen, ["/ip4/0.0.0.0/tcp/1", "/ip4/0.0.0.0/tcp/2"]);
        assert_eq!(config.gateway.lat_deg, Some(52.5));
        assert_eq!(config.gateway.antenna_gain_dbi, 3.0);
        assert_eq!(config.gateway.h3_cell.as_deref(), Some("8c1f1d4886017ff"));
        assert_eq!(config.log.format, LogFormat::Json);
        assert_eq!(config.identity.key_file.to_str(), Some("/tmp/k"));
    }

    #[test]
    fn overrides_win_over_the_file() {
        let config =
            Config::load("[api]\nlisten = \"127.0.0.1:1\"\n", [("MESHD_API__LISTEN", "127.0.0.1:2")])
                .expect("valid");
        assert_eq!(config.api.listen.port(), 2);
    }

    #[test]
    fn list_overrides_accept_toml_arrays_and_empty_text() {
        let config =
            load_env(&[("MESHD_P2P__LISTEN", "[\"/ip4/0.0.0.0/tcp/1\"]"), ("MESHD_P2P__BOOTSTRAP", "")])
                .expect("valid");
        assert_eq!(config.p2p.listen, ["/ip4/0.0.0.0/tcp/1"]);
        assert!(config.p2p.bootstrap.is_empty());
    }

    #[test]
    fn a_bad_value_names_the_variable_and_the_key() {
        let err = load_env(&[("MESHD_NETWORK__EPOCH_LENGTH_S", "an hour")]).expect_err("not a number");
        let LoadError::EnvValue { var, key, value, .. } = &err else { panic!("{err:?}") };
        assert_eq!(var, "MESHD_NETWORK__EPOCH_LENGTH_S");
        assert_eq!(key, "network.epoch_length_s");
        assert_eq!(value, "an hour");
        let shown = err.to_string();
        assert!(shown.contains("3600") && shown.contains("fix:"), "{shown}");
        assert!(load_env(&[("MESHD_API__LISTEN", "localhost")]).is_err());
        assert!(load_env(&[("MESHD_LOG__FORMAT", "xml")]).is_err());
    }

    #[test]
    fn unknown_variables_are_refused() {
        for var in ["MESHD_API__LISTN", "MESHD_APIS__LISTEN", "MESHD_API_LISTEN"] {
            let err = load_env(&[(var, "x")]).expect_err(var);
            assert!(matches!(&err, LoadError::UnknownEnv { var: v, .. } if v == var), "{err:?}");
        }
    }
}
