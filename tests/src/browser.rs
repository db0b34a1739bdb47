//! A real headless Chromium for the dashboard's tests, driven over WebDriver.
//!
//! [`Browser::start`] runs `chromedriver --port=<free> --allowed-ips=127.0.0.1` as a child
//! (killed when the browser is dropped) and opens one session with headless Chromium. A
//! test keeps one browser for all its steps. [`Browser::screenshot`] saves PNGs under
//! `target/web-screenshots/<test>-<step>.png`, kept as test output.
//!
//! Without `chromedriver` (or Chromium) the start fails, saying what to install.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::json;

/// A chromedriver child and a WebDriver session on it.
pub struct Browser {
    pub client: Client,
    /// The dashboard's base URL (`http://127.0.0.1:PORT`).
    pub base: String,
    test: String,
    driver: tokio::process::Child,
}

fn find_driver() -> PathBuf {
    if let Ok(path) = std::env::var("CHROMEDRIVER") {
        return PathBuf::from(path);
    }
    let candidates = ["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"];
    for candidate in candidates {
        if std::path::Path::new(candidate).exists() {
            return PathBuf::from(candidate);
        }
    }
    panic!(
        "chromedriver not found (looked at $CHROMEDRIVER and {candidates:?}); the browser \
         tests need a headless Chromium: apt-get install chromium chromium-driver"
    );
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free local port");
    listener.local_addr().expect("its address").port()
}

impl Browser {
    /// Starts chromedriver and a headless Chromium session for test `test`, whose pages
    /// live under `base`.
    pub async fn start(test: &str, base: &str) -> Browser {
        let driver_path = find_driver();
        let port = free_port();
        let driver = tokio::process::Command::new(&driver_path)
            .arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start {}: {e}; install it with apt-get install chromium chromium-driver",
                    driver_path.display()
                )
            });
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            json!({
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                         "--disable-dev-shm-usage", "--window-size=1280,900"],
            }),
        );
        let url = format!("http://127.0.0.1:{port}");
        let started = Instant::now();
        let client = loop {
            match ClientBuilder::new(HttpConnector::new())
                .capabilities(caps.clone())
                .connect(&url)
                .await
            {
                Ok(client) => break client,
                Err(e) if started.elapsed() < Duration::from_secs(20) => {
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!(
                    "no WebDriver session from {} within 20 s: {e}; is Chromium installed \
                     (apt-get install chromium chromium-driver)?",
                    driver_path.display()
                ),
            }
        };
        Browser {
            client,
            base: base.trim_end_matches('/').to_owned(),
            test: test.to_owned(),
            driver,
        }
    }

    /// Opens a dashboard path (`/ui/queue`).
    pub async fn open(&self, path: &str) {
        self.client
            .goto(&format!("{}{path}", self.base))
            .await
            .unwrap_or_else(|e| panic!("opening {path}: {e}"));
    }

    /// The current path and query.
    pub async fn path(&self) -> String {
        let url = self.client.current_url().await.expect("the current URL");
        let mut path = url.path().to_owned();
        if let Some(q) = url.query() {
            path.push('?');
            path.push_str(q);
        }
        path
    }

    /// Signs in on the sign-in page by pasting `token`.
    pub async fn sign_in(&self, token: &str) {
        self.open("/ui/login").await;
        let field = self
            .client
            .wait()
            .for_element(Locator::Id("token"))
            .await
            .expect("the token field");
        field.send_keys(token).await.expect("typing the token");
        self.client
            .find(Locator::Css("#login button[type=submit]"))
            .await
            .expect("the sign-in button")
            .click()
            .await
            .expect("clicking sign in");
        self.wait_for_path("/ui/queue").await;
    }

    /// Waits up to 10 s until the current path starts with `prefix`.
    pub async fn wait_for_path(&self, prefix: &str) {
        let started = Instant::now();
        loop {
            let path = self.path().await;
            if path.starts_with(prefix) {
                return;
            }
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "still at {path}, not {prefix}, after 10 s"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The text of the first element matching `css`, or `None` if there is none.
    pub async fn text(&self, css: &str) -> Option<String> {
        match self.client.find(Locator::Css(css)).await {
            Ok(element) => element.text().await.ok(),
            Err(_) => None,
        }
    }

    /// Runs a script and returns its value.
    pub async fn eval(&self, script: &str) -> serde_json::Value {
        self.client
            .execute(script, Vec::new())
            .await
            .unwrap_or_else(|e| panic!("running {script:?}: {e}"))
    }

    /// The page's current DOM as HTML.
    pub async fn source(&self) -> String {
        self.client.source().await.expect("the page source")
    }

    /// Saves a screenshot as `target/web-screenshots/<test>-<step>.png` and prints where.
    pub async fn screenshot(&self, step: &str) -> PathBuf {
        let png = self.client.screenshot().await.expect("a screenshot");
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/web-screenshots");
        std::fs::create_dir_all(&dir).expect("the screenshot directory");
        let path = dir.join(format!("{}-{step}.png", self.test));
        std::fs::write(&path, png).expect("writing the screenshot");
        println!("screenshot: {}", path.display());
        path
    }

    /// Ends the session and chromedriver.
    pub async fn close(mut self) {
        let _ = self.client.clone().close().await;
        let _ = self.driver.kill().await;
    }
}
