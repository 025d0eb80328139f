//! What the CLI tests share: running the built binary, the shared models, scratch files.
#![allow(dead_code)] // each test file uses its own subset
use std::path::PathBuf;
use std::process::{Command, Output};

pub fn millrace(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_millrace"))
        .args(args)
        .output()
        .expect("run millrace")
}

/// `../shared/models` beside the repository; the suite needs it (a missing folder fails).
pub fn models() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/models");
    assert!(
        dir.is_dir(),
        "reference models not found at {} (the test suite needs ../shared beside the repo)",
        dir.display()
    );
    dir
}

/// A path in this test process's scratch folder.
pub fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("millrace-cli-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d.join(name)
}

/// Standard output then standard error, as text.
pub fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}
