//! NAT traversal for real: two gateways behind two NAT routers find out they
//! are private, reserve a slot on a relay, connect through it and upgrade to a
//! direct connection by hole punching.
//!
//! The test builds its own network namespaces (root needed; `ip` and
//! `iptables` from `scripts/install-test-deps.sh`), with addresses only from
//! the benchmarking range 198.18.0.0/15, so no packet leaves them:
//!
//! ```text
//!   a (198.19.1.2) ── nat1 ──┐                      ┌── nat2 ── b (198.19.2.2)
//!          198.19.1.1  198.18.1.2 ── pub (relay) ── 198.18.2.2  198.19.2.1
//!                                   198.18.0.1
//! ```
//!
//! nat1 and nat2 masquerade their LAN and drop unsolicited inbound packets,
//! like home routers. Each gateway is a `gossip-node` process started with
//! `ip netns exec`; the test reads its event lines. Where namespaces cannot be
//! made the test fails with the reason; it never passes without running.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// Generous bound on each step; a healthy run takes a few seconds per step.
const STEP_TIMEOUT: Duration = Duration::from_secs(60);

/// Turns on IPv4 forwarding in a namespace (`/proc/sys/net` is per namespace;
/// written directly so the test needs no `sysctl` binary).
const FORWARD: &[&str] = &["sh", "-c", "echo 1 > /proc/sys/net/ipv4/ip_forward"];

/// Runs a command, failing the test with its output when it fails.
fn run(args: &[&str]) {
    let output = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {args:?}: {e} (install with scripts/install-test-deps.sh)"));
    assert!(
        output.status.success(),
        "{args:?} failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The namespaces of one test run, deleted on drop.
struct Lab {
    prefix: String,
    namespaces: Vec<String>,
}

impl Lab {
    fn ns(&self, name: &str) -> String {
        format!("{}-{name}", self.prefix)
    }

    fn exec(&self, ns: &str, args: &[&str]) {
        let ns = self.ns(ns);
        let mut full = vec!["ip", "netns", "exec", ns.as_str()];
        full.extend_from_slice(args);
        run(&full);
    }

    fn build() -> Lab {
        for tool in ["ip", "iptables"] {
            let found = Command::new("sh").args(["-c", &format!("command -v {tool}")]).output();
            assert!(
                found.map(|o| o.status.success()).unwrap_or(false),
                "`{tool}` is missing: run scripts/install-test-deps.sh (needs root)"
            );
        }
        let mut lab = Lab { prefix: format!("mgw{}", std::process::id()), namespaces: Vec::new() };
        for name in ["pub", "nat1", "nat2", "a", "b"] {
            let ns = lab.ns(name);
            let output = Command::new("ip").args(["netns", "add", &ns]).output();
            match output {
                Ok(o) if o.status.success() => lab.namespaces.push(ns),
                Ok(o) => panic!(
                    "cannot create network namespace {ns} (the NAT test needs root and netns support): {}",
                    String::from_utf8_lossy(&o.stderr)
                ),
                Err(e) => panic!("cannot run `ip netns add`: {e} (run scripts/install-test-deps.sh)"),
            }
            lab.exec(name, &["ip", "link", "set", "lo", "up"]);
        }
        // Links: name in the first namespace, name in the second, addresses.
        let links = [
            ("pub", "p1", "198.18.1.1/30", "nat1", "w1", "198.18.1.2/30"),
            ("pub", "p2", "198.18.2.1/30", "nat2", "w2", "198.18.2.2/30"),
            ("nat1", "l1", "198.19.1.1/24", "a", "e1", "198.19.1.2/24"),
            ("nat2", "l2", "198.19.2.1/24", "b", "e2", "198.19.2.2/24"),
        ];
        for (left, left_if, left_addr, right, right_if, right_addr) in links {
            let (left_ns, right_ns) = (lab.ns(left), lab.ns(right));
            run(&[
                "ip", "link", "add", left_if, "netns", &left_ns, "type", "veth", "peer", "name", right_if,
                "netns", &right_ns,
            ]);
            lab.exec(left, &["ip", "addr", "add", left_addr, "dev", left_if]);
            lab.exec(right, &["ip", "addr", "add", right_addr, "dev", right_if]);
            lab.exec(left, &["ip", "link", "set", left_if, "up"]);
            lab.exec(right, &["ip", "link", "set", right_if, "up"]);
        }
        // The relay's public address, and routing through pub.
        lab.exec("pub", &["ip", "addr", "add", "198.18.0.1/32", "dev", "lo"]);
        lab.exec("pub", FORWARD);
        for (nat, wan, gateway) in [("nat1", "w1", "198.18.1.1"), ("nat2", "w2", "198.18.2.1")] {
            lab.exec(nat, &["ip", "route", "add", "default", "via", gateway]);
            lab.exec(nat, FORWARD);
            lab.exec(nat, &["iptables", "-t", "nat", "-A", "POSTROUTING", "-o", wan, "-j", "MASQUERADE"]);
            // Unsolicited inbound packets are dropped, as by a home router.
            for chain in ["INPUT", "FORWARD"] {
                lab.exec(
                    nat,
                    &[
                        "iptables",
                        "-A",
                        chain,
                        "-i",
                        wan,
                        "-m",
                        "conntrack",
                        "--ctstate",
                        "NEW",
                        "-j",
                        "DROP",
                    ],
                );
            }
        }
        lab.exec("a", &["ip", "route", "add", "default", "via", "198.19.1.1"]);
        lab.exec("b", &["ip", "route", "add", "default", "via", "198.19.2.1"]);
        lab
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for ns in &self.namespaces {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
    }
}

/// A `gossip-node` process in a namespace.
struct Gateway {
    name: &'static str,
    child: Child,
    stdin: ChildStdin,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
    log: std::path::PathBuf,
}

impl Gateway {
    fn start(lab: &Lab, name: &'static str, ns: &str, args: &[&str]) -> Gateway {
        let log = std::env::temp_dir().join(format!("{}-{name}.log", lab.prefix));
        let stderr = std::fs::File::create(&log).expect("log file");
        let ns = lab.ns(ns);
        let mut child = Command::new("ip")
            .args(["netns", "exec", &ns, env!("CARGO_BIN_EXE_gossip-node")])
            .args(args)
            .env("RUST_LOG", "info,libp2p_dcutr=debug,libp2p_relay=debug,libp2p_autonat=debug")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("spawn gossip-node");
        let stdin = child.stdin.take().expect("piped stdin");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Gateway { name, child, stdin, lines, seen: Vec::new(), log }
    }

    /// Waits for a line starting with `prefix` and returns it.
    fn expect(&mut self, prefix: &str) -> String {
        if let Some(line) = self.seen.iter().find(|l| l.starts_with(prefix)) {
            return line.clone();
        }
        // Wait in slices (no clock reads): at most STEP_TIMEOUT in total.
        let slice = Duration::from_millis(100);
        let mut slices = STEP_TIMEOUT.as_millis() / slice.as_millis();
        loop {
            match self.lines.recv_timeout(slice) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.starts_with(prefix) {
                        return line;
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) if slices > 0 => slices -= 1,
                Err(_) => panic!(
                    "{} never printed `{prefix}…`; it printed {:#?}\nits log ({}):\n{}",
                    self.name,
                    self.seen,
                    self.log.display(),
                    std::fs::read_to_string(&self.log).unwrap_or_default()
                ),
            }
        }
    }

    fn send(&mut self, command: &str) {
        writeln!(self.stdin, "{command}").expect("gateway stdin");
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = writeln!(self.stdin, "quit");
        std::thread::sleep(Duration::from_millis(100));
        let _ = self.child.kill();
        let _ = self.child.wait();
        if !std::thread::panicking() {
            let _ = std::fs::remove_file(&self.log);
        }
    }
}

fn word(line: &str, index: usize) -> String {
    line.split_whitespace().nth(index).unwrap_or_default().to_owned()
}

#[test]
fn gateways_behind_nats_reserve_on_a_relay_and_hole_punch_a_direct_connection() {
    let lab = Lab::build();
    let relay_tcp = "/ip4/198.18.0.1/tcp/4170";
    let relay_quic = "/ip4/198.18.0.1/udp/4170/quic-v1";
    let mut relay = Gateway::start(
        &lab,
        "relay",
        "pub",
        &[
            "--seed",
            "10",
            "--listen",
            relay_tcp,
            "--listen",
            relay_quic,
            "--external",
            relay_tcp,
            "--external",
            relay_quic,
            "--relay-server",
        ],
    );
    let relay_id = word(&relay.expect("ready "), 1);
    relay.expect("listening");
    let bootstrap_tcp = format!("{relay_tcp}/p2p/{relay_id}");
    let bootstrap_quic = format!("{relay_quic}/p2p/{relay_id}");
    let private_args = |seed| {
        vec![
            "--seed",
            seed,
            "--probe-interval-ms",
            "500",
            "--bootstrap",
            &bootstrap_tcp,
            "--bootstrap",
            &bootstrap_quic,
        ]
    };
    let mut a = Gateway::start(&lab, "a", "a", &private_args("11"));
    let mut b = Gateway::start(&lab, "b", "b", &private_args("12"));
    let a_id = word(&a.expect("ready "), 1);
    let b_id = word(&b.expect("ready "), 1);

    for gateway in [&mut a, &mut b] {
        gateway.expect(&format!("connected {relay_id} direct"));
        gateway.expect("reachability private");
        let reserved = gateway.expect(&format!("reserved {relay_id}"));
        assert!(word(&reserved, 2).contains("/p2p-circuit"), "relayed address in {reserved}");
    }

    // b reaches a through the relay; the relayed connection is then upgraded.
    b.send(&format!("dial {bootstrap_tcp}/p2p-circuit/p2p/{a_id}"));
    b.expect(&format!("connected {a_id} relayed"));
    a.expect(&format!("connected {b_id} relayed"));
    let punched_at_a = a.expect(&format!("hole-punched {b_id}"));
    assert_eq!(word(&punched_at_a, 1), b_id);

    // Gossip flows between them end to end.
    b.send("publish 1");
    let published = b.expect("published ");
    a.expect(&format!("message {}", word(&published, 1)));
    relay.expect("connected");
}
