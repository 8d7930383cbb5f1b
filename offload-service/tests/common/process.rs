//! The service as its own process on loopback ports, killed when dropped.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use kubevision_offload_client::{ClientConfig, OffloadClient};

use super::ACCEPT_ALL;

pub struct Process {
    pub child: Child,
    pub url: String,
    pub metrics: std::net::SocketAddr,
}

impl Process {
    /// Starts the binary on a free loopback port and waits until it answers.
    pub async fn start(data_dir: &Path, extra: &[&str]) -> Self {
        Self::start_at("127.0.0.1", free_port(), data_dir, extra).await
    }

    /// Starts the binary on `ip:port` (any 127.x.y.z is loopback on Linux:
    /// replicas on one port and several addresses, as pods behind a headless
    /// Service) and waits until it answers.
    pub async fn start_at(ip: &str, port: u16, data_dir: &Path, extra: &[&str]) -> Self {
        let metrics = free_port();
        let child = Command::new(env!("CARGO_BIN_EXE_kubevision-offload"))
            .args([
                format!("--listen={ip}:{port}"),
                format!("--metrics-listen=127.0.0.1:{metrics}"),
            ])
            .arg(format!("--data-dir={}", data_dir.display()))
            .arg(format!("--threshold={ACCEPT_ALL}"))
            .args(super::open_unless_credentials(extra))
            .args(extra)
            .stdout(Stdio::null())
            .stderr(server_log())
            .spawn()
            .expect("the server binary starts");
        let process = Self {
            child,
            url: format!("http://{ip}:{port}"),
            metrics: format!("127.0.0.1:{metrics}").parse().unwrap(),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        // Any answer of the server's own means it is up: a refusal of this
        // anonymous call too, where it was started with credentials (the
        // fairness bench's `--identities`). Only "not listening yet" waits.
        while let Err(e) = process.client().gallery_status().await {
            if matches!(e.code(), Some(code) if code != tonic::Code::Unavailable) {
                break;
            }
            assert!(Instant::now() < deadline, "the server did not come up: {e}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        process
    }

    /// A client that fails fast: no retries, no breaker in the way.
    pub fn client(&self) -> OffloadClient {
        let mut config = ClientConfig::new(self.url.clone());
        config.retry.max_attempts = 1;
        config.breaker.failure_threshold = u32::MAX;
        config.request_timeout = Duration::from_secs(10);
        OffloadClient::new(config).unwrap()
    }

    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success());
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The server's log goes to the test's stderr with KUBEVISION_TEST_LOG=1.
fn server_log() -> Stdio {
    if std::env::var_os("KUBEVISION_TEST_LOG").is_some() {
        Stdio::inherit()
    } else {
        Stdio::null()
    }
}
