//! Where a task ran, as far as its floating-point order depends on it: the CPU and the SIMD
//! width its kernels use, the thread count, the devices, and whether the fused CPU ops ran.
//! A training trajectory moves with any of these, so results from two machines are told apart
//! by this record, not by run names.

use burn::tensor::Device;
use serde::{Deserialize, Serialize};

/// The machine a task ran on (`machine` of each task in `results.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Machine {
    /// The CPU's model name, with its family and model numbers where the system reports them
    /// (Linux's `/proc/cpuinfo`: two AMD EPYC generations share one name), e.g.
    /// `AMD EPYC (family 25, model 17)`; `unknown` elsewhere.
    pub cpu: String,
    /// The widest vector instructions the CPU offers the kernels: `avx512` (F, BW, VL, DQ, CD),
    /// `avx2+fma`, or the architecture's baseline (`x86-64`, `aarch64`, …); `+amx` where Intel
    /// AMX tiles are there too (PyTorch uses them; the kernels here do not).
    pub simd: String,
    /// Threads of the CPU pool.
    pub threads: usize,
    /// The devices the model ran on.
    pub devices: Vec<String>,
    /// Whether the fused CPU ops ran (Flex with `--fused on`).
    pub fused: bool,
    /// The version of gs-lora.
    pub version: String,
}

impl Machine {
    /// This machine, running on `devices`.
    pub fn detect(devices: &[Device]) -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        Self {
            cpu: cpu_name(&cpuinfo),
            simd: simd_level(&cpuinfo),
            threads: rayon::current_num_threads(),
            devices: devices.iter().map(|d| format!("{d:?}")).collect(),
            fused: devices.first().is_some_and(gs_lora_core::fused::available),
            version: env!("CARGO_PKG_VERSION").to_string(),
        }
    }
}

/// The first processor's `model name`, with `cpu family` and `model` when present.
fn cpu_name(cpuinfo: &str) -> String {
    let field = |key: &str| {
        cpuinfo.lines().find_map(|line| {
            let (name, value) = line.split_once(':')?;
            (name.trim() == key).then(|| value.trim().to_string())
        })
    };
    match (field("model name"), field("cpu family"), field("model")) {
        (Some(name), Some(family), Some(model)) => {
            format!("{name} (family {family}, model {model})")
        }
        (Some(name), ..) => name,
        _ => "unknown".into(),
    }
}

/// The widest SIMD level of the CPU, from `/proc/cpuinfo`'s flags where it has them.
fn simd_level(cpuinfo: &str) -> String {
    let flags: Vec<&str> = cpuinfo
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            (name.trim() == "flags").then_some(value)
        })
        .map(|value| value.split_whitespace().collect())
        .unwrap_or_default();
    let has = |flag: &str| flags.contains(&flag);
    let level = if ["avx512f", "avx512bw", "avx512vl", "avx512dq", "avx512cd"]
        .iter()
        .all(|f| has(f))
    {
        "avx512"
    } else if has("avx2") && has("fma") {
        "avx2+fma"
    } else {
        std::env::consts::ARCH
    };
    if has("amx_tile") {
        format!("{level}+amx")
    } else {
        level.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ZEN4: &str = "processor\t: 0\nvendor_id\t: AuthenticAMD\ncpu family\t: 25\n\
        model\t\t: 17\nmodel name\t: AMD EPYC\nflags\t\t: fpu sse2 avx avx2 fma avx512f avx512dq \
        avx512cd avx512bw avx512vl avx512_bf16\nprocessor\t: 1\nmodel name\t: AMD EPYC\n";
    const XEON: &str = "cpu family\t: 6\nmodel\t\t: 143\nmodel name\t: Intel(R) Xeon(R) \
        Platinum 8481C CPU @ 2.70GHz\nflags\t\t: avx2 fma avx512f avx512dq avx512cd avx512bw \
        avx512vl amx_bf16 amx_tile amx_int8\n";
    const ZEN3: &str = "cpu family\t: 25\nmodel\t\t: 1\nmodel name\t: AMD EPYC\nflags\t\t: \
        sse2 avx avx2 fma\n";

    /// The three CPU kinds of this project's machines read as three different records.
    /// Catches a missing family/model (Zen 3 and Zen 4 share a name), AVX-512 reported from
    /// one flag, or AMX lost.
    #[test]
    fn the_cpu_kinds_are_told_apart() {
        assert_eq!(cpu_name(ZEN4), "AMD EPYC (family 25, model 17)");
        assert_eq!(simd_level(ZEN4), "avx512");
        assert_eq!(cpu_name(ZEN3), "AMD EPYC (family 25, model 1)");
        assert_eq!(simd_level(ZEN3), "avx2+fma");
        assert_eq!(
            cpu_name(XEON),
            "Intel(R) Xeon(R) Platinum 8481C CPU @ 2.70GHz (family 6, model 143)"
        );
        assert_eq!(simd_level(XEON), "avx512+amx");
        assert_eq!(cpu_name(""), "unknown");
        assert_eq!(simd_level("flags\t: sse2 avx2"), std::env::consts::ARCH);
    }

    /// The record of this machine names its devices and whether the fused ops ran on them.
    #[test]
    fn the_record_follows_the_devices_and_the_fused_switch() {
        let device = Device::default();
        let machine = Machine::detect(std::slice::from_ref(&device));
        assert_eq!(machine.devices, vec![format!("{device:?}")]);
        assert_eq!(machine.fused, gs_lora_core::fused::available(&device));
        assert!(machine.threads >= 1);
        assert!(!machine.cpu.is_empty() && !machine.simd.is_empty());
    }
}
