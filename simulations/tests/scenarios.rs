//! Every scenario file parses and validates; bad files name the key.

use meshd_simulations::scenario::{Scenario, ScenarioError};

#[test]
fn every_scenario_file_parses() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/scenarios");
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir).expect("scenarios directory") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "toml") {
            let text = std::fs::read_to_string(&path).expect("read");
            let s = Scenario::parse(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            names.push(s.name);
        }
    }
    names.sort();
    for wanted in ["adversarial", "city-1k", "country-10k", "smoke", "sybil"] {
        assert!(names.iter().any(|n| n == wanted), "missing scenario {wanted}: {names:?}");
    }
}

#[test]
fn a_misspelt_key_in_a_table_is_named_with_its_table() {
    let err = Scenario::parse("[adversaries]\nsybil_ring = 3\n").expect_err("unknown key");
    match err {
        ScenarioError::Key { key, problem } => {
            assert_eq!(key, "adversaries.sybil_ring");
            assert!(problem.contains("unknown field"), "{problem}");
        }
        other => panic!("expected a key error, got {other}"),
    }
}

#[test]
fn a_cross_field_problem_names_the_key() {
    let err =
        Scenario::parse("[placement]\ngateways = 10\n[adversaries]\nspammers = 11\n").expect_err("too many");
    assert!(err.to_string().starts_with("key `adversaries`"), "{err}");
    let err = Scenario::parse("epoch_ms = 60000\ngrace_ms = 60000\n").expect_err("grace");
    assert!(err.to_string().contains("grace_ms"), "{err}");
}
