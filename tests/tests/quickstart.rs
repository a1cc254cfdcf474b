//! README's quick start, taken from the README's own text, built as a new
//! package outside this workspace and run against a test server: the
//! `cargo new` line, the `[dependencies]` block (its path to a clone of this
//! repository), `src/lib.rs`, `src/bin/worker.rs` and `src/bin/producer.rs`
//! exactly as written. Only the `git clone` is replaced: the clone beside
//! the package is a link to this workspace.
//!
//! The build is offline (every crate is in the registry cache) with this
//! workspace's lock file, in the target directory `ajc/tests/package.rs`
//! also builds generated projects in.

use asyncjobs_tests::NatsServer;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// README's "Quick start" section.
fn quick_start() -> String {
    let readme = std::fs::read_to_string(workspace().join("README.md")).unwrap();
    let start = readme
        .find("\n## Quick start\n")
        .expect("README has a Quick start section");
    let rest = &readme[start + 1..];
    let end = rest[3..].find("\n## ").map_or(rest.len(), |e| e + 3);
    rest[..end].to_string()
}

/// The body of the first fenced block after the first line containing
/// `marker`, and its info string.
fn block_after(section: &str, marker: &str) -> (String, String) {
    let at = section
        .find(marker)
        .unwrap_or_else(|| panic!("the quick start names {marker}"));
    let rest = &section[at..];
    let open = rest.find("\n```").expect("a code block follows") + 4;
    let info_end = open + rest[open..].find('\n').unwrap();
    let info = rest[open..info_end].to_string();
    let body_end = info_end + rest[info_end..].find("\n```").unwrap();
    (info, rest[info_end + 1..body_end + 1].to_string())
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn the_readme_quick_start_builds_and_processes_a_task() {
    let section = quick_start();
    let dir = tempfile::tempdir().unwrap();
    // `git clone … asyncjobs`: this workspace, beside the new package
    std::os::unix::fs::symlink(workspace(), dir.path().join("asyncjobs")).unwrap();

    // the shell block's `cargo new` line, run as written
    let (info, sh) = block_after(&section, "Start from an empty directory");
    assert_eq!(info, "sh");
    let new_line = sh
        .lines()
        .find(|l| l.starts_with("cargo new"))
        .expect("the quick start runs cargo new");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let script = new_line.replacen("cargo", &format!("{cargo:?}"), 1);
    let o = Command::new("sh")
        .args(["-c", &script])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(o.status.success(), "{new_line}: {o:?}");
    let shop = dir.path().join("shop");

    // `[dependencies]` of the toml block in place of cargo new's empty one
    let (info, deps) = block_after(&section, "these dependencies");
    assert_eq!(info, "toml");
    let manifest = std::fs::read_to_string(shop.join("Cargo.toml")).unwrap();
    let manifest = manifest.replace("[dependencies]\n", "");
    std::fs::write(shop.join("Cargo.toml"), format!("{manifest}\n{deps}")).unwrap();
    for (marker, file) in [
        ("**`src/lib.rs`**", "src/lib.rs"),
        ("**`src/bin/worker.rs`**", "src/bin/worker.rs"),
        ("**`src/bin/producer.rs`**", "src/bin/producer.rs"),
    ] {
        let (info, code) = block_after(&section, marker);
        assert!(info.starts_with("rust"), "{marker}: {info}");
        std::fs::write(shop.join(file), code).unwrap();
    }

    std::fs::copy(workspace().join("Cargo.lock"), shop.join("Cargo.lock")).unwrap();
    let target = Path::new(env!("CARGO_TARGET_TMPDIR")).join("package-build");
    let o = Command::new(&cargo)
        .args(["build", "--offline", "--bins"])
        .current_dir(&shop)
        .env("CARGO_TARGET_DIR", &target)
        .env_remove("RUSTFLAGS")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "cargo build of the quick start failed:\n{}",
        String::from_utf8_lossy(&o.stderr)
    );

    let server = NatsServer::start();
    let _worker = Killed(
        Command::new(target.join("debug/worker"))
            .args(["--url", &server.url()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    // the producer waits up to 30 s for the result; it is run again only
    // when it could not enqueue (the worker and it both create the queue)
    let deadline = Instant::now() + Duration::from_secs(90);
    let out = loop {
        let o = Command::new(target.join("debug/producer"))
            .env("NATS_URL", server.url())
            .stdin(Stdio::null())
            .output()
            .unwrap();
        if o.status.success() || Instant::now() > deadline {
            break o;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the producer failed: {}{}",
        stdout,
        String::from_utf8_lossy(&out.stderr)
    );
    // "<id> sent as <<id>@example>"
    let id = stdout.split_whitespace().next().unwrap_or_default();
    assert!(
        !id.is_empty() && stdout.trim() == format!("{id} sent as <{id}@example>"),
        "{stdout}"
    );
}
