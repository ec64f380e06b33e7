//! `tessera generate`: autoregressive decoding on the simulator — a
//! prefill over the prompt, then one decode step per new token, each
//! step's `present` cache fed into the next step's `past` inputs, the
//! next token chosen greedily (argmax of the last position's logits).
//!
//! The model is one decoder graph exported with its KV cache
//! (`use_cache=True`): a token input `[1, seq]`, cache inputs whose
//! length is a second symbolic dimension (`past`), the matching cache
//! outputs and the logits. Tessera compiles for static shapes, so each
//! step is compiled for its own lengths: the prefill with `seq = P,
//! past = 0` (empty caches), decode step `i` (from 1) with `seq = 1,
//! past = P + i − 1`. That is exactly the exported graph at each length (no padding
//! of the cache, no masking the model did not ask for), so every step
//! computes what onnxruntime computes; the cost is one compilation per
//! step, reported apart from the simulated time. A fixed-capacity cache
//! with a position input would compile once, but it is a different
//! export (a static cache) and its attention always spans the whole
//! capacity, which hides the cost curve over the context this command
//! exists to show.
//!
//! An `attention_mask` input gets ones over `past + seq`, a
//! `position_ids` input `past .. past + seq`; any other input is an
//! error naming it.

use std::fmt::Write as _;
use std::io::IsTerminal as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{anyhow, bail, Context as _};
use clap::Args;
use tessera_compiler::frontend::{signature_of_file, Dim, Port};
use tessera_compiler::tensor::{DType, Tensor};
use tessera_sim::Stats;

use super::asm::load_target;
use super::compile::{backend_traced, graph_pipeline_traced, CompileOptions};
use super::output::outln;
use super::run::{print_stats, simulate_on, SimArgs};

/// Arguments of `tessera generate`.
#[derive(Args, Debug)]
pub struct GenerateArgs {
    /// A decoder exported with its KV cache.
    model: PathBuf,
    /// The prompt's token ids, e.g. `--prompt 74,202,48`.
    #[arg(
        long,
        value_name = "IDS",
        value_delimiter = ',',
        allow_negative_numbers = true
    )]
    prompt: Vec<i64>,
    /// A prompt of P seeded random tokens (when `--prompt` is not given).
    #[arg(long, value_name = "P")]
    prompt_len: Option<usize>,
    /// Decode steps after the prefill (each produces one token; the prefill
    /// produces the first). Default: the reference's, else 8.
    #[arg(long, value_name = "N")]
    steps: Option<usize>,
    /// Seed of the random prompt.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// A JSON file `{"prompt": [...], "tokens": [...]}` (onnxruntime's
    /// greedy decode): its prompt is used unless `--prompt` is given, and
    /// the tokens produced must equal its tokens (exit code 1 if not).
    #[arg(long, value_name = "FILE")]
    reference: Option<PathBuf>,
    /// Write the per-step cycle curve as CSV.
    #[arg(long, value_name = "FILE")]
    csv: Option<PathBuf>,
    /// Print the statistics and per-kernel profile of the last step.
    #[arg(long)]
    stats: bool,
    #[command(flatten)]
    options: CompileOptions,
    #[command(flatten)]
    sim: SimArgs,
}

/// Which inputs and outputs of the model play which part.
#[derive(Debug)]
struct Interface {
    /// The token input, `[1, seq]`.
    tokens: Port,
    /// The name of its sequence dimension.
    seq: String,
    /// The name of the cache length dimension.
    past: String,
    /// Cache inputs and, for each, the output that is its next value.
    caches: Vec<(Port, String)>,
    /// An attention mask input (ones over `past + seq`).
    mask: Option<Port>,
    /// A position input (`past .. past + seq`).
    positions: Option<Port>,
    /// The logits output, `[1, seq, vocab]`.
    logits: String,
    /// The vocabulary, when the logits declare it.
    vocab: Option<usize>,
}

impl Interface {
    fn of(model: &Path) -> anyhow::Result<Interface> {
        let sig = signature_of_file(model).map_err(|e| anyhow!("{}: {e}", model.display()))?;
        let here = model.display();
        let integer = |p: &Port| matches!(p.dtype, Some(DType::I64 | DType::I32));
        let tokens = sig
            .inputs
            .iter()
            .find(|p| p.name.contains("input_ids") && integer(p))
            .or_else(|| sig.inputs.iter().find(|p| integer(p) && p.dims.len() == 2))
            .ok_or_else(|| anyhow!("{here}: no token input (`input_ids`, int64 [1, seq])"))?
            .clone();
        let is_float = |p: &Port| p.dtype.is_some_and(DType::is_float);
        let no_cache = || {
            anyhow!(
                "{here}: no KV-cache inputs (float inputs with a symbolic past length): \
                 export the model with use_cache=True and past_key_values as inputs"
            )
        };
        if !sig
            .inputs
            .iter()
            .any(|p| is_float(p) && p.dims.iter().any(|d| matches!(d, Dim::Named(_))))
        {
            return Err(no_cache());
        }
        let seq = match tokens.dims.as_slice() {
            [_, Dim::Named(s)] => s.clone(),
            _ => bail!(
                "{here}: input `{}` has dims {}; generate needs [1, seq] with `seq` symbolic",
                tokens.name,
                dims_text(&tokens.dims)
            ),
        };
        let past_inputs: Vec<&Port> = sig
            .inputs
            .iter()
            .filter(|p| is_float(p) && p.dims.iter().any(|d| named_other(d, &seq)))
            .collect();
        let Some(first) = past_inputs.first() else {
            return Err(no_cache());
        };
        let past = first
            .dims
            .iter()
            .find_map(|d| match d {
                Dim::Named(n) if *n != seq => Some(n.clone()),
                _ => None,
            })
            .unwrap_or_default();
        let logits_port = sig
            .outputs
            .iter()
            .find(|p| p.name == "logits")
            .or_else(|| {
                sig.outputs
                    .iter()
                    .find(|p| p.dims.len() == 3 && is_float(p))
            })
            .ok_or_else(|| anyhow!("{here}: no `logits` output [1, seq, vocab]"))?;
        let logits = logits_port.name.clone();
        let vocab = match logits_port.dims.last() {
            Some(Dim::Fixed(v)) => Some(*v),
            _ => None,
        };
        let free: Vec<&Port> = sig
            .outputs
            .iter()
            .filter(|p| p.name != logits && is_float(p))
            .collect();
        let mut caches = Vec::new();
        for (i, p) in past_inputs.iter().enumerate() {
            let renamed = [("past_key_values", "present"), ("past", "present")]
                .iter()
                .map(|(from, to)| p.name.replacen(from, to, 1))
                .find(|n| free.iter().any(|o| &o.name == n));
            let present = renamed
                .or_else(|| free.get(i).map(|o| o.name.clone()))
                .ok_or_else(|| {
                    anyhow!(
                        "{here}: no output carries the next value of cache input `{}`",
                        p.name
                    )
                })?;
            caches.push(((*p).clone(), present));
        }
        let mut mask = None;
        let mut positions = None;
        for p in &sig.inputs {
            let cache = caches.iter().any(|(c, _)| c.name == p.name);
            if p.name == tokens.name || cache {
                continue;
            }
            if p.name.contains("attention_mask") && integer(p) {
                mask = Some(p.clone());
            } else if p.name.contains("position") && integer(p) {
                positions = Some(p.clone());
            } else {
                bail!(
                    "{here}: input `{}` is neither the tokens, a cache, an attention mask \
                     nor positions: generate does not know what to feed it",
                    p.name
                );
            }
        }
        Ok(Interface {
            tokens,
            seq,
            past,
            caches,
            mask,
            positions,
            logits,
            vocab,
        })
    }

    /// The dims to bind for a step over `seq` new tokens after `past`.
    fn dims(&self, seq: usize, past: usize) -> Vec<(String, usize)> {
        let mut dims = vec![(self.seq.clone(), seq), (self.past.clone(), past)];
        if let Some(Dim::Named(total)) = self.mask.as_ref().and_then(|m| m.dims.last()) {
            if *total != self.seq && *total != self.past {
                dims.push((total.clone(), past + seq));
            }
        }
        dims
    }

    /// The step's inputs other than the caches.
    fn feeds(&self, tokens: &[i64], past: usize) -> Vec<(String, Tensor)> {
        let seq = tokens.len();
        let int = |p: &Port, shape: &[usize], v: Vec<i64>| {
            let dtype = p.dtype.unwrap_or(DType::I64);
            let t = Tensor::from_i64_as(dtype, shape.to_vec(), v).expect("an integer type");
            (p.name.clone(), t)
        };
        let mut feeds = vec![int(&self.tokens, &[1, seq], tokens.to_vec())];
        if let Some(m) = &self.mask {
            feeds.push(int(m, &[1, past + seq], vec![1; past + seq]));
        }
        if let Some(p) = &self.positions {
            let v = (past..past + seq).map(|i| i as i64).collect();
            feeds.push(int(p, &[1, seq], v));
        }
        feeds
    }

    /// Empty caches (length 0) for the prefill.
    fn empty_caches(&self, bound: &[(String, usize)]) -> anyhow::Result<Vec<(String, Tensor)>> {
        self.caches
            .iter()
            .map(|(p, _)| {
                let shape = p
                    .dims
                    .iter()
                    .map(|d| match d {
                        Dim::Fixed(n) => Ok(*n),
                        Dim::Named(n) if *n == self.past => Ok(0),
                        Dim::Named(n) => bound
                            .iter()
                            .find(|(b, _)| b == n)
                            .map(|(_, v)| *v)
                            .ok_or_else(|| {
                                anyhow!("cache input `{}`: bind its dim `{n}` with --dim", p.name)
                            }),
                        Dim::Unknown => bail!("cache input `{}` has an unnamed dimension", p.name),
                    })
                    .collect::<anyhow::Result<Vec<usize>>>()?;
                Ok((p.name.clone(), Tensor::from_f32(&shape, vec![])))
            })
            .collect()
    }
}

/// `[1, seq, 256]`.
fn dims_text(dims: &[Dim]) -> String {
    let parts: Vec<String> = dims
        .iter()
        .map(|d| match d {
            Dim::Fixed(n) => n.to_string(),
            Dim::Named(n) => n.clone(),
            Dim::Unknown => "?".into(),
        })
        .collect();
    format!("[{}]", parts.join(", "))
}

fn named_other(d: &Dim, seq: &str) -> bool {
    matches!(d, Dim::Named(n) if n != seq)
}

/// One simulated step.
struct Step {
    /// Tokens fed.
    fed: usize,
    /// Cache length before it.
    past: usize,
    stats: Stats,
    /// The token it produced.
    token: i64,
    compile_s: f64,
}

/// The reference file's prompt and tokens.
fn read_reference(path: &Path) -> anyhow::Result<(Vec<i64>, Vec<i64>)> {
    let text = std::fs::read_to_string(path).with_context(|| path.display().to_string())?;
    let json: serde_json::Value =
        serde_json::from_str(&text).with_context(|| path.display().to_string())?;
    let ids = |key: &str| -> anyhow::Result<Vec<i64>> {
        json.get(key)
            .and_then(|v| v.as_array())
            .ok_or_else(|| anyhow!("{}: no `{key}` array", path.display()))?
            .iter()
            .map(|v| {
                v.as_i64()
                    .ok_or_else(|| anyhow!("{}: `{key}` holds {v}, not a token id", path.display()))
            })
            .collect()
    };
    Ok((ids("prompt")?, ids("tokens")?))
}

/// The index of the largest value (the first of equal ones), as numpy's
/// argmax; NaN never wins.
fn argmax(values: &[f32]) -> usize {
    let mut best = 0;
    for (i, &v) in values.iter().enumerate() {
        if v > values[best] || values[best].is_nan() && !v.is_nan() {
            best = i;
        }
    }
    best
}

/// A prompt of `len` tokens below `vocab` from `seed` (xorshift).
fn random_prompt(len: usize, vocab: usize, seed: u64) -> Vec<i64> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % vocab.max(1) as u64) as i64
        })
        .collect()
}

pub fn generate(args: GenerateArgs) -> anyhow::Result<ExitCode> {
    let model = &args.model;
    let iface = Interface::of(model)?;
    let target = load_target(&args.options.target)?;
    let reference = args.reference.as_deref().map(read_reference).transpose()?;
    let prompt = if !args.prompt.is_empty() {
        args.prompt.clone()
    } else if let Some((p, _)) = &reference {
        p.clone()
    } else if let Some(len) = args.prompt_len {
        let vocab = iface.vocab.ok_or_else(|| {
            anyhow!(
                "{}: the logits do not declare the vocabulary size; give --prompt IDS",
                model.display()
            )
        })?;
        random_prompt(len, vocab, args.seed)
    } else {
        bail!("give the prompt: --prompt IDS, --prompt-len P or --reference FILE");
    };
    if prompt.is_empty() {
        bail!("the prompt is empty");
    }
    if let Some(len) = args.prompt_len {
        if !args.prompt.is_empty() && len != args.prompt.len() {
            bail!(
                "--prompt has {} tokens but --prompt-len says {len}",
                args.prompt.len()
            );
        }
    }
    let steps = args
        .steps
        .or_else(|| reference.as_ref().map(|(_, t)| t.len().saturating_sub(1)))
        .unwrap_or(8);
    let user_dims = args.options.dims.clone();
    let progress = std::io::stderr().is_terminal();
    let mut runs: Vec<Step> = Vec::new();
    let mut caches: Vec<(String, Tensor)> = Vec::new();
    let mut tokens: Vec<i64> = Vec::new();
    let mut last_stats = None;
    for step in 0..=steps {
        let (fed, past) = if step == 0 {
            (prompt.len(), 0)
        } else {
            (1, prompt.len() + step - 1)
        };
        if progress {
            eprint!("\r{}", progress_bar(step, steps + 1, past));
        }
        let mut options = args.options.clone();
        options.dims = user_dims.clone();
        options.dims.extend(iface.dims(fed, past));
        let started = Instant::now();
        let pipeline = graph_pipeline_traced(model, &options, &target, |_, _, _| Ok(()))?;
        let compiled = backend_traced(
            &pipeline.graph,
            &options,
            &target,
            model,
            Some(&pipeline.provenance),
        )?;
        let compile_s = started.elapsed().as_secs_f64();
        if step == 0 {
            caches = iface.empty_caches(&options.dims)?;
        }
        let fed_tokens: Vec<i64> = if step == 0 {
            prompt.clone()
        } else {
            vec![*tokens.last().expect("the prefill produced a token")]
        };
        let mut inputs = iface.feeds(&fed_tokens, past);
        inputs.append(&mut caches);
        let what = format!("step {step} (seq {fed}, past {past})");
        let (outputs, stats) = simulate_on(
            &compiled.loadable,
            &pipeline.graph,
            &inputs,
            &args.sim,
            model,
            Path::new(&what),
        )?;
        let logits = outputs
            .iter()
            .find(|(n, _)| *n == iface.logits)
            .map(|(_, t)| t)
            .ok_or_else(|| anyhow!("{}: the program has no output `{}`", what, iface.logits))?;
        let vocab = *logits.shape().last().unwrap_or(&1);
        let values = logits.to_f32_vec();
        if vocab == 0 || values.is_empty() {
            bail!("{what}: the logits `{}` are empty", iface.logits);
        }
        let last_row = &values[values.len().saturating_sub(vocab)..];
        let token = argmax(last_row) as i64;
        tokens.push(token);
        for (p, present) in &iface.caches {
            let value = outputs
                .iter()
                .find(|(n, _)| n == present)
                .map(|(_, t)| t.clone())
                .ok_or_else(|| anyhow!("{what}: the program has no output `{present}`"))?;
            caches.push((p.name.clone(), value));
        }
        if args.stats && step == steps {
            last_stats = Some((stats.clone(), compiled.loadable.clone()));
        }
        runs.push(Step {
            fed,
            past,
            stats,
            token,
            compile_s,
        });
    }
    if progress {
        eprintln!("\r{}", progress_bar(steps + 1, steps + 1, 0));
    }
    report(&args, &target, &prompt, &runs)?;
    if let Some((stats, loadable)) = last_stats {
        print_stats(&stats, &loadable)?;
    }
    if let Some(path) = &args.csv {
        write_csv(path, &runs)?;
    }
    if let Some((_, want)) = &reference {
        let n = want.len().min(tokens.len());
        if let Some(i) = (0..n).find(|&i| want[i] != tokens[i]) {
            bail!(
                "token {i} is {} but the reference ({}) has {}",
                tokens[i],
                args.reference.as_ref().expect("reference given").display(),
                want[i]
            );
        }
        outln!(
            "tokens match the reference: {n} of {n} ({})",
            args.reference.as_ref().expect("reference given").display()
        )?;
    }
    Ok(ExitCode::SUCCESS)
}

fn progress_bar(done: usize, total: usize, past: usize) -> String {
    const WIDTH: usize = 30;
    let filled = WIDTH * done / total.max(1);
    format!(
        "[{}{}] {done}/{total} steps{}",
        "#".repeat(filled),
        " ".repeat(WIDTH - filled),
        if done < total {
            format!(" (context {past})  ")
        } else {
            "              ".into()
        }
    )
}

/// TTFT, per-token latency and throughput at the target clock.
fn report(
    args: &GenerateArgs,
    target: &tessera_isa::Target,
    prompt: &[i64],
    runs: &[Step],
) -> anyhow::Result<()> {
    let join =
        |v: &mut dyn Iterator<Item = i64>| v.map(|t| t.to_string()).collect::<Vec<_>>().join(" ");
    outln!(
        "{}: target {} ({} MHz), precision {}",
        args.model.display(),
        target.name,
        target.clock_mhz,
        args.options.precision.name()
    )?;
    outln!(
        "prompt ({} tokens): {}",
        prompt.len(),
        join(&mut prompt.iter().copied())
    )?;
    let prefill = &runs[0];
    outln!(
        "prefill: {} tokens in {} cycles = {:.3} us (time to first token); roofline {} cycles",
        prefill.fed,
        prefill.stats.cycles,
        prefill.stats.time_us,
        prefill.stats.roofline_cycles
    )?;
    let decode = &runs[1..];
    if !decode.is_empty() {
        let cycles: Vec<u64> = decode.iter().map(|s| s.stats.cycles).collect();
        let mean = cycles.iter().sum::<u64>() as f64 / cycles.len() as f64;
        let us = decode.iter().map(|s| s.stats.time_us).sum::<f64>() / decode.len() as f64;
        let roofline = decode.iter().map(|s| s.stats.roofline_cycles).sum::<u64>() as f64
            / decode.len() as f64;
        outln!(
            "decode: {} steps at context {}..{}: {:.0} cycles/token (min {}, max {}) = {:.3} us/token, {:.1} tokens/s; roofline {:.0} cycles/token ({:.2}x)",
            decode.len(),
            decode[0].past,
            decode[decode.len() - 1].past,
            mean,
            cycles.iter().min().unwrap_or(&0),
            cycles.iter().max().unwrap_or(&0),
            us,
            1e6 / us.max(f64::MIN_POSITIVE),
            roofline,
            mean / roofline.max(1.0)
        )?;
    }
    outln!(
        "tokens ({}): {}",
        runs.len(),
        join(&mut runs.iter().map(|s| s.token))
    )?;
    let compile: f64 = runs.iter().map(|s| s.compile_s).sum();
    outln!(
        "compiled {} programs (one per length) in {:.2} s",
        runs.len(),
        compile
    )?;
    Ok(())
}

fn write_csv(path: &Path, runs: &[Step]) -> anyhow::Result<()> {
    let mut text = String::from(
        "step,phase,tokens_in,past,cycles,time_us,roofline_cycles,dram_read_bytes,dram_write_bytes,mxu_utilization,token\n",
    );
    for (i, s) in runs.iter().enumerate() {
        let _ = writeln!(
            text,
            "{i},{},{},{},{},{:.3},{},{},{},{:.4},{}",
            if i == 0 { "prefill" } else { "decode" },
            s.fed,
            s.past,
            s.stats.cycles,
            s.stats.time_us,
            s.stats.roofline_cycles,
            s.stats.dram_read_bytes,
            s.stats.dram_write_bytes,
            s.stats.mxu_utilization,
            s.token
        );
    }
    std::fs::write(path, text).with_context(|| path.display().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argmax_takes_the_first_of_equal_values_and_skips_nan() {
        assert_eq!(argmax(&[1.0, 3.0, 3.0, 2.0]), 1);
        assert_eq!(argmax(&[f32::NAN, -1.0, -2.0]), 1);
        assert_eq!(argmax(&[0.5]), 0);
    }

    #[test]
    fn random_prompts_are_seeded_and_in_range() {
        let a = random_prompt(16, 10, 3);
        assert_eq!(a, random_prompt(16, 10, 3));
        assert_ne!(a, random_prompt(16, 10, 4));
        assert!(a.iter().all(|&t| (0..10).contains(&t)));
    }
}
