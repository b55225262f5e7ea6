//! A full disk for the transcript files is not the run's fault: on a full tmpfs every run
//! succeeds (the Redis stream is the record; the file is a copy), each file whose writes failed
//! is noted, and once space returns it is rebuilt whole from its stream — never a partial line.
//! Before, 42 of 50 runs went `dead` although the agent had done the work.

use std::path::{Path, PathBuf};
use std::process::Command;

use agentcron::run::Finish;
use serde_json::Value;

use crate::common::app::spawn_app_with;

/// A small tmpfs, unmounted on drop (a failed test included).
struct Tmpfs(tempfile::TempDir);

impl Tmpfs {
    fn mount(size: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .status()
            .unwrap();
        assert!(mounted.success(), "mounting a tmpfs needs root, as on the CI machine");
        Self(dir)
    }

    fn path(&self) -> &Path {
        self.0.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        Command::new("umount").arg("-l").arg(self.0.path()).status().ok();
    }
}

/// Fills the file system at `dir` with one file; returns it.
fn fill(dir: &Path) -> PathBuf {
    let filler = dir.join("filler");
    let chunk = vec![0_u8; 64 * 1024];
    let mut file = std::fs::File::create(&filler).unwrap();
    while std::io::Write::write_all(&mut file, &chunk).is_ok() {}
    filler
}

#[tokio::test]
async fn a_full_disk_fails_no_run_and_the_files_are_rebuilt_once_space_returns() {
    let disk = Tmpfs::mount("2m");
    let dir = disk.path().join("transcripts");
    std::fs::create_dir_all(&dir).unwrap();
    let app = spawn_app_with(|config| config.transcripts.dir.clone_from(&dir)).await;
    let filler = fill(disk.path());
    let runs: Vec<String> = (0..5).map(|i| format!("r-full-{i}")).collect();
    for (i, run_id) in runs.iter().enumerate() {
        app.create_run(run_id, &format!("full{i}@example.com")).await;
    }
    let finished = futures::future::join_all(runs.iter().map(|run_id| app.execute(run_id))).await;
    for (run_id, finish) in runs.iter().zip(finished) {
        assert!(matches!(finish, Ok(Finish::Succeeded { .. })), "{run_id}: {finish:?}");
    }
    let mut conn = app.conn.clone();
    let keys = &app.ctx.keys;
    let waiting: usize =
        redis::cmd("HLEN").arg(keys.transcript_repairs()).query_async(&mut conn).await.unwrap();
    assert_eq!(waiting, runs.len(), "every file is noted for a rebuild");

    std::fs::remove_file(filler).unwrap();
    let (rebuilt, left) =
        agentcron::records::transcript::repair_pending(&mut conn, keys, 100).await.unwrap();
    assert_eq!((rebuilt, left), (runs.len(), 0));
    for run_id in &runs {
        let stream = app.transcript_lines(run_id).await;
        let files: Vec<PathBuf> =
            walk(&dir).into_iter().filter(|p| p.ends_with(format!("{run_id}.jsonl"))).collect();
        assert_eq!(files.len(), 1, "{run_id}: {files:?}");
        let text = std::fs::read_to_string(&files[0]).unwrap();
        assert!(text.ends_with('\n'), "{run_id}: no partial last line");
        let lines: Vec<Value> =
            text.lines().map(|line| serde_json::from_str(line).unwrap()).collect();
        assert_eq!(lines, stream, "{run_id}: the file equals its stream");
    }
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() { found.extend(walk(&path)) } else { found.push(path) }
    }
    found
}
