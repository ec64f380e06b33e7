//! The example kernels run on `tiny` and `base` against naive references.

mod common;

use std::collections::BTreeMap;

use common::*;
use tessera_isa::{Engine, Target};

fn targets() -> [Target; 2] {
    [Target::tiny(), Target::base()]
}

#[test]
fn loop_example_scales_and_shifts() {
    let x: Vec<f32> = (0..96).map(|i| i as f32 * 0.5 - 7.0).collect();
    for target in targets() {
        let (result, sim) =
            run(build(&example("loop.s"), &target), &[("x", f32_bytes(&x))]).expect("run");
        let y = bytes_f32(&sim.output("y").expect("y"));
        let want: Vec<f32> = x.iter().map(|v| v * 2.0 + 1.0).collect();
        assert_eq!(y, want, "{}", target.name);
        assert!(result.stats.cycles > 0);
        assert_eq!(result.stats.engines["dma"].instructions, 4 * 2 + 4 * 2);
    }
}

fn check_gemm(
    target: &Target,
    source: &str,
    m: usize,
    k: usize,
    n: usize,
    seed: u64,
) -> tessera_sim::Stats {
    let mut rng = Rng::new(seed);
    let (a_bytes, a) = bf16_data(&rng.floats(m * k, 2.0));
    let (b_bytes, b) = bf16_data(&rng.floats(k * n, 2.0));
    let (result, sim) = run(build(source, target), &[("A", a_bytes), ("B", b_bytes)]).expect("run");
    let c = bytes_f32(&sim.output("C").expect("C"));
    let want = gemm_reference(&a, &b, m, k, n);
    let mismatches = c
        .iter()
        .zip(&want)
        .filter(|(x, y)| x.to_bits() != y.to_bits())
        .count();
    assert_eq!(
        mismatches,
        0,
        "{} of {} elements differ on {}",
        mismatches,
        m * n,
        target.name
    );
    result.stats
}

#[test]
fn gemm_example_is_bit_exact_with_edge_tiles() {
    for target in targets() {
        let stats = check_gemm(&target, &example("gemm.s"), 20, 24, 20, 1);
        assert_eq!(stats.macs, 20 * 24 * 20);
        let peak = target.peak_macs_per_cycle();
        assert!(
            stats.cycles * peak >= stats.macs,
            "faster than the MXU peak"
        );
    }
}

#[test]
fn gemm_example_reparameterized_for_base_tiles() {
    let source = with_params(
        &example("gemm.s"),
        &gemm_params(200, 300, 260, 96, 128, 128),
    );
    let stats = check_gemm(&Target::base(), &source, 200, 300, 260, 2);
    assert_eq!(stats.macs, 200 * 300 * 260);
}

#[test]
fn gemm_example_on_tiny_with_many_tiles() {
    let source = with_params(&example("gemm.s"), &gemm_params(33, 41, 27, 16, 8, 8));
    check_gemm(&Target::tiny(), &source, 33, 41, 27, 3);
}

fn softmax_reference(x: &[f32], cols: usize) -> Vec<f64> {
    x.chunks(cols)
        .flat_map(|row| {
            let max = row
                .iter()
                .fold(f64::NEG_INFINITY, |m, v| m.max(f64::from(*v)));
            let e: Vec<f64> = row.iter().map(|v| (f64::from(*v) - max).exp()).collect();
            let s: f64 = e.iter().sum();
            e.into_iter().map(move |v| v / s)
        })
        .collect()
}

fn max_abs_err(got: &[f32], want: &[f64]) -> f64 {
    assert_eq!(got.len(), want.len());
    got.iter()
        .zip(want)
        .map(|(g, w)| (f64::from(*g) - w).abs())
        .fold(0.0, f64::max)
}

#[test]
fn softmax_example_matches_within_spec_tolerance() {
    let mut rng = Rng::new(11);
    let x = rng.floats(10 * 24, 10.0);
    for target in targets() {
        let (_, sim) = run(
            build(&example("softmax.s"), &target),
            &[("X", f32_bytes(&x))],
        )
        .expect("run");
        let y = bytes_f32(&sim.output("Y").expect("Y"));
        let err = max_abs_err(&y, &softmax_reference(&x, 24));
        assert!(err <= 1e-5, "{}: max abs error {err}", target.name);
    }
}

#[test]
fn layernorm_example_matches_within_spec_tolerance() {
    let source = example("layernorm.s");
    let params: Vec<f64> = source
        .lines()
        .filter_map(|l| l.strip_prefix(".f32 "))
        .flat_map(|l| {
            l.split(',')
                .map(|v| v.trim().parse::<f64>().expect("f32 literal"))
        })
        .collect();
    let (gamma, beta) = params.split_at(20);
    let mut rng = Rng::new(12);
    let x = rng.floats(9 * 20, 10.0);
    let want: Vec<f64> = x
        .chunks(20)
        .flat_map(|row| {
            let mean = row.iter().map(|v| f64::from(*v)).sum::<f64>() / 20.0;
            let var = row
                .iter()
                .map(|v| (f64::from(*v) - mean).powi(2))
                .sum::<f64>()
                / 20.0;
            let inv = 1.0 / (var + 1e-5).sqrt();
            row.iter()
                .enumerate()
                .map(move |(j, v)| (f64::from(*v) - mean) * inv * gamma[j] + beta[j])
                .collect::<Vec<_>>()
        })
        .collect();
    for target in targets() {
        let (_, sim) = run(build(&source, &target), &[("X", f32_bytes(&x))]).expect("run");
        let y = bytes_f32(&sim.output("Y").expect("Y"));
        let err = max_abs_err(&y, &want);
        assert!(err <= 1e-5, "{}: max abs error {err}", target.name);
    }
}

#[test]
fn gather_example_looks_up_rows_with_negative_ids() {
    let ids: Vec<i64> = vec![0, 4, -1, 2, 1, -5];
    let bytes: Vec<u8> = ids.iter().flat_map(|v| v.to_le_bytes()).collect();
    for target in targets() {
        let (_, sim) = run(
            build(&example("gather.s"), &target),
            &[("ids", bytes.clone())],
        )
        .expect("run");
        let y = bytes_f32(&sim.output("Y").expect("Y"));
        let want: Vec<f32> = ids
            .iter()
            .enumerate()
            .flat_map(|(t, &id)| {
                let row = id.rem_euclid(5) as f32;
                (0..4).map(move |d| row * 10.0 + d as f32 + 0.5 * (t + 1) as f32)
            })
            .collect();
        assert_eq!(y, want, "{}", target.name);
    }
}

#[test]
fn results_do_not_depend_on_timing() {
    // The same well-synchronized program under very different timings.
    let mut rng = Rng::new(21);
    let (a, _) = bf16_data(&rng.floats(20 * 24, 2.0));
    let (b, _) = bf16_data(&rng.floats(24 * 20, 2.0));
    let mut outputs = Vec::new();
    for (latency, depth, inflight) in [(32, 8, 4), (1, 1, 1), (500, 3, 2)] {
        let mut target = Target::tiny();
        target.dram_latency_cycles = latency;
        target.dma_queue_depth = depth;
        target.mxu_queue_depth = depth;
        target.vpu_queue_depth = depth;
        target.dma_max_inflight = inflight;
        let (result, sim) = run(
            build(&example("gemm.s"), &target),
            &[("A", a.clone()), ("B", b.clone())],
        )
        .expect("run");
        outputs.push((sim.output("C").expect("C"), result.stats.cycles));
    }
    assert!(
        outputs.windows(2).all(|w| w[0].0 == w[1].0),
        "outputs differ across timings"
    );
    assert!(
        outputs[0].1 != outputs[2].1,
        "the timings should actually differ"
    );
}

#[test]
fn gemm_1024_on_base_respects_the_mxu_bound() {
    let target = Target::base();
    let source = with_params(
        &example("gemm.s"),
        &gemm_params(1024, 1024, 1024, 512, 128, 128),
    );
    let mut rng = Rng::new(9);
    let (a, _) = bf16_data(&rng.floats(1024 * 1024, 1.0));
    let (b, _) = bf16_data(&rng.floats(1024 * 1024, 1.0));
    let (result, sim) = run(build(&source, &target), &[("A", a), ("B", b)]).expect("run");
    let s = result.stats;
    let bound = s.macs / target.peak_macs_per_cycle();
    assert_eq!(s.macs, 1 << 30);
    assert!(
        s.cycles >= bound,
        "{} cycles beat the MXU bound {bound}",
        s.cycles
    );
    assert!(s.mxu_utilization > 0.0 && s.mxu_utilization <= 1.0);
    // DRAM traffic is what the tiling implies: A once per column of tiles,
    // B once per row of tiles, C once.
    assert_eq!(
        s.dram_read_bytes,
        (8 * 1024 * 1024 * 2) + (2 * 1024 * 1024 * 2)
    );
    assert_eq!(s.dram_write_bytes, 1024 * 1024 * 4);
    let c = bytes_f32(&sim.output("C").expect("C"));
    assert!(c.iter().all(|v| v.is_finite()));
}

/// The engine a trace track belongs to, by the track's name.
fn engine_of_track(name: &str) -> Engine {
    match name {
        "SU" => Engine::Su,
        "MXU control" | "MXU weights" | "MXU stream" => Engine::Mxu,
        "VPU" => Engine::Vpu,
        _ if name.starts_with("DMA") => Engine::Dma,
        _ => panic!("unknown track {name}"),
    }
}

#[test]
fn gemm_trace_has_one_slice_per_executed_instruction_named_by_its_disassembly() {
    let mut rng = Rng::new(4);
    let (a, _) = bf16_data(&rng.floats(20 * 24, 1.0));
    let (b, _) = bf16_data(&rng.floats(24 * 20, 1.0));
    let loadable = build(&example("gemm.s"), &Target::tiny());
    let code = loadable.instructions().expect("decode");
    let (result, _) = run(loadable, &[("A", a), ("B", b)]).expect("run");
    let mut bytes = Vec::new();
    result
        .trace
        .expect("trace")
        .write_json(&mut bytes)
        .expect("write");
    let parsed: serde_json::Value = serde_json::from_slice(&bytes).expect("valid JSON");
    let events = parsed["traceEvents"].as_array().expect("events");
    let tracks: BTreeMap<u64, &str> = events
        .iter()
        .filter(|e| e["name"] == "thread_name")
        .map(|e| {
            let tid = e["tid"].as_u64().expect("tid");
            (tid, e["args"]["name"].as_str().expect("name"))
        })
        .collect();
    for track in [
        "SU",
        "DMA control",
        "DMA[0]",
        "MXU weights",
        "MXU stream",
        "VPU",
    ] {
        assert!(
            tracks.values().any(|n| *n == track),
            "no {track} track in {tracks:?}"
        );
    }
    let slices: Vec<&serde_json::Value> = events.iter().filter(|e| e["ph"] == "X").collect();
    let mut per_engine: BTreeMap<Engine, u64> = BTreeMap::new();
    let mut dispatches = 0;
    let mut by_track: BTreeMap<u64, Vec<(f64, f64)>> = BTreeMap::new();
    for slice in &slices {
        let tid = slice["tid"].as_u64().expect("tid");
        let track = tracks[&tid];
        let engine = engine_of_track(track);
        *per_engine.entry(engine).or_default() += 1;
        let pc = slice["args"]["pc"].as_u64().expect("pc") as u32;
        let instr = code[pc as usize];
        assert_eq!(slice["name"], instr.to_asm_at(pc), "{slice}");
        if engine == Engine::Su {
            dispatches += u64::from(instr.engine() != Engine::Su);
        } else {
            assert_eq!(instr.engine(), engine, "{slice} on {track}");
        }
        let ts = slice["ts"].as_f64().expect("ts");
        let dur = slice["dur"].as_f64().expect("dur");
        assert!(dur > 0.0, "{slice}");
        by_track.entry(tid).or_default().push((ts, ts + dur));
    }
    let stats = &result.stats;
    for (engine, name) in [
        (Engine::Su, "su"),
        (Engine::Dma, "dma"),
        (Engine::Mxu, "mxu"),
        (Engine::Vpu, "vpu"),
    ] {
        assert_eq!(
            per_engine.get(&engine).copied().unwrap_or(0),
            stats.engines[name].instructions,
            "slices of {name}"
        );
    }
    // The SU's slices are its scalar instructions and its dispatches.
    assert_eq!(
        dispatches,
        ["dma", "mxu", "vpu"]
            .iter()
            .map(|e| stats.engines[e].instructions)
            .sum::<u64>()
    );
    // Slices on one track never overlap, so viewers draw them side by side.
    for (tid, mut spans) in by_track {
        spans.sort_by(|x, y| x.0.total_cmp(&y.0));
        for pair in spans.windows(2) {
            assert!(
                pair[0].1 <= pair[1].0 + 1e-9,
                "overlap on {}: {pair:?}",
                tracks[&tid]
            );
        }
    }
    let named = |prefix: &str| {
        slices
            .iter()
            .any(|e| e["name"].as_str().is_some_and(|n| n.starts_with(prefix)))
    };
    for prefix in [
        "li ",
        "halt",
        "dma.dim",
        "dma.signal",
        "mxu.signal",
        "vpu.signal",
    ] {
        assert!(named(prefix), "no {prefix} slice");
    }
    // A semaphore wait shows as a slice covering the cycles it waited and
    // its own cycle.
    let clock_mhz = f64::from(Target::tiny().clock_mhz);
    let waits: Vec<_> = slices
        .iter()
        .filter(|e| e["args"]["stall"] == "semaphore")
        .collect();
    assert!(!waits.is_empty());
    for wait in waits {
        assert!(wait["name"].as_str().is_some_and(|n| n.contains(".wait")));
        let waited = wait["args"]["stall_cycles"].as_u64().expect("cycles");
        let cycles = wait["dur"].as_f64().expect("dur") * clock_mhz;
        assert!((cycles - (waited + 1) as f64).abs() < 1e-6, "{wait}");
    }
    assert!(events
        .iter()
        .any(|e| e["ph"] == "C" && e["name"] == "DRAM bandwidth"));
}

#[test]
fn scatter_example_updates_rows_later_duplicate_wins() {
    let ids: Vec<i64> = vec![1, -1, 1];
    let id_bytes: Vec<u8> = ids.iter().flat_map(|v| v.to_le_bytes()).collect();
    let rows: Vec<f32> = (0..12).map(|i| 100.0 + i as f32).collect();
    for target in targets() {
        let (_, sim) = run(
            build(&example("scatter.s"), &target),
            &[("ids", id_bytes.clone()), ("rows", f32_bytes(&rows))],
        )
        .expect("run");
        let cache = bytes_f32(&sim.output("cache").expect("cache"));
        let mut want: Vec<f32> = (0..5)
            .flat_map(|r| (0..4).map(move |d| (r * 10 + d) as f32))
            .collect();
        // Row 1 is written twice; the third row (the later write) wins.
        want[4..8].copy_from_slice(&rows[8..12]);
        // -1 is the last row.
        want[16..20].copy_from_slice(&rows[4..8]);
        assert_eq!(cache, want, "{}", target.name);
    }
}
