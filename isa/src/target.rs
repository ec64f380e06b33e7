//! Hardware parameters of a Tessera NPU: presets, validation and files.
//!
//! A `Target` fixes every parameter the spec leaves open: array and lane
//! counts, memory sizes, bandwidths, latencies and queue depths. The cost
//! model, the compiler and the simulator all read the same struct. It is also
//! a protobuf message, stored in every loadable.

use std::path::Path;

use serde::{Deserialize, Serialize};

/// Every hardware parameter of one NPU configuration.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, prost::Message)]
#[serde(deny_unknown_fields)]
pub struct Target {
    /// Preset or user-given name.
    #[prost(string, tag = "1")]
    pub name: String,
    /// Clock frequency in MHz (converts cycles to seconds).
    #[prost(uint32, tag = "2")]
    pub clock_mhz: u32,
    /// Rows of the systolic array: the reduction depth K of one weight tile.
    #[prost(uint32, tag = "3")]
    pub mxu_k: u32,
    /// Columns of the systolic array: the width N of one weight tile.
    #[prost(uint32, tag = "4")]
    pub mxu_n: u32,
    /// Cycles per streamed row for fp32 inputs (bf16/fp16 take one).
    #[prost(uint32, tag = "5")]
    pub mxu_fp32_passes: u32,
    /// Cycles from the last row entering the array to its results in ACC.
    #[prost(uint32, tag = "6")]
    pub mxu_pipeline_cycles: u32,
    /// fp32 lanes of the vector engine (elements per cycle).
    #[prost(uint32, tag = "7")]
    pub vpu_lanes: u32,
    /// Fixed cycles at the start of every vector instruction.
    #[prost(uint32, tag = "8")]
    pub vpu_startup_cycles: u32,
    /// Cycles per lane-group for the special functions (div, exp, erf, …).
    #[prost(uint32, tag = "9")]
    pub vpu_special_cycles: u32,
    /// Scratchpad size in bytes.
    #[prost(uint64, tag = "10")]
    pub spm_bytes: u64,
    /// Accumulator memory size in bytes.
    #[prost(uint64, tag = "11")]
    pub acc_bytes: u64,
    /// DRAM size in bytes.
    #[prost(uint64, tag = "12")]
    pub dram_bytes: u64,
    /// DRAM bandwidth in bytes per cycle, shared by all DMA transfers.
    #[prost(uint32, tag = "13")]
    pub dram_bytes_per_cycle: u32,
    /// Cycles from a DMA transfer's start to its first DRAM data.
    #[prost(uint32, tag = "14")]
    pub dram_latency_cycles: u32,
    /// DRAM access granularity: each contiguous run is rounded up to it.
    #[prost(uint32, tag = "15")]
    pub dram_burst_bytes: u32,
    /// Bandwidth of SPM-to-SPM DMA copies in bytes per cycle.
    #[prost(uint32, tag = "16")]
    pub onchip_dma_bytes_per_cycle: u32,
    /// DMA transfers that may be in flight at once.
    #[prost(uint32, tag = "17")]
    pub dma_max_inflight: u32,
    /// Depth of the DMA instruction queue.
    #[prost(uint32, tag = "18")]
    pub dma_queue_depth: u32,
    /// Depth of the MXU instruction queue.
    #[prost(uint32, tag = "19")]
    pub mxu_queue_depth: u32,
    /// Depth of the VPU instruction queue.
    #[prost(uint32, tag = "20")]
    pub vpu_queue_depth: u32,
    /// Number of counting semaphores (at most 32).
    #[prost(uint32, tag = "21")]
    pub semaphores: u32,
    /// Extra scalar-unit cycles for a taken branch.
    #[prost(uint32, tag = "22")]
    pub branch_penalty_cycles: u32,
    /// Rows of A streamed per cycle for 8-bit inputs (int8, FP8); 16-bit
    /// inputs stream one row per cycle.
    #[prost(uint32, tag = "23")]
    #[serde(default = "defaults::mxu_8bit_rows_per_cycle")]
    pub mxu_8bit_rows_per_cycle: u32,
    /// Mantissa bits of the MXU's float accumulator (SPEC.md §4.4), 1..=23;
    /// 23 is fp32.
    #[prost(uint32, tag = "24")]
    #[serde(default = "defaults::mxu_acc_mantissa_bits")]
    pub mxu_acc_mantissa_bits: u32,
    /// Products summed in the narrow accumulator before the partial sum is
    /// promoted into fp32 (SPEC.md §4.4); 0 never promotes.
    #[prost(uint32, tag = "25")]
    #[serde(default)]
    pub mxu_promote_interval: u32,
    /// Elements along K (and N for weights) sharing one FP8 block scale.
    #[prost(uint32, tag = "26")]
    #[serde(default = "defaults::mxu_scale_block")]
    pub mxu_scale_block: u32,
    /// FP8 block scales are E8M0 bytes (powers of two) instead of fp32.
    #[prost(bool, tag = "27")]
    #[serde(default)]
    pub mxu_scale_e8m0: bool,
    /// The narrow accumulator truncates (rounds toward zero) instead of
    /// rounding to nearest even (SPEC.md §4.4).
    #[prost(bool, tag = "28")]
    #[serde(default)]
    pub mxu_acc_truncate: bool,
}

/// Values of the parameters a target file written before they existed
/// leaves out.
/// The 8-bit parameters' defaults: of a target file that omits them, and
/// of both presets.
mod defaults {
    pub fn mxu_8bit_rows_per_cycle() -> u32 {
        2
    }
    pub fn mxu_acc_mantissa_bits() -> u32 {
        23
    }
    pub fn mxu_scale_block() -> u32 {
        128
    }
}

/// Why a target description is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    /// No preset has this name.
    #[error("unknown target `{0}` (presets: tiny, base; or a .toml/.json file)")]
    UnknownPreset(String),
    /// A parameter breaks a rule of the spec.
    #[error("target `{target}`: field `{field}`: {reason}")]
    Invalid {
        /// Target name.
        target: String,
        /// Offending field.
        field: &'static str,
        /// Rule broken.
        reason: String,
    },
    /// The file could not be read or parsed.
    #[error("{path}: {reason}")]
    File {
        /// File path as given.
        path: String,
        /// Read or parse error (names the field where the parser can).
        reason: String,
    },
}

impl Target {
    /// Names of the built-in presets.
    pub const PRESETS: [&'static str; 2] = ["tiny", "base"];

    /// The `tiny` preset: an 8x8 array and 16 KiB of SPM, so that small tests
    /// exercise tiling, edge tiles and every synchronization path.
    pub fn tiny() -> Target {
        Target {
            name: "tiny".into(),
            clock_mhz: 1000,
            mxu_k: 8,
            mxu_n: 8,
            mxu_fp32_passes: 4,
            mxu_pipeline_cycles: 16,
            vpu_lanes: 8,
            vpu_startup_cycles: 2,
            vpu_special_cycles: 4,
            spm_bytes: 16 * 1024,
            acc_bytes: 4 * 1024,
            dram_bytes: 256 << 20,
            dram_bytes_per_cycle: 16,
            dram_latency_cycles: 32,
            dram_burst_bytes: 16,
            onchip_dma_bytes_per_cycle: 32,
            dma_max_inflight: 4,
            dma_queue_depth: 8,
            mxu_queue_depth: 8,
            vpu_queue_depth: 8,
            semaphores: 16,
            branch_penalty_cycles: 1,
            mxu_8bit_rows_per_cycle: defaults::mxu_8bit_rows_per_cycle(),
            mxu_acc_mantissa_bits: defaults::mxu_acc_mantissa_bits(),
            mxu_promote_interval: 0,
            mxu_scale_block: defaults::mxu_scale_block(),
            mxu_scale_e8m0: false,
            mxu_acc_truncate: false,
        }
    }

    /// The `base` preset: a 128x128 array at 1 GHz (16 TMAC/s bf16), 8 MiB of
    /// SPM, 2 MiB of ACC and 256 GB/s of DRAM bandwidth.
    pub fn base() -> Target {
        Target {
            name: "base".into(),
            clock_mhz: 1000,
            mxu_k: 128,
            mxu_n: 128,
            mxu_fp32_passes: 4,
            mxu_pipeline_cycles: 256,
            vpu_lanes: 128,
            vpu_startup_cycles: 4,
            vpu_special_cycles: 4,
            spm_bytes: 8 << 20,
            acc_bytes: 2 << 20,
            dram_bytes: 4 << 30,
            dram_bytes_per_cycle: 256,
            dram_latency_cycles: 200,
            dram_burst_bytes: 64,
            onchip_dma_bytes_per_cycle: 512,
            dma_max_inflight: 8,
            dma_queue_depth: 32,
            mxu_queue_depth: 32,
            vpu_queue_depth: 32,
            semaphores: 32,
            branch_penalty_cycles: 2,
            mxu_8bit_rows_per_cycle: defaults::mxu_8bit_rows_per_cycle(),
            mxu_acc_mantissa_bits: defaults::mxu_acc_mantissa_bits(),
            mxu_promote_interval: 0,
            mxu_scale_block: defaults::mxu_scale_block(),
            mxu_scale_e8m0: false,
            mxu_acc_truncate: false,
        }
    }

    /// A preset by name.
    pub fn preset(name: &str) -> Result<Target, TargetError> {
        match name {
            "tiny" => Ok(Target::tiny()),
            "base" => Ok(Target::base()),
            other => Err(TargetError::UnknownPreset(other.to_string())),
        }
    }

    /// A preset name, or a path to a `.toml` or `.json` target file.
    pub fn from_name_or_file(spec: &str) -> Result<Target, TargetError> {
        if Target::PRESETS.contains(&spec) {
            return Target::preset(spec);
        }
        let path = Path::new(spec);
        if spec.ends_with(".toml") || spec.ends_with(".json") || path.exists() {
            return Target::from_file(path);
        }
        Err(TargetError::UnknownPreset(spec.to_string()))
    }

    /// Reads and validates a target from a TOML or JSON file (by extension;
    /// TOML otherwise).
    pub fn from_file(path: &Path) -> Result<Target, TargetError> {
        let file_err = |reason: String| TargetError::File {
            path: path.display().to_string(),
            reason,
        };
        let text = std::fs::read_to_string(path).map_err(|e| file_err(e.to_string()))?;
        let target: Target = if path.extension().is_some_and(|e| e == "json") {
            serde_json::from_str(&text).map_err(|e| file_err(e.to_string()))?
        } else {
            toml::from_str(&text).map_err(|e| file_err(one_line(&e.to_string())))?
        };
        target.validate()?;
        Ok(target)
    }

    /// The target as TOML (the file format `from_file` reads).
    pub fn to_toml(&self) -> String {
        toml::to_string(self).unwrap_or_else(|e| format!("# cannot serialize target: {e}\n"))
    }

    /// Checks every rule the spec puts on the parameters.
    pub fn validate(&self) -> Result<(), TargetError> {
        let bad = |field: &'static str, reason: String| {
            Err(TargetError::Invalid {
                target: self.name.clone(),
                field,
                reason,
            })
        };
        let nonzero: [(&'static str, u64); 21] = [
            (
                "mxu_8bit_rows_per_cycle",
                self.mxu_8bit_rows_per_cycle.into(),
            ),
            ("mxu_acc_mantissa_bits", self.mxu_acc_mantissa_bits.into()),
            ("mxu_scale_block", self.mxu_scale_block.into()),
            ("clock_mhz", self.clock_mhz.into()),
            ("mxu_k", self.mxu_k.into()),
            ("mxu_n", self.mxu_n.into()),
            ("mxu_fp32_passes", self.mxu_fp32_passes.into()),
            ("mxu_pipeline_cycles", self.mxu_pipeline_cycles.into()),
            ("vpu_lanes", self.vpu_lanes.into()),
            ("vpu_special_cycles", self.vpu_special_cycles.into()),
            ("spm_bytes", self.spm_bytes),
            ("acc_bytes", self.acc_bytes),
            ("dram_bytes", self.dram_bytes),
            ("dram_bytes_per_cycle", self.dram_bytes_per_cycle.into()),
            ("dram_burst_bytes", self.dram_burst_bytes.into()),
            (
                "onchip_dma_bytes_per_cycle",
                self.onchip_dma_bytes_per_cycle.into(),
            ),
            ("dma_max_inflight", self.dma_max_inflight.into()),
            ("dma_queue_depth", self.dma_queue_depth.into()),
            ("mxu_queue_depth", self.mxu_queue_depth.into()),
            ("vpu_queue_depth", self.vpu_queue_depth.into()),
            ("semaphores", self.semaphores.into()),
        ];
        for (field, value) in nonzero {
            if value == 0 {
                return bad(field, "must be greater than zero".into());
            }
        }
        if self.name.is_empty() {
            return bad("name", "must not be empty".into());
        }
        let pow2: [(&'static str, u64); 5] = [
            ("mxu_scale_block", self.mxu_scale_block.into()),
            ("mxu_k", self.mxu_k.into()),
            ("mxu_n", self.mxu_n.into()),
            ("vpu_lanes", self.vpu_lanes.into()),
            ("dram_burst_bytes", self.dram_burst_bytes.into()),
        ];
        for (field, value) in pow2 {
            if !value.is_power_of_two() {
                return bad(field, format!("must be a power of two, is {value}"));
            }
        }
        let at_most: [(&'static str, u32, u32); 7] = [
            ("mxu_8bit_rows_per_cycle", self.mxu_8bit_rows_per_cycle, 16),
            ("mxu_acc_mantissa_bits", self.mxu_acc_mantissa_bits, 23),
            ("mxu_scale_block", self.mxu_scale_block, 4096),
            ("mxu_k", self.mxu_k, 4096),
            ("mxu_n", self.mxu_n, 4096),
            ("vpu_lanes", self.vpu_lanes, 4096),
            ("semaphores", self.semaphores, 32),
        ];
        for (field, value, limit) in at_most {
            if value > limit {
                return bad(field, format!("at most {limit}, is {value}"));
            }
        }
        let tile_bytes = u64::from(self.mxu_k) * u64::from(self.mxu_n) * 4;
        if self.spm_bytes < tile_bytes {
            return bad(
                "spm_bytes",
                format!(
                    "{} bytes cannot hold one fp32 MXU weight tile ({}x{}x4 = {tile_bytes})",
                    self.spm_bytes, self.mxu_k, self.mxu_n
                ),
            );
        }
        if self.acc_bytes < tile_bytes {
            return bad(
                "acc_bytes",
                format!(
                    "{} bytes cannot hold one {}x{} fp32 output tile ({tile_bytes})",
                    self.acc_bytes, self.mxu_k, self.mxu_n
                ),
            );
        }
        for (field, value) in [("spm_bytes", self.spm_bytes), ("acc_bytes", self.acc_bytes)] {
            if value % 64 != 0 || value > 1 << 32 {
                return bad(
                    field,
                    format!("must be a multiple of 64 up to 4 GiB, is {value}"),
                );
            }
        }
        if self.dram_bytes % 4096 != 0 || self.dram_bytes > 1 << 40 {
            return bad(
                "dram_bytes",
                format!(
                    "must be a multiple of 4096 up to 1 TiB, is {}",
                    self.dram_bytes
                ),
            );
        }
        for (field, value) in [
            ("dma_queue_depth", self.dma_queue_depth),
            ("mxu_queue_depth", self.mxu_queue_depth),
            ("vpu_queue_depth", self.vpu_queue_depth),
            ("dma_max_inflight", self.dma_max_inflight),
        ] {
            if value > 1024 {
                return bad(field, format!("at most 1024, is {value}"));
            }
        }
        Ok(())
    }

    /// Peak MXU multiply-accumulates per cycle at bf16/fp16.
    pub fn peak_macs_per_cycle(&self) -> u64 {
        u64::from(self.mxu_k) * u64::from(self.mxu_n)
    }

    /// The parameters as `name = value` lines, for `tessera targets`.
    pub fn describe(&self) -> String {
        self.to_toml()
    }

    /// The parameters other than `name` whose values differ, sorted by field
    /// name, as `(field, value in self, value in other)`.
    pub fn differences(&self, other: &Target) -> Vec<(String, String, String)> {
        let fields = |t: &Target| match serde_json::to_value(t) {
            Ok(serde_json::Value::Object(map)) => map,
            // A struct of plain numbers and a string always serializes to an object.
            _ => serde_json::Map::new(),
        };
        let theirs = fields(other);
        let mut differences: Vec<(String, String, String)> = fields(self)
            .into_iter()
            .filter(|(field, _)| field != "name")
            .filter_map(|(field, mine)| {
                let other_value = theirs.get(&field)?;
                (mine != *other_value).then(|| (field, mine.to_string(), other_value.to_string()))
            })
            .collect();
        // The map's order depends on serde_json's features; the output must not.
        differences.sort();
        differences
    }
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_are_valid() {
        for name in Target::PRESETS {
            Target::preset(name)
                .expect("preset")
                .validate()
                .expect("valid");
        }
    }

    #[test]
    fn invalid_parameters_name_the_field() {
        let mut t = Target::tiny();
        t.mxu_k = 6;
        let err = t.validate().expect_err("non power of two").to_string();
        assert!(
            err.contains("mxu_k") && err.contains("power of two"),
            "{err}"
        );
        let mut t = Target::tiny();
        t.spm_bytes = 128;
        let err = t.validate().expect_err("small spm").to_string();
        assert!(err.contains("spm_bytes"), "{err}");
        let mut t = Target::tiny();
        t.dram_bytes_per_cycle = 0;
        let err = t.validate().expect_err("zero").to_string();
        assert!(err.contains("dram_bytes_per_cycle"), "{err}");
    }

    /// `t` with one field set through its TOML form, so tests can name
    /// fields as the spec and target files do.
    fn with(t: &Target, field: &str, value: u64) -> Target {
        let mut table = toml::Table::try_from(t).expect("table");
        let v = i64::try_from(value).expect("value");
        table.insert(field.into(), toml::Value::Integer(v));
        table.try_into().expect("target")
    }

    #[test]
    fn zero_is_allowed_only_for_latencies_startup_and_penalty() {
        let allowed = [
            "vpu_startup_cycles",
            "dram_latency_cycles",
            "branch_penalty_cycles",
            "mxu_promote_interval",
        ];
        let tiny = Target::tiny();
        let table = toml::Table::try_from(&tiny).expect("table");
        let numbers = table.iter().filter(|(_, v)| v.is_integer());
        for field in numbers.map(|(f, _)| f) {
            let result = with(&tiny, field, 0).validate();
            if allowed.contains(&field.as_str()) {
                assert_eq!(result, Ok(()), "{field} = 0");
            } else {
                let err = result.expect_err(field).to_string();
                assert!(err.contains(&format!("`{field}`")), "{field}: {err}");
            }
        }
    }

    #[test]
    fn upper_limits_are_enforced_exactly_as_documented() {
        // (field, largest accepted value, the next value every other rule
        // accepts) as SPEC.md §11 lists them. Memories are 64 MiB so that a
        // 4096-wide array's fp32 tile fits.
        let mut roomy = Target::base();
        roomy.spm_bytes = 64 << 20;
        roomy.acc_bytes = 64 << 20;
        let limits: [(&str, u64, u64); 14] = [
            ("mxu_8bit_rows_per_cycle", 16, 17),
            ("mxu_acc_mantissa_bits", 23, 24),
            ("mxu_scale_block", 4096, 8192),
            ("mxu_k", 4096, 8192),
            ("mxu_n", 4096, 8192),
            ("vpu_lanes", 4096, 8192),
            ("semaphores", 32, 33),
            ("dma_max_inflight", 1024, 1025),
            ("dma_queue_depth", 1024, 1025),
            ("mxu_queue_depth", 1024, 1025),
            ("vpu_queue_depth", 1024, 1025),
            ("spm_bytes", 1 << 32, (1 << 32) + 64),
            ("acc_bytes", 1 << 32, (1 << 32) + 64),
            ("dram_bytes", 1 << 40, (1 << 40) + 4096),
        ];
        for (field, limit, over) in limits {
            assert_eq!(with(&roomy, field, limit).validate(), Ok(()), "{field}");
            let err = with(&roomy, field, over)
                .validate()
                .expect_err(field)
                .to_string();
            assert!(
                err.contains(&format!("`{field}`")) && err.contains(&format!("{over}")),
                "{field}: {err}"
            );
        }
    }

    #[test]
    fn differences_name_each_parameter_but_not_the_name() {
        let tiny = Target::tiny();
        assert!(tiny.differences(&tiny).is_empty());
        let mut other = Target::tiny();
        other.name = "other".into();
        assert!(tiny.differences(&other).is_empty());
        other.spm_bytes = 32768;
        other.vpu_lanes = 16;
        assert_eq!(
            tiny.differences(&other),
            [
                (
                    "spm_bytes".to_string(),
                    "16384".to_string(),
                    "32768".to_string()
                ),
                ("vpu_lanes".to_string(), "8".to_string(), "16".to_string()),
            ]
        );
    }

    #[test]
    fn toml_round_trips() {
        let t = Target::base();
        let back: Target = toml::from_str(&t.to_toml()).expect("parse");
        assert_eq!(back, t);
    }

    #[test]
    fn json_and_toml_files_are_read_and_validated() {
        let dir = std::env::temp_dir().join(format!("tessera-target-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let json = dir.join("t.json");
        let mut t = Target::tiny();
        t.name = "mine".into();
        t.vpu_lanes = 16;
        std::fs::write(&json, serde_json::to_string(&t).expect("json")).expect("write");
        assert_eq!(
            Target::from_name_or_file(json.to_str().expect("path")),
            Ok(t.clone())
        );
        t.mxu_n = 12;
        std::fs::write(&json, serde_json::to_string(&t).expect("json")).expect("write");
        let err = Target::from_file(&json).expect_err("invalid").to_string();
        assert!(
            err.contains("mxu_n") && err.contains("power of two"),
            "{err}"
        );
        let toml_path = dir.join("t.toml");
        std::fs::write(&toml_path, "name = \"x\"\n").expect("write");
        let err = Target::from_file(&toml_path)
            .expect_err("missing")
            .to_string();
        assert!(
            err.contains("t.toml") && err.contains("missing field"),
            "{err}"
        );
    }

    #[test]
    fn unknown_and_missing_fields_are_refused() {
        let mut text = Target::tiny().to_toml();
        text.push_str("mxu_rows = 3\n");
        let err = toml::from_str::<Target>(&text)
            .expect_err("unknown")
            .to_string();
        assert!(err.contains("mxu_rows"), "{err}");
        let text = Target::tiny().to_toml().replace("vpu_lanes = 8\n", "");
        let err = toml::from_str::<Target>(&text)
            .expect_err("missing")
            .to_string();
        assert!(err.contains("vpu_lanes"), "{err}");
    }

    #[test]
    fn files_from_before_the_low_precision_parameters_get_their_defaults() {
        let text: String = Target::base()
            .to_toml()
            .lines()
            .filter(|l| !l.starts_with("mxu_8bit") && !l.contains("_acc_") && !l.contains("scale"))
            .filter(|l| !l.starts_with("mxu_promote") && !l.contains("truncate"))
            .map(|l| format!("{l}\n"))
            .collect();
        assert!(!text.contains("mxu_scale_block"));
        let back: Target = toml::from_str(&text).expect("old file");
        assert_eq!(back, Target::base());
    }
}
