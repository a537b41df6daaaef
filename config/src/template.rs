//! The commented default configuration file (`meshd config default`).

use std::fmt::Write as _;

use toml::{Table, Value};

use crate::{Config, SECTIONS};

/// Opening comment of the default file.
const HEADER: &str = "\
# meshd configuration.
#
# Every key is shown with its default value: delete what you do not change.
# Keys shown commented out are unset by default; the line shows an example.
#
# Each key can also be set by an environment variable, which takes precedence:
# MESHD_<SECTION>__<KEY>, e.g. MESHD_API__LISTEN=127.0.0.1:9000.
# Check a file with: meshd config check <file>
";

/// The default configuration as a TOML file: every section and key with its
/// documentation as `#` comments and its default value. It parses back to
/// [`Config::default`].
pub fn default_toml() -> String {
    // The defaults serialise to a table of plain values; this cannot fail for
    // the types of the schema (strings, numbers, booleans, lists).
    let defaults = Table::try_from(Config::default()).unwrap_or_default();
    let mut out = String::from(HEADER);
    for section in SECTIONS {
        out.push('\n');
        push_comment(&mut out, section.doc);
        let _ = writeln!(out, "[{}]", section.name);
        let values = defaults.get(section.name).and_then(Value::as_table);
        for key in section.keys {
            out.push('\n');
            push_comment(&mut out, key.doc);
            match (values.and_then(|v| v.get(key.name)), key.example) {
                (Some(value), _) => {
                    let _ = writeln!(out, "{} = {value}", key.name);
                }
                (None, Some(example)) => {
                    let _ = writeln!(out, "# {} = {example}", key.name);
                }
                (None, None) => {
                    let _ = writeln!(out, "# {} =", key.name);
                }
            }
        }
    }
    out
}

fn push_comment(out: &mut String, doc: &[&str]) {
    for line in doc {
        let line = line.trim_end();
        if line.is_empty() {
            out.push_str("#\n");
        } else if line.starts_with(' ') {
            let _ = writeln!(out, "#{line}");
        } else {
            let _ = writeln!(out, "# {line}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NO_ENV: [(&str, &str); 0] = [];

    #[test]
    fn default_file_parses_to_the_defaults_and_validates() {
        let config = Config::load(&default_toml(), NO_ENV).expect("the default file parses");
        assert_eq!(config, Config::default());
        assert_eq!(config.validate(), Ok(()));
    }

    #[test]
    fn default_file_shows_every_section_and_key_with_its_doc() {
        let text = default_toml();
        for section in SECTIONS {
            assert!(text.contains(&format!("\n[{}]\n", section.name)), "[{}] missing", section.name);
            for key in section.keys {
                let set = format!("\n{} = ", key.name);
                let unset = format!("\n# {} = ", key.name);
                assert!(
                    text.contains(&set) || text.contains(&unset),
                    "{}.{} missing",
                    section.name,
                    key.name
                );
                for line in key.doc {
                    assert!(
                        text.contains(line.trim()),
                        "doc of {}.{} missing: {line}",
                        section.name,
                        key.name
                    );
                }
            }
        }
    }

    #[test]
    fn every_serialised_key_is_documented() {
        // A field added to a section struct without the schema would be
        // missing from SECTIONS and from the default file.
        let defaults = Table::try_from(Config::default()).expect("serialise");
        for (name, values) in &defaults {
            let section = SECTIONS.iter().find(|s| s.name == name).expect("section documented");
            for key in values.as_table().expect("a section is a table").keys() {
                assert!(section.keys.iter().any(|k| k.name == key), "{name}.{key} undocumented");
            }
        }
        assert_eq!(defaults.len(), SECTIONS.len());
    }

    #[test]
    fn examples_of_unset_keys_are_valid_when_uncommented() {
        let text = default_toml().replace("# lat_deg = ", "lat_deg = ").replace("# lon_deg = ", "lon_deg = ");
        let config = Config::load(&text, NO_ENV).expect("examples parse");
        assert_eq!(config.validate(), Ok(()));
        let text = default_toml().replace("# h3_cell = ", "h3_cell = ");
        let config = Config::load(&text, NO_ENV).expect("example parses");
        assert_eq!(config.validate(), Ok(()));
    }
}
