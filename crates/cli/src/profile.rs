//! `millrace profile MODEL`: where the time goes, node by node.
//!
//! The model runs `--warmup` times untimed, then `--iters` times with per-node timing. The
//! table shows each node's median time, its share, FLOPs, GFLOP/s, bytes moved, arithmetic
//! intensity (FLOP per byte) and whether it is compute- or memory-bound on this machine:
//! the roofline is `min(peak, intensity x bandwidth)`, with the peak FMA rate and the triad
//! bandwidth measured at start (about half a second) or given with `--peak-gflops` and
//! `--bandwidth-gbs`. "% roof" is the time the roofline allows (`max(flops / peak,
//! bytes / bandwidth)`) over the measured time.
//!
//! `--trace FILE.json` writes a Chrome trace (Trace Event Format; opens in Perfetto or
//! chrome://tracing) and `--svg FILE.svg` a standalone timeline with one lane per thread, of
//! one representative run (the run with the median wall time) or, with `--trace-all`, of
//! every profiled run laid end to end. Both take any events: several lanes, overlapping
//! steps and several stream frames (pid / stroke colour per frame), so streams can reuse
//! [`chrome_trace`] and [`svg_timeline`].
use crate::model_arg::{read_inputs, LoadArgs, Loaded};
use anyhow::{bail, Result};
use clap::{Args, ValueEnum};
use millrace::StepTiming;
use millrace_kernels::peak::{fma_peak, triad_bandwidth, FmaVariant};
use serde_json::{json, Value as Json};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::{Duration, Instant};

#[derive(Args)]
pub struct ProfileArgs {
    #[command(flatten)]
    pub load: LoadArgs,
    /// Inputs (.npz/.npy); default: seeded random inputs.
    #[arg(long, value_name = "IN.npz")]
    pub inputs: Option<PathBuf>,
    /// Seed for random inputs when --inputs is not given.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Untimed runs first.
    #[arg(long, default_value_t = 3)]
    pub warmup: usize,
    /// Profiled runs; the table uses each node's median time.
    #[arg(long, default_value_t = 10)]
    pub iters: usize,
    /// Write a Chrome trace (Trace Event Format JSON; opens in Perfetto).
    #[arg(long, value_name = "FILE.json")]
    pub trace: Option<PathBuf>,
    /// Write an SVG timeline, one lane per thread.
    #[arg(long, value_name = "FILE.svg")]
    pub svg: Option<PathBuf>,
    /// Trace and SVG show every profiled run end to end, not only the median one.
    #[arg(long)]
    pub trace_all: bool,
    /// Order of the node table.
    #[arg(long, value_enum, default_value_t = SortBy::Time)]
    pub sort: SortBy,
    /// Show this many nodes, then one line for the others (0: all).
    #[arg(long, value_name = "N", default_value_t = 30)]
    pub top: usize,
    /// Print only the per-op-type summary, not the node table.
    #[arg(long)]
    pub by_op: bool,
    /// The machine's peak GFLOP/s (default: measured at start).
    #[arg(long, value_name = "X")]
    pub peak_gflops: Option<f64>,
    /// The machine's memory bandwidth in GB/s (default: measured at start).
    #[arg(long, value_name = "Y")]
    pub bandwidth_gbs: Option<f64>,
    /// Print everything as one JSON object.
    #[arg(long)]
    pub json: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum SortBy {
    /// Plan order.
    Step,
    /// Slowest first.
    Time,
}

/// The ceilings a node's speed is compared against.
#[derive(Clone, Copy, Debug)]
pub struct Machine {
    /// Peak fp32 rate, GFLOP/s (all the model's threads).
    pub peak_gflops: f64,
    /// Memory bandwidth, GB/s (1e9 bytes).
    pub bandwidth_gbs: f64,
}

/// What limits a node on the roofline.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bound {
    Compute,
    Memory,
}

impl Bound {
    fn name(self) -> &'static str {
        match self {
            Bound::Compute => "compute",
            Bound::Memory => "memory",
        }
    }
}

impl Machine {
    /// FLOP per byte at which the roofline turns from memory- to compute-bound.
    pub fn balance(&self) -> f64 {
        if self.bandwidth_gbs > 0.0 {
            self.peak_gflops / self.bandwidth_gbs
        } else {
            f64::INFINITY
        }
    }

    /// Compute- or memory-bound for this work; `None` when it does nothing measurable.
    pub fn bound(&self, flops: u64, bytes: u64) -> Option<Bound> {
        match (flops, bytes) {
            (0, 0) => None,
            (_, 0) => Some(Bound::Compute),
            (f, b) if f as f64 / b as f64 >= self.balance() => Some(Bound::Compute),
            _ => Some(Bound::Memory),
        }
    }

    /// The roofline's GFLOP/s at `intensity` FLOP/B: `min(peak, intensity x bandwidth)`.
    pub fn roofline_gflops(&self, intensity: f64) -> f64 {
        self.peak_gflops.min(intensity * self.bandwidth_gbs)
    }

    /// The least time (ms) the roofline allows for this work.
    pub fn min_ms(&self, flops: u64, bytes: u64) -> f64 {
        let c = if self.peak_gflops > 0.0 {
            flops as f64 / (self.peak_gflops * 1e6)
        } else {
            0.0
        };
        let m = if self.bandwidth_gbs > 0.0 {
            bytes as f64 / (self.bandwidth_gbs * 1e6)
        } else {
            0.0
        };
        c.max(m)
    }
}

/// One node of the table: its median time over the profiled runs and its work.
#[derive(Clone, Debug)]
pub struct NodeRow {
    pub step: usize,
    pub node: String,
    pub op: &'static str,
    pub ms: f64,
    pub flops: u64,
    pub bytes: u64,
}

impl NodeRow {
    fn gflops(&self) -> f64 {
        gflops(self.flops, self.ms)
    }
    fn intensity(&self) -> f64 {
        if self.bytes > 0 {
            self.flops as f64 / self.bytes as f64
        } else {
            0.0
        }
    }
}

/// GFLOP/s of `flops` done in `ms` milliseconds (0 when either is 0).
fn gflops(flops: u64, ms: f64) -> f64 {
    if ms > 0.0 {
        flops as f64 / (ms * 1e6)
    } else {
        0.0
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn median(v: &mut [f64]) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// One row per (frame, step) over all runs, with the median time; in plan order.
pub fn node_rows(runs: &[Vec<StepTiming>]) -> Vec<NodeRow> {
    let mut acc: BTreeMap<(usize, usize), (NodeRow, Vec<f64>)> = BTreeMap::new();
    for run in runs {
        for e in run {
            let (_, times) = acc.entry((e.step, e.frame)).or_insert_with(|| {
                (
                    NodeRow {
                        step: e.step,
                        node: e.node.clone(),
                        op: e.op,
                        ms: 0.0,
                        flops: e.cost.flops,
                        bytes: e.cost.bytes_read + e.cost.bytes_written,
                    },
                    Vec::with_capacity(runs.len()),
                )
            });
            times.push(ms(e.time));
        }
    }
    acc.into_values()
        .map(|(mut r, mut t)| {
            r.ms = median(&mut t);
            r
        })
        .collect()
}

/// Per op type: nodes, summed median time, FLOPs and bytes; slowest first.
pub struct OpRow {
    pub op: &'static str,
    pub count: usize,
    pub ms: f64,
    pub flops: u64,
    pub bytes: u64,
}

pub fn op_rows(nodes: &[NodeRow]) -> Vec<OpRow> {
    let mut m: HashMap<&'static str, OpRow> = HashMap::new();
    for n in nodes {
        let r = m.entry(n.op).or_insert(OpRow {
            op: n.op,
            count: 0,
            ms: 0.0,
            flops: 0,
            bytes: 0,
        });
        r.count += 1;
        r.ms += n.ms;
        r.flops += n.flops;
        r.bytes += n.bytes;
    }
    let mut rows: Vec<OpRow> = m.into_values().collect();
    rows.sort_by(|a, b| b.ms.total_cmp(&a.ms).then(a.op.cmp(b.op)));
    rows
}

/// When the last event of a run ends, from the run's start.
pub fn makespan(events: &[StepTiming]) -> Duration {
    events
        .iter()
        .map(|e| e.start + e.time)
        .max()
        .unwrap_or_default()
}

/// Runs laid end to end: each run's events shifted past the end of the one before.
pub fn end_to_end(runs: &[Vec<StepTiming>]) -> Vec<StepTiming> {
    let mut out = Vec::new();
    let mut offset = Duration::ZERO;
    for run in runs {
        out.extend(run.iter().map(|e| StepTiming {
            start: e.start + offset,
            ..e.clone()
        }));
        offset += makespan(run);
    }
    out
}

/// Distinct lanes (thread values), in order.
fn lanes(events: &[StepTiming]) -> Vec<usize> {
    events
        .iter()
        .map(|e| e.thread)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect()
}

/// What the trace says about itself.
pub struct TraceMeta<'a> {
    /// Process name (the model); frames get "frame N" after it when there are several.
    pub name: &'a str,
    /// Anything else to keep in `otherData` (threads, schedule, machine).
    pub other: Json,
}

/// A Chrome trace (Trace Event Format, JSON object form): one complete event per step
/// (`ph: X`, microseconds, pid = frame, tid = lane), with thread and process names.
pub fn chrome_trace(events: &[StepTiming], meta: &TraceMeta<'_>) -> Json {
    let frames: BTreeSet<usize> = events.iter().map(|e| e.frame).collect();
    let mut out = Vec::with_capacity(events.len() + 8);
    for &f in &frames {
        let name = if frames.len() > 1 {
            format!("{} frame {f}", meta.name)
        } else {
            meta.name.to_string()
        };
        out.push(
            json!({"ph": "M", "name": "process_name", "pid": f, "tid": 0,
                        "args": {"name": name}}),
        );
        out.push(
            json!({"ph": "M", "name": "process_sort_index", "pid": f, "tid": 0,
                        "args": {"sort_index": f}}),
        );
        let lanes: BTreeSet<usize> = events
            .iter()
            .filter(|e| e.frame == f)
            .map(|e| e.thread)
            .collect();
        for t in lanes {
            out.push(json!({"ph": "M", "name": "thread_name", "pid": f, "tid": t,
                            "args": {"name": format!("thread {t}")}}));
            out.push(
                json!({"ph": "M", "name": "thread_sort_index", "pid": f, "tid": t,
                            "args": {"sort_index": t}}),
            );
        }
    }
    for e in events {
        let bytes = e.cost.bytes_read + e.cost.bytes_written;
        out.push(json!({
            "ph": "X",
            "name": e.node,
            "cat": e.op,
            "ts": e.start.as_secs_f64() * 1e6,
            "dur": e.time.as_secs_f64() * 1e6,
            "pid": e.frame,
            "tid": e.thread,
            "args": {
                "op": e.op,
                "step": e.step,
                "frame": e.frame,
                "flops": e.cost.flops,
                "bytes": bytes,
                "gflops_per_s": gflops(e.cost.flops, ms(e.time)),
            },
        }));
    }
    json!({"traceEvents": out, "displayTimeUnit": "ms", "otherData": meta.other})
}

/// How the SVG timeline is drawn.
pub struct SvgOptions<'a> {
    /// Total width in pixels.
    pub width: f64,
    pub title: &'a str,
    /// Vertical marker lines with a label (e.g. where each run starts), from the run start.
    pub marks: &'a [(Duration, String)],
}

/// Colours for the common op types; others get one from the hash of their name.
const OP_COLORS: &[(&str, &str)] = &[
    ("Conv", "#4e79a7"),
    ("FusedConv", "#2f5f8f"),
    ("MatMul", "#e15759"),
    ("FusedMatMul", "#b8393b"),
    ("Gemm", "#f28e2b"),
    ("Relu", "#59a14f"),
    ("Clip", "#8cd17d"),
    ("Add", "#edc948"),
    ("Mul", "#b07aa1"),
    ("MaxPool", "#76b7b2"),
    ("AveragePool", "#499894"),
    ("GlobalAveragePool", "#d7b5a6"),
    ("Concat", "#ff9da7"),
    ("Reshape", "#9c755f"),
    ("Flatten", "#bab0ac"),
    ("Transpose", "#d37295"),
    ("Softmax", "#fabfd2"),
    ("LayerNormalization", "#a0cbe8"),
    ("Gelu", "#ffbe7d"),
    ("BatchNormalization", "#f1ce63"),
    ("Gather", "#d4a6c8"),
];

const HASH_COLORS: &[&str] = &[
    "#8dd3c7", "#bebada", "#fb8072", "#80b1d3", "#fdb462", "#b3de69", "#fccde5", "#bc80bd",
    "#ccebc5", "#ffed6f", "#a6cee3", "#b2df8a", "#cab2d6", "#fdbf6f",
];

/// Frame strokes, cycling.
const FRAME_STROKES: &[&str] = &[
    "#000000", "#d62728", "#1f77b4", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b",
];

/// White or black, whichever reads better on `fill` (`#rrggbb`).
fn text_on(fill: &str) -> &'static str {
    let ch = |i: usize| {
        fill.get(i..i + 2)
            .and_then(|h| u8::from_str_radix(h, 16).ok())
            .map_or(1.0, |v| v as f64 / 255.0)
    };
    let luma = 0.299 * ch(1) + 0.587 * ch(3) + 0.114 * ch(5);
    if luma < 0.5 {
        "white"
    } else {
        "black"
    }
}

/// A fixed colour for an op type (the same in every model and run).
pub fn op_color(op: &str) -> &'static str {
    if let Some((_, c)) = OP_COLORS.iter().find(|(o, _)| *o == op) {
        return c;
    }
    // FNV-1a: stable across runs and platforms, unlike the std hasher.
    let h = op.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
    });
    HASH_COLORS[(h % HASH_COLORS.len() as u64) as usize]
}

fn xml_escape(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&apos;"),
            c if (c as u32) < 0x20 && c != '\n' && c != '\t' => o.push(' '),
            c => o.push(c),
        }
    }
    o
}

/// A tick step (ms) of 1, 2 or 5 times a power of ten giving at most about `n` ticks.
fn tick_step(span_ms: f64, n: f64) -> f64 {
    if span_ms <= 0.0 || !span_ms.is_finite() {
        return 1.0;
    }
    let raw = span_ms / n;
    let p = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * p)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * p)
}

/// The first `max_chars` characters of `s`, with an ellipsis if cut.
fn fit(s: &str, max_chars: usize) -> Option<String> {
    let n = s.chars().count();
    if n <= max_chars {
        Some(s.to_string())
    } else if max_chars >= 4 {
        Some(s.chars().take(max_chars - 1).chain(['…']).collect())
    } else {
        None
    }
}

/// A standalone SVG timeline: one lane per thread, one rect per step (x = start, width =
/// duration) coloured by op type, with a hover title, a label where it fits, a time axis in
/// ms, a legend of op colours and, with several frames, a stroke colour and label per frame.
pub fn svg_timeline(events: &[StepTiming], opts: &SvgOptions<'_>) -> String {
    const LEFT: f64 = 90.0;
    const RIGHT: f64 = 20.0;
    const TOP: f64 = 40.0;
    const LANE_H: f64 = 34.0;
    const LANE_GAP: f64 = 6.0;
    const CHAR_W: f64 = 6.2;
    let lanes = lanes(events);
    let lane_of: HashMap<usize, usize> = lanes.iter().enumerate().map(|(i, t)| (*t, i)).collect();
    let frames: BTreeSet<usize> = events.iter().map(|e| e.frame).collect();
    let many_frames = frames.len() > 1;
    let t0 = events.iter().map(|e| e.start).min().unwrap_or_default();
    let span = ms(makespan(events).saturating_sub(t0)).max(1e-3);
    let width = opts.width.max(LEFT + RIGHT + 100.0);
    let plot_w = width - LEFT - RIGHT;
    let x_of = |t: Duration| LEFT + ms(t.saturating_sub(t0)) / span * plot_w;
    let lanes_h = lanes.len().max(1) as f64 * (LANE_H + LANE_GAP);
    let axis_y = TOP + lanes_h + 4.0;

    // Legend: op types by total time, wrapped into rows.
    let mut op_time: HashMap<&'static str, f64> = HashMap::new();
    for e in events {
        *op_time.entry(e.op).or_default() += ms(e.time);
    }
    let mut ops: Vec<(&'static str, f64)> = op_time.into_iter().collect();
    ops.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(b.0)));
    let legend_y = axis_y + 40.0;
    let mut legend = String::new();
    let (mut lx, mut ly) = (LEFT, legend_y);
    for (op, _) in &ops {
        let w = 18.0 + op.chars().count() as f64 * CHAR_W + 16.0;
        if lx + w > width - RIGHT && lx > LEFT {
            lx = LEFT;
            ly += 18.0;
        }
        let _ = write!(
            legend,
            r#"<rect class="legend" x="{lx:.1}" y="{:.1}" width="12" height="12" fill="{}"/><text x="{:.1}" y="{:.1}">{}</text>"#,
            ly - 10.0,
            op_color(op),
            lx + 16.0,
            ly,
            xml_escape(op)
        );
        legend.push('\n');
        lx += w;
    }
    if many_frames {
        ly += 18.0;
        lx = LEFT;
        let _ = write!(
            legend,
            r#"<text x="{lx:.1}" y="{ly:.1}">outline colour = frame:</text>"#
        );
        lx += 150.0;
        for f in &frames {
            if lx + 60.0 > width - RIGHT {
                lx = LEFT;
                ly += 18.0;
            }
            let _ = write!(
                legend,
                r#"<rect class="legend" x="{lx:.1}" y="{:.1}" width="12" height="12" fill="none" stroke="{}" stroke-width="2"/><text x="{:.1}" y="{ly:.1}">frame {f}</text>"#,
                ly - 10.0,
                FRAME_STROKES[f % FRAME_STROKES.len()],
                lx + 16.0
            );
            legend.push('\n');
            lx += 70.0;
        }
    }
    let height = ly + 16.0;

    let mut s = String::with_capacity(events.len() * 300 + 4096);
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0}" height="{height:.0}" viewBox="0 0 {width:.0} {height:.0}" font-family="sans-serif" font-size="11">"#
    );
    let _ = writeln!(
        s,
        r#"<rect class="background" x="0" y="0" width="{width:.0}" height="{height:.0}" fill="white"/>"#
    );
    let _ = writeln!(
        s,
        r#"<text x="{LEFT}" y="22" font-size="14" font-weight="bold">{}</text>"#,
        xml_escape(opts.title)
    );
    // Lanes: a light band and a label each.
    for (i, t) in lanes.iter().enumerate() {
        let y = TOP + i as f64 * (LANE_H + LANE_GAP);
        let _ = writeln!(
            s,
            r##"<line x1="{LEFT}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="#eeeeee" stroke-width="{LANE_H}"/><text class="lane" x="8" y="{:.1}">thread {t}</text>"##,
            y + LANE_H / 2.0,
            width - RIGHT,
            y + LANE_H / 2.0,
            y + LANE_H / 2.0 + 4.0
        );
    }
    // Steps.
    for e in events {
        let lane = lane_of.get(&e.thread).copied().unwrap_or(0);
        let y = TOP + lane as f64 * (LANE_H + LANE_GAP);
        let x = x_of(e.start);
        let w = (x_of(e.start + e.time) - x).max(0.5);
        let t_ms = ms(e.time);
        let title = format!(
            "{} ({})\nstep {}{}, thread {}\nstart {:.3} ms, time {:.3} ms\n{:.1} GFLOP/s, {:.3} MFLOP, {:.3} MB",
            e.node,
            e.op,
            e.step,
            if many_frames {
                format!(", frame {}", e.frame)
            } else {
                String::new()
            },
            e.thread,
            ms(e.start),
            t_ms,
            gflops(e.cost.flops, t_ms),
            e.cost.flops as f64 / 1e6,
            (e.cost.bytes_read + e.cost.bytes_written) as f64 / 1e6,
        );
        let stroke = if many_frames {
            format!(
                r#" stroke="{}" stroke-width="1.5""#,
                FRAME_STROKES[e.frame % FRAME_STROKES.len()]
            )
        } else {
            String::new()
        };
        let _ = write!(
            s,
            r#"<rect class="step" x="{x:.2}" y="{y:.1}" width="{w:.2}" height="{LANE_H}" fill="{}"{stroke}><title>{}</title></rect>"#,
            op_color(e.op),
            xml_escape(&title)
        );
        let label = if many_frames {
            format!("f{} {}", e.frame, e.node)
        } else {
            e.node.clone()
        };
        let chars = ((w - 4.0) / CHAR_W).floor().max(0.0) as usize;
        if let Some(l) = fit(&label, chars) {
            let _ = write!(
                s,
                r#"<text x="{:.2}" y="{:.1}" fill="{}" pointer-events="none">{}</text>"#,
                x + 2.0,
                y + LANE_H / 2.0 + 4.0,
                text_on(op_color(e.op)),
                xml_escape(&l)
            );
        }
        s.push('\n');
    }
    for (t, label) in opts.marks {
        let x = x_of(*t);
        let _ = writeln!(
            s,
            r##"<line class="mark" x1="{x:.1}" y1="{:.1}" x2="{x:.1}" y2="{axis_y:.1}" stroke="#555555" stroke-dasharray="4 3"/><text x="{:.1}" y="{:.1}" font-size="10" fill="#555555">{}</text>"##,
            TOP - 8.0,
            x + 3.0,
            TOP - 2.0,
            xml_escape(label)
        );
    }
    // Time axis.
    let _ = writeln!(
        s,
        r#"<line x1="{LEFT}" y1="{axis_y:.1}" x2="{:.1}" y2="{axis_y:.1}" stroke="black"/>"#,
        width - RIGHT
    );
    let step = tick_step(span, 10.0);
    let mut k = 0usize;
    loop {
        let t = k as f64 * step;
        if t > span * (1.0 + 1e-9) {
            break;
        }
        let x = LEFT + t / span * plot_w;
        let label = if step >= 1.0 {
            format!("{t:.0}")
        } else {
            let digits = (-step.log10()).ceil().max(0.0) as usize;
            format!("{t:.digits$}")
        };
        let _ = writeln!(
            s,
            r#"<line x1="{x:.1}" y1="{axis_y:.1}" x2="{x:.1}" y2="{:.1}" stroke="black"/><text x="{x:.1}" y="{:.1}" text-anchor="middle">{label}</text>"#,
            axis_y + 5.0,
            axis_y + 17.0
        );
        k += 1;
    }
    let _ = writeln!(
        s,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="end">ms</text>"#,
        width - RIGHT,
        axis_y + 30.0
    );
    s.push_str(&legend);
    s.push_str("</svg>\n");
    s
}

/// Measures the FMA peak and triad bandwidth on `threads` threads (about half a second),
/// unless given; also says which were measured.
fn machine(args: &ProfileArgs, threads: usize) -> (Machine, &'static str) {
    // Best of several short tries: on a busy machine a short window is likelier to be quiet.
    let peak = args
        .peak_gflops
        .unwrap_or_else(|| fma_peak(FmaVariant::detect(), threads, 0.04, 5).gflops);
    let bw = args
        .bandwidth_gbs
        .unwrap_or_else(|| triad_bandwidth(threads, 64 << 20, 3));
    let how = match (args.peak_gflops, args.bandwidth_gbs) {
        (None, None) => "measured",
        (Some(_), Some(_)) => "given",
        (None, Some(_)) => "peak measured, bandwidth given",
        (Some(_), None) => "peak given, bandwidth measured",
    };
    (
        Machine {
            peak_gflops: peak,
            bandwidth_gbs: bw,
        },
        how,
    )
}

fn pct(part: f64, whole: f64) -> f64 {
    if whole > 0.0 {
        100.0 * part / whole
    } else {
        0.0
    }
}

/// A node name cut to `w` characters, keeping the end (the informative part of exported names).
fn tail(s: &str, w: usize) -> String {
    let n = s.chars().count();
    if n <= w {
        s.to_string()
    } else {
        std::iter::once('…')
            .chain(s.chars().skip(n - w + 1))
            .collect()
    }
}

pub fn profile(args: &ProfileArgs) -> Result<()> {
    if args.iters == 0 {
        bail!("--iters must be at least 1");
    }
    for (name, v) in [
        ("--peak-gflops", args.peak_gflops),
        ("--bandwidth-gbs", args.bandwidth_gbs),
    ] {
        if v.is_some_and(|x| !(x > 0.0 && x.is_finite())) {
            bail!("{name} must be a positive number");
        }
    }
    let loaded = Loaded::new(&args.load)?;
    let inputs = match &args.inputs {
        Some(p) => read_inputs(p, &loaded)?,
        None => loaded.random(args.seed)?,
    };
    let shapes = inputs
        .iter()
        .map(|(n, t)| (n.clone(), t.shape().to_vec()))
        .collect();
    let compiled = loaded.compile_with(shapes, None)?;
    let (mach, how) = machine(args, compiled.threads());
    for _ in 0..args.warmup {
        compiled.run_named(&inputs)?;
    }
    let mut runs: Vec<Vec<StepTiming>> = Vec::with_capacity(args.iters);
    let mut walls: Vec<f64> = Vec::with_capacity(args.iters);
    for _ in 0..args.iters {
        let t = Instant::now();
        let (_, steps) = compiled.run_named_profiled(&inputs)?;
        walls.push(ms(t.elapsed()));
        runs.push(steps);
    }
    // The representative run: the one with the median wall time.
    let mut order: Vec<usize> = (0..runs.len()).collect();
    order.sort_by(|&a, &b| walls[a].total_cmp(&walls[b]));
    let rep = order[order.len() / 2];
    let wall = walls[rep];
    let wall_min = walls[order[0]];

    let nodes = node_rows(&runs);
    let ops = op_rows(&nodes);
    let sum_ms: f64 = nodes.iter().map(|n| n.ms).sum();
    let flops: u64 = nodes.iter().map(|n| n.flops).sum();
    let bytes: u64 = nodes.iter().map(|n| n.bytes).sum();
    let total_gflops = gflops(flops, wall);
    let lanes_used = lanes(&runs[rep]).len();
    // Node time in the median run itself: about its wall when sequential, more when
    // branches overlap. (The medians above drop each node's slow outliers, so on a busy
    // machine they can sum to less than any whole run.)
    let busy: f64 = runs[rep].iter().map(|e| ms(e.time)).sum();
    let mut notes = Vec::new();
    let too_fast = nodes
        .iter()
        .filter(|n| n.gflops() > mach.peak_gflops * 1.05)
        .count();
    if too_fast > 0 {
        notes.push(format!(
            "{too_fast} node(s) ran faster than the peak: {}",
            if how.starts_with("peak given") || how == "given" {
                "is --peak-gflops too low?"
            } else {
                "other load probably disturbed the measurement; give --peak-gflops"
            }
        ));
    }
    let cached = nodes
        .iter()
        .filter(|n| {
            mach.bound(n.flops, n.bytes) == Some(Bound::Memory)
                && n.ms > 0.0
                && mach.min_ms(n.flops, n.bytes) > n.ms * 1.05
        })
        .count();
    if cached > 0 {
        notes.push(format!(
            "{cached} memory-bound node(s) beat the memory roofline: their data was in cache \
             (the bandwidth is DRAM's)"
        ));
    }

    let timeline = if args.trace_all {
        end_to_end(&runs)
    } else {
        runs[rep].clone()
    };
    let marks: Vec<(Duration, String)> = if args.trace_all {
        let mut at = Duration::ZERO;
        runs.iter()
            .enumerate()
            .map(|(i, r)| {
                let m = (at, format!("run {}", i + 1));
                at += makespan(r);
                m
            })
            .collect()
    } else {
        Vec::new()
    };
    let title = format!(
        "{} - {} thread(s), schedule {}, {}",
        loaded.label,
        compiled.threads(),
        compiled.schedule(),
        if args.trace_all {
            format!("{} runs end to end", runs.len())
        } else {
            format!("median run of {} ({wall:.3} ms)", runs.len())
        }
    );
    if let Some(p) = &args.trace {
        let meta = TraceMeta {
            name: &loaded.label,
            other: json!({
                "model": loaded.label,
                "threads": compiled.threads(),
                "schedule": compiled.schedule().to_string(),
                "runs": if args.trace_all { runs.len() } else { 1 },
                "wall_ms": wall,
                "peak_gflops": mach.peak_gflops,
                "bandwidth_gbs": mach.bandwidth_gbs,
            }),
        };
        let v = chrome_trace(&timeline, &meta);
        std::fs::write(p, serde_json::to_string(&v)?)
            .map_err(|e| anyhow::anyhow!("writing {}: {e}", p.display()))?;
    }
    if let Some(p) = &args.svg {
        let svg = svg_timeline(
            &timeline,
            &SvgOptions {
                width: 1600.0,
                title: &title,
                marks: &marks,
            },
        );
        std::fs::write(p, svg).map_err(|e| anyhow::anyhow!("writing {}: {e}", p.display()))?;
    }

    let node_json = |n: &NodeRow| {
        json!({
            "step": n.step,
            "node": n.node,
            "op": n.op,
            "ms": n.ms,
            "share": if sum_ms > 0.0 { n.ms / sum_ms } else { 0.0 },
            "flops": n.flops,
            "bytes": n.bytes,
            "gflop_per_s": n.gflops(),
            "intensity": n.intensity(),
            "roofline_gflop_per_s": mach.roofline_gflops(n.intensity()),
            "bound": mach.bound(n.flops, n.bytes).map(Bound::name),
            "roofline_pct": pct(mach.min_ms(n.flops, n.bytes), n.ms),
        })
    };
    let mut sorted: Vec<&NodeRow> = nodes.iter().collect();
    if args.sort == SortBy::Time {
        sorted.sort_by(|a, b| b.ms.total_cmp(&a.ms).then(a.step.cmp(&b.step)));
    }
    if args.json {
        let v = json!({
            "model": loaded.label,
            "threads": compiled.threads(),
            "schedule": compiled.schedule().to_string(),
            "warmup": args.warmup,
            "iters": args.iters,
            "lanes": lanes_used,
            "machine": {
                "peak_gflops": mach.peak_gflops,
                "bandwidth_gbs": mach.bandwidth_gbs,
                "balance_flop_per_byte": mach.balance(),
                "source": how,
            },
            "wall_ms": { "median": wall, "min": wall_min },
            "sum_node_ms": sum_ms,
            "busy_ms_median_run": busy,
            "notes": notes,
            "gflop": flops as f64 / 1e9,
            "bytes": bytes,
            "gflop_per_s": total_gflops,
            "peak_pct": pct(total_gflops, mach.peak_gflops),
            "nodes": sorted.iter().map(|n| node_json(n)).collect::<Vec<_>>(),
            "by_op": ops.iter().map(|r| json!({
                "op": r.op,
                "count": r.count,
                "ms": r.ms,
                "share": if sum_ms > 0.0 { r.ms / sum_ms } else { 0.0 },
                "flops": r.flops,
                "bytes": r.bytes,
                "gflop_per_s": gflops(r.flops, r.ms),
                "roofline_pct": pct(mach.min_ms(r.flops, r.bytes), r.ms),
            })).collect::<Vec<_>>(),
        });
        println!("{v}");
        return Ok(());
    }

    println!("model:    {}", loaded.label);
    println!(
        "runs:     {} profiled after {} warmup; {} thread(s), schedule {}, {} lane(s) used",
        args.iters,
        args.warmup,
        compiled.threads(),
        compiled.schedule(),
        lanes_used
    );
    println!(
        "machine:  peak {:.1} GFLOP/s, bandwidth {:.1} GB/s, balance {:.1} FLOP/B ({})",
        mach.peak_gflops,
        mach.bandwidth_gbs,
        mach.balance(),
        how
    );
    println!(
        "wall:     {wall:.3} ms median run ({wall_min:.3} min); its nodes took {busy:.3} ms ({:.2}x wall{})",
        if wall > 0.0 { busy / wall } else { 0.0 },
        if lanes_used > 1 { ": branches overlap" } else { "" }
    );
    println!(
        "nodes:    {} in the plan; median node times sum to {sum_ms:.3} ms",
        nodes.len()
    );
    println!(
        "work:     {:.3} GFLOP, {:.1} MB moved; {total_gflops:.1} GFLOP/s at the median wall = {:.1}% of peak",
        flops as f64 / 1e9,
        bytes as f64 / 1e6,
        pct(total_gflops, mach.peak_gflops)
    );
    if !args.by_op {
        let shown = if args.top == 0 {
            sorted.len()
        } else {
            args.top.min(sorted.len())
        };
        let name_w = sorted[..shown]
            .iter()
            .map(|n| n.node.chars().count())
            .max()
            .unwrap_or(4)
            .clamp(4, 44);
        let op_w = sorted[..shown]
            .iter()
            .map(|n| n.op.len())
            .max()
            .unwrap_or(2)
            .clamp(2, 20);
        println!();
        println!(
            "{:>5} {:<name_w$} {:<op_w$} {:>9} {:>6} {:>9} {:>8} {:>8} {:>7} {:>7} {:>6}",
            "step",
            "node",
            "op",
            "ms",
            "share",
            "MFLOP",
            "GFLOP/s",
            "MB",
            "FLOP/B",
            "bound",
            "%roof"
        );
        for n in &sorted[..shown] {
            println!(
                "{:>5} {:<name_w$} {:<op_w$} {:>9.3} {:>5.1}% {:>9.2} {:>8.1} {:>8.2} {:>7.1} {:>7} {:>5.0}%",
                n.step,
                tail(&n.node, name_w),
                tail(n.op, op_w),
                n.ms,
                pct(n.ms, sum_ms),
                n.flops as f64 / 1e6,
                n.gflops(),
                n.bytes as f64 / 1e6,
                n.intensity(),
                mach.bound(n.flops, n.bytes).map_or("-", Bound::name),
                pct(mach.min_ms(n.flops, n.bytes), n.ms),
            );
        }
        let rest = &sorted[shown..];
        if !rest.is_empty() {
            let (r_ms, r_fl, r_by) = rest.iter().fold((0.0, 0u64, 0u64), |a, n| {
                (a.0 + n.ms, a.1 + n.flops, a.2 + n.bytes)
            });
            println!(
                "{:>5} {:<name_w$} {:<op_w$} {:>9.3} {:>5.1}% {:>9.2} {:>8.1} {:>8.2}",
                "",
                format!("({} others)", rest.len()),
                "",
                r_ms,
                pct(r_ms, sum_ms),
                r_fl as f64 / 1e6,
                gflops(r_fl, r_ms),
                r_by as f64 / 1e6,
            );
        }
        println!(
            "{:>5} {:<name_w$} {:<op_w$} {:>9.3} {:>5.1}% {:>9.2} {:>8.1} {:>8.2}",
            "",
            "total (sum of nodes)",
            "",
            sum_ms,
            100.0,
            flops as f64 / 1e6,
            gflops(flops, sum_ms),
            bytes as f64 / 1e6,
        );
    }
    println!();
    println!("per op type (sum of median node times):");
    println!(
        "  {:<20} {:>6} {:>9} {:>6} {:>10} {:>8} {:>9} {:>7} {:>6}",
        "op", "nodes", "ms", "share", "GFLOP", "GFLOP/s", "MB", "FLOP/B", "%roof"
    );
    for r in &ops {
        println!(
            "  {:<20} {:>6} {:>9.3} {:>5.1}% {:>10.4} {:>8.1} {:>9.2} {:>7.1} {:>5.0}%",
            r.op,
            r.count,
            r.ms,
            pct(r.ms, sum_ms),
            r.flops as f64 / 1e9,
            gflops(r.flops, r.ms),
            r.bytes as f64 / 1e6,
            if r.bytes > 0 {
                r.flops as f64 / r.bytes as f64
            } else {
                0.0
            },
            pct(mach.min_ms(r.flops, r.bytes), r.ms),
        );
    }
    if !notes.is_empty() {
        println!();
        for n in &notes {
            println!("note: {n}");
        }
    }
    if let Some(p) = &args.trace {
        println!();
        println!(
            "trace:    {} (open in https://ui.perfetto.dev)",
            p.display()
        );
    }
    if let Some(p) = &args.svg {
        if args.trace.is_none() {
            println!();
        }
        println!("svg:      {}", p.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use millrace::ir::Cost;

    fn ev(step: usize, node: &str, op: &'static str, start_us: u64, dur_us: u64) -> StepTiming {
        StepTiming {
            node: node.to_string(),
            op,
            step,
            start: Duration::from_micros(start_us),
            time: Duration::from_micros(dur_us),
            thread: 0,
            frame: 0,
            cost: Cost {
                flops: 2_000_000,
                bytes_read: 100_000,
                bytes_written: 100_000,
            },
        }
    }

    /// Two lanes overlapping in time, two frames.
    fn synthetic() -> Vec<StepTiming> {
        let mut v = Vec::new();
        for frame in 0..2 {
            let base = frame as u64 * 300;
            let mut a = ev(0, "conv_a", "Conv", base, 200);
            let mut b = ev(1, "relu<b>&", "Relu", base + 50, 100);
            let mut c = ev(2, "add", "Add", base + 210, 40);
            a.thread = 0;
            b.thread = 3;
            c.thread = 0;
            for e in [&mut a, &mut b, &mut c] {
                e.frame = frame;
            }
            v.extend([a, b, c]);
        }
        v
    }

    #[test]
    fn trace_has_one_complete_event_per_step_and_lane_names() {
        let evs = synthetic();
        let meta = TraceMeta {
            name: "m",
            other: json!({}),
        };
        let v = chrome_trace(&evs, &meta);
        // Round trip through text: the file Perfetto reads.
        let v: Json = serde_json::from_str(&serde_json::to_string(&v).unwrap()).unwrap();
        assert_eq!(v["displayTimeUnit"], "ms");
        let te = v["traceEvents"].as_array().unwrap();
        let x: Vec<&Json> = te.iter().filter(|e| e["ph"] == "X").collect();
        assert_eq!(x.len(), evs.len());
        for e in &x {
            assert!(e["ts"].as_f64().unwrap() >= 0.0);
            assert!(e["dur"].as_f64().unwrap() >= 0.0);
            assert!(e["args"]["flops"].as_u64().is_some());
        }
        // Frame 1's relu: pid 1, tid 3, starts at 350 us.
        let r = x
            .iter()
            .find(|e| e["pid"] == 1 && e["args"]["step"] == 1)
            .unwrap();
        assert_eq!(r["tid"], 3);
        assert_eq!(r["ts"].as_f64().unwrap(), 350.0);
        assert_eq!(r["cat"], "Relu");
        let names: Vec<(u64, u64, &str)> = te
            .iter()
            .filter(|e| e["ph"] == "M" && e["name"] == "thread_name")
            .map(|e| {
                (
                    e["pid"].as_u64().unwrap(),
                    e["tid"].as_u64().unwrap(),
                    e["args"]["name"].as_str().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            names,
            [
                (0, 0, "thread 0"),
                (0, 3, "thread 3"),
                (1, 0, "thread 0"),
                (1, 3, "thread 3")
            ]
        );
        let procs = te.iter().filter(|e| e["name"] == "process_name").count();
        assert_eq!(procs, 2);
    }

    /// Tags open and close in order (self-closing ones aside); enough to catch broken markup.
    fn balanced(svg: &str) -> bool {
        let mut stack: Vec<String> = Vec::new();
        let mut rest = svg;
        while let Some(i) = rest.find('<') {
            rest = &rest[i + 1..];
            let Some(end) = rest.find('>') else {
                return false;
            };
            let tag = &rest[..end];
            rest = &rest[end + 1..];
            if let Some(name) = tag.strip_prefix('/') {
                if stack.pop().as_deref() != Some(name.trim()) {
                    return false;
                }
            } else if !tag.ends_with('/') {
                let name = tag.split_whitespace().next().unwrap_or("");
                stack.push(name.to_string());
            }
        }
        stack.is_empty() && !rest.contains('>')
    }

    #[test]
    fn svg_has_a_rect_per_step_a_label_per_lane_and_escapes_names() {
        let evs = synthetic();
        let svg = svg_timeline(
            &evs,
            &SvgOptions {
                width: 1600.0,
                title: "a <title> & more",
                marks: &[(Duration::from_micros(300), "frame <1>".into())],
            },
        );
        assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
        assert!(balanced(&svg), "{svg}");
        assert_eq!(svg.matches(r#"<rect class="step""#).count(), evs.len());
        assert_eq!(svg.matches(r#"<rect class="background""#).count(), 1);
        assert_eq!(svg.matches(r#"class="lane""#).count(), 2);
        assert!(svg.contains(">thread 0<") && svg.contains(">thread 3<"));
        assert_eq!(svg.matches("<title>").count(), evs.len());
        assert!(svg.contains("relu&lt;b&gt;&amp;"));
        assert!(!svg.contains("<b>"));
        assert_eq!(svg.matches(r#"class="mark""#).count(), 1);
        // Several frames: strokes per frame and a frame legend.
        assert!(svg.contains(">frame 1<"));
        assert!(svg.contains(&format!("stroke=\"{}\"", FRAME_STROKES[1])));
        // The run is 550 us long: ticks every 0.1 ms up to 0.5.
        assert!(svg.contains(">0.5<") && !svg.contains(">0.6<"), "{svg}");
        // Rects stay inside the plot.
        for part in svg.split(r#"<rect class="step" x=""#).skip(1) {
            let x: f64 = part[..part.find('"').unwrap()].parse().unwrap();
            assert!((90.0..=1580.0).contains(&x));
        }
    }

    #[test]
    fn svg_of_no_events_is_still_well_formed() {
        let svg = svg_timeline(
            &[],
            &SvgOptions {
                width: 800.0,
                title: "empty",
                marks: &[],
            },
        );
        assert!(balanced(&svg));
        assert_eq!(svg.matches(r#"<rect class="step""#).count(), 0);
    }

    #[test]
    fn bound_follows_the_machine_balance() {
        // Balance: 100 GFLOP/s / 20 GB/s = 5 FLOP/B.
        let m = Machine {
            peak_gflops: 100.0,
            bandwidth_gbs: 20.0,
        };
        assert_eq!(m.balance(), 5.0);
        assert_eq!(m.bound(400, 100), Some(Bound::Memory));
        assert_eq!(m.bound(500, 100), Some(Bound::Compute));
        assert_eq!(m.bound(0, 100), Some(Bound::Memory));
        assert_eq!(m.bound(10, 0), Some(Bound::Compute));
        assert_eq!(m.bound(0, 0), None);
        assert_eq!(m.roofline_gflops(1.0), 20.0);
        assert_eq!(m.roofline_gflops(50.0), 100.0);
        // 1e9 FLOP at 100 GFLOP/s: 10 ms; 1e9 B at 20 GB/s: 50 ms.
        assert!((m.min_ms(1_000_000_000, 0) - 10.0).abs() < 1e-9);
        assert!((m.min_ms(1_000_000_000, 1_000_000_000) - 50.0).abs() < 1e-9);
    }

    #[test]
    fn rows_take_the_median_per_step_and_frame() {
        let mut runs = Vec::new();
        for k in [3u64, 1, 2] {
            runs.push(vec![
                ev(0, "a", "Conv", 0, 100 * k),
                ev(1, "b", "Relu", 0, 10),
            ]);
        }
        let rows = node_rows(&runs);
        assert_eq!(rows.len(), 2);
        assert!((rows[0].ms - 0.2).abs() < 1e-12);
        let ops = op_rows(&rows);
        assert_eq!(ops[0].op, "Conv");
        // Two frames of the same step are two rows.
        assert_eq!(node_rows(&[synthetic()]).len(), 6);
    }

    #[test]
    fn runs_laid_end_to_end_do_not_overlap() {
        let runs = vec![
            vec![ev(0, "a", "Conv", 0, 100), ev(1, "b", "Relu", 100, 50)],
            vec![ev(0, "a", "Conv", 0, 120), ev(1, "b", "Relu", 120, 50)],
        ];
        let all = end_to_end(&runs);
        assert_eq!(all.len(), 4);
        assert_eq!(all[2].start, Duration::from_micros(150));
        assert_eq!(makespan(&all), Duration::from_micros(320));
    }

    #[test]
    fn ticks_are_round() {
        assert_eq!(tick_step(10.0, 10.0), 1.0);
        assert_eq!(tick_step(37.0, 10.0), 5.0);
        assert!((tick_step(0.55, 10.0) - 0.1).abs() < 1e-12);
        assert_eq!(fit("abcdef", 4).as_deref(), Some("abc…"));
        assert_eq!(fit("abcdef", 3), None);
        assert_eq!(text_on("#2f5f8f"), "white");
        assert_eq!(text_on("#edc948"), "black");
        assert_eq!(tail("abcdef", 4), "…def");
    }
}
