//! Debian's `docker-registry` (distribution 2.8) on loopback, for the tests that push images:
//! the image crate's push tests and the release tests. A real registry, not a stand-in, so that
//! what it refuses or stores is what a production registry would.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A registry process on a storage directory that outlives a restart ([`Registry::kill`] then
/// [`Registry::run`]); stopped when dropped.
pub struct Registry {
    child: Mutex<Option<Child>>,
    /// `127.0.0.1:PORT`, as an image reference names it.
    pub address: String,
    config: PathBuf,
    dir: tempfile::TempDir,
}

impl Registry {
    /// A registry that lets anyone push.
    pub fn start() -> Registry {
        Registry::start_with_users(&[])
    }

    /// A registry that lets in only `users` (name, password) with HTTP Basic authentication
    /// (an htpasswd file of bcrypt hashes, the only kind it reads); anyone when empty.
    pub fn start_with_users(users: &[(&str, &str)]) -> Registry {
        crate::require("docker-registry", "docker-registry");
        let dir = tempfile::tempdir().expect("a temporary directory");
        let address = format!("127.0.0.1:{}", crate::free_port());
        let config = dir.path().join("config.yml");
        let mut auth = String::new();
        if !users.is_empty() {
            let htpasswd = crate::require("htpasswd", "apache2-utils");
            let mut lines = String::new();
            for (user, password) in users {
                let output = Command::new(&htpasswd)
                    .args(["-nbB", user, password])
                    .output()
                    .expect("htpasswd runs");
                assert!(output.status.success(), "htpasswd failed");
                lines.push_str(String::from_utf8_lossy(&output.stdout).trim());
                lines.push('\n');
            }
            let file = dir.path().join("htpasswd");
            std::fs::write(&file, lines).expect("the htpasswd file is written");
            auth = format!(
                "auth:\n  htpasswd:\n    realm: wikikube-test\n    path: {}\n",
                file.display()
            );
        }
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {}\n\
                 http:\n  addr: {address}\nlog:\n  level: warn\n{auth}",
                dir.path().join("data").display()
            ),
        )
        .expect("the registry's configuration is written");
        let registry = Registry {
            child: Mutex::new(None),
            address,
            config,
            dir,
        };
        registry.run();
        registry
    }

    /// Starts the registry process and waits until it answers HTTP (a registry with
    /// authentication answers 401, which is an answer).
    pub fn run(&self) {
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&self.config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("docker-registry starts");
        *self.child.lock().unwrap_or_else(|e| e.into_inner()) = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while !self.answers() {
            assert!(Instant::now() < deadline, "the registry did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Whether an HTTP request to `/v2/` gets a status line back (a listening socket alone is
    /// not enough: the registry accepts before it serves).
    fn answers(&self) -> bool {
        let Ok(mut stream) = TcpStream::connect(&self.address) else {
            return false;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
        let request = format!(
            "GET /v2/ HTTP/1.0\r\nHost: {}\r\nConnection: close\r\n\r\n",
            self.address
        );
        if stream.write_all(request.as_bytes()).is_err() {
            return false;
        }
        let mut start = [0u8; 12];
        stream.read_exact(&mut start).is_ok() && start.starts_with(b"HTTP/1.")
    }

    /// SIGKILL: no chance to finish what it was writing.
    pub fn kill(&self) {
        if let Some(mut child) = self.child.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Where the registry keeps its blobs and manifests (`docker/registry/v2/...` below it),
    /// for tests that damage what it stores.
    pub fn storage(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The URL of an API path: `url("_catalog")` is `http://ADDRESS/v2/_catalog`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}/v2/{path}", self.address)
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.kill();
    }
}
