//! The `shotflow` command line as a shell user meets it.

use std::process::{Command, Stdio};

const SHOTFLOW: &str = env!("CARGO_BIN_EXE_shotflow");

/// Regression: `shotflow inspect FILE | head -1` panicked on the closed pipe (exit 101). A
/// reader that goes away now ends every printing command quietly.
#[test]
fn a_closed_pipe_ends_printing_commands_quietly() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("r0001");
    let simulated = Command::new(SHOTFLOW)
        .args([
            "simulate",
            run.to_str().unwrap(),
            "--trains",
            "4",
            "--frames",
            "2",
        ])
        .output()
        .unwrap();
    assert!(simulated.status.success(), "{simulated:?}");
    let cases: [&[&str]; 2] = [
        &["inspect", run.to_str().unwrap()],
        &[
            "demo",
            "--source",
            "synthetic",
            "--events",
            "200",
            "--frame",
            "none",
            "--no-output",
        ],
    ];
    for args in cases {
        let mut child = Command::new(SHOTFLOW)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // The reader leaves before the first line: every write meets a closed pipe.
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
}
