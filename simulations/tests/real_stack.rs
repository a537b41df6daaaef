//! Real-stack mode end to end: a small overlay of real libp2p nodes in this
//! process forms, and every published message reaches every other node, on
//! the meshd stack and on the plain gossipsub baseline alike.

use meshd_simulations::real::{self, Stack};
use meshd_simulations::scenario::Scenario;

/// Nodes in the test overlay: enough for messages to cross several hops of
/// a mesh of degree 6, few enough for a debug build to start them in seconds.
const NODES: usize = 24;

fn small() -> Scenario {
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/scenarios/smoke.toml")).expect("read");
    let mut s = Scenario::parse(&text).expect("smoke parses");
    s.placement.gateways = NODES;
    s.real_stack.messages = 12;
    s.real_stack.publish_interval_ms = 50;
    s.real_stack.drain_s = 3;
    s.validate().expect("valid with overrides");
    s
}

fn run(stack: Stack) {
    let s = small();
    let report = real::run(&s, 2, stack, &|_| {}).expect("the run completes");
    let g = &report.gossip;
    let others = (NODES - 1) as u64;
    assert_eq!(g.intended, 12 * others, "{stack:?}: every message is meant for every other node");
    assert_eq!(g.delivered, g.intended, "{stack:?}: every message reached every node ({g:?})");
    assert_eq!(g.latency.samples, g.delivered, "{stack:?}: one latency per delivery");
    assert!(g.latency.p99_ms < 3_000, "{stack:?}: deliveries within the drain ({g:?})");
    assert!(report.memory.peak_rss_bytes > 0, "{stack:?}: memory is measured");
    #[cfg(target_os = "linux")]
    assert!(
        !report.mode.contains("normal priority"),
        "{stack:?}: the shared timer thread runs at nice 19 ({})",
        report.mode
    );
    assert!(report.mode.contains(match stack {
        Stack::Meshd => "meshd",
        Stack::Plain => "plain",
    }));
}

#[test]
fn the_meshd_stack_delivers_every_message_to_every_node() {
    run(Stack::Meshd);
}

#[test]
fn the_plain_baseline_delivers_every_message_to_every_node() {
    run(Stack::Plain);
}
