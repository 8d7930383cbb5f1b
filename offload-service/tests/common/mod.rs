//! Shared by the integration tests: a real server on loopback (in this
//! process, or as its own process) and the ORL faces as requests.

#![allow(dead_code)] // each test binary uses its own subset

pub mod postgres;
pub mod process;
pub mod raw;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use clap::Parser;
use kubevision_offload::{Config, Server};
use kubevision_offload_client::proto::{frame::Content, Frame, RawFaceCrop};
use kubevision_offload_client::{ClientConfig, OffloadClient};
use tokio::sync::oneshot;

/// A threshold no genuine or impostor distance reaches, so that tests of the
/// RPC layer do not depend on the calibrated default.
pub const ACCEPT_ALL: &str = "1e12";

pub fn orl_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/datasets/orl")
}

/// Photo `photo` (1–10) of ORL person `person` (1–40), as the file's bytes.
pub fn orl_bytes(person: u32, photo: u32) -> Vec<u8> {
    let path = orl_dir().join(format!("s{person}/{photo}.pgm"));
    std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (the ORL faces belong in shared/datasets/orl)",
            path.display()
        )
    })
}

/// The same photo as a raw, already-normalised crop (ORL photos are 92 × 112).
pub fn orl_raw(person: u32, photo: u32) -> Frame {
    let image = vision::imageio::decode_gray(&orl_bytes(person, photo)).unwrap();
    Frame {
        content: Some(Content::RawFaceCrop(RawFaceCrop {
            width: image.width(),
            height: image.height(),
            pixels: image.into_raw().into(),
        })),
    }
}

/// The photo as an encoded face crop (the PGM file itself).
pub fn orl_encoded(person: u32, photo: u32) -> Frame {
    Frame {
        content: Some(Content::FaceCropImage(orl_bytes(person, photo).into())),
    }
}

pub fn operator(person: u32) -> String {
    format!("orl-{person:02}")
}

/// `--allow-unauthenticated` for a test server whose `flags` give no
/// credentials (the service refuses to start without either); nothing
/// when they do, so that the credentials are what is tested.
pub fn open_unless_credentials<S: AsRef<str>>(flags: &[S]) -> Option<&'static str> {
    let credential = ["--token", "--identities", "--tls-client-ca"];
    let has = flags
        .iter()
        .any(|f| credential.iter().any(|c| f.as_ref().starts_with(c)));
    (!has).then_some("--allow-unauthenticated")
}

/// A config for loopback: free ports, the given data directory, extra flags
/// (anonymous callers allowed unless they give credentials).
pub fn config(data_dir: &Path, extra: &[&str]) -> Config {
    let mut args = vec![
        "kubevision-offload".to_string(),
        "--listen=127.0.0.1:0".into(),
        "--metrics-listen=127.0.0.1:0".into(),
        format!("--data-dir={}", data_dir.display()),
        format!("--threshold={ACCEPT_ALL}"),
    ];
    args.extend(open_unless_credentials(extra).map(str::to_owned));
    args.extend(extra.iter().map(|s| s.to_string()));
    Config::try_parse_from(args).expect("test flags parse")
}

/// A server running inside the test process.
pub struct InProcess {
    pub grpc: SocketAddr,
    pub metrics: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<Result<(), kubevision_offload::ServerError>>>,
}

impl InProcess {
    pub async fn start(config: Config) -> Self {
        let server = Server::bind(config).await.expect("server starts");
        let (grpc, metrics) = (server.grpc_addr(), server.metrics_addr());
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(server.run(async {
            let _ = stopped.await;
        }));
        Self {
            grpc,
            metrics,
            stop: Some(stop),
            task: Some(task),
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.grpc)
    }

    pub fn client(&self) -> OffloadClient {
        OffloadClient::new(ClientConfig::new(self.url())).unwrap()
    }

    /// Stops the server and waits for it to drain.
    pub async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        self.task.take().unwrap().await.unwrap().unwrap();
    }
}

/// Plain HTTP GET on loopback (for /metrics), without an HTTP client crate.
pub async fn http_get(addr: SocketAddr, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(
            format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    response
}

/// ORL photos are 92 × 112 crops; a kiosk camera sees a face of about 250
/// px in a 640 × 480 frame at sign-in distance. This is the photo, scaled
/// 3×, at the centre of such a frame on mid-grey, PNG-encoded: a camera
/// image on which the detector and dlib's landmarks run (as vision's
/// `orl::sign_in_frame`).
pub fn orl_camera(person: u32, photo: u32) -> Frame {
    use image::imageops::{self, FilterType};
    let face = vision::imageio::decode_gray(&orl_bytes(person, photo)).unwrap();
    let big = imageops::resize(
        &face,
        face.width() * 3,
        face.height() * 3,
        FilterType::Triangle,
    );
    let mut frame = image::GrayImage::from_pixel(640, 480, image::Luma([128]));
    imageops::replace(
        &mut frame,
        &big,
        i64::from((640 - big.width()) / 2),
        i64::from((480 - big.height()) / 2),
    );
    let mut png = Vec::new();
    frame
        .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .unwrap();
    Frame {
        content: Some(Content::CameraImage(png.into())),
    }
}
