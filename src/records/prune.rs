//! Retention of the transcript files: `<dir>/<YYYY-MM-DD>/<user>/<run>.jsonl`, pruned a whole
//! day at a time — days older than the retention, then the oldest days while the directory is
//! over its size bound (never today's) — so the disk holds a bounded window whatever the
//! traffic. Only directories named like a day are touched. Blocking file-system work: callers
//! run it off the async threads. This module must not decide when it runs.

use std::io;
use std::path::Path;

use chrono::{NaiveDate, TimeDelta};

/// What the transcript directory holds after a prune.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DiskUsage {
    /// Bytes of the day directories kept.
    pub bytes: u64,
    /// Day directories kept.
    pub days: usize,
    /// Day directories removed by this prune.
    pub removed_days: usize,
}

/// Removes the day directories of `dir` older than `max_age_days` before `today`, then the
/// oldest while the rest is over `max_bytes` (today's is always kept). A missing `dir` holds
/// nothing.
///
/// # Errors
/// The file system's, when `dir` cannot be read or a day cannot be removed.
pub fn prune_transcripts(
    dir: &Path,
    max_age_days: u32,
    max_bytes: u64,
    today: NaiveDate,
) -> io::Result<DiskUsage> {
    let mut days = match day_dirs(dir) {
        Ok(days) => days,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(DiskUsage::default()),
        Err(error) => return Err(error),
    };
    // Oldest first.
    days.sort_by_key(|(day, _)| *day);
    let oldest_kept = today - TimeDelta::days(i64::from(max_age_days));
    let mut usage = DiskUsage::default();
    let mut kept = Vec::with_capacity(days.len());
    for (day, path) in days {
        if day < oldest_kept {
            std::fs::remove_dir_all(&path)?;
            usage.removed_days += 1;
        } else {
            kept.push((day, size_of(&path)?, path));
        }
    }
    let mut total: u64 = kept.iter().map(|(_, size, _)| size).sum();
    let mut kept = kept.into_iter().peekable();
    while total > max_bytes
        && let Some((day, size, path)) = kept.next_if(|(day, _, _)| *day < today)
    {
        tracing::info!(message = "Transcript files over their size bound; removing the oldest day.", %day, bytes = size);
        std::fs::remove_dir_all(&path)?;
        total -= size;
        usage.removed_days += 1;
    }
    usage.days = kept.count();
    usage.bytes = total;
    Ok(usage)
}

fn day_dirs(dir: &Path) -> io::Result<Vec<(NaiveDate, std::path::PathBuf)>> {
    let mut days = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let day = name.to_str().and_then(|name| NaiveDate::parse_from_str(name, "%Y-%m-%d").ok());
        if let Some(day) = day
            && entry.file_type()?.is_dir()
        {
            days.push((day, entry.path()));
        }
    }
    Ok(days)
}

/// The bytes of the files under `path` (the users' directories of one day).
fn size_of(path: &Path) -> io::Result<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(path)? {
        let entry = entry?;
        let kind = entry.file_type()?;
        total += if kind.is_dir() { size_of(&entry.path())? } else { entry.metadata()?.len() };
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, day: &str, bytes: usize) {
        let user = dir.join(day).join("alice%40example.com");
        std::fs::create_dir_all(&user).unwrap();
        std::fs::write(user.join("run.jsonl"), vec![b'x'; bytes]).unwrap();
    }

    fn date(text: &str) -> NaiveDate {
        NaiveDate::parse_from_str(text, "%Y-%m-%d").unwrap()
    }

    #[test]
    fn days_past_the_age_go_then_the_oldest_while_over_the_size() {
        let dir = tempfile::tempdir().unwrap();
        for (day, bytes) in
            [("2026-10-01", 10), ("2026-11-30", 100), ("2026-12-01", 100), ("2026-12-04", 100)]
        {
            write(dir.path(), day, bytes);
        }
        std::fs::create_dir(dir.path().join("not-a-day")).unwrap();
        let usage = prune_transcripts(dir.path(), 30, 250, date("2026-12-04")).unwrap();
        assert_eq!(usage, DiskUsage { bytes: 200, days: 2, removed_days: 2 });
        assert!(!dir.path().join("2026-10-01").exists(), "older than 30 days");
        assert!(!dir.path().join("2026-11-30").exists(), "the oldest, while over 250 bytes");
        assert!(dir.path().join("not-a-day").exists(), "not ours to remove");
    }

    #[test]
    fn today_is_kept_whatever_its_size_and_a_missing_dir_holds_nothing() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "2026-12-04", 1000);
        let usage = prune_transcripts(dir.path(), 30, 10, date("2026-12-04")).unwrap();
        assert_eq!(usage, DiskUsage { bytes: 1000, days: 1, removed_days: 0 });
        let missing = prune_transcripts(&dir.path().join("none"), 30, 10, date("2026-12-04"));
        assert_eq!(missing.unwrap(), DiskUsage::default());
    }
}
