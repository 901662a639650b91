//! The real binary as a child process: a SIGKILL right after acknowledgements loses nothing
//! that was acknowledged, and SIGTERM drains, checkpoints and exits 0.

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

struct Child_ {
    child: Child,
    url: String,
}

/// Starts `tally serve` on a free loopback port and waits for its address.
fn spawn(dir: &Path) -> Child_ {
    let mut child = Command::new(env!("CARGO_BIN_EXE_tally"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir)
        .env("TALLY_STORAGE__MEMORY_LIMIT", "512MB")
        .env("RUST_LOG", "warn")
        // The suite runs with TALLY_REQUIRE_BROWSER set; to the server it is an unknown setting.
        .env_remove("TALLY_REQUIRE_BROWSER")
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn tally");
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut sent = false;
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if std::env::var_os("TEST_LOG").is_some() {
                eprintln!("[child] {line}");
            }
            if !sent {
                if let Some(url) = line.strip_prefix("Tally listening on ") {
                    let _ = tx.send(url.trim().to_string());
                    sent = true;
                }
            }
        }
    });
    let url = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("server printed its address");
    Child_ { child, url }
}

fn batch(start: usize, n: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for i in start..start + n {
        out.extend_from_slice(
            json!({"id": format!("k{i}"), "timestamp": "2026-11-01T00:00:00Z", "model": "gpt-4o", "cost": "0.01"})
                .to_string()
                .as_bytes(),
        );
        out.push(b'\n');
    }
    out
}

/// Ids stored in the database file, read directly (the server must be stopped).
fn stored_ids(dir: &Path) -> Vec<String> {
    let conn = duckdb::Connection::open(dir.join("tally.duckdb")).expect("database opens");
    let mut stmt = conn.prepare("SELECT idem_key FROM events").unwrap();
    let rows = stmt.query_map([], |r| r.get::<_, String>(0)).unwrap();
    rows.map(Result::unwrap).collect()
}

fn sigterm(child: &Child) {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

fn wait_exit(child: &mut Child, timeout: Duration) -> std::process::ExitStatus {
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(
            started.elapsed() < timeout,
            "server did not exit within {timeout:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test]
async fn sigkill_after_acknowledgement_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let client = reqwest::Client::new();
    let mut acked: HashSet<String> = HashSet::new();
    let mut next = 0;
    for round in 0..3 {
        let mut server = spawn(dir.path());
        // Several batches, each acknowledged before the next; kill right after the last ack.
        for _ in 0..(3 + round) {
            let body = batch(next, 2000);
            let resp = client
                .post(format!("{}/v1/ingest", server.url))
                .header("content-type", "application/x-ndjson")
                .body(body)
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 200);
            let answer: Value = resp.json().await.unwrap();
            assert_eq!(answer["accepted"], 2000, "{answer}");
            acked.extend((next..next + 2000).map(|i| format!("k{i}")));
            next += 2000;
        }
        server.child.kill().unwrap(); // SIGKILL: no drain, no checkpoint
        server.child.wait().unwrap();
    }
    // The database opens after the kills and every acknowledged event is there exactly once.
    let mut server = spawn(dir.path());
    let total: Value = client
        .get(format!("{}/api/v1/costs", server.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        total["total"]["requests"].as_u64(),
        Some(acked.len() as u64)
    );
    sigterm(&server.child);
    assert!(wait_exit(&mut server.child, Duration::from_secs(60)).success());
    let ids = stored_ids(dir.path());
    let unique: HashSet<String> = ids.iter().cloned().collect();
    assert_eq!(ids.len(), unique.len(), "an event is stored twice");
    assert_eq!(unique, acked);
}

#[tokio::test]
async fn sigterm_drains_checkpoints_and_exits_zero() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = spawn(dir.path());
    let client = reqwest::Client::new();
    let resp = client
        .post(format!("{}/v1/ingest", server.url))
        .header("content-type", "application/x-ndjson")
        .body(batch(0, 5000))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    sigterm(&server.child);
    let status = wait_exit(&mut server.child, Duration::from_secs(60));
    assert!(status.success(), "exit status {status:?}");
    // Checkpointed: the WAL is folded into the file.
    let wal = dir.path().join("tally.duckdb.wal");
    assert!(
        !wal.exists() || std::fs::metadata(&wal).unwrap().len() == 0,
        "WAL left behind"
    );
    assert_eq!(stored_ids(dir.path()).len(), 5000);
}
