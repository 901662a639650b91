//! What `tally load` and `tally bench` share: starting this same binary as a server on a
//! loopback port, stopping it cleanly, and reading its peak memory.
//!
//! Both measure a real `tally serve` process from the outside, over real HTTP, so the numbers
//! include everything a production server does. The server is always started here, on
//! 127.0.0.1 with a fresh key: neither tool may be pointed at another host, where a load
//! generator started by mistake would be an outage. Latencies are durations, not money, so
//! they are floats here.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::Context;

/// A `tally serve` child process; killed if dropped without [`LoopbackServer::stop`].
pub struct LoopbackServer {
    child: Child,
    pub url: String,
}

impl LoopbackServer {
    /// Starts `tally serve` on `data_dir` with `key` as its admin key and `envs` added to its
    /// environment (settings as `TALLY_*` variables, `RUST_LOG`), and waits until it listens.
    /// Its log lines are passed on to stderr, prefixed.
    pub fn start(data_dir: &Path, key: &str, envs: &[(&str, &str)]) -> anyhow::Result<Self> {
        let exe = std::env::current_exe().context("cannot find the tally binary")?;
        let mut cmd = Command::new(exe);
        cmd.args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir)
            .env("TALLY_ADMIN_KEY", key)
            .env("RUST_LOG", "warn")
            .stderr(Stdio::piped());
        for (k, v) in envs {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().context("cannot start tally serve")?;
        let stderr = child.stderr.take().context("no stderr")?;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(url) = line.strip_prefix("Tally listening on ") {
                    let _ = tx.send(url.trim().to_string());
                } else {
                    eprintln!("[server] {line}");
                }
            }
        });
        let url = rx
            .recv_timeout(Duration::from_secs(600))
            .context("the server did not start")?;
        Ok(LoopbackServer { child, url })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Peak resident memory of the server so far (`VmHWM`, Linux).
    pub fn peak_rss_bytes(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).ok()?;
        let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
        let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kb * 1024)
    }

    /// A clean stop: SIGTERM (drain, commit, checkpoint), then wait for the exit.
    pub fn stop(mut self) -> anyhow::Result<()> {
        let status = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .context("cannot run kill")?;
        anyhow::ensure!(status.success(), "kill -TERM failed");
        let exit = self.child.wait().context("waiting for the server")?;
        anyhow::ensure!(exit.success(), "the server exited with {exit}");
        Ok(())
    }
}

impl Drop for LoopbackServer {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The `p`th percentile (0–100) of sorted samples, nearest rank; 0 for no samples.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * (sorted.len() as f64 - 1.0)).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

/// Sorts samples for [`percentile`].
pub fn sorted(mut samples: Vec<f64>) -> Vec<f64> {
    samples.sort_by(f64::total_cmp);
    samples
}
