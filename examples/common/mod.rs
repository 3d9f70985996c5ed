//! Timing helpers shared by the benchmark examples; their output lines match the PyTorch
//! scripts' (`NAME batch=B median_ms=… min_ms=… max_ms=…`).

use std::time::Instant;

use gs_lora::cli::CliError;

/// Runs `f` `warmup` times, then `reps` times, and prints the median, min and max in ms.
pub fn time(
    name: &str,
    batch: usize,
    (warmup, reps): (usize, usize),
    mut f: impl FnMut() -> Result<(), CliError>,
) -> Result<(), CliError> {
    for _ in 0..warmup {
        f()?;
    }
    let mut ms = Vec::with_capacity(reps);
    for _ in 0..reps {
        let start = Instant::now();
        f()?;
        ms.push(start.elapsed().as_secs_f64() * 1e3);
    }
    ms.sort_by(f64::total_cmp);
    println!(
        "{name} batch={batch} median_ms={:.1} min_ms={:.1} max_ms={:.1}",
        ms[ms.len() / 2],
        ms[0],
        ms[ms.len() - 1]
    );
    Ok(())
}

/// Prints the process's peak resident set in MiB (Linux `VmHWM`), where the OS reports it.
pub fn print_peak_rss() {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kib = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|line| line.split_whitespace().nth(1))
        .and_then(|kib| kib.parse::<f64>().ok());
    if let Some(kib) = kib {
        println!("peak_rss_mib={:.0}", kib / 1024.0);
    }
}

/// `len` standard-normal draws (Box-Muller) from `rng`.
pub fn standard_normal(rng: &mut impl rand::Rng, len: usize) -> Vec<f32> {
    (0..len)
        .map(|_| {
            let (u1, u2): (f64, f64) = (rng.random_range(f64::EPSILON..1.0), rng.random());
            ((-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()) as f32
        })
        .collect()
}
