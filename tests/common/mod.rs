//! Test harness: a real Tally server on a loopback port with a temporary DuckDB file, and an
//! HTTP client. Logs show only when TEST_LOG is set.

#![allow(dead_code)]

/// `dec!(1.25)`: a decimal literal read from its source text, never via a float.
#[allow(unused_macros)] // not every test file uses it
macro_rules! dec {
    ($($t:tt)+) => {
        <rust_decimal::Decimal as std::str::FromStr>::from_str(&stringify!($($t)+).replace(['_', ' '], ""))
            .expect("decimal literal")
    };
}

pub mod browser;

use std::io::Write;
use std::sync::Once;

use tally::app::Server;
use tally::config::Config;
use tempfile::TempDir;

pub struct TestServer {
    pub server: Option<Server>,
    pub url: String,
    pub dir: TempDir,
    pub client: reqwest::Client,
    pub key: Option<String>,
}

static LOG: Once = Once::new();

pub fn init_logs() {
    LOG.call_once(|| {
        if std::env::var_os("TEST_LOG").is_some() {
            tally::telemetry::init(tally::config::LogFormat::Text);
        }
    });
}

/// A config for tests: loopback, port 0, a fresh data directory.
pub fn test_config(dir: &TempDir) -> Config {
    let mut config = Config {
        listen: "127.0.0.1:0".into(),
        data_dir: dir.path().to_path_buf(),
        ..Config::default()
    };
    config.storage.memory_limit = "512MB".into();
    config.storage.threads = 2;
    config
}

pub async fn start() -> TestServer {
    start_with(|_| {}).await
}

pub async fn start_with(adjust: impl FnOnce(&mut Config)) -> TestServer {
    init_logs();
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = test_config(&dir);
    adjust(&mut config);
    let key = config.admin_key.clone();
    let server = tally::app::start(config).await.expect("server starts");
    TestServer {
        url: server.url(),
        server: Some(server),
        dir,
        client: reqwest::Client::new(),
        key,
    }
}

impl TestServer {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.url, path)
    }

    fn auth(&self, rb: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.key {
            Some(k) => rb.bearer_auth(k),
            None => rb,
        }
    }

    /// POSTs a JSON value (object or array) to /v1/ingest and returns (status, answer).
    pub async fn ingest_json(&self, body: &serde_json::Value) -> (u16, serde_json::Value) {
        self.ingest_raw("application/json", None, body.to_string().into_bytes(), "")
            .await
    }

    /// POSTs raw bytes to /v1/ingest.
    pub async fn ingest_raw(
        &self,
        content_type: &str,
        encoding: Option<&str>,
        body: Vec<u8>,
        query: &str,
    ) -> (u16, serde_json::Value) {
        let mut rb = self
            .client
            .post(self.url(&format!("/v1/ingest{query}")))
            .header("content-type", content_type)
            .body(body);
        if let Some(e) = encoding {
            rb = rb.header("content-encoding", e);
        }
        let resp = self.auth(rb).send().await.expect("request");
        let status = resp.status().as_u16();
        let text = resp.text().await.expect("body");
        (
            status,
            serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text)),
        )
    }

    pub async fn get(&self, path: &str) -> (u16, serde_json::Value) {
        let (status, text) = self.get_raw(path).await;
        (
            status,
            serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text)),
        )
    }

    async fn get_raw(&self, path: &str) -> (u16, String) {
        let resp = self
            .auth(self.client.get(self.url(path)))
            .send()
            .await
            .expect("request");
        let status = resp.status().as_u16();
        (status, resp.text().await.expect("body"))
    }

    /// GET that must succeed with 200, as text (a page, a CSV).
    pub async fn get_text(&self, path: &str) -> String {
        let (status, body) = self.get_raw(path).await;
        assert_eq!(status, 200, "GET {path} → {status}: {body}");
        body
    }

    /// GET that must succeed with 200.
    pub async fn get_ok(&self, path: &str) -> serde_json::Value {
        let (status, body) = self.get(path).await;
        assert_eq!(status, 200, "GET {path} → {status}: {body}");
        body
    }

    /// The value of one `/metrics` series (`name{labels}` as printed); 0 when it is absent.
    pub async fn metric(&self, series: &str) -> f64 {
        self.get_text("/metrics")
            .await
            .lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or(0.0)
    }

    /// Waits (at most 20 s) until the `/metrics` series is `want`.
    pub async fn metric_until(&self, series: &str, want: f64) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while self.metric(series).await != want {
            assert!(
                std::time::Instant::now() < deadline,
                "{series} never became {want}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    /// Sends an NDJSON write request's headers and half of `body` on a raw connection, and
    /// returns once it holds a write-request slot (`ingest.max_concurrent_requests`); the slot
    /// stays taken until [`HeldSlot::finish`] sends the rest.
    pub async fn hold_write_slot(&self, body: &[u8]) -> HeldSlot {
        use tokio::io::AsyncWriteExt;
        const IN_FLIGHT: &str = "tally_ingest_requests_in_flight";
        let before = self.metric(IN_FLIGHT).await;
        let addr = self.url.trim_start_matches("http://").to_string();
        let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
        let auth = match &self.key {
            Some(k) => format!("authorization: Bearer {k}\r\n"),
            None => String::new(),
        };
        let head = format!(
            "POST /v1/ingest HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/x-ndjson\r\n\
             {auth}content-length: {}\r\nconnection: close\r\n\r\n",
            body.len()
        );
        let (first, rest) = body.split_at(body.len() / 2);
        stream.write_all(head.as_bytes()).await.unwrap();
        stream.write_all(first).await.unwrap();
        self.metric_until(IN_FLIGHT, before + 1.0).await;
        HeldSlot {
            stream,
            rest: rest.to_vec(),
        }
    }

    /// Stops the server and starts it again on the same data, with `admin` as the admin key
    /// and `pricing` (TOML) as the `[pricing]` settings: an operator changing prices.
    pub async fn restart_with_pricing(&mut self, admin: &str, pricing: &str) {
        use figment::providers::{Format, Toml};
        let old = self.server.take().expect("a running server");
        old.shutdown().await.expect("clean shutdown");
        let mut config = test_config(&self.dir);
        config.admin_key = Some(admin.into());
        config.pricing = figment::Figment::from(Toml::string(pricing))
            .extract()
            .expect("pricing TOML");
        let server = tally::app::start(config).await.unwrap();
        self.url = server.url();
        self.server = Some(server);
    }

    pub async fn stop(mut self) -> TempDir {
        if let Some(server) = self.server.take() {
            server.shutdown().await.expect("clean shutdown");
        }
        self.dir
    }
}

/// A write request holding a slot with half its body sent (see
/// [`TestServer::hold_write_slot`]).
pub struct HeldSlot {
    stream: tokio::net::TcpStream,
    rest: Vec<u8>,
}

impl HeldSlot {
    /// Sends the rest of the body and returns the server's raw HTTP answer.
    pub async fn finish(mut self) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        self.stream.write_all(&self.rest).await.unwrap();
        let mut answer = String::new();
        self.stream.read_to_string(&mut answer).await.unwrap();
        answer
    }
}

pub fn ndjson(records: &[serde_json::Value]) -> Vec<u8> {
    let mut out = Vec::new();
    for r in records {
        out.extend_from_slice(r.to_string().as_bytes());
        out.push(b'\n');
    }
    out
}

pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}
