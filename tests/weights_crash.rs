//! Saves that crash or race: a child process killed at random moments of its saves (200 times) leaves
//! the old or a new complete file, never a torn one; two writers saving to one path never give a
//! reader a mix of their weights; temporaries left by crashed saves are removed by the next save,
//! those of live saves are not; a failed save names the file it was saving.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use modelc::prelude::*;

model! {
    /// About 260 KB of weights: a save takes a few milliseconds, most of it writing and syncing.
    struct Mid {
        input x: [256];
        output y = Dense(256)(x);
    }
}

/// The seeds the saving child cycles through; every file on disk must be one of these models.
const SEEDS: [u64; 3] = [11, 12, 13];

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("modelc-crash-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The temporaries of saves in `dir` (see `modelc::io::write_atomic_with` for the naming scheme).
fn temporaries(dir: &Path) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.ends_with(".modelc-tmp")))
        .collect();
    found.sort();
    found
}

/// Which of `models` the file at `path` holds; panics if it does not load or matches none.
fn which(path: &Path, models: &[Mid], when: &str) -> usize {
    let mut loaded = Mid::new(0);
    loaded.load(path).unwrap_or_else(|e| panic!("{when}: the file does not load: {e}"));
    models.iter().position(|m| m.params() == loaded.params()).unwrap_or_else(|| panic!("{when}: the file holds a mix of models"))
}

/// The child half of `saves_killed_at_random_moments_leave_a_complete_file`: saves forever.
#[test]
#[ignore = "run by its parent test in a child process"]
fn child_saves_in_a_loop() {
    let Some(path) = std::env::var_os("MODELC_SAVE_LOOP") else { return };
    let models: Vec<Mid> = SEEDS.iter().map(|&s| Mid::new(s)).collect();
    // Tell the parent the saving starts now.
    println!("saving");
    for m in models.iter().cycle() {
        m.save(&path).unwrap();
    }
}

#[test]
fn saves_killed_at_random_moments_leave_a_complete_file() {
    let dir = temp_dir("kill");
    let path = dir.join("mid.safetensors");
    let models: Vec<Mid> = SEEDS.iter().map(|&s| Mid::new(s)).collect();
    models[0].save(&path).unwrap();
    let start = Instant::now();
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    let (mut kills, mut torn_temporaries) = (0, 0);
    while kills < 200 {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "child_saves_in_a_loop", "--ignored", "--nocapture", "--test-threads=1"])
            .env("MODELC_SAVE_LOOP", &path)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Wait for "saving", then kill at a random moment within the next few saves.
        let mut buf = [0u8; 1];
        child.stdout.as_mut().unwrap().read_exact(&mut buf).unwrap();
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        std::thread::sleep(Duration::from_micros(rng % 15_000));
        child.kill().unwrap();
        child.wait().unwrap();
        kills += 1;
        which(&path, &models, &format!("after kill {kills}"));
        torn_temporaries = temporaries(&dir).len();
    }
    eprintln!("{kills} kills in {:.1} s; {torn_temporaries} temporaries left by killed saves", start.elapsed().as_secs_f64());
    // Kills landed inside saves (between creating the temporary and renaming it), not only between them.
    assert!(torn_temporaries >= 20, "only {torn_temporaries} of {kills} kills interrupted a save");

    // Every leftover is a crashed save's: no process holds it. Once old, the next save removes them all.
    for tmp in temporaries(&dir) {
        let f = std::fs::File::options().write(true).open(&tmp).unwrap();
        f.try_lock().unwrap_or_else(|e| panic!("{} is still locked: {e}", tmp.display()));
        f.set_modified(SystemTime::now() - Duration::from_secs(3600)).unwrap();
    }
    models[1].save(&path).unwrap();
    assert_eq!(temporaries(&dir), Vec::<PathBuf>::new());
    assert_eq!(which(&path, &models, "after the cleaning save"), 1);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn two_writers_to_one_path_never_mix_and_the_last_rename_wins() {
    let dir = temp_dir("race");
    let path = dir.join("mid.safetensors");
    let models: Vec<Mid> = SEEDS.iter().take(2).map(|&s| Mid::new(s)).collect();
    models[0].save(&path).unwrap();
    let done = AtomicBool::new(false);
    let seen = std::thread::scope(|s| {
        let writers: Vec<_> = models
            .iter()
            .map(|m| {
                s.spawn(|| {
                    for _ in 0..60 {
                        m.save(&path).unwrap();
                    }
                })
            })
            .collect();
        let reader = s.spawn(|| {
            let mut seen = [0usize; 2];
            let mut reads = 0;
            while !done.load(Ordering::Relaxed) || reads == 0 {
                seen[which(&path, &models, &format!("read {reads}"))] += 1;
                reads += 1;
            }
            seen
        });
        for w in writers {
            w.join().unwrap();
        }
        done.store(true, Ordering::Relaxed);
        reader.join().unwrap()
    });
    eprintln!("the reader saw model A {} times and model B {} times", seen[0], seen[1]);
    which(&path, &models, "at the end");
    assert_eq!(temporaries(&dir), Vec::<PathBuf>::new(), "a save left its temporary behind");
    // Sequential saves: the last one is what the file holds.
    models[1].save(&path).unwrap();
    models[0].save(&path).unwrap();
    assert_eq!(which(&path, &models, "after A's last save"), 0);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn only_old_temporaries_that_no_process_holds_are_removed() {
    let dir = temp_dir("stale");
    let path = dir.join("mid.safetensors");
    let old = SystemTime::now() - Duration::from_secs(3600);
    let make = |name: &str, modified: SystemTime| {
        let f = std::fs::File::create(dir.join(name)).unwrap();
        f.set_modified(modified).unwrap();
        f
    };
    let _crashed = make(".mid.safetensors.4242-1a.modelc-tmp", old);
    let held = make(".mid.safetensors.4243-2b.modelc-tmp", old);
    held.lock().unwrap();
    let _young = make(".mid.safetensors.4244-3c.modelc-tmp", SystemTime::now());
    let _other_file = make(".other.safetensors.4245-4d.modelc-tmp", old);
    let _users = make("mid.safetensors.bak", old);
    Mid::new(1).save(&path).unwrap();
    let mut left: Vec<String> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    left.sort();
    assert_eq!(
        left,
        [
            ".mid.safetensors.4243-2b.modelc-tmp",
            ".mid.safetensors.4244-3c.modelc-tmp",
            ".other.safetensors.4245-4d.modelc-tmp",
            "mid.safetensors",
            "mid.safetensors.bak"
        ],
        "only the crashed save's temporary goes: the held one is a live save's, the young one may be about to be locked"
    );
    held.unlock().unwrap();
    Mid::new(1).save(&path).unwrap();
    assert!(!dir.join(".mid.safetensors.4243-2b.modelc-tmp").exists(), "released and old: removed");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_failed_save_names_the_file_it_was_saving() {
    let dir = temp_dir("fail");
    let path = dir.join("no-such-dir").join("mid.safetensors");
    let err = Mid::new(1).save(&path).unwrap_err().to_string();
    assert!(err.starts_with(&format!("{}: could not create a temporary file in", path.display())), "{err}");
    // Saving over a directory: the rename fails, the error names the target, no temporary is left.
    let target = dir.join("a-directory");
    std::fs::create_dir_all(target.join("inside")).unwrap();
    let err = Mid::new(1).save(&target).unwrap_err().to_string();
    assert!(err.starts_with(&format!("{}: could not rename the temporary file", target.display())), "{err}");
    assert_eq!(temporaries(&dir), Vec::<PathBuf>::new());
    std::fs::remove_dir_all(&dir).unwrap();
}
