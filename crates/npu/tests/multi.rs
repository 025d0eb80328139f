//! Several simulated cards (`millrace_npu::multi`) on the shared ResNet-50: data parallel
//! over two cards against one card (times checked against bounds derived from the transfer
//! and weight-load times, outputs against ONNX Runtime and the plain CPU run), pipeline
//! parallel over two cards with eight micro-batches (window, bubble and throughput derived
//! from the stage and transfer times, outputs against one card), and bad arguments.
use millrace::{read_npz, CompileOptions, Model, Tensor};
use millrace_ir::Graph;
use millrace_npu::functional::rel_l2;
use millrace_npu::multi::{self, DataOptions, GraphCache, PipelineOptions, TaskKind};
use millrace_npu::NpuConfig;
use std::path::PathBuf;

const EXAMPLE: &str = include_str!("../../../examples/npu.toml");

fn resnet() -> Option<(Model, Tensor, Tensor)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/models");
    let onnx = dir.join("resnet50.onnx");
    if !onnx.exists() {
        eprintln!("skipping: {} is absent", onnx.display());
        return None;
    }
    let input = read_npz(&dir.join("resnet50.inputs.npz"))
        .unwrap()
        .remove(0)
        .1;
    let output = read_npz(&dir.join("resnet50.outputs.npz"))
        .unwrap()
        .remove(0)
        .1;
    Some((Model::load(&onnx).unwrap(), input, output))
}

fn compile(model: &Model, rows: usize) -> millrace::CompiledModel {
    let mut opts = CompileOptions::default();
    opts.input_shapes
        .insert("input".into(), vec![rows, 3, 224, 224]);
    opts.threads = Some(1);
    model.compile(&opts).unwrap()
}

/// `rows` rows: row 0 is the reference input, row i the reference scaled by 1 + i/10
/// (distinct rows, so a slice out of place would show).
fn batch(input: &Tensor, rows: usize) -> Tensor {
    let x = input.to_f32_vec().unwrap();
    let mut v = Vec::with_capacity(x.len() * rows);
    for i in 0..rows {
        let s = 1.0 + i as f32 / 10.0;
        v.extend(x.iter().map(|a| a * s));
    }
    let mut shape = input.shape().to_vec();
    shape[0] = rows;
    Tensor::from_vec(shape, v).unwrap()
}

fn row(t: &Tensor, i: usize) -> Tensor {
    multi::slice_rows(t, &(i..i + 1)).unwrap()
}

#[test]
fn data_parallel_two_cards_resnet50_batch8() {
    let Some((model, input, reference)) = resnet() else {
        return;
    };
    let cfg = NpuConfig::from_toml(EXAMPLE).unwrap();
    assert!(!cfg.link_shared, "the example has one link per card");
    let mut graphs =
        GraphCache::new(|rows| Ok::<Graph, String>(compile(&model, rows).graph().clone()));
    let opts = DataOptions {
        cards: 2,
        batch: 8,
        cpu: None,
    };
    let r = multi::data_parallel(&cfg, &opts, &mut graphs).unwrap();
    let rows: Vec<usize> = r.run.devices.iter().map(|d| d.rows.len()).collect();
    assert_eq!(rows, vec![4, 4], "identical cards split evenly");

    // The parts of the derivation: one transfer each way per card (one input, one output).
    let g4 = graphs.get(4).unwrap().clone();
    let g8 = graphs.get(8).unwrap().clone();
    let bytes = |g: &Graph, v| millrace_npu::lower::value_bytes(g, v, &cfg);
    let in4 = cfg.link_cycles(bytes(&g4, g4.inputs[0]));
    let out4 = cfg.link_cycles(bytes(&g4, g4.outputs[0]));
    let in8 = cfg.link_cycles(bytes(&g8, g8.inputs[0]));
    let out8 = cfg.link_cycles(bytes(&g8, g8.outputs[0]));
    let c4 = r.run.devices[0].compute_cycles;
    let c8 = r.single.devices[0].compute_cycles;
    // Per-card links: each card is transfer in, compute, transfer out, nothing shared.
    assert_eq!(r.run.latency_cycles, in4 + c4 + out4);
    assert_eq!(r.single.latency_cycles, in8 + c8 + out8);
    // Bounds: half the rows take at least half the batch's compute (weights are loaded per
    // inference whatever the rows, so they do not shrink) and at most half plus one full
    // streaming of the weights from DRAM, which the second card pays again.
    let weights: u64 = r.run.reports[0]
        .program
        .works
        .iter()
        .map(|w| w.weight_bytes)
        .sum();
    let w = cfg.dma_cycles(weights);
    assert!(
        2 * c4 >= c8,
        "half the rows simulated faster than half: {c4} vs {c8}"
    );
    assert!(2 * c4 <= c8 + 2 * w, "{c4} vs {c8} + weights {w}");
    let l1 = r.single.latency_cycles as f64;
    let hi = l1 / (c8 as f64 / 2.0 + (in4 + out4) as f64);
    let lo = l1 / (c8 as f64 / 2.0 + w as f64 + (in4 + out4) as f64);
    let s = r.speedup();
    eprintln!(
        "data parallel: 2 cards {:.3} ms, 1 card {:.3} ms, speedup {s:.3} in [{lo:.3}, {hi:.3}] \
         (transfers in4 {in4} out4 {out4} in8 {in8} out8 {out8} cycles, weights {w} cycles)",
        cfg.seconds(r.run.latency_cycles) * 1e3,
        cfg.seconds(r.single.latency_cycles) * 1e3
    );
    assert!(
        s >= lo && s <= hi && hi < 2.0,
        "speedup {s} outside [{lo}, {hi}]"
    );
    let stats = &r.run.card_stats;
    assert_eq!(stats[0].bytes_in, bytes(&g4, g4.inputs[0]));
    assert_eq!(stats[1].link_out_cycles, out4);

    // Outputs: the two slices joined equal the plain CPU run of the batch and, row 0, ONNX
    // Runtime's reference.
    let x = batch(&input, 8);
    let inputs = vec![("input".to_string(), x.clone())];
    let outs = multi::data_outputs(&r.run, &mut graphs, &inputs).unwrap();
    let cpu = compile(&model, 8).run(&[("input", &x)]).unwrap();
    let e = rel_l2(&outs[0].1, &cpu[0].1).unwrap();
    assert!(e <= 1e-4, "split outputs vs the CPU run: rel L2 {e}");
    let e = rel_l2(&row(&outs[0].1, 0), &reference).unwrap();
    assert!(e <= 1e-4, "row 0 vs ONNX Runtime: rel L2 {e}");

    // One shared host link: the second card's input waits for the first's; its output
    // (smaller than the input) is sent while nothing else is on the link.
    let shared = NpuConfig::from_toml(&EXAMPLE.replace("shared = false", "shared = true")).unwrap();
    assert!(shared.link_shared);
    let rs = multi::data_parallel(&shared, &opts, &mut graphs).unwrap();
    assert!(out4 <= in4);
    assert_eq!(rs.run.latency_cycles, 2 * in4 + c4 + out4);
    assert_eq!(rs.single.latency_cycles, r.single.latency_cycles);

    // With a CPU that computes a row in 3/4 of a card's one-row time: it takes rows, the
    // cards keep at least one each, all rows are covered, the latency is the slowest
    // device's and below the two cards' alone; outputs still match.
    let one_row = r.run.devices[0].row_cycles;
    let g1 = graphs.get(1).unwrap().clone();
    let t_ref = multi::cpu_seconds(
        &g1,
        &millrace_devices::CpuDevice::new("cpu", 1, 1e12, 1e12)
            .unwrap()
            .with_node_overhead(0.0)
            .unwrap(),
    );
    let f = t_ref / (0.75 * cfg.seconds(one_row));
    let cpu_dev = millrace_devices::CpuDevice::new("cpu", 1, 1e12 * f, 1e12 * f)
        .unwrap()
        .with_node_overhead(0.0)
        .unwrap();
    let rc = multi::data_parallel(
        &cfg,
        &DataOptions {
            cpu: Some(cpu_dev),
            ..opts.clone()
        },
        &mut graphs,
    )
    .unwrap();
    let rows: Vec<usize> = rc.run.devices.iter().map(|d| d.rows.len()).collect();
    eprintln!(
        "with a CPU: estimate {:?}, rows {rows:?}, latency {:.3} ms",
        rc.run.estimate_rows,
        cfg.seconds(rc.run.latency_cycles) * 1e3
    );
    assert_eq!(rows.iter().sum::<usize>(), 8);
    assert!(rows[0] >= 1 && rows[1] >= 1 && rows[2] >= 1, "{rows:?}");
    let slowest = rc.run.devices.iter().map(|d| d.done).max().unwrap();
    assert_eq!(rc.run.latency_cycles, slowest);
    assert!(rc.run.latency_cycles < r.run.latency_cycles);
    let outs_c = multi::data_outputs(&rc.run, &mut graphs, &inputs).unwrap();
    let e = rel_l2(&outs_c[0].1, &cpu[0].1).unwrap();
    assert!(e <= 1e-4, "split with the CPU vs the CPU run: rel L2 {e}");
}

#[test]
fn pipeline_two_cards_eight_micro_batches_resnet50() {
    let Some((model, input, reference)) = resnet() else {
        return;
    };
    let cfg = NpuConfig::from_toml(EXAMPLE).unwrap();
    let compiled = compile(&model, 1);
    let g = compiled.graph();
    let (k, m) = (2usize, 8usize);
    let r = multi::pipeline(
        g,
        &cfg,
        &PipelineOptions {
            cards: k,
            micro_batches: m,
        },
    )
    .unwrap();
    let st = &r.run.stages;
    assert_eq!(st.len(), 2);
    assert_eq!(st[0].nodes.start, 0);
    assert_eq!(st[0].nodes.end, st[1].nodes.start);
    assert_eq!(st[1].nodes.end, g.nodes.len());
    // The cut is optimal for two stages: the estimates differ by at most one node's time.
    let biggest = *r.node_cycles.iter().max().unwrap();
    assert!(st[0].estimate_cycles.abs_diff(st[1].estimate_cycles) <= biggest);

    let s: Vec<u64> = st.iter().map(|x| x.cycles).collect();
    let sum: u64 = s.iter().sum();
    let max = *s.iter().max().unwrap();
    // One micro-batch's transfers between the cards (card -> host -> card).
    let x: u64 = r
        .run
        .tasks
        .iter()
        .filter(|t| t.micro == 0)
        .filter(|t| {
            (t.kind == TaskKind::TransferOut && t.place == multi::Place::Card(0))
                || (t.kind == TaskKind::TransferIn && t.place == multi::Place::Card(1))
        })
        .map(|t| t.cycles)
        .sum();
    assert!(
        x > 0 && x < *s.iter().min().unwrap(),
        "transfers {x} vs stages {s:?}"
    );
    // Derivation: stage 1 of micro-batch 0 starts after stage 0 and the transfers; from
    // then on the slower stage sets the pace (transfers shorter than a stage are hidden on
    // their own ports), so the compute window is between sum + (M-1) max and that plus x.
    let win = r.run.window.1 - r.run.window.0;
    let lo_w = sum + (m as u64 - 1) * max;
    assert!(
        win >= lo_w && win <= lo_w + x,
        "window {win} vs [{lo_w}, {}]",
        lo_w + x
    );
    // Bubble = 1 - M sum / (K window). With window >= sum + (M-1) max and max >= sum / K it
    // is at least (K-1)/(M+K-1), the balanced, free-transfer value; with window <= sum +
    // (M-1) max + x it is at most 1 - M sum / (K (sum + (M-1) max + x)).
    let bubble = r.run.bubble_fraction();
    let mean = sum as f64 / k as f64;
    let want = (k - 1) as f64 / (m + k - 1) as f64;
    let expect = 1.0 - (m as f64 * sum as f64) / (k as f64 * win as f64);
    assert!((bubble - expect).abs() < 1e-12);
    let eps = (max as f64 - mean) / mean;
    let hi = 1.0
        - (m as f64 * k as f64 * mean)
            / (k as f64 * (sum as f64 + (m - 1) as f64 * max as f64 + x as f64));
    eprintln!(
        "pipeline: stages {s:?} cycles (imbalance {:.1}%), transfers {x} cycles, window {win}, \
         bubble {:.2}% (ideal {:.2}%, bound {:.2}%), total {:.3} ms vs one card {:.3} ms, \
         speedup {:.3}",
        100.0 * eps,
        100.0 * bubble,
        100.0 * want,
        100.0 * hi,
        cfg.seconds(r.run.total_cycles) * 1e3,
        cfg.seconds(r.single.total_cycles) * 1e3,
        r.speedup()
    );
    assert!(
        bubble >= want - 1e-9 && bubble <= hi + 1e-9,
        "bubble {bubble} not in [{want}, {hi}]"
    );
    assert!(eps < 0.15, "stages badly balanced: {s:?}");
    // Throughput above one card running the micro-batches one after another.
    assert!(r.run.throughput(&cfg) > r.single.throughput(&cfg));
    assert_eq!(r.single.stages.len(), 1);
    // Utilization: each card's compute is M stage times.
    for (i, cs) in r.run.card_stats.iter().enumerate() {
        assert_eq!(cs.busy_cycles, m as u64 * s[i]);
    }
    // Peer to peer: one transfer per crossing value (sender's out port, receiver's in
    // port), none through the host; the boundary costs less, so the window shrinks.
    let p2p_cfg =
        NpuConfig::from_toml(&EXAMPLE.replace("peer_to_peer = false", "peer_to_peer = true"))
            .unwrap();
    let p2p = multi::pipeline(
        g,
        &p2p_cfg,
        &PipelineOptions {
            cards: k,
            micro_batches: m,
        },
    )
    .unwrap();
    let crossing = p2p.run.stages[1].inputs.len();
    let hops: Vec<_> = p2p
        .run
        .tasks
        .iter()
        .filter(|t| t.micro == 0 && t.peer == Some(1))
        .collect();
    assert_eq!(hops.len(), crossing);
    let p2p_win = p2p.run.window.1 - p2p.run.window.0;
    assert!(
        p2p_win < win,
        "peer to peer {p2p_win} vs through the host {win}"
    );
    assert_eq!(p2p.run.card_stats[1].bytes_in, r.run.card_stats[1].bytes_in);
    // Micro-batches finish in order.
    for w in r.run.micro.windows(2) {
        assert!(w[0].1 <= w[1].1);
    }

    // Outputs: micro-batch 0 is the reference input (ONNX Runtime), micro-batch 3 a scaled
    // one; both equal the single card's (whole graph) evaluation.
    let x8 = batch(&input, m);
    for j in [0usize, 3] {
        let mb = vec![("input".to_string(), row(&x8, j))];
        let p = multi::pipeline_outputs(g, &r.run, &mb).unwrap();
        let one = multi::pipeline_outputs(g, &r.single, &mb).unwrap();
        let e = rel_l2(&p[0].1, &one[0].1).unwrap();
        assert!(
            e <= 1e-6,
            "micro-batch {j}: pipeline vs one card rel L2 {e}"
        );
        if j == 0 {
            let e = rel_l2(&p[0].1, &reference).unwrap();
            assert!(e <= 1e-4, "pipeline vs ONNX Runtime: rel L2 {e}");
        }
    }

    // The trace has one process per card and both cards' matrix units.
    let reports: Vec<_> = r.run.stages.iter().map(|s| &s.report).collect();
    let tr = multi::chrome_trace(&cfg, k, &r.run.tasks, &reports, 2);
    let ev = tr["traceEvents"].as_array().unwrap();
    for pid in [1, 2] {
        assert!(ev
            .iter()
            .any(|e| e["ph"] == "X" && e["pid"] == pid && e["tid"] == 10));
        // One compute slice per micro-batch; unit commands only for the first two.
        let compute = ev
            .iter()
            .filter(|e| e["ph"] == "X" && e["pid"] == pid && e["tid"] == 0)
            .count();
        assert_eq!(compute, m);
        assert!(ev
            .iter()
            .filter(|e| e["ph"] == "X" && e["pid"] == pid && e["tid"] == 10)
            .all(|e| e["args"]["micro_batch"].as_u64().unwrap() < 2));
    }
}

#[test]
fn bad_arguments_are_clear_errors() {
    let cfg = NpuConfig::from_toml(EXAMPLE).unwrap();
    let mut graphs = GraphCache::new(|_| Err::<Graph, String>("not needed".into()));
    let mut err = |cards, batch| {
        multi::data_parallel(
            &cfg,
            &DataOptions {
                cards,
                batch,
                cpu: None,
            },
            &mut graphs,
        )
        .unwrap_err()
        .to_string()
    };
    let e = err(0, 4);
    assert!(e.contains("--cards must be at least 1"), "{e}");
    let e = err(4, 2);
    assert!(e.contains("batch of 2") && e.contains("4 cards"), "{e}");
    let g = Graph::new("empty");
    let perr = |cards, micro_batches| {
        multi::pipeline(
            &g,
            &cfg,
            &PipelineOptions {
                cards,
                micro_batches,
            },
        )
        .unwrap_err()
        .to_string()
    };
    assert!(perr(0, 4).contains("--cards must be at least 1"));
    assert!(perr(2, 0).contains("--micro-batches must be at least 1"));
    let e = perr(2, 4);
    assert!(e.contains("no nodes"), "{e}");
    let e = "both".parse::<multi::Parallel>().unwrap_err().to_string();
    assert!(
        e.contains("`both`") && e.contains("data") && e.contains("pipeline"),
        "{e}"
    );
    assert_eq!(
        "pipeline".parse::<multi::Parallel>(),
        Ok(multi::Parallel::Pipeline)
    );
    // A graph builder that fails names the rows.
    let e = err(2, 2);
    assert!(e.contains("1 row(s)") && e.contains("not needed"), "{e}");
}
