//! What happens to the write-ahead log left by a crash.
//!
//! A clean shutdown checkpoints, so a WAL next to the database on start means the last run
//! ended without one (a kill, a power cut) and DuckDB is about to replay it. Replay is where
//! committed-but-not-checkpointed data can be lost without a word: DuckDB 1.5 silently drops
//! a WAL whose header it does not recognise, and refuses to open at all when an entry's
//! checksum is wrong. Tally therefore (1) copies every WAL it is about to replay into
//! `recovery/` first, so the bytes survive whatever replay does, and (2) refuses to start on a
//! damaged WAL with a message naming the file and the way out, `--discard-damaged-wal`, which
//! moves it into `recovery/` and starts from the last checkpoint. Nothing here decides on its
//! own to lose data.

use std::path::{Path, PathBuf};

use anyhow::Context;

/// Copies of replayed WALs kept in `recovery/`; older ones are deleted.
const KEEP_COPIES: usize = 5;

/// The WAL path DuckDB uses for a database file.
pub fn wal_path(db: &Path) -> PathBuf {
    let mut name = db.as_os_str().to_owned();
    name.push(".wal");
    PathBuf::from(name)
}

fn recovery_dir(db: &Path) -> PathBuf {
    db.parent()
        .unwrap_or_else(|| Path::new("."))
        .join("recovery")
}

/// A file name unique to this moment, sortable by time.
fn stamped(prefix: &str) -> String {
    format!(
        "{prefix}-{}.wal",
        chrono::Utc::now().format("%Y%m%dT%H%M%S%.6fZ")
    )
}

/// Before opening: when a non-empty WAL is waiting to be replayed, keeps a copy of it and
/// returns the copy's path.
pub fn preserve_wal(db: &Path) -> anyhow::Result<Option<PathBuf>> {
    let wal = wal_path(db);
    let size = match std::fs::metadata(&wal) {
        Ok(meta) if meta.len() > 0 => meta.len(),
        _ => return Ok(None),
    };
    let dir = recovery_dir(db);
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let copy = dir.join(stamped("replayed"));
    std::fs::copy(&wal, &copy).with_context(|| {
        format!(
            "cannot copy the write-ahead log {} to {} before replaying it",
            wal.display(),
            copy.display()
        )
    })?;
    tracing::warn!(
        wal = %wal.display(),
        bytes = size,
        copy = %copy.display(),
        "the last run did not shut down cleanly; replaying its write-ahead log (a copy is kept)"
    );
    prune(&dir, "replayed-");
    Ok(Some(copy))
}

/// Whether an open error is DuckDB failing to replay the WAL (as opposed to, say, a lock held
/// by another process).
pub fn is_wal_error(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        let text = cause.to_string();
        text.contains("replaying WAL") || text.contains("Corrupt WAL")
    })
}

/// Moves a damaged WAL into `recovery/` so the database opens from its last checkpoint.
pub fn set_aside(db: &Path) -> anyhow::Result<PathBuf> {
    let wal = wal_path(db);
    let dir = recovery_dir(db);
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let target = dir.join(stamped("damaged"));
    std::fs::rename(&wal, &target)
        .with_context(|| format!("cannot move {} to {}", wal.display(), target.display()))?;
    Ok(target)
}

/// The refusal shown when the WAL cannot be replayed.
pub fn damaged_message(db: &Path, copy: Option<&Path>) -> String {
    let wal = wal_path(db);
    format!(
        "the write-ahead log {wal} is damaged and cannot be replayed. It holds writes committed \
         after the last checkpoint, so Tally will not start and silently drop them.{kept} To \
         start from the last checkpoint instead, run `tally serve --discard-damaged-wal`: the \
         WAL is moved into {dir} (nothing is deleted), and writes in it are missing from the \
         database until re-sent (ingest is idempotent: clients or gateways may replay them).",
        wal = wal.display(),
        kept = copy
            .map(|c| format!(" A copy is at {}.", c.display()))
            .unwrap_or_default(),
        dir = recovery_dir(db).display(),
    )
}

/// Keeps the newest [`KEEP_COPIES`] files of one kind.
fn prune(dir: &Path, prefix: &str) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut names: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(prefix))
        })
        .collect();
    // The timestamp in the name sorts chronologically.
    names.sort();
    let excess = names.len().saturating_sub(KEEP_COPIES);
    for old in names.into_iter().take(excess) {
        if let Err(e) = std::fs::remove_file(&old) {
            tracing::warn!(file = %old.display(), error = %e, "cannot prune an old WAL copy");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_a_waiting_wal_and_keeps_only_the_newest_copies() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("tally.duckdb");
        assert_eq!(preserve_wal(&db).unwrap(), None, "no WAL, nothing to keep");
        std::fs::write(wal_path(&db), b"").unwrap();
        assert_eq!(
            preserve_wal(&db).unwrap(),
            None,
            "an empty WAL holds nothing"
        );
        for i in 0..(KEEP_COPIES + 2) {
            std::fs::write(wal_path(&db), format!("wal {i}")).unwrap();
            let copy = preserve_wal(&db).unwrap().unwrap();
            assert_eq!(std::fs::read_to_string(copy).unwrap(), format!("wal {i}"));
        }
        let mut kept: Vec<String> = std::fs::read_dir(dir.path().join("recovery"))
            .unwrap()
            .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
            .collect();
        kept.sort();
        let expected: Vec<String> = (2..KEEP_COPIES + 2).map(|i| format!("wal {i}")).collect();
        assert_eq!(kept, expected);
    }

    #[test]
    fn recognises_replay_errors_only() {
        let replay = anyhow::anyhow!(
            "IO Error: Failure while replaying WAL file \"x.wal\": Corrupt WAL file: entry"
        )
        .context("cannot open database x");
        assert!(is_wal_error(&replay));
        let lock = anyhow::anyhow!("IO Error: Could not set lock on file").context("cannot open");
        assert!(!is_wal_error(&lock));
    }
}
