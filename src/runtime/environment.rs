//! Rank and size from the environment that a parallel launcher sets.
//!
//! `mpirun` (Open MPI, MPICH/Hydra, anything PMI-based) and SLURM's `srun` start the same
//! program several times and tell each copy who it is through environment variables. Reading
//! them lets `mpirun -n 4 shotflow demo` form one timely cluster without MPI being linked in.

use std::collections::HashMap;

/// What a launcher told this process.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Launcher {
    /// The launcher's name, for messages (`"Open MPI"`, `"PMI"`, `"SLURM"`).
    pub name: &'static str,
    /// This process's rank, `0..size`.
    pub rank: usize,
    /// Number of processes.
    pub size: usize,
    /// Whether every process runs on this host, when the launcher says so.
    pub single_host: Option<bool>,
    /// A string that identifies this launch (job and step), to keep concurrent jobs apart.
    pub job: String,
}

/// Reads the launcher variables from `vars` (normally `std::env::vars()`).
///
/// Returns `Ok(None)` when no launcher is present, and an error when the variables are present
/// but inconsistent (a rank outside the size, a number that does not parse).
///
/// # Examples
///
/// ```
/// use shotflow::runtime::environment::detect;
///
/// let vars = [("OMPI_COMM_WORLD_RANK", "1"), ("OMPI_COMM_WORLD_SIZE", "2"),
///             ("OMPI_COMM_WORLD_LOCAL_SIZE", "2"), ("OMPI_MCA_ess_base_jobid", "77")];
/// let launcher = detect(vars.iter().map(|(k, v)| (k.to_string(), v.to_string())))
///     .unwrap()
///     .unwrap();
/// assert_eq!((launcher.rank, launcher.size, launcher.single_host), (1, 2, Some(true)));
/// ```
pub fn detect(
    vars: impl IntoIterator<Item = (String, String)>,
) -> Result<Option<Launcher>, String> {
    let vars: HashMap<String, String> = vars.into_iter().collect();
    let get = |name: &str| vars.get(name).map(String::as_str);
    let number = |name: &str| -> Result<Option<usize>, String> {
        get(name)
            .map(|v| {
                v.trim()
                    .parse::<usize>()
                    .map_err(|_| format!("environment variable {name}={v:?} is not a number"))
            })
            .transpose()
    };

    let found = if let (Some(rank), Some(size)) = (
        number("OMPI_COMM_WORLD_RANK")?,
        number("OMPI_COMM_WORLD_SIZE")?,
    ) {
        let local = number("OMPI_COMM_WORLD_LOCAL_SIZE")?;
        let job = get("OMPI_MCA_ess_base_jobid")
            .or(get("PMIX_NAMESPACE"))
            .unwrap_or("ompi");
        Some(Launcher {
            name: "Open MPI",
            rank,
            size,
            single_host: local.map(|l| l == size),
            job: job.to_string(),
        })
    } else if let (Some(rank), Some(size)) = (number("PMI_RANK")?, number("PMI_SIZE")?) {
        let local = number("MPI_LOCALNRANKS")?;
        Some(Launcher {
            name: "PMI",
            rank,
            size,
            single_host: local.map(|l| l == size),
            job: get("PMI_KVSNAME").unwrap_or("pmi").to_string(),
        })
    } else if let (Some(rank), Some(size), Some(step)) = (
        number("SLURM_PROCID")?,
        number("SLURM_STEP_NUM_TASKS")?.or(number("SLURM_NTASKS")?),
        get("SLURM_STEP_ID").or(get("SLURM_STEPID")),
    ) {
        // Only inside `srun` (a job step): a batch script alone also has SLURM_PROCID=0.
        let nodes = number("SLURM_STEP_NUM_NODES")?.or(number("SLURM_NNODES")?);
        Some(Launcher {
            name: "SLURM",
            rank,
            size,
            single_host: nodes.map(|n| n == 1),
            job: format!("{}.{}", get("SLURM_JOB_ID").unwrap_or("job"), step),
        })
    } else {
        None
    };

    match found {
        Some(l) if l.size == 0 || l.rank >= l.size => Err(format!(
            "{} says this is rank {} of {}, which is impossible",
            l.name, l.rank, l.size
        )),
        other => Ok(other),
    }
}

/// This host's name, as the other hosts of a cluster reach it.
pub(crate) fn hostname() -> Result<String, String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::env::var("HOSTNAME"))
        .map(|h| h.trim().to_string())
        .map_err(|_| "cannot tell this host's name".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn nothing_set_means_no_launcher() {
        assert_eq!(detect(vars(&[("HOME", "/root")])).unwrap(), None);
    }

    #[test]
    fn slurm_needs_a_job_step() {
        let batch = vars(&[("SLURM_PROCID", "0"), ("SLURM_NTASKS", "4")]);
        assert_eq!(detect(batch).unwrap(), None);
        let step = vars(&[
            ("SLURM_PROCID", "3"),
            ("SLURM_NTASKS", "4"),
            ("SLURM_STEP_ID", "0"),
            ("SLURM_JOB_ID", "123"),
            ("SLURM_STEP_NUM_NODES", "2"),
        ]);
        let l = detect(step).unwrap().unwrap();
        assert_eq!((l.rank, l.size, l.single_host), (3, 4, Some(false)));
        assert_eq!(l.job, "123.0");
    }

    #[test]
    fn pmi_and_bad_values() {
        let l = detect(vars(&[("PMI_RANK", "0"), ("PMI_SIZE", "3")]))
            .unwrap()
            .unwrap();
        assert_eq!((l.name, l.rank, l.size, l.single_host), ("PMI", 0, 3, None));
        assert!(detect(vars(&[("PMI_RANK", "3"), ("PMI_SIZE", "3")])).is_err());
        assert!(detect(vars(&[("PMI_RANK", "x"), ("PMI_SIZE", "3")])).is_err());
    }
}
