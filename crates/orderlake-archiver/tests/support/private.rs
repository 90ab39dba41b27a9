//! Services a fault test owns alone, so that stopping, freezing or cutting them off never touches
//! the tests running beside it: an S3 server (moto), a broker that keeps its data across restarts
//! (tansu on SQLite), and a TCP proxy that can refuse connections.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::task::JoinHandle;

use super::{Services, signal};

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_for_port(port: u16, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "{what} did not open port {port}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A moto S3 server of this test's own, with one bucket.
#[derive(Debug)]
pub struct PrivateS3 {
    child: Child,
    pub port: u16,
    pub bucket: String,
}

impl PrivateS3 {
    pub fn start(services: &Services) -> Self {
        let port = free_port();
        let child = Command::new(&services.python)
            .args([
                "-m",
                "moto.server",
                "-H",
                "127.0.0.1",
                "-p",
                &port.to_string(),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        wait_for_port(port, "moto");
        let bucket = "faults".to_owned();
        let made = Command::new(&services.python)
            .args([
                "-c",
                "import sys, boto3; boto3.client('s3', endpoint_url=sys.argv[1], \
                 aws_access_key_id='test', aws_secret_access_key='test', \
                 region_name='us-east-1').create_bucket(Bucket=sys.argv[2])",
                &format!("http://127.0.0.1:{port}"),
                &bucket,
            ])
            .status()
            .unwrap();
        assert!(made.success(), "creating the bucket");
        Self {
            child,
            port,
            bucket,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Services whose S3 is reached at `port` (this server, or a proxy in front of it).
    pub fn services_via(&self, services: &Services, port: u16) -> Services {
        Services {
            s3_endpoint: format!("http://127.0.0.1:{port}"),
            s3_bucket: self.bucket.clone(),
            ..services.clone()
        }
    }
}

impl Drop for PrivateS3 {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-CONT", &self.child.id().to_string()])
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A tansu broker of this test's own, on SQLite, so that it keeps its topics and records when
/// stopped and started again on the same port.
#[derive(Debug)]
pub struct PrivateBroker {
    child: Option<Child>,
    dir: tempfile::TempDir,
    tansu: PathBuf,
    pub port: u16,
}

impl PrivateBroker {
    pub fn start() -> Self {
        let tansu = PathBuf::from(
            std::env::var("ORDERLAKE_TEST_TANSU")
                .expect("ORDERLAKE_TEST_TANSU: run through ./scripts/test.sh"),
        );
        let mut broker = Self {
            child: None,
            dir: tempfile::tempdir().unwrap(),
            tansu,
            port: free_port(),
        };
        broker.up();
        broker
    }

    pub fn brokers(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Starts the broker (again) on its port with its data.
    pub fn up(&mut self) {
        assert!(self.child.is_none(), "already running");
        let url = format!("tcp://127.0.0.1:{}", self.port);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("tansu.log"))
            .unwrap();
        let child = Command::new(&self.tansu)
            .current_dir(self.dir.path())
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
            ])
            .args(["--storage-engine", "sqlite://tansu.db"])
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        wait_for_port(self.port, "tansu");
    }

    /// Stops the broker; its data stays.
    pub fn down(&mut self) {
        if let Some(mut child) = self.child.take() {
            signal(child.id(), "TERM");
            let _ = child.wait();
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("tansu.log")).unwrap_or_default()
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for PrivateBroker {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A TCP proxy on a fixed port: `down` closes the port and cuts every open connection (clients
/// get "connection refused"), `up` opens it again.
#[derive(Debug)]
pub struct Proxy {
    pub port: u16,
    target: SocketAddr,
    tasks: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl Proxy {
    pub async fn start(target_port: u16) -> Self {
        let proxy = Self {
            port: free_port(),
            target: SocketAddr::from(([127, 0, 0, 1], target_port)),
            tasks: Arc::default(),
        };
        proxy.up().await;
        proxy
    }

    pub async fn up(&self) {
        let socket = TcpSocket::new_v4().unwrap();
        socket.set_reuseaddr(true).unwrap();
        socket
            .bind(SocketAddr::from(([127, 0, 0, 1], self.port)))
            .unwrap();
        let listener: TcpListener = socket.listen(64).unwrap();
        let (target, tasks) = (self.target, Arc::clone(&self.tasks));
        let accept = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let conn = tokio::spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                tasks.lock().unwrap().push(conn);
            }
        });
        self.tasks.lock().unwrap().push(accept);
    }

    pub fn down(&self) {
        for t in self.tasks.lock().unwrap().drain(..) {
            t.abort();
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.down();
    }
}
