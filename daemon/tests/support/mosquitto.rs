//! A real mosquitto broker for a test, on a free loopback port.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Where Debian's `mosquitto` package installs the broker.
const MOSQUITTO: &str = "/usr/sbin/mosquitto";

/// A running broker, killed when dropped.
pub struct Broker {
    child: Child,
    conf: std::path::PathBuf,
    /// The port it listens on, on 127.0.0.1.
    pub port: u16,
    _dir: tempfile::TempDir,
}

impl Broker {
    /// Starts mosquitto on a free port of 127.0.0.1 and waits until it accepts
    /// connections. Panics with the fix when mosquitto is not installed.
    pub async fn start() -> Broker {
        assert!(
            Path::new(MOSQUITTO).exists(),
            "{MOSQUITTO} not found: this test needs Debian's mosquitto package; install it with \
             scripts/install-test-deps.sh or `sudo apt-get install -y mosquitto`"
        );
        let port = TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port();
        let dir = tempfile::tempdir().expect("temp dir");
        let conf = dir.path().join("mosquitto.conf");
        std::fs::write(
            &conf,
            format!("listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"),
        )
        .expect("write mosquitto.conf");
        let child = spawn(&conf);
        let broker = Broker { child, conf, port, _dir: dir };
        broker.wait_listening().await;
        broker
    }

    async fn wait_listening(&self) {
        for _ in 0..100 {
            if tokio::net::TcpStream::connect(("127.0.0.1", self.port)).await.is_ok() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("mosquitto did not listen on 127.0.0.1:{} within 5 s", self.port);
    }

    /// Stops the broker and starts it again on the same port.
    pub async fn restart(&mut self) {
        self.stop();
        self.child = spawn(&self.conf);
        self.wait_listening().await;
    }

    /// `mqtt://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port)
    }

    /// Stops the broker (to test reconnection).
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.stop();
    }
}

fn spawn(conf: &Path) -> Child {
    Command::new(MOSQUITTO)
        .arg("-c")
        .arg(conf)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start mosquitto")
}

/// A plain MQTT client for the test's side of the broker.
pub struct TestClient {
    /// The client.
    pub client: rumqttc::AsyncClient,
    incoming: tokio::sync::mpsc::Receiver<rumqttc::Publish>,
    subacks: tokio::sync::mpsc::Receiver<()>,
}

impl TestClient {
    /// Connects to `broker` as `id`.
    pub async fn connect(broker: &Broker, id: &str) -> TestClient {
        let options = rumqttc::MqttOptions::new(id, "127.0.0.1", broker.port);
        let (client, mut eventloop) = rumqttc::AsyncClient::new(options, 64);
        let (publish_tx, incoming) = tokio::sync::mpsc::channel(256);
        let (suback_tx, subacks) = tokio::sync::mpsc::channel(16);
        tokio::spawn(async move {
            loop {
                match eventloop.poll().await {
                    Ok(rumqttc::Event::Incoming(rumqttc::Incoming::Publish(p))) => {
                        if publish_tx.send(p).await.is_err() {
                            return;
                        }
                    }
                    Ok(rumqttc::Event::Incoming(rumqttc::Incoming::SubAck(_))) => {
                        let _ = suback_tx.send(()).await;
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                }
            }
        });
        TestClient { client, incoming, subacks }
    }

    /// Subscribes to `topic` and waits for the broker's SUBACK.
    pub async fn subscribe(&mut self, topic: &str) {
        self.client.subscribe(topic, rumqttc::QoS::AtLeastOnce).await.expect("subscribe");
        tokio::time::timeout(Duration::from_secs(5), self.subacks.recv()).await.expect("SUBACK in time");
    }

    /// Publishes `payload` to `topic` (QoS 1).
    pub async fn publish(&self, topic: &str, payload: Vec<u8>) {
        self.client.publish(topic, rumqttc::QoS::AtLeastOnce, false, payload).await.expect("publish");
    }

    /// The next message received, within 5 s.
    pub async fn next(&mut self) -> rumqttc::Publish {
        tokio::time::timeout(Duration::from_secs(5), self.incoming.recv())
            .await
            .expect("a message within 5 s")
            .expect("client running")
    }
}
