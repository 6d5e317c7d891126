//! The `mpi` feature: under mpirun the processes find each other through MPI itself (an
//! allgather of addresses, the secret by broadcast), with no rendezvous directory or hostfile.
//! `cargo test --features mpi --test mpi` (CI runs it; it needs Open MPI and libclang).
#![cfg(feature = "mpi")]

mod common;

use std::time::Duration;

use common::{
    assert_same_datasets, one_process_demo, result_datasets, small_demo_args,
    small_demo_output_args, wait_bounded,
};

const SHOTFLOW: &str = env!("CARGO_BIN_EXE_shotflow");
const LIMIT: Duration = Duration::from_secs(240);

#[test]
fn mpirun_with_mpi_bootstrap_equals_one_process() {
    let dir = tempfile::tempdir().unwrap();
    let one = dir.path().join("one.h5");
    let reference = one_process_demo(&one, LIMIT);
    // No rendezvous directory can be used: the processes' TMPDIR is empty and stays so.
    let tmp = dir.path().join("tmp");
    std::fs::create_dir(&tmp).unwrap();
    let mut compared = 0;
    for (processes, workers) in [(2, 1), (3, 2)] {
        let master = dir.path().join(format!("mpi-{processes}.h5"));
        let mut args: Vec<String> = [
            "--allow-run-as-root",
            "--oversubscribe",
            "-x",
            "TMPDIR",
            "-n",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.push(processes.to_string());
        args.push(SHOTFLOW.to_string());
        args.extend(small_demo_output_args(
            &master,
            &["--workers", &workers.to_string()],
        ));
        let child = std::process::Command::new("mpirun")
            .args(&args)
            .env("TMPDIR", &tmp)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("mpirun (Open MPI) is installed by ./run test");
        let out = wait_bounded(child, LIMIT);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(
            json["plan"].as_str().unwrap(),
            format!(
                "{processes} processes × {workers} worker{} (Open MPI, addresses by MPI_Allgather)",
                if workers == 1 { "" } else { "s" }
            )
        );
        compared += assert_same_datasets(
            &result_datasets(&master),
            &reference,
            &format!("under mpirun -n {processes}"),
        );
        let left: Vec<_> = std::fs::read_dir(&tmp).unwrap().collect();
        assert!(left.is_empty(), "something used TMPDIR: {left:?}");
    }
    eprintln!("{compared} datasets equal to one process's under mpirun -n 2 and -n 3");
}

/// Open MPI's variables without mpirun: MPI initialises as a singleton (rank 0 of 1) and the
/// launch is refused with both views named, not hung.
#[test]
fn a_mismatched_launch_is_named() {
    let child = std::process::Command::new(SHOTFLOW)
        .args(small_demo_args())
        .env("OMPI_COMM_WORLD_RANK", "1")
        .env("OMPI_COMM_WORLD_SIZE", "2")
        .env("OMPI_COMM_WORLD_LOCAL_SIZE", "2")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let out = wait_bounded(child, Duration::from_secs(60));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("MPI says rank 0 of 1") && stderr.contains("rank 1 of 2"),
        "{stderr}"
    );
}
